"""The pure rollout state machine, rollout.decide(), as tables: given a status and an observation, the next status and Events.

The rollout's state is explicit (status.rollout.state, modeldeploy.state), so a mid-rollout status is
written down directly (`status(...)`) instead of being played forward. Each TRANSITIONS row names the
state it starts in, what was observed (readiness, an analysis, a fail-fast check, a manual action, a
spec change) and what must follow: fields of the next status (dotted paths; None = absent), the exact
list of Event reasons, and, where it matters, the replicas and the route. Every row's result must
also be a consistent status (its written state is the one its keys imply) that reads back unchanged.

Below the table: `assess` (failure counting, Argo Rollouts' assessMetricStatus shape) and `phase_of`
(status.phase from the state) as tables of their own, statuses written before status.rollout.state
existed, and the played-forward sequences that prove the status alone is enough state.
Times are seconds after T0.
"""

from __future__ import annotations

import datetime
import pathlib
import re

import pytest
import yaml

from modeldeploy.analysis.verdict import AnalysisResult, judge, no_data
from modeldeploy.rollout import (
    DeploymentState, Observation, analysis_due, assess, decide, decide_invalid, fail_fast_applies, plans,
)
from modeldeploy.state import Phase, RolloutState, RolloutStatus, derive_state, phase_of
from modeldeploy.status import to_timestamp
from modeldeploy.validation import validate_spec

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.timezone.utc)
ROOT = pathlib.Path(__file__).resolve().parents[2]


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def ts(seconds: float) -> str:
    return to_timestamp(at(seconds))


def make_spec(version: int = 2, strategy: dict | None = None, analysis: dict | None = None, serving: dict | None = None, **extra):
    spec = {
        "model": {"name": "m", "basePath": "s3://b/m", "version": version},
        "serving": serving or {"replicas": 2},
        "strategy": strategy or {"type": "Canary", "canary": {"steps": [10, 50, 100]}},
        "analysis": {
            "interval": "10s", "failureThreshold": 2, "progressDeadline": "60s", "minRequests": 10,
            "metrics": [
                {"name": "latency", "builtin": "latency", "quantile": 0.95, "max": 100, "failFast": {"max": 400}},
                {"name": "errors", "builtin": "errorRate", "max": 1},
            ],
            **(analysis or {}),
        },
        **extra,
    }
    result = validate_spec(spec)
    assert result.ok, result.problems
    return result.spec


def ready(*versions: int, replicas: int = 2) -> dict[int, DeploymentState]:
    return {v: DeploymentState(version=v, desired=replicas, ready=replicas, updated=replicas, available=replicas) for v in versions}


def not_ready(version: int) -> DeploymentState:
    return DeploymentState(version=version, desired=2, ready=0, updated=2)


def crashed(version: int, reason: str, restarts: int, message: str = "pod m-v2-x: exit code 137 (OOMKilled)") -> DeploymentState:
    return DeploymentState(version=version, desired=2, ready=1, updated=2, restarts=restarts, crash_reason=reason,
                           crash_message=message)  # fmt: skip


def passing(t: float) -> AnalysisResult:
    return AnalysisResult(at=at(t), metrics=(judge("latency", 40.0, min=None, max=100), judge("errors", 0.1, min=None, max=1)), requests=500)


def failing(t: float) -> AnalysisResult:
    return AnalysisResult(at=at(t), metrics=(judge("latency", 250.0, min=None, max=100), judge("errors", 0.1, min=None, max=1)), requests=500)


def nodata(t: float) -> AnalysisResult:
    return AnalysisResult(at=at(t), metrics=(no_data("latency", "0 requests < minRequests 10"), judge("errors", 0.1, min=None, max=1)), requests=0)


def breach(t: float) -> AnalysisResult:
    return AnalysisResult(at=at(t), metrics=(judge("latency", 900.0, min=None, max=400),), kind="failFast", requests=50)


def reasons(decision) -> list[str]:
    return [e.reason for e in decision.events]


# ---- statuses, written down by state ---------------------------------------------------------------------

def status(state: str = "Idle", stable: int = 1, canary: int | None = None, weight: int = 0, step: int = 0, failed: int = 0,
           strategy: str = "Canary", history: list | None = None, **rollout) -> dict:
    """A status as the operator writes it, from the typed state (rollout= RolloutStatus field names)."""
    ro = RolloutStatus(stable_version=stable, canary_version=canary, canary_weight=weight, step=step, failed_checks=failed,
                       strategy=strategy, state=RolloutState(state), initialized=True, **rollout)  # fmt: skip
    st: dict = {"history": history or [{"version": stable, "action": "deployed", "at": ts(-100), "reason": "first"}]}
    ro.write(st)
    return st


STABLE = status()
WAITING = status("WaitingForReady", canary=2, started_at=ts(0), analyses=0)
ANALYSING = status("Analysing", canary=2, weight=10, started_at=ts(0), ready_at=ts(5), step_started_at=ts(5), analyses=0, ready_restarts=0)


def analysing(strategy: str = "Canary", **changes) -> dict:
    """ANALYSING with some fields changed (top-level: weight, step, failed; rollout: RolloutStatus names)."""
    top = {k: changes.pop(k) for k in ("weight", "step", "failed") if k in changes}
    fields = dict(started_at=ts(0), ready_at=ts(5), step_started_at=ts(5), analyses=0, ready_restarts=0) | changes
    return status("Analysing", canary=2, strategy=strategy, **({"weight": 10} | top), **fields)


HELD = status("FailedHold", canary=2, weight=10, failed=1, started_at=ts(0), ready_at=ts(5), step_started_at=ts(5),
              last_analysis_at=ts(15), analyses=1, ready_restarts=0)  # fmt: skip
HELD_OFF = status("FailedHold", canary=2, weight=0, started_at=ts(0), ready_at=ts(5), step_started_at=ts(5),
                  analyses=0, ready_restarts=0, traffic_off=True)  # held after a fail-fast breach: no traffic  # fmt: skip
ROLLED_BACK = status("RolledBack", rolled_back_version=2)
DRAINING = status(stable=2, previous_stable=1, scale_down_at=ts(45))
FIRST = {"stableVersion": 3, "strategy": "Canary", "rollout": {"state": "Idle"}}  # first contact, pods not ready yet

ABTEST = {"type": "ABTest", "abTest": {"match": [{"headers": {"x-variant": {"exact": "b"}}}], "iterations": 2}}
BLUE_GREEN = {"type": "BlueGreen", "blueGreen": {"iterations": 3, "previewDeadline": "60s"}}
SHADOW = {"type": "Shadow", "shadow": {"mirrorPercent": 40, "iterations": 2}}


def obs(*ready_versions: int, waiting: int | None = None, **kwargs) -> Observation:
    deployments = ready(*ready_versions)
    if waiting is not None:
        deployments[waiting] = not_ready(waiting)
    return Observation(deployments=deployments, **kwargs)


