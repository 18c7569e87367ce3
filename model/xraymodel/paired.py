"""Paired comparison of two models scored on the SAME cases (pure NumPy): DeLong's test and paired sensitivity.

The online evaluator sends one golden set to the stable and to the new version, so every case is
scored twice. Comparing the two AUROCs as if they came from independent samples wastes that: the
scores of two versions of one model are strongly correlated, and the variance of their DIFFERENCE is
much smaller than the sum of the two variances. Two paired statistics, both computed per finding:

* `delong(labels, scores)`: the AUROCs of k score columns and their covariance matrix by DeLong,
  DeLong & Clarke-Pearson (1988), "Comparing the areas under two or more correlated receiver
  operating characteristic curves: a nonparametric approach", Biometrics 44:837-845, computed with
  the fast algorithm of Sun & Xu (2014), "Fast implementation of DeLong's algorithm for comparing
  the areas under correlated receiver operating characteristic curves", IEEE Signal Processing
  Letters 21(11):1389-1393: midranks instead of the m x n comparison matrix, O((m + n) log(m + n)).
  With m positives X and n negatives Y, psi(x, y) = 1 if x > y, 1/2 if x == y, else 0:
      AUC        = mean over i, j of psi(X_i, Y_j)
      V10_i      = mean over j of psi(X_i, Y_j)    (one per positive; Sun & Xu: (Tz_i - Tx_i) / n)
      V01_j      = mean over i of psi(X_i, Y_j)    (one per negative; Sun & Xu: 1 - (Tz_j - Ty_j) / m)
      S          = cov(V10) / m + cov(V01) / n     (k x k, sample covariances with ddof 1)
  where Tz, Tx, Ty are the midranks of a score among all cases, among the positives and among the
  negatives. Var(AUC_a - AUC_b) = S_aa + S_bb - 2 S_ab.
* `paired_proportion_difference(hits_a, hits_b)`: the difference of two proportions measured on the
  same cases (sensitivity at an operating threshold = share of positives called positive) and its
  Wald standard error from the discordant pairs, sqrt(b + c - (b - c)^2 / N) / N, where b counts the
  cases only `a` hits and c the cases only `b` hits (the variance behind McNemar's test).

`compare_auroc(labels, baseline, current)` packages the first for the usual question "how much worse
is `current` than `baseline`": the difference, its standard error and the correlation of the two
AUROC estimates. Both need at least one positive and one negative case (`MetricInputError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xraymodel.metrics import MetricInputError


def midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values` along the last axis, ties sharing the mean of their ranks."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, axis=-1, kind="mergesort")
    ranks = np.empty_like(x)
    for row in np.ndindex(x.shape[:-1]):
        sorted_row = x[row][order[row]]
        n = sorted_row.size
        starts = np.flatnonzero(np.r_[True, sorted_row[1:] != sorted_row[:-1]])
        ends = np.r_[starts[1:], n]  # exclusive
        block_rank = (starts + 1 + ends) / 2.0  # mean of the 1-based ranks starts+1 .. ends
        ranks[row][order[row]] = np.repeat(block_rank, ends - starts)
    return ranks


@dataclass(frozen=True)
class DeLong:
    """AUROCs of k score columns on the same cases and the DeLong covariance of those estimates."""

    aurocs: np.ndarray  # (k,)
    covariance: np.ndarray  # (k, k)
    positives: int
    negatives: int

    def difference(self, a: int, b: int) -> tuple[float, float]:
        """(AUC_a - AUC_b, its standard error)."""
        c = self.covariance
        variance = max(0.0, float(c[a, a] + c[b, b] - 2.0 * c[a, b]))
        return float(self.aurocs[a] - self.aurocs[b]), variance**0.5


def delong(labels: Sequence, scores: np.ndarray) -> DeLong:
    """AUROC of every column of `scores` [cases, k] and their DeLong covariance (Sun & Xu's algorithm)."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if y.ndim != 1 or s.ndim != 2 or s.shape[0] != y.shape[0]:
        raise MetricInputError(f"labels [cases] and scores [cases, k] needed, got {y.shape} and {s.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise MetricInputError("labels must be 0 or 1")
    if not np.all(np.isfinite(s)):
        raise MetricInputError("scores contain NaN or infinity")
    positive = y.astype(bool)
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        raise MetricInputError(f"DeLong needs positive and negative cases, got {m} positive of {m + n}")
    x, z = s[positive].T, s[~positive].T  # (k, m), (k, n)
    tx, ty = midranks(x), midranks(z)
    tz = midranks(np.concatenate([x, z], axis=1))  # positives first
    aurocs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v10 = (tz[:, :m] - tx) / n  # per positive: share of negatives it outranks (ties 1/2)
    v01 = 1.0 - (tz[:, m:] - ty) / m  # per negative: share of positives that outrank it
    s10 = np.atleast_2d(np.cov(v10, ddof=1)) if m > 1 else np.zeros((s.shape[1], s.shape[1]))
    s01 = np.atleast_2d(np.cov(v01, ddof=1)) if n > 1 else np.zeros((s.shape[1], s.shape[1]))
    return DeLong(aurocs=aurocs, covariance=s10 / m + s01 / n, positives=m, negatives=n)


@dataclass(frozen=True)
class PairedDifference:
    """current minus baseline of a statistic measured on the same cases, with its standard error."""

    baseline: float
    current: float
    delta: float
    standard_error: float
    cases: int  # cases behind it (positives for AUROC and sensitivity)
    correlation: float | None = None  # of the two estimates (AUROC: from the DeLong covariance)


def compare_auroc(labels: Sequence, baseline: Sequence, current: Sequence) -> PairedDifference:
    """AUROC(current) - AUROC(baseline) on the same cases, with DeLong's standard error."""
    result = delong(labels, np.column_stack([np.asarray(baseline, float), np.asarray(current, float)]))
    delta, se = result.difference(1, 0)
    c = result.covariance
    denominator = float(np.sqrt(c[0, 0] * c[1, 1]))
    correlation = float(c[0, 1] / denominator) if denominator > 0 else None
    return PairedDifference(
        baseline=float(result.aurocs[0]), current=float(result.aurocs[1]), delta=delta, standard_error=se,
        cases=result.positives, correlation=correlation,
    )  # fmt: skip


def paired_proportion_difference(hits_baseline: Sequence, hits_current: Sequence) -> PairedDifference:
    """Share of cases `current` hits minus the share `baseline` hits (same cases), Wald SE from the discordant pairs."""
    a = np.asarray(hits_baseline).astype(bool)
    b = np.asarray(hits_current).astype(bool)
    if a.shape != b.shape or a.ndim != 1:
        raise MetricInputError(f"two 1-D hit vectors of equal length needed, got {a.shape} and {b.shape}")
    n = a.size
    if n == 0:
        raise MetricInputError("no cases")
    only_current = int((b & ~a).sum())
    only_baseline = int((a & ~b).sum())
    delta = (only_current - only_baseline) / n
    variance = max(0.0, (only_current + only_baseline) - (only_current - only_baseline) ** 2 / n) / n**2
    return PairedDifference(
        baseline=float(a.mean()), current=float(b.mean()), delta=float(delta), standard_error=variance**0.5, cases=n
    )
