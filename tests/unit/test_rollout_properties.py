"""Property-based and stateful tests of rollout.decide() (issue 14 part 1).

A hypothesis RuleBasedStateMachine plays a ModelDeployment forward the way the reconciler does: it
keeps a spec and the status decide() wrote last, and every rule is one reconcile pass -- the clock
moves (also big jumps and small jumps backwards), the Deployments' readiness flaps, pods crash, an
interval analysis runs when `analysis_due` says so (passing, failing or without data, per metric),
a fail-fast check runs when `fail_fast_applies`, a human sets a manual action (any of them, in any
order, also a bogus one, each with its request's idempotency key), the spec's version changes mid-rollout (a new one, back to stable, an
old one), pause toggles, the strategy or rollback.automatic changes. Specs are random over every
strategy, onNoData policy, failFast on/off, paused, rollback.automatic/onPodFailure, stickiness and
cohort; each is validated by the operator's own validation first (validate_spec).

The properties are written against the public boundary only -- decide(spec, status, observation,
now) and the status dict as it is on the wire -- so they do not depend on how rollout.py types its
state. Each invariant is its own test class (one @invariant each), so hypothesis counts the
examples run per invariant (pytest --hypothesis-show-statistics).

Budget: the `ci` profile (tests/conftest.py) is derandomized with a fixed max_examples;
HYPOTHESIS_PROFILE=long runs many more for a local deep run.
"""

from __future__ import annotations

import datetime
import json

import pytest

from hypothesis import event, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from modeldeploy.analysis.verdict import AnalysisResult, judge, no_data
from modeldeploy.rollout import (
    MANUAL_ACTIONS,
    DeploymentState,
    Observation,
    analysis_due,
    decide,
    fail_fast_applies,
)
from modeldeploy.validation import crd_schema, validate_spec
from modeldeploy.validation.openapi import schema_problems

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.UTC)
STATUS_SCHEMA = crd_schema()["properties"]["status"]
HISTORY_LIMIT = 100  # modeldeploy.status.HISTORY_LIMIT: the oldest records beyond it are dropped

# ---- random specs ------------------------------------------------------------------------------------

METRICS = {
    "latency": {"name": "latency", "builtin": "latency", "quantile": 0.95, "max": 100},
    "errors": {"name": "errors", "builtin": "errorRate", "max": 1},
    "accuracy": {"name": "accuracy", "builtin": "errorRate", "max": 5},  # a third metric: data for EVERY one
}
FAIL_FAST_MAX = 400


@st.composite
def strategies_(draw, kind: str | None = None) -> dict:
    kind = kind or draw(st.sampled_from(["Canary", "ABTest", "BlueGreen", "Shadow"]))
    out: dict = {"type": kind, "scaleDownDelay": draw(st.sampled_from(["0s", "20s", "5m"]))}
    if kind == "Canary":
        steps = sorted(draw(st.sets(st.integers(1, 100), min_size=1, max_size=4)))
        out["canary"] = {"steps": steps}
    elif kind == "ABTest":
        out["abTest"] = {"match": [{"headers": {"x-variant": {"exact": "b"}}}], "iterations": draw(st.integers(1, 3))}
    elif kind == "BlueGreen":
        out["blueGreen"] = {"iterations": draw(st.integers(1, 3)), "previewDeadline": draw(st.sampled_from(["30s", "5m"]))}
    else:
        out["shadow"] = {"mirrorPercent": draw(st.integers(1, 100)), "iterations": draw(st.integers(1, 3))}
    if kind == "Canary" and draw(st.booleans()):  # stickiness and cohort: the Canary weighted split only
        out["stickiness"] = {"header": "x-study-instance-uid", "alphabet": draw(st.sampled_from(["digits", "hex"]))}
    if kind == "Canary" and draw(st.booleans()):
        out["cohort"] = {"match": [{"headers": {"x-site": {"exact": "site-a"}}}]}
    return out


