"""Who reaches which version: mesh clients, ingress-gateway clients and clients without a sidecar.

The sandbox's data plane (mdsandbox.mesh_routing + the simulated fleet) against Istio's rules:
- a VirtualService routes sidecars only when it binds ``mesh`` (the default) and a gateway only when
  it binds that gateway and serves the requested host; everything else balances over the endpoints
  of the Service the client calls (a gateway's own route, kube-proxy);
- a destination's endpoints are its Service's selector narrowed by the subset;
- a client without a sidecar is counted only by the server sidecar (unknown source, no mTLS), and
  the server sidecar names the OLDEST Service selecting its pod in destination_service_name.
Then the operator's own rendered objects, fed to that data plane: clients outside the mesh must never
get an answer from a version that is not the stable one.
"""

from __future__ import annotations

import pathlib

import pytest
import yaml

from mdsandbox.fleet import SimulatedFleet
from mdsandbox.mesh_routing import RoutingTable, ServiceInfo
from mdsandbox.scenario import ScenarioError, parse_scenario
from modeldeploy.plans import Target
from modeldeploy.render import desired_objects
from modeldeploy.rollout import plans
from modeldeploy.validation import validate_manifest

ROOT = pathlib.Path(__file__).resolve().parents[2]
NS, NAME, MODEL = "radiology", "resnet50-cxr", "resnet50_chest_xray"
HOST = f"{NAME}.{NS}.svc.cluster.local"
GATEWAY = {"share": 0.25, "name": "istio-ingress/public", "host": "xray.example.org"}


def service(name: str, selector: dict, created: str = "2025-01-01T00:00:00Z") -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS, "creationTimestamp": created},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 8501}]}}  # fmt: skip


def vs(http: list[dict], gateways: list[str] | None = None, hosts: list[str] | None = None) -> dict:
    spec: dict = {"hosts": hosts or [HOST], "http": http}
    if gateways is not None:
        spec["gateways"] = gateways
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": NAME, "namespace": NS}, "spec": spec}  # fmt: skip


DR = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": NAME, "namespace": NS},
      "spec": {"host": HOST, "subsets": [{"name": f"v{v}", "labels": {"version": f"v{v}"}} for v in (1, 2)]}}  # fmt: skip
HALF = [{"name": "primary", "route": [{"destination": {"host": HOST, "subset": "v1"}, "weight": 50},
                                      {"destination": {"host": HOST, "subset": "v2"}, "weight": 50}]}]  # fmt: skip


def fleet_with(*versions: int, traffic: dict | None = None, seed: int = 3) -> SimulatedFleet:
    fleet = SimulatedFleet(NS, NAME, MODEL, versions={str(v): {} for v in versions}, seed=seed, clock=lambda: 0.0,
                           traffic={"rps": 0, **(traffic or {})})  # fmt: skip
    for v in versions:
        fleet.set_workload_ready(v, f"{NAME}-v{v}", {"app": NAME, "version": f"v{v}"}, 2)
    return fleet


def versions_served(fleet: SimulatedFleet, client: str) -> set[str]:
    return set(fleet.stats()["clients"][client]["served"])


# ------------------------------------------------------------------------------------ binding rules
@pytest.mark.parametrize(
    "gateways, hosts, gateway, host, applies",
    [
        (None, None, None, None, True),  # no gateways: the sidecars (mesh) only
        (None, None, "istio-ingress/public", "xray.example.org", False),
        (["mesh", "istio-ingress/public"], [HOST, "xray.example.org"], None, None, True),
        (
            ["mesh", "istio-ingress/public"],
            [HOST, "xray.example.org"],
            "istio-ingress/public",
            "xray.example.org",
            True,
        ),
        (["mesh", "istio-ingress/public"], [HOST, "xray.example.org"], "istio-ingress/public", "other.example", False),
        (["mesh", "istio-ingress/public"], [HOST, "*.example.org"], "istio-ingress/public", "xray.example.org", True),
        (["mesh", "istio-ingress/public"], [HOST], "istio-ingress/other", "xray.example.org", False),
        (["istio-ingress/public"], [HOST, "xray.example.org"], None, None, False),  # mesh not listed
        (["public"], ["xray.example.org"], f"{NS}/public", "xray.example.org", True),  # bare name = own namespace
    ],
)
def test_a_virtual_service_applies_to_what_it_binds(gateways, hosts, gateway, host, applies):
    assert RoutingTable(vs(HALF, gateways, hosts), DR).applies(gateway, host) is applies


def test_a_match_with_gateways_applies_only_to_requests_through_them():
    routes = [{"name": "preview", "match": [{"headers": {"x-v": {"exact": "v2"}}, "gateways": ["mesh"]}],
               "route": [{"destination": {"host": HOST, "subset": "v2"}}]},
              {"name": "primary", "route": [{"destination": {"host": HOST, "subset": "v1"}}]}]  # fmt: skip
    table = RoutingTable(vs(routes, ["mesh", "istio-ingress/public"], [HOST, "xray.example.org"]), DR)
    assert table.match({"x-v": "v2"}).name == "preview"
    assert table.match({"x-v": "v2"}, gateway="istio-ingress/public").name == "primary"


