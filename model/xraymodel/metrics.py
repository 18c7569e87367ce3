"""Evaluation metrics as pure NumPy functions (no TensorFlow, no scikit-learn).

What clinicians and regulators read, per finding: AUROC with a bootstrap 95% confidence interval,
sensitivity and specificity at an operating threshold (Youden's J or a given one) with their CIs,
and calibration (expected calibration error, reliability bins).

Every bootstrap takes ``groups`` (the patient ID of each case): resamples then draw PATIENTS with
replacement and keep all of a drawn patient's images (cluster bootstrap). Images of one patient are
correlated, so resampling images as if independent gives intervals that are too narrow (about
sqrt(images per patient) too narrow when a patient's images agree). Without ``groups`` each case
is its own cluster (the classic case bootstrap). Accuracy is deliberately absent from the headline:
on ChestX-ray14 an all-negative classifier already scores 94.8% mean per-label accuracy.

The online evaluator reuses these functions, plus the drift statistics between two score
distributions: population stability index (PSI) and the two-sample Kolmogorov-Smirnov statistic.

Conventions: ``labels`` are 0/1 (bool or numbers), ``scores`` are probabilities or any monotone
score, higher meaning "finding present"; a case is called positive when ``score >= threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# PSI conventions (credit scoring): < 0.1 no shift, 0.1-0.2 moderate, >= 0.2 significant.
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.2


class MetricInputError(ValueError):
    """Labels and scores that cannot be evaluated (shape mismatch, one class only, NaN scores)."""


def _as_binary_problem(labels: Sequence, scores: Sequence) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise MetricInputError(f"labels and scores must be 1-D and of equal length, got {y.shape} and {s.shape}")
    if not np.all(np.isfinite(s)):
        raise MetricInputError("scores contain NaN or infinity")
    if not np.all((y == 0) | (y == 1)):
        raise MetricInputError("labels must be 0 or 1")
    return y.astype(bool), s


def _require_both_classes(y: np.ndarray) -> None:
    positives = int(y.sum())
    if positives == 0 or positives == y.size:
        raise MetricInputError(
            f"AUROC needs positive and negative cases, got {positives} positive of {y.size}"
        )


@dataclass(frozen=True)
class _RankedScores:
    """Scores sorted ascending and grouped into tie blocks, reused across bootstrap resamples."""

    order: np.ndarray  # permutation sorting the scores ascending
    block_starts: np.ndarray  # index into the sorted array where each block of equal scores starts
    sorted_labels: np.ndarray  # bool, labels in sorted order


def _rank_scores(y: np.ndarray, s: np.ndarray) -> _RankedScores:
    order = np.argsort(s, kind="mergesort")
    sorted_scores = s[order]
    block_starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    return _RankedScores(order, block_starts, y[order])


def _weighted_auroc(ranked: _RankedScores, weights: np.ndarray) -> np.ndarray:
    """AUROC for each row of case ``weights`` [B, n] (multiplicities), ties counted one half.

    AUROC = P(score_pos > score_neg) + 0.5 P(tie) = sum_blocks P_b (N_below_b + N_b / 2) / (P N).
    """
    w = weights[:, ranked.order]
    positive = np.add.reduceat(w * ranked.sorted_labels, ranked.block_starts, axis=1)
    negative = np.add.reduceat(w * ~ranked.sorted_labels, ranked.block_starts, axis=1)
    negatives_below = np.cumsum(negative, axis=1) - negative
    total_pos, total_neg = positive.sum(axis=1), negative.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (positive * (negatives_below + 0.5 * negative)).sum(axis=1) / (total_pos * total_neg)


def auroc(labels: Sequence, scores: Sequence) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n_pos n_neg)); ties count one half."""
    y, s = _as_binary_problem(labels, scores)
    _require_both_classes(y)
    return float(_weighted_auroc(_rank_scores(y, s), np.ones((1, y.size)))[0])