@st.composite
def specs(draw) -> dict:
    names = draw(st.lists(st.sampled_from(sorted(METRICS)), min_size=1, max_size=3, unique=True))
    fail_fast = draw(st.booleans())
    metrics = []
    for i, name in enumerate(names):
        m = dict(METRICS[name])
        if fail_fast and i == 0:
            m["failFast"] = {"max": FAIL_FAST_MAX}
        metrics.append(m)
    return {
        "model": {"name": "m", "basePath": "s3://b/m", "version": 1},
        "serving": {"replicas": draw(st.integers(1, 2)), "gpu": {"count": 0}},
        "strategy": draw(strategies_()),
        "analysis": {
            "interval": draw(st.sampled_from(["10s", "30s"])),
            "failureThreshold": draw(st.integers(1, 3)),
            "progressDeadline": draw(st.sampled_from(["30s", "60s"])),
            "minRequests": 10,
            "onNoData": draw(st.sampled_from(["hold", "fail", "rollback"])),
            "metrics": metrics,
        },
        "rollback": {
            "automatic": draw(st.booleans()),
            "onPodFailure": draw(st.booleans()),
            "maxRestarts": draw(st.integers(1, 3)),
        },
        "paused": draw(st.sampled_from([False, False, False, True])),
    }


_SPECS: dict[str, object] = {}


def parsed(spec: dict):
    """The operator's validated spec (cached: validation with CEL costs milliseconds)."""
    key = json.dumps(spec, sort_keys=True)
    if key not in _SPECS:
        result = validate_spec(spec)
        assert result.ok, result.problems  # the generator only builds valid specs
        _SPECS[key] = result.spec
    return _SPECS[key]


# ---- observations --------------------------------------------------------------------------------------

OUTCOMES = st.sampled_from(["pass", "pass", "fail", "noData"])  # biased to passing, so rollouts get far


def analysis_of(spec: dict, outcomes: list[str], at: datetime.datetime) -> AnalysisResult:
    results = []
    for m, outcome in zip(spec["analysis"]["metrics"], outcomes):
        if outcome == "pass":
            results.append(judge(m["name"], m["max"] / 2, min=None, max=m["max"]))
        elif outcome == "fail":
            results.append(judge(m["name"], m["max"] * 3, min=None, max=m["max"]))
        else:
            results.append(no_data(m["name"], "0 requests < minRequests 10"))
    requests = 0 if "noData" in outcomes else 500
    return AnalysisResult(at=at, metrics=tuple(results), requests=requests)


def fail_fast_of(spec: dict, breach: bool, at: datetime.datetime) -> AnalysisResult:
    metrics = [m for m in spec["analysis"]["metrics"] if "failFast" in m]
    value = FAIL_FAST_MAX * 2 if breach else FAIL_FAST_MAX / 4
    return AnalysisResult(
        at=at, metrics=tuple(judge(m["name"], value, min=None, max=FAIL_FAST_MAX) for m in metrics),
        kind="failFast", requests=50,
    )  # fmt: skip


POD_STATES = st.sampled_from(["ready", "ready", "ready", "starting", "missing", "crashloop", "restart", "oom"])
# One reconcile pass: the clock moves (also not at all, an hour, or backwards), each live version's pods,
# each metric's outcome if an analysis is due, a fail-fast breach if a check is due, a manual action.
PASSES = st.tuples(
    st.one_of(st.floats(0.5, 40), st.sampled_from([0.0, 3600.0, -20.0])),
    st.lists(POD_STATES, min_size=4, max_size=4),
    st.lists(OUTCOMES, min_size=3, max_size=3),
    st.booleans(),
    st.one_of(st.none(), st.none(), st.none(), st.none(), st.sampled_from([*MANUAL_ACTIONS, "  promote ", "bogus"])),
)


