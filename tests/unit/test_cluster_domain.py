"""The cluster's DNS domain (kubelet's --cluster-domain) is a setting, not a constant (issue 11.9).

Every host the operator renders is ``<svc>.<ns>.svc.<domain>``: the VirtualService's hosts,
destinations and mirror, and the evaluator's URLs. The domain comes from MODELDEPLOY_CLUSTER_DOMAIN
(Helm value clusterDomain) through `Settings` into `plans.Target.cluster_domain`: the renderers
never read the environment. The sandbox's mesh resolves hosts of ITS domain only, so objects
rendered for cluster.local on a corp.example cluster route nothing to the canary there, as on a
real cluster (the VirtualService applies to no request, its destinations are no Service).
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from mdsandbox.fleet import SimulatedFleet
from mdsandbox.mesh_routing import Destination, RoutingTable, ServiceInfo, canonical_host
from modeldeploy import names
from modeldeploy.plans import Target
from modeldeploy.render import desired_objects
from modeldeploy.rollout import plans
from modeldeploy.settings import Settings
from modeldeploy.validation import validate_manifest

ROOT = pathlib.Path(__file__).resolve().parents[2]
NS, NAME = "radiology", "resnet50-cxr"
DOMAINS = ["cluster.local", "corp.example", "k8s.prod.example.org", "c1"]


# ------------------------------------------------------------------------------ names and settings
@pytest.mark.parametrize(
    "raw, expected",
    [
        ("cluster.local", "cluster.local"),
        ("corp.example", "corp.example"),
        ("Corp.Example.", "corp.example"),  # DNS is case-insensitive; a trailing dot is the root
        ("c1", "c1"),
        ("a-b.c-d", "a-b.c-d"),
    ],
)
def test_cluster_domain_is_normalised(raw, expected):
    assert names.check_cluster_domain(raw) == expected


@pytest.mark.parametrize(
    "raw, problem",
    [
        ("", "empty"),
        (".cluster.local", "'' is not a DNS label"),
        ("cluster..local", "'' is not a DNS label"),
        ("-cluster.local", "'-cluster' is not a DNS label"),
        ("cluster_local", "'cluster_local' is not a DNS label"),
        ("svc.cluster.local/x", "is not a DNS label"),
        ("a" * 64 + ".local", "is not a DNS label"),
        (".".join(["abcdefghi"] * 26), "longer than a DNS name allows"),
    ],
)
def test_bad_cluster_domains_are_refused(raw, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        names.check_cluster_domain(raw)


@pytest.mark.parametrize("domain", DOMAINS)
def test_hosts_are_under_the_cluster_domain(domain):
    assert names.service_host("md", "ns", domain) == f"md.ns.svc.{domain}"
    assert names.version_service_host("md", "ns", 7, domain) == f"md-v7.ns.svc.{domain}"
    assert names.version_of_host("md", names.version_service_host("md", "ns", 7, domain)) == 7


@pytest.mark.parametrize(
    "env, expected",
    [(None, "cluster.local"), ("", "cluster.local"), ("corp.example", "corp.example"), ("K8S.Example.", "k8s.example")],
)
def test_settings_read_the_cluster_domain(env, expected, monkeypatch):
    monkeypatch.delenv("MODELDEPLOY_CLUSTER_DOMAIN", raising=False)
    if env is not None:
        monkeypatch.setenv("MODELDEPLOY_CLUSTER_DOMAIN", env)
    assert Settings.from_env().cluster_domain == expected


def test_a_bad_cluster_domain_stops_the_operator_with_the_variable_named(monkeypatch):
    monkeypatch.setenv("MODELDEPLOY_CLUSTER_DOMAIN", "cluster_local")
    with pytest.raises(ValueError, match="MODELDEPLOY_CLUSTER_DOMAIN: cluster domain 'cluster_local'"):
        Settings.from_env()
    with pytest.raises(ValueError, match="not a DNS label"):
        Settings(cluster_domain="x..y")


# ------------------------------------------------------------------------------ render, across domains
def _target(strategy: dict | None = None, domain: str | None = None, **spec: dict) -> Target:
    doc = yaml.safe_load((ROOT / "examples/resnet50.yaml").read_text())
    if strategy:
        doc["spec"]["strategy"] = strategy
    doc["spec"].update(spec)
    result = validate_manifest(doc)
    assert result.ok, result.problems
    extra = {} if domain is None else {"cluster_domain": domain}
    return Target(name=doc["metadata"]["name"], namespace=doc["metadata"]["namespace"], spec=result.spec, **extra)


STATES = [  # (id, strategy, status)
    ("canary-25", None, {"canaryWeight": 25}),
    ("shadow", {"type": "Shadow", "shadow": {"mirrorPercent": 50}}, {"strategy": "Shadow"}),
    ("blue-green", {"type": "BlueGreen"}, {"strategy": "BlueGreen"}),
]


def _cluster_hosts(obj: object) -> list[str]:
    """Every ``*.svc.*`` host named anywhere in a rendered object (keys' values, URLs, YAML text)."""
    text = yaml.safe_dump(obj)
    return re.findall(r"[a-z0-9-]+\.[a-z0-9-]+\.svc\.[a-z0-9.-]*[a-z0-9]", text)


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("state, strategy, status", STATES, ids=[s[0] for s in STATES])
def test_every_rendered_host_is_under_the_configured_domain(state, strategy, status, domain):
    target = _target(strategy, domain)
    versions, route = plans(target.spec, {"stableVersion": 2, "canaryVersion": 3, "rollout": {"readyAt": "x"}, **status})
    objects = desired_objects(target, list(versions), route)
    vs = next(o for o in objects if o["kind"] == "VirtualService")
    assert vs["spec"]["hosts"][0] == f"{NAME}.{NS}.svc.{domain}"
    destinations = [d["destination"]["host"] for h in vs["spec"]["http"] for d in h["route"]]
    destinations += [h["mirror"]["host"] for h in vs["spec"]["http"] if "mirror" in h]
    assert set(destinations) == {f"{NAME}-v2.{NS}.svc.{domain}", f"{NAME}-v3.{NS}.svc.{domain}"}
    hosts = _cluster_hosts(objects)
    assert hosts and all(h.endswith(f".svc.{domain}") for h in hosts), hosts
    if domain != "cluster.local":
        assert "cluster.local" not in yaml.safe_dump_all(objects)


def test_the_default_domain_is_cluster_local():
    assert Target(name="m", namespace="n", spec=None).cluster_domain == "cluster.local" == names.DEFAULT_CLUSTER_DOMAIN


def test_render_cli_takes_the_cluster_domain(tmp_path):
    cmd = [sys.executable, "-m", "modeldeploy.cli", "render", str(ROOT / "examples/resnet50.yaml")]
    out = subprocess.run([*cmd, "--cluster-domain", "corp.example"], capture_output=True, text=True, check=True).stdout
    assert f"{NAME}.{NS}.svc.corp.example" in out and "cluster.local" not in out
    bad = subprocess.run([*cmd, "--cluster-domain", "corp_example"], capture_output=True, text=True)
    assert bad.returncode == 2 and "not a DNS label" in bad.stderr


# ------------------------------------------------------------------------------ the sandbox's mesh
@pytest.mark.parametrize("domain", DOMAINS)
def test_the_mesh_expands_short_hosts_with_its_own_domain(domain):
    assert canonical_host("md", "ns", domain) == f"md.ns.svc.{domain}"
    assert canonical_host("md.ns", None, domain) == f"md.ns.svc.{domain}"
    assert canonical_host("md.ns.svc", None, domain) == f"md.ns.svc.{domain}"
    table = RoutingTable({"hosts": ["md"], "http": [{"route": [{"destination": {"host": "md-v1"}}]}]},
                         namespace="ns", services=[ServiceInfo("md-v1", "ns", {"v": "1"}, domain=domain)],
                         cluster_domain=domain)  # fmt: skip
    assert table.applies(host=f"md.ns.svc.{domain}")
    assert table.subset_labels(Destination(f"md-v1.ns.svc.{domain}")) == {"v": "1"}
    other = "cluster.local" if domain != "cluster.local" else "corp.example"
    assert not table.applies(host=f"md.ns.svc.{other}")  # that name is no Service of this cluster
    assert table.subset_labels(Destination(f"md-v1.ns.svc.{other}")) is None  # 503 NC


def _fleet_serving(objects: list[dict], domain: str) -> SimulatedFleet:
    fleet = SimulatedFleet(NS, NAME, "resnet50_chest_xray", versions={"2": {}, "3": {}}, seed=5, clock=lambda: 0.0,
                           traffic={"rps": 0}, cluster_domain=domain)  # fmt: skip
    for obj in objects:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"].startswith(f"{NAME}-v"):
            labels = obj["spec"]["template"]["metadata"]["labels"]
            fleet.set_workload_ready(int(labels["version"][1:]), obj["metadata"]["name"], labels, 2)
    fleet.set_services([{**o, "metadata": {**o["metadata"], "creationTimestamp": "2025-01-01T00:00:00Z"}}
                        for o in objects if o["kind"] == "Service"])  # fmt: skip
    fleet.set_routing(next(o for o in objects if o["kind"] == "VirtualService"), None)
    return fleet


@pytest.mark.parametrize("domain", ["corp.example", "cluster.local"])
def test_a_canary_on_a_cluster_with_its_own_domain_gets_its_share(domain):
    """The operator's objects in the sandbox's data plane of a `domain` cluster: with the operator
    configured for that domain the canary gets its 25 %; rendered for cluster.local (the operator
    before the setting existed) a corp.example mesh routes nothing by the VirtualService."""
    status = {"stableVersion": 2, "canaryVersion": 3, "canaryWeight": 25, "rollout": {"readyAt": "x"}}
    configured = _target(domain=domain)
    versions, route = plans(configured.spec, status)
    fleet = _fleet_serving(desired_objects(configured, list(versions), route), domain)
    fleet.generate(8000)
    served = fleet.stats()["clients"]["mesh"]["served"]
    assert served.get("3", 0) / sum(served.values()) == pytest.approx(0.25, abs=0.03), served
    assert fleet.totals["no_cluster"] == 0 and fleet.totals["other_hosts"] == 0

    if domain != "cluster.local":  # what a cluster.local-only operator renders for this cluster
        stale = _target()
        fleet = _fleet_serving(desired_objects(stale, list(versions), route), domain)
        fleet.generate(8000)
        served = fleet.stats()["clients"]["mesh"]["served"]
        assert served.get("3", 0) == 0 and served.get("2", 0) > 7000, served


def test_a_bad_setting_fails_the_startup_permanently(monkeypatch):
    """kopf retries a startup handler's ordinary exception forever (errors=TEMPORARY); PermanentError
    fails the startup activity, and the operator exits with the message."""
    import asyncio
    import logging

    import kopf

    from modeldeploy import main

    monkeypatch.setenv("MODELDEPLOY_CLUSTER_DOMAIN", "corp_example")
    with pytest.raises(kopf.PermanentError, match="MODELDEPLOY_CLUSTER_DOMAIN: cluster domain 'corp_example'"):
        asyncio.run(main.startup(settings=kopf.OperatorSettings(), memo=kopf.Memo(), logger=logging.getLogger("t")))