def test_destinations_resolve_through_the_service_selector_and_the_subset():
    services = [ServiceInfo(NAME, NS, {"app": NAME}), ServiceInfo(f"{NAME}-v2", NS, {"app": NAME, "version": "v2"})]
    table = RoutingTable(vs(HALF), DR, services=services)
    from mdsandbox.mesh_routing import Destination

    assert table.subset_labels(Destination(HOST, "v2")) == {"app": NAME, "version": "v2"}
    assert table.subset_labels(Destination(f"{NAME}-v2.{NS}.svc.cluster.local")) == {"app": NAME, "version": "v2"}
    assert table.subset_labels(Destination(f"nope.{NS}.svc.cluster.local")) is None  # no such Service: 503 NC
    stable_only = RoutingTable(vs(HALF), DR, services=[ServiceInfo(NAME, NS, {"app": NAME, "version": "v1"})])
    labels = stable_only.subset_labels(Destination(HOST, "v2"))  # the Service never selects v2 pods
    assert labels is not None and labels["version"] not in ("v1", "v2")


# ------------------------------------------------------------------------------------ the data plane
def test_each_client_class_reaches_what_a_cluster_would_give_it():
    fleet = fleet_with(1, 2, traffic={"gateway": GATEWAY, "nonMesh": {"share": 0.25}})
    fleet.set_services([service(NAME, {"app": NAME, "version": "v1"})])  # the Service selects v1 only
    fleet.set_routing(vs(HALF), DR)  # split 50/50 for the sidecars; the gateway is not bound
    fleet.generate(4000)
    assert versions_served(fleet, "nonMesh") == {"1"}  # kube-proxy: the Service's endpoints
    assert versions_served(fleet, "gateway") == {"1"}  # the gateway's own route to the Service
    # the sidecars' v2 subset lies outside the Service's endpoints: 503 UH, never a v2 answer
    assert versions_served(fleet, "mesh") == {"1"} and fleet.totals["unavailable"] > 0
    fleet.set_services([service(NAME, {"app": NAME})])
    fleet.set_routing(vs(HALF, ["mesh", "istio-ingress/public"], [HOST, "xray.example.org"]), DR)
    fleet.generate(4000)
    assert versions_served(fleet, "gateway") == {"1", "2"}  # bound: the gateway routes by the split
    assert versions_served(fleet, "mesh") == {"1", "2"}


def test_unvetted_answers_are_counted_per_client_class():
    fleet = fleet_with(1, 2, traffic={"nonMesh": {"share": 0.5}})
    fleet.set_services([service(NAME, {"app": NAME})])  # selects both versions
    fleet.set_stable(1)
    fleet.generate(2000)
    clients = fleet.stats()["clients"]
    assert set(clients) == {"mesh", "nonMesh"}  # no gateway share: not reported
    assert set(clients["nonMesh"]["unvetted"]) == {"2"} and 0 < clients["nonMesh"]["unvetted"]["2"] < 1000
    before = fleet.stats()["clients"]["nonMesh"]["unvetted"]
    fleet.set_stable(2)  # promoted: neither the new stable nor the old one is unvetted any more
    fleet.generate(2000)
    assert fleet.stats()["clients"]["nonMesh"]["unvetted"] == before


def test_telemetry_of_clients_without_a_sidecar_and_of_services_sharing_pods():
    fleet = fleet_with(1, traffic={"nonMesh": {"share": 1.0}})
    fleet.set_services([service(f"{NAME}-v1", {"app": NAME, "version": "v1"}, "2025-01-02T00:00:00Z"),
                        service(NAME, {"app": NAME, "version": "v1"}, "2025-01-01T00:00:00Z")])  # fmt: skip
    fleet.generate(100)
    text = fleet.render_istio_metrics()
    lines = [ln for ln in text.splitlines() if ln.startswith("istio_requests_total{")]
    assert lines and all('reporter="destination"' in ln for ln in lines)  # no client sidecar, no source report
    assert all('source_workload="unknown"' in ln and 'connection_security_policy="none"' in ln for ln in lines)
    assert all(f'destination_service_name="{NAME}"' in ln for ln in lines)  # the older of the two Services
    assert all(f'destination_app="{NAME}"' in ln and 'destination_version="v1"' in ln for ln in lines)
    fleet.set_services([service(f"{NAME}-v1", {"app": NAME, "version": "v1"}, "2025-01-01T00:00:00Z"),
                        service(NAME, {"app": NAME, "version": "v1"}, "2025-01-02T00:00:00Z")])  # fmt: skip
    assert fleet.inbound_service("1") == f"{NAME}-v1"


