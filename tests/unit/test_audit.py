"""The decision record's hash chain (pure): records, links, and what `verify` reports for each kind of tampering."""

from __future__ import annotations

import copy
import json

import pytest

from modeldeploy import audit
from modeldeploy.spec import parse_spec

SPEC = parse_spec({
    "model": {"name": "m", "basePath": "s3://models/m", "version": 2, "digest": "sha256:" + "ab" * 32},
    "analysis": {"metrics": [
        {"name": "errors", "builtin": "errorRate", "max": 1, "failFast": {"max": 10}},
        {"name": "ni", "builtin": "nonInferiority", "nonInferiority": {"margin": 0.05, "findings": ["Pneumothorax"]}},
    ]},
    "evaluation": {"goldenSet": {"uri": "pvc://golden/set"}},
})  # fmt: skip


def entry(i: int, action: str = "promoted") -> dict:
    return {"version": i + 1, "action": action, "at": f"2026-01-01T00:00:{i:02d}.000Z", "reason": f"step {i}",
            "metrics": [{"name": "errors", "value": 0.1, "passed": True, "reason": "ok"}]}  # fmt: skip


def build_chain(n: int) -> list[dict]:
    """n ConfigMaps as the operator writes them."""
    out, prev = [], ""
    for i in range(n):
        record = audit.decision_record(entry=entry(i), namespace="ns", name="md", uid="u1", generation=3, spec=SPEC,
                                       actor=audit.Actor("modeldeploy-operator", "operator"),
                                       golden_set={"fingerprint": "f00d", "source": "/golden/set"})  # fmt: skip
        record["id"] = audit.record_hash(audit.canonical(record))
        _, data, digest = audit.chain(record, i + 1, prev)
        out.append(audit.configmap("ns", "md", i + 1, data, digest))
        prev = digest
    return out


def head(cms: list[dict]) -> dict:
    seq, digest, _ = audit.head_of(cms)
    return {"seq": seq, "head": digest}


def test_a_record_carries_what_an_auditor_needs():
    first, cm = build_chain(2)
    assert json.loads(first["data"]["record.json"])["model"]["digest"] is None  # version 1 was never pinned
    record = json.loads(cm["data"]["record.json"])  # version 2: spec.model.version, pinned
    assert record["schema"] == audit.SCHEMA and record["seq"] == 2 and record["prev"] == head([first])["head"]
    assert record["model"] == {"name": "m", "basePath": "s3://models/m", "specVersion": 2, "digest": "sha256:" + "ab" * 32}
    assert record["goldenSet"]["fingerprint"] == "f00d"
    assert {t["name"]: t for t in record["thresholds"]}["ni"]["nonInferiority"]["margin"] == 0.05
    assert {t["name"]: t for t in record["thresholds"]}["errors"] == {"name": "errors", "builtin": "errorRate", "max": 1.0,
                                                                       "failFast": {"max": 10.0}}  # fmt: skip
    assert record["metrics"][0]["value"] == 0.1 and record["actor"] == {"name": "modeldeploy-operator", "source": "operator"}
    assert cm["immutable"] is True and "ownerReferences" not in cm["metadata"]  # outlives the ModelDeployment
    assert cm["metadata"]["name"] == "md-audit-00000002"
    assert cm["metadata"]["annotations"][audit.ANNOTATION_HASH] == audit.record_hash(cm["data"]["record.json"].encode())


def test_an_intact_chain_verifies():
    cms = build_chain(5)
    verdict = audit.verify(cms, head(cms))
    assert verdict.ok and verdict.records == 5 and verdict.head == head(cms)["head"]
    assert "OK" in verdict.text("ns/md")
    assert audit.verify([], None).ok  # no decision yet


def _edit(cm: dict, change) -> dict:
    cm = copy.deepcopy(cm)
    record = json.loads(cm["data"]["record.json"])
    change(record)
    cm["data"]["record.json"] = audit.canonical(record).decode()
    return cm


@pytest.mark.parametrize("tamper, broken_at, problem", [
    # the reason of record 3 rewritten (the ConfigMap deleted and recreated with the same hash annotation)
    (lambda c: c.__setitem__(2, _edit(c[2], lambda r: r.__setitem__("reason", "all fine"))), 3, "content hash"),
    # ...and the annotation recomputed too: the NEXT record's prev no longer matches
    (lambda c: c.__setitem__(2, (lambda e: {**e, "metadata": {**e["metadata"], "annotations": {
        audit.ANNOTATION_HASH: audit.record_hash(e["data"]["record.json"].encode())}}})(
        _edit(c[2], lambda r: r.__setitem__("reason", "all fine")))), 4, "prev"),
    # a record deleted from the middle
    (lambda c: c.pop(1), 2, "missing"),
    # the JSON re-serialised by hand (same content, other bytes)
    (lambda c: c[0]["data"].__setitem__("record.json", json.dumps(json.loads(c[0]["data"]["record.json"]), indent=1)), 1,
     "canonical"),
    # recreated without immutable (so it could be edited in place later)
    (lambda c: c[3].__setitem__("immutable", False), 4, "not immutable"),
    # the newest record dropped: status.audit still names 5
    (lambda c: c.pop(4), 5, "newest missing"),
])  # fmt: skip
def test_tampering_is_reported_at_the_first_broken_record(tamper, broken_at, problem):
    cms = build_chain(5)
    anchor = head(cms)
    tamper(cms)
    verdict = audit.verify(cms, anchor)
    assert not verdict.ok
    assert verdict.broken_at == broken_at, verdict
    assert problem in verdict.problem
    assert verdict.text("ns/md").startswith("BROKEN: ns/md: record")


def test_new_history_entries_are_the_appended_ones():
    old = [entry(0), entry(1)]
    new = old[1:] + [entry(2), entry(3)]  # the window moved (history keeps the newest 100)
    assert audit.new_history_entries(old, new) == [entry(2), entry(3)]


@pytest.mark.parametrize("history_action, manual, expected", [
    ("aborted", "abort", "dr-jones"),
    ("promoted", "promote-full", "dr-jones"),
    ("rolledBack", "pause", "modeldeploy-operator"),  # a rollback in the same pass as a pause: the operator's
    ("rolledBack", None, "modeldeploy-operator"),
    (None, "promote", "dr-jones"),  # the manual-action record of a one-step promote
    ("manualAction", "promote", "dr-jones"),
])  # fmt: skip
def test_who_decided(history_action, manual, expected):
    actor = audit.actor_for(history_action, manual, "dr-jones", "modeldeploy-action-by")
    assert actor.name == expected
    if expected == "dr-jones":
        assert actor.as_dict() == {"name": "dr-jones", "source": "annotation modeldeploy.io/action-by", "verified": True,
                                   "boundBy": "modeldeploy-action-by"}  # fmt: skip
    assert audit.actor_for("aborted", "abort", "x", None).as_dict()["verified"] is False  # no policy: self-declared
