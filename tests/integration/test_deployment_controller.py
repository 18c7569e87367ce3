"""The sandbox's Deployment controller against the API emulator: driven by each Deployment's own spec.

A fake cluster that recognised ModelDeploy's Deployments by the operator's own label constants
could not catch a labelling bug in the operator (both sides would be wrong the same way). Like the
real Deployment/ReplicaSet controllers and kubelet, it must act on ANY Deployment: pods from the
pod template (labels + pod-template-hash, a controller ownerReference), a Deployment's pods being
the ones it owns and its selector selects, the model version a pod must load taken from what its
readiness probe asks TF Serving for. And the fleet must route by the pods' REAL labels.
"""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from mdsandbox.controllers import (
    DeploymentController,
    WorkloadPods,
    readiness_probe_succeeds,
    selector_string,
    served_model_version,
)
from mdsandbox.fleet import SimulatedFleet

DEPLOY = ("apps", "v1", "deployments")
PODS = ("", "v1", "pods")


def _namespace(apiserver) -> str:
    ns = f"dc-{uuid.uuid4().hex[:8]}"
    apiserver.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    return ns


def _deployment(name: str, labels: dict, replicas: int = 2, probe_path: str | None = None) -> dict:
    container: dict = {"name": "server", "image": "example/server:1"}
    if probe_path:
        container["readinessProbe"] = {"httpGet": {"path": probe_path, "port": 8501}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},  # no ModelDeploy label at all
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": dict(labels, extra="yes")}, "spec": {"containers": [container]}},
        },
    }


async def _until(predicate, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_any_deployment_gets_pods_from_its_template_and_status(apiserver):
    ns = _namespace(apiserver)
    reports: list[WorkloadPods] = []
    controller = DeploymentController(api_url=apiserver.url, namespace=ns, ready_delay=0.2, poll_interval=0.05,
                                      on_change=reports.append)  # fmt: skip
    dep = apiserver.put_object(*DEPLOY, ns, _deployment("web", {"app": "web"}, probe_path="/v1/models/m/versions/7"))
    await controller.start()
    try:
        await _until(lambda: (apiserver.get_object(*DEPLOY, ns, "web").get("status") or {}).get("readyReplicas") == 2)
        pods = apiserver.list_objects(*PODS, ns)
        assert len(pods) == 2
        for pod in pods:
            labels = pod["metadata"]["labels"]
            assert labels["app"] == "web" and labels["extra"] == "yes" and labels["pod-template-hash"]
            assert set(labels) == {"app", "extra", "pod-template-hash"}  # nothing the controller invents
            (owner,) = pod["metadata"]["ownerReferences"]
            assert owner["uid"] == dep["metadata"]["uid"] and owner["controller"] is True
        # on_change reports from the controller's own loop: the last report may trail the status write.
        want = WorkloadPods("web", "m", 7, {"app": "web", "extra": "yes"}, 2)
        await _until(lambda: bool(reports) and reports[-1] == want)
        assert reports[-1] == want
    finally:
        await controller.stop()


async def test_pods_are_owned_and_selected_never_matched_by_name_or_foreign_labels(apiserver):
    ns = _namespace(apiserver)
    controller = DeploymentController(api_url=apiserver.url, namespace=ns, ready_delay=0.0, poll_interval=0.05)
    # an orphan pod carrying the same labels is not the Deployment's pod (no controller ownerReference)
    apiserver.put_object(*PODS, ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stray", "labels": {"app": "api"}},
                                     "spec": {"containers": [{"name": "c", "image": "x"}]}})  # fmt: skip
    apiserver.put_object(*DEPLOY, ns, _deployment("api", {"app": "api"}, replicas=1))
    await controller.start()
    try:
        await _until(lambda: (apiserver.get_object(*DEPLOY, ns, "api").get("status") or {}).get("readyReplicas") == 1)
        names = sorted(p["metadata"]["name"] for p in apiserver.list_objects(*PODS, ns))
        assert "stray" in names and len(names) == 2  # one new pod; the orphan is left alone, not counted
        apiserver.patch_object(*DEPLOY, ns, "api", {"spec": {"replicas": 0}})
        await _until(lambda: [p["metadata"]["name"] for p in apiserver.list_objects(*PODS, ns)] == ["stray"])
    finally:
        await controller.stop()


