"""The reconciler's periodic drift check at fleet scale, against the strict API emulator.

Issue 14 part 3: with 1,000 ModelDeployments created together, every resync made all of them re-read their
five children within a few seconds (5,000 GETs queued at once), and the passes that had something to do (the
100 canaries' analyses) waited behind them: analysis lag p90 0.7-2.1 intervals. The checks now run at most
DRIFT_CHECKS_AT_ONCE at a time; they still read every child and still repair a drifted one.
"""

from __future__ import annotations

import asyncio
import types
import uuid

import pytest

from modeldeploy.kube import KINDS, Kube, new_api_client
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.plans import Target
from modeldeploy.reconciler import DRIFT_CHECKS_AT_ONCE, Reconciler
from modeldeploy.render import desired_objects
from modeldeploy.rollout import Observation, plans
from modeldeploy.settings import Settings
from modeldeploy.validation import validate_spec

VS = KINDS[("networking.istio.io/v1", "VirtualService")]
SPEC = {
    "model": {"name": "cxr", "basePath": "s3://models/cxr", "version": 1},
    "serving": {"replicas": 1},
    "analysis": {"metrics": [{"name": "errors", "builtin": "errorRate", "max": 1}]},
}


@pytest.fixture
def namespace(apiserver):
    ns = f"drift-{uuid.uuid4().hex[:8]}"
    apiserver.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    return ns


async def test_a_fleets_drift_checks_run_a_few_at_a_time_and_still_repair(apiserver, namespace):
    kube = Kube(new_api_client(kubeconfig=str(apiserver.kubeconfig)), workers=4)
    try:
        await kube.detect_istio()
        reconciler = Reconciler(kube, None, Settings(resync_seconds=60.0, metrics_port=0), OperatorMetrics())
        spec = validate_spec(SPEC, name="m").spec
        versions, route = plans(spec, {"stableVersion": 1})
        decision = types.SimpleNamespace(versions=versions, route=route, status={"stableVersion": 1})
        targets = [Target(name=f"m{i:02d}", namespace=namespace, spec=spec) for i in range(24)]
        children = len(desired_objects(targets[0], list(versions), route))
        for target in targets:
            reconciler._mem(namespace, target.name).validated_spec_json = "{}"
        # first pass of each: the children are created (a change: not bounded)
        await asyncio.gather(*(reconciler._apply_children(reconciler._mem(namespace, t.name), t, decision, Observation())
                               for t in targets))  # fmt: skip
        vs = apiserver.get_object("networking.istio.io", "v1", "virtualservices", namespace, "m07")
        assert vs is not None
        apiserver.patch_object("networking.istio.io", "v1", "virtualservices", namespace, "m07",
                               {"spec": {"http": [{"name": "hijack", "route": [{"destination": {"host": "evil"}}]}]}})  # fmt: skip

        in_flight, peak, reads = [0], [0], [0]
        get = kube.get

        async def counted_get(*args, **kwargs):  # the real read, counted
            in_flight[0] += 1
            reads[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            try:
                return await get(*args, **kwargs)
            finally:
                in_flight[0] -= 1

        kube.get = counted_get  # type: ignore[method-assign]
        for target in targets:  # a resync later: every drift check is due at once
            reconciler._mem(namespace, target.name).applied_at = 0.0
        await asyncio.gather(*(reconciler._apply_children(reconciler._mem(namespace, t.name), t, decision, Observation())
                               for t in targets))  # fmt: skip
        assert reads[0] == len(targets) * children  # every child of every ModelDeployment was read
        assert children < peak[0] <= DRIFT_CHECKS_AT_ONCE * children, peak[0]  # concurrent, but bounded
        repaired = apiserver.get_object("networking.istio.io", "v1", "virtualservices", namespace, "m07")
        assert repaired["spec"]["http"][-1]["name"] == "primary"
        # and the checks are done for this resync: no reads until the next one is due
        await asyncio.gather(*(reconciler._apply_children(reconciler._mem(namespace, t.name), t, decision, Observation())
                               for t in targets))  # fmt: skip
        assert reads[0] == len(targets) * children
    finally:
        await kube.aclose()