# (id, spec, given status, observation, t, expected status fields, expected Event reasons, extra checks)
# extra: replicas {version: n}; route (stable, canary, weight); reason (history[-1].reason contains)
TRANSITIONS = [
    # -- first version
    ("first-contact", make_spec(3), {}, obs(), 0,
     {"phase": "Initializing", "rollout.state": "Idle", "stableVersion": 3, "canaryVersion": None, "history": None},
     ["Deploying"], {"replicas": {3: 2}, "route": (3, None, 0)}),
    ("first-version-ready", make_spec(3), FIRST, obs(3), 5,
     {"phase": "Stable", "rollout.initialized": True, "history[-1].action": "deployed"}, ["Deployed"], {}),
    # -- idle
    ("idle-resync", make_spec(1), STABLE, obs(1), 500, {"phase": "Stable", "rollout.state": "Idle"}, [], {}),
    # -- a new version: start, wait, ready
    ("version-change-starts", make_spec(2), STABLE, obs(1), 0,
     {"phase": "Progressing", "rollout.state": "WaitingForReady", "canaryVersion": 2, "canaryWeight": 0,
      "rollout.startedAt": ts(0), "rollout.analyses": 0},
     ["RolloutStarted"], {"replicas": {1: 2, 2: 2}, "route": (1, None, 0)}),
    ("still-waiting", make_spec(2), WAITING, obs(1, waiting=2), 30,
     {"phase": "Progressing", "rollout.state": "WaitingForReady", "message": "waiting for version 2 to become ready"}, [], {}),
    ("canary-ready-first-step", make_spec(2), WAITING, obs(1, 2), 5,
     {"phase": "Progressing", "rollout.state": "Analysing", "canaryWeight": 10, "step": 0, "rollout.readyAt": ts(5),
      "rollout.readyRestarts": 0, "message": "version 2: 10% of traffic"},
     ["CanaryReady"], {"route": (1, 2, 10)}),
    ("progress-deadline", make_spec(2), WAITING, obs(1, waiting=2), 61,
     {"phase": "RolledBack", "rollout.state": "RolledBack", "rollout.rolledBackVersion": 2, "canaryVersion": None,
      "history[-1].action": "rolledBack"},
     ["RolledBack"], {"reason": "ProgressDeadlineExceeded: version 2 not ready within 60s (0/2 pods ready)"}),
    # -- analyses: pass, fail, no data
    ("pass-advances", make_spec(2), ANALYSING, obs(1, 2, analysis=passing(15)), 15,
     {"canaryWeight": 50, "step": 1, "rollout.stepStartedAt": ts(15), "rollout.lastAnalysisAt": None,
      "rollout.analyses": 1, "lastAnalysis.verdict": "pass"},
     ["StepAdvanced"], {"route": (1, 2, 50)}),
    ("pass-second-step", make_spec(2), analysing(weight=50, step=1, analyses=1), obs(1, 2, analysis=passing(15)), 15,
     {"canaryWeight": 100, "step": 2, "rollout.state": "Analysing"}, ["StepAdvanced"], {}),
    ("pass-last-step-promotes", make_spec(2, strategy={"type": "Canary", "canary": {"steps": [10, 50, 100]}, "scaleDownDelay": "30s"}),
     analysing(weight=100, step=2, analyses=2), obs(1, 2, analysis=passing(15)), 15,
     {"phase": "Promoting", "rollout.state": "Idle", "stableVersion": 2, "canaryVersion": None, "canaryWeight": 0,
      "rollout.previousStable": 1, "rollout.scaleDownAt": ts(45), "history[-1].action": "promoted",
      "history[-1].fromVersion": 1, "rollout.readyAt": None},
     ["Promoted"], {"replicas": {1: 2, 2: 2}, "route": (2, None, 0), "reason": "3 passing analyses; last: analysis passed"}),
    ("draining", make_spec(2), DRAINING, obs(1, 2), 30,
     {"phase": "Promoting", "message": "version 2 promoted; draining version 1"}, [], {"replicas": {1: 2, 2: 2}}),
    ("drain-ends", make_spec(2), DRAINING, obs(1, 2), 46,
     {"phase": "Stable", "rollout.scaleDownAt": None, "rollout.previousStable": 1}, ["ScaledDown"], {"replicas": {1: 0, 2: 2}}),
    ("fail-below-threshold", make_spec(2), ANALYSING, obs(1, 2, analysis=failing(15)), 15,
     {"phase": "Progressing", "failedChecks": 1, "canaryWeight": 10, "rollout.state": "Analysing"},
     ["AnalysisFailed"], {}),
    ("fail-at-threshold", make_spec(2), analysing(failed=1), obs(1, 2, analysis=failing(25)), 25,
     {"phase": "RolledBack", "rollout.state": "RolledBack", "failedChecks": 0, "canaryWeight": 0, "canaryVersion": None,
      "history[-1].action": "rolledBack"},
     ["RolledBack"], {"replicas": {1: 2, 2: 0}, "route": (1, None, 0), "reason": "analysis failed 2 time(s) (threshold 2): latency"}),
    ("a-pass-keeps-failed-checks", make_spec(2), analysing(failed=1), obs(1, 2, analysis=passing(15)), 15,
     {"failedChecks": 1, "canaryWeight": 50}, ["StepAdvanced"], {}),
    ("rolled-back-not-retried", make_spec(2), ROLLED_BACK, obs(1, 2), 100,
     {"phase": "RolledBack", "canaryVersion": None, "rollout.state": "RolledBack"}, [], {"replicas": {1: 2, 2: 0}}),
    ("nodata-hold-warns-once", make_spec(2), ANALYSING, obs(1, 2, analysis=nodata(15)), 15,
     {"phase": "Progressing", "failedChecks": 0, "canaryWeight": 10, "rollout.noDataStreak": 1}, ["NoData"], {}),
    ("nodata-hold-streak-quiet", make_spec(2), analysing(no_data_streak=1), obs(1, 2, analysis=nodata(25)), 25,
     {"failedChecks": 0, "rollout.noDataStreak": 2}, [], {}),
    ("data-ends-the-streak", make_spec(2), analysing(no_data_streak=3), obs(1, 2, analysis=failing(25)), 25,
     {"failedChecks": 1, "rollout.noDataStreak": None}, ["AnalysisFailed"], {}),
    ("nodata-fail-counts", make_spec(2, analysis={"onNoData": "fail"}), ANALYSING, obs(1, 2, analysis=nodata(15)), 15,
     {"phase": "Progressing", "failedChecks": 1, "canaryWeight": 10}, ["NoData"], {}),
    ("nodata-rollback", make_spec(2, analysis={"onNoData": "rollback"}), ANALYSING, obs(1, 2, analysis=nodata(15)), 15,
     {"phase": "RolledBack", "failedChecks": 0}, ["RolledBack"], {"reason": "no data (onNoData rollback): latency: 0 requests"}),
    ("nodata-last-step-never-promotes", make_spec(2, strategy={"type": "Canary", "canary": {"steps": [100]}}),
     analysing(weight=100, no_data_streak=3), obs(1, 2, analysis=nodata(45)), 45,
     {"phase": "Progressing", "stableVersion": 1, "canaryWeight": 100}, [], {}),
    # -- fast failures: fail-fast, pods, preview deadline
    ("fail-fast-while-paused", make_spec(2, analysis={"failureThreshold": 5}), analysing(paused=True),
     obs(1, 2, fail_fast=breach(7)), 7,
     {"phase": "RolledBack", "rollout.paused": True, "lastAnalysis.kind": "failFast"}, ["RolledBack"],
     {"reason": "fail-fast threshold crossed: latency 900 > max 400"}),
    ("fail-fast-pass-nothing", make_spec(2), ANALYSING, Observation(deployments=ready(1, 2), fail_fast=AnalysisResult(
        at=at(7), metrics=(judge("latency", 90.0, min=None, max=400),), kind="failFast", requests=50)), 7,
     {"phase": "Progressing", "canaryWeight": 10, "lastAnalysis": None}, [], {}),
    ("crashloop-rolls-back", make_spec(2), ANALYSING, Observation(deployments=ready(1) | {2: crashed(2, "CrashLoopBackOff", 3)}), 6,
     {"phase": "RolledBack"}, ["RolledBack"], {"reason": "PodFailure: version 2: TF Serving in CrashLoopBackOff"}),
    ("oomkilled-rolls-back", make_spec(2), ANALYSING, Observation(deployments=ready(1) | {2: crashed(2, "OOMKilled", 1)}), 6,
     {"phase": "RolledBack"}, ["RolledBack"], {"reason": "TF Serving OOMKilled"}),
    ("restarts-since-ready", make_spec(2), analysing(ready_restarts=5),
     Observation(deployments=ready(1) | {2: crashed(2, "", 7, "pod m-v2-x: exit code 1 (Error)")}), 6,
     {"phase": "RolledBack"}, ["RolledBack"], {"reason": "2 TF Serving restarts since it was ready"}),
    ("one-restart-tolerated", make_spec(2), analysing(ready_restarts=5),
     Observation(deployments=ready(1) | {2: crashed(2, "", 6, "pod m-v2-x: exit code 1 (Error)")}), 6,
     {"phase": "Progressing"}, [], {}),
    ("pod-failure-while-spec-paused", make_spec(2, paused=True), ANALYSING,
     Observation(deployments=ready(1) | {2: crashed(2, "CrashLoopBackOff", 4)}), 6, {"phase": "RolledBack"}, ["RolledBack"], {}),
    ("pod-failure-check-off", make_spec(2, rollback={"onPodFailure": False}), ANALYSING,
     Observation(deployments=ready(1) | {2: crashed(2, "CrashLoopBackOff", 4)}), 6, {"phase": "Progressing"}, [], {}),
    ("blue-green-preview-deadline", make_spec(2, strategy=BLUE_GREEN), analysing("BlueGreen", weight=0), obs(1, 2, analysis=nodata(66)), 66,
     {"phase": "RolledBack"}, ["RolledBack"], {"reason": "PreviewTrafficMissing: no analysis of version 2 had data within"}),
    ("blue-green-waits-for-preview", make_spec(2, strategy=BLUE_GREEN), analysing("BlueGreen", weight=0), obs(1, 2, analysis=nodata(15)), 15,
     {"phase": "Progressing", "rollout.previewDeadlineAt": ts(65), "rollout.noDataStreak": 1}, ["NoData"], {"route": (1, 2, 0)}),
    # -- rollback.automatic false: held for a human
    ("held-for-a-human", make_spec(2, rollback={"automatic": False}), analysing(failed=1), obs(1, 2, analysis=failing(15)), 15,
     {"phase": "Failed", "rollout.state": "FailedHold", "rollout.failedHold": True, "canaryWeight": 10, "failedChecks": 2,
      "history[-1].action": "failed", "history[-1].fromVersion": 1},
     ["AnalysisFailed"], {"route": (1, 2, 10), "reason": "holding version 2 at 10% for a human"}),
    # a fail-fast breach is never held at its weight: the traffic is pulled at once, the version kept for a human
    ("held-fail-fast-pulls-traffic", make_spec(2, rollback={"automatic": False}), analysing(weight=50, step=1),
     obs(1, 2, fail_fast=breach(7)), 7,
     {"phase": "Failed", "rollout.state": "FailedHold", "rollout.trafficOff": True, "canaryWeight": 0, "canaryVersion": 2,
      "step": 1, "history[-1].action": "failed", "lastAnalysis.kind": "failFast"},
     ["AnalysisFailed"], {"route": (1, None, 0), "replicas": {1: 2, 2: 2},
                          "reason": "traffic to version 2 set to 0% (was 50%) for a human"}),
    ("held-fail-fast-abtest-no-match-route", make_spec(2, strategy=ABTEST, rollback={"automatic": False}),
     analysing("ABTest", weight=0), obs(1, 2, fail_fast=breach(7)), 7,
     {"phase": "Failed", "rollout.trafficOff": True}, ["AnalysisFailed"], {"route": (1, None, 0)}),
    ("held-fail-fast-shadow-no-mirror", make_spec(2, strategy=SHADOW, rollback={"automatic": False}),
     analysing("Shadow", weight=0), obs(1, 2, fail_fast=breach(7)), 7,
     {"phase": "Failed", "rollout.trafficOff": True}, ["AnalysisFailed"], {"route": (1, None, 0)}),
    # held at its weight after a failed analysis, the version still serves: fail-fast keeps guarding it
    ("held-then-fail-fast-pulls-traffic", make_spec(2, rollback={"automatic": False}), HELD, obs(1, 2, fail_fast=breach(30)), 30,
     {"phase": "Failed", "rollout.state": "FailedHold", "rollout.trafficOff": True, "canaryWeight": 0,
      "history[-1].action": "failed", "lastAnalysis.kind": "failFast"},
     ["AnalysisFailed"], {"route": (1, None, 0), "reason": "fail-fast threshold crossed while held for a human"}),
    ("held-then-fail-fast-with-automatic-now-on-rolls-back", make_spec(2), HELD, obs(1, 2, fail_fast=breach(30)), 30,
     {"phase": "RolledBack", "canaryVersion": None, "history[-1].action": "rolledBack"}, ["RolledBack"],
     {"route": (1, None, 0), "reason": "fail-fast threshold crossed"}),
    # a pod failure seen in the same pass as a breach: the hold pulls the traffic too (found by the long profile)
    ("held-pod-failure-with-breach-pulls-traffic", make_spec(2, rollback={"automatic": False}), analysing(weight=50, step=1),
     Observation(deployments=ready(1) | {2: crashed(2, "CrashLoopBackOff", 3)}, fail_fast=breach(7)), 7,
     {"phase": "Failed", "rollout.trafficOff": True, "canaryWeight": 0}, ["AnalysisFailed"],
     {"route": (1, None, 0), "reason": "PodFailure"}),
    ("held-fail-fast-stays-off", make_spec(2, rollback={"automatic": False}), HELD_OFF, obs(1, 2), 35,
     {"phase": "Failed", "canaryWeight": 0, "rollout.trafficOff": True}, [], {"route": (1, None, 0)}),
    ("held-stays-quiet", make_spec(2, rollback={"automatic": False}), HELD, obs(1, 2), 35,
     {"phase": "Failed", "rollout.state": "FailedHold", "history[-1].action": "deployed"}, [], {"route": (1, 2, 10)}),
    ("held-pod-failure", make_spec(2, rollback={"automatic": False}), ANALYSING,
     Observation(deployments=ready(1) | {2: crashed(2, "OOMKilled", 1)}), 6,
     {"phase": "Failed", "history[-1].action": "failed"}, ["AnalysisFailed"], {"reason": "PodFailure"}),
    # -- the spec moves on during a rollout
    ("superseded", make_spec(3), analysing(weight=50, step=1), obs(1, 2), 20,
     {"canaryVersion": 3, "canaryWeight": 0, "stableVersion": 1, "rollout.state": "WaitingForReady",
      "history[-1].action": "superseded", "history[-1].version": 2},
     ["RolloutSuperseded", "RolloutStarted"], {"replicas": {1: 2, 3: 2}, "route": (1, None, 0)}),
    ("set-back-to-stable-aborts", make_spec(1), ANALYSING, obs(1, 2), 8,
     {"phase": "Stable", "rollout.state": "Idle", "canaryVersion": None, "rollout.rolledBackVersion": None,
      "history[-1].action": "aborted"},
     ["Aborted"], {}),
    ("new-version-after-rollback", make_spec(3), ROLLED_BACK, obs(1), 50,
     {"rollout.state": "WaitingForReady", "canaryVersion": 3, "rollout.rolledBackVersion": None}, ["RolloutStarted"], {}),
    ("back-to-stable-forgets-rollback", make_spec(1), ROLLED_BACK, obs(1), 50,
     {"phase": "Stable", "rollout.state": "Idle", "rollout.rolledBackVersion": None}, [], {}),
    # -- iteration strategies
    ("abtest-iteration", make_spec(2, strategy=ABTEST), analysing("ABTest", weight=0), obs(1, 2, analysis=passing(15)), 15,
     {"step": 1, "phase": "Progressing"}, ["StepAdvanced"], {}),
    ("abtest-promotes-after-n", make_spec(2, strategy=ABTEST), analysing("ABTest", weight=0, step=1, analyses=1),
     obs(1, 2, analysis=passing(25)), 25, {"phase": "Promoting", "stableVersion": 2}, ["Promoted"], {}),
    ("shadow-promotes-after-n", make_spec(2, strategy=SHADOW), analysing("Shadow", weight=0, step=1, analyses=1),
     obs(1, 2, analysis=passing(25)), 25, {"phase": "Promoting", "stableVersion": 2}, ["Promoted"], {}),
    # -- manual actions (modeldeploy.io/action)
    ("promote", make_spec(2), ANALYSING, obs(1, 2, action="promote", action_by="alice"), 7,
     {"canaryWeight": 50, "phase": "Progressing"}, ["StepAdvanced"], {}),
    ("promote-full", make_spec(2), ANALYSING, obs(1, 2, action="promote-full", action_by="alice"), 7,
     {"stableVersion": 2, "phase": "Promoting", "history[-1].action": "promoted"}, ["Promoted"], {"reason": "manual promote-full by alice"}),
    ("promote-held", make_spec(2, rollback={"automatic": False}), HELD, obs(1, 2, action="promote"), 40,
     {"rollout.state": "Analysing", "rollout.failedHold": None, "canaryWeight": 50, "phase": "Progressing"}, ["StepAdvanced"], {}),
    ("promote-held-after-fail-fast", make_spec(2, rollback={"automatic": False}), HELD_OFF, obs(1, 2, action="promote"), 40,
     {"rollout.state": "Analysing", "rollout.trafficOff": None, "canaryWeight": 50, "step": 1}, ["StepAdvanced"],
     {"route": (1, 2, 50)}),
    ("retry-held-after-fail-fast", make_spec(2, rollback={"automatic": False}), HELD_OFF, obs(1, waiting=2, action="retry"), 40,
     {"rollout.state": "WaitingForReady", "rollout.trafficOff": None, "canaryWeight": 0}, ["RolloutStarted"], {}),
    # found by the property suite (long profile): the spec's strategy changed to Canary during an A/B test; a
    # manual promote moved a Canary weight (26%) the A/B routes never use instead of ending the A/B test
    ("promote-follows-the-rollouts-strategy", make_spec(2, strategy={"type": "Canary", "canary": {"steps": [1, 26, 54]}}),
     analysing("ABTest", weight=0), obs(1, 2, action="promote"), 40,
     {"stableVersion": 2, "canaryWeight": 0, "history[-1].action": "promoted"}, ["Promoted"], {}),
    ("promote-before-ready", make_spec(2), WAITING, obs(1, waiting=2, action="promote"), 3,
     {"rollout.state": "WaitingForReady"}, ["ActionIgnored"], {}),
    ("abort", make_spec(2), ANALYSING, obs(1, 2, action="abort", action_by="alice"), 7,
     {"phase": "RolledBack", "stableVersion": 1, "history[-1].action": "aborted"}, ["Aborted"], {"reason": "manual abort by alice"}),
    ("abort-held", make_spec(2, rollback={"automatic": False}), HELD, obs(1, 2, action="abort"), 30,
     {"phase": "RolledBack", "rollout.state": "RolledBack", "history[-1].action": "aborted"}, ["Aborted"], {}),
    ("abort-nothing", make_spec(1), STABLE, obs(1, action="abort"), 7, {"phase": "Stable"}, ["ActionIgnored"], {}),
    ("pause", make_spec(2), ANALYSING, obs(1, 2, action="pause", action_by="alice"), 7,
     {"phase": "Paused", "rollout.paused": True, "rollout.state": "Analysing", "message": "rollout of version 2 paused"},
     ["Paused"], {"reason": "manual pause by alice"}),
    ("paused-pass-holds", make_spec(2), analysing(paused=True), obs(1, 2, analysis=passing(15)), 15,
     {"phase": "Paused", "canaryWeight": 10, "rollout.analyses": 1}, [], {}),
    ("resume", make_spec(2), analysing(paused=True), obs(1, 2, action="resume"), 8,
     {"phase": "Progressing", "rollout.paused": None, "history[-1].action": "resumed"}, ["Resumed"], {}),
    ("paused-blocks-a-new-rollout", make_spec(2), status(paused=True), obs(1), 3,
     {"phase": "Paused", "rollout.state": "Idle", "canaryVersion": None, "message": "rollout of version 2 paused"}, [], {}),
    ("retry-rolled-back", make_spec(2), ROLLED_BACK, obs(1, action="retry", action_by="bob"), 40,
     {"phase": "Progressing", "rollout.state": "WaitingForReady", "canaryVersion": 2, "history[-1].action": "retried"},
     ["Retried", "RolloutStarted"], {"reason": "manual retry by bob"}),
    ("retry-held", make_spec(2, rollback={"automatic": False}), HELD, obs(1, waiting=2, action="retry"), 40,
     {"rollout.state": "WaitingForReady", "failedChecks": 0, "canaryWeight": 0, "rollout.readyAt": None,
      "rollout.failedHold": None, "history[-1].action": "retried"},
     ["RolloutStarted"], {}),
    ("retry-nothing", make_spec(1), STABLE, obs(1, action="retry"), 7, {"phase": "Stable"}, ["ActionIgnored"], {}),
    ("unknown-action", make_spec(1), STABLE, obs(1, action="yolo"), 1, {"phase": "Stable"}, ["UnknownAction"], {}),
]