def deployment(version: int, replicas: int, state: str, restarts: int) -> DeploymentState | None:
    if state == "missing":
        return None
    if state == "starting":
        return DeploymentState(version=version, desired=replicas, ready=0, updated=replicas, restarts=restarts)
    full = dict(version=version, desired=replicas, ready=replicas, updated=replicas, available=replicas, restarts=restarts)
    if state == "crashloop":
        return DeploymentState(**{**full, "ready": 0, "available": 0}, crash_reason="CrashLoopBackOff", crash_message="exit 1")
    if state == "oom":
        return DeploymentState(**full, crash_reason="OOMKilled", crash_message="exit code 137")
    return DeploymentState(**full)


# ---- the machine -----------------------------------------------------------------------------------------


class Transition:
    """One decide() call: what went in and what came out."""

    def __init__(self, spec_dict, spec, before, observation, now, decision):
        self.spec_dict, self.spec, self.before = spec_dict, spec, before
        self.observation, self.now, self.decision = observation, now, decision

    @property
    def after(self) -> dict:
        return self.decision.status

    def appended(self) -> list[dict]:
        """The history records this pass appended (history_append_only checks that nothing else changed)."""
        old, new = self.before.get("history") or [], self.after.get("history") or []
        for added in range(len(new) + 1):
            kept = len(new) - added
            if kept == min(len(old), HISTORY_LIMIT - added) and new[:kept] == old[len(old) - kept :]:
                return new[kept:]
        raise AssertionError(f"history was rewritten: before {old!r}, after {new!r}")


