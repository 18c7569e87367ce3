"""Rollout notifications (issue 13 part 3), the pure half: which events a decision produces (played through the
real state machine) and the payload each format posts (generic webhook JSON, Slack Block Kit, Teams Adaptive
Card in a Workflows message), within the receivers' limits. Delivery is tests/integration/test_notifier.py."""

from __future__ import annotations

import datetime
import json

import pytest

from modeldeploy.analysis.verdict import AnalysisResult, judge
from modeldeploy.notifications import SLACK_MAX_FIELDS, Notice, notices, payload
from modeldeploy.rollout import DeploymentState, Observation, decide
from modeldeploy.settings import parse_notifications
from modeldeploy.validation import validate_spec

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.UTC)


def at(s: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=s)


def spec_of(version: int, **extra):
    spec = {"model": {"name": "cxr", "basePath": "s3://b/m", "version": version},
            "strategy": {"type": "Canary", "canary": {"steps": [50, 100]}},
            "analysis": {"interval": "10s", "failureThreshold": 1, "metrics": [
                {"name": "latency-p95", "builtin": "latency", "quantile": 0.95, "max": 100}]}, **extra}  # fmt: skip
    result = validate_spec(spec)
    assert result.ok, result.problems
    return result.spec


def ready(*versions: int) -> dict[int, DeploymentState]:
    return {v: DeploymentState(version=v, desired=1, ready=1, updated=1, available=1) for v in versions}


def analysis(t: float, latency: float) -> AnalysisResult:
    return AnalysisResult(at=at(t), metrics=(judge("latency-p95", latency, min=None, max=100),), requests=500)


def step(spec, status, t, deployments, **obs):
    d = decide(spec, status, Observation(deployments=deployments, **obs), at(t), generation=2)
    found = notices(namespace="radiology", name="cxr", model="cxr", old_status=status, new_status=d.status,
                    events=d.events, at="now")  # fmt: skip
    return d.status, found


def stable() -> dict:
    st = decide(spec_of(1), {}, Observation(deployments=ready(1)), at(0), generation=1).status
    assert st["phase"] == "Stable"
    return st


def test_each_rollout_event_once_with_its_numbers():
    v2 = spec_of(2)
    st, found = step(v2, stable(), 10, ready(1))
    assert [(n.event, n.action, n.version, n.from_version) for n in found] == [("RolloutStarted", "started", 2, 1)]
    st, found = step(v2, st, 11, ready(1, 2))
    assert found == []  # canary ready: no notification
    st, found = step(v2, st, 21, ready(1, 2), analysis=analysis(21, 40.0))
    assert found == []  # a step: no notification
    st, found = step(v2, st, 31, ready(1, 2), analysis=analysis(31, 41.0))
    (promoted,) = found
    assert (promoted.event, promoted.version, promoted.from_version) == ("Promoted", 2, 1)
    assert promoted.metrics[0]["name"] == "latency-p95" and promoted.metrics[0]["value"] == 41.0
    st, found = step(v2, st, 40, ready(1, 2))
    assert found == []  # an idle pass repeats nothing


@pytest.mark.parametrize("automatic, obs, want", [
    (True, {"analysis": analysis(21, 300.0)}, ("RolledBack", "rolledBack")),
    (True, {"action": "abort", "action_by": "dr-jones"}, ("RolledBack", "aborted")),
    (False, {"analysis": analysis(21, 300.0)}, ("Failed", "failed")),
])  # fmt: skip
def test_rollbacks_aborts_and_failures(automatic, obs, want):
    v2 = spec_of(2, rollback={"automatic": automatic})
    st, _ = step(v2, stable(), 10, ready(1))
    st, _ = step(v2, st, 11, ready(1, 2))
    st, found = step(v2, st, 21, ready(1, 2), **obs)
    assert [(n.event, n.action) for n in found] == [want]
    assert found[0].version == 2 and found[0].from_version == 1 and found[0].reason
    if want[1] == "aborted":
        assert "dr-jones" in found[0].reason and found[0].title.endswith("aborted")


