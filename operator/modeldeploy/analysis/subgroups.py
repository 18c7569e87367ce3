"""The worst-subgroup gate (builtin `worstSubgroup`), PURE: per-subgroup mean AUROC -> one verdict.

A canary's mean AUROC over all golden images can hold while it reads one kind of film or patient
much worse (AP films, patients over 60, one site). The online evaluator exports, per version and per
demographic subgroup of the golden set (attribute sex | age_band | view | site; subgroup M, 60+,
AP, SITE-A, ...), the mean AUROC within that subgroup over the attribute's common findings
(``modeldeploy_evaluator_subgroup_auroc_mean``), and per subgroup the golden set's image count and
the FEWEST positives of any finding in that mean (``golden_set_subgroup_images`` / ``_positives``).

Verdict of the gate (one MetricResult, `detail` listing every subgroup considered):
  fail    some subgroup with enough positives has a mean AUROC below `min` (the lowest one is named);
  noData  otherwise, when the evaluator has no subgroup figures at all (the golden set's labels have
          no demographic columns), when a requested attribute has no subgroup, or when a subgroup
          has fewer than `minPositives` positives or no AUROC (too few images to be scored): too few
          positives is no data for that subgroup, so the gate refuses to pass and names it;
  pass    every considered subgroup has enough positives and a mean AUROC of at least `min`.
The metric's value is the lowest mean AUROC among the subgroups with enough positives (what
`kubectl modeldeploy status` shows against `min`); detail.worst names that subgroup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modeldeploy.analysis.verdict import MetricResult
from modeldeploy.spec import MetricSpec, WorstSubgroup

ATTRIBUTE_ORDER = ("sex", "age_band", "view", "site")
COLUMNS = {"sex": "Patient Gender", "age_band": "Patient Age", "view": "View Position", "site": "Site"}


@dataclass(frozen=True)
class SubgroupFigure:
    """What the evaluator exported for one subgroup: the canary's mean AUROC in it (None: not scored)
    and the golden set's counts (None: unknown)."""

    attribute: str
    subgroup: str
    auroc_mean: float | None
    images: int | None
    positives: int | None


def judge_worst_subgroup(metric: MetricSpec, figures: Sequence[SubgroupFigure]) -> MetricResult:
    """The gate's verdict from the evaluator's per-subgroup figures (module docstring)."""
    ws = metric.worst_subgroup or WorstSubgroup()
    minimum = metric.min
    wanted = list(ws.attributes)
    considered = sorted(
        (f for f in figures if not wanted or f.attribute in wanted),
        key=lambda f: (
            ATTRIBUTE_ORDER.index(f.attribute) if f.attribute in ATTRIBUTE_ORDER else 99,
            f.attribute,
            f.subgroup,
        ),
    )
    rows: list[dict] = []
    below: list[tuple[float, dict]] = []
    scored: list[tuple[float, dict]] = []
    unscored: list[str] = []
    for f in considered:
        row: dict = {"attribute": f.attribute, "subgroup": f.subgroup, "images": f.images, "positives": f.positives}
        rows.append(row)
        if f.auroc_mean is not None:
            row["aurocMean"] = round(f.auroc_mean, 4)
        if f.auroc_mean is None:
            row["verdict"] = "noData"
            row["reason"] = (
                "not scored by the evaluator (fewer than 20 images, or no finding with both classes in every subgroup)"
            )
        elif f.positives is None or f.positives < ws.min_positives:
            row["verdict"] = "noData"
            row["reason"] = (
                f"{'unknown' if f.positives is None else f.positives} positives < minPositives {ws.min_positives}"
            )
        elif minimum is not None and f.auroc_mean < minimum:
            row["verdict"] = "below"
            below.append((f.auroc_mean, row))
            scored.append((f.auroc_mean, row))
            continue
        else:
            row["verdict"] = "pass"
            scored.append((f.auroc_mean, row))
            continue
        unscored.append(f"{_name(row)}: {row['reason']}")
    worst = min(scored, key=lambda x: x[0])[1] if scored else None
    value = worst["aurocMean"] if worst is not None else None
    detail: dict = {
        "worst": None
        if worst is None
        else {k: worst.get(k) for k in ("attribute", "subgroup", "aurocMean", "images", "positives")},
        "subgroups": rows,
        "minPositives": ws.min_positives,
    }
    if wanted:
        detail["attributes"] = wanted
    if below:
        lowest = min(below, key=lambda x: x[0])[1]
        others = [f"{_name(r)} {r['aurocMean']:.4f}" for _, r in sorted(below, key=lambda x: x[0])[1:]]
        reason = f"worst subgroup {_describe(lowest)} < min {minimum:g}" + (
            f"; also below: {', '.join(others)}" if others else ""
        )
        return _result(metric, value, "fail", reason, detail)
    if not considered:
        which = f" for {', '.join(wanted)}" if wanted else ""
        columns = ", ".join(repr(COLUMNS.get(a, a)) for a in (wanted or ATTRIBUTE_ORDER))
        return _result(metric, None, "noData", f"no subgroup figures from the evaluator{which}: the golden set's labels "
                       f"need demographic columns ({columns})", detail)  # fmt: skip
    if all(f.auroc_mean is None for f in considered):
        return _result(metric, None, "noData", "no subgroup mean AUROC of the canary from the evaluator (its last "
                       "evaluation failed, or no subgroup has the 20 images to be scored)", detail)  # fmt: skip
    absent = [a for a in wanted if not any(f.attribute == a for f in considered)]
    if absent:
        missing = "; ".join(f"{a}: no subgroup in the golden set (column {COLUMNS.get(a, a)!r})" for a in absent)
        return _result(metric, value, "noData", missing, detail)
    if unscored:
        return _result(
            metric, value, "noData", "golden set too small to judge every subgroup: " + "; ".join(unscored), detail
        )
    assert worst is not None
    attrs = sorted(
        {r["attribute"] for r in rows}, key=lambda a: ATTRIBUTE_ORDER.index(a) if a in ATTRIBUTE_ORDER else 99
    )
    reason = f"worst subgroup {_describe(worst)} >= min {minimum:g} ({len(rows)} subgroups of {', '.join(attrs)})"
    return _result(metric, value, "pass", reason, detail)


def _name(row: dict) -> str:
    return f"{row['attribute']}={row['subgroup']}"


def _describe(row: dict) -> str:
    return f"{_name(row)}: mean AUROC {row['aurocMean']:.4f} ({row['images']} images, {row['positives']} positives)"


def _result(metric: MetricSpec, value: float | None, outcome: str, reason: str, detail: dict) -> MetricResult:
    return MetricResult(metric.name, value, outcome, reason, metric.min, None, detail=detail)  # type: ignore[arg-type]
