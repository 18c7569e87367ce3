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


def _clustered_predictions(patients=150, images_per_patient=4, seed=0):
    """Images of one patient share the label and nearly the score (what follow-up films do)."""
    rng = np.random.default_rng(seed)
    patient_label = rng.random(patients) < 0.3
    patient_score = rng.normal(size=patients) + 1.0 * patient_label
    groups = np.repeat([f"p{i:04d}" for i in range(patients)], images_per_patient)
    labels = np.repeat(patient_label, images_per_patient)
    scores = np.repeat(patient_score, images_per_patient) + rng.normal(scale=0.05, size=labels.size)
    return labels, scores, groups


def test_patient_bootstrap_widens_the_ci_on_the_same_predictions():
    labels, scores, groups = _clustered_predictions()
    by_image = metrics.bootstrap_auroc(labels, scores, resamples=400, seed=1)
    by_patient = metrics.bootstrap_auroc(labels, scores, resamples=400, seed=1, groups=groups)
    assert by_image.estimate == by_patient.estimate
    # 4 near-identical images per patient: the image bootstrap is ~sqrt(4) = 2x too narrow
    assert 1.6 < by_patient.width / by_image.width < 2.5
    assert by_patient.lower < by_patient.estimate < by_patient.upper


def test_one_image_per_patient_is_the_case_bootstrap():
    rng = np.random.default_rng(3)
    labels = rng.random(120) < 0.4
    scores = rng.random(120) + labels
    groups = [f"p{i:04d}" for i in range(120)]  # sorted names: patient codes == case indices
    assert metrics.bootstrap_auroc(labels, scores, 200, seed=2, groups=groups) == metrics.bootstrap_auroc(
        labels, scores, 200, seed=2
    )
    with pytest.raises(metrics.MetricInputError, match="one patient per case"):
        metrics.bootstrap_auroc(labels, scores, 50, groups=groups[:-1])


def test_sensitivity_and_specificity_cis_resample_patients():
    labels, scores, groups = _clustered_predictions(seed=4)
    threshold = 0.5
    point = metrics.operating_point(labels, scores, threshold)
    by_image = metrics.bootstrap_rates(labels[:, None], scores[:, None], [threshold], 400, seed=0)[0]
    by_patient = metrics.bootstrap_rates(labels[:, None], scores[:, None], [threshold], 400, seed=0, groups=groups)[0]
    for rates in (by_image, by_patient):
        assert rates.sensitivity.estimate == pytest.approx(point.sensitivity)
        assert rates.specificity.estimate == pytest.approx(point.specificity)
        assert rates.sensitivity.lower < point.sensitivity < rates.sensitivity.upper
    assert by_patient.sensitivity.width > 1.6 * by_image.sensitivity.width
    assert by_patient.specificity.width > 1.6 * by_image.specificity.width
    # everything called positive: sensitivity is 1 in every resample; a column without positives has none
    everything = metrics.bootstrap_rates(labels[:, None], scores[:, None], [-np.inf], 100, groups=groups)[0]
    assert (everything.sensitivity.lower, everything.sensitivity.upper) == (1.0, 1.0)
    assert everything.specificity.upper == 0.0
    none_positive = metrics.bootstrap_rates(np.zeros((10, 1)), np.arange(10.0)[:, None], [5.0], 50)[0]
    assert none_positive.sensitivity is None and none_positive.specificity.estimate == 0.5


def test_paired_auroc_difference_for_a_quantised_copy():
    labels, scores, groups = _clustered_predictions(seed=5)
    y, fp32 = labels[:, None].astype(float), scores[:, None]
    same, same_mean = metrics.bootstrap_auroc_difference(y, fp32, fp32, 200, groups=groups)
    assert (same[0].estimate, same[0].lower, same[0].upper) == (0.0, 0.0, 0.0) and same_mean.estimate == 0.0
    rng = np.random.default_rng(6)
    int8 = np.round(fp32 * 8) / 8 + rng.normal(scale=0.05, size=fp32.shape)  # coarse copy: small, noisy delta
    per_label, mean = metrics.bootstrap_auroc_difference(y, fp32, int8, 400, groups=groups)
    assert per_label[0].estimate == pytest.approx(metrics.auroc(labels, int8[:, 0]) - metrics.auroc(labels, scores))
    assert mean.estimate == pytest.approx(per_label[0].estimate)
    assert per_label[0].lower <= per_label[0].estimate <= per_label[0].upper
    # paired: far narrower than either model's own AUROC interval
    alone = metrics.bootstrap_auroc(labels, scores, 400, groups=groups)
    assert per_label[0].width < 0.25 * alone.width
    image_level, _ = metrics.bootstrap_auroc_difference(y, fp32, int8, 400)
    assert per_label[0].width > image_level[0].width


def test_report_names_its_ci_method_and_carries_rate_cis():
    labels, scores, groups = _clustered_predictions(seed=7)
    y, p = labels[:, None].astype(float), 1 / (1 + np.exp(-scores[:, None]))
    by_patient = build_report(y, p, ["Mass"], threshold_policy=0.5, bootstrap_resamples=200, groups=groups)
    by_image = build_report(y, p, ["Mass"], threshold_policy=0.5, bootstrap_resamples=200)
    assert by_patient["headline"]["ci_method"].startswith("patient") and by_patient["patients"] == 150
    assert by_image["headline"]["ci_method"].startswith("image") and by_image["patients"] is None
    lower, upper = by_patient["per_label"]["Mass"]["operating_point"]["sensitivity_ci"]
    assert lower < by_patient["per_label"]["Mass"]["operating_point"]["sensitivity"] < upper

    def width(report):
        low, high = report["headline"]["mean_auroc_ci"]
        return high - low

    assert width(by_patient) > 1.6 * width(by_image)


