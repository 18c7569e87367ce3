"""The rollout state machine, PURE: decide(spec, status, observation, now) -> Decision.

Everything the operator does follows from this function. It reads only its arguments (the status
is the only state store; the observation is what was just measured: Deployment readiness,
analysis results, a manual action) and returns the next status, the Deployments and routes that
status implies, the Events to emit and when to look again. The caller writes the status FIRST and
then makes the children match it, so the operator can die at any line and resume from the status.

The rollout's state is typed and explicit (modeldeploy.state.RolloutStatus, status.rollout.state:
Idle | WaitingForReady | Analysing | FailedHold | RolledBack); the transitions below switch on it and
set it, and status.phase is its projection (state.phase_of). Counting failed and no-data analyses
against failureThreshold and onNoData is one pure function, `assess`.

Strategies (spec.strategy.type):
- Canary: weight steps[0..n]; each step needs one passing analysis; after the last, promote.
- ABTest: requests matching headers/cookies go to the new version for `iterations` analyses.
- BlueGreen: the new version gets no live traffic (preview header only) for `iterations`
  analyses, then takes 100% at once.
- Shadow: `mirrorPercent` of live traffic is mirrored to the new version (responses discarded)
  for `iterations` analyses, then promote.

Safety rules:
- promotion needs a passing analysis with data for every metric (no data is never a pass);
- `failureThreshold` failed checks roll back; onNoData: hold | fail | rollback;
- a fail-fast breach rolls back at once, also while paused;
- pods not ready within progressDeadline roll back;
- a version change mid-rollout restarts cleanly from the current stable version;
- a rolled-back version is never retried automatically (manual `retry`, or a new version).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mdcommon.durations import parse_duration
from modeldeploy import gates
from modeldeploy.analysis.verdict import AnalysisResult
from modeldeploy.health import gitops_health
from modeldeploy.names import PREVIEW_HEADER
from modeldeploy.plans import RoutePlan, VersionPlan
from modeldeploy.spec import ModelDeploymentSpec
from modeldeploy.state import Phase, RolloutState, RolloutStatus, phase_of
from modeldeploy.status import (
    append_history,
    from_timestamp,
    get_condition,
    history_record,
    seconds_since,
    set_condition,
    to_timestamp,
)

RESYNC_SECONDS = 60.0  # idle re-check (drift repair, readiness); makes no writes when nothing changed
READINESS_POLL_SECONDS = 2.0
STALLED_AFTER_MAX_SECONDS = 60.0  # pods stuck this long (at most; see stalled_after) raise PodsStalled

MANUAL_ACTIONS = ("promote", "promote-full", "abort", "pause", "resume", "retry")


@dataclass(frozen=True)
class DeploymentState:
    """What is observed of one version's Deployment."""

    version: int
    exists: bool = True
    desired: int = 1
    ready: int = 0
    updated: int = 0
    available: int = 0
    observed_current: bool = True  # status.observedGeneration == metadata.generation (the counts are of this spec)
    fallback_ready: int = 0  # available pods of the version's CPU-fallback twin Deployment (current generation)
    fallback_exists: bool = False  # the CPU-fallback twin Deployment exists
    unschedulable_since: datetime.datetime | None = None  # earliest GPU pod stuck Unschedulable
    unschedulable_reason: str = ""
    stuck_pods: int = 0  # pods (of any variant) waiting on something: see reconciler.pod_health
    stuck_since: datetime.datetime | None = None  # the earliest of them
    stuck_reason: str = ""  # Unschedulable, FailedCreate, ContainerCreating, ImagePullBackOff, InitCrashLoopBackOff...
    stuck_message: str = ""
    restarts: int = 0  # TF Serving container restarts over the version's pods (cumulative restartCount)
    crash_reason: str = ""  # CrashLoopBackOff | OOMKilled (the worst seen among the version's pods), else ""
    crash_message: str = ""  # which pod, exit code, the kubelet's message

    @property
    def primary_ready(self) -> bool:
        """The primary Deployment is AVAILABLE for its current generation: the Deployment controller has
        observed the latest spec, every replica runs it and every replica has been Ready for
        spec.minReadySeconds (availableReplicas; readyReplicas counts a pod the moment it is Ready)."""
        return (
            self.exists
            and self.observed_current
            and self.available >= max(1, self.desired)
            and self.updated >= max(1, self.desired)
        )

    @property
    def is_ready(self) -> bool:
        """Serving: the primary pods are available, or (GPU shortage) the CPU twin's are."""
        return self.primary_ready or (self.exists and self.fallback_ready >= max(1, self.desired))

    def pods_detail(self) -> str:
        """'1/2 pods ready'; pods Ready but not yet available (serving.minReadySeconds) are told apart."""
        if self.available >= self.ready:
            return f"{self.ready}/{self.desired} pods ready"
        return f"{self.available}/{self.desired} pods available ({self.ready} ready, not yet for minReadySeconds)"

    @classmethod
    def from_object(cls, version: int, obj: dict | None) -> DeploymentState:
        if obj is None:
            return cls(version=version, exists=False, desired=0)
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        generation = (obj.get("metadata") or {}).get("generation") or 0
        observed = status.get("observedGeneration")
        desired = int(spec.get("replicas", 1) or 0)
        ready = int(status.get("readyReplicas") or 0)
        # A Deployment the controller has not observed yet (no status): counts of nothing, not "current".
        state = cls(
            version=version,
            exists=True,
            desired=desired,
            ready=ready,
            updated=int(status.get("updatedReplicas") or 0),
            available=int(status.get("availableReplicas") or 0),
            observed_current=observed is not None and int(observed) == int(generation),
        )
        # The ReplicaSet could not create pods (ResourceQuota, LimitRange, admission): no pod to look at, the
        # Deployment controller copies the ReplicaSet's ReplicaFailure condition to the Deployment.
        for cond in status.get("conditions") or []:
            if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
                since = from_timestamp(cond.get("lastTransitionTime"))
                if since is not None:
                    return dataclasses.replace(
                        state,
                        stuck_pods=max(1, desired - ready),
                        stuck_since=since,
                        stuck_reason=cond.get("reason") or "FailedCreate",
                        stuck_message=(cond.get("message") or "")[:300],
                    )
        return state


def available_replicas(obj: Mapping[str, Any] | None) -> int:
    """A Deployment's availableReplicas, counted only when its status is of its current generation."""
    state = DeploymentState.from_object(0, dict(obj)) if obj is not None else None
    return state.available if state is not None and state.observed_current else 0


@dataclass(frozen=True)
class Observation:
    """What the controller measured just before deciding."""

    deployments: Mapping[int, DeploymentState] = field(default_factory=dict)
    analysis: AnalysisResult | None = None  # a full interval analysis, when one was due and ran
    fail_fast: AnalysisResult | None = None  # a fail-fast check, when one ran
    action: str | None = None  # value of the modeldeploy.io/action annotation
    action_by: str | None = None  # who asked (modeldeploy.io/action-by), for the audit trail
    action_id: str | None = None  # the request's idempotency key (modeldeploy.io/action-id)
    gate_answers: tuple[gates.GateAnswer, ...] = ()  # webhook gate calls that finished since the last pass


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: dict[str, Any]
    versions: tuple[VersionPlan, ...]
    route: RoutePlan
    events: tuple[Event, ...] = ()
    action_handled: bool = False  # the action annotation may be removed (applied now, or before)
    action_replayed: bool = False  # ... applied by an earlier pass already (same action-id): not again
    wake_in: float = RESYNC_SECONDS


