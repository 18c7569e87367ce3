"""What the dashboard shows of each ModelDeployment, PURE: a summary per object and the memory of its rollout.

The status is the operator's only state store and holds the LAST analysis only; a person watching a
rollout wants its story. `Board` keeps, per ModelDeployment, what the watch showed of the current
(or the last) rollout: every analysis (status.lastAnalysis as it changed) and every traffic weight
(status.canaryWeight), bounded. Everything else is read from the object itself: phase, versions,
step, conditions, and status.history, the operator's audit trail (who or what promoted or rolled
back, with the metrics that justified it). Field names are the CRD's (docs/api-reference.md).

A rollout is identified by (status.canaryVersion, status.rollout.startedAt); it ends when
canaryVersion is cleared, with the outcome of the history record that ended it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modeldeploy import names
from modeldeploy.status import from_timestamp

ANALYSES_LIMIT = 200
WEIGHTS_LIMIT = 500
HISTORY_SHOWN = 30  # newest status.history records sent to the browser (the status keeps up to 100)
ENDING_ACTIONS = ("promoted", "rolledBack", "aborted", "superseded")
INFERRED_LOOKBACK_SECONDS = 600.0  # chart range before a rollout's end when its start was not seen

Key = tuple[str, str]  # (namespace, name)


@dataclass
class RolloutMemory:
    """What was seen of one rollout (one new version) through the watch."""

    version: int
    stable: int | None
    started_at: str | None  # status.rollout.startedAt (RFC 3339), when the operator recorded it
    seen_at: float  # unix time the dashboard first saw this rollout
    ended_at: float | None = None
    outcome: str | None = None  # the history action that ended it: promoted, rolledBack, aborted, superseded
    reason: str | None = None
    inferred: bool = False  # rebuilt from status.history (the rollout ended before the dashboard started)
    analyses: list[dict] = field(default_factory=list)  # status.lastAnalysis values, oldest first
    weights: list[list[float]] = field(default_factory=list)  # [unix time, canaryWeight] at each change

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "stable": self.stable,
            "startedAt": self.started_at,
            "seenAt": self.seen_at,
            "endedAt": self.ended_at,
            "outcome": self.outcome,
            "reason": self.reason,
            "inferred": self.inferred,
            "analyses": self.analyses,
            "weights": self.weights,
        }


def key_of(body: dict) -> Key:
    meta = body.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def _metrics_of(spec: dict) -> list[dict]:
    out = []
    for m in (spec.get("analysis") or {}).get("metrics") or []:
        out.append(
            {
                "name": m.get("name"),
                "builtin": m.get("builtin"),
                "quantile": m.get("quantile"),
                "min": m.get("min"),
                "max": m.get("max"),
                "failFast": m.get("failFast"),
            }
        )
    return out


def summarize(body: dict, memory: RolloutMemory | None = None) -> dict[str, Any]:
    """The JSON the browser gets for one ModelDeployment (its list row and its detail view)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    st = body.get("status") or {}
    strategy = spec.get("strategy") or {}
    kind = st.get("strategy") or strategy.get("type") or "Canary"
    annotations = meta.get("annotations") or {}
    rollout = st.get("rollout") or {}
    if kind == "Canary":
        steps = list((strategy.get("canary") or {}).get("steps") or [])
    else:
        steps = list(range(1, int((strategy.get(kind[0].lower() + kind[1:]) or {}).get("iterations") or 1) + 1))
    analysis = spec.get("analysis") or {}
    history = st.get("history") or []
    return {
        "key": f"{meta.get('namespace')}/{meta.get('name')}",
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "generation": meta.get("generation"),
        "observedGeneration": st.get("observedGeneration"),
        "model": (spec.get("model") or {}).get("name"),
        "targetVersion": (spec.get("model") or {}).get("version"),
        "phase": st.get("phase") or "Pending",
        "message": st.get("message") or "",
        "strategy": kind,
        "stableVersion": st.get("stableVersion"),
        "canaryVersion": st.get("canaryVersion"),
        "canaryWeight": int(st.get("canaryWeight") or 0),
        "step": int(st.get("step") or 0),
        "steps": steps,
        "failedChecks": int(st.get("failedChecks") or 0),
        "failureThreshold": analysis.get("failureThreshold"),
        "interval": analysis.get("interval"),
        "paused": bool(spec.get("paused") or rollout.get("paused")),
        "pendingAction": annotations.get(names.ANNOTATION_ACTION),
        "pendingActionBy": annotations.get(names.ANNOTATION_ACTION_BY),
        "conditions": st.get("conditions") or [],
        "lastAnalysis": st.get("lastAnalysis"),
        "history": history[-HISTORY_SHOWN:],
        "historyTotal": len(history),
        "metrics": _metrics_of(spec),
        "rollout": None if memory is None else memory.to_json(),
    }


