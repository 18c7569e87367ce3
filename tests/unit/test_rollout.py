"""Table-driven tests of the pure rollout state machine, rollout.decide(): every transition.

Times are seconds after T0; statuses are built by playing decide() forward, exactly as the operator
does (status in, status out), so these tests also prove the status alone is enough state.
"""

from __future__ import annotations

import datetime

import pytest

from modeldeploy.analysis.verdict import AnalysisResult, judge, no_data
from modeldeploy.rollout import DeploymentState, Observation, analysis_due, decide, decide_invalid, plans
from modeldeploy.validation import validate_spec

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.timezone.utc)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


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


def passing(t: float) -> AnalysisResult:
    return AnalysisResult(at=at(t), metrics=(judge("latency", 40.0, min=None, max=100), judge("errors", 0.1, min=None, max=1)), requests=500)


def failing(t: float) -> AnalysisResult:
    return AnalysisResult(at=at(t), metrics=(judge("latency", 250.0, min=None, max=100), judge("errors", 0.1, min=None, max=1)), requests=500)


def nodata(t: float) -> AnalysisResult:
    return AnalysisResult(at=at(t), metrics=(no_data("latency", "0 requests < minRequests 10"), judge("errors", 0.1, min=None, max=1)), requests=0)


def reasons(decision) -> list[str]:
    return [e.reason for e in decision.events]


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


# ---------------------------------------------------------------------------------------------

def test_first_version_initializing_then_stable_with_deployed_history():
    spec = make_spec(version=3)
    d = decide(spec, {}, Observation(deployments={}), at(0), generation=1)
    assert d.status["phase"] == "Initializing"
    assert d.status["stableVersion"] == 3
    assert [v.version for v in d.versions] == [3]
    assert d.route.stable == 3 and d.route.canary is None
    assert "Deploying" in reasons(d)
    d2 = decide(spec, d.status, Observation(deployments=ready(3)), at(5), generation=1)
    assert d2.status["phase"] == "Stable"
    assert [h["action"] for h in d2.status["history"]] == ["deployed"]
    assert "Deployed" in reasons(d2)
    ready_cond = next(c for c in d2.status["conditions"] if c["type"] == "Ready")
    assert ready_cond["status"] == "True" and ready_cond["observedGeneration"] == 1


def test_idle_resync_changes_nothing():
    st = stable_status(1)
    spec = make_spec(version=1)
    d = decide(spec, st, Observation(deployments=ready(1)), at(500), generation=1)
    assert d.status == st
    assert d.events == ()


def test_version_change_starts_rollout_and_waits_for_readiness():
    st = stable_status(1)
    spec = make_spec(version=2)
    d = decide(spec, st, Observation(deployments=ready(1)), at(0), generation=2)
    assert d.status["phase"] == "Progressing"
    assert d.status["canaryVersion"] == 2 and d.status["canaryWeight"] == 0
    assert {v.version: (v.role, v.replicas) for v in d.versions} == {1: ("stable", 2), 2: ("canary", 2)}
    assert d.route.canary is None  # no traffic before the canary is ready
    assert "RolloutStarted" in reasons(d)
    assert d.wake_in <= 2.0


def test_canary_ready_gets_first_step_weight():
    spec = make_spec(version=2)
    st = progressing(spec)
    assert st["canaryWeight"] == 10 and st["step"] == 0
    _, route = plans(spec, st)
    assert (route.stable, route.canary, route.canary_weight) == (1, 2, 10)


@pytest.mark.parametrize(
    "steps_passed, weight, phase",
    [(1, 50, "Progressing"), (2, 100, "Progressing"), (3, 0, "Promoting")],
)
def test_each_passing_analysis_advances_one_step_then_promotes(steps_passed, weight, phase):
    spec = make_spec(version=2)
    st = progressing(spec)
    t = 5.0
    for _ in range(steps_passed):
        t += 10
        assert analysis_due(spec, st, at(t))
        st = decide(spec, st, Observation(deployments=ready(1, 2), analysis=passing(t)), at(t), generation=2).status
    assert st["phase"] == phase
    assert st["canaryWeight"] == weight
    if phase == "Promoting":
        assert st["stableVersion"] == 2 and "canaryVersion" not in st
        promoted = st["history"][-1]
        assert promoted["action"] == "promoted" and promoted["version"] == 2 and promoted["fromVersion"] == 1
        assert {m["name"] for m in promoted["metrics"]} == {"latency", "errors"}  # audit: what justified it