def _get(status: dict, path: str):
    node = status
    for part in re.findall(r"[^.\[\]]+|\[-?\d+\]", path):
        if part.startswith("["):
            if not node:
                return None
            node = node[int(part[1:-1])]
        else:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
    return node


@pytest.mark.parametrize("spec, given, observation, t, fields, events, extra", [r[1:] for r in TRANSITIONS],
                         ids=[r[0] for r in TRANSITIONS])  # fmt: skip
def test_transition(spec, given, observation, t, fields, events, extra):
    d = decide(spec, given, observation, at(t), generation=2)
    for path, value in fields.items():
        assert _get(d.status, path) == value, (path, _get(d.status, path), d.status)
    assert reasons(d) == events, d.events
    assert d.action_handled is bool(observation.action)
    if "replicas" in extra:
        assert {v.version: v.replicas for v in d.versions} == extra["replicas"]
    if "route" in extra:
        assert (d.route.stable, d.route.canary, d.route.canary_weight) == extra["route"]
    if "reason" in extra:
        assert extra["reason"] in d.status["history"][-1]["reason"], d.status["history"][-1]
    # a consistent status: the written state is the one its keys imply, and it reads back unchanged
    assert d.status["rollout"]["state"] == derive_state(d.status)
    again = dict(d.status)
    RolloutStatus.from_status(d.status).write(again)
    assert again == d.status
    assert d.status["phase"] == phase_of(RolloutStatus.from_status(d.status), spec.model.version,
                                         bool(spec.paused or d.status["rollout"].get("paused")))  # fmt: skip