# --------------------------------------------------------------------------------------------
# Timing questions the controller asks before it measures anything
# --------------------------------------------------------------------------------------------


def analysis_due(spec: ModelDeploymentSpec, status: Mapping[str, Any], now: datetime.datetime) -> bool:
    """Whether a full analysis should run now (one interval after the step began or the last analysis)."""
    ro = RolloutStatus.from_status(status)
    return ro.live and _seconds_until_analysis(spec, ro, now) <= 0


def seconds_until_analysis(spec: ModelDeploymentSpec, status: Mapping[str, Any], now: datetime.datetime) -> float:
    return _seconds_until_analysis(spec, RolloutStatus.from_status(status), now)


def _seconds_until_analysis(spec: ModelDeploymentSpec, ro: RolloutStatus, now: datetime.datetime) -> float:
    since_step = seconds_since(ro.step_started_at, now)
    since_analysis = seconds_since(ro.last_analysis_at, now)
    elapsed = min(x for x in (since_step, since_analysis, float("inf")) if x is not None)
    if elapsed == float("inf"):
        return 0.0
    return spec.analysis.interval_seconds - elapsed


def _analysis_slot(spec: ModelDeploymentSpec, ro: RolloutStatus, now: datetime.datetime) -> datetime.datetime:
    """The time the analysis that just ran was DUE, so the schedule does not drift by the time a pass
    takes (query latency, a busy operator): the next one is due one interval after the slot, not after
    the moment it ran. A schedule fallen behind by more than an interval restarts from now."""
    due = now - datetime.timedelta(seconds=max(0.0, -_seconds_until_analysis(spec, ro, now)))
    if (now - due).total_seconds() >= spec.analysis.interval_seconds:
        return now
    return due


def fail_fast_applies(spec: ModelDeploymentSpec, status: Mapping[str, Any]) -> bool:
    """Fail-fast checks run while the new version takes live traffic: analysed, or held at its weight."""
    return RolloutStatus.from_status(status).guarded and bool(spec.analysis.fail_fast_metrics)


# --------------------------------------------------------------------------------------------
# Failure counting: one pure function (Argo Rollouts' assessMetricStatus shape)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assessment:
    """What one interval analysis means for the rollout, with the counters after it.

    action: advance (passed: next step or promotion, unless paused), hold (stay at this step), fail
    (the rollout failed: roll back, or hold for a human with rollback.automatic false).
    message: for fail, why (history and Event); for hold, the Warning Event's message ("" = no Event).
    """

    action: Literal["advance", "hold", "fail"]
    failed_checks: int
    no_data_streak: int | None
    message: str = ""
    event_reason: str = ""  # the hold's Warning: AnalysisFailed (a failed check) | NoData


def assess(
    verdict: str,
    failed_checks: int,
    no_data_streak: int | None,
    *,
    failure_threshold: int,
    on_no_data: str,
    detail: str = "",
    holding_at: str = "",
) -> Assessment:
    """Count one analysis verdict (pass | fail | noData) against analysis.failureThreshold and onNoData.

    failedChecks is cumulative over the rollout (a pass does not reset it); the no-data streak counts
    analyses without data in a row (any verdict with data ends it). `detail` names the failed or
    missing metrics, `holding_at` the current step (for the hold policy's one Warning per streak).
    """
    if verdict == "pass":
        return Assessment("advance", failed_checks, None)
    if verdict == "fail":
        failed = failed_checks + 1
        if failed >= failure_threshold:
            return Assessment(
                "fail", failed, None, f"analysis failed {failed} time(s) (threshold {failure_threshold}): {detail}"
            )
        return Assessment(
            "hold", failed, None, f"check {failed}/{failure_threshold} failed: {detail}", "AnalysisFailed"
        )
    streak = (no_data_streak or 0) + 1
    if on_no_data == "rollback":
        return Assessment("fail", failed_checks, streak, f"no data (onNoData rollback): {detail}")
    if on_no_data == "fail":
        failed = failed_checks + 1
        if failed >= failure_threshold:
            return Assessment("fail", failed, streak, f"no data counted as failure {failed} time(s): {detail}")
        return Assessment(
            "hold",
            failed,
            streak,
            f"no data, counted as failed check {failed}/{failure_threshold}: {detail}",
            "NoData",
        )
    if streak == 1:  # hold: say it once per streak, not every interval
        return Assessment("hold", failed_checks, streak, f"holding at {holding_at}: {detail}", "NoData")
    return Assessment("hold", failed_checks, streak)


# --------------------------------------------------------------------------------------------
# decide()
# --------------------------------------------------------------------------------------------


class _Ctx:
    """Working copy used while deciding (never escapes decide()): the typed rollout state `ro`, the
    rest of the status `st` (conditions, history, lastAnalysis...), the Events and wake-ups so far."""

    def __init__(
        self, spec: ModelDeploymentSpec, status: Mapping[str, Any], now: datetime.datetime, generation: int | None
    ):
        self.spec = spec
        self.now = now
        self.generation = generation
        self.st: dict[str, Any] = copy.deepcopy(dict(status or {}))
        self.ro = RolloutStatus.from_status(self.st)
        self.events: list[Event] = []
        self.wake: list[float] = [RESYNC_SECONDS]
        self.moved = False  # progression already moved this pass (a gate's sign-off): no second move
        self.breach = False  # this pass saw a fail-fast breach: a hold for a human pulls all traffic

    @property
    def gates(self) -> dict[str, Any]:
        """status.gates of the rollout in progress ({} otherwise)."""
        return gates.state(self.st.get("gates"), self.ro.canary_version)

    def set_gates(self, value: dict[str, Any]) -> None:
        self.st["gates"] = value

    @property
    def stamp(self) -> str:
        return to_timestamp(self.now)

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def history(self, **kwargs: Any) -> None:
        self.st["history"] = append_history(self.st.get("history"), history_record(now=self.now, **kwargs))

    def wake_in(self, seconds: float) -> None:
        self.wake.append(max(0.05, seconds))

    @property
    def paused(self) -> bool:
        return bool(self.spec.paused or self.ro.paused)