async def test_available_counts_pods_ready_for_min_ready_seconds_with_the_controllers_conditions(apiserver):
    """As kube's Deployment controller: readyReplicas counts a pod the moment it is Ready, availableReplicas
    only after spec.minReadySeconds of it; Available/Progressing follow (MinimumReplicasUnavailable ->
    MinimumReplicasAvailable, ReplicaSetUpdated -> NewReplicaSetAvailable); observedGeneration follows the spec."""
    ns = _namespace(apiserver)
    controller = DeploymentController(api_url=apiserver.url, namespace=ns, ready_delay=0.1, poll_interval=0.05)
    dep = _deployment("slow", {"app": "slow"})
    dep["spec"].update(minReadySeconds=2, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    apiserver.put_object(*DEPLOY, ns, dep)
    status = lambda: apiserver.get_object(*DEPLOY, ns, "slow").get("status") or {}
    conditions = lambda: {c["type"]: (c["status"], c["reason"]) for c in status().get("conditions") or []}
    await controller.start()
    try:
        await _until(lambda: status().get("readyReplicas") == 2)
        ready_at = asyncio.get_running_loop().time()
        st = status()
        assert st.get("availableReplicas", 0) == 0 and st["unavailableReplicas"] == 2 and st["updatedReplicas"] == 2
        assert st["observedGeneration"] == 1
        assert conditions() == {"Available": ("False", "MinimumReplicasUnavailable"), "Progressing": ("True", "ReplicaSetUpdated")}
        await _until(lambda: status().get("availableReplicas") == 2)
        assert asyncio.get_running_loop().time() - ready_at >= 1.5
        assert conditions() == {"Available": ("True", "MinimumReplicasAvailable"), "Progressing": ("True", "NewReplicaSetAvailable")}
        assert status().get("unavailableReplicas", 0) == 0
        for pod in apiserver.list_objects(*PODS, ns):  # the kubelet stamps the Ready transition
            (ready,) = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"]
            assert ready["status"] == "True" and ready["lastTransitionTime"]
        # a spec change: the counts and observedGeneration are of the new generation once the controller saw it
        apiserver.patch_object(*DEPLOY, ns, "slow", {"spec": {"template": {"metadata": {"labels": {"app": "slow", "extra": "no"}}}}})
        await _until(lambda: status().get("observedGeneration") == 2)
        await _until(lambda: status().get("availableReplicas") == 2, timeout=15)
        # idle: the controller does not rewrite an unchanged status (the conditions' times stay)
        before = status()
        await asyncio.sleep(0.5)
        assert status() == before
    finally:
        await controller.stop()


async def test_a_canary_whose_model_is_unloaded_after_ready_becomes_not_ready(apiserver):
    """Audit finding 11. The operator's own rendered canary Deployment, and beside it the same pods probing
    TF Serving's status path: once the version goes to END (unloaded/failed after loading), TF Serving still
    answers 200 on /versions/<v> (the status pods stay Ready: such a probe cannot notice) and 404 on
    /versions/<v>/metadata, so the operator's pods turn NotReady and the operator no longer counts the canary
    as ready/available."""
    import pathlib

    import yaml

    from modeldeploy.plans import Target, VersionPlan
    from modeldeploy.render import serving
    from modeldeploy.rollout import DeploymentState
    from modeldeploy.validation import validate_manifest

    doc = yaml.safe_load((pathlib.Path(__file__).resolve().parents[2] / "examples/resnet50.yaml").read_text())
    result = validate_manifest(doc)
    assert result.ok, result.problems
    target = Target(name=doc["metadata"]["name"], namespace=doc["metadata"]["namespace"], spec=result.spec, uid=None)
    ns = _namespace(apiserver)
    canary = serving.deployment(target, VersionPlan(3, "canary", 1))
    canary["metadata"] = {"name": canary["metadata"]["name"], "labels": canary["metadata"].get("labels", {})}
    status_path = f"/v1/models/{doc['spec']['model']['name']}/versions/3"
    old = _deployment("status-probed", {"app": "status-probed"}, replicas=1, probe_path=status_path)
    states = {"state": "AVAILABLE"}
    controller = DeploymentController(api_url=apiserver.url, namespace=ns, ready_delay=0.1, poll_interval=0.05,
                                      model_state_policy=lambda ns, name, version: states["state"])
    apiserver.put_object(*DEPLOY, ns, canary)
    apiserver.put_object(*DEPLOY, ns, old)
    state = lambda name: DeploymentState.from_object(3, apiserver.get_object(*DEPLOY, ns, name))
    await controller.start()
    try:
        await _until(lambda: state(canary["metadata"]["name"]).is_ready and state("status-probed").is_ready)
        states["state"] = "END"
        await _until(lambda: not state(canary["metadata"]["name"]).is_ready, timeout=5)
        gone = state(canary["metadata"]["name"])
        assert gone.ready == 0 and gone.available == 0 and not gone.primary_ready
        await asyncio.sleep(0.5)
        assert state("status-probed").ready == 1  # the status path answers 200 in END: still Ready
        states["state"] = "AVAILABLE"  # reloaded: Ready again
        await _until(lambda: state(canary["metadata"]["name"]).is_ready, timeout=5)
    finally:
        await controller.stop()


async def test_one_sync_writes_for_many_deployments_at_once_not_one_after_the_other(apiserver):
    """Issue 14 part 3 (1,000 ModelDeployments): a sync that wrote pod and Deployment statuses one after the
    other took 3-45 s at 1,000 Deployments, so the simulated kubelet kept pods NotReady for a minute (and the
    operator raised PodsStalled). With 60 ms of injected latency on every write in the namespace, 24 Deployments'
    pods and statuses (24 creates, 24 pod status and 24 Deployment status writes: >= 4.3 s one at a time) are
    written in far less than that, never more than `concurrency` writes in flight, all of them correct."""
    ns = _namespace(apiserver)
    in_flight, peak = [0], [0]

    async def sent(request):
        if request.method in ("POST", "PATCH"):
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])

    async def answered(response):
        if response.request.method in ("POST", "PATCH"):
            in_flight[0] -= 1

    import httpx

    client = httpx.AsyncClient(base_url=apiserver.url, timeout=30, event_hooks={"request": [sent], "response": [answered]})
    controller = DeploymentController(api_url=apiserver.url, namespace=ns, ready_delay=0.0, client=client, concurrency=6)
    for i in range(24):
        apiserver.put_object(*DEPLOY, ns, _deployment(f"d{i:02d}", {"app": f"d{i:02d}"}, replicas=1))
    apiserver.set_faults(latencyMs=60, verbs=["create", "patch"], namespaces=[ns])
    try:
        started = asyncio.get_running_loop().time()
        await controller.sync_once()  # the pods
        await controller.sync_once()  # their Ready status, then the Deployments' status
        took = asyncio.get_running_loop().time() - started
    finally:
        apiserver.clear_faults()
        await client.aclose()
    assert controller.writes == 72
    assert took < 2.5, f"{took:.2f}s: the writes went one after the other"
    assert 1 < peak[0] <= 6
    for dep in apiserver.list_objects(*DEPLOY, ns):
        status = dep.get("status") or {}
        assert status.get("readyReplicas") == 1 and status.get("observedGeneration") == 1, dep["metadata"]["name"]
    assert all(c["status"] == "True" for p in apiserver.list_objects(*PODS, ns) for c in p["status"]["conditions"])