def test_analysis_not_due_before_interval():
    spec = make_spec(version=2)
    st = progressing(spec, t_ready=5)
    assert not analysis_due(spec, st, at(14))
    assert analysis_due(spec, st, at(15))


def test_promotion_drains_old_version_then_stable():
    spec = make_spec(version=2, strategy={"type": "Canary", "canary": {"steps": [50]}, "scaleDownDelay": "30s"})
    st = progressing(spec)
    d = decide(spec, st, Observation(deployments=ready(1, 2), analysis=passing(15)), at(15), generation=2)
    assert d.status["phase"] == "Promoting"
    assert {v.version: v.replicas for v in d.versions} == {1: 2, 2: 2}
    assert d.route.stable == 2 and d.route.canary is None
    d2 = decide(spec, d.status, Observation(deployments=ready(1, 2)), at(46), generation=2)
    assert d2.status["phase"] == "Stable"
    assert {v.version: v.replicas for v in d2.versions} == {1: 0, 2: 2}
    assert "ScaledDown" in reasons(d2)


def test_failed_checks_below_threshold_hold_then_rollback():
    spec = make_spec(version=2)
    st = progressing(spec)
    d = decide(spec, st, Observation(deployments=ready(1, 2), analysis=failing(15)), at(15), generation=2)
    assert d.status["failedChecks"] == 1 and d.status["canaryWeight"] == 10
    assert "AnalysisFailed" in reasons(d)
    d = decide(spec, d.status, Observation(deployments=ready(1, 2), analysis=failing(25)), at(25), generation=2)
    st = d.status
    assert st["phase"] == "RolledBack"
    assert st["canaryWeight"] == 0 and "canaryVersion" not in st
    assert st["history"][-1]["action"] == "rolledBack"
    assert any(m["name"] == "latency" and m["passed"] is False for m in st["history"][-1]["metrics"])
    assert {v.version: v.replicas for v in d.versions} == {1: 2, 2: 0}  # canary scaled to zero
    assert d.route.canary is None and d.route.stable == 1
    assert "RolledBack" in reasons(d)


def test_rolled_back_version_is_not_retried_automatically():
    spec = make_spec(version=2, analysis={"failureThreshold": 1})
    st = progressing(spec)
    st = decide(spec, st, Observation(deployments=ready(1, 2), analysis=failing(15)), at(15), generation=2).status
    d = decide(spec, st, Observation(deployments=ready(1, 2)), at(100), generation=2)
    assert d.status["phase"] == "RolledBack" and "canaryVersion" not in d.status
    assert d.events == ()


def test_fail_fast_rolls_back_at_once_even_while_paused():
    spec = make_spec(version=2, analysis={"failureThreshold": 5})
    st = progressing(spec)
    st["rollout"]["paused"] = True
    ff = AnalysisResult(at=at(7), metrics=(judge("latency", 900.0, min=None, max=400),), kind="failFast", requests=50)
    d = decide(spec, st, Observation(deployments=ready(1, 2), fail_fast=ff), at(7), generation=2)
    assert d.status["phase"] == "RolledBack"
    assert "fail-fast" in d.status["history"][-1]["reason"]


