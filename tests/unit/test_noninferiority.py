"""The non-inferiority gate's judgement (pure): per-finding one-sided tests, power, verdict (table-driven).

Expected p-values and powers are standard normal tail values worked out by hand (Phi(4) = 0.9999683,
Phi(-1) = 0.1587, Phi(3.04) = 0.9988, z_0.975 = 1.959964, z_0.8 = 0.841621).
"""

from __future__ import annotations

import pytest

from modeldeploy.analysis.noninferiority import FindingFigures, PairedFigure, NITest, judge_non_inferiority
from modeldeploy.spec import MetricSpec, NonInferiority


def metric(**kw) -> MetricSpec:
    return MetricSpec(name="non-inferiority", builtin="nonInferiority", non_inferiority=NonInferiority(**kw))


def fig(delta: float, se: float, positives: int = 60, negatives: int = 900, sens: tuple[float, float] | None = None):
    return FindingFigures(positives, negatives, PairedFigure(delta, se), None if sens is None else PairedFigure(*sens))


@pytest.mark.parametrize("delta, se, margin, p_value, lower, power", [
    (-0.01, 0.01, 0.05, 3.167e-5, -0.0296, 0.99882),   # z = 4: far from the margin
    (-0.06, 0.01, 0.05, 0.84134, -0.0796, 0.99882),    # z = -1: beyond the margin
    (0.0, 0.03, 0.05, 0.04779, -0.0588, 0.38465),      # z = 1.667, power Phi(1.667 - 1.96)
    (0.02, 0.0, 0.05, 0.0, 0.02, 1.0),                 # SE 0 (identical calls): decided by the sign
])  # fmt: skip
def test_one_sided_test_figures(delta, se, margin, p_value, lower, power):
    t = NITest(delta, se, margin, alpha=0.025, required_power=0.8)
    assert t.p_value == pytest.approx(p_value, rel=1e-3, abs=1e-6)
    assert t.lower == pytest.approx(lower, abs=1e-4)
    assert t.power == pytest.approx(power, abs=1e-4)
    assert t.required_se == pytest.approx(margin / (1.959964 + 0.841621), rel=1e-5)


@pytest.mark.parametrize("figures, kw, outcome, verdicts, reason_part", [
    # every finding clearly non-inferior and powered
    ({"Effusion": fig(-0.005, 0.01), "Pneumothorax": fig(0.0, 0.012)}, {"margin": 0.05}, "pass",
     {"Effusion": "nonInferior", "Pneumothorax": "nonInferior"}, "non-inferior at margin 0.05"),
    # powered, the drop crosses the margin -> fail, the reason names the finding, p and the margin
    ({"Effusion": fig(0.0, 0.01), "Pneumothorax": fig(-0.06, 0.01)}, {"margin": 0.05}, "fail",
     {"Effusion": "nonInferior", "Pneumothorax": "notShown"}, "Pneumothorax not shown non-inferior: ΔAUROC -0.0600"),
    # under-powered but clearly worse than the margin: inferiority is shown, a fail whatever the power
    ({"Pneumothorax": fig(-0.15, 0.03)}, {"margin": 0.05}, "fail", {"Pneumothorax": "inferior"},
     "Pneumothorax inferior"),
    # under-powered and not clearly worse: the gate refuses to pass and says how many positives it needs
    ({"Hernia": fig(0.0, 0.03, positives=20)}, {"margin": 0.05}, "noData", {"Hernia": "underpowered"},
     "needs about 57 positives, has 20"),
    # too few positives whatever the SE says (an SE of 0 from 4 perfectly separated cases)
    ({"Hernia": fig(0.0, 0.0, positives=4)}, {"margin": 0.05}, "noData", {"Hernia": "underpowered"},
     "4 positives < minPositives 10"),
    # a gated finding the evaluator has no paired figures for
    ({"Effusion": fig(0.0, 0.01)}, {"margin": 0.05, "findings": ("Effusion", "Mass")}, "noData",
     {"Effusion": "nonInferior", "Mass": "noData"}, "Mass: no paired AUROC"),
    # a fail on one finding wins over another's missing power
    ({"Hernia": fig(0.0, 0.03, positives=20), "Pneumothorax": fig(-0.065, 0.01)}, {"margin": 0.05}, "fail",
     {"Hernia": "underpowered", "Pneumothorax": "notShown"}, "Pneumothorax"),
    # only the gated findings count: a bad ungated finding is ignored
    ({"Effusion": fig(0.0, 0.01), "Pneumothorax": fig(-0.2, 0.01)}, {"margin": 0.05, "findings": ("Effusion",)},
     "pass", {"Effusion": "nonInferior"}, "1 finding(s)"),
    # sensitivity at the operating threshold gated too: AUROC fine, sensitivity 0.2 down -> fail
    ({"Effusion": fig(0.0, 0.005, sens=(-0.2, 0.03))}, {"margin": 0.05, "sensitivity_margin": 0.1}, "fail",
     {"Effusion": "inferior"}, "Δsensitivity -0.2000"),
])  # fmt: skip
def test_gate_verdicts(figures, kw, outcome, verdicts, reason_part):
    result = judge_non_inferiority(metric(**kw), figures)
    assert result.outcome == outcome, result.reason
    assert reason_part in result.reason
    rows = {r["finding"]: r for r in result.detail["findings"]}
    assert {f: r["verdict"] for f, r in rows.items()} == verdicts
    assert result.min == -kw["margin"]
    status = result.to_status()
    assert status["detail"]["margin"] == kw["margin"] and status["passed"] is (outcome == "pass")


def test_power_is_stated_for_the_whole_gate():
    """14 gated findings at power 0.8: each test needs 0.8^(1/14) = 0.98419, i.e. an SE below
    margin / (1.96 + 2.1494); an SE that would do for ONE finding (power 0.8) is not enough here."""
    figures = {f"F{i}": fig(0.0, 0.015) for i in range(14)}
    one = judge_non_inferiority(metric(margin=0.05, findings=("F0",)), figures)
    assert one.outcome == "pass"
    many = judge_non_inferiority(metric(margin=0.05), figures)
    assert many.outcome == "noData"
    assert many.detail["powerPerTest"] == pytest.approx(0.8 ** (1 / 14), abs=1e-4)
    assert "power 0.92 < 0.984" in many.reason


def test_the_metric_value_is_the_smallest_lower_bound():
    result = judge_non_inferiority(metric(margin=0.1), {"A": fig(0.0, 0.01), "B": fig(-0.02, 0.01)})
    assert result.value == pytest.approx(-0.02 - 1.959964 * 0.01, abs=1e-6)
