"""Webhook gates (issue 13 part 4), pure: answers -> verdicts, when a gate is asked, and what each answer does to
a rollout, played through the real state machine; every answer change is a history record (and so an audit
record, with the gate as actor)."""

from __future__ import annotations

import datetime

import pytest

from modeldeploy import audit, gates
from modeldeploy.analysis.verdict import AnalysisResult, judge
from modeldeploy.rollout import DeploymentState, Observation, decide
from modeldeploy.validation import validate_spec

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.UTC)


def at(s: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=s)


def spec_of(version: int, gate_list=(), strategy=None, **extra):
    spec = {"model": {"name": "cxr", "basePath": "s3://b/m", "version": version},
            "strategy": strategy or {"type": "Canary", "canary": {"steps": [50, 100]}},
            "analysis": {"interval": "10s", "failureThreshold": 1, "metrics": [
                {"name": "latency-p95", "builtin": "latency", "quantile": 0.95, "max": 100}]},
            "gates": [{"url": "http://127.0.0.1:1/gate", **g} for g in gate_list], **extra}  # fmt: skip
    result = validate_spec(spec)
    assert result.ok, result.problems
    return result.spec


def ready(*versions: int) -> dict[int, DeploymentState]:
    return {v: DeploymentState(version=v, desired=1, ready=1, updated=1, available=1) for v in versions}


def passing(t: float) -> AnalysisResult:
    return AnalysisResult(at=at(t), metrics=(judge("latency-p95", 40.0, min=None, max=100),), requests=500)


def answer(name: str, verdict: str, t: float, status=None, by=None, detail="") -> gates.GateAnswer:
    return gates.GateAnswer(name=name, version=2, verdict=verdict, at=at(t), asked_at=at(t - 0.1), http_status=status,
                            by=by, detail=detail or f"HTTP {status}")  # fmt: skip


def play(spec, status, t, deployments, **obs):
    return decide(spec, status, Observation(deployments=deployments, **obs), at(t), generation=2)


def stable(spec) -> dict:
    st = decide(spec_of(1, [{"name": g.name, "type": g.type} for g in spec.gates]), {}, Observation(deployments=ready(1)), at(0), generation=1).status
    assert st["phase"] == "Stable"
    return st


def reasons(d) -> list[str]:
    return [e.reason for e in d.events]


@pytest.mark.parametrize("status, body, error, want", [
    (200, None, None, ("approved", None, "HTTP 200")),
    (204, None, None, ("approved", None, "HTTP 204")),
    (200, {"by": "dr-jones", "reason": "golden-set results reviewed"}, None, ("approved", "dr-jones", "HTTP 200: golden-set results reviewed")),
    (202, {"by": "queue"}, None, ("pending", "queue", "HTTP 202")),
    (403, {"by": "dr-jones", "reason": "pneumothorax AUROC below our bar"}, None, ("denied", "dr-jones", "HTTP 403: pneumothorax AUROC below our bar")),
    (404, None, None, ("error", None, "HTTP 404")),
    (500, "not json", None, ("error", None, "HTTP 500")),
    (None, None, "no answer within 10s", ("error", None, "no answer within 10s")),
])  # fmt: skip
def test_interpret(status, body, error, want):
    assert gates.interpret(status, body, error) == want


@pytest.mark.parametrize("kind, policy, verdict, want", [
    ("confirmPromotion", None, "approved", "yes"), ("confirmPromotion", None, "denied", "no"),
    ("confirmPromotion", None, "pending", "wait"), ("confirmPromotion", None, None, "wait"),
    ("confirmPromotion", None, "error", "no"), ("confirmPromotion", "Ignore", "error", "yes"),
    ("preRollout", None, "error", "no"), ("preRollout", "Ignore", "error", "yes"),
    ("rollback", None, "error", "no"), ("rollback", "Fail", "error", "yes"), ("rollback", None, "approved", "yes"),
    ("rollback", None, "denied", "no"),
])  # fmt: skip
def test_effect_of_each_verdict_with_the_failure_policy(kind, policy, verdict, want):
    gate = spec_of(2, [{"name": "g", "type": kind, **({"failurePolicy": policy} if policy else {})}]).gates[0]
    assert gates.effect(gate, verdict) == want