def decide(
    spec: ModelDeploymentSpec,
    status: Mapping[str, Any],
    observation: Observation,
    now: datetime.datetime,
    generation: int | None = None,
) -> Decision:
    """The next status and what it implies. The steps run in this order, each on the result of the last:

    1. a manual action (it may end or restart the rollout the spec then follows);
    2. follow spec.model.version (start, supersede or abort a rollout); record the webhook gates' answers
       (a sign-off that was awaited moves the rollout on, a refusal rolls it back);
    3. GPU fallback (CPU replicas count as ready for step 4);
    4. progress the rollout: readiness, pod failure, fail-fast, the interval analysis;
    5. end the drain of the previous version; 6. the first version's "deployed" record;
    7. phase, message and conditions from the state; 8. PodsStalled (its message names the phase's versions).
    """
    ctx = _Ctx(spec, status, now, generation)
    st, ro = ctx.st, ctx.ro
    if generation is not None:
        st["observedGeneration"] = generation
    target = spec.model.version

    if ro.stable_version is None:  # first contact: the spec's version becomes the stable one
        ro.stable_version = target
        ro.strategy = spec.strategy.type
        ctx.event("Normal", "Deploying", f"deploying model version {target} (first version)")

    handled = replayed = False
    if observation.action:
        handled = True
        action = observation.action.strip()
        if ctx.ro.already_handled(action, observation.action_id):
            replayed = True  # its effect is in the status; a later write of that pass failed: exactly once
        else:
            _manual_action(ctx, action, observation)
            if observation.action_id is not None:  # recorded in the same status write as the effect
                ctx.ro.handled_action, ctx.ro.handled_action_id = action, observation.action_id

    _follow_spec_version(ctx)
    _gate_answers(ctx, observation)
    _gpu_fallback(ctx, observation)
    _progress(ctx, observation)
    _finish_promotion(ctx)
    _mark_initialized(ctx, observation)
    _phase_and_conditions(ctx, observation)
    _stalled_pods(ctx, observation)
    ro.write(st)

    digests = pinned_digests(spec, st)
    if digests:
        st["modelDigests"] = digests
    else:
        st.pop("modelDigests", None)
    versions, route = plans(spec, st)
    if ro.state is RolloutState.WAITING_FOR_READY:
        ctx.wake_in(READINESS_POLL_SECONDS)
    if ro.live:
        ctx.wake_in(_seconds_until_analysis(spec, ro, now))
    if ro.guarded and spec.analysis.fail_fast_metrics:
        ctx.wake_in(spec.analysis.fail_fast_interval_seconds)
    if st["phase"] == Phase.INITIALIZING:
        ctx.wake_in(READINESS_POLL_SECONDS)
    if ro.canary_version is not None and spec.gates:
        ask = gates.next_ask_in(spec, st.get("gates"), ro.canary_version, now)
        if ask is not None:
            ctx.wake_in(ask + 0.05)
    scale_down_at = seconds_since(ro.scale_down_at, now)
    if scale_down_at is not None:
        ctx.wake_in(-scale_down_at)
    return Decision(
        status=st,
        versions=versions,
        route=route,
        events=tuple(ctx.events),
        action_handled=handled,
        action_replayed=replayed,
        wake_in=min(ctx.wake),
    )


def decide_invalid(
    status: Mapping[str, Any], message: str, now: datetime.datetime, generation: int | None
) -> tuple[dict[str, Any], list[Event]]:
    """Status for a spec that fails validation: phase Invalid, Ready=False/InvalidSpec, Stalled=True. Children untouched."""
    st = copy.deepcopy(dict(status or {}))
    events: list[Event] = []
    if st.get("phase") != Phase.INVALID or st.get("message") != message:
        events.append(Event("Warning", "InvalidSpec", message))
    st["phase"] = Phase.INVALID.value
    st["message"] = message
    if generation is not None:
        st["observedGeneration"] = generation
    health = gitops_health("Invalid", message, target_version=None, stable_version=None, stable_serving=False)
    conds = st.get("conditions") or []
    for cond in health.conditions:
        conds = set_condition(conds, cond.type, cond.status, cond.reason, cond.message, generation, now)
    st["conditions"] = conds
    return st, events


# ---- manual actions ---------------------------------------------------------------------------


def _manual_action(ctx: _Ctx, action: str, obs: Observation) -> None:
    ro = ctx.ro
    who = f" by {obs.action_by}" if obs.action_by else ""
    canary = ro.canary_version
    if action not in MANUAL_ACTIONS:
        ctx.event(
            "Warning",
            "UnknownAction",
            f"ignored modeldeploy.io/action {action!r}; use one of {', '.join(MANUAL_ACTIONS)}",
        )
        return
    if action == "pause":
        if not ro.paused:
            ro.paused = True
            ctx.event("Normal", "Paused", f"progression paused{who} (automatic rollback still fires)")
            ctx.history(version=canary or ro.stable_version, action="paused", reason=f"manual pause{who}")
        return
    if action == "resume":
        if ro.paused or ctx.spec.paused:
            ro.paused = False
            note = " (spec.paused is still true)" if ctx.spec.paused else ""
            ctx.event("Normal", "Resumed", f"progression resumed{who}{note}")
            ctx.history(version=canary or ro.stable_version, action="resumed", reason=f"manual resume{who}")
        return
    if action == "abort":
        if canary is None:
            ctx.event("Warning", "ActionIgnored", "abort: no rollout in progress")
            return
        _rollback(ctx, reason=f"manual abort{who}", action="aborted", metrics=_last_metrics(ctx.st))
        return
    if action == "retry":
        if ro.state is RolloutState.FAILED_HOLD:
            assert canary is not None
            _start_rollout(ctx, canary, note=f"retry{who}")
            ctx.history(version=canary, action="retried", reason=f"manual retry{who}")
        elif ro.state is RolloutState.ROLLED_BACK:
            failed = ro.rolled_back_version
            ro.forget_rollback()  # _follow_spec_version starts it again if the spec still names it
            ctx.event("Normal", "Retried", f"retrying version {failed}{who}")
            ctx.history(version=failed, action="retried", reason=f"manual retry{who}")
        else:
            ctx.event("Warning", "ActionIgnored", "retry: nothing rolled back or failed to retry")
        return
    # promote / promote-full
    if canary is None or not ro.ready_at:
        ctx.event("Warning", "ActionIgnored", f"{action}: no rollout with a ready new version")
        return
    ro.release_hold()
    if action == "promote-full":
        if not _signed_off(ctx, manual=True, final=True):
            return  # a human's promote waits for the sign-off too (or was refused by it)
        _promote(ctx, reason=f"manual promote-full{who}", manual=True)
    else:
        _advance(ctx, reason=f"manual promote{who}", manual=True)


# ---- following spec.model.version -------------------------------------------------------------


def _follow_spec_version(ctx: _Ctx) -> None:
    ro, spec = ctx.ro, ctx.spec
    target = spec.model.version
    stable = ro.stable_version
    canary = ro.canary_version
    if canary is not None and canary != target:
        if target == stable:
            reason = f"spec.model.version set back to the stable version {stable}"
            _rollback(ctx, reason=reason, action="aborted", metrics=_last_metrics(ctx.st), remember=False)
        else:
            ctx.history(
                version=canary,
                action="superseded",
                from_version=stable,
                strategy=ro.strategy,
                reason=f"spec.model.version changed to {target} during the rollout",
                metrics=_last_metrics(ctx.st),
            )
            ctx.event(
                "Normal",
                "RolloutSuperseded",
                f"rollout of version {canary} superseded by version {target}; restarting from stable {stable}",
            )
            ro.clear_canary()
        canary = None
    if target == stable:
        ro.forget_rollback()
        return
    if canary is None and ro.rolled_back_version != target and not ctx.paused:
        _start_rollout(ctx, target)


