"""One evaluation, computed (pure NumPy, reusing xraymodel.metrics): a version's quality and its drift.

`evaluate_version(labels, probabilities)` turns one version's predicted probabilities on the golden
set into what gets exported for it:

* AUROC per finding, and their mean over the findings whose AUROC is defined (the golden set has
  both positive and negative cases); a bootstrap CI of the mean (same case resamples for every
  finding). AUROC, not accuracy: on ChestX-ray14 an all-negative classifier has 94.8 % mean
  per-label accuracy, so accuracy cannot tell a good model from a useless one;
* sensitivity and specificity per finding at the operating threshold: the configured one, or each
  finding's Youden point (max sensitivity + specificity - 1) on this version's own predictions;
* expected calibration error per finding (equal-width bins) and its mean;
* each finding's predicted-probability distribution: mean and the 10/50/90 % quantiles.

* per demographic subgroup of the golden set (``subgroups``: xraymodel.evaluator.golden.Subgroup,
  e.g. view=AP, age_band=60+), the mean AUROC over the attribute's common findings within that
  subgroup (the online side of xraymodel.subgroups; no CI: the gate's minPositives guards the counts).

`drift(baseline, current)` compares two versions' probabilities finding by finding: the population
stability index (bins at the baseline's deciles; < 0.1 none, 0.1-0.2 moderate, >= 0.2 significant)
and the two-sample Kolmogorov-Smirnov statistic.

`compare(labels, baseline, current, ...)` adds what the non-inferiority gate needs, per finding and
PAIRED (both versions scored the same golden images): the AUROC difference current - baseline with
DeLong's standard error (`xraymodel.paired`, Sun & Xu's fast algorithm) and the sensitivity
difference at each version's operating threshold with its paired (discordant-pairs) standard error.

`check_predictions` is the gate between the wire and these functions: anything that is not an
[N, 14] array of finite probabilities in [0, 1] is garbage and fails the version's evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from xraymodel import metrics, paired
from xraymodel.findings import FINDINGS

QUANTILES = (0.1, 0.5, 0.9)
PROBABILITY_TOLERANCE = 1e-6


class GarbagePredictions(ValueError):
    """Predictions that are not probabilities for every golden image and finding."""


@dataclass(frozen=True)
class FindingEvaluation:
    finding: str
    positives: int
    auroc: float | None  # None when the golden set has only one class for this finding
    threshold: float | None
    sensitivity: float | None
    specificity: float | None
    ece: float
    prediction_mean: float
    prediction_quantiles: tuple[float, ...]  # at QUANTILES


@dataclass(frozen=True)
class SubgroupEvaluation:
    """One subgroup's figures for one version: mean AUROC over `findings` (None: not scored)."""

    attribute: str
    value: str
    images: int
    positives: int  # fewest positives of any finding in the mean
    negatives: int
    findings: int  # how many findings the mean averages
    auroc_mean: float | None


@dataclass(frozen=True)
class VersionEvaluation:
    """Everything measured for one version on the golden set in one evaluation."""

    samples: int
    findings: tuple[FindingEvaluation, ...]
    auroc_mean: float | None
    auroc_mean_ci: tuple[float, float] | None  # bootstrap percentile interval, None when off
    ece_mean: float
    threshold_source: str  # "model card (served)" | "model card" (config) | "configured" | "youden"
    subgroups: tuple[SubgroupEvaluation, ...] = ()

    def auroc_by_finding(self) -> dict[str, float]:
        return {f.finding: f.auroc for f in self.findings if f.auroc is not None}

    def summary(self) -> dict:
        return {
            "samples": self.samples,
            "aurocMean": None if self.auroc_mean is None else round(self.auroc_mean, 4),
            "aurocMeanCI": None if self.auroc_mean_ci is None else [round(x, 4) for x in self.auroc_mean_ci],
            "eceMean": round(self.ece_mean, 4),
            **({"worstSubgroup": self.worst_subgroup()} if self.subgroups else {}),
        }

    def worst_subgroup(self) -> dict | None:
        """The scored subgroup with the lowest mean AUROC (attribute, subgroup, aurocMean, images,
        positives), None when none is scored."""
        scored = [g for g in self.subgroups if g.auroc_mean is not None]
        if not scored:
            return None
        g = min(scored, key=lambda x: x.auroc_mean or 0.0)
        return {"attribute": g.attribute, "subgroup": g.value, "aurocMean": round(g.auroc_mean or 0.0, 4),
                "images": g.images, "positives": g.positives}  # fmt: skip