def at_last_step_awaiting(spec):
    """v2 at 50% (first step), its analysis passed: the next move (100%) waits for the sign-off."""
    st = play(spec, stable(spec), 10, ready(1)).status
    st = play(spec, st, 11, ready(1, 2)).status
    assert st["canaryWeight"] == 50
    d = play(spec, st, 21, ready(1, 2), analysis=passing(21))
    return d


def test_promotion_waits_for_the_sign_off_then_moves_once():
    spec = spec_of(2, [{"name": "radiologist", "type": "confirmPromotion"}])
    d = at_last_step_awaiting(spec)
    st = d.status
    assert st["canaryWeight"] == 50 and st["gates"]["awaiting"] == "confirmPromotion" and "AwaitingApproval" in reasons(d)
    assert "waiting for confirmPromotion gate radiologist" in st["message"]
    assert [g.name for g in gates.due(spec, st, at(21), canary_ready=True)] == ["radiologist"]
    # not decided yet: recorded once, asked again only after an interval, analyses go on without a move
    st = play(spec, st, 22, ready(1, 2), gate_answers=(answer("radiologist", "pending", 22, 202),)).status
    assert st["gates"]["answers"]["radiologist"]["verdict"] == "pending" and st["canaryWeight"] == 50
    assert gates.due(spec, st, at(25), canary_ready=True) == ()
    assert 8.5 < gates.next_ask_in(spec, st["gates"], 2, at(22)) < 9.0  # the loop wakes for the next ask
    assert [g.name for g in gates.due(spec, st, at(31), canary_ready=True)] == ["radiologist"]
    st = play(spec, st, 31, ready(1, 2), analysis=passing(31)).status
    assert st["canaryWeight"] == 50
    st = play(spec, st, 33, ready(1, 2), gate_answers=(answer("radiologist", "pending", 33, 202),)).status
    assert [h["action"] for h in st["history"]].count("gate") == 1 and st["gates"]["answers"]["radiologist"]["asks"] == 2
    # the sign-off: the move to 100% happens in that pass, once, even with an analysis in the same pass
    d = play(spec, st, 41, ready(1, 2), analysis=passing(41),
             gate_answers=(answer("radiologist", "approved", 40, 200, by="dr-jones"),))  # fmt: skip
    st = d.status
    assert st["canaryWeight"] == 100 and st["step"] == 1 and "StepAdvanced" in reasons(d)
    gate_records = [h for h in st["history"] if h["action"] == "gate"]
    assert [g["gate"]["verdict"] for g in gate_records] == ["pending", "approved"]
    assert gate_records[-1]["gate"]["by"] == "dr-jones" and "dr-jones" in gate_records[-1]["reason"]
    # the last analysis promotes without asking again
    d = play(spec, st, 51, ready(1, 2), analysis=passing(51))
    assert d.status["stableVersion"] == 2 and d.status["history"][-1]["action"] == "promoted"
    assert gates.due(spec, d.status, at(60), canary_ready=True) == ()


