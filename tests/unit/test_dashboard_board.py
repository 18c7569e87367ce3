"""The dashboard's pure parts: the Board's memory of rollouts (board.py), the series' time span and traffic query."""

from __future__ import annotations

import pytest

from mddashboard.board import HISTORY_SHOWN, Board, RolloutMemory, summarize
from mddashboard.series import MAX_POINTS, span_of, traffic_share_query
from mddashboard.server import Settings, check_settings, host_name, is_loopback
from modeldeploy.analysis.builtins import QueryContext


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def md(status: dict | None = None, *, name="resnet50", ns="radiology", annotations=None, spec=None) -> dict:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": ns, "uid": "u1", "generation": 2, "annotations": annotations or {}},
        "spec": spec
        or {
            "model": {"name": "resnet50_chest_xray", "basePath": "s3://m/r", "version": 2},
            "strategy": {"type": "Canary", "canary": {"steps": [20, 50, 100]}},
            "analysis": {"interval": "5s", "failureThreshold": 2,
                         "metrics": [{"name": "latency-p95", "builtin": "latency", "max": 100, "failFast": {"max": 300}}]},
        },  # fmt: skip
        "status": status or {},
    }


def analysis(time: str, value: float, verdict: str = "pass") -> dict:
    return {"time": time, "kind": "interval", "verdict": verdict,
            "metrics": [{"name": "latency-p95", "value": value, "passed": verdict == "pass"}]}  # fmt: skip


LIVE = {"phase": "Progressing", "stableVersion": 1, "canaryVersion": 2, "canaryWeight": 20, "step": 0,
        "rollout": {"startedAt": "2026-01-01T10:00:00.000Z", "readyAt": "2026-01-01T10:00:02.000Z"}}  # fmt: skip


def test_summary_carries_the_status_fields_the_page_shows():
    s = summarize(md(dict(LIVE, failedChecks=1), annotations={"modeldeploy.io/action": "abort",
                                                             "modeldeploy.io/action-by": "alice via dashboard"}))  # fmt: skip
    assert (s["key"], s["phase"], s["stableVersion"], s["canaryVersion"], s["canaryWeight"]) == (
        "radiology/resnet50", "Progressing", 1, 2, 20)  # fmt: skip
    assert s["steps"] == [20, 50, 100] and s["failedChecks"] == 1 and s["failureThreshold"] == 2
    assert s["pendingAction"] == "abort" and s["pendingActionBy"] == "alice via dashboard"
    assert s["metrics"] == [{"name": "latency-p95", "builtin": "latency", "quantile": None, "min": None, "max": 100,
                             "failFast": {"max": 300}}]  # fmt: skip


def test_summary_sends_only_the_newest_history_records():
    history = [{"version": 1, "action": "deployed", "at": f"2026-01-01T10:{i:02d}:00.000Z"} for i in range(50)]
    s = summarize(md({"phase": "Stable", "stableVersion": 1, "history": history}))
    assert len(s["history"]) == HISTORY_SHOWN and s["history"][-1] == history[-1] and s["historyTotal"] == 50


def test_a_rollout_is_remembered_with_its_weights_and_every_analysis_once():
    clock = Clock()
    board = Board(clock=clock)
    board.upsert(md({"phase": "Stable", "stableVersion": 1}))
    assert board.memory == {}
    board.upsert(md(LIVE))
    clock.t += 5
    board.upsert(md(dict(LIVE, lastAnalysis=analysis("2026-01-01T10:00:07.000Z", 41))))
    board.upsert(md(dict(LIVE, lastAnalysis=analysis("2026-01-01T10:00:07.000Z", 41))))  # same analysis again
    clock.t += 5
    board.upsert(md(dict(LIVE, canaryWeight=50, step=1, lastAnalysis=analysis("2026-01-01T10:00:12.000Z", 44))))
    mem = board.memory[("radiology", "resnet50")]
    assert (mem.version, mem.stable, mem.started_at) == (2, 1, "2026-01-01T10:00:00.000Z")
    assert mem.weights == [[1000.0, 20], [1010.0, 50]]
    assert [a["time"] for a in mem.analyses] == ["2026-01-01T10:00:07.000Z", "2026-01-01T10:00:12.000Z"]
    assert mem.ended_at is None


