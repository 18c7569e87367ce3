"""The evaluation of one version and the drift between two, as pure functions (table-driven).

Expected values are worked out by hand on tiny cases, or come from the sandbox golden set whose
simulated predictions are built to reach a configured mean AUROC exactly (to ~1e-3).
"""

from __future__ import annotations

import numpy as np
import pytest

from mdsandbox.synthetic_golden import GoldenSet
from xraymodel.evaluator import compute
from xraymodel.findings import FINDINGS

K = len(FINDINGS)


def _tile(labels: list[int], scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """The same one-finding case in every one of the 14 columns."""
    y = np.tile(np.array(labels)[:, None], (1, K))
    p = np.tile(np.array(scores, dtype=float)[:, None], (1, K))
    return y, p


@pytest.mark.parametrize(
    "labels, scores, auroc, youden, sensitivity, specificity",
    [
        # perfect ranking: every positive above every negative; the Youden point separates them
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0, 0.8, 1.0, 1.0),
        # reversed ranking: no threshold beats calling nothing positive (J = 0): max score + 1
        ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0, 1.9, 0.0, 1.0),
        # all tied: AUROC 0.5 (ties count one half); no useful operating point either
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5, 1.5, 0.0, 1.0),
        # one inversion among 2 x 2 pairs: 3/4
        ([0, 1, 0, 1], [0.1, 0.3, 0.4, 0.9], 0.75, 0.9, 0.5, 1.0),
    ],
)
def test_auroc_and_youden_operating_point(labels, scores, auroc, youden, sensitivity, specificity):
    y, p = _tile(labels, scores)
    ev = compute.evaluate_version(y, p, bootstrap_resamples=0)
    assert ev.samples == 4 and ev.auroc_mean == pytest.approx(auroc)
    f = ev.findings[0]
    assert f.auroc == pytest.approx(auroc)
    assert f.threshold == pytest.approx(youden)
    assert (f.sensitivity, f.specificity) == (pytest.approx(sensitivity), pytest.approx(specificity))
    assert ev.threshold_source == "youden" and ev.auroc_mean_ci is None


@pytest.mark.parametrize(
    "threshold, sensitivity, specificity",
    [(0.5, 2 / 3, 2 / 3), (0.0, 1.0, 0.0), (1.0, 0.0, 1.0), (0.25, 1.0, 1 / 3), (0.35, 2 / 3, 1 / 3)],
)
def test_configured_operating_threshold(threshold, sensitivity, specificity):
    y, p = _tile([0, 0, 0, 1, 1, 1], [0.1, 0.4, 0.6, 0.3, 0.7, 0.9])
    ev = compute.evaluate_version(y, p, operating_threshold=threshold, bootstrap_resamples=0)
    f = ev.findings[3]
    assert f.threshold == threshold and ev.threshold_source == "configured"
    assert f.sensitivity == pytest.approx(sensitivity) and f.specificity == pytest.approx(specificity)


def test_model_card_thresholds_win_over_the_golden_sets_youden_point():
    y, p = _tile([0, 0, 0, 1, 1, 1], [0.1, 0.4, 0.6, 0.3, 0.7, 0.9])
    youden = compute.evaluate_version(y, p, bootstrap_resamples=0).findings[2]
    ev = compute.evaluate_version(y, p, operating_thresholds={"Effusion": 0.25}, operating_threshold=0.5,
                                  bootstrap_resamples=0)  # fmt: skip
    effusion, mass = ev.findings[2], ev.findings[4]
    assert (effusion.finding, mass.finding) == ("Effusion", "Mass")
    assert effusion.threshold == 0.25 and youden.threshold != 0.25 and ev.threshold_source == "model card"
    assert effusion.sensitivity == pytest.approx(1.0) and effusion.specificity == pytest.approx(1 / 3)
    assert mass.threshold == 0.5  # not on the card: the configured threshold