def _start_rollout(ctx: _Ctx, version: int, note: str = "") -> None:
    ro = ctx.ro
    ro.start(version, ctx.spec.strategy.type, ctx.stamp)
    ctx.st.pop("lastAnalysis", None)
    ctx.st.pop("gates", None)  # a new rollout (a retry too) asks every gate again
    extra = f" ({note})" if note else ""
    ctx.event(
        "Normal",
        "RolloutStarted",
        f"rolling out version {version} over stable {ro.stable_version} with strategy {ctx.spec.strategy.type}{extra}",
    )


# ---- webhook gates (modeldeploy.gates) ------------------------------------------------------------


def _gate_answers(ctx: _Ctx, obs: Observation) -> None:
    """Record the gates' answers (a history record on every change); act on a sign-off that was awaited."""
    st, ro, spec = ctx.st, ctx.ro, ctx.spec
    if st.get("gates") and not ctx.gates:
        st.pop("gates")  # the rollout it belonged to is over
    version = ro.canary_version
    for answer in (*obs.gate_answers, *gates.overdue(spec, st.get("gates"), version, ctx.now)):
        current, entry = gates.record(st.get("gates"), version, spec, answer)
        if answer.version == version:
            ctx.set_gates(current)
        if entry is None:
            continue
        st["history"] = append_history(st.get("history"), {**entry, "at": ctx.stamp})
        bad = answer.verdict in ("denied", "error")
        ctx.event("Warning" if bad else "Normal", "GateAnswered", entry["reason"])
    if version is None or ctx.gates.get("awaiting") != "confirmPromotion":
        return
    outcome, gate = gates.decision(spec, st.get("gates"), version, "confirmPromotion")
    if outcome == "yes":
        ctx.set_gates(gates.with_awaiting(st.get("gates"), version, None))
        _advance(ctx, reason="signed off by " + _signers(ctx))
    elif outcome == "no" and gate is not None:
        _rollback(ctx, reason=_refusal(ctx, gate), metrics=_last_metrics(st))


def _signers(ctx: _Ctx) -> str:
    answers = ctx.gates.get("answers") or {}
    names = []
    for gate in gates.of_type(ctx.spec, "confirmPromotion"):
        a = answers.get(gate.name) or {}
        names.append(f"gate {gate.name}" + (f" ({a['by']})" if a.get("by") else "") + f": {a.get('verdict')}")
    return "; ".join(names)


def _refusal(ctx: _Ctx, gate: Any) -> str:
    a = (ctx.gates.get("answers") or {}).get(gate.name) or {}
    who = f" by {a['by']}" if a.get("by") else ""
    return (
        f"{gate.type} gate {gate.name} refused version {ctx.ro.canary_version}{who}: {a.get('verdict')} "
        f"({a.get('detail', '')}; failurePolicy {gate.policy})"
    )


def _strategy(spec: ModelDeploymentSpec, ro: RolloutStatus) -> str:
    """The strategy of the rollout in progress: the one it started with (status.strategy), not the spec's
    when that changed mid-rollout -- the routes follow it (plan), so every step decision must too."""
    return ro.strategy or spec.strategy.type


def _final_move(ctx: _Ctx, manual: bool) -> bool:
    """Whether the next move gives the new version all live traffic (what confirmPromotion gates guard)."""
    ro, spec = ctx.ro, ctx.spec
    kind = _strategy(spec, ro)
    if kind == "Canary":
        steps = spec.strategy.canary.steps
        if (ro.canary_weight or 0) >= 100:
            return False  # already at 100%: the sign-off came before this step
        return ro.step + 1 >= len(steps) or steps[ro.step + 1] >= 100
    iterations = {
        "ABTest": spec.strategy.ab_test.iterations,
        "BlueGreen": spec.strategy.blue_green.iterations,
        "Shadow": spec.strategy.shadow.iterations,
    }[kind]
    return manual or ro.step + 1 >= iterations


def _signed_off(ctx: _Ctx, manual: bool, final: bool = False) -> bool:
    """Before the final move (`final`: it is one, e.g. promote-full): every confirmPromotion gate must have
    said yes. False: wait (the reconciler asks the gate) or refused (rolled back here)."""
    st, ro, spec = ctx.st, ctx.ro, ctx.spec
    if not gates.of_type(spec, "confirmPromotion") or not (final or _final_move(ctx, manual)):
        return True
    version = ro.canary_version
    outcome, gate = gates.decision(spec, st.get("gates"), version, "confirmPromotion")
    if outcome == "yes":
        ctx.set_gates(gates.with_awaiting(st.get("gates"), version, None))
        return True
    if outcome == "no" and gate is not None:
        _rollback(ctx, reason=_refusal(ctx, gate), metrics=_last_metrics(st))
        return False
    _mark_awaiting(
        ctx,
        version,
        "confirmPromotion",
        f"version {version} passed its analyses; waiting for confirmPromotion gate "
        f"{gate.name if gate else '?'} before it gets all traffic",
    )
    return False


def _mark_awaiting(ctx: _Ctx, version: int | None, kind: str, message: str) -> None:
    """Record that the rollout waits for a gate of this kind; the AwaitingApproval Event only when it starts."""
    if ctx.gates.get("awaiting") != kind:
        ctx.set_gates(gates.with_awaiting(ctx.st.get("gates"), version, kind))
        ctx.event("Normal", "AwaitingApproval", message)


def _pre_rollout_blocks(ctx: _Ctx) -> bool:
    """The new version is ready: every preRollout gate must say yes before it gets traffic. True: it
    waits (the reconciler asks) or was refused (rolled back here)."""
    st, ro, spec = ctx.st, ctx.ro, ctx.spec
    if not gates.of_type(spec, "preRollout"):
        return False
    version = ro.canary_version
    outcome, gate = gates.decision(spec, st.get("gates"), version, "preRollout")
    if outcome == "no" and gate is not None:
        _rollback(ctx, reason=_refusal(ctx, gate), metrics=[])
        return True
    if outcome == "wait":
        _mark_awaiting(
            ctx,
            version,
            "preRollout",
            f"version {version} is ready; waiting for preRollout gate {gate.name if gate else '?'} before it gets traffic",
        )
        ctx.wake_in(READINESS_POLL_SECONDS)
        return True
    ctx.set_gates(gates.with_awaiting(st.get("gates"), version, None))
    return False


def _on_rollback_gate(ctx: _Ctx, obs: Observation) -> bool:
    """A rollback gate that says yes (or errs with failurePolicy Fail) fails the rollout, also while paused."""
    outcome, gate = gates.decision(ctx.spec, ctx.st.get("gates"), ctx.ro.canary_version, "rollback")
    if outcome != "no" or gate is None:
        return False
    a = (ctx.gates.get("answers") or {}).get(gate.name) or {}
    who = f" by {a['by']}" if a.get("by") else ""
    reason = f"rollback gate {gate.name}{who}: {a.get('verdict')} ({a.get('detail', '')}; failurePolicy {gate.policy})"
    _fail(ctx, reason=reason, metrics=_last_metrics(ctx.st))
    return True


# ---- progressing a rollout --------------------------------------------------------------------


def _initial_weight(spec: ModelDeploymentSpec, ro: RolloutStatus) -> int:
    if _strategy(spec, ro) == "Canary":
        return spec.strategy.canary.steps[0]
    return 0