class RolloutMachine(RuleBasedStateMachine):
    """Plays random reconcile passes; the subclasses each check one invariant of every pass."""

    def __init__(self):
        super().__init__()
        self.spec_dict: dict = {}
        self.status: dict = {}
        self.now = T0
        self.restarts: dict[int, int] = {}
        self.last: Transition | None = None
        self.pending: list[Transition] = []  # the passes of the last rule (each invariant checks them all)
        self.transitions = 0

    @initialize(spec=specs())
    def first_contact(self, spec):
        self.spec_dict = spec
        note(f"spec: {json.dumps(spec, sort_keys=True)}")
        self.pending = []
        self._pass(Observation(deployments={1: deployment(1, spec["serving"]["replicas"], "ready", 0)}))
        self._respec(lambda s: s["model"].__setitem__("version", 2))  # version 2 rolls out over the first

    # ---- one reconcile pass ----

    def _versions(self) -> list[int]:
        versions = {self.spec_dict["model"]["version"]}
        for key in ("stableVersion", "canaryVersion"):
            if self.status.get(key) is not None:
                versions.add(self.status[key])
        previous = (self.status.get("rollout") or {}).get("previousStable")
        if previous is not None:
            versions.add(previous)
        return sorted(versions)

    def _pass(self, observation: Observation) -> None:
        spec = parsed(self.spec_dict)
        before = json.loads(json.dumps(self.status))
        decision = decide(spec, self.status, observation, self.now, generation=1)
        self.last = Transition(json.loads(json.dumps(self.spec_dict)), spec, before, observation, self.now, decision)
        self.transitions += 1
        self.pending.append(self.last)
        note(f"pass {self.transitions} at +{(self.now - T0).total_seconds():.1f}s: {observation!r} -> "
             f"phase {decision.status.get('phase')} state {(decision.status.get('rollout') or {}).get('state')} "
             f"weight {decision.status.get('canaryWeight')} step {decision.status.get('step')}")  # fmt: skip
        self.status = decision.status
        for record in self.last.appended():  # what the examples reached (pytest --hypothesis-show-statistics)
            event(f"history: {record['action']}")
        if observation.fail_fast is not None and observation.fail_fast.verdict == "fail":
            event("fail-fast breach")

    @rule(passes=st.lists(PASSES, min_size=1, max_size=6))
    def reconcile(self, passes):
        self.pending = []
        for dt, pods, outcomes, breach, action in passes:
            self._reconcile(dt, pods, outcomes, breach, action)

    def _reconcile(self, dt, pods, outcomes, breach, action):
        self.now = self.now + datetime.timedelta(seconds=dt)
        spec = parsed(self.spec_dict)
        deployments = {}
        for version, state in zip(self._versions(), pods):
            if state in ("restart", "oom"):
                self.restarts[version] = self.restarts.get(version, 0) + 1
            dep = deployment(version, self.spec_dict["serving"]["replicas"], state, self.restarts.get(version, 0))
            if dep is not None:
                deployments[version] = dep
        analysis = None
        if analysis_due(spec, self.status, self.now):
            analysis = analysis_of(self.spec_dict, outcomes, self.now)
        fail_fast = None
        if fail_fast_applies(spec, self.status):
            fail_fast = fail_fast_of(self.spec_dict, breach, self.now)
        self._pass(Observation(deployments=deployments, analysis=analysis, fail_fast=fail_fast, action=action,
                               action_by="alice" if action else None,
                               action_id=f"request-{self.transitions}" if action else None))  # fmt: skip

    # ---- spec changes (each followed by the pass its generation change triggers) ----

    def _respec(self, change) -> None:
        self.pending = []
        spec = json.loads(json.dumps(self.spec_dict))
        change(spec)
        if not validate_spec(spec).ok:
            return
        self.spec_dict = spec
        note(f"spec now: {json.dumps(spec, sort_keys=True)}")
        deployments = {v: deployment(v, spec["serving"]["replicas"], "ready", self.restarts.get(v, 0)) for v in self._versions()}
        self._pass(Observation(deployments={v: d for v, d in deployments.items() if d is not None}))

    @rule(which=st.sampled_from(["new", "new", "stable", "old"]))
    def change_version(self, which):
        used = {h.get("version") for h in self.status.get("history") or []} | set(self._versions())
        stable = self.status.get("stableVersion") or 1

        def change(spec):
            if which == "new":
                spec["model"]["version"] = max(v for v in used if v is not None) + 1
            elif which == "stable":
                spec["model"]["version"] = stable
            else:
                spec["model"]["version"] = min(v for v in used if v is not None)

        self._respec(change)

    @rule()
    def toggle_pause(self):
        self._respec(lambda spec: spec.__setitem__("paused", not spec.get("paused")))

    @rule()
    def toggle_automatic_rollback(self):
        self._respec(lambda spec: spec["rollback"].__setitem__("automatic", not spec["rollback"]["automatic"]))

    @rule(strategy=strategies_())
    def change_strategy(self, strategy):
        self._respec(lambda spec: spec.__setitem__("strategy", strategy))


# ---- regressions: every failing example the machines found, as a table ------------------------------------

# (id, strategy, what failed before the fix)
REGRESSIONS = [
    # DeterministicAndIdempotent: the pass that saw a BlueGreen version become ready wrote the message
    # "preview only (no live traffic)"; the next pass with nothing new set previewDeadlineAt and rewrote the
    # message and the Ready/Progressing conditions (a status write without a cause).
    ("bluegreen-ready-then-quiet", {"type": "BlueGreen", "blueGreen": {"iterations": 2, "previewDeadline": "30s"}}),
    ("canary-ready-then-quiet", {"type": "Canary", "canary": {"steps": [10, 100]}}),
    ("shadow-ready-then-quiet", {"type": "Shadow", "shadow": {"mirrorPercent": 20, "iterations": 1}}),
]


def _base_spec(strategy: dict, version: int) -> dict:
    return {
        "model": {"name": "m", "basePath": "s3://b/m", "version": version},
        "serving": {"replicas": 1, "gpu": {"count": 0}},
        "strategy": strategy,
        "analysis": {"interval": "10s", "progressDeadline": "30s", "minRequests": 10,
                     "metrics": [dict(METRICS["errors"])]},
    }  # fmt: skip


