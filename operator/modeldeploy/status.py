"""Pure helpers for the ModelDeployment status: timestamps, conditions, history records.

The status is the operator's only state store: every decision is computed from it (plus what is
observed) and written back to it before any child object changes.
"""

from __future__ import annotations

import copy
import datetime
import math
from typing import Any

HISTORY_LIMIT = 100  # oldest records beyond this are dropped (the audit chain, modeldeploy.audit, keeps all)


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def to_timestamp(moment: datetime.datetime) -> str:
    """RFC 3339 with milliseconds, UTC (sub-second precision matters for fast rollbacks)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def from_timestamp(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    text = text.replace("Z", "+00:00")
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return None


def seconds_since(text: str | None, now: datetime.datetime) -> float | None:
    moment = from_timestamp(text)
    return None if moment is None else (now - moment).total_seconds()


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """Conditions with `type_` set; lastTransitionTime only moves when the status flips."""
    status_text = status if isinstance(status, str) else ("True" if status else "False")
    out = [copy.deepcopy(c) for c in conditions if c.get("type") != type_]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    moved = previous is None or previous.get("status") != status_text
    condition = {
        "type": type_,
        "status": status_text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": to_timestamp(now)
        if moved or previous is None
        else previous.get("lastTransitionTime", to_timestamp(now)),
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    out.append(condition)
    order = {"Ready": 0, "Reconciling": 1, "Stalled": 2, "Available": 3, "Progressing": 4, "Degraded": 5, "Analysis": 6}
    return sorted(out, key=lambda c: (order.get(c["type"], 9), c["type"]))


def get_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def history_record(
    *,
    version: int,
    action: str,
    now: datetime.datetime,
    reason: str,
    from_version: int | None = None,
    strategy: str | None = None,
    metrics: list[dict[str, Any]] | None = None,
    evaluation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {"version": version, "action": action, "at": to_timestamp(now), "reason": reason}
    if from_version is not None:
        record["fromVersion"] = from_version
    if strategy:
        record["strategy"] = strategy
    if metrics is not None:
        record["metrics"] = metrics
    if evaluation:
        record["evaluation"] = evaluation
    return record


def append_history(history: list[dict[str, Any]] | None, record: dict[str, Any]) -> list[dict[str, Any]]:
    out = list(history or []) + [record]
    return out[-HISTORY_LIMIT:]


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +Inf, -Inf) replaced by None.

    JSON has no such numbers: kube-apiserver answers 400 to a body carrying one (the kubernetes client
    would write ``Infinity``), which would block the status write that records a rollback. The
    analysis never produces them (`analysis.verdict`); this is the last guard before the API."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning status `old` into `new` (empty when nothing changed)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if old.get(key) != value:
            if isinstance(value, dict) and isinstance(old.get(key), dict):
                sub = status_patch(old[key], value)
                if sub:
                    patch[key] = sub
            else:
                patch[key] = copy.deepcopy(value)
    for key in old:
        if key not in new and not key.startswith("kopf"):
            patch[key] = None
    return patch