class Board:
    """Every watched ModelDeployment and the memory of its rollout (pure: the clock is injected)."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.bodies: dict[Key, dict] = {}
        self.memory: dict[Key, RolloutMemory] = {}

    def upsert(self, body: dict) -> dict[str, Any]:
        """Take a new version of an object (ADDED/MODIFIED or a list item); returns its summary."""
        key = key_of(body)
        self.bodies[key] = body
        self._remember(key, body)
        return self.summary(key)

    def delete(self, key: Key) -> None:
        self.bodies.pop(key, None)
        self.memory.pop(key, None)

    def reset(self, bodies: list[dict] | tuple[dict, ...], namespace: str | None = None) -> None:
        """A fresh list of one namespace (None: of the whole cluster), after a (re)connect or a 410:
        drop what vanished from it, keep the memory of what stayed."""
        keep = {key_of(b) for b in bodies}
        for key in list(self.bodies):
            if key not in keep and (namespace is None or key[0] == namespace):
                self.delete(key)
        for body in bodies:
            self.upsert(body)

    def summary(self, key: Key) -> dict[str, Any]:
        return summarize(self.bodies[key], self.memory.get(key))

    def snapshot(self) -> list[dict[str, Any]]:
        return [self.summary(k) for k in sorted(self.bodies)]

    # ---- the rollout memory ----------------------------------------------------------------------
    def _remember(self, key: Key, body: dict) -> None:
        st = body.get("status") or {}
        now = self.clock()
        canary = st.get("canaryVersion")
        started = (st.get("rollout") or {}).get("startedAt")
        mem = self.memory.get(key)
        if canary is not None:
            if (
                mem is None
                or mem.version != canary
                or mem.ended_at is not None
                or (started and mem.started_at and started != mem.started_at)
            ):
                if mem is not None and mem.ended_at is None:
                    self._end(mem, st, now)
                mem = RolloutMemory(
                    version=int(canary), stable=st.get("stableVersion"), started_at=started, seen_at=now
                )
                self.memory[key] = mem
            mem.started_at = mem.started_at or started
            self._weight(mem, now, int(st.get("canaryWeight") or 0))
        elif mem is not None and mem.ended_at is None:
            self._end(mem, st, now)
        elif mem is None:
            mem = self._from_history(st)
            if mem is not None:
                self.memory[key] = mem
        if mem is not None:
            self._analysis(mem, st.get("lastAnalysis"))

    @staticmethod
    def _weight(mem: RolloutMemory, now: float, weight: int) -> None:
        if not mem.weights or mem.weights[-1][1] != weight:
            mem.weights.append([now, weight])
            del mem.weights[:-WEIGHTS_LIMIT]

    @staticmethod
    def _analysis(mem: RolloutMemory, last: dict | None) -> None:
        if not last or not last.get("time"):
            return
        if any(a.get("time") == last["time"] and a.get("kind") == last.get("kind") for a in mem.analyses):
            return
        if mem.started_at and last["time"] < mem.started_at:
            return  # an analysis of an earlier rollout, still in the status
        mem.analyses.append(last)
        mem.analyses.sort(key=lambda a: a.get("time") or "")
        del mem.analyses[:-ANALYSES_LIMIT]

    @staticmethod
    def _from_history(st: dict) -> RolloutMemory | None:
        """The last rollout, rebuilt from the audit trail when the dashboard did not see it happen."""
        for record in reversed(st.get("history") or []):
            if record.get("action") in ENDING_ACTIONS and record.get("version") is not None:
                ended = from_timestamp(record.get("at"))
                if ended is None:
                    return None
                end = ended.timestamp()
                return RolloutMemory(
                    version=int(record["version"]),
                    stable=record.get("fromVersion"),
                    started_at=None,
                    seen_at=end - INFERRED_LOOKBACK_SECONDS,
                    ended_at=end,
                    outcome=record["action"],
                    reason=record.get("reason"),
                    inferred=True,
                    weights=[],
                )
        return None

    def _end(self, mem: RolloutMemory, st: dict, now: float) -> None:
        mem.ended_at = now
        self._weight(mem, now, 0)
        for record in reversed(st.get("history") or []):
            if record.get("version") == mem.version and record.get("action") in ENDING_ACTIONS:
                mem.outcome = record["action"]
                mem.reason = record.get("reason")
                break
