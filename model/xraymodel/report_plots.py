"""PNG figures for an evaluation: per-finding ROC curves and the reliability diagram (matplotlib, Agg)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xraymodel import metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc_curves(labels: np.ndarray, probabilities: np.ndarray, label_names: Sequence[str], report: dict, path: Path) -> Path:
    """One panel per finding: ROC curve, chance line, AUROC [95% CI] and the operating point."""
    plt = _pyplot()
    columns = min(4, len(label_names))
    rows = math.ceil(len(label_names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows), squeeze=False)
    for index, name in enumerate(label_names):
        axis = axes[index // columns][index % columns]
        entry = report["per_label"][name]
        axis.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=0.8)
        if entry["auroc"] is not None:
            curve = metrics.roc_curve(labels[:, index], probabilities[:, index])
            axis.plot(curve.false_positive_rate, curve.true_positive_rate, linewidth=1.5)
            auc = entry["auroc"]
            ci = "" if auc["ci_lower"] is None else f" [{auc['ci_lower']:.3f}, {auc['ci_upper']:.3f}]"
            title = f"{name}\nAUROC {auc['estimate']:.3f}{ci}"
            point = entry["operating_point"]
            if point["sensitivity"] is not None and point["specificity"] is not None:
                axis.plot(1 - point["specificity"], point["sensitivity"], "o", color="crimson", markersize=4)
        else:
            title = f"{name}\n(one class only)"
        axis.set_title(title, fontsize=8)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.tick_params(labelsize=6)
        axis.set_xlabel("1 - specificity", fontsize=7)
        axis.set_ylabel("sensitivity", fontsize=7)
    for index in range(len(label_names), rows * columns):
        axes[index // columns][index % columns].axis("off")
    headline = report["headline"]
    if headline["mean_auroc"] is not None:
        low, high = headline["mean_auroc_ci"] or (float("nan"), float("nan"))
        figure.suptitle(f"Mean AUROC {headline['mean_auroc']:.3f} [{low:.3f}, {high:.3f}], n={report['cases']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_reliability(labels: np.ndarray, probabilities: np.ndarray, report: dict, path: Path, bins: int = 10) -> Path:
    """Observed frequency vs mean predicted probability (all findings pooled), with bin counts."""
    plt = _pyplot()
    reliability = metrics.reliability_bins(labels.ravel(), probabilities.ravel(), bins)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=0.8, label="perfect calibration")
    filled = reliability.counts > 0
    centers = (reliability.edges[:-1] + reliability.edges[1:]) / 2
    top.bar(centers[filled], reliability.observed_frequency[filled], width=1.0 / bins, alpha=0.35, edgecolor="k", label="observed")
    top.plot(reliability.mean_predicted[filled], reliability.observed_frequency[filled], "o-", color="crimson", label="model")
    top.set_ylabel("observed frequency")
    top.set_title(f"Reliability (pooled over findings), ECE {reliability.expected_calibration_error:.3f}")
    top.legend(fontsize=8)
    bottom.bar(centers, reliability.counts, width=1.0 / bins, color="0.5")
    bottom.set_yscale("log")
    bottom.set_xlabel("predicted probability")
    bottom.set_ylabel("cases")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