def test_gateway_requests_come_from_the_gateway_workload():
    fleet = fleet_with(1, traffic={"gateway": {**GATEWAY, "share": 1.0}})
    fleet.set_services([service(NAME, {"app": NAME})])
    fleet.generate(50)
    sources = [ln for ln in fleet.render_istio_metrics().splitlines()
               if ln.startswith("istio_requests_total{") and 'reporter="source"' in ln]  # fmt: skip
    assert sources and all('source_workload="istio-ingressgateway"' in ln for ln in sources)
    assert all('source_workload_namespace="istio-ingress"' in ln for ln in sources)


# ------------------------------------------------------------------------------------ scenario format
def _scenario(**traffic) -> dict:
    md = yaml.safe_load((ROOT / "examples/resnet50.yaml").read_text())
    return {"name": "t", "modelDeployment": md, "versions": {str(md["spec"]["model"]["version"]): {}},
            "traffic": {"rps": 10, **traffic}, "until": 10}  # fmt: skip


def test_scenario_traffic_gains_gateway_and_non_mesh_clients():
    sc = parse_scenario(_scenario(gateway=GATEWAY, nonMesh={"share": 0.2}))
    assert sc.traffic.gateway.host == "xray.example.org" and sc.traffic.nonMesh.share == 0.2
    with pytest.raises(ScenarioError, match="traffic: gateway.share \\+ nonMesh.share is 1.2"):
        parse_scenario(_scenario(gateway={**GATEWAY, "share": 0.7}, nonMesh={"share": 0.5}))
    with pytest.raises(ScenarioError, match="traffic.gateway.host"):
        parse_scenario(_scenario(gateway={"share": 0.2, "name": "istio-ingress/public"}))


# ------------------------------------------------------------------------------------ the operator's objects
def _target(strategy: dict, traffic: dict | None = None) -> Target:
    doc = yaml.safe_load((ROOT / "examples/resnet50.yaml").read_text())
    if strategy:
        doc["spec"]["strategy"] = strategy
    if traffic:
        doc["spec"]["traffic"] = traffic
    result = validate_manifest(doc)
    assert result.ok, result.problems
    return Target(name=doc["metadata"]["name"], namespace=doc["metadata"]["namespace"], spec=result.spec)


ROLLOUTS = [  # (id, strategy, status, canary weight)
    ("canary-10", {}, {"canaryWeight": 10}, 0.10),
    ("blue-green", {"type": "BlueGreen"}, {"strategy": "BlueGreen"}, 0.0),
    ("shadow", {"type": "Shadow", "shadow": {"mirrorPercent": 50}}, {"strategy": "Shadow"}, 0.0),
]
PREVIEW_SHARE = 0.2  # of every client class' requests carry the preview header naming the new version


@pytest.mark.parametrize("bound", [False, True], ids=["mesh-only", "gateway-bound"])
@pytest.mark.parametrize("strategy, extra, weight", [r[1:] for r in ROLLOUTS], ids=[r[0] for r in ROLLOUTS])
def test_rendered_routing_gives_clients_outside_the_mesh_only_the_stable_version(strategy, extra, weight, bound):
    """The operator's objects in the sandbox's data plane. Non-mesh clients: the stable version only.
    Gateway clients: the stable version only, or (bound) the split, never the preview by header.
    Mesh clients: the split, plus what they ask for by preview header."""
    traffic_spec = {"gateways": [GATEWAY["name"]], "hosts": [GATEWAY["host"]]} if bound else None
    target = _target(strategy, traffic_spec)
    status = {"stableVersion": 2, "canaryVersion": 3, "rollout": {"readyAt": "x"}, **extra}
    versions, route = plans(target.spec, status)
    objects = desired_objects(target, list(versions), route)
    fleet = fleet_with(2, 3, traffic={"gateway": GATEWAY, "nonMesh": {"share": 0.25},
                                      "headers": {"share": PREVIEW_SHARE, "set": {"x-modeldeploy-version": "v3"}}})  # fmt: skip
    for obj in objects:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"].startswith(f"{NAME}-v"):
            labels = obj["spec"]["template"]["metadata"]["labels"]
            fleet.set_workload_ready(int(labels["version"][1:]), obj["metadata"]["name"], labels, 2)
    fleet.set_services([{**o, "metadata": {**o["metadata"], "creationTimestamp": "2025-01-01T00:00:00Z"}}
                        for o in objects if o["kind"] == "Service"])  # fmt: skip
    by_kind = {o["kind"]: o for o in objects}
    assert "DestinationRule" not in by_kind
    fleet.set_routing(by_kind["VirtualService"], None)
    fleet.set_stable(2)
    fleet.generate(12000)
    clients = fleet.stats()["clients"]

    def unvetted_share(client: str) -> float:
        answers = clients[client]
        assert sum(answers["served"].values()) > 1500, clients
        return answers["unvetted"].get("3", 0) / sum(answers["served"].values())

    assert clients["nonMesh"]["unvetted"] == {}, clients
    assert unvetted_share("gateway") == pytest.approx(weight if bound else 0.0, abs=0.03), clients
    assert unvetted_share("mesh") == pytest.approx(PREVIEW_SHARE + (1 - PREVIEW_SHARE) * weight, abs=0.03), clients