@pytest.mark.parametrize(
    "policy, expected_phase, failed_checks, event",
    [("hold", "Progressing", 0, "NoData"), ("fail", "Progressing", 1, "NoData"), ("rollback", "RolledBack", 0, "RolledBack")],
)
def test_no_data_policies(policy, expected_phase, failed_checks, event):
    spec = make_spec(version=2, analysis={"onNoData": policy})
    st = progressing(spec)
    d = decide(spec, st, Observation(deployments=ready(1, 2), analysis=nodata(15)), at(15), generation=2)
    assert d.status["phase"] == expected_phase
    assert d.status["failedChecks"] == failed_checks
    assert event in reasons(d)
    if expected_phase == "Progressing":
        assert d.status["canaryWeight"] == 10  # never advanced on missing data


def test_no_data_hold_reports_once_per_streak():
    spec = make_spec(version=2)
    st = progressing(spec)
    d1 = decide(spec, st, Observation(deployments=ready(1, 2), analysis=nodata(15)), at(15), generation=2)
    d2 = decide(spec, d1.status, Observation(deployments=ready(1, 2), analysis=nodata(25)), at(25), generation=2)
    assert "NoData" in reasons(d1) and "NoData" not in reasons(d2)


def test_never_promoted_while_any_metric_lacks_data_even_at_last_step():
    spec = make_spec(version=2, strategy={"type": "Canary", "canary": {"steps": [100]}})
    st = progressing(spec)
    for t in (15, 25, 35, 45):
        st = decide(spec, st, Observation(deployments=ready(1, 2), analysis=nodata(t)), at(t), generation=2).status
    assert st["phase"] == "Progressing" and st["stableVersion"] == 1


def test_progress_deadline_rolls_back_with_reason():
    st = stable_status(1)
    spec = make_spec(version=2)
    d = decide(spec, st, Observation(deployments=ready(1) | {2: not_ready(2)}), at(0), generation=2)
    d = decide(spec, d.status, Observation(deployments=ready(1) | {2: not_ready(2)}), at(30), generation=2)
    assert d.status["phase"] == "Progressing"
    d = decide(spec, d.status, Observation(deployments=ready(1) | {2: not_ready(2)}), at(61), generation=2)
    assert d.status["phase"] == "RolledBack"
    assert "ProgressDeadlineExceeded" in d.status["history"][-1]["reason"]
    assert "0/2 pods ready" in d.status["history"][-1]["reason"]


def test_version_change_mid_rollout_restarts_from_stable():
    spec2 = make_spec(version=2)
    st = progressing(spec2)
    st = decide(spec2, st, Observation(deployments=ready(1, 2), analysis=passing(15)), at(15), generation=2).status
    assert st["canaryWeight"] == 50
    spec3 = make_spec(version=3)
    d = decide(spec3, st, Observation(deployments=ready(1, 2)), at(20), generation=3)
    assert d.status["canaryVersion"] == 3 and d.status["canaryWeight"] == 0 and d.status["stableVersion"] == 1
    assert d.status["history"][-1]["action"] == "superseded" and d.status["history"][-1]["version"] == 2
    assert d.route.canary is None  # v3 gets no traffic until ready; v2 none at all
    assert 2 not in {v.version for v in d.versions}  # the superseded version's Deployment is removed
    assert reasons(d)[:2] == ["RolloutSuperseded", "RolloutStarted"]


def test_version_set_back_to_stable_aborts():
    spec2 = make_spec(version=2)
    st = progressing(spec2)
    d = decide(make_spec(version=1), st, Observation(deployments=ready(1, 2)), at(8), generation=3)
    assert d.status["phase"] == "Stable" and "canaryVersion" not in d.status
    assert d.status["history"][-1]["action"] == "aborted"