def _cluster_codes(groups: Sequence | None, cases: int) -> np.ndarray:
    """Integer cluster code per case (0..G-1); every case its own cluster when ``groups`` is None."""
    if groups is None:
        return np.arange(cases)
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != cases:
        raise MetricInputError(f"groups must name one patient per case: {g.shape} for {cases} cases")
    return np.unique(g, return_inverse=True)[1].ravel()


def _resample_weights(codes: np.ndarray, batch: int, rng: np.random.Generator) -> np.ndarray:
    """[batch, cases] multiplicities: clusters drawn with replacement, each case weighted by its cluster's draws."""
    clusters = int(codes.max()) + 1 if codes.size else 0
    draws = rng.multinomial(clusters, np.full(clusters, 1.0 / clusters), size=batch).astype(np.float64)
    return draws[:, codes]


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise MetricInputError(f"confidence level must be in (0, 1), got {level}")


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with a percentile bootstrap interval."""

    estimate: float
    lower: float
    upper: float
    level: float
    resamples: int  # resamples that had both classes (the others are skipped)

    @property
    def width(self) -> float:
        return self.upper - self.lower

    def as_dict(self) -> dict:
        return {
            "estimate": self.estimate,
            "ci_lower": self.lower,
            "ci_upper": self.upper,
            "ci_level": self.level,
            "bootstrap_resamples": self.resamples,
        }


def _percentile_interval(estimate: float, values: np.ndarray, level: float) -> ConfidenceInterval:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return ConfidenceInterval(estimate, float("nan"), float("nan"), level, 0)
    alpha = (1.0 - level) / 2.0
    lower, upper = np.quantile(values, [alpha, 1.0 - alpha])
    return ConfidenceInterval(estimate, float(lower), float(upper), level, int(values.size))


def bootstrap_auroc(
    labels: Sequence,
    scores: Sequence,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: Sequence | None = None,
) -> ConfidenceInterval:
    """AUROC with a percentile bootstrap CI over patients (``groups``) or, without them, cases."""
    y, s = _as_binary_problem(labels, scores)
    per_label, _ = bootstrap_aurocs(y[:, None], s[:, None], resamples, level, seed, groups=groups)
    if per_label[0] is None:
        _require_both_classes(y)
    return per_label[0]


def _ranked_columns(y: np.ndarray, s: np.ndarray) -> list[_RankedScores | None]:
    cases, columns = y.shape
    ranked: list[_RankedScores | None] = []
    for column in range(columns):
        yc, sc = _as_binary_problem(y[:, column], s[:, column])
        both = 0 < yc.sum() < cases
        ranked.append(_rank_scores(yc, sc) if both else None)
    return ranked


def _as_case_matrix(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 2 or y.shape != s.shape:
        raise MetricInputError(f"labels and scores must be [cases, labels] of equal shape, got {y.shape}, {s.shape}")
    return y, s


def bootstrap_aurocs(
    labels: np.ndarray,
    scores: np.ndarray,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    chunk: int = 100,
    groups: Sequence | None = None,
) -> tuple[list[ConfidenceInterval | None], ConfidenceInterval | None]:
    """Per-column AUROC CIs and the CI of their mean, from the SAME resamples.

    ``labels`` and ``scores`` are [cases, labels]; ``groups`` names each case's patient (cluster
    bootstrap, see the module docstring). Each resample is a weighting of the cases, so every
    column's scores are sorted once. A column with one class only gets None and is left out of
    the mean; a resample in which a column has one class is skipped for that column (the mean uses
    resamples where every evaluated column is defined). ``resamples`` in each result says how many
    were usable.
    """
    y, s = _as_case_matrix(labels, scores)
    _check_level(level)
    cases, columns = y.shape
    codes = _cluster_codes(groups, cases)
    ranked = _ranked_columns(y, s)
    evaluated = [c for c in range(columns) if ranked[c] is not None]
    estimates = {c: float(_weighted_auroc(ranked[c], np.ones((1, cases)))[0]) for c in evaluated}
    rng = np.random.default_rng(seed)
    samples = np.full((resamples, columns), np.nan)
    done = 0
    while done < resamples:
        batch = min(chunk, resamples - done)
        weights = _resample_weights(codes, batch, rng)
        for c in evaluated:
            samples[done : done + batch, c] = _weighted_auroc(ranked[c], weights)
        done += batch
    per_label = [
        _percentile_interval(estimates[c], samples[:, c], level) if c in estimates else None for c in range(columns)
    ]
    if not evaluated:
        return per_label, None
    mean_estimate = float(np.mean([estimates[c] for c in evaluated]))
    return per_label, _percentile_interval(mean_estimate, samples[:, evaluated].mean(axis=1), level)


def bootstrap_auroc_difference(
    labels: np.ndarray,
    baseline_scores: np.ndarray,
    current_scores: np.ndarray,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    chunk: int = 100,
    groups: Sequence | None = None,
) -> tuple[list[ConfidenceInterval | None], ConfidenceInterval | None]:
    """Paired CI of AUROC(current) - AUROC(baseline) per column and for the mean over columns.

    Both score sets are evaluated on the SAME resample of patients (``groups``) in every round, so
    the interval reflects the difference between two models on the same images (e.g. INT8 vs
    FP32), not the spread of either model alone.
    """
    y, base = _as_case_matrix(labels, baseline_scores)
    _, cur = _as_case_matrix(labels, current_scores)
    if base.shape != cur.shape:
        raise MetricInputError(f"baseline {base.shape} and current {cur.shape} scores differ in shape")
    _check_level(level)
    cases, columns = y.shape
    codes = _cluster_codes(groups, cases)
    ranked_base, ranked_cur = _ranked_columns(y, base), _ranked_columns(y, cur)
    evaluated = [c for c in range(columns) if ranked_base[c] is not None]
    ones = np.ones((1, cases))
    estimates = {
        c: float(_weighted_auroc(ranked_cur[c], ones)[0] - _weighted_auroc(ranked_base[c], ones)[0]) for c in evaluated
    }
    rng = np.random.default_rng(seed)
    samples = np.full((resamples, columns), np.nan)
    done = 0
    while done < resamples:
        batch = min(chunk, resamples - done)
        weights = _resample_weights(codes, batch, rng)
        for c in evaluated:
            samples[done : done + batch, c] = _weighted_auroc(ranked_cur[c], weights) - _weighted_auroc(
                ranked_base[c], weights
            )
        done += batch
    per_label = [
        _percentile_interval(estimates[c], samples[:, c], level) if c in estimates else None for c in range(columns)
    ]
    if not evaluated:
        return per_label, None
    mean_estimate = float(np.mean([estimates[c] for c in evaluated]))
    return per_label, _percentile_interval(mean_estimate, samples[:, evaluated].mean(axis=1), level)


@dataclass(frozen=True)
class RateIntervals:
    """Sensitivity and specificity at one threshold, each with a bootstrap CI (None: class absent)."""

    sensitivity: ConfidenceInterval | None
    specificity: ConfidenceInterval | None


def bootstrap_rates(
    labels: np.ndarray,
    scores: np.ndarray,
    thresholds: Sequence[float],
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    chunk: int = 100,
    groups: Sequence | None = None,
) -> list[RateIntervals]:
    """Per-column sensitivity and specificity of ``score >= threshold`` with percentile bootstrap CIs.

    Same resampling as bootstrap_aurocs (patients when ``groups`` is given). A resample without
    positives (negatives) for a column is skipped for that column's sensitivity (specificity).
    """
    y, s = _as_case_matrix(labels, scores)
    _check_level(level)
    cases, columns = y.shape
    t = np.asarray(thresholds, dtype=np.float64)
    if t.shape != (columns,):
        raise MetricInputError(f"need one threshold per column ({columns}), got {t.shape}")
    for column in range(columns):
        _as_binary_problem(y[:, column], s[:, column])
    positive = y.astype(bool)
    called = s >= t
    true_pos = (called & positive).astype(np.float64)
    true_neg = (~called & ~positive).astype(np.float64)
    pos, neg = positive.astype(np.float64), (~positive).astype(np.float64)
    codes = _cluster_codes(groups, cases)
    rng = np.random.default_rng(seed)
    sens = np.full((resamples, columns), np.nan)
    spec = np.full((resamples, columns), np.nan)
    done = 0
    while done < resamples:
        batch = min(chunk, resamples - done)
        weights = _resample_weights(codes, batch, rng)
        with np.errstate(invalid="ignore", divide="ignore"):
            sens[done : done + batch] = (weights @ true_pos) / (weights @ pos)
            spec[done : done + batch] = (weights @ true_neg) / (weights @ neg)
        done += batch
    results = []
    for c in range(columns):
        n_pos, n_neg = pos[:, c].sum(), neg[:, c].sum()
        results.append(
            RateIntervals(
                _percentile_interval(float(true_pos[:, c].sum() / n_pos), sens[:, c], level) if n_pos else None,
                _percentile_interval(float(true_neg[:, c].sum() / n_neg), spec[:, c], level) if n_neg else None,
            )
        )
    return results


@dataclass(frozen=True)
class RocCurve:
    """ROC points from the strictest threshold (nothing positive) to the loosest (all positive)."""

    false_positive_rate: np.ndarray
    true_positive_rate: np.ndarray
    thresholds: np.ndarray  # thresholds[i] yields point i; thresholds[0] is +inf


def roc_curve(labels: Sequence, scores: Sequence) -> RocCurve:
    """Every distinct operating point of ``score >= threshold``."""
    y, s = _as_binary_problem(labels, scores)
    _require_both_classes(y)
    order = np.argsort(-s, kind="mergesort")
    s_desc, y_desc = s[order], y[order]
    last_of_block = np.flatnonzero(np.r_[s_desc[1:] != s_desc[:-1], True])
    true_pos = np.cumsum(y_desc)[last_of_block]
    false_pos = (last_of_block + 1) - true_pos
    tpr = np.r_[0.0, true_pos / y.sum()]
    fpr = np.r_[0.0, false_pos / (~y).sum()]
    thresholds = np.r_[np.inf, s_desc[last_of_block]]
    return RocCurve(fpr, tpr, thresholds)


def youden_threshold(labels: Sequence, scores: Sequence) -> float:
    """Threshold maximising Youden's J = sensitivity + specificity - 1 (lowest such threshold wins ties)."""
    curve = roc_curve(labels, scores)
    j = curve.true_positive_rate - curve.false_positive_rate
    best = int(np.flatnonzero(j == j.max())[0])
    threshold = curve.thresholds[best]
    return float(threshold) if np.isfinite(threshold) else float(np.max(np.asarray(scores)) + 1.0)