@pytest.mark.parametrize("path, state, passes", [
    ("/v1/models/m/versions/3", "AVAILABLE", True),
    ("/v1/models/m/versions/3", "LOADING", True),  # GetModelStatus: 200 for every known state
    ("/v1/models/m/versions/3", "END", True),
    ("/v1/models/m/versions/3/metadata", "AVAILABLE", True),
    ("/v1/models/m/versions/3/metadata", "UNLOADING", False),  # GetModelMetadata: no servable handle -> 404
    ("/v1/models/m/versions/3/metadata", "END", False),
    ("/v1/models/m", "END", True),  # not about the version
])  # fmt: skip
def test_readiness_follows_what_tf_serving_answers_on_the_probe_path(path, state, passes):
    template = {"spec": {"containers": [{"name": "tfs", "readinessProbe": {"httpGet": {"path": path}}}]}}
    assert readiness_probe_succeeds(template, state) is passes


def test_max_unavailable_resolves_like_deploymentutil():
    from mdsandbox.controllers import max_unavailable

    def dep(replicas, rolling=None, kind="RollingUpdate"):
        return {"spec": {"replicas": replicas, "strategy": {"type": kind, **({"rollingUpdate": rolling} if rolling else {})}}}

    assert max_unavailable(dep(4)) == 1  # default 25%, rounded down
    assert max_unavailable(dep(3)) == 0  # 25% of 3 rounds down to 0 (maxSurge 25% rounds up to 1)
    assert max_unavailable(dep(2, {"maxSurge": 1, "maxUnavailable": 0})) == 0
    assert max_unavailable(dep(2, {"maxSurge": 0, "maxUnavailable": 0})) == 1  # both 0: one may be unavailable
    assert max_unavailable(dep(2, {"maxUnavailable": "50%"})) == 1
    assert max_unavailable(dep(2, {"maxUnavailable": 5})) == 2  # at most the replicas
    assert max_unavailable(dep(2, kind="Recreate")) == 0
    assert max_unavailable(dep(0)) == 0