@pytest.mark.parametrize(
    "strategy, route_check",
    [
        ({"type": "ABTest", "abTest": {"match": [{"headers": {"x-variant": {"exact": "b"}}}], "iterations": 2}},
         lambda r: r.match and r.canary_weight == 0 and r.mirror_percent == 0),
        ({"type": "BlueGreen", "blueGreen": {"iterations": 2}},
         lambda r: not r.match and r.canary_weight == 0 and r.mirror_percent == 0 and 2 in r.preview),
        ({"type": "Shadow", "shadow": {"mirrorPercent": 40, "iterations": 2}},
         lambda r: r.mirror_percent == 40 and r.canary_weight == 0),
    ],
    ids=["abtest", "bluegreen", "shadow"],
)
def test_iteration_strategies_route_and_promote_after_n(strategy, route_check):
    spec = make_spec(version=2, strategy=strategy)
    st = progressing(spec)
    _, route = plans(spec, st)
    assert route.canary == 2 and route_check(route)
    st = decide(spec, st, Observation(deployments=ready(1, 2), analysis=passing(15)), at(15), generation=2).status
    assert st["step"] == 1 and st["phase"] == "Progressing"
    st = decide(spec, st, Observation(deployments=ready(1, 2), analysis=passing(25)), at(25), generation=2).status
    assert st["phase"] == "Promoting" and st["stableVersion"] == 2


@pytest.mark.parametrize(
    "action, setup, expected",
    [
        ("promote", None, {"canaryWeight": 50, "phase": "Progressing"}),
        ("promote-full", None, {"stableVersion": 2, "phase": "Promoting"}),
        ("abort", None, {"phase": "RolledBack", "stableVersion": 1}),
        ("pause", None, {"phase": "Paused"}),
    ],
)
def test_manual_actions(action, setup, expected):
    spec = make_spec(version=2)
    st = progressing(spec)
    d = decide(spec, st, Observation(deployments=ready(1, 2), action=action, action_by="alice"), at(7), generation=2)
    assert d.action_handled
    for key, value in expected.items():
        assert d.status.get(key) == value, (key, d.status)
    if action in ("promote-full", "abort", "pause"):
        assert "by alice" in d.status["history"][-1]["reason"]


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


def test_failure_with_automatic_rollback_off_holds_for_a_human():
    spec = make_spec(version=2, analysis={"failureThreshold": 1}, rollback={"automatic": False})
    st = progressing(spec)
    d = decide(spec, st, Observation(deployments=ready(1, 2), analysis=failing(15)), at(15), generation=2)
    assert d.status["phase"] == "Failed" and d.status["canaryWeight"] == 10
    assert not analysis_due(spec, d.status, at(100))
    d2 = decide(spec, d.status, Observation(deployments=ready(1, 2), action="abort"), at(30), generation=2)
    assert d2.status["phase"] == "RolledBack" and d2.status["history"][-1]["action"] == "aborted"


def test_retry_after_rollback_restarts_rollout():
    spec = make_spec(version=2, analysis={"failureThreshold": 1})
    st = progressing(spec)
    st = decide(spec, st, Observation(deployments=ready(1, 2), analysis=failing(15)), at(15), generation=2).status
    d = decide(spec, st, Observation(deployments=ready(1) | {2: not_ready(2)}, action="retry"), at(40), generation=2)
    assert d.status["phase"] == "Progressing" and d.status["canaryVersion"] == 2
    assert [h["action"] for h in d.status["history"]][-2:] == ["rolledBack", "retried"]


def test_unknown_action_is_reported_and_cleared():
    st = stable_status(1)
    d = decide(make_spec(version=1), st, Observation(deployments=ready(1), action="yolo"), at(1), generation=1)
    assert d.action_handled and "UnknownAction" in reasons(d)


def test_invalid_status_touches_only_status():
    st, events = decide_invalid(stable_status(1), "invalid spec: spec.x: bad", at(0), 7)
    assert st["phase"] == "Invalid"
    ready_cond = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready_cond["status"], ready_cond["reason"], ready_cond["observedGeneration"]) == ("False", "InvalidSpec", 7)
    assert [e.reason for e in events] == ["InvalidSpec"]
    st2, events2 = decide_invalid(st, "invalid spec: spec.x: bad", at(5), 7)
    assert st2 == st and events2 == []  # no repeated Warning