@pytest.mark.parametrize("verdict, policy, status, promoted", [
    ("denied", None, 403, False),
    ("error", None, 500, False),
    ("error", "Ignore", 500, True),
])  # fmt: skip
def test_sign_off_denied_or_failing(verdict, policy, status, promoted):
    spec = spec_of(2, [{"name": "radiologist", "type": "confirmPromotion", **({"failurePolicy": policy} if policy else {})}])
    st = at_last_step_awaiting(spec).status
    d = play(spec, st, 25, ready(1, 2), gate_answers=(answer("radiologist", verdict, 25, status, by="dr-jones"),))
    if promoted:
        assert d.status["canaryWeight"] == 100
    else:
        assert d.status["phase"] == "RolledBack" and d.status["stableVersion"] == 1
        last = d.status["history"][-1]
        assert last["action"] == "rolledBack" and "confirmPromotion gate radiologist refused version 2 by dr-jones" in last["reason"]
        assert [h["action"] for h in d.status["history"]][-2:] == ["gate", "rolledBack"]
        assert "gates" not in play(spec, d.status, 30, ready(1)).status  # the rollout's gate state goes with it


def test_manual_promote_full_also_waits_for_the_sign_off():
    spec = spec_of(2, [{"name": "radiologist", "type": "confirmPromotion"}], strategy={"type": "Canary", "canary": {"steps": [10, 50, 100]}})
    st = play(spec, stable(spec), 10, ready(1)).status
    st = play(spec, st, 11, ready(1, 2)).status
    d = play(spec, st, 12, ready(1, 2), action="promote-full", action_by="oncall")
    assert d.status["canaryVersion"] == 2 and d.status["gates"]["awaiting"] == "confirmPromotion"  # at 10%: all traffic next
    d = play(spec, d.status, 13, ready(1, 2), gate_answers=(answer("radiologist", "approved", 13, 200),))
    assert d.status["canaryWeight"] == 50  # the sign-off resumes normal progression (the manual jump was not kept)


def test_pre_rollout_gate_holds_traffic_until_yes():
    spec = spec_of(2, [{"name": "smoke-tests", "type": "preRollout"}])
    st = play(spec, stable(spec), 10, ready(1)).status
    assert gates.due(spec, st, at(10), canary_ready=False) == ()
    d = play(spec, st, 11, ready(1, 2))
    st = d.status
    assert st["canaryWeight"] == 0 and "readyAt" not in st["rollout"] and d.route.canary is None
    assert st["gates"]["awaiting"] == "preRollout" and "AwaitingApproval" in reasons(d)
    assert [g.name for g in gates.due(spec, st, at(11), canary_ready=True)] == ["smoke-tests"]
    d = play(spec, st, 13, ready(1, 2), gate_answers=(answer("smoke-tests", "approved", 13, 200),))
    assert d.status["canaryWeight"] == 50 and d.route.canary == 2 and "CanaryReady" in reasons(d)
    denied = play(spec, st, 13, ready(1, 2), gate_answers=(answer("smoke-tests", "denied", 13, 403),)).status
    assert denied["phase"] == "RolledBack" and "preRollout gate smoke-tests refused" in denied["history"][-1]["reason"]


def test_rollback_gate_yes_rolls_back_and_its_errors_are_ignored_by_default():
    spec = spec_of(2, [{"name": "incidents", "type": "rollback"}])
    st = play(spec, stable(spec), 10, ready(1)).status
    st = play(spec, st, 11, ready(1, 2)).status
    assert [g.name for g in gates.due(spec, st, at(11), canary_ready=True)] == ["incidents"]
    ok = play(spec, st, 12, ready(1, 2), gate_answers=(answer("incidents", "error", 12, None, detail="no answer within 10s"),)).status
    assert ok["phase"] == "Progressing" and ok["canaryWeight"] == 50
    assert [g.name for g in gates.due(spec, ok, at(23), canary_ready=True)] == ["incidents"]  # asked every interval
    back = play(spec, ok, 23, ready(1, 2), gate_answers=(answer("incidents", "approved", 23, 200, by="pagerduty"),)).status
    assert back["phase"] == "RolledBack" and "rollback gate incidents by pagerduty" in back["history"][-1]["reason"]