def test_every_state_and_phase_has_a_row():
    seen_states, seen_phases, seen_events = set(), set(), set()
    for _, spec, given, observation, t, _, _, _ in TRANSITIONS:
        d = decide(spec, given, observation, at(t), generation=2)
        seen_states |= {d.status["rollout"]["state"], (given.get("rollout") or {}).get("state", "Idle")}
        seen_phases.add(d.status["phase"])
        seen_events |= set(reasons(d))
    assert seen_states == set(RolloutState)
    assert seen_phases == set(Phase) - {Phase.INVALID}  # Invalid: decide_invalid, below
    assert {"AnalysisFailed", "NoData", "RolledBack", "Promoted", "StepAdvanced", "Aborted", "Retried"} <= seen_events


def test_idle_resync_changes_nothing():
    """The status decide wrote, decided again with nothing new: not a byte changes (no write), no Event."""
    spec = make_spec(version=1)
    st = decide(spec, {}, Observation(deployments=ready(1)), at(-100), generation=1).status
    d = decide(spec, st, Observation(deployments=ready(1)), at(500), generation=1)
    assert d.status == st and d.events == ()


def test_invalid_status_touches_only_status():
    st, events = decide_invalid(decide(make_spec(1), STABLE, obs(1), at(0), generation=1).status,
                                "invalid spec: spec.x: bad", at(0), 7)  # fmt: skip
    assert st["phase"] == "Invalid" and st["rollout"] == STABLE["rollout"]
    ready_cond = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready_cond["status"], ready_cond["reason"], ready_cond["observedGeneration"]) == ("False", "InvalidSpec", 7)
    assert [e.reason for e in events] == ["InvalidSpec"]
    st2, events2 = decide_invalid(st, "invalid spec: spec.x: bad", at(5), 7)
    assert st2 == st and events2 == []  # no repeated Warning


# ---- assess: failure counting, one pure function ------------------------------------------------------

# (verdict, failedChecks, noDataStreak, failureThreshold, onNoData) -> (action, failedChecks', streak', Event reason)
ASSESS = [
    ("pass", 0, None, 2, "hold", "advance", 0, None, ""),
    ("pass", 1, None, 2, "hold", "advance", 1, None, ""),  # failedChecks is cumulative: a pass keeps it
    ("pass", 0, 4, 2, "hold", "advance", 0, None, ""),  # data ends the no-data streak
    ("fail", 0, None, 2, "hold", "hold", 1, None, "AnalysisFailed"),
    ("fail", 1, None, 2, "hold", "fail", 2, None, ""),
    ("fail", 0, None, 1, "hold", "fail", 1, None, ""),
    ("fail", 0, 3, 3, "hold", "hold", 1, None, "AnalysisFailed"),
    ("fail", 5, None, 2, "hold", "fail", 6, None, ""),  # beyond the threshold (a lowered threshold) fails
    ("noData", 0, None, 2, "hold", "hold", 0, 1, "NoData"),  # hold: one Warning per streak
    ("noData", 0, 1, 2, "hold", "hold", 0, 2, ""),
    ("noData", 1, 7, 2, "hold", "hold", 1, 8, ""),  # hold never fails, whatever the streak
    ("noData", 0, None, 2, "fail", "hold", 1, 1, "NoData"),  # fail: counted as a failed check
    ("noData", 1, 1, 2, "fail", "fail", 2, 2, ""),
    ("noData", 0, None, 1, "fail", "fail", 1, 1, ""),
    ("noData", 0, None, 5, "rollback", "fail", 0, 1, ""),  # rollback: at once, not counted
]


