"""DeLong's paired AUROC comparison (Sun & Xu's fast algorithm) and the paired sensitivity difference.

Every expected value comes from an independent computation: worked out by hand on tiny cases, the
O(m x n) structural components of DeLong et al. (1988) computed literally (the definition, not the
midrank shortcut), scikit-learn's AUROC and SciPy's midranks when installed, and a case bootstrap.
"""

from __future__ import annotations

import numpy as np
import pytest

from xraymodel import paired
from xraymodel.metrics import MetricInputError


def brute_force_delong(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs and covariance from the definition: psi over every (positive, negative) pair."""
    y = labels.astype(bool)
    k = scores.shape[1]
    m, n = int(y.sum()), int((~y).sum())
    v10 = np.zeros((k, m))
    v01 = np.zeros((k, n))
    aucs = np.zeros(k)
    for r in range(k):
        x, z = scores[y, r], scores[~y, r]
        psi = (x[:, None] > z[None, :]).astype(float) + 0.5 * (x[:, None] == z[None, :])
        v10[r], v01[r] = psi.mean(axis=1), psi.mean(axis=0)
        aucs[r] = psi.mean()
    cov = np.zeros((k, k))
    for a in range(k):
        for b in range(k):
            s10 = np.sum((v10[a] - v10[a].mean()) * (v10[b] - v10[b].mean())) / (m - 1)
            s01 = np.sum((v01[a] - v01[a].mean()) * (v01[b] - v01[b].mean())) / (n - 1)
            cov[a, b] = s10 / m + s01 / n
    return aucs, cov


def test_hand_worked_case():
    # positives 0.9, 0.6, 0.4; negatives 0.7, 0.4, 0.2:
    # V10 = (1, 2/3, 1/2), V01 = (1/3, 5/6, 1); AUC = 13/18; var = S10/3 + S01/3 = (7/108 + 13/108) / 3 = 5/81
    labels = np.array([1, 1, 1, 0, 0, 0])
    scores = np.array([0.9, 0.6, 0.4, 0.7, 0.4, 0.2])
    result = paired.delong(labels, scores)
    assert result.aurocs[0] == pytest.approx(13 / 18)
    assert result.covariance[0, 0] == pytest.approx(5 / 81)
    assert (result.positives, result.negatives) == (3, 3)


@pytest.mark.parametrize("seed, cases, prevalence, ties", [
    (0, 40, 0.3, False),
    (1, 200, 0.05, True),   # few positives, many ties (scores rounded to 1 decimal)
    (2, 501, 0.5, True),
    (3, 60, 0.9, False),
])  # fmt: skip
def test_fast_delong_equals_the_definition(seed, cases, prevalence, ties):
    rng = np.random.default_rng(seed)
    labels = (rng.random(cases) < prevalence).astype(int)
    labels[:2] = [0, 1]
    latent = rng.standard_normal((cases, 1)) + labels[:, None]
    scores = np.column_stack([latent[:, 0] + 0.5 * rng.standard_normal(cases), latent[:, 0] + rng.standard_normal(cases),
                              rng.standard_normal(cases)])  # fmt: skip
    if ties:
        scores = np.round(scores, 1)
    fast = paired.delong(labels, scores)
    aucs, cov = brute_force_delong(labels, scores)
    np.testing.assert_allclose(fast.aurocs, aucs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.covariance, cov, rtol=1e-10, atol=1e-15)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    for r in range(scores.shape[1]):
        assert fast.aurocs[r] == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores[:, r]), abs=1e-12)


def test_midranks_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    values = np.array([[3.0, 1.0, 2.0, 2.0, 5.0, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 2.0]])
    np.testing.assert_array_equal(paired.midranks(values), np.vstack([stats.rankdata(v) for v in values]))


def test_paired_standard_error_agrees_with_a_case_bootstrap():
    """DeLong's SE of the difference is a large-sample estimate; a case bootstrap estimates the same thing."""
    rng = np.random.default_rng(7)
    cases = 600
    labels = (rng.random(cases) < 0.2).astype(int)
    shared = rng.standard_normal(cases)
    baseline = 1.2 * labels + shared + 0.6 * rng.standard_normal(cases)
    current = 1.0 * labels + shared + 0.6 * rng.standard_normal(cases)
    result = paired.compare_auroc(labels, baseline, current)
    deltas = []
    for _ in range(1500):
        idx = rng.integers(0, cases, cases)
        y = labels[idx]
        if 0 < y.sum() < cases:
            deltas.append(paired.compare_auroc(y, baseline[idx], current[idx]).delta)
    assert result.standard_error == pytest.approx(np.std(deltas, ddof=1), rel=0.12)
    # the pairing matters: the SE of the difference is far below that of independent samples
    independent = (paired.delong(labels, baseline).covariance[0, 0] + paired.delong(labels, current).covariance[0, 0]) ** 0.5
    assert result.standard_error < 0.7 * independent  # = sqrt(1 - r) for equal variances, r ~ 0.59 here
    assert result.correlation is not None and result.correlation > 0.5


def test_identical_scores_have_a_zero_difference_and_zero_standard_error():
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.1, 0.7, 0.3, 0.4, 0.9, 0.5])
    result = paired.compare_auroc(labels, scores, scores)
    assert result.delta == 0.0 and result.standard_error == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("baseline, current, delta, se", [
    # 10 positives: baseline hits 8, current hits 6; discordant: current-only 0, baseline-only 2
    ([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0, 0, 0], -0.2, (2 - 4 / 10) ** 0.5 / 10),
    # same share, different cases: delta 0 but discordant pairs b = c = 2 -> SE sqrt(4) / 10
    ([1, 1, 0, 0, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1, 1, 1], 0.0, 0.2),
    # identical calls: no discordant pair, SE 0
    ([1, 0, 1, 0], [1, 0, 1, 0], 0.0, 0.0),
])  # fmt: skip
def test_paired_proportion_difference(baseline, current, delta, se):
    result = paired.paired_proportion_difference(baseline, current)
    assert result.delta == pytest.approx(delta)
    assert result.standard_error == pytest.approx(se)
    assert result.cases == len(baseline)


@pytest.mark.parametrize("labels, scores, message", [
    ([1, 1, 1], [0.1, 0.2, 0.3], "positive and negative"),
    ([0, 1, 2], [0.1, 0.2, 0.3], "0 or 1"),
    ([0, 1, 1], [0.1, float("nan"), 0.3], "NaN"),
    ([0, 1], [0.1, 0.2, 0.3], "labels"),
])  # fmt: skip
def test_delong_rejects_what_it_cannot_evaluate(labels, scores, message):
    with pytest.raises(MetricInputError, match=message):
        paired.delong(np.array(labels), np.array(scores))