NOTICE = Notice(event="RolledBack", namespace="radiology", name="cxr", model="resnet50_chest_xray", version=3,
                from_version=2, action="rolledBack", reason="fail-fast threshold crossed: error-rate 25.1 > 10",
                at="2026-11-25T12:00:00.000Z", strategy="Canary",
                metrics=({"name": "error-rate", "value": 25.1, "max": 10, "passed": False, "reason": "25.1 > 10"},
                         {"name": "latency-p95", "value": None, "max": 100, "passed": False, "reason": "no data"}))  # fmt: skip


def test_generic_webhook_payload():
    body = payload("webhook", NOTICE)
    assert body["kind"] == "ModelDeploymentNotification" and body["apiVersion"] == "modeldeploy.io/v1alpha1"
    assert (body["event"], body["action"], body["version"], body["fromVersion"]) == ("RolledBack", "rolledBack", 3, 2)
    assert body["metrics"][0]["value"] == 25.1 and body["message"] == "radiology/cxr: version 3 rolled back"
    json.dumps(body)


def test_slack_block_kit_within_limits():
    many = Notice(**{**NOTICE.__dict__, "metrics": tuple({"name": f"m{i}", "value": i, "max": 5, "passed": i <= 5} for i in range(14)),
                     "reason": "x" * 5000})  # fmt: skip
    for notice in (NOTICE, many):
        body = payload("slack", notice)
        assert body["text"].startswith("radiology/cxr: version 3 rolled back") and len(body["text"]) <= 3000
        types = [b["type"] for b in body["blocks"]]
        assert types[0] == "header" and types[-1] == "context" and types.count("section") in (1, 2)
        header = body["blocks"][0]["text"]
        assert header["type"] == "plain_text" and len(header["text"]) <= 150
        for block in body["blocks"]:
            if block["type"] == "section" and "fields" in block:
                assert 1 <= len(block["fields"]) <= SLACK_MAX_FIELDS
                assert all(f["type"] == "mrkdwn" and len(f["text"]) <= 2000 for f in block["fields"])
            if block["type"] == "section" and "text" in block:
                assert len(block["text"]["text"]) <= 3000
    fields = payload("slack", NOTICE)["blocks"][2]["fields"]
    assert fields[0]["text"] == "*error-rate*\n25.1 (<= 10): FAIL" and fields[1]["text"] == "*latency-p95*\nno data (<= 100): no data"


def test_teams_workflows_message_with_an_adaptive_card():
    body = payload("teams", NOTICE)
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive" and attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4" and card["$schema"].startswith("http://adaptivecards.io/")
    title, reason, factset = card["body"]
    assert title["type"] == "TextBlock" and title["color"] == "Attention" and title["text"] == NOTICE.title
    assert reason["text"] == NOTICE.reason and factset["type"] == "FactSet"
    facts = {f["title"]: f["value"] for f in factset["facts"]}
    assert facts["Version"] == "3" and facts["Stable before"] == "2" and facts["error-rate"] == "25.1 (<= 10): FAIL"
    assert all(isinstance(f["value"], str) for f in factset["facts"])  # Adaptive Cards FactSet values are strings


def test_default_receivers_setting_is_validated_like_the_spec():
    (target,) = parse_notifications('[{"name": "ops", "format": "teams", "urlFrom": {"secretKeyRef": {"name": "n", "key": "k"}}}]')
    assert target.events == ("RolloutStarted", "Promoted", "RolledBack", "Failed")
    for bad, needle in (("{", "not JSON"), ('{"name": "x"}', "JSON list"), ('[{"name": "Ops"}]', r"MODELDEPLOY_NOTIFICATIONS\[0\]: .*NotificationTarget")):
        with pytest.raises(ValueError, match=needle):
            parse_notifications(bad)