def _progress(ctx: _Ctx, obs: Observation) -> None:
    """One step of a rollout, by state: wait for readiness, or (Analysing) the fast failures first --
    pods crashing, a fail-fast breach, no preview traffic by the deadline -- then the interval analysis."""
    state = ctx.ro.state
    if state is RolloutState.WAITING_FOR_READY:
        _await_ready(ctx, obs)
    elif state is RolloutState.ANALYSING:
        ctx.breach = obs.fail_fast is not None and obs.fail_fast.verdict == "fail"
        _ = (
            _on_pod_failure(ctx, obs)
            or _on_rollback_gate(ctx, obs)
            or _on_fail_fast(ctx, obs)
            or _on_analysis(ctx, obs)
        )
    elif state is RolloutState.FAILED_HOLD:
        _on_fail_fast_while_held(ctx, obs)


def _await_ready(ctx: _Ctx, obs: Observation) -> None:
    """WaitingForReady -> Analysing when the pods are ready; rolled back after progressDeadline."""
    ro, spec = ctx.ro, ctx.spec
    canary = ro.canary_version
    assert canary is not None
    dep = obs.deployments.get(canary)
    if dep is not None and dep.is_ready and _pre_rollout_blocks(ctx):
        return
    if dep is not None and dep.is_ready:
        # restarts before readiness do not count against the version
        ro.mark_ready(ctx.stamp, restarts=dep.restarts, weight=_initial_weight(spec, ro))
        _preview_starved(ctx)  # BlueGreen: its preview deadline is known now (else the next quiet pass writes it)
        ctx.event("Normal", "CanaryReady", f"version {canary} is ready; {_route_text(spec, ro)}")
        return
    elapsed = seconds_since(ro.started_at, ctx.now) or 0.0
    deadline = spec.analysis.progress_deadline_seconds
    if elapsed > deadline:
        ready = dep.pods_detail() if dep is not None and dep.exists else "no Deployment"
        _rollback(
            ctx,
            reason=f"ProgressDeadlineExceeded: version {canary} not ready within {spec.analysis.progress_deadline} ({ready})",
            metrics=[],
        )
    else:
        ctx.wake_in(min(READINESS_POLL_SECONDS, deadline - elapsed + 0.05))


def _on_pod_failure(ctx: _Ctx, obs: Observation) -> bool:
    """A new version whose pods crash after they were ready fails at once, also while paused."""
    ro = ctx.ro
    assert ro.canary_version is not None
    failure = pod_failure(ctx.spec, ro, obs.deployments.get(ro.canary_version))
    if failure is None:
        return False
    _fail(ctx, reason=f"PodFailure: {failure}", metrics=_last_metrics(ctx.st))
    return True


def _on_fail_fast(ctx: _Ctx, obs: Observation) -> bool:
    """Fail fast before anything else: promotion is careful, rollback is fast (also while paused)."""
    if obs.fail_fast is None or obs.fail_fast.verdict != "fail":
        return False
    ctx.st["lastAnalysis"] = _analysis_status(obs.fail_fast)
    _fail(
        ctx,
        reason=f"fail-fast threshold crossed: {_breach(obs.fail_fast)}",
        metrics=_metric_statuses(obs.fail_fast),
        traffic_off=True,
    )
    return True


def _on_fail_fast_while_held(ctx: _Ctx, obs: Observation) -> None:
    """Held at its weight for a human, the new version still serves patients: a fail-fast breach pulls its
    traffic to 0% at once (the hold stays; a second `failed` record says why), or rolls it back when
    rollback.automatic was turned on meanwhile."""
    if obs.fail_fast is None or obs.fail_fast.verdict != "fail" or not ctx.ro.guarded:
        return
    ctx.st["lastAnalysis"] = _analysis_status(obs.fail_fast)
    _fail(
        ctx,
        reason=f"fail-fast threshold crossed while held for a human: {_breach(obs.fail_fast)}",
        metrics=_metric_statuses(obs.fail_fast),
        traffic_off=True,
    )


def _on_analysis(ctx: _Ctx, obs: Observation) -> bool:
    """The interval analysis, counted by `assess`: advance, hold (with its Warning) or fail."""
    ro, spec = ctx.ro, ctx.spec
    result = obs.analysis
    if result is not None and result.verdict != "noData":
        ro.preview_data_at = ro.preview_data_at or ctx.stamp
    if _preview_starved(ctx) or result is None:
        return True
    ctx.st["lastAnalysis"] = _analysis_status(result)
    ro.last_analysis_at = to_timestamp(_analysis_slot(spec, ro, ctx.now))
    ro.analyses = (ro.analyses or 0) + 1
    assessment = assess(
        result.verdict,
        ro.failed_checks,
        ro.no_data_streak,
        failure_threshold=spec.analysis.failure_threshold,
        on_no_data=spec.analysis.on_no_data,
        detail=_missing(result) if result.verdict == "noData" else _breach(result),
        holding_at=_route_text(spec, ro),
    )
    ro.failed_checks = assessment.failed_checks
    ro.no_data_streak = assessment.no_data_streak
    if assessment.action == "advance":
        if not ctx.paused and not ctx.moved:
            _advance(ctx, reason=f"analysis passed: {result.summary()}")
    elif assessment.action == "fail":
        _fail(ctx, reason=assessment.message, metrics=_metric_statuses(result))
    elif assessment.message:
        ctx.event("Warning", assessment.event_reason, assessment.message)
    return True


def _preview_starved(ctx: _Ctx) -> bool:
    """BlueGreen: the idle new version only gets preview traffic someone else sends. Without any analysis
    with data by strategy.blueGreen.previewDeadline after it was ready, fail instead of waiting forever."""
    ro, spec = ctx.ro, ctx.spec
    if spec.strategy.type != "BlueGreen" or (ro.strategy or "BlueGreen") != "BlueGreen" or ro.preview_data_at:
        ro.preview_deadline_at = None
        return False
    deadline = parse_duration(spec.strategy.blue_green.preview_deadline)
    ready_at = from_timestamp(ro.ready_at)
    if ready_at is None:
        return False
    due = ready_at + datetime.timedelta(seconds=deadline)
    ro.preview_deadline_at = to_timestamp(due)
    if ctx.now < due:
        ctx.wake_in((due - ctx.now).total_seconds() + 0.05)
        return False
    reason = (
        f"PreviewTrafficMissing: no analysis of version {ro.canary_version} had data within "
        f"strategy.blueGreen.previewDeadline {spec.strategy.blue_green.preview_deadline} of it being ready: the idle "
        f"version gets only preview traffic (header {PREVIEW_HEADER}), and none arrived"
    )
    _fail(ctx, reason=reason, metrics=_last_metrics(ctx.st))
    return True