@pytest.mark.parametrize("verdict, failed, streak, threshold, policy, action, failed_after, streak_after, event", ASSESS)
def test_assess(verdict, failed, streak, threshold, policy, action, failed_after, streak_after, event):
    a = assess(verdict, failed, streak, failure_threshold=threshold, on_no_data=policy, detail="latency 250 > max 100",
               holding_at="10% of traffic")  # fmt: skip
    assert (a.action, a.failed_checks, a.no_data_streak, a.event_reason) == (action, failed_after, streak_after, event)
    if action == "fail" or event:
        assert "latency 250 > max 100" in a.message
    else:
        assert a.message == ""
    if event == "NoData" and policy == "hold":
        assert a.message.startswith("holding at 10% of traffic: ")


def test_assess_messages_name_the_count_and_the_threshold():
    assert assess("fail", 0, None, failure_threshold=3, on_no_data="hold", detail="x").message == "check 1/3 failed: x"
    assert assess("fail", 2, None, failure_threshold=3, on_no_data="hold", detail="x").message == (
        "analysis failed 3 time(s) (threshold 3): x")
    assert assess("noData", 0, None, failure_threshold=2, on_no_data="fail", detail="m").message == (
        "no data, counted as failed check 1/2: m")
    assert assess("noData", 1, None, failure_threshold=2, on_no_data="fail", detail="m").message == (
        "no data counted as failure 2 time(s): m")


# ---- phase_of: status.phase is a projection of the state ----------------------------------------------

# (state, stable, canary, rolledBackVersion, scaleDownAt, initialized, target, paused) -> phase
PHASES = [
    ("Idle", 1, None, None, None, False, 1, False, "Initializing"),
    ("Idle", 1, None, None, None, True, 1, False, "Stable"),
    ("Idle", 1, None, None, None, True, 1, True, "Paused"),
    ("Idle", 1, None, None, None, True, 2, True, "Paused"),  # a rollout that cannot start while paused
    ("Idle", 1, None, None, None, False, 1, True, "Paused"),
    ("Idle", 2, None, None, "t", True, 2, False, "Promoting"),
    ("Idle", 2, None, None, "t", True, 2, True, "Promoting"),  # draining continues while paused
    ("Idle", 2, None, None, "t", True, 3, True, "Paused"),
    ("WaitingForReady", 1, 2, None, None, True, 2, False, "Progressing"),
    ("WaitingForReady", 1, 2, None, None, False, 2, False, "Progressing"),  # the first version not ready yet either
    ("WaitingForReady", 1, 2, None, None, True, 2, True, "Paused"),
    ("Analysing", 1, 2, None, None, True, 2, False, "Progressing"),
    ("Analysing", 2, 3, None, "t", True, 3, False, "Progressing"),  # a new rollout while the last one drains
    ("Analysing", 1, 2, None, None, True, 2, True, "Paused"),
    ("FailedHold", 1, 2, None, None, True, 2, False, "Failed"),
    ("FailedHold", 1, 2, None, None, True, 2, True, "Failed"),  # a held failure shows through a pause
    ("RolledBack", 1, None, 2, None, True, 2, False, "RolledBack"),
    ("RolledBack", 1, None, 2, None, True, 2, True, "RolledBack"),
    ("RolledBack", 1, None, 2, None, True, 3, True, "Paused"),  # the spec names another version, paused
]


@pytest.mark.parametrize("state, stable, canary, rolled_back, scale_down, initialized, target, paused, phase", PHASES)
def test_phase_of(state, stable, canary, rolled_back, scale_down, initialized, target, paused, phase):
    ro = RolloutStatus(state=RolloutState(state), stable_version=stable, canary_version=canary,
                       rolled_back_version=rolled_back, scale_down_at=scale_down, initialized=initialized)  # fmt: skip
    assert phase_of(ro, target, paused) == Phase(phase)


# ---- the typed state on the wire -------------------------------------------------------------------------

# statuses as an operator without status.rollout.state wrote them -> the state they are in
LEGACY = [
    ({"stableVersion": 1}, "Idle"),
    ({"stableVersion": 1, "rollout": {"initialized": True, "previousStable": 0, "scaleDownAt": "t"}}, "Idle"),
    ({"stableVersion": 1, "canaryVersion": 2, "rollout": {"startedAt": "t", "analyses": 0}}, "WaitingForReady"),
    ({"stableVersion": 1, "canaryVersion": 2, "canaryWeight": 10, "rollout": {"readyAt": "t"}}, "Analysing"),
    ({"stableVersion": 1, "canaryVersion": 2, "rollout": {"readyAt": "t", "failedHold": True}}, "FailedHold"),
    ({"stableVersion": 1, "rollout": {"rolledBackVersion": 2, "paused": True}}, "RolledBack"),
]


@pytest.mark.parametrize("given, state", LEGACY, ids=[s for _, s in LEGACY])
def test_a_status_without_state_is_read_by_its_keys(given, state):
    ro = RolloutStatus.from_status(given)
    assert ro.state == RolloutState(state) == derive_state(given)
    written: dict = {}
    ro.write(written)
    assert written["rollout"] == {"state": state} | (given.get("rollout") or {})  # the same keys, plus state


@pytest.mark.parametrize("stored", ["Analysing", "Idle", "RolledBack", "Sideways"])
def test_a_stored_state_that_cannot_be_is_derived_again(stored):
    """An operator without `state` that ran in between kept the key without knowing it: the keys win."""
    given = {"stableVersion": 1, "canaryVersion": 2, "rollout": {"state": stored, "readyAt": "t", "failedHold": True}}
    if stored == "Analysing":  # possible with these keys: trusted (failedHold is written only for FailedHold)
        assert RolloutStatus.from_status(given).state is RolloutState.ANALYSING
    else:
        assert RolloutStatus.from_status(given).state is RolloutState.FAILED_HOLD
    assert RolloutStatus.from_status({"stableVersion": 1, "rollout": {"state": "RolledBack"}}).state is RolloutState.IDLE


def test_unknown_rollout_keys_are_kept():
    given = {"stableVersion": 1, "rollout": {"state": "Idle", "initialized": True, "fromTheFuture": {"a": 1}}}
    written: dict = {}
    RolloutStatus.from_status(given).write(written)
    assert written["rollout"] == given["rollout"]


def test_the_crd_lists_the_states_and_phases():
    crd = yaml.safe_load((ROOT / "crds" / "modeldeployment.yaml").read_text())
    status_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status_schema["rollout"]["properties"]["state"]["enum"] == [s.value for s in RolloutState]
    assert status_schema["phase"]["enum"] == [p.value for p in Phase]


# ---- played forward: the status alone is enough state -----------------------------------------------------

def stable_status(version: int = 1) -> dict:
    """A ModelDeployment that has been serving `version` for a while."""
    spec = make_spec(version=version)
    d = decide(spec, {}, Observation(deployments=ready(version)), at(-100), generation=1)
    assert d.status["phase"] == "Stable"
    return d.status


def progressing(spec, t_ready: float = 5.0) -> dict:
    """Status of a rollout 1 -> 2 whose canary became ready at t_ready."""
    st = stable_status(1)
    d = decide(spec, st, Observation(deployments=ready(1) | {2: not_ready(2)}), at(0), generation=2)
    d = decide(spec, d.status, Observation(deployments=ready(1, 2)), at(t_ready), generation=2)
    return d.status