@pytest.mark.parametrize(
    "selector, expected",
    [
        ({"matchLabels": {"b": "2", "a": "1"}}, "a=1,b=2"),
        ({"matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]},
                               {"key": "u", "operator": "NotIn", "values": ["z"]},
                               {"key": "e", "operator": "Exists"}, {"key": "n", "operator": "DoesNotExist"}]},
         "t in (x,y),u notin (z),e,!n"),
        ({}, ""),
    ],
)  # fmt: skip
def test_selector_string(selector, expected):
    assert selector_string(selector) == expected


@pytest.mark.parametrize(
    "probes, expected",
    [
        ({"readinessProbe": {"httpGet": {"path": "/v1/models/resnet/versions/3"}}}, ("resnet", 3)),
        ({"startupProbe": {"httpGet": {"path": "/v1/models/resnet/versions/12"}}}, ("resnet", 12)),
        ({"readinessProbe": {"httpGet": {"path": "/v1/models/resnet/versions/4/metadata"}}}, ("resnet", 4)),
        ({"readinessProbe": {"httpGet": {"path": "/v1/models/resnet"}}}, (None, None)),  # not a version
        ({"readinessProbe": {"tcpSocket": {"port": 8500}}}, (None, None)),
        ({}, (None, None)),
    ],
)
def test_served_model_version_comes_from_the_probe(probes, expected):
    template = {"spec": {"containers": [{"name": "tfs", **probes}]}}
    assert served_model_version(template) == expected


def test_fleet_routes_by_the_pods_real_labels():
    """A DestinationRule subset that does not select the pods the operator rendered gets no traffic."""
    vs = {"spec": {"hosts": ["m"], "http": [{"name": "primary", "route": [
        {"destination": {"host": "m", "subset": "v1"}, "weight": 50},
        {"destination": {"host": "m", "subset": "v2"}, "weight": 50}]}]}}  # fmt: skip
    dr = {"spec": {"host": "m", "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                            {"name": "v2", "labels": {"version": "v2"}}]}}  # fmt: skip
    fleet = SimulatedFleet("ns", "m", "m", versions={"1": {}, "2": {}}, seed=3, clock=lambda: 0.0)
    fleet.set_workload_ready("1", "m-v1", {"app": "m", "version": "v1"}, 2)
    fleet.set_workload_ready("2", "m-v2", {"app": "m", "version": "2"}, 2)  # a labelling bug: no "v"
    fleet.set_routing(vs, dr)
    fleet.generate(1000)
    stats = fleet.stats()
    assert stats["versions"]["1"]["requests"] == pytest.approx(500, abs=60)
    assert stats["versions"]["2"]["requests"] == 0  # never reached: the subset selects no pod
    assert stats["unavailable"] == 1000 - stats["versions"]["1"]["requests"]  # 503 UH at the client sidecar
    # with the labels fixed, both versions serve
    fleet.set_workload_ready("2", "m-v2", {"app": "m", "version": "v2"}, 2)
    fleet.generate(1000)
    assert fleet.stats()["versions"]["2"]["requests"] > 400
    # a version's pods across two Deployments (GPU + CPU fallback) add up; 0 ready means none
    fleet.set_workload_ready("2", "m-v2-cpu", {"app": "m", "version": "v2", "variant": "cpu"}, 1)
    assert fleet.ready_replicas("2") == 3
    assert dict(fleet.endpoints({"version": "v2", "variant": "cpu"})) == {"2": 1}
    fleet.set_workload_ready("2", "m-v2", {"app": "m", "version": "v2"}, 0)
    fleet.set_workload_ready("2", "m-v2-cpu", {"app": "m", "version": "v2", "variant": "cpu"}, 0)
    assert fleet.ready_replicas("2") == 0 and np.isclose(fleet.rps, 0.0)
