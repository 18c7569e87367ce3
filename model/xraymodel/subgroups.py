"""Subgroup AUROC: does the model work as well for women as for men, for the old, on AP films, at every site?

A mean AUROC over all images can hide a subgroup the model fails. For each attribute (sex, age band,
view AP/PA, site) the evaluation reports each subgroup's mean AUROC with a patient-level bootstrap CI
(patients are resampled within the subgroup, as everywhere in xraymodel.metrics), the gap between the best
and the worst subgroup, and the worst subgroup overall. ``evaluate --min-subgroup-auroc`` turns the worst
one into a gate, and the model card carries it (``metrics.subgroups``).

Fair comparison: within one attribute, every subgroup is scored on the SAME findings, those with positives
and negatives in every subgroup that has at least ``min_images`` images (smaller subgroups are listed, not
scored: their CI would span most of [0, 1]). The overall mean AUROC on those findings is given beside
them, so a gap is a gap between subgroups, not between finding sets.

Attributes come from the ChestX-ray14 label CSV in the data root (``Patient Gender``, ``Patient Age``,
``View Position`` and, on synthetic data, the synthetic ``Site`` column). A data set without them has no
subgroup section.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xraymodel import metrics

CSV_NAME = "Data_Entry_2017.csv"
AGE_BANDS = ((0, 18, "0-17"), (18, 40, "18-39"), (40, 60, "40-59"), (60, 10_000, "60+"))
COLUMNS = {"sex": "Patient Gender", "age_band": "Patient Age", "view": "View Position", "site": "Site"}
MIN_IMAGES = 20
UNKNOWN = "unknown"


def age_band(age: str | float | None) -> str:
    try:
        years = float(age)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return UNKNOWN
    return next((name for low, high, name in AGE_BANDS if low <= years < high), UNKNOWN)


def image_attributes(root: str | Path, paths: Sequence[str]) -> dict[str, list[str]]:
    """attribute -> one value per path, from the label CSV in ``root`` (empty when there is none)."""
    csv_path = Path(root) / CSV_NAME
    if not csv_path.is_file():
        return {}
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = {(c or "").strip() for c in reader.fieldnames or []}
        rows = {(row.get("Image Index") or "").strip(): {(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader}
    attributes: dict[str, list[str]] = {}
    for attribute, column in COLUMNS.items():
        if column not in columns:
            continue
        values = []
        for path in paths:
            raw = rows.get(Path(path).name, {}).get(column, "")
            values.append(age_band(raw) if attribute == "age_band" else (raw.upper() or UNKNOWN))
        attributes[attribute] = values
    return attributes


def _mean_ci(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, resamples: int, level: float, seed: int) -> dict:
    _, mean = metrics.bootstrap_aurocs(labels, scores, resamples=resamples, level=level, seed=seed, groups=list(groups))
    assert mean is not None
    return {"mean_auroc": round(mean.estimate, 4), "mean_auroc_ci": [round(mean.lower, 4), round(mean.upper, 4)]}


def subgroup_report(
    labels: np.ndarray,
    scores: np.ndarray,
    label_names: Sequence[str],
    attributes: Mapping[str, Sequence[str]],
    groups: Sequence,
    *,
    resamples: int = 500,
    level: float = 0.95,
    seed: int = 0,
    min_images: int = MIN_IMAGES,
) -> dict:
    """Per attribute: each subgroup's mean AUROC with a patient-bootstrap CI, the gap, and the worst subgroup."""
    y, s = np.asarray(labels, np.float64), np.asarray(scores, np.float64)
    patients = np.asarray(list(groups))
    report: dict = {"min_images": min_images, "ci": f"{level:.0%} patient bootstrap within each subgroup", "attributes": {}}
    candidates = []
    for attribute, raw_values in attributes.items():
        values = np.asarray(list(raw_values))
        sizes = {str(v): int((values == v).sum()) for v in sorted(set(values.tolist()))}
        kept = [v for v, n in sizes.items() if n >= min_images and v != UNKNOWN]
        entry: dict = {"sizes": sizes, "too_small": [v for v in sizes if v not in kept]}
        report["attributes"][attribute] = entry
        if len(kept) < 2:
            entry["skipped"] = f"fewer than two subgroups with >= {min_images} images"
            continue
        masks = {v: values == v for v in kept}
        common = [
            k for k in range(y.shape[1])
            if all(0 < y[mask, k].sum() < mask.sum() for mask in masks.values())
        ]
        if not common:
            entry["skipped"] = "no finding has positives and negatives in every subgroup"
            continue
        entry["findings"] = [label_names[k] for k in common]
        entry["overall"] = _mean_ci(y[:, common], s[:, common], patients, resamples, level, seed)
        entry["subgroups"] = {}
        for value, mask in masks.items():
            scored = _mean_ci(y[mask][:, common], s[mask][:, common], patients[mask], resamples, level, seed)
            scored.update(images=int(mask.sum()), patients=int(len(set(patients[mask].tolist()))))
            entry["subgroups"][value] = scored
            candidates.append((scored["mean_auroc"], attribute, value, scored, entry["overall"]["mean_auroc"]))
        means = [g["mean_auroc"] for g in entry["subgroups"].values()]
        entry["gap"] = round(max(means) - min(means), 4)
    if candidates:
        mean, attribute, value, scored, overall = min(candidates, key=lambda c: c[0])
        report["worst"] = {
            "attribute": attribute, "value": value, "mean_auroc": mean, "mean_auroc_ci": scored["mean_auroc_ci"],
            "images": scored["images"], "patients": scored["patients"],
            "overall_mean_auroc_same_findings": overall, "gap_to_overall": round(overall - mean, 4),
        }
    else:
        report["worst"] = None
    return report


def check_worst_subgroup(report: Mapping, minimum: float) -> str | None:
    """None when the worst subgroup's mean AUROC is at least ``minimum``; else the reason, for the gate."""
    worst = (report.get("subgroups") or {}).get("worst")
    if worst is None:
        return f"no subgroup could be scored (needs >= {MIN_IMAGES} images per subgroup and attribute columns in the label CSV)"
    if worst["mean_auroc"] < minimum:
        return (
            f"worst subgroup {worst['attribute']}={worst['value']}: mean AUROC {worst['mean_auroc']:.3f} "
            f"{worst['mean_auroc_ci']} on {worst['images']} images < {minimum}"
        )
    return None
