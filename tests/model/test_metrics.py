"""Pure-NumPy evaluation metrics: hand-computed tables, and scikit-learn as an independent oracle."""

from __future__ import annotations

import numpy as np
import pytest

from xraymodel import metrics
from xraymodel.evaluation_report import build_report


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),
        ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0),
        ([0, 1], [0.5, 0.5], 0.5),  # a tie counts one half
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),
        ([1, 0, 1, 0, 1], [0.3, 0.3, 0.7, 0.1, 0.3], (1 + 0.5 + 1 + 1 + 0.5 + 1) / 6),
    ],
)
def test_auroc_table(labels, scores, expected):
    assert metrics.auroc(labels, scores) == pytest.approx(expected)


def test_auroc_matches_sklearn_with_ties():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(20):
        labels = rng.random(300) < rng.uniform(0.05, 0.6)
        scores = np.round(rng.random(300) + labels * rng.uniform(0, 1), 1)  # many ties
        if labels.all() or not labels.any():
            continue
        assert metrics.auroc(labels, scores) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores))


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "positive and negative"),
        ([0, 1], [0.1, float("nan")], "NaN"),
        ([0, 1, 1], [0.1, 0.2], "equal length"),
        ([0, 2], [0.1, 0.2], "0 or 1"),
    ],
)
def test_auroc_rejects(labels, scores, message):
    with pytest.raises(metrics.MetricInputError, match=message):
        metrics.auroc(labels, scores)


def test_roc_curve_matches_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    labels = rng.random(200) < 0.3
    scores = np.round(rng.random(200) + 0.5 * labels, 2)
    curve = metrics.roc_curve(labels, scores)
    fpr, tpr, _ = sklearn_metrics.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(curve.false_positive_rate, fpr)
    np.testing.assert_allclose(curve.true_positive_rate, tpr)
    assert np.trapezoid(curve.true_positive_rate, curve.false_positive_rate) == pytest.approx(metrics.auroc(labels, scores))


def test_bootstrap_ci_brackets_estimate_and_narrows_with_more_cases():
    rng = np.random.default_rng(3)

    def sample(n):
        labels = rng.random(n) < 0.3
        return labels, rng.normal(size=n) + 1.2 * labels

    small = metrics.bootstrap_auroc(*sample(100), resamples=400, seed=0)
    large = metrics.bootstrap_auroc(*sample(4000), resamples=400, seed=0)
    for ci in (small, large):
        assert ci.lower <= ci.estimate <= ci.upper
        assert ci.resamples == 400
    assert (large.upper - large.lower) < (small.upper - small.lower) / 3
    # the true AUROC of N(1.2, 1) vs N(0, 1) is Phi(1.2 / sqrt 2) = 0.802
    assert large.lower < 0.802 < large.upper


def test_bootstrap_is_seeded_and_mean_ci_uses_shared_resamples():
    rng = np.random.default_rng(4)
    labels = (rng.random((300, 3)) < [0.2, 0.5, 0.0]).astype(float)  # third column has no positives
    scores = rng.random((300, 3)) + labels
    first = metrics.bootstrap_aurocs(labels, scores, resamples=200, seed=5)
    second = metrics.bootstrap_aurocs(labels, scores, resamples=200, seed=5)
    assert first == second
    per_label, mean = first
    assert per_label[2] is None
    assert mean.estimate == pytest.approx((per_label[0].estimate + per_label[1].estimate) / 2)
    assert mean.lower <= mean.estimate <= mean.upper


@pytest.mark.parametrize(
    ("labels", "scores", "threshold", "sens", "spec"),
    [
        ([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], 0.5, 0.5, 0.5),
        ([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], 0.4, 1.0, 0.5),  # >= threshold is positive
        ([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], 0.95, 0.0, 1.0),
    ],
)
def test_operating_point(labels, scores, threshold, sens, spec):
    point = metrics.operating_point(labels, scores, threshold)
    assert (point.sensitivity, point.specificity) == (sens, spec)
    assert point.true_positives + point.false_negatives == 2


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        ([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], 0.7),  # perfect split: lowest threshold with J=1
        ([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], 0.4),
    ],
)
def test_youden_threshold(labels, scores, expected):
    assert metrics.youden_threshold(labels, scores) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("labels", "probabilities", "bins", "expected"),
    [
        ([0, 1, 0, 1], [0.0, 1.0, 0.0, 1.0], 10, 0.0),  # perfectly calibrated and sharp
        ([0, 0, 0, 0], [0.9, 0.9, 0.9, 0.9], 10, 0.9),  # confident and always wrong
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 10, 0.0),  # 50% said, 50% observed
        ([1, 1, 0, 0], [0.2, 0.2, 0.8, 0.8], 2, 0.8),
    ],
)
def test_expected_calibration_error(labels, probabilities, bins, expected):
    assert metrics.expected_calibration_error(labels, probabilities, bins) == pytest.approx(expected)


def test_reliability_bins_put_one_in_last_bin():
    bins = metrics.reliability_bins([1, 0], [1.0, 0.0], bins=4)
    assert bins.counts.tolist() == [1, 0, 0, 1]


def test_psi_conventions():
    rng = np.random.default_rng(6)
    reference = rng.normal(size=20_000)
    assert metrics.population_stability_index(reference, rng.normal(size=20_000)) < metrics.PSI_MODERATE
    assert metrics.population_stability_index(reference, rng.normal(0.25, 1, size=20_000)) == pytest.approx(0.0625, abs=0.02)
    assert metrics.population_stability_index(reference, rng.normal(1.0, 1, size=20_000)) > metrics.PSI_SIGNIFICANT


def test_ks_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    for shift, n in [(0.0, 500), (0.2, 400), (0.5, 80)]:
        a, b = rng.normal(size=n), rng.normal(shift, 1, size=n + 37)
        ours = metrics.kolmogorov_smirnov(a, b)
        theirs = stats.ks_2samp(a, b, method="asymp")
        assert ours.statistic == pytest.approx(theirs.statistic)
        assert ours.p_value == pytest.approx(theirs.pvalue, abs=0.03)


def test_report_headline_is_auroc_not_accuracy():
    rng = np.random.default_rng(8)
    labels = (rng.random((2000, 3)) < [0.02, 0.05, 0.3]).astype(float)
    scores = np.zeros_like(labels) + rng.random(labels.shape) * 0.01  # an "all-negative" model
    report = build_report(labels, scores, ["Hernia", "Mass", "Effusion"], bootstrap_resamples=100)
    assert report["headline"]["mean_auroc"] == pytest.approx(0.5, abs=0.05)  # no skill, and it shows
    assert report["secondary"]["all_negative_mean_per_label_accuracy"] > 0.85  # what accuracy would claim
    assert "accuracy" not in " ".join(report["headline"])
    assert set(report["per_label"]["Mass"]) >= {"auroc", "operating_point", "ece", "prevalence"}
