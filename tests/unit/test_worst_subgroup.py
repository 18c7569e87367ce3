"""The worst-subgroup gate's judgement (pure, table-driven), its spec and its validation.

The evaluator exports the canary's mean AUROC per demographic subgroup and the golden set's subgroup
counts; the gate fails on the lowest subgroup below `min`, is NO DATA (never a pass) when a
considered subgroup has too few positives or no figures, and passes only when every one is judged.
"""

from __future__ import annotations

import pytest

from modeldeploy.analysis.runner import WORST_SUBGROUP, metric_query
from modeldeploy.analysis.subgroups import SubgroupFigure, judge_worst_subgroup
from modeldeploy.spec import EVALUATOR_BUILTINS, PAIRED_BUILTINS, MetricSpec, WorstSubgroup
from modeldeploy.validation import validate_manifest


def metric(minimum: float = 0.78, **kw) -> MetricSpec:
    return MetricSpec(name="worst-subgroup", builtin="worstSubgroup", min=minimum,
                      worst_subgroup=WorstSubgroup(**kw) if kw else None)  # fmt: skip


def g(attribute: str, subgroup: str, auroc: float | None, images: int = 240, positives: int = 30) -> SubgroupFigure:
    return SubgroupFigure(attribute, subgroup, auroc, images, positives)


HEALTHY = [g("sex", "F", 0.85), g("sex", "M", 0.84), g("view", "AP", 0.83), g("view", "PA", 0.86)]


@pytest.mark.parametrize("figures, kw, outcome, value, verdicts, reason_part", [
    # every subgroup judged and above min: pass, the value is the lowest subgroup (view=AP)
    (HEALTHY, {}, "pass", 0.83, {"sex=F": "pass", "sex=M": "pass", "view=AP": "pass", "view=PA": "pass"},
     "worst subgroup view=AP: mean AUROC 0.8300 (240 images, 30 positives) >= min 0.78 (4 subgroups of sex, view)"),
    # the canary's mean could hold while AP films collapse: fail, naming the subgroup
    ([*HEALTHY[:2], g("view", "AP", 0.72), g("view", "PA", 0.93)], {}, "fail", 0.72,
     {"sex=F": "pass", "sex=M": "pass", "view=AP": "below", "view=PA": "pass"},
     "worst subgroup view=AP: mean AUROC 0.7200 (240 images, 30 positives) < min 0.78"),
    # two below: the lowest is named, the other listed
    ([g("age_band", "60+", 0.70), g("age_band", "40-59", 0.76), g("age_band", "18-39", 0.9)], {}, "fail", 0.70,
     {"age_band=60+": "below", "age_band=40-59": "below", "age_band=18-39": "pass"},
     "also below: age_band=40-59 0.7600"),
    # too few positives: no data for that subgroup, and the gate refuses to pass...
    ([*HEALTHY, g("age_band", "0-17", 0.95, images=60, positives=7)], {}, "noData", 0.83,
     {"sex=F": "pass", "sex=M": "pass", "view=AP": "pass", "view=PA": "pass", "age_band=0-17": "noData"},
     "age_band=0-17: 7 positives < minPositives 10"),
    # ...even when its AUROC is far below min: a tiny subgroup's AUROC is noise, neither fail nor pass
    ([*HEALTHY, g("age_band", "0-17", 0.40, images=60, positives=7)], {}, "noData", 0.83,
     {"sex=F": "pass", "sex=M": "pass", "view=AP": "pass", "view=PA": "pass", "age_band=0-17": "noData"},
     "7 positives < minPositives 10"),
    # ...but a judged subgroup below min still fails the gate
    ([g("view", "AP", 0.70), g("view", "PA", 0.9), g("age_band", "0-17", 0.9, positives=3)], {}, "fail", 0.70,
     {"view=AP": "below", "view=PA": "pass", "age_band=0-17": "noData"}, "view=AP"),
    # minPositives lowered: the small subgroup is judged
    ([*HEALTHY, g("age_band", "0-17", 0.95, images=60, positives=7)], {"min_positives": 5}, "pass", 0.83,
     {"sex=F": "pass", "sex=M": "pass", "view=AP": "pass", "view=PA": "pass", "age_band=0-17": "pass"}, ">= min"),
    # a subgroup the evaluator lists but could not score (under 20 images): no data
    ([*HEALTHY, g("view", "LL", None, images=8, positives=0)], {}, "noData", 0.83,
     {"sex=F": "pass", "sex=M": "pass", "view=AP": "pass", "view=PA": "pass", "view=LL": "noData"},
     "view=LL: not scored by the evaluator"),
    # attributes restrict the gate: a bad sex subgroup is ignored when only the view is gated
    ([g("sex", "F", 0.60), g("view", "AP", 0.83), g("view", "PA", 0.86)], {"attributes": ("view",)}, "pass", 0.83,
     {"view=AP": "pass", "view=PA": "pass"}, "2 subgroups of view"),
    # a requested attribute the golden set has no column for
    (HEALTHY, {"attributes": ("view", "site")}, "noData", 0.83, {"view=AP": "pass", "view=PA": "pass"},
     "site: no subgroup in the golden set (column 'Site')"),
    # no demographic columns at all: no figures, never a pass
    ([], {}, "noData", None, {}, "need demographic columns ('Patient Gender', 'Patient Age', 'View Position', 'Site')"),
    # counts there but no AUROC of the canary (its evaluation was withdrawn)
    ([g("view", "AP", None), g("view", "PA", None)], {}, "noData", None, {"view=AP": "noData", "view=PA": "noData"},
     "no subgroup mean AUROC of the canary"),
    # unknown counts (the evaluator's count series missing): no data, not a pass
    ([g("view", "AP", 0.9, positives=None), g("view", "PA", 0.9)], {}, "noData", 0.9,  # type: ignore[arg-type]
     {"view=AP": "noData", "view=PA": "pass"}, "unknown positives"),
])  # fmt: skip
def test_gate_verdicts(figures, kw, outcome, value, verdicts, reason_part):
    result = judge_worst_subgroup(metric(**kw), figures)
    assert result.outcome == outcome, result.reason
    assert reason_part in result.reason, result.reason
    assert result.value == value and result.min == 0.78 and result.max is None
    rows = {f"{r['attribute']}={r['subgroup']}": r["verdict"] for r in result.detail["subgroups"]}
    assert rows == verdicts
    status = result.to_status()
    assert status["passed"] is (outcome == "pass")
    worst = status["detail"]["worst"]
    if value is None:
        assert worst is None
    else:
        assert worst["aurocMean"] == value and f"{worst['attribute']}={worst['subgroup']}" in verdicts