@pytest.mark.parametrize("strategy", [r[1] for r in REGRESSIONS], ids=[r[0] for r in REGRESSIONS])
def test_regression_the_pass_after_readiness_changes_nothing(strategy):
    ready = {v: deployment(v, 1, "ready", 0) for v in (1, 2)}
    first = decide(parsed(_base_spec(strategy, 1)), {}, Observation(deployments={1: ready[1]}), T0, generation=1)
    spec = parsed(_base_spec(strategy, 2))
    started = decide(spec, first.status, Observation(deployments={1: ready[1]}), T0, generation=1)
    became_ready = decide(spec, started.status, Observation(deployments=ready), T0, generation=1)
    assert (became_ready.status.get("rollout") or {}).get("state") == "Analysing"
    quiet = decide(spec, became_ready.status, Observation(deployments=ready), T0, generation=1)
    assert quiet.status == became_ready.status, _diff(became_ready.status, quiet.status)
    assert not quiet.events


# ---- the invariants, one test class each ---------------------------------------------------------------


def _metric_names(spec_dict: dict) -> list[str]:
    return [m["name"] for m in spec_dict["analysis"]["metrics"]]


class NeverPromotedWithoutEvidence(RolloutMachine):
    """A promotion happens only on a passing interval analysis with data for EVERY metric of the spec, or is a
    recorded manual promote (the action was given this pass and the record names it and who)."""

    @invariant()
    def promoted_with_evidence(self):
        for t in self.pending:
            for record in t.appended():
                if record["action"] != "promoted":
                    continue
                if record["reason"].startswith("manual promote"):
                    assert t.observation.action and t.observation.action.strip() in ("promote", "promote-full"), record
                    assert "by alice" in record["reason"], record
                    continue
                assert t.observation.analysis is not None and t.observation.analysis.verdict == "pass", record
                metrics = record.get("metrics") or []
                assert sorted(m["name"] for m in metrics) == sorted(_metric_names(t.spec_dict)), record
                assert all(m["passed"] and m["value"] is not None for m in metrics), record


class WeightOnlyMovesUpByAStep(RolloutMachine):
    """canaryWeight (and the route's canary weight) never increases except to the next canary step: the first
    step when the new version becomes ready, step n+1 after step n. Non-Canary strategies never weigh."""

    @invariant()
    def weight_moves_by_steps(self):
        for t in self.pending:
            before, after = t.before, t.after
            w0, w1 = before.get("canaryWeight") or 0, after.get("canaryWeight") or 0
            route = t.decision.route
            assert (route.canary_weight or 0) <= w1 or route.canary is None or (after.get("strategy") != "Canary")
            if w1 <= w0 or after.get("canaryVersion") is None:
                continue
            assert after.get("strategy") == "Canary", (before, after)
            steps = t.spec.strategy.canary.steps
            ro0, ro1 = before.get("rollout") or {}, after.get("rollout") or {}
            # a retry starts a new rollout of the same version (new startedAt): its first step is not a step up
            same_rollout = (before.get("canaryVersion") == after.get("canaryVersion") and ro0.get("readyAt")
                            and ro0.get("startedAt") == ro1.get("startedAt"))
            if same_rollout:
                assert after["step"] == before.get("step", 0) + 1, (before, after)
                assert w1 == steps[after["step"]], (steps, before, after)
            else:  # the new version just became ready: its first step
                assert after["step"] == 0 and w1 == steps[0], (steps, before, after)


