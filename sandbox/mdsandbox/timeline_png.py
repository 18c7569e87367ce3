"""The PNG timeline of a sandbox run: traffic split over time, each metric against its bounds, breach marked.

Top panel: canary weight from the status and as routed by the VirtualService (plus mirror share),
with the scenario's events as vertical lines. One panel per analysis metric: the values the
operator measured, the min/max bounds (and fail-fast bounds) as dashed lines, values outside
them in red; the moment a breach started, became visible in Prometheus, and traffic was back on
stable are shaded, so "how fast did we roll back" can be read off the picture.
"""

from __future__ import annotations

import pathlib

MARK_STYLE = {
    "setVersion": ("tab:blue", "--"),
    "annotate": ("tab:purple", "--"),
    "prometheus": ("tab:gray", ":"),
    "operator": ("tab:brown", ":"),
    "promoted": ("tab:green", "-"),
    "rollback": ("tab:red", "-"),
    "breach": ("tab:orange", ":"),
    "visible": ("tab:red", ":"),
    "patch": ("tab:purple", ":"),
    "gpuCapacity": ("tab:cyan", "--"),
    "apiFaults": ("tab:gray", "--"),
}


def draw_timeline(report: dict, path: str | pathlib.Path) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = pathlib.Path(path)
    timeline = report.get("timeline") or []
    metrics = (report.get("analysis") or {}).get("metrics") or []
    rows = 1 + len(metrics)
    fig, axes = plt.subplots(rows, 1, figsize=(11, 2.4 + 1.9 * rows), sharex=True, squeeze=False)
    axes = [a[0] for a in axes]
    t = [s["t"] for s in timeline]

    ax = axes[0]
    ax.step(
        t,
        [s["routedWeight"] for s in timeline],
        where="post",
        label="canary weight (VirtualService)",
        color="tab:orange",
        lw=2,
    )
    ax.step(
        t,
        [s["canaryWeight"] for s in timeline],
        where="post",
        label="canary weight (status)",
        color="tab:blue",
        lw=1,
        ls="--",
    )
    if any(s.get("mirrorPercent") for s in timeline):
        ax.step(
            t, [s.get("mirrorPercent", 0) for s in timeline], where="post", label="mirrored %", color="tab:purple", lw=1
        )
    ax.set_ylim(-5, 105)
    ax.set_ylabel("% traffic")
    title = (
        f"{report['name']}: {report['outcome']} (stable v{report['stableVersion']})"
        + (
            f" — rollback {report['rollbackSeconds']} s after the breach was visible"
            if report.get("rollbackSeconds") is not None
            else ""
        )
        + (f" — promoted in {report['promotionSeconds']} s" if report.get("promotionSeconds") is not None else "")
    )
    ax.set_title(title, fontsize=11)
    # one shaded band per stretch of RolledBack/Failed (not one per sample)
    start = None
    for sample in timeline + [{"t": t[-1] if t else 0, "phase": None}]:
        bad = sample["phase"] in ("RolledBack", "Failed")
        if bad and start is None:
            start = sample["t"]
        elif not bad and start is not None:
            ax.axvspan(start, sample["t"], color="tab:red", alpha=0.08, lw=0)
            start = None
    breach = report.get("breach") or {}
    for a in axes:
        if breach.get("visibleAt") is not None:
            end = breach.get("rolledBackAt") or (t[-1] if t else breach["visibleAt"])
            a.axvspan(breach["visibleAt"], end, color="tab:red", alpha=0.15)
        for mark in report.get("marks") or []:
            colour, style = MARK_STYLE.get(mark["kind"], ("black", ":"))
            a.axvline(mark["t"], color=colour, ls=style, lw=1, alpha=0.8)
    for mark in report.get("marks") or []:
        if mark["kind"] in (
            "setVersion",
            "promoted",
            "rollback",
            "visible",
            "annotate",
            "prometheus",
            "operator",
            "gpuCapacity",
            "apiFaults",
            "patch",
        ):
            ax.annotate(
                mark["text"][:38],
                (mark["t"], 100),
                xytext=(2, -2),
                textcoords="offset points",
                rotation=90,
                fontsize=7,
                va="top",
                color=MARK_STYLE.get(mark["kind"], ("black", ""))[0],
            )
    ax.legend(loc="center left", fontsize=8)

    for ax, metric in zip(axes[1:], metrics):
        name = metric["name"]
        analyses = report.get("analyses") or []
        pts = [(a["t"], a["metrics"].get(name)) for a in analyses if name in a["metrics"]]
        xs = [p[0] for p in pts if p[1] is not None]
        ys = [p[1] for p in pts if p[1] is not None]
        lo, hi = metric.get("min"), metric.get("max")
        ax.plot(xs, ys, marker="o", ms=3, lw=1, color="tab:blue", label=name)
        bad = [(x, y) for x, y in zip(xs, ys) if (lo is not None and y < lo) or (hi is not None and y > hi)]
        if bad:
            ax.scatter(
                [b[0] for b in bad], [b[1] for b in bad], color="tab:red", zorder=3, s=25, label="outside bounds"
            )
        nodata = [p[0] for p in pts if p[1] is None]
        if nodata:
            ax.scatter(
                nodata,
                [lo if lo is not None else (hi or 0)] * len(nodata),
                marker="x",
                color="tab:gray",
                s=20,
                label="no data",
            )
        if lo is not None:
            ax.axhline(lo, color="tab:red", ls="--", lw=1, label=f"min {lo:g}")
        if hi is not None:
            ax.axhline(hi, color="tab:red", ls="--", lw=1, label=f"max {hi:g}")
        ff = metric.get("failFast") or {}
        if ff.get("max") is not None:
            ax.axhline(ff["max"], color="darkred", ls=":", lw=1, label=f"fail-fast max {ff['max']:g}")
        if ff.get("min") is not None:
            ax.axhline(ff["min"], color="darkred", ls=":", lw=1, label=f"fail-fast min {ff['min']:g}")
        ax.set_ylabel(name, fontsize=9)
        ax.legend(loc="upper left", fontsize=7, ncol=3)
    axes[-1].set_xlabel("scenario time (s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
