"""Turn labels and predicted probabilities into the evaluation report (pure NumPy, JSON-ready).

The headline is mean AUROC over findings with a bootstrap 95% CI; per finding: AUROC with CI,
sensitivity/specificity/PPV/NPV at an operating threshold (sensitivity and specificity with CIs),
prevalence and expected calibration error. Given the patient ID of each image (``groups``), every
CI resamples patients (cluster bootstrap); without them it resamples images and the report says
so ("ci_method"). Accuracy appears only under "secondary", next to the all-negative baseline that shows why
it misleads on imbalanced findings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from xraymodel import metrics

REPORT_SCHEMA = "xraymodel.evaluation/v1"

CI_PATIENT_BOOTSTRAP = "patient cluster bootstrap (percentile)"
CI_CASE_BOOTSTRAP = "image bootstrap (percentile; no patient IDs: too narrow when patients have several images)"

THRESHOLD_YOUDEN = "youden"


def resolve_thresholds(
    labels: np.ndarray,
    probabilities: np.ndarray,
    label_names: Sequence[str],
    policy: str | float | Mapping[str, float],
) -> tuple[dict[str, float], str]:
    """Per-finding thresholds and where they came from.

    ``policy`` is "youden" (maximise J on THIS set: optimistic, flagged "youden-in-sample"), a
    number used for every finding, or a mapping finding -> threshold (e.g. chosen on the
    validation split at training time: "given").
    """
    if isinstance(policy, Mapping):
        missing = [name for name in label_names if name not in policy]
        if missing:
            raise metrics.MetricInputError(f"no threshold given for {missing}")
        return {name: float(policy[name]) for name in label_names}, "given"
    if isinstance(policy, (int, float)) and not isinstance(policy, bool):
        return {name: float(policy) for name in label_names}, "fixed"
    if policy != THRESHOLD_YOUDEN:
        raise metrics.MetricInputError(f"threshold policy must be 'youden', a number or a mapping, not {policy!r}")
    thresholds = {}
    for column, name in enumerate(label_names):
        y = labels[:, column]
        if 0 < y.sum() < y.size:
            thresholds[name] = metrics.youden_threshold(y, probabilities[:, column])
        else:
            thresholds[name] = 0.5
    return thresholds, "youden-in-sample"


def fit_calibration(
    labels: np.ndarray, probabilities: np.ndarray, label_names: Sequence[str]
) -> dict[str, metrics.LogitCalibrator]:
    """Per-finding Platt calibrators (identity, ``cases`` 0, for a finding with one class here)."""
    y, p = np.asarray(labels, dtype=np.float64), np.asarray(probabilities, dtype=np.float64)
    fitted = {}
    for column, name in enumerate(label_names):
        yc = y[:, column]
        fitted[name] = (
            metrics.fit_logit_calibrator(yc, p[:, column]) if 0 < yc.sum() < yc.size else metrics.LogitCalibrator()
        )
    return fitted


def calibrators_from_dict(raw: Mapping[str, Mapping] | None) -> dict[str, metrics.LogitCalibrator] | None:
    """Inverse of LogitCalibrator.as_dict per finding (None stays None)."""
    if not raw:
        return None
    return {
        name: metrics.LogitCalibrator(float(entry["slope"]), float(entry["intercept"]), int(entry.get("fitted_on_cases", 0)))
        for name, entry in raw.items()
    }


def target_sensitivity_points(
    labels: np.ndarray,
    probabilities: np.ndarray,
    label_names: Sequence[str],
    target: float,
    *,
    groups: Sequence | None = None,
    bootstrap_resamples: int = 200,
    seed: int = 0,
) -> dict[str, dict | None]:
    """Per finding: the highest threshold reaching ``target`` sensitivity here, with sens/spec CIs there."""
    y, p = np.asarray(labels, dtype=np.float64), np.asarray(probabilities, dtype=np.float64)
    thresholds = {}
    for column, name in enumerate(label_names):
        yc = y[:, column]
        if 0 < yc.sum() < yc.size:
            thresholds[name] = metrics.threshold_for_sensitivity(yc, p[:, column], target)
    columns = [c for c, name in enumerate(label_names) if name in thresholds]
    rates = (
        metrics.bootstrap_rates(
            y[:, columns], p[:, columns], [thresholds[label_names[c]] for c in columns], bootstrap_resamples,
            seed=seed, groups=groups,
        )
        if columns
        else []
    )
    points: dict[str, dict | None] = {name: None for name in label_names}
    for column, rate in zip(columns, rates):
        name = label_names[column]
        points[name] = {
            "target_sensitivity": target,
            "threshold": thresholds[name],
            "sensitivity": rate.sensitivity.estimate,
            "sensitivity_ci": [rate.sensitivity.lower, rate.sensitivity.upper],
            "specificity": rate.specificity.estimate,
            "specificity_ci": [rate.specificity.lower, rate.specificity.upper],
        }
    return _json_ready(points)


def build_report(
    labels: np.ndarray,
    probabilities: np.ndarray,
    label_names: Sequence[str],
    *,
    threshold_policy: str | float | Mapping[str, float] = THRESHOLD_YOUDEN,
    bootstrap_resamples: int = 1000,
    ci_level: float = 0.95,
    calibration_bins: int = 10,
    seed: int = 0,
    groups: Sequence | None = None,
    calibrators: Mapping[str, metrics.LogitCalibrator] | None = None,
) -> dict:
    """The full evaluation report as a JSON-serialisable dict (see module docstring).

    ``groups``: the patient ID of each case; the CIs then resample patients. ``calibrators``
    (fitted elsewhere, e.g. on the validation split): ECE and Brier score are also reported for
    the calibrated probabilities ("calibrated" per finding, mean_*_calibrated in the headline).
    """
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    if y.ndim != 2 or y.shape != p.shape or y.shape[1] != len(label_names):
        raise metrics.MetricInputError(
            f"labels {y.shape} and probabilities {p.shape} must both be [cases, {len(label_names)}]"
        )
    per_label_ci, mean_ci = metrics.bootstrap_aurocs(y, p, bootstrap_resamples, ci_level, seed, groups=groups)
    thresholds, threshold_source = resolve_thresholds(y, p, label_names, threshold_policy)
    rates = (
        metrics.bootstrap_rates(
            y, p, [thresholds[name] for name in label_names], bootstrap_resamples, ci_level, seed, groups=groups
        )
        if bootstrap_resamples > 0
        else [None] * len(label_names)
    )
    per_label: dict[str, dict] = {}
    skipped = []
    for column, name in enumerate(label_names):
        yc, pc = y[:, column], p[:, column]
        entry: dict = {"positives": int(yc.sum()), "prevalence": float(yc.mean())}
        ci = per_label_ci[column]
        if ci is None:
            skipped.append(name)
            entry["auroc"] = None
        else:
            entry["auroc"] = ci.as_dict()
        entry["operating_point"] = metrics.operating_point(yc, pc, thresholds[name]).as_dict()
        rate = rates[column]
        for key, interval in (("sensitivity_ci", rate and rate.sensitivity), ("specificity_ci", rate and rate.specificity)):
            entry["operating_point"][key] = None if interval is None else [interval.lower, interval.upper]
        entry["ece"] = metrics.expected_calibration_error(yc, pc, calibration_bins)
        entry["brier"] = metrics.brier_score(yc, pc)
        if calibrators is not None and name in calibrators:
            calibrated = calibrators[name].apply(pc)
            entry["calibrated"] = {
                "ece": metrics.expected_calibration_error(yc, calibrated, calibration_bins),
                "brier": metrics.brier_score(yc, calibrated),
            }
        per_label[name] = entry
    pooled = metrics.reliability_bins(y.ravel(), p.ravel(), calibration_bins)
    eces = [entry["ece"] for entry in per_label.values()]
    called = p >= np.array([thresholds[name] for name in label_names])
    report = {
        "schema": REPORT_SCHEMA,
        "cases": int(y.shape[0]),
        "patients": None if groups is None else len(set(groups)),
        "labels": list(label_names),
        "headline": {
            "mean_auroc": None if mean_ci is None else mean_ci.estimate,
            "mean_auroc_ci": None if mean_ci is None else [mean_ci.lower, mean_ci.upper],
            "ci_level": ci_level,
            "bootstrap_resamples": bootstrap_resamples,
            "ci_method": CI_CASE_BOOTSTRAP if groups is None else CI_PATIENT_BOOTSTRAP,
            "labels_evaluated": len(label_names) - len(skipped),
            "labels_skipped_one_class": skipped,
            "mean_sensitivity": _nanmean([e["operating_point"]["sensitivity"] for e in per_label.values()]),
            "mean_specificity": _nanmean([e["operating_point"]["specificity"] for e in per_label.values()]),
            "mean_ece": _nanmean(eces),
            "mean_brier": _nanmean([e["brier"] for e in per_label.values()]),
            "mean_ece_calibrated": None
            if calibrators is None
            else _nanmean([e["calibrated"]["ece"] for e in per_label.values() if "calibrated" in e]),
            "mean_brier_calibrated": None
            if calibrators is None
            else _nanmean([e["calibrated"]["brier"] for e in per_label.values() if "calibrated" in e]),
            "threshold_source": threshold_source,
        },
        "per_label": per_label,
        "calibration": {
            "bins": calibration_bins,
            "pooled_ece": pooled.expected_calibration_error,
            "pooled_reliability": {
                "edges": pooled.edges.tolist(),
                "mean_predicted": _nan_to_none(pooled.mean_predicted),
                "observed_frequency": _nan_to_none(pooled.observed_frequency),
                "counts": pooled.counts.tolist(),
            },
        },
        "secondary": {
            "note": "Accuracy is not a headline metric: with rare findings an all-negative classifier "
            "scores high. Both are shown so the gap is visible.",
            "mean_per_label_accuracy": float(np.mean(called == (y > 0.5))),
            "all_negative_mean_per_label_accuracy": float(np.mean(y < 0.5)),
        },
    }
    return _json_ready(report)


def _nanmean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _nan_to_none(values: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in values]


def _json_ready(value):
    """Replace NaN/inf floats by None (JSON has no NaN) and numpy scalars by Python ones."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