def test_a_finding_without_positives_has_no_auroc_and_is_left_out_of_the_mean():
    y, p = _tile([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    y[:, 13] = 0  # Hernia: no positive case in this golden set
    p[:, 13] = [0.9, 0.8, 0.1, 0.2]  # whatever the model says cannot be scored
    ev = compute.evaluate_version(y, p, bootstrap_resamples=0)
    hernia = ev.findings[13]
    assert hernia.finding == "Hernia" and hernia.positives == 0 and hernia.auroc is None
    assert hernia.threshold is None and hernia.sensitivity is None and hernia.specificity is None  # no Youden point
    assert ev.auroc_mean == 1.0 and "Hernia" not in ev.auroc_by_finding()
    # with a configured threshold the negatives still give a specificity
    hernia = compute.evaluate_version(y, p, operating_threshold=0.5, bootstrap_resamples=0).findings[13]
    assert hernia.sensitivity is None and hernia.specificity == 0.5


@pytest.mark.parametrize(
    "labels, probabilities, ece",
    [
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.0),  # bin 0.5: mean 0.5, frequency 0.5
        ([1, 1, 1, 1], [0.95, 0.95, 0.95, 0.95], 0.05),
        ([0, 0, 1, 1], [0.05, 0.05, 0.95, 0.95], 0.05),
        ([1, 1, 0, 0], [0.05, 0.05, 0.95, 0.95], 0.95),
    ],
)
def test_calibration_error(labels, probabilities, ece):
    y, p = _tile(labels, probabilities)
    ev = compute.evaluate_version(y, p, bootstrap_resamples=0)
    assert ev.findings[0].ece == pytest.approx(ece) and ev.ece_mean == pytest.approx(ece)


def test_prediction_distribution_summary():
    y, p = _tile([0, 1] * 50, list(np.linspace(0, 1, 100)))
    f = compute.evaluate_version(y, p, bootstrap_resamples=0).findings[0]
    assert f.prediction_mean == pytest.approx(0.5)
    assert f.prediction_quantiles == pytest.approx((0.1, 0.5, 0.9))


@pytest.mark.parametrize(
    "predictions, problem",
    [
        ([[0.5] * K] * 3, "shape"),  # 3 rows for 4 images
        ([[0.5] * (K - 1)] * 4, "shape"),  # 13 findings
        ([[0.5] * K] * 3 + [[float("nan")] * K], "NaN"),
        ([[0.5] * K] * 3 + [[1.5] * K], "outside [0, 1]"),
        ([[0.5] * K] * 3 + [[-0.2] * K], "outside [0, 1]"),
        ([["a"] * K] * 4, "numeric"),
        ([[0.5] * K] * 3 + [[0.5]], "numeric"),  # ragged rows
        ("garbage", "numeric"),
        (None, "shape"),
    ],
)
def test_garbage_predictions_are_rejected(predictions, problem):
    with pytest.raises(compute.GarbagePredictions, match=problem.replace("[", r"\[").replace("]", r"\]")):
        compute.check_predictions(predictions, 4)


def test_float32_rounding_at_the_edges_is_accepted():
    p = compute.check_predictions([[1.0000001] * K, [-0.0000001] * K], 2)
    assert p.max() == 1.0 and p.min() == 0.0


@pytest.mark.parametrize(
    "accuracy",
    [0.70, 0.80, 0.845, 0.85, 0.90],
)
def test_measured_mean_auroc_matches_the_sandbox_golden_sets_configuration(accuracy):
    golden = GoldenSet()
    predictions = golden.predictions("7", accuracy)
    ev = compute.evaluate_version(golden.labels, predictions, bootstrap_resamples=200)
    assert ev.auroc_mean == pytest.approx(accuracy, abs=2e-3)
    low, high = ev.auroc_mean_ci
    assert low < ev.auroc_mean < high and 0.02 < high - low < 0.1  # 500 images: a CI a few points wide
    assert len(ev.auroc_by_finding()) == K


@pytest.mark.parametrize(
    "shift, low, high",
    [
        (0.0, 0.0, 1e-9),  # identical distributions
        (0.005, 0.2, None),  # even +0.005 moves a rare finding's (p ~ 0.002) whole distribution
        (0.1, 0.2, None),
        (-0.1, 0.2, None),
    ],
)
def test_psi_of_a_shifted_version_against_the_stable_one(shift, low, high):
    golden = GoldenSet()
    stable = golden.predictions("1", 0.85)
    current = golden.predictions("2", 0.85, shift)
    result = compute.drift(stable, current)
    assert set(result.psi) == set(FINDINGS) == set(result.ks)
    assert result.psi_max >= low
    if high is not None:
        assert result.psi_max <= high and max(result.ks.values()) <= 1e-9


def test_equal_quality_versions_do_not_drift():
    golden = GoldenSet()
    result = compute.drift(golden.predictions("1", 0.845), golden.predictions("2", 0.85))
    assert result.psi_max < 0.1  # "no shift" on the credit-scoring scale
    assert max(result.ks.values()) < 0.05


def test_paired_comparison_sees_one_collapsed_finding_that_the_mean_hides():
    """compare(): per-finding AUROC differences with DeLong SEs on the SAME golden images; a version whose
    mean AUROC holds (0.85) while Pneumothorax drops to 0.72 is visible only per finding."""
    golden = GoldenSet(size=1000, seed=0, min_positives=60)
    stable, canary = golden.predictions("1", 0.85), golden.predictions("2", 0.85, finding_accuracy={"Pneumothorax": 0.72})
    e_stable = compute.evaluate_version(golden.labels, stable)
    e_canary = compute.evaluate_version(golden.labels, canary)
    assert e_canary.auroc_mean == pytest.approx(e_stable.auroc_mean, abs=0.005)  # the mean hides it
    result = compute.compare(golden.labels, stable, canary, e_stable, e_canary)
    assert set(result.comparison) == set(FINDINGS) and result.psi
    drop = result.comparison["Pneumothorax"]
    per_finding = {f.finding: f.auroc for f in e_canary.findings}
    assert drop.auroc_delta == pytest.approx(per_finding["Pneumothorax"] - e_stable.auroc_by_finding()["Pneumothorax"])
    assert drop.auroc_delta < -0.1 and 0.005 < drop.auroc_delta_se < 0.05
    assert drop.positives == 60 and drop.negatives == 940
    assert drop.sensitivity_delta is not None and drop.sensitivity_delta_se is not None
    others = [c for f, c in result.comparison.items() if f != "Pneumothorax"]
    assert all(abs(c.auroc_delta) < 0.03 for c in others)  # the rest moved up a little to hold the mean
    assert all(c.auroc_correlation is not None and c.auroc_correlation > 0.2 for c in others)
