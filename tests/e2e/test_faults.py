"""Faults the operator must survive, each a full sandbox run (real operator process, real Prometheus).

- SIGKILL at 10 random points of a rollout: resumes at the same step, promotes exactly once, the
  routed weight never moves backwards;
- 20% of the operator's API calls answered 409/500/429 plus slow responses: the rollout still
  completes with a consistent status and routing;
- Prometheus killed mid-analysis: no step while it is down, progress once it is back;
- a second version change mid-rollout: the first is superseded, the second promoted from stable.
"""

from __future__ import annotations

import asyncio
import copy
import pathlib
import random

import pytest

from mdsandbox.scenario_runner import run_scenario
from mdsandbox.scenario import parse_scenario

pytestmark = pytest.mark.slow

BASE = {
    "modelDeployment": {
        "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "resnet50", "namespace": "faults"},
        "spec": {
            "model": {"name": "resnet50_chest_xray", "basePath": "s3://models/resnet50", "version": 1},
            "serving": {"replicas": 2},
            "strategy": {"type": "Canary", "canary": {"steps": [10, 25, 50, 100]}, "scaleDownDelay": "2s"},
            "analysis": {"interval": "5s", "scrapeInterval": "1s", "minRequests": 20,
                         "metrics": [{"name": "latency-p95", "builtin": "latency", "quantile": 0.95, "max": 100},
                                     {"name": "error-rate", "builtin": "errorRate", "max": 1}]},
        },
    },
    "traffic": {"rps": 60},
    "versions": {"1": {"latencyMs": {"p50": 25, "p95": 40}}, "2": {"latencyMs": {"p50": 25, "p95": 40}},
                 "3": {"latencyMs": {"p50": 24, "p95": 38}}},
}


def kills_scenario() -> dict:
    sc = copy.deepcopy(BASE)
    rng = random.Random(20261125)
    events = [{"at": 6, "setVersion": 2}]
    t = 8.0
    for _ in range(10):
        t += rng.uniform(1.0, 2.5)
        events.append({"at": round(t, 2), "operator": "kill"})
        t += rng.uniform(0.3, 1.2)
        events.append({"at": round(t, 2), "operator": "start"})
    sc.update(name="operator-sigkill-x10", events=events, until=round(t + 40, 1),
              expect={"outcome": "promoted", "stableVersion": 2, "historyActions": ["promoted"], "weightNeverBackwards": True})
    return sc


def api_faults_scenario() -> dict:
    sc = copy.deepcopy(BASE)
    sc.update(name="api-faults-20pct",
              events=[{"at": 2, "apiFaults": {"errorRate": 0.2, "statuses": [409, 500, 429], "latencyMs": [0, 200], "seed": 7}},
                      {"at": 6, "setVersion": 2}],
              until=60, expect={"outcome": "promoted", "stableVersion": 2, "historyActions": ["promoted"], "weightNeverBackwards": True})
    return sc


def prometheus_scenario() -> dict:
    sc = copy.deepcopy(BASE)
    sc.update(name="prometheus-killed-mid-analysis",
              events=[{"at": 6, "setVersion": 2}, {"at": 14, "prometheus": "down"}, {"at": 32, "prometheus": "up"}],
              until=62, expect={"outcome": "promoted", "stableVersion": 2, "historyActions": ["promoted"]})
    return sc


def second_version_scenario() -> dict:
    sc = copy.deepcopy(BASE)
    sc.update(name="second-version-mid-rollout",
              events=[{"at": 6, "setVersion": 2}, {"at": 15, "setVersion": 3}],
              until=50, expect={"outcome": "promoted", "stableVersion": 3, "historyActions": ["superseded", "promoted"]})
    return sc


@pytest.fixture(scope="module")
def fault_reports(tmp_path_factory):
    scenarios = [kills_scenario(), api_faults_scenario(), prometheus_scenario(), second_version_scenario()]

    async def run_all():
        sem = asyncio.Semaphore(2)

        async def one(raw):
            async with sem:
                sc = parse_scenario(raw)
                return sc.name, await run_scenario(sc, workdir=tmp_path_factory.mktemp(sc.name))

        return dict(await asyncio.gather(*(one(s) for s in scenarios)))

    return asyncio.run(run_all())


def _explain(report: dict) -> str:
    bad = [e for e in report["expectations"] if not e["ok"]]
    return f"{report['name']}: {bad} errors={report['errors']} marks={report['marks'][-8:]} workdir={report['workdir']}"


def test_sigkill_ten_times_resumes_and_promotes_once(fault_reports):
    report = fault_reports["operator-sigkill-x10"]
    assert report["passed"], _explain(report)
    assert sum(1 for m in report["marks"] if m["text"] == "operator kill") == 10
    promoted = [h for h in report["history"] if h["action"] == "promoted"]
    assert len(promoted) == 1 and promoted[0]["version"] == 2


def test_api_faults_converge_with_consistent_status(fault_reports):
    report = fault_reports["api-faults-20pct"]
    assert report["passed"], _explain(report)
    assert report["apiFaultsInjected"] >= 10, report["apiFaultsInjected"]  # the operator really was hit
    assert report["phase"] in ("Stable", "Promoting")
    last = report["timeline"][-1]
    assert last["stableVersion"] == 2 and last["canaryVersion"] is None and last["routedWeight"] == 0


def test_prometheus_outage_holds_then_resumes(fault_reports):
    report = fault_reports["prometheus-killed-mid-analysis"]
    assert report["passed"], _explain(report)
    down = next(m["t"] for m in report["marks"] if m["text"] == "Prometheus down")
    up = next(m["t"] for m in report["marks"] if m["text"] == "Prometheus up")
    during = [s for s in report["timeline"] if down + 1.0 <= s["t"] <= up]
    assert during and len({s["routedWeight"] for s in during}) == 1, "the weight moved while Prometheus was down"
    assert all(s["stableVersion"] == 1 for s in during), "promoted while Prometheus was down"
    no_data = [a for a in report["analyses"] if down < a["t"] <= up]
    assert no_data and all(a["verdict"] == "noData" for a in no_data)


def test_second_version_change_restarts_from_stable(fault_reports):
    report = fault_reports["second-version-mid-rollout"]
    assert report["passed"], _explain(report)
    superseded = next(h for h in report["history"] if h["action"] == "superseded")
    assert superseded["version"] == 2 and superseded["fromVersion"] == 1
    promoted = next(h for h in report["history"] if h["action"] == "promoted")
    assert promoted["version"] == 3 and promoted["fromVersion"] == 1