def test_a_whole_canary_played_forward_promotes_once_with_the_evidence():
    spec = make_spec(version=2)
    st = progressing(spec)
    assert st["rollout"]["state"] == "Analysing" and st["canaryWeight"] == 10
    assert not analysis_due(spec, st, at(14)) and analysis_due(spec, st, at(15))
    weights = []
    for t in (15, 25, 35):
        assert analysis_due(spec, st, at(t))
        st = decide(spec, st, Observation(deployments=ready(1, 2), analysis=passing(t)), at(t), generation=2).status
        weights.append(st["canaryWeight"])
    assert weights == [50, 100, 0] and st["phase"] == "Promoting" and st["stableVersion"] == 2
    promoted = [h for h in st["history"] if h["action"] == "promoted"]
    assert len(promoted) == 1 and promoted[0]["version"] == 2 and promoted[0]["fromVersion"] == 1
    assert {m["name"] for m in promoted[0]["metrics"]} == {"latency", "errors"}  # audit: what justified it


def test_pause_freezes_progression_and_resume_continues():
    spec = make_spec(version=2)
    st = progressing(spec)
    st = decide(spec, st, Observation(deployments=ready(1, 2), action="pause"), at(6), generation=2).status
    st = decide(spec, st, Observation(deployments=ready(1, 2), analysis=passing(16)), at(16), generation=2).status
    assert st["phase"] == "Paused" and st["canaryWeight"] == 10
    st = decide(spec, st, Observation(deployments=ready(1, 2), action="resume"), at(17), generation=2).status
    assert st["phase"] == "Progressing"
    st = decide(spec, st, Observation(deployments=ready(1, 2), analysis=passing(27)), at(27), generation=2).status
    assert st["canaryWeight"] == 50


def test_iteration_strategies_route_as_they_should():
    for strategy, check in [
        (ABTEST, lambda r: r.match and r.canary_weight == 0 and r.mirror_percent == 0),
        ({"type": "BlueGreen", "blueGreen": {"iterations": 2}}, lambda r: not r.match and r.canary_weight == 0 and 2 in r.preview),
        (SHADOW, lambda r: r.mirror_percent == 40 and r.canary_weight == 0),
    ]:
        spec = make_spec(version=2, strategy=strategy)
        _, route = plans(spec, progressing(spec))
        assert route.canary == 2 and check(route), strategy


def test_analysis_schedule_does_not_drift_when_a_pass_runs_late():
    spec = make_spec(version=2, strategy={"type": "Canary", "canary": {"steps": [10, 20, 30, 40, 100]}})
    st = progressing(spec, t_ready=5)  # first analysis due at 15
    st = decide(spec, st, Observation(deployments=ready(1, 2), analysis=nodata(16.5)), at(16.5), generation=2).status
    assert not analysis_due(spec, st, at(24.9))
    assert analysis_due(spec, st, at(25.0))  # one interval after the slot (15), not after the late run (16.5)
    st = decide(spec, st, Observation(deployments=ready(1, 2), analysis=nodata(60)), at(60), generation=2).status
    assert not analysis_due(spec, st, at(69.9)) and analysis_due(spec, st, at(70))  # fell far behind: restart from now
    held = decide(make_spec(2, rollback={"automatic": False}), HELD, obs(1, 2), at(100), generation=2).status
    assert not analysis_due(spec, held, at(100))  # a held rollout is not analysed


def test_a_failed_rollout_held_for_a_human_writes_one_history_record():
    """rollback.automatic false: the failure is a decision too (feature review 17c); it is in status.history
    (and so in the audit chain) with the metrics that failed, once."""
    spec = make_spec(version=2, rollback={"automatic": False})
    st = progressing(spec)
    d = decide(spec, st, Observation(deployments=ready(1, 2), analysis=failing(15)), at(15), generation=2)
    d = decide(spec, d.status, Observation(deployments=ready(1, 2), analysis=failing(25)), at(25), generation=2)
    assert d.status["phase"] == "Failed"
    record = d.status["history"][-1]
    assert record["action"] == "failed" and record["version"] == 2 and record["fromVersion"] == 1
    assert "analysis failed 2 time(s)" in record["reason"] and "holding version 2 at 10% for a human" in record["reason"]
    assert {m["name"] for m in record["metrics"]} == {"latency", "errors"}
    again = decide(spec, d.status, Observation(deployments=ready(1, 2)), at(35), generation=2)
    assert [h["action"] for h in again.status["history"]].count("failed") == 1


def _stuck(version: int, since_s: float, primary_ready: bool = False, cpu_ready: int = 0) -> DeploymentState:
    return DeploymentState(version=version, desired=2, ready=2 if primary_ready else 0, updated=2,
                           available=2 if primary_ready else 0,
                           fallback_exists=cpu_ready > 0, fallback_ready=cpu_ready,
                           unschedulable_since=None if primary_ready else at(since_s),
                           unschedulable_reason="0/3 nodes are available: 1 Insufficient nvidia.com/gpu")


@pytest.mark.parametrize(
    "fallback_on, stuck_for, expect_fallback, event",
    [(True, 3, False, None), (True, 7, True, "GPUUnavailable"), (False, 100, False, None)],
)
def test_gpu_fallback_after_pods_stay_unschedulable(fallback_on, stuck_for, expect_fallback, event):
    spec = make_spec(version=2, serving={"replicas": 2, "gpu": {"count": 1, "fallbackToCPU": fallback_on, "fallbackAfter": "5s"}})
    st = decide(spec, stable_status(1), Observation(deployments=ready(1) | {2: _stuck(2, 0)}), at(0), generation=2).status
    d = decide(spec, st, Observation(deployments=ready(1) | {2: _stuck(2, 0)}), at(stuck_for), generation=2)
    plans_by_version = {v.version: v for v in d.versions}
    assert plans_by_version[2].cpu_fallback is expect_fallback
    assert bool(d.status.get("gpuFallback")) is expect_fallback
    if event:
        assert event in reasons(d)
        cond = next(c for c in d.status["conditions"] if c["type"] == "GPUFallback")
        assert cond["status"] == "True" and "v2" in cond["message"]
        assert "Insufficient nvidia.com/gpu" in d.status["gpuFallback"][0]["reason"]


def test_cpu_replicas_make_the_canary_ready_and_gpu_return_removes_them():
    spec = make_spec(version=2, serving={"replicas": 2, "gpu": {"count": 1, "fallbackToCPU": True, "fallbackAfter": "5s"}})
    st = decide(spec, stable_status(1), Observation(deployments=ready(1) | {2: _stuck(2, 0)}), at(0), generation=2).status
    st = decide(spec, st, Observation(deployments=ready(1) | {2: _stuck(2, 0)}), at(6), generation=2).status
    d = decide(spec, st, Observation(deployments=ready(1) | {2: _stuck(2, 0, cpu_ready=2)}), at(8), generation=2)
    assert d.status["canaryWeight"] == 10 and "CanaryReady" in reasons(d)  # serving on CPU
    d = decide(spec, d.status, Observation(deployments=ready(1) | {2: _stuck(2, 0, primary_ready=True, cpu_ready=2)}), at(20), generation=2)
    assert "gpuFallback" not in d.status and "GPURestored" in reasons(d)
    assert not {v.version: v for v in d.versions}[2].cpu_fallback


# ---- pods that wait (issue 11 point 3): surfaced long before progressDeadline -------------------------

from modeldeploy.reconciler import pod_health  # noqa: E402
from modeldeploy.rollout import stalled_after  # noqa: E402

POD_LABELS = {"modeldeploy.io/variant": "primary"}
UNSCHEDULABLE = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "lastTransitionTime": "2026-11-25T12:00:00Z",
                 "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."}]}