@dataclass(frozen=True)
class FindingComparison:
    """One finding, current vs baseline on the same golden images (paired)."""

    finding: str
    positives: int
    negatives: int
    auroc_delta: float  # current - baseline
    auroc_delta_se: float  # DeLong
    auroc_correlation: float | None  # of the two AUROC estimates
    sensitivity_delta: float | None = None  # current - baseline, each at its operating threshold
    sensitivity_delta_se: float | None = None  # paired (discordant pairs among the positives)


@dataclass(frozen=True)
class DriftResult:
    """Prediction drift of `current` against `baseline`, per finding (and, from `compare`, the paired
    AUROC and sensitivity differences)."""

    psi: dict[str, float] = field(default_factory=dict)
    ks: dict[str, float] = field(default_factory=dict)
    comparison: dict[str, FindingComparison] = field(default_factory=dict)

    @property
    def psi_max(self) -> float:
        return max(self.psi.values()) if self.psi else float("nan")


def check_predictions(predictions: object, expected_rows: int, width: int = len(FINDINGS)) -> np.ndarray:
    """Validated float64 [expected_rows, width] probabilities, else GarbagePredictions saying why."""
    try:
        array = np.asarray(predictions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GarbagePredictions(f"predictions are not a numeric matrix: {exc}") from None
    if array.shape != (expected_rows, width):
        raise GarbagePredictions(f"predictions have shape {array.shape}, expected ({expected_rows}, {width})")
    if not np.all(np.isfinite(array)):
        raise GarbagePredictions("predictions contain NaN or infinity")
    if array.min() < -PROBABILITY_TOLERANCE or array.max() > 1 + PROBABILITY_TOLERANCE:
        raise GarbagePredictions(f"predictions outside [0, 1] (min {array.min():.4g}, max {array.max():.4g})")
    return np.clip(array, 0.0, 1.0)


def evaluate_version(
    labels: np.ndarray,
    probabilities: np.ndarray,
    findings: tuple[str, ...] = FINDINGS,
    *,
    operating_threshold: float | None = None,
    operating_thresholds: Mapping[str, float] | None = None,
    operating_thresholds_source: str = "model card",
    bootstrap_resamples: int = 200,
    ece_bins: int = 10,
    seed: int = 0,
    subgroups: Sequence = (),
) -> VersionEvaluation:
    """The figures of one version (module docstring). `labels` 0/1 and `probabilities` are [N, k].

    Threshold per finding: `operating_thresholds[finding]` (the version's model card: chosen on its
    validation split, out of sample here) when given, else `operating_threshold`, else the Youden
    point on these very images (optimistic). `operating_thresholds_source` names where the card's
    thresholds came from: "model card" (evaluator.yaml) or "model card (served)" (its model_card signature).
    """
    y = np.asarray(labels)
    p = check_predictions(probabilities, y.shape[0], len(findings))
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} differ")
    per_finding = []
    for k, finding in enumerate(findings):
        yk, pk = y[:, k], p[:, k]
        positives = int(yk.sum())
        both = 0 < positives < y.shape[0]
        auroc = metrics.auroc(yk, pk) if both else None
        if operating_thresholds and finding in operating_thresholds:
            threshold = float(operating_thresholds[finding])
        elif operating_threshold is not None:
            threshold = float(operating_threshold)
        elif both:
            threshold = metrics.youden_threshold(yk, pk)
        else:
            threshold = None
        sensitivity = specificity = None
        if threshold is not None:
            point = metrics.operating_point(yk, pk, threshold)
            sensitivity = None if positives == 0 else point.sensitivity
            specificity = None if positives == y.shape[0] else point.specificity
        per_finding.append(FindingEvaluation(
            finding=finding, positives=positives, auroc=auroc, threshold=threshold,
            sensitivity=sensitivity, specificity=specificity,
            ece=metrics.expected_calibration_error(yk, pk, ece_bins),
            prediction_mean=float(pk.mean()),
            prediction_quantiles=tuple(float(q) for q in np.quantile(pk, QUANTILES)),
        ))  # fmt: skip
    defined = [f.auroc for f in per_finding if f.auroc is not None]
    mean = float(np.mean(defined)) if defined else None
    ci = None
    if defined and bootstrap_resamples > 0:
        _, mean_ci = metrics.bootstrap_aurocs(y, p, resamples=bootstrap_resamples, seed=seed)
        if mean_ci is not None and mean_ci.resamples > 0:
            ci = (mean_ci.lower, mean_ci.upper)
    return VersionEvaluation(
        samples=int(y.shape[0]),
        findings=tuple(per_finding),
        auroc_mean=mean,
        auroc_mean_ci=ci,
        ece_mean=float(np.mean([f.ece for f in per_finding])),
        threshold_source=operating_thresholds_source
        if operating_thresholds
        else ("configured" if operating_threshold is not None else "youden"),
        subgroups=subgroup_aurocs(y, p, subgroups),
    )