@pytest.mark.parametrize("action", ["rolledBack", "aborted", "promoted", "superseded"])
def test_a_rollout_ends_with_the_history_record_that_ended_it(action):
    clock = Clock()
    board = Board(clock=clock)
    board.upsert(md(LIVE))
    clock.t += 30
    history = [{"version": 1, "action": "deployed", "at": "2026-01-01T09:00:00.000Z"},
               {"version": 2, "action": action, "fromVersion": 1, "at": "2026-01-01T10:00:30.000Z",
                "reason": f"{action} for a reason"}]  # fmt: skip
    board.upsert(md({"phase": "RolledBack", "stableVersion": 1, "canaryVersion": None, "canaryWeight": 0,
                     "history": history, "lastAnalysis": analysis("2026-01-01T10:00:29.000Z", 300, "fail")}))  # fmt: skip
    mem = board.memory[("radiology", "resnet50")]
    assert (mem.ended_at, mem.outcome, mem.reason) == (1030.0, action, f"{action} for a reason")
    assert mem.weights[-1] == [1030.0, 0]
    assert mem.analyses[-1]["verdict"] == "fail"  # the analysis that ended it is kept


def test_a_new_rollout_replaces_the_memory_and_old_analyses_are_ignored():
    clock = Clock()
    board = Board(clock=clock)
    board.upsert(md(LIVE))
    clock.t += 60
    later = dict(LIVE, canaryVersion=3, rollout={"startedAt": "2026-01-01T10:05:00.000Z"},
                 lastAnalysis=analysis("2026-01-01T10:00:40.000Z", 41))  # an analysis of version 2  # fmt: skip
    board.upsert(md(later))
    mem = board.memory[("radiology", "resnet50")]
    assert mem.version == 3 and mem.analyses == [] and mem.weights == [[1060.0, 20]]


def test_a_rollout_the_dashboard_never_saw_is_rebuilt_from_the_audit_trail():
    board = Board(clock=Clock())
    history = [{"version": 2, "action": "rolledBack", "fromVersion": 1, "at": "2026-01-01T10:00:30.000Z", "reason": "x"}]
    board.upsert(md({"phase": "RolledBack", "stableVersion": 1, "history": history}))
    mem = board.memory[("radiology", "resnet50")]
    assert mem.inferred and (mem.version, mem.stable, mem.outcome) == (2, 1, "rolledBack")
    assert mem.ended_at - mem.seen_at == 600


def test_reset_of_one_namespace_keeps_the_others():
    board = Board(clock=Clock())
    board.upsert(md(LIVE, ns="radiology"))
    board.upsert(md(LIVE, ns="pathology"))
    board.reset([], namespace="radiology")
    assert set(board.bodies) == {("pathology", "resnet50")}
    board.reset([])
    assert board.bodies == {} and board.memory == {}


def test_span_covers_the_rollout_within_max_points():
    mem = RolloutMemory(version=2, stable=1, started_at="2026-01-01T10:00:00.000Z", seen_at=1767261605.0)
    span = span_of(mem, now=1767261600.0 + 3600, resolution=1.0)
    assert span.start == 1767261600.0 - 10 and span.end == 1767261600.0 + 3600
    assert (span.end - span.start) / span.step <= MAX_POINTS
    ended = RolloutMemory(version=2, stable=1, started_at=None, seen_at=100.0, ended_at=160.0)
    assert (span_of(ended, now=1000.0, resolution=1.0).start, span_of(ended, now=1000.0, resolution=1.0).end) == (90.0, 170.0)


def test_traffic_share_query_leaves_out_the_evaluator_and_selects_the_canary():
    q = traffic_share_query(QueryContext("radiology", "resnet50", "m", 1, 2), "4s")
    assert 'destination_version="v2"' in q and 'source_workload!="resnet50-evaluator"' in q
    assert q.startswith("100 * (sum(rate(istio_requests_total{") and "[4s]" in q


@pytest.mark.parametrize(
    "host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
                       ("0.0.0.0", False), ("10.0.0.1", False), ("evil.example", False)],  # fmt: skip
)
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_host_name_of_a_host_header():
    assert [host_name(h) for h in ("127.0.0.1:8765", "[::1]:80", "localhost", "evil.example:8765")] == [
        "127.0.0.1", "::1", "localhost", "evil.example"]  # fmt: skip


def test_actions_on_a_public_address_need_a_trusted_identity_header():
    check_settings(Settings(host="127.0.0.1", allow_actions=True, local_user="alice"))
    check_settings(Settings(host="0.0.0.0", allow_actions=False))
    check_settings(Settings(host="0.0.0.0", allow_actions=True, identity_header="X-Forwarded-User"))
    with pytest.raises(ValueError, match="identity-header"):
        check_settings(Settings(host="0.0.0.0", allow_actions=True, local_user="alice"))
