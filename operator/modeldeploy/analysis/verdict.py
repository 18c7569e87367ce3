"""Pure judgement of measured metric values: pass, fail, or NO DATA — never a silent pass.

Users' top complaint about rollout controllers is an empty Prometheus result treated as a pass or
a spurious failure (Flagger #1035, #361; Argo #1905). Here "no data" is its own outcome: an empty
result, NaN (0/0 when nothing was served), or fewer requests than `minRequests` all yield
`noData`, and a rollout is never promoted while any metric has no data. An infinite value (+Inf or
-Inf: x/0 with x > 0, histogram_quantile in the +Inf bucket) FAILS the metric, and no non-finite
number is ever kept in a result (they cannot be written to the API: JSON has no NaN or Infinity).
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["pass", "fail", "noData"]


@dataclass(frozen=True)
class MetricResult:
    """One metric's judged value in one analysis."""

    name: str
    value: float | None
    outcome: Outcome
    reason: str
    min: float | None = None
    max: float | None = None
    detail: dict | None = None  # structured figures behind the verdict (nonInferiority: per finding)

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    def to_status(self) -> dict:
        out: dict = {
            "name": self.name,
            "value": None if self.value is None else round(float(self.value), 6),
            "passed": self.passed,
            "reason": self.reason,
        }
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class AnalysisResult:
    """All metrics of one analysis (a full interval check, or a fail-fast check)."""

    at: datetime.datetime
    metrics: tuple[MetricResult, ...]
    requests: float | None = None  # canary requests in the window (None when unknown)
    kind: Literal["interval", "failFast"] = "interval"
    evaluation: dict = field(default_factory=dict)  # evaluator figures for the audit trail

    @property
    def verdict(self) -> Outcome:
        """fail if any metric failed; else noData if any lacked data; else pass."""
        if any(m.outcome == "fail" for m in self.metrics):
            return "fail"
        if not self.metrics or any(m.outcome == "noData" for m in self.metrics):
            return "noData"
        return "pass"

    @property
    def failed(self) -> tuple[MetricResult, ...]:
        return tuple(m for m in self.metrics if m.outcome == "fail")

    @property
    def missing(self) -> tuple[MetricResult, ...]:
        return tuple(m for m in self.metrics if m.outcome == "noData")

    def summary(self) -> str:
        parts = []
        for m in self.metrics:
            shown = "no data" if m.value is None else f"{m.value:.4g}"
            parts.append(f"{m.name}={shown} ({m.outcome})")
        return ", ".join(parts)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def judge(
    name: str,
    value: float | None,
    *,
    min: float | None,
    max: float | None,
    data_shortfall: str | None = None,
) -> MetricResult:
    """Judge one value against its bounds.

    `data_shortfall` is a reason why the data behind the value is insufficient (e.g. "12 requests <
    minRequests 100"); when given, the outcome is noData whatever the value says.
    """
    if data_shortfall:
        return MetricResult(name, _finite_or_none(value), "noData", data_shortfall, min, max)
    if value is None:
        return MetricResult(name, None, "noData", "query returned no data", min, max)
    if math.isnan(value):
        return MetricResult(name, None, "noData", "NaN (nothing measured in the window)", min, max)
    if math.isinf(value):
        # +Inf/-Inf is a measurement that went wrong (a division by a zero rate, histogram_quantile in the
        # +Inf bucket): never a pass, whatever the bounds say (-Inf would pass a max-only metric). The
        # value is not kept: JSON has no Infinity, and kube-apiserver refuses a status patch carrying one.
        sign = "+" if value > 0 else "-"
        return MetricResult(
            name, None, "fail", f"{sign}Inf: not a finite number (e.g. a division by a zero rate)", min, max
        )
    if min is not None and value < min:
        return MetricResult(name, value, "fail", f"{_fmt(value)} < min {_fmt(min)}", min, max)
    if max is not None and value > max:
        return MetricResult(name, value, "fail", f"{_fmt(value)} > max {_fmt(max)}", min, max)
    bounds = " and ".join(
        b
        for b in (
            f">= {_fmt(min)}" if min is not None else "",
            f"<= {_fmt(max)}" if max is not None else "",
        )
        if b
    )
    return MetricResult(name, value, "pass", f"{_fmt(value)} {bounds}", min, max)


def _finite_or_none(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return value


def no_data(name: str, reason: str, *, min: float | None = None, max: float | None = None) -> MetricResult:
    return MetricResult(name, None, "noData", reason, min, max)