SCHEDULED = {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-25T12:00:02Z"}


@pytest.mark.parametrize("status, reason, message_part", [
    (UNSCHEDULABLE, "Unschedulable", "didn't match Pod's node affinity/selector"),
    ({"phase": "Pending", "conditions": [SCHEDULED], "containerStatuses": [
        {"name": "tfserving", "state": {"waiting": {"reason": "ContainerCreating"}}}]}, "ContainerCreating", "tfserving"),
    ({"phase": "Pending", "conditions": [SCHEDULED], "initContainerStatuses": [
        {"name": "model-sync", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
         "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}}}],
      "containerStatuses": [{"name": "tfserving", "state": {"waiting": {"reason": "PodInitializing"}}}]},
     "InitCrashLoopBackOff", "model-sync: back-off 40s"),
    ({"phase": "Pending", "conditions": [SCHEDULED], "containerStatuses": [
        {"name": "tfserving", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]},
     "ImagePullBackOff", "Back-off pulling"),
    # the model's digest check refused the version: the kubelet keeps the script's message in lastState
    ({"phase": "Pending", "conditions": [SCHEDULED], "initContainerStatuses": [
        {"name": "model-digest", "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                       "message": "back-off 20s restarting failed container=model-digest"}},
         "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message":
                       "ModelDigestMismatch: model version folder /models/3 has digest sha256:11, spec.model.digest pins sha256:22\n"}}}],
      "containerStatuses": [{"name": "tfserving", "state": {"waiting": {"reason": "PodInitializing"}}}]},
     "ModelDigestMismatch", "model-digest: ModelDigestMismatch: model version folder /models/3 has digest sha256:11"),
    ({"phase": "Running", "conditions": [SCHEDULED, {"type": "Ready", "status": "False"}],
      "containerStatuses": [{"name": "tfserving", "state": {"running": {}}}]}, "NotReady", "not loaded"),
    ({"phase": "Running", "conditions": [SCHEDULED, {"type": "Ready", "status": "True"}]}, None, ""),
])
def test_pod_health_says_why_a_pod_does_not_serve(status, reason, message_part):
    health = pod_health(3, POD_LABELS, status, created="2026-11-25T11:59:59Z")
    assert health.stuck_reason == reason
    assert message_part in health.stuck_message
    if reason == "Unschedulable":
        assert health.unschedulable_since == "2026-11-25T12:00:00Z"  # the GPU fallback still sees it
    elif reason is not None:
        assert health.stuck_since == "2026-11-25T12:00:02Z" and health.unschedulable_since is None


def _waiting(version: int, since_s: float, reason: str, message: str = "") -> DeploymentState:
    return DeploymentState(version=version, desired=2, ready=0, updated=2, stuck_pods=2, stuck_since=at(since_s),
                           stuck_reason=reason, stuck_message=message)


def test_stalled_after_is_well_before_the_progress_deadline():
    assert stalled_after(make_spec(analysis={"progressDeadline": "10m"})) == 60
    assert stalled_after(make_spec(analysis={"progressDeadline": "60s"})) == 12


@pytest.mark.parametrize("reason, message, hint", [
    ("Unschedulable", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.", "no node fits"),
    ("FailedCreate", 'pods "m-v2-x" is forbidden: exceeded quota: gpu, requested: requests.nvidia.com/gpu=1', "ResourceQuota"),
    ("InitCrashLoopBackOff", "init container model-sync: back-off 40s", "copying the version from the model store fails"),
    ("ModelDigestMismatch", "init container model-digest: ModelDigestMismatch: /models/2 has digest sha256:11",
     "overwritten under the same version number"),
])
def test_stuck_canary_raises_pods_stalled_once_then_recovers(reason, message, hint):
    spec = make_spec(version=2)  # progressDeadline 60s -> stalled after 12s
    st = decide(spec, stable_status(1), Observation(deployments=ready(1) | {2: _waiting(2, 0, reason, message)}), at(0), generation=2).status
    d = decide(spec, st, Observation(deployments=ready(1) | {2: _waiting(2, 0, reason, message)}), at(5), generation=2)
    assert "PodsStalled" not in reasons(d)  # 5s < 12s: not yet
    d = decide(spec, d.status, Observation(deployments=ready(1) | {2: _waiting(2, 0, reason, message)}), at(12.5), generation=2)
    cond = next(c for c in d.status["conditions"] if c["type"] == "PodsStalled")
    assert (cond["status"], cond["reason"]) == ("True", reason)
    assert message in cond["message"] and hint in cond["message"] and "canary version 2" in cond["message"]
    (event,) = [e for e in d.events if e.reason == "PodsStalled"]
    assert event.type == "Warning" and "rolls back at progressDeadline (60s)" in event.message
    again = decide(spec, d.status, Observation(deployments=ready(1) | {2: _waiting(2, 0, reason, message)}), at(20), generation=2)
    assert "PodsStalled" not in reasons(again) and again.status == d.status  # no write, no repeated Event
    healed = decide(spec, again.status, Observation(deployments=ready(1, 2)), at(25), generation=2)
    cond = next(c for c in healed.status["conditions"] if c["type"] == "PodsStalled")
    assert cond["status"] == "False" and "PodsRecovered" in reasons(healed)


def test_multi_attach_hint_for_a_pvc_model_store():
    spec = make_spec(version=1, model={"name": "m", "basePath": "pvc://models/m", "version": 1}, serving={"replicas": 2, "gpu": {"count": 0}})
    dep = DeploymentState(version=1, desired=2, ready=1, updated=2, stuck_pods=1, stuck_since=at(0),
                          stuck_reason="ContainerCreating", stuck_message="container tfserving")
    d = decide(spec, {}, Observation(deployments={1: dep}), at(30), generation=1)
    cond = next(c for c in d.status["conditions"] if c["type"] == "PodsStalled")
    assert cond["status"] == "True" and "Multi-Attach" in cond["message"] and "ReadOnlyMany" in cond["message"]
    assert "1/2 pod(s) of stable version 1" in cond["message"]
    assert "PodsStalled" in reasons(d) and d.status["phase"] == "Initializing"


def _dep(generation=2, observed=2, replicas=2, ready=2, available=2, updated=2, status=True) -> dict:
    counts = {"observedGeneration": observed, "readyReplicas": ready, "availableReplicas": available,
              "updatedReplicas": updated, "replicas": replicas}
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas},
            "status": {k: v for k, v in counts.items() if v is not None} if status else {}}


@pytest.mark.parametrize("obj, ready", [
    (_dep(), True),
    (_dep(available=0), False),  # Ready, but not yet for minReadySeconds: readyReplicas alone is not enough
    (_dep(available=1), False),  # one of two available
    (_dep(observed=1), False),  # the counts are of the previous spec (the controller has not seen generation 2)
    (_dep(observed=None), False),  # never observed
    (_dep(status=False), False),  # just created: no status at all
    (_dep(updated=1), False),  # one pod still runs the old template
    (_dep(ready=2, available=3, replicas=2), True),  # surge pods: more available than desired
], ids=["available", "ready-not-available", "partly-available", "stale-generation", "no-observed-generation",
        "no-status", "not-updated", "surge"])
def test_a_version_is_ready_only_when_its_deployment_is_available_for_the_current_generation(obj, ready):
    assert DeploymentState.from_object(2, obj).is_ready is ready


def test_a_canary_ready_but_not_available_gets_no_traffic():
    spec = make_spec(version=2, serving={"replicas": 2, "minReadySeconds": 30})
    st = decide(spec, stable_status(1), Observation(deployments=ready(1)), at(0), generation=2).status
    waiting = DeploymentState.from_object(2, _dep(available=0))
    d = decide(spec, st, Observation(deployments=ready(1) | {2: waiting}), at(10), generation=2)
    assert d.status.get("canaryWeight", 0) == 0 and "CanaryReady" not in reasons(d)
    d = decide(spec, d.status, Observation(deployments=ready(1) | {2: DeploymentState.from_object(2, _dep())}), at(40), generation=2)
    assert d.status["canaryWeight"] == 10 and "CanaryReady" in reasons(d)


def test_replica_failure_condition_of_the_deployment_is_read():
    obj = {"spec": {"replicas": 2}, "metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "lastTransitionTime": to_timestamp(at(0)),
         "message": 'pods "m-v2-abc" is forbidden: exceeded quota: gpus'}]}}
    dep = DeploymentState.from_object(2, obj)
    assert (dep.stuck_reason, dep.stuck_pods, dep.stuck_since) == ("FailedCreate", 2, at(0))
    assert "exceeded quota" in dep.stuck_message


# ---- fast rollback on pod failure after the new version was ready ---------------------------------------