def _advance(ctx: _Ctx, reason: str, manual: bool = False) -> None:
    ro, spec = ctx.ro, ctx.spec
    kind = _strategy(spec, ro)
    if not _signed_off(ctx, manual):
        return  # waiting for a confirmPromotion gate, or refused by one (rolled back)
    ctx.moved = True
    if kind == "Canary":
        steps = spec.strategy.canary.steps
        step = ro.step
        if step + 1 < len(steps):
            ro.step = step + 1
            ro.canary_weight = steps[step + 1]
            ro.step_started_at = ctx.stamp
            ro.last_analysis_at = None
            ctx.event("Normal", "StepAdvanced", f"version {ro.canary_version} to {steps[step + 1]}% ({reason})")
            return
        _promote(ctx, reason=reason, manual=manual)
        return
    iterations = {
        "ABTest": spec.strategy.ab_test.iterations,
        "BlueGreen": spec.strategy.blue_green.iterations,
        "Shadow": spec.strategy.shadow.iterations,
    }[kind]
    done = ro.step + 1
    if manual or done >= iterations:
        ro.step = min(done, iterations)
        _promote(ctx, reason=reason, manual=manual)
        return
    ro.step = done
    ctx.event("Normal", "StepAdvanced", f"{kind} iteration {done}/{iterations} passed ({reason})")


def _promote(ctx: _Ctx, reason: str, manual: bool = False) -> None:
    ro, spec = ctx.ro, ctx.spec
    canary = ro.canary_version
    old = ro.stable_version
    assert canary is not None
    last = ctx.st.get("lastAnalysis") or {}
    why = reason if manual else f"{ro.analyses or 0} passing analyses; last: {reason}"
    if gates.of_type(spec, "confirmPromotion"):
        why += f"; signed off by {_signers(ctx)}"
    ctx.history(
        version=canary,
        action="promoted",
        from_version=old,
        strategy=ro.strategy,
        reason=why,
        metrics=list(last.get("metrics") or []),
        evaluation=(last.get("evaluation") or None),
    )
    ro.clear_canary()
    ro.stable_version = canary
    if old != canary:
        ro.previous_stable = old
        ro.scale_down_at = to_timestamp(
            ctx.now + datetime.timedelta(seconds=parse_duration(spec.strategy.scale_down_delay))
        )
    ctx.event("Normal", "Promoted", f"version {canary} promoted to stable (was {old}): {why}")


def _fail(ctx: _Ctx, reason: str, metrics: list[dict], traffic_off: bool = False) -> None:
    """A failed rollout: roll back, or (rollback.automatic false) Analysing -> FailedHold at the failing step;
    a fail-fast breach (`traffic_off`) is never held at its weight: the new version's traffic goes to 0% at once."""
    if ctx.spec.rollback.automatic:
        _rollback(ctx, reason=reason, metrics=metrics)
        return
    ro = ctx.ro
    if ro.state is RolloutState.FAILED_HOLD and not (traffic_off and ro.routed):
        return  # held already (a breach while held still pulls the traffic)
    was = ro.canary_weight
    traffic_off = traffic_off or ctx.breach  # a pod failure or a gate seen in the same pass as a breach
    ro.hold_failed(traffic_off=traffic_off)
    if traffic_off:
        held = (
            f"{reason}; automatic rollback is off: traffic to version {ro.canary_version} set to 0% (was {was}%) "
            "for a human, its pods kept (kubectl modeldeploy abort|promote|retry)"
        )
    else:
        held = (
            f"{reason}; automatic rollback is off: holding version {ro.canary_version} at {ro.canary_weight}% "
            "for a human (kubectl modeldeploy abort|promote|retry)"
        )
    ctx.history(
        version=ro.canary_version,
        action="failed",
        from_version=ro.stable_version,
        strategy=ro.strategy,
        reason=held,
        metrics=metrics,
    )
    ctx.event("Warning", "AnalysisFailed", held)


def _rollback(ctx: _Ctx, reason: str, metrics: list[dict], action: str = "rolledBack", remember: bool = True) -> None:
    ro = ctx.ro
    canary = ro.canary_version
    stable = ro.stable_version
    ctx.history(
        version=canary, action=action, from_version=stable, strategy=ro.strategy, reason=reason, metrics=metrics
    )
    ro.roll_back(remember=remember)
    if action == "aborted":
        ctx.event("Warning", "Aborted", f"rollout of version {canary} aborted; 100% back on stable {stable}: {reason}")
    else:
        ctx.event("Warning", "RolledBack", f"version {canary} rolled back; 100% back on stable {stable}: {reason}")


def _gpu_fallback(ctx: _Ctx, obs: Observation) -> None:
    """GPU shortage: versions whose GPU pods stay unschedulable get CPU replicas until GPUs are back."""
    st, ro, spec, now = ctx.st, ctx.ro, ctx.spec, ctx.now
    current = {f["version"]: f for f in st.get("gpuFallback") or []}
    if not spec.serving.gpu.fallback_to_cpu or spec.serving.gpu.count < 1:
        for version in current:
            ctx.event("Normal", "GPUFallbackOff", f"version {version}: CPU fallback disabled; GPU pods only")
        st.pop("gpuFallback", None)
        return
    after = parse_duration(spec.serving.gpu.fallback_after)
    result: dict[int, dict] = {}
    for version in _live_versions(ro):
        dep = obs.deployments.get(version)
        if version in current:
            if dep is not None and dep.primary_ready:
                ctx.event("Normal", "GPURestored", f"version {version}: GPU pods are ready again; CPU replicas removed")
                continue
            result[version] = current[version]
            continue
        if dep is None or dep.primary_ready or dep.unschedulable_since is None:
            continue
        stuck = (now - dep.unschedulable_since).total_seconds()
        if stuck >= after:
            reason = f"GPU pods unschedulable for {stuck:.0f}s" + (
                f": {dep.unschedulable_reason}" if dep.unschedulable_reason else ""
            )
            result[version] = {"version": version, "since": to_timestamp(now), "reason": reason}
            ctx.event(
                "Warning",
                "GPUUnavailable",
                f"version {version}: {reason}; starting {spec.serving.replicas} CPU replica(s) "
                f"({spec.serving.cpu_image}, longer timeouts) until GPU capacity returns",
            )
        else:
            ctx.wake_in(after - stuck + 0.05)
    if result:
        st["gpuFallback"] = [result[v] for v in sorted(result)]
    else:
        st.pop("gpuFallback", None)


def _live_versions(ro: RolloutStatus) -> list[int]:
    """The versions that should serve: the stable one and the new one."""
    assert ro.stable_version is not None
    live = {ro.stable_version} | ({ro.canary_version} if ro.canary_version is not None else set())
    return sorted(live)


def _finish_promotion(ctx: _Ctx) -> None:
    ro = ctx.ro
    due = seconds_since(ro.scale_down_at, ctx.now)
    if due is not None and due >= 0:
        ro.scale_down_at = None
        ctx.event("Normal", "ScaledDown", f"previous version {ro.previous_stable} scaled to zero after the drain delay")


def _mark_initialized(ctx: _Ctx, obs: Observation) -> None:
    ro = ctx.ro
    if ro.initialized:
        return
    stable = ro.stable_version
    assert stable is not None
    dep = obs.deployments.get(stable)
    if dep is not None and dep.is_ready:
        ro.initialized = True
        ctx.history(
            version=stable,
            action="deployed",
            reason=f"first version {stable} ready ({dep.ready} pods)",
            strategy=ro.strategy,
        )
        ctx.event("Normal", "Deployed", f"version {stable} is serving ({dep.ready} pods ready)")


# ---- phase, conditions, plans -----------------------------------------------------------------