def subgroup_aurocs(labels: np.ndarray, probabilities: np.ndarray, subgroups: Sequence) -> tuple[SubgroupEvaluation, ...]:
    """Each subgroup's mean AUROC over its findings (golden.Subgroup: attribute, value, mask, findings,
    positives, negatives); a subgroup without findings is listed with auroc_mean None."""
    y, p = np.asarray(labels), np.asarray(probabilities)
    out = []
    for group in subgroups:
        mask = np.asarray(group.mask, dtype=bool)
        mean = None
        if group.findings:
            mean = float(np.mean([metrics.auroc(y[mask, k], p[mask, k]) for k in group.findings]))
        out.append(SubgroupEvaluation(group.attribute, group.value, int(mask.sum()), int(group.positives),
                                      int(group.negatives), len(group.findings), mean))  # fmt: skip
    return tuple(out)


def drift(baseline: np.ndarray, current: np.ndarray, findings: tuple[str, ...] = FINDINGS, bins: int = 10) -> DriftResult:
    """PSI and KS per finding of `current` against `baseline` (both [N, k] probabilities)."""
    b, c = np.asarray(baseline, dtype=np.float64), np.asarray(current, dtype=np.float64)
    if b.ndim != 2 or c.ndim != 2 or b.shape[1] != len(findings) or c.shape[1] != len(findings):
        raise ValueError(f"drift needs [N, {len(findings)}] arrays, got {b.shape} and {c.shape}")
    psi, ks = {}, {}
    for k, finding in enumerate(findings):
        psi[finding] = metrics.population_stability_index(b[:, k], c[:, k], bins=bins)
        ks[finding] = metrics.kolmogorov_smirnov(b[:, k], c[:, k]).statistic
    return DriftResult(psi, ks)


def compare(
    labels: np.ndarray,
    baseline: np.ndarray,
    current: np.ndarray,
    baseline_evaluation: VersionEvaluation | None = None,
    current_evaluation: VersionEvaluation | None = None,
    findings: tuple[str, ...] = FINDINGS,
    bins: int = 10,
) -> DriftResult:
    """`drift` plus the paired per-finding comparison (module docstring). The operating thresholds
    come from the two evaluations (configured, or each version's Youden point); without them there is
    no sensitivity comparison."""
    result = drift(baseline, current, findings, bins)
    y = np.asarray(labels)
    b, c = np.asarray(baseline, dtype=np.float64), np.asarray(current, dtype=np.float64)
    if y.shape != b.shape or y.shape != c.shape:
        raise ValueError(f"labels {y.shape}, baseline {b.shape} and current {c.shape} differ")
    thresholds = {}
    for role, evaluation in (("baseline", baseline_evaluation), ("current", current_evaluation)):
        thresholds[role] = {f.finding: f.threshold for f in evaluation.findings} if evaluation is not None else {}
    out: dict[str, FindingComparison] = {}
    for k, finding in enumerate(findings):
        yk = y[:, k].astype(bool)
        positives = int(yk.sum())
        if positives == 0 or positives == yk.size:
            continue  # no AUROC, nothing to compare
        auc = paired.compare_auroc(yk, b[:, k], c[:, k])
        sens = None
        t_base, t_cur = thresholds["baseline"].get(finding), thresholds["current"].get(finding)
        if t_base is not None and t_cur is not None:
            sens = paired.paired_proportion_difference(b[yk, k] >= t_base, c[yk, k] >= t_cur)
        out[finding] = FindingComparison(
            finding=finding, positives=positives, negatives=int(yk.size - positives),
            auroc_delta=auc.delta, auroc_delta_se=auc.standard_error, auroc_correlation=auc.correlation,
            sensitivity_delta=None if sens is None else sens.delta,
            sensitivity_delta_se=None if sens is None else sens.standard_error,
        )  # fmt: skip
    return DriftResult(result.psi, result.ks, out)