def test_the_boundary_passes_and_the_default_min_positives_is_10():
    assert judge_worst_subgroup(metric(0.83), HEALTHY).outcome == "pass"  # min is the lowest PASSING value
    assert judge_worst_subgroup(metric(0.8301), HEALTHY).outcome == "fail"
    edge = [g("view", "AP", 0.9, positives=10), g("view", "PA", 0.9, positives=9)]
    result = judge_worst_subgroup(metric(), edge)
    assert result.outcome == "noData" and "view=PA: 9 positives" in result.reason and result.detail["minPositives"] == 10


def test_it_is_an_evaluator_builtin_of_the_canary_alone():
    assert "worstSubgroup" in EVALUATOR_BUILTINS and "worstSubgroup" not in PAIRED_BUILTINS
    assert metric_query(metric(), None, None, 30.0) is WORST_SUBGROUP  # type: ignore[arg-type]


def _manifest(*metrics: dict, evaluation: bool = True) -> dict:
    spec: dict = {
        "model": {"name": "resnet50_chest_xray", "basePath": "s3://models/resnet50", "version": 2},
        "analysis": {"interval": "30s", "metrics": list(metrics)},
    }
    if evaluation:
        spec["evaluation"] = {"goldenSet": {"uri": "pvc://golden/cxr14"}}
    return {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "resnet50", "namespace": "radiology"}, "spec": spec}  # fmt: skip


def test_a_valid_gate_parses_with_its_defaults():
    result = validate_manifest(_manifest({"name": "worst-subgroup", "builtin": "worstSubgroup", "min": 0.78}))
    assert result.ok, [str(p) for p in result.problems]
    m = result.spec.analysis.metrics[0]
    assert m.builtin == "worstSubgroup" and m.min == 0.78 and m.worst_subgroup is None
    result = validate_manifest(_manifest({"name": "w", "builtin": "worstSubgroup", "min": 0.8,
                                          "worstSubgroup": {"attributes": ["view", "age_band"]}}))  # fmt: skip
    assert result.ok, [str(p) for p in result.problems]
    ws = result.spec.analysis.metrics[0].worst_subgroup
    assert ws.attributes == ("view", "age_band") and ws.min_positives == 10  # the CRD default


@pytest.mark.parametrize("entry, evaluation, field, message", [
    ({"builtin": "worstSubgroup", "max": 0.9}, True, "spec.analysis.metrics[0]", "worstSubgroup needs min"),
    ({"builtin": "worstSubgroup", "min": 0.7, "max": 0.9}, True, "spec.analysis.metrics[0]", "and no max"),
    ({"builtin": "accuracy", "min": 0.7, "worstSubgroup": {}}, True, "spec.analysis.metrics[0]", "only for builtin worstSubgroup"),
    ({"builtin": "worstSubgroup", "min": 0.7, "worstSubgroup": {"attributes": ["ethnicity"]}}, True,
     "spec.analysis.metrics[0].worstSubgroup.attributes[0]", "ethnicity"),
    ({"builtin": "worstSubgroup", "min": 0.7, "worstSubgroup": {"minPositives": 0}}, True,
     "spec.analysis.metrics[0].worstSubgroup.minPositives", ""),
    ({"builtin": "worstSubgroup", "min": 0.7, "failFast": {"min": 0.5}}, True, "spec.analysis.metrics[0].failFast",
     "worstSubgroup has no fail-fast bound"),
    ({"builtin": "worstSubgroup", "min": 0.7}, False, "spec.analysis.metrics[0].builtin", "needs spec.evaluation"),
])  # fmt: skip
def test_invalid_gates_name_the_field(entry, evaluation, field, message):
    result = validate_manifest(_manifest({"name": "worst-subgroup", **entry}, evaluation=evaluation))
    assert not result.ok
    shown = [str(p) for p in result.problems]
    assert any(p.path.startswith(field) and message in p.message for p in result.problems), shown


def test_kubectl_modeldeploy_history_prints_the_subgroup_rows():
    from modeldeploy.cli.plugin import format_history

    figures = [g("view", "AP", 0.72, positives=32), g("view", "PA", 0.93, images=360, positives=55),
               g("age_band", "0-17", 0.9, images=60, positives=7)]  # fmt: skip
    result = judge_worst_subgroup(metric(), figures).to_status()
    text = format_history([{"at": "2026-12-04T04:00:00Z", "action": "rolledBack", "version": 2, "fromVersion": 1,
                            "reason": "analysis failed", "metrics": [result]}])  # fmt: skip
    assert "worst-subgroup=0.72" in text
    assert "view=AP" in text and "mean AUROC 0.7200 (240 images, 32 positives): below" in text
    assert "age_band=0-17" in text and "7 positives < minPositives 10" in text