def test_restarts_before_readiness_do_not_count_and_one_restart_is_tolerated():
    spec = make_spec(version=2)
    st = decide(spec, stable_status(1), Observation(deployments=ready(1) | {2: not_ready(2)}), at(0), generation=2).status
    flaky_start = DeploymentState(version=2, desired=2, ready=2, updated=2, available=2, restarts=5)  # restarted while loading
    st = decide(spec, st, Observation(deployments=ready(1) | {2: flaky_start}), at(5), generation=2).status
    assert st["rollout"]["readyRestarts"] == 5 and st["phase"] == "Progressing"
    once = DeploymentState(version=2, desired=2, ready=2, updated=2, available=2, restarts=6, crash_message="pod x: exit code 1 (Error)")
    d = decide(spec, st, Observation(deployments=ready(1) | {2: once}), at(6), generation=2)
    assert d.status["phase"] == "Progressing"  # 1 restart since ready < maxRestarts 2
    twice = DeploymentState(version=2, desired=2, ready=2, updated=2, available=2, restarts=7)
    assert decide(spec, d.status, Observation(deployments=ready(1) | {2: twice}), at(7), generation=2).status["phase"] == "RolledBack"


@pytest.mark.parametrize("container, reason, restarts, message_part", [
    ({"name": "tfserving", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
      "lastState": {"terminated": {"exitCode": 139, "reason": "Error", "message": "Segmentation fault"}}},
     "CrashLoopBackOff", 3, "exit code 139 (Error): Segmentation fault"),
    ({"name": "tfserving", "restartCount": 1, "ready": True, "state": {"running": {}},
      "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}, "OOMKilled", 1, "exit code 137 (OOMKilled)"),
    ({"name": "tfserving", "restartCount": 0, "ready": True, "state": {"running": {}}}, "", 0, ""),
])  # fmt: skip
def test_pod_health_counts_restarts_and_crashes_of_the_tf_serving_container(container, reason, restarts, message_part):
    from modeldeploy.reconciler import pod_health

    status = {"phase": "Running", "conditions": [SCHEDULED, {"type": "Ready", "status": "True"}], "containerStatuses": [container]}
    health = pod_health(2, POD_LABELS, status, created="2026-11-25T11:59:59Z", name="m-v2-abc")
    assert (health.crash_reason, health.restarts) == (reason, restarts)
    assert message_part in health.crash_message
    if restarts:
        assert health.crash_message.startswith("pod m-v2-abc: ")


# ---- blue/green without preview traffic does not wait forever ---------------------------------------------

def test_blue_green_without_preview_traffic_fails_at_the_preview_deadline():
    spec = make_spec(version=2, strategy={"type": "BlueGreen", "blueGreen": {"iterations": 3, "previewDeadline": "60s"}})
    st = progressing(spec, t_ready=5)
    d = decide(spec, st, Observation(deployments=ready(1, 2), analysis=nodata(15)), at(15), generation=2)
    assert d.status["phase"] == "Progressing"
    assert d.status["rollout"]["previewDeadlineAt"] == to_timestamp(at(65))  # readyAt 5 s + 60 s
    assert "waiting for preview traffic until" in d.status["message"] and "previewDeadline" in d.status["message"]
    assert d.wake_in <= 50.1  # it wakes for the deadline itself
    d = decide(spec, d.status, Observation(deployments=ready(1, 2), analysis=nodata(66)), at(66), generation=2)
    assert d.status["phase"] == "RolledBack"
    assert d.status["history"][-1]["reason"].startswith("PreviewTrafficMissing: no analysis of version 2 had data within")


def test_blue_green_with_preview_traffic_is_not_cut_short():
    spec = make_spec(version=2, strategy={"type": "BlueGreen", "blueGreen": {"iterations": 3, "previewDeadline": "60s"}})
    st = progressing(spec, t_ready=5)
    d = decide(spec, st, Observation(deployments=ready(1, 2), analysis=passing(15)), at(15), generation=2)
    assert "previewDataAt" in d.status["rollout"] and "previewDeadlineAt" not in d.status["rollout"]
    d = decide(spec, d.status, Observation(deployments=ready(1, 2), analysis=nodata(80)), at(80), generation=2)
    assert d.status["phase"] == "Progressing"  # had data once: no deadline; onNoData (hold) applies as for any strategy
    canary = make_spec(version=2)
    d = decide(canary, progressing(canary), Observation(deployments=ready(1, 2), analysis=nodata(4000)), at(4000), generation=2)
    assert d.status["phase"] == "Progressing" and "previewDeadlineAt" not in d.status["rollout"]  # Canary: no such deadline


# ---- a manual action applied exactly once (issue 11 point 9): its idempotency key goes with its effect -----

# (id, action of the first pass, (action, key) the next pass sees, canary weight after it, "manual" records in
# history: a manual step is an Event, pause/resume/abort/promote-full are history records)
REPLAYS = [
    ("same-request-again", ("promote", "k1"), ("promote", "k1"), 50, 0),  # the first pass's later writes failed
    ("new-request", ("promote", "k1"), ("promote", "k2"), 100, 0),  # asked twice: two steps
    ("other-action-same-key", ("promote", "k1"), ("pause", "k1"), 50, 1),  # the annotation was changed: a new request
    ("no-key", ("promote", None), ("promote", None), 100, 0),  # without a key decide() cannot tell (the reconciler gives one)
    ("pause-again", ("pause", "k1"), ("pause", "k1"), 10, 1),
    ("abort-again", ("abort", "k1"), ("abort", "k1"), 100, 1),
]


@pytest.mark.parametrize("first, again, weight, records", [r[1:] for r in REPLAYS], ids=[r[0] for r in REPLAYS])
def test_a_manual_action_seen_again_with_its_key_is_not_applied_twice(first, again, weight, records):
    spec = make_spec(2, strategy={"type": "Canary", "canary": {"steps": [10, 50, 100]}})
    d1 = decide(spec, ANALYSING, obs(1, 2, action=first[0], action_by="alice", action_id=first[1]), at(7), generation=2)
    assert d1.action_handled and not d1.action_replayed
    if first[1] is not None:  # the key is in the same status as the effect
        assert (d1.status["rollout"]["handledAction"], d1.status["rollout"]["handledActionId"]) == first
    d2 = decide(spec, d1.status, obs(1, 2, action=again[0], action_by="alice", action_id=again[1]), at(8), generation=2)
    assert d2.action_handled  # the annotation is removed either way
    assert d2.action_replayed is (first == again and first[1] is not None)
    st = d2.status
    assert (st.get("canaryWeight") if st.get("canaryVersion") else 100) == weight
    assert sum("manual" in (h.get("reason") or "") for h in st["history"]) == records
    if d2.action_replayed:
        assert d2.events == () or all(e.reason not in ("StepAdvanced", "Paused", "Promoted") for e in d2.events)


def test_the_handled_key_outlives_the_rollout_it_ended():
    """promote-full and abort end the rollout (the per-rollout bookkeeping is reset): the key must stay."""
    for action in ("promote-full", "abort"):
        d1 = decide(make_spec(2), ANALYSING, obs(1, 2, action=action, action_id="k9"), at(7), generation=2)
        d2 = decide(make_spec(2), d1.status, obs(1, 2, action=action, action_id="k9"), at(8), generation=2)
        assert d2.action_replayed and d2.status["history"] == d1.status["history"]


@pytest.mark.parametrize("ready_, available, text", [
    (0, 0, "0/2 pods ready"), (2, 2, "2/2 pods ready"), (1, 0, "0/2 pods available (1 ready, not yet for minReadySeconds)"),
])
def test_pods_ready_but_not_yet_available_are_told_apart(ready_, available, text):
    assert DeploymentState(version=2, desired=2, ready=ready_, available=available, updated=2).pods_detail() == text


@pytest.mark.parametrize("name, given, applies", [
    ("analysing", ANALYSING, True),
    ("waiting-for-ready", WAITING, False),
    ("held-at-its-weight", HELD, True),  # still serving: guarded
    ("held-with-traffic-pulled", HELD_OFF, False),  # nothing left to pull
    ("stable", STABLE, False),
])
def test_fail_fast_guards_every_state_in_which_the_new_version_takes_live_traffic(name, given, applies):
    assert fail_fast_applies(make_spec(2, rollback={"automatic": False}), given) is applies
    no_threshold = make_spec(2, analysis={"metrics": [{"name": "errors", "builtin": "errorRate", "max": 1}]})
    assert fail_fast_applies(no_threshold, given) is False