@dataclass(frozen=True)
class OperatingPoint:
    """Confusion counts and rates at one threshold (positive when score >= threshold)."""

    threshold: float
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int

    @property
    def sensitivity(self) -> float:
        positives = self.true_positives + self.false_negatives
        return self.true_positives / positives if positives else float("nan")

    @property
    def specificity(self) -> float:
        negatives = self.true_negatives + self.false_positives
        return self.true_negatives / negatives if negatives else float("nan")

    @property
    def positive_predictive_value(self) -> float:
        called = self.true_positives + self.false_positives
        return self.true_positives / called if called else float("nan")

    @property
    def negative_predictive_value(self) -> float:
        called = self.true_negatives + self.false_negatives
        return self.true_negatives / called if called else float("nan")

    def as_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "ppv": self.positive_predictive_value,
            "npv": self.negative_predictive_value,
            "tp": self.true_positives,
            "fp": self.false_positives,
            "tn": self.true_negatives,
            "fn": self.false_negatives,
        }


def operating_point(labels: Sequence, scores: Sequence, threshold: float) -> OperatingPoint:
    """Sensitivity, specificity, PPV, NPV of ``score >= threshold``."""
    y, s = _as_binary_problem(labels, scores)
    called = s >= threshold
    return OperatingPoint(
        threshold=float(threshold),
        true_positives=int(np.sum(called & y)),
        false_positives=int(np.sum(called & ~y)),
        true_negatives=int(np.sum(~called & ~y)),
        false_negatives=int(np.sum(~called & y)),
    )


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width probability bins: mean confidence vs observed frequency, and case counts."""

    edges: np.ndarray  # [bins + 1]
    mean_predicted: np.ndarray  # NaN where a bin is empty
    observed_frequency: np.ndarray  # NaN where a bin is empty
    counts: np.ndarray

    @property
    def expected_calibration_error(self) -> float:
        filled = self.counts > 0
        if not filled.any():
            return float("nan")
        gaps = np.abs(self.mean_predicted[filled] - self.observed_frequency[filled])
        return float(np.sum(gaps * self.counts[filled]) / self.counts.sum())


def reliability_bins(labels: Sequence, probabilities: Sequence, bins: int = 10) -> ReliabilityBins:
    """Bin probabilities into ``bins`` equal-width bins on [0, 1] (the last bin includes 1.0)."""
    y, p = _as_binary_problem(labels, probabilities)
    if np.any((p < 0) | (p > 1)):
        raise MetricInputError("probabilities must lie in [0, 1]")
    if bins < 1:
        raise MetricInputError("need at least one bin")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    sum_p = np.bincount(index, weights=p, minlength=bins)
    sum_y = np.bincount(index, weights=y.astype(np.float64), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.where(counts > 0, sum_p / counts, np.nan)
        observed = np.where(counts > 0, sum_y / counts, np.nan)
    return ReliabilityBins(edges, mean_predicted, observed, counts)


def expected_calibration_error(labels: Sequence, probabilities: Sequence, bins: int = 10) -> float:
    """ECE: count-weighted mean |mean confidence - observed frequency| over equal-width bins."""
    return reliability_bins(labels, probabilities, bins).expected_calibration_error


def brier_score(labels: Sequence, probabilities: Sequence) -> float:
    """Mean squared difference between the probability and the 0/1 outcome (0 is perfect)."""
    y, p = _as_binary_problem(labels, probabilities)
    if np.any((p < 0) | (p > 1)):
        raise MetricInputError("probabilities must lie in [0, 1]")
    return float(np.mean((p - y) ** 2))


_LOGIT_CLIP = 1e-7


def _logit(probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _LOGIT_CLIP, 1.0 - _LOGIT_CLIP)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class LogitCalibrator:
    """Platt scaling on the logit: calibrated = sigmoid(slope * logit(p) + intercept).

    Class-weighted training multiplies a finding's positive odds by about its weight (a shift of
    the logit), which a temperature alone (slope only) cannot undo; the intercept does. slope and
    intercept are also the calibration slope and intercept a reader asks for (1 and 0 when the
    model is calibrated). Monotone increasing (slope > 0), so AUROC is unchanged.
    """

    slope: float = 1.0
    intercept: float = 0.0
    cases: int = 0  # cases it was fitted on (0: identity, not fitted)

    def apply(self, probabilities: Sequence) -> np.ndarray:
        z = self.slope * _logit(np.asarray(probabilities, dtype=np.float64)) + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))

    def as_dict(self) -> dict:
        return {"method": "platt-logit", "slope": self.slope, "intercept": self.intercept, "fitted_on_cases": self.cases}


def fit_logit_calibrator(
    labels: Sequence, probabilities: Sequence, l2: float = 1e-3, iterations: int = 100
) -> LogitCalibrator:
    """Maximum-likelihood (slightly L2-regularised towards the identity) Platt fit by damped Newton.

    Refuses a set with one class only (nothing to fit); the small penalty keeps the fit finite when
    the classes are separable. The slope is kept positive so the calibrator never reverses ranks.
    """
    y, p = _as_binary_problem(labels, probabilities)
    _require_both_classes(y)
    z, t = _logit(p), y.astype(np.float64)
    design = np.column_stack([z, np.ones_like(z)])
    theta = np.array([1.0, 0.0])
    prior = np.array([1.0, 0.0])
    penalty = l2 * y.size

    def loss(parameters: np.ndarray) -> float:
        eta = design @ parameters
        # -log-likelihood of a Bernoulli with logit eta (logaddexp keeps it finite), plus the L2 term
        return float(np.sum(np.logaddexp(0.0, eta) - t * eta) + 0.5 * penalty * np.sum((parameters - prior) ** 2))

    current = loss(theta)
    for _ in range(iterations):
        q = 1.0 / (1.0 + np.exp(-np.clip(design @ theta, -500, 500)))
        gradient = design.T @ (q - t) + penalty * (theta - prior)
        hessian = (design * (q * (1 - q))[:, None]).T @ design + penalty * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-6 and loss(theta - scale * step) > current:  # damped Newton: never go uphill
            scale /= 2
        theta = theta - scale * step
        previous, current = current, loss(theta)
        if np.max(np.abs(scale * step)) < 1e-10 or previous - current < 1e-12:
            break
    slope = max(float(theta[0]), 1e-3)
    return LogitCalibrator(slope, float(theta[1]), int(y.size))


def threshold_for_sensitivity(labels: Sequence, scores: Sequence, target: float) -> float:
    """The highest threshold whose sensitivity (``score >= threshold``) reaches ``target`` on this set.

    The highest such threshold is the one with the best specificity among those meeting the target.
    """
    if not 0 < target <= 1:
        raise MetricInputError(f"target sensitivity must be in (0, 1], got {target}")
    curve = roc_curve(labels, scores)
    reaching = np.flatnonzero(curve.true_positive_rate >= target - 1e-12)
    return float(curve.thresholds[reaching[0]])


def population_stability_index(
    reference: Sequence, current: Sequence, bins: int = 10, epsilon: float = 1e-4
) -> float:
    """PSI = sum (c - r) ln(c / r) over bins cut at the reference distribution's quantiles.

    Empty bins get ``epsilon`` probability so the logarithm stays finite. Read it with
    PSI_MODERATE (0.1) and PSI_SIGNIFICANT (0.2).
    """
    ref = np.asarray(reference, dtype=np.float64).ravel()
    cur = np.asarray(current, dtype=np.float64).ravel()
    if ref.size == 0 or cur.size == 0:
        raise MetricInputError("PSI needs non-empty reference and current samples")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(cur))):
        raise MetricInputError("PSI inputs contain NaN or infinity")
    inner_edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(inner_edges, ref, side="right"), minlength=inner_edges.size + 1)
    cur_share = np.bincount(np.searchsorted(inner_edges, cur, side="right"), minlength=inner_edges.size + 1)
    r = np.maximum(ref_share / ref.size, epsilon)
    c = np.maximum(cur_share / cur.size, epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


@dataclass(frozen=True)
class KolmogorovSmirnov:
    """Two-sample KS statistic sup |F_ref - F_cur| and its asymptotic p-value."""

    statistic: float
    p_value: float


def kolmogorov_smirnov(reference: Sequence, current: Sequence) -> KolmogorovSmirnov:
    """Two-sample Kolmogorov-Smirnov test (asymptotic p-value, Stephens' small-sample correction)."""
    ref = np.sort(np.asarray(reference, dtype=np.float64).ravel())
    cur = np.sort(np.asarray(current, dtype=np.float64).ravel())
    if ref.size == 0 or cur.size == 0:
        raise MetricInputError("KS needs non-empty reference and current samples")
    pooled = np.concatenate([ref, cur])
    cdf_ref = np.searchsorted(ref, pooled, side="right") / ref.size
    cdf_cur = np.searchsorted(cur, pooled, side="right") / cur.size
    statistic = float(np.max(np.abs(cdf_ref - cdf_cur)))
    effective_n = ref.size * cur.size / (ref.size + cur.size)
    root = np.sqrt(effective_n)
    return KolmogorovSmirnov(statistic, _kolmogorov_survival((root + 0.12 + 0.11 / root) * statistic))


def _kolmogorov_survival(lam: float) -> float:
    """Q_KS(lambda) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 lambda^2), clipped to [0, 1]."""
    if lam < 1e-3:
        return 1.0
    k = np.arange(1, 101)
    terms = 2.0 * (-1.0) ** (k - 1) * np.exp(-2.0 * k**2 * lam**2)
    return float(np.clip(terms.sum(), 0.0, 1.0))