class FailFastBreachEndsAtZero(RolloutMachine):
    """A fail-fast breach of a live canary ends the rollout at 0% new-version traffic at once: rolled back, or,
    with rollback.automatic false, held for a human (FailedHold) with its traffic pulled: no weight, no header
    route, no mirror, no analysis, no promotion; the version stays deployed for inspection."""

    @invariant()
    def breach_ends_at_zero(self):
        for t in self.pending:
            if t.observation.fail_fast is None or t.observation.fail_fast.verdict != "fail":
                continue
            if t.observation.action:  # a manual action acts first (abort/promote of the same pass)
                continue
            after = t.after
            if t.spec.rollback.automatic:
                assert after.get("canaryWeight") == 0 and after.get("canaryVersion") is None, after
                assert t.decision.route.canary is None, t.decision.route
                assert t.appended() and t.appended()[-1]["action"] == "rolledBack", t.appended()
            else:
                assert (after.get("rollout") or {}).get("state") == "FailedHold", after
                assert (after.get("canaryWeight") or 0) == 0, after
                assert t.decision.route.canary is None, t.decision.route  # no weight, match route or mirror
                assert after.get("canaryVersion") is not None, after  # kept deployed for a human


class HistoryAppendOnly(RolloutMachine):
    """status.history only grows at its end (the oldest records fall off beyond the limit); every promotion
    record carries its metrics (a non-empty list unless a human promoted before any analysis)."""

    @invariant()
    def append_only(self):
        for t in self.pending:
            for record in t.appended():
                assert record["at"] == t.after["history"][-1]["at"], record
                if record["action"] == "promoted":
                    assert isinstance(record.get("metrics"), list), record
                    if not record["reason"].startswith("manual"):
                        assert record["metrics"], record


class DeterministicAndIdempotent(RolloutMachine):
    """decide() is a function (same inputs, same Decision) and idempotent: a second pass with the same
    Deployments and nothing new measured (no analysis, action or fail-fast check) changes nothing."""

    @invariant()
    def deterministic_and_idempotent(self):
        for t in self.pending:
            again = decide(t.spec, t.before, t.observation, t.now, generation=1)
            assert again == t.decision
            quiet = Observation(deployments=t.observation.deployments)
            second = decide(t.spec, t.after, quiet, t.now, generation=1)
            assert second.status == t.after, _diff(t.after, second.status)
            assert not second.events, second.events
            assert (second.versions, second.route) == (t.decision.versions, t.decision.route)


class ManualActionAppliedOnce(RolloutMachine):
    """A manual action seen again with its idempotency key (the pass that applied it failed after its status write,
    so the annotation is still there) changes nothing: same status, no Event, the same children; only the
    annotation's removal is asked for (issue 11 point 9)."""

    @invariant()
    def applied_once(self):
        for t in self.pending:
            if not t.observation.action:
                continue
            replay = Observation(deployments=t.observation.deployments, action=t.observation.action,
                                 action_by=t.observation.action_by, action_id=t.observation.action_id)  # fmt: skip
            again = decide(t.spec, t.after, replay, t.now, generation=1)
            assert again.action_handled and again.action_replayed
            assert again.status == t.after, _diff(t.after, again.status)
            assert not again.events, again.events
            assert (again.versions, again.route) == (t.decision.versions, t.decision.route)
            event(f"replayed: {t.observation.action.strip()}")


class StatusMatchesTheCrd(RolloutMachine):
    """Every status decide() writes validates against the CRD's status schema (the operator's own validator)."""

    @invariant()
    def status_validates(self):
        for t in self.pending:
            problems = schema_problems(STATUS_SCHEMA, t.after, prefix=("status",))
            assert not problems, problems


def _diff(a: dict, b: dict) -> dict:
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


TestNeverPromotedWithoutEvidence = NeverPromotedWithoutEvidence.TestCase
TestWeightOnlyMovesUpByAStep = WeightOnlyMovesUpByAStep.TestCase
TestFailFastBreachEndsAtZero = FailFastBreachEndsAtZero.TestCase
TestHistoryAppendOnly = HistoryAppendOnly.TestCase
TestDeterministicAndIdempotent = DeterministicAndIdempotent.TestCase
TestStatusMatchesTheCrd = StatusMatchesTheCrd.TestCase
TestManualActionAppliedOnce = ManualActionAppliedOnce.TestCase