@pytest.mark.parametrize(
    ("labels", "probabilities", "expected"),
    [([0, 1], [0.2, 0.6], (0.04 + 0.16) / 2), ([0, 0, 1, 1], [0, 0, 1, 1], 0.0), ([1, 0], [0, 1], 1.0)],
)
def test_brier_score_table(labels, probabilities, expected):
    assert metrics.brier_score(labels, probabilities) == pytest.approx(expected)


def test_logit_calibrator_undoes_class_weight_inflation():
    rng = np.random.default_rng(8)
    z = rng.normal(scale=2.0, size=4000)
    true_p = 1 / (1 + np.exp(-(0.7 * z - 3.0)))  # a rare finding: ~8 % prevalence
    labels = rng.random(z.size) < true_p
    weight = 12.0  # class weighting multiplies the positive odds by ~w
    inflated = 1 / (1 + np.exp(-(0.7 * z - 3.0 + np.log(weight))))
    fit, check = slice(0, 2000), slice(2000, None)  # fitted on one half (the "val" split), judged on the other
    calibrator = metrics.fit_logit_calibrator(labels[fit], inflated[fit])
    assert calibrator.slope == pytest.approx(1.0, abs=0.12)
    assert calibrator.intercept == pytest.approx(-np.log(weight), abs=0.3)
    calibrated = calibrator.apply(inflated[check])
    before = metrics.expected_calibration_error(labels[check], inflated[check])
    after = metrics.expected_calibration_error(labels[check], calibrated)
    assert before > 0.15 and after < 0.03
    assert metrics.brier_score(labels[check], calibrated) < metrics.brier_score(labels[check], inflated[check]) - 0.05
    assert metrics.auroc(labels[check], calibrated) == pytest.approx(metrics.auroc(labels[check], inflated[check]))
    identity = metrics.LogitCalibrator()
    np.testing.assert_allclose(identity.apply([0.1, 0.5, 0.9]), [0.1, 0.5, 0.9])
    with pytest.raises(metrics.MetricInputError, match="positive and negative"):
        metrics.fit_logit_calibrator([0, 0, 0], [0.1, 0.2, 0.3])


def test_logit_calibrator_stays_finite_on_separable_classes():
    calibrator = metrics.fit_logit_calibrator([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert np.isfinite(calibrator.slope) and calibrator.slope > 0 and np.isfinite(calibrator.intercept)


@pytest.mark.parametrize(
    ("labels", "scores", "target", "expected"),
    [
        ([0, 1, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.9], 0.6, 0.7),  # 2 of 3 positives at >= 0.7
        ([0, 1, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.9], 0.9, 0.2),  # all 3 need the threshold down to 0.2
        ([0, 1, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.9], 1.0, 0.2),
        ([0, 1, 1], [0.5, 0.5, 0.9], 1.0, 0.5),  # ties: the tied negative comes along
    ],
)
def test_threshold_for_sensitivity(labels, scores, target, expected):
    threshold = metrics.threshold_for_sensitivity(labels, scores, target)
    assert threshold == expected
    assert metrics.operating_point(labels, scores, threshold).sensitivity >= target


def test_report_shows_calibration_before_and_after_and_target_sensitivity_points():
    from xraymodel import evaluation_report

    rng = np.random.default_rng(9)
    z = rng.normal(scale=2.0, size=(3000, 2))
    labels = (rng.random(z.shape) < 1 / (1 + np.exp(-(z - 2.5)))).astype(float)
    inflated = 1 / (1 + np.exp(-(z - 2.5 + np.log([8.0, 20.0]))))  # class weights 8 and 20
    groups = [f"p{i // 2:05d}" for i in range(3000)]  # two images per patient
    names = ["Mass", "Hernia"]
    calibrators = evaluation_report.fit_calibration(labels[:1500], inflated[:1500], names)
    restored = evaluation_report.calibrators_from_dict({n: c.as_dict() for n, c in calibrators.items()})
    assert restored == calibrators
    report = build_report(labels[1500:], inflated[1500:], names, threshold_policy=0.5, bootstrap_resamples=50,
                          groups=groups[1500:], calibrators=restored)
    headline = report["headline"]
    assert headline["mean_ece"] > 0.2 and headline["mean_ece_calibrated"] < 0.04
    assert headline["mean_brier_calibrated"] < headline["mean_brier"]
    for name in names:
        entry = report["per_label"][name]
        assert entry["calibrated"]["ece"] < entry["ece"]
    assert "mean_ece_calibrated" in build_report(labels, inflated, names, bootstrap_resamples=0)["headline"]
    points = evaluation_report.target_sensitivity_points(labels[:1500], inflated[:1500], names, 0.9,
                                                         groups=groups[:1500], bootstrap_resamples=100)
    for name, column in zip(names, range(2)):
        point = points[name]
        assert point["sensitivity"] >= 0.9
        low, high = point["sensitivity_ci"]
        assert low < point["sensitivity"] <= high
        assert point["specificity"] == pytest.approx(
            metrics.operating_point(labels[:1500, column], inflated[:1500, column], point["threshold"]).specificity
        )
    one_class = evaluation_report.target_sensitivity_points(np.zeros((4, 1)), np.full((4, 1), 0.3), ["Mass"], 0.9)
    assert one_class == {"Mass": None}
    assert evaluation_report.fit_calibration(np.zeros((4, 1)), np.full((4, 1), 0.3), ["Mass"])["Mass"].cases == 0