def _stuck(version: int, since_s: float, primary_ready: bool = False, cpu_ready: int = 0) -> DeploymentState:
    return DeploymentState(version=version, desired=2, ready=2 if primary_ready else 0, updated=2,
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


def test_analysis_schedule_does_not_drift_when_a_pass_runs_late():
    spec = make_spec(version=2, strategy={"type": "Canary", "canary": {"steps": [10, 20, 30, 40, 100]}})
    st = progressing(spec, t_ready=5)  # first analysis due at 15
    st = decide(spec, st, Observation(deployments=ready(1, 2), analysis=nodata(16.5)), at(16.5), generation=2).status
    assert not analysis_due(spec, st, at(24.9))
    assert analysis_due(spec, st, at(25.0))  # one interval after the slot (15), not after the late run (16.5)
    st = decide(spec, st, Observation(deployments=ready(1, 2), analysis=nodata(60)), at(60), generation=2).status
    assert not analysis_due(spec, st, at(69.9)) and analysis_due(spec, st, at(70))  # fell far behind: restart from now


# ---- pods that wait (issue 11 point 3): surfaced long before progressDeadline -------------------------

from modeldeploy.reconciler import pod_health  # noqa: E402
from modeldeploy.rollout import stalled_after  # noqa: E402
from modeldeploy.status import to_timestamp  # noqa: E402

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


def test_replica_failure_condition_of_the_deployment_is_read():
    obj = {"spec": {"replicas": 2}, "metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "lastTransitionTime": to_timestamp(at(0)),
         "message": 'pods "m-v2-abc" is forbidden: exceeded quota: gpus'}]}}
    dep = DeploymentState.from_object(2, obj)
    assert (dep.stuck_reason, dep.stuck_pods, dep.stuck_since) == ("FailedCreate", 2, at(0))
    assert "exceeded quota" in dep.stuck_message


# ---- fast rollback on pod failure after the new version was ready ---------------------------------------

def crashed(version: int, reason: str, restarts: int, message: str = "pod m-v2-x: exit code 137 (OOMKilled)") -> DeploymentState:
    return DeploymentState(version=version, desired=2, ready=1, updated=2, restarts=restarts, crash_reason=reason,
                           crash_message=message)  # fmt: skip


@pytest.mark.parametrize("dep, why", [
    (crashed(2, "CrashLoopBackOff", 3), "CrashLoopBackOff"),
    (crashed(2, "OOMKilled", 1), "OOMKilled"),
    (crashed(2, "", 2, "pod m-v2-x: exit code 1 (Error)"), "2 TF Serving restarts since it was ready"),
])  # fmt: skip
def test_a_crashing_canary_is_rolled_back_at_once_with_the_reason(dep, why):
    spec = make_spec(version=2)
    st = progressing(spec)
    d = decide(spec, st, Observation(deployments=ready(1) | {2: dep}), at(6), generation=2)
    assert d.status["phase"] == "RolledBack" and "RolledBack" in reasons(d)
    record = d.status["history"][-1]
    assert record["action"] == "rolledBack" and record["reason"].startswith("PodFailure: version 2") and why in record["reason"]


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


def test_pod_failure_rolls_back_while_paused_holds_without_automatic_rollback_and_can_be_turned_off():
    paused = make_spec(version=2, paused=True)
    st = progressing(make_spec(version=2))
    assert decide(paused, st, Observation(deployments=ready(1) | {2: crashed(2, "CrashLoopBackOff", 4)}), at(6),
                  generation=2).status["phase"] == "RolledBack"  # fmt: skip
    held = make_spec(version=2, rollback={"automatic": False})
    d = decide(held, progressing(held), Observation(deployments=ready(1) | {2: crashed(2, "OOMKilled", 1)}), at(6), generation=2)
    assert d.status["phase"] == "Failed" and "PodFailure" in d.events[-1].message
    off = make_spec(version=2, rollback={"onPodFailure": False})
    d = decide(off, progressing(off), Observation(deployments=ready(1) | {2: crashed(2, "CrashLoopBackOff", 4)}), at(6), generation=2)
    assert d.status["phase"] == "Progressing"


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


def test_a_failed_rollout_held_for_a_human_writes_a_history_record():
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