def test_gate_records_go_to_the_audit_chain_with_the_gate_as_actor():
    spec = spec_of(2, [{"name": "radiologist", "type": "confirmPromotion"}])
    st = at_last_step_awaiting(spec).status
    st = play(spec, st, 25, ready(1, 2), gate_answers=(answer("radiologist", "approved", 25, 200, by="dr-jones"),)).status
    entry = next(h for h in st["history"] if h["action"] == "gate")
    record = audit.decision_record(entry=entry, namespace="radiology", name="cxr", uid="u", generation=2, spec=spec,
                                   actor=audit.Actor("gate/radiologist", "webhook gate"), golden_set=None)  # fmt: skip
    assert record["action"] == "gate" and record["gate"]["name"] == "radiologist" and record["gate"]["by"] == "dr-jones"
    assert record["gate"]["verdict"] == "approved" and record["gate"]["httpStatus"] == 200
    assert record["actor"] == {"name": "gate/radiologist", "source": "webhook gate", "verified": False}


def test_request_body_names_the_gate_and_carries_the_last_analysis():
    spec = spec_of(2, [{"name": "radiologist", "type": "confirmPromotion", "metadata": {"checklist": "cxr-v2"}}])
    st = at_last_step_awaiting(spec).status
    body = gates.request_body(spec.gates[0], namespace="radiology", name="cxr", spec=spec, status=st)
    assert (body["kind"], body["gate"], body["type"], body["version"], body["stableVersion"]) == (
        "ModelDeploymentGate", "radiologist", "confirmPromotion", 2, 1)
    assert body["metadata"] == {"checklist": "cxr-v2"} and body["lastAnalysis"]["metrics"][0]["name"] == "latency-p95"


def test_a_deadline_turns_an_undecided_sign_off_into_an_error():
    spec = spec_of(2, [{"name": "radiologist", "type": "confirmPromotion", "deadline": "30s"}])
    st = at_last_step_awaiting(spec).status
    st = play(spec, st, 22, ready(1, 2), gate_answers=(answer("radiologist", "pending", 22, 202),)).status
    st = play(spec, st, 45, ready(1, 2), gate_answers=(answer("radiologist", "pending", 45, 202),)).status
    assert st["phase"] == "Progressing" and st["gates"]["answers"]["radiologist"]["firstAskedAt"].startswith("2026-11-25T12:00:21.9")
    d = play(spec, st, 52.5, ready(1, 2))  # 30.6 s after the first ask: error -> failurePolicy Fail -> refused
    assert d.status["phase"] == "RolledBack"
    reasons_ = [h["reason"] for h in d.status["history"][-2:]]
    assert "error (no decision within deadline 30s (asked 2 times)); failurePolicy Fail: no" in reasons_[0]
    assert "refused version 2" in reasons_[1]


def test_plugin_status_lists_the_gates():
    from modeldeploy.cli.plugin import format_status

    spec = spec_of(2, [{"name": "radiologist", "type": "confirmPromotion"}])
    st = at_last_step_awaiting(spec).status
    st = play(spec, st, 22, ready(1, 2), gate_answers=(answer("radiologist", "pending", 22, 202, by="queue"),)).status
    text = format_status({"metadata": {"name": "cxr"}, "spec": {}, "status": st})
    assert "gates for v2, awaiting confirmPromotion:" in text
    assert "radiologist (confirmPromotion): pending by queue at 2026-11-25T12:00:22.000Z (HTTP 202; asked 1x)" in text


def test_a_retry_after_a_refusal_asks_the_gate_again():
    spec = spec_of(2, [{"name": "radiologist", "type": "confirmPromotion"}])
    st = at_last_step_awaiting(spec).status
    st = play(spec, st, 25, ready(1, 2), gate_answers=(answer("radiologist", "denied", 25, 403, by="dr-jones"),)).status
    assert st["phase"] == "RolledBack"
    d = play(spec, st, 26, ready(1, 2), action="retry", action_by="dr-jones")  # the very next pass
    assert d.status["canaryVersion"] == 2 and "gates" not in d.status  # the refusal does not carry over