def _route_text(spec: ModelDeploymentSpec, ro: RolloutStatus) -> str:
    kind = _strategy(spec, ro)
    if kind == "Canary":
        return f"{ro.canary_weight}% of traffic"
    if kind == "ABTest":
        return "A/B test match routes"
    if kind == "Shadow":
        return f"{spec.strategy.shadow.mirror_percent}% of traffic mirrored"
    if ro.preview_deadline_at:
        return f"preview only (no live traffic); waiting for preview traffic until {ro.preview_deadline_at} (strategy.blueGreen.previewDeadline)"
    return "preview only (no live traffic)"


def _phase_message(ctx: _Ctx, phase: Phase) -> str:
    ro, spec = ctx.ro, ctx.spec
    canary, stable, target = ro.canary_version, ro.stable_version, spec.model.version
    if phase is Phase.FAILED:
        return f"rollout of version {canary} failed; holding for a human decision"
    if phase is Phase.ROLLED_BACK:
        return f"version {target} was rolled back; serving stable {stable} (set a new version or retry)"
    if phase is Phase.PAUSED:
        if canary is not None or target != stable:
            return f"rollout of version {canary if canary is not None else target} paused"
        return f"serving version {stable}; paused"
    if phase is Phase.PROGRESSING:
        text = (
            f"version {canary}: {_route_text(spec, ro)}"
            if ro.state is RolloutState.ANALYSING
            else f"waiting for version {canary} to become ready"
        )
        awaiting = ctx.gates.get("awaiting")
        if awaiting:
            _, gate = gates.decision(spec, ctx.st.get("gates"), canary, awaiting)
            text += f"; waiting for {awaiting} gate {gate.name if gate else '?'}"
        return text
    if phase is Phase.PROMOTING:
        return f"version {stable} promoted; draining version {ro.previous_stable}"
    if phase is Phase.INITIALIZING:
        return f"waiting for version {stable} to become ready"
    return f"serving version {stable}"


def _phase_and_conditions(ctx: _Ctx, obs: Observation) -> None:
    st, ro, spec, now, gen = ctx.st, ctx.ro, ctx.spec, ctx.now, ctx.generation
    canary = ro.canary_version
    stable = ro.stable_version
    assert stable is not None
    stable_dep = obs.deployments.get(stable)

    phase = phase_of(ro, spec.model.version, ctx.paused)
    message = _phase_message(ctx, phase)
    st["phase"] = phase.value
    st["message"] = message

    conds = st.get("conditions") or []
    stable_ready = stable_dep is not None and stable_dep.is_ready
    if stable_dep is not None and stable_ready:
        detail = f"{stable_dep.ready} pods ready"
        conds = set_condition(
            conds, "Available", True, "StableAvailable", f"version {stable} ready ({detail})", gen, now
        )
    else:
        # Not created yet (this pass creates it): the text it will have once it exists with no pod ready, so a
        # new ModelDeployment's second pass writes no status (one patch and one watch event less per object).
        detail = (
            stable_dep.pods_detail() if stable_dep and stable_dep.exists else f"0/{spec.serving.replicas} pods ready"
        )
        conds = set_condition(conds, "Available", False, "StableNotReady", f"version {stable}: {detail}", gen, now)
    health = gitops_health(
        phase.value,
        message,
        target_version=spec.model.version,
        stable_version=stable,
        stable_serving=stable_ready,
        stable_detail=detail,
        awaiting_approval=bool(ctx.gates.get("awaiting")),
    )
    for cond in health.conditions:
        conds = set_condition(conds, cond.type, cond.status, cond.reason, cond.message, gen, now)
    if canary is not None:
        conds = set_condition(
            conds,
            "Progressing",
            True,
            "RolloutInProgress" if phase is Phase.PROGRESSING else phase.value,
            message,
            gen,
            now,
        )
    else:
        conds = set_condition(conds, "Progressing", False, "NoRollout", f"serving version {stable}", gen, now)
    fallback = st.get("gpuFallback") or []
    if phase in (Phase.ROLLED_BACK, Phase.FAILED):
        conds = set_condition(conds, "Degraded", True, phase.value, message, gen, now)
    elif fallback:
        conds = set_condition(
            conds,
            "Degraded",
            True,
            "GPUUnavailable",
            "serving on CPU replicas: " + "; ".join(f"v{f['version']}: {f['reason']}" for f in fallback),
            gen,
            now,
        )
    else:
        conds = set_condition(conds, "Degraded", False, "AsExpected", "no failed rollout pending", gen, now)
    if spec.serving.gpu.fallback_to_cpu:
        if fallback:
            conds = set_condition(
                conds,
                "GPUFallback",
                True,
                "GPUUnavailable",
                ", ".join(f"v{f['version']}" for f in fallback) + " on CPU replicas",
                gen,
                now,
            )
        else:
            conds = set_condition(conds, "GPUFallback", False, "GPUAvailable", "all versions on GPU pods", gen, now)
    st["conditions"] = conds


def pod_failure(spec: ModelDeploymentSpec, ro: RolloutStatus, dep: DeploymentState | None) -> str | None:
    """Why the ready new version's pods count as failed (None: they do not): CrashLoopBackOff, an
    OOMKilled restart, or rollback.maxRestarts restarts since the version became ready."""
    if dep is None or not spec.rollback.on_pod_failure or not ro.ready_at:
        return None
    since_ready = dep.restarts - (ro.ready_restarts or 0)
    detail = f"{since_ready} restart(s) since it was ready" + (f"; {dep.crash_message}" if dep.crash_message else "")
    if dep.crash_reason == "CrashLoopBackOff":
        return f"version {dep.version}: TF Serving in CrashLoopBackOff ({detail})"
    if dep.crash_reason == "OOMKilled" and since_ready > 0:
        return f"version {dep.version}: TF Serving OOMKilled ({detail})"
    if since_ready >= spec.rollback.max_restarts:
        return f"version {dep.version}: {since_ready} TF Serving restarts since it was ready (rollback.maxRestarts {spec.rollback.max_restarts}; {dep.crash_message or 'no message'})"
    return None


def stalled_after(spec: ModelDeploymentSpec) -> float:
    """How long pods may wait before PodsStalled says so: a fifth of progressDeadline, at most a minute, so
    a human hears of an unschedulable or crashing pod long before the deadline rolls the version back."""
    return min(STALLED_AFTER_MAX_SECONDS, spec.analysis.progress_deadline_seconds / 5)


_STALL_HINTS = {
    "Unschedulable": "no node fits (free nvidia.com/gpu, nodeSelector or gpu.product labels, taints); "
    "a cluster autoscaler may still be adding one",
    "FailedCreate": "the ReplicaSet cannot create pods (a ResourceQuota, LimitRange or admission webhook refuses them)",
    "ContainerCreating": "volumes cannot be set up (kubectl describe pod; e.g. a ReadWriteOnce volume already "
    "attached to another node: Multi-Attach)",
    "ImagePullBackOff": "the image cannot be pulled",
    "ErrImagePull": "the image cannot be pulled",
    "CreateContainerConfigError": "a referenced Secret or ConfigMap key is missing",
    "CrashLoopBackOff": "TF Serving keeps exiting (kubectl logs -c tfserving)",
    "NotReady": "TF Serving runs but has not loaded the version (kubectl logs -c tfserving)",
    "ModelDigestMismatch": "the version folder is not the artifact spec.model.digest pins: it was overwritten "
    "under the same version number, or the digest is wrong (modeldeploy model digest PATH); TF Serving was not started",
}


