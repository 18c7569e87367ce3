"""The rollout's typed state: `RolloutStatus`, parsed from and written to the ModelDeployment status.

The status is the operator's only state store. The rollout's part of it is the contract's top-level
fields (stableVersion, canaryVersion, canaryWeight, step, failedChecks, strategy) plus the
operator's bookkeeping in status.rollout (timestamps of the rollout, its step and its analyses,
counters, the remembered versions). `RolloutStatus.from_status` reads them into one dataclass and
`RolloutStatus.write` puts them back under the same field names; every other status key (phase,
message, conditions, history, lastAnalysis, ...) is left as it is.

The state machine's state is explicit: `state` (`RolloutState`, written as status.rollout.state)
is what the transitions in `modeldeploy.rollout` switch on and set, through the methods below that
keep the other fields consistent with it:

    Idle ──start──> WaitingForReady ──mark_ready──> Analysing ──promote──> Idle
                          │                            │  ↑ manual promote
                          │ progressDeadline            │  │
                          └──────────roll_back──────────┤  FailedHold (rollback.automatic false)
                                                        v
                                                    RolledBack ──retry / new version / back to stable──> ...

`status.phase` (`Phase`, the API's phase) is a projection of the state, see `phase_of`: it also
depends on pause (spec.paused or the `pause` action), on the draining previous version (Promoting)
and on whether the first version ever became ready (Initializing).

Statuses written before status.rollout.state existed have no `state`: it is derived from the keys
the older operator wrote (`derive_state`), which this module still writes (failedHold, readyAt,
rolledBackVersion), so a status stays readable both ways. Unknown keys of status.rollout are kept.
Timestamps stay RFC 3339 text (modeldeploy.status.to_timestamp), exactly as on the wire.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any


class Phase(enum.StrEnum):
    """status.phase (the API contract's values); a projection of `RolloutState`, see `phase_of`."""

    INITIALIZING = "Initializing"
    STABLE = "Stable"
    PROGRESSING = "Progressing"
    PROMOTING = "Promoting"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    PAUSED = "Paused"
    INVALID = "Invalid"


class RolloutState(enum.StrEnum):
    """status.rollout.state: where the rollout of a new version is."""

    IDLE = "Idle"  # no rollout: the stable version serves everything
    WAITING_FOR_READY = "WaitingForReady"  # the new version's pods are starting; no traffic yet
    ANALYSING = "Analysing"  # the new version is ready and routed; analyses decide each step
    FAILED_HOLD = "FailedHold"  # failed with rollback.automatic false: held at the failing step for a human
    ROLLED_BACK = "RolledBack"  # the last rollout was rolled back; that version is not retried automatically


# States with a new version (status.canaryVersion set).
WITH_CANARY = frozenset({RolloutState.WAITING_FOR_READY, RolloutState.ANALYSING, RolloutState.FAILED_HOLD})

# status.rollout keys of one rollout (reset when a rollout starts or ends), by field name.
_PER_ROLLOUT = (
    "started_at",
    "ready_at",
    "step_started_at",
    "last_analysis_at",
    "analyses",
    "no_data_streak",
    "ready_restarts",
    "preview_data_at",
    "preview_deadline_at",
    "traffic_off",
)

# status.rollout wire names of the fields below (the contract of this module: never rename).
_ROLLOUT_KEYS = {
    "initialized": "initialized",
    "paused": "paused",
    "started_at": "startedAt",
    "ready_at": "readyAt",
    "step_started_at": "stepStartedAt",
    "last_analysis_at": "lastAnalysisAt",
    "analyses": "analyses",
    "no_data_streak": "noDataStreak",
    "ready_restarts": "readyRestarts",
    "preview_data_at": "previewDataAt",
    "preview_deadline_at": "previewDeadlineAt",
    "rolled_back_version": "rolledBackVersion",
    "previous_stable": "previousStable",
    "scale_down_at": "scaleDownAt",
    "stalled": "stalled",
    "handled_action": "handledAction",
    "handled_action_id": "handledActionId",
    "traffic_off": "trafficOff",
}
_KNOWN_ROLLOUT_KEYS = frozenset(_ROLLOUT_KEYS.values()) | {"state", "failedHold"}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def derive_state(status: Mapping[str, Any]) -> RolloutState:
    """The state from the keys an operator without status.rollout.state wrote (and this one still writes)."""
    rollout = status.get("rollout") or {}
    if status.get("canaryVersion") is not None:
        if rollout.get("failedHold"):
            return RolloutState.FAILED_HOLD
        if rollout.get("readyAt"):
            return RolloutState.ANALYSING
        return RolloutState.WAITING_FOR_READY
    if rollout.get("rolledBackVersion") is not None:
        return RolloutState.ROLLED_BACK
    return RolloutState.IDLE


@dataclass
class RolloutStatus:
    """The rollout's part of the status, typed. Field names map 1:1 to the wire (camelCase)."""

    stable_version: int | None = None  # status.stableVersion
    canary_version: int | None = None  # status.canaryVersion
    canary_weight: int = 0  # status.canaryWeight
    step: int = 0  # status.step: canary step index, or analyses passed (ABTest, BlueGreen, Shadow)
    failed_checks: int = 0  # status.failedChecks (cumulative during one rollout)
    strategy: str | None = None  # status.strategy: of the current or last rollout
    state: RolloutState = RolloutState.IDLE  # status.rollout.state
    # status.rollout.*
    initialized: bool = False  # the first version became ready (its "deployed" record is written)
    paused: bool = False  # paused by the `pause` action (spec.paused is the other way)
    started_at: str | None = None
    ready_at: str | None = None  # the new version became ready and got its first step
    step_started_at: str | None = None
    last_analysis_at: str | None = None  # the slot the last analysis was due at
    analyses: int | None = None  # analyses run in this rollout
    no_data_streak: int | None = None  # analyses in a row without data
    ready_restarts: int | None = None  # TF Serving restarts before readiness (do not count against it)
    preview_data_at: str | None = None  # BlueGreen: the first analysis with data
    preview_deadline_at: str | None = None  # BlueGreen: fails without data by then
    traffic_off: bool | None = None  # FailedHold after a fail-fast breach: the new version gets no traffic at all
    rolled_back_version: int | None = None  # never retried automatically
    previous_stable: int | None = None  # the stable before the last promotion (kept at 0 replicas)
    scale_down_at: str | None = None  # the previous stable drains until then (phase Promoting)
    stalled: list[str] | None = None  # "v<version>:<reason>" of the pods PodsStalled reported
    # The last manual action applied and its request's idempotency key (modeldeploy.io/action-id), written
    # in the same status write as the action's effect: a pass that sees the same request again (its later
    # writes failed, so the annotation is still there) does not apply it a second time. Outlives rollouts.
    handled_action: str | None = None
    handled_action_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # unknown status.rollout keys, kept as they are

    # ---- wire ------------------------------------------------------------------------------------

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> RolloutStatus:
        status = status or {}
        rollout = status.get("rollout") or {}
        out = cls(
            stable_version=_int(status.get("stableVersion")),
            canary_version=_int(status.get("canaryVersion")),
            canary_weight=int(status.get("canaryWeight") or 0),
            step=int(status.get("step") or 0),
            failed_checks=int(status.get("failedChecks") or 0),
            strategy=status.get("strategy"),
            initialized=bool(rollout.get("initialized")),
            paused=bool(rollout.get("paused")),
            started_at=rollout.get("startedAt"),
            ready_at=rollout.get("readyAt"),
            step_started_at=rollout.get("stepStartedAt"),
            last_analysis_at=rollout.get("lastAnalysisAt"),
            analyses=_int(rollout.get("analyses")),
            no_data_streak=_int(rollout.get("noDataStreak")),
            ready_restarts=_int(rollout.get("readyRestarts")),
            preview_data_at=rollout.get("previewDataAt"),
            preview_deadline_at=rollout.get("previewDeadlineAt"),
            traffic_off=bool(rollout.get("trafficOff")) or None,
            rolled_back_version=_int(rollout.get("rolledBackVersion")),
            previous_stable=_int(rollout.get("previousStable")),
            scale_down_at=rollout.get("scaleDownAt"),
            stalled=list(rollout["stalled"]) if rollout.get("stalled") else None,
            handled_action=rollout.get("handledAction"),
            handled_action_id=rollout.get("handledActionId"),
            extra={k: v for k, v in rollout.items() if k not in _KNOWN_ROLLOUT_KEYS},
        )
        out.state = cls._stored_state(rollout.get("state"), out) or derive_state(status)
        return out

    @staticmethod
    def _stored_state(value: Any, parsed: RolloutStatus) -> RolloutState | None:
        """The written state, unless it is unknown or cannot be (a state with a new version but none set,
        or the other way round: an older operator that ran in between kept the key without knowing it)."""
        try:
            state = RolloutState(value)
        except ValueError:
            return None
        if (state in WITH_CANARY) != (parsed.canary_version is not None):
            return None
        if state is RolloutState.ROLLED_BACK and parsed.rolled_back_version is None:
            return None
        return state

    def already_handled(self, action: str, request_id: str | None) -> bool:
        """Is this the request whose effect is already in the status (same idempotency key, same action)?"""
        return request_id is not None and (self.handled_action_id, self.handled_action) == (request_id, action)

    def write(self, status: MutableMapping[str, Any]) -> None:
        """Put the fields into `status` under their wire names (absent = unset); other keys stay."""
        if self.stable_version is not None:
            status["stableVersion"] = self.stable_version
        if self.canary_version is None:
            status.pop("canaryVersion", None)
        else:
            status["canaryVersion"] = self.canary_version
        status["canaryWeight"] = self.canary_weight
        status["step"] = self.step
        status["failedChecks"] = self.failed_checks
        if self.strategy is not None:
            status["strategy"] = self.strategy
        status["rollout"] = self.rollout_dict()

    def rollout_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out["state"] = self.state.value
        for name, key in _ROLLOUT_KEYS.items():
            value = getattr(self, name)
            if value is None or value is False:
                continue
            out[key] = list(value) if isinstance(value, list) else value
        if self.state is RolloutState.FAILED_HOLD:
            out["failedHold"] = True  # what an operator without `state` reads
        return out

    # ---- questions -------------------------------------------------------------------------------

    @property
    def routed(self) -> bool:
        """The new version gets its share of traffic (it is ready; also while held after a failed analysis, but
        not after a fail-fast breach)."""
        return self.canary_version is not None and bool(self.ready_at) and not self.traffic_off

    @property
    def guarded(self) -> bool:
        """The new version takes live traffic, so fail-fast thresholds guard it: while analysed, and while held
        at its weight for a human after a failed analysis (not once its traffic was pulled)."""
        return self.state in (RolloutState.ANALYSING, RolloutState.FAILED_HOLD) and self.routed

    @property
    def live(self) -> bool:
        """A rollout whose new version is ready and routed and not held: analyses apply."""
        return self.state is RolloutState.ANALYSING and self.routed

    # ---- transitions (the bookkeeping each one implies; rollout.py decides when) --------------------

    def _reset_rollout(self) -> None:
        for name in _PER_ROLLOUT:
            setattr(self, name, None)

    def start(self, version: int, strategy: str, now: str) -> None:
        """A rollout of `version` starts (-> WaitingForReady): no traffic until its pods are ready."""
        self._reset_rollout()
        self.rolled_back_version = None
        self.canary_version = version
        self.canary_weight = 0
        self.step = 0
        self.failed_checks = 0
        self.strategy = strategy
        self.started_at = now
        self.analyses = 0
        self.state = RolloutState.WAITING_FOR_READY

    def mark_ready(self, now: str, restarts: int, weight: int) -> None:
        """The new version's pods are ready (-> Analysing): its first step starts now."""
        self.ready_at = now
        self.ready_restarts = restarts
        self.step_started_at = now
        self.canary_weight = weight
        self.step = 0
        self.state = RolloutState.ANALYSING

    def clear_canary(self) -> None:
        """The rollout ended (promoted, superseded, aborted without memory) (-> Idle)."""
        self._reset_rollout()
        self.canary_version = None
        self.canary_weight = 0
        self.step = 0
        self.failed_checks = 0
        self.state = RolloutState.IDLE

    def roll_back(self, remember: bool) -> None:
        """Back to 100% stable (-> RolledBack, or Idle when the version is not to be remembered)."""
        version = self.canary_version
        self.clear_canary()
        if remember:
            self.rolled_back_version = version
            self.state = RolloutState.ROLLED_BACK

    def forget_rollback(self) -> None:
        """The rolled-back version may be rolled out again (retry, or the spec went back to stable)."""
        self.rolled_back_version = None
        if self.state is RolloutState.ROLLED_BACK:
            self.state = RolloutState.IDLE

    def hold_failed(self, traffic_off: bool = False) -> None:
        """Failed with rollback.automatic false (-> FailedHold): analyses stop; the weight stays, or, after a
        fail-fast breach (`traffic_off`), the new version loses all its traffic (weight, header routes, mirror)
        while its pods stay for a human to inspect. The step is kept: a promote goes on from it."""
        self.state = RolloutState.FAILED_HOLD
        if traffic_off:
            self.traffic_off = True
            self.canary_weight = 0

    def release_hold(self) -> None:
        """A human promoted a held rollout (-> Analysing again, then the promotion decides)."""
        if self.state is RolloutState.FAILED_HOLD:
            self.state = RolloutState.ANALYSING
            self.traffic_off = None

    def copy(self) -> RolloutStatus:
        return dataclasses.replace(
            self, extra=dict(self.extra), stalled=None if self.stalled is None else list(self.stalled)
        )


def phase_of(ro: RolloutStatus, target: int, paused: bool) -> Phase:
    """status.phase: the state seen from outside. `target` is spec.model.version; `paused` is spec.paused
    or the pause action. In this order: a held failure, a rollback of the version the spec names, a
    paused rollout (also one that cannot start while paused), a rollout, a draining previous version, a
    pause without a rollout, the first version not ready yet, stable."""
    if ro.state is RolloutState.FAILED_HOLD:
        return Phase.FAILED
    if ro.state is RolloutState.ROLLED_BACK and ro.rolled_back_version == target:
        return Phase.ROLLED_BACK
    in_rollout = ro.state in WITH_CANARY
    if paused and (in_rollout or target != ro.stable_version):
        return Phase.PAUSED
    if in_rollout:
        return Phase.PROGRESSING
    if ro.scale_down_at:
        return Phase.PROMOTING
    if paused:
        return Phase.PAUSED
    if not ro.initialized:
        return Phase.INITIALIZING
    return Phase.STABLE


__all__ = ["Phase", "RolloutState", "RolloutStatus", "WITH_CANARY", "derive_state", "phase_of"]