def _stall_text(spec: ModelDeploymentSpec, ro: RolloutStatus, dep: DeploymentState) -> str:
    reason = dep.stuck_reason
    hint = _STALL_HINTS.get(reason, "")
    if reason == "ContainerCreating" and spec.model.storage_scheme == "pvc":
        hint = (
            "the model-store PVC cannot be attached: a ReadWriteOnce claim is attached to one node at a time "
            "(Multi-Attach error); use a ReadOnlyMany or ReadWriteMany claim for replicas on several nodes"
        )
    elif reason.startswith("Init") and spec.model.syncs:
        hint = "copying the version from the model store fails: missing version or credentials? (kubectl logs -c model-sync)"
    role = "canary" if dep.version == ro.canary_version else "stable"
    what = f"{dep.stuck_pods}/{max(dep.desired, dep.stuck_pods)} pod(s) of {role} version {dep.version}"
    since = "?" if dep.stuck_since is None else to_timestamp(dep.stuck_since)
    text = f"{what} stuck since {since}: {reason}"
    if dep.stuck_message:
        text += f": {dep.stuck_message}"
    if hint:
        text += f" ({hint})"
    return text


def _stalled_pods(ctx: _Ctx, obs: Observation) -> None:
    """Condition PodsStalled and a Warning Event when pods of a live version have waited too long."""
    st, ro, spec, now = ctx.st, ctx.ro, ctx.spec, ctx.now
    after = stalled_after(spec)
    stalled: list[DeploymentState] = []
    for version in _live_versions(ro):
        dep = obs.deployments.get(version)
        if dep is None or not dep.exists or dep.desired == 0 or dep.stuck_since is None or not dep.stuck_pods:
            continue
        waited = (now - dep.stuck_since).total_seconds()
        if waited >= after:
            stalled.append(dep)
        else:
            ctx.wake_in(after - waited + 0.05)
    keys = sorted(f"v{dep.version}:{dep.stuck_reason}" for dep in stalled)
    known = list(ro.stalled or [])
    if stalled:
        message = "; ".join(_stall_text(spec, ro, dep) for dep in stalled)
        deadline = ""
        if any(dep.version == ro.canary_version for dep in stalled) and not ro.ready_at:
            deadline = (
                f"; the rollout rolls back at progressDeadline ({spec.analysis.progress_deadline}) unless this clears"
            )
        st["conditions"] = set_condition(
            st.get("conditions") or [], "PodsStalled", True, stalled[0].stuck_reason, message, ctx.generation, now
        )
        if set(keys) - set(known):
            ctx.event("Warning", "PodsStalled", message + deadline)
        ro.stalled = keys
        return
    previous = get_condition(st.get("conditions"), "PodsStalled")
    st["conditions"] = set_condition(
        st.get("conditions") or [], "PodsStalled", False, "AsExpected", "no pod of a live version is stuck",
        ctx.generation, now,
    )  # fmt: skip
    if previous is not None and previous.get("status") == "True":
        ctx.event("Normal", "PodsRecovered", f"pods no longer stuck ({', '.join(known) or previous.get('reason')})")
    ro.stalled = None


def pinned_digests(spec: ModelDeploymentSpec, st: Mapping[str, Any]) -> dict[str, str]:
    """status.modelDigests: the artifact digest each live version was pinned to. spec.model.digest pins
    spec.model.version; a version keeps its digest after the spec moves on to the next one (the stable's
    pods must not change when a canary starts), and versions no longer live lose theirs."""
    ro = RolloutStatus.from_status(st)
    live = {ro.stable_version, ro.canary_version, ro.previous_stable, ro.rolled_back_version}
    out = {v: d for v, d in (st.get("modelDigests") or {}).items() if v.isdigit() and int(v) in live}
    if spec.model.digest and spec.model.version in live:
        out[str(spec.model.version)] = spec.model.digest
    elif not spec.model.digest:
        out.pop(str(spec.model.version), None)
    return dict(sorted(out.items()))


def plans(spec: ModelDeploymentSpec, st: Mapping[str, Any]) -> tuple[tuple[VersionPlan, ...], RoutePlan]:
    """The Deployments and the routing that a status implies (pure; used on every pass)."""
    ro = RolloutStatus.from_status(st)
    replicas = spec.serving.replicas
    stable = ro.stable_version
    canary = ro.canary_version
    assert stable is not None, "a status without stableVersion implies nothing"
    on_cpu = {f["version"] for f in st.get("gpuFallback") or []}
    digests = pinned_digests(spec, st)
    out: dict[int, VersionPlan] = {
        stable: VersionPlan(stable, "stable", replicas, cpu_fallback=stable in on_cpu, digest=digests.get(str(stable)))
    }
    if canary is not None and canary != stable:
        out[canary] = VersionPlan(
            canary, "canary", replicas, cpu_fallback=canary in on_cpu, digest=digests.get(str(canary))
        )
    previous = ro.previous_stable
    if previous is not None and previous not in out:
        draining = bool(ro.scale_down_at)
        out[previous] = VersionPlan(previous, "previous", replicas if draining else 0)
    rolled_back = ro.rolled_back_version
    if rolled_back is not None and rolled_back not in out:
        out[rolled_back] = VersionPlan(rolled_back, "rolledback", 0)
    versions = tuple(out[v] for v in sorted(out))

    routed_canary = canary if ro.routed else None
    kind = _strategy(spec, ro)
    preview = tuple(sorted(v.version for v in versions if v.replicas > 0))
    if routed_canary is None:
        route = RoutePlan(stable=stable, preview=preview)
    elif kind == "ABTest":
        route = RoutePlan(
            stable=stable, canary=routed_canary, match=tuple(spec.strategy.ab_test.match), preview=preview
        )
    elif kind == "Shadow":
        route = RoutePlan(
            stable=stable, canary=routed_canary, mirror_percent=spec.strategy.shadow.mirror_percent, preview=preview
        )
    elif kind == "BlueGreen":
        route = RoutePlan(stable=stable, canary=routed_canary, canary_weight=0, preview=preview)
    else:
        route = RoutePlan(stable=stable, canary=routed_canary, canary_weight=ro.canary_weight, preview=preview)
    return versions, route


def _analysis_status(result: AnalysisResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "time": to_timestamp(result.at),
        "verdict": result.verdict,
        "kind": result.kind,
        "metrics": _metric_statuses(result),
    }
    if result.requests is not None:
        out["requests"] = round(float(result.requests), 1)
    if result.evaluation:
        out["evaluation"] = result.evaluation
    return out


def _last_metrics(st: Mapping[str, Any]) -> list[dict]:
    return list((st.get("lastAnalysis") or {}).get("metrics") or [])


def _metric_statuses(result: AnalysisResult) -> list[dict]:
    return [m.to_status() for m in result.metrics]


def _breach(result: AnalysisResult) -> str:
    return "; ".join(f"{m.name} {m.reason}" for m in result.failed)


def _missing(result: AnalysisResult) -> str:
    return "; ".join(f"{m.name}: {m.reason}" for m in result.missing)
