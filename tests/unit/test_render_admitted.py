"""What the operator renders is accepted by a real API server, for every ModelDeployment the CRD admits.

Each rendered object goes through the API emulator's write path in-process (kubeemu: Kubernetes
1.36's schema and Go validation for built-ins, Istio's CRD schemas for the routing objects), so a
422 a real cluster would answer fails here: label values and names over 63 characters (issue 11
point 8: tested at the longest name and version the CRD's CEL rules admit), requests above limits
(point 5), and what the server rewrites when it stores an object (quantities in canonical form,
empty optional fields dropped: point 9) must already be what the operator renders, or every
resync would patch again.
"""

from __future__ import annotations

import copy
import pathlib

import pytest
import yaml

from kubeemu.apiserver import ApiServer
from kubeemu.store import ApiError
from modeldeploy.kube import is_subset
from modeldeploy.plans import RoutePlan, Target, VersionPlan
from modeldeploy.render import desired_objects
from modeldeploy.validation import validate_manifest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "resnet50.yaml").read_text())
PLURALS = {"Deployment": "deployments", "ConfigMap": "configmaps", "Service": "services",
           "VirtualService": "virtualservices", "DestinationRule": "destinationrules"}


@pytest.fixture(scope="module")
def server() -> ApiServer:
    api = ApiServer()
    for path in [ROOT / "crds" / "modeldeployment.yaml", *sorted((ROOT / "tests" / "data" / "thirdparty-crds").glob("istio-*.yaml"))]:
        api.register_crd_file(path)
    return api


def target(name: str = "resnet50-cxr", version: int = 2, **edits) -> Target:
    doc = copy.deepcopy(EXAMPLE)
    doc["metadata"]["name"] = name
    doc["spec"]["model"]["version"] = version
    for dotted, value in edits.items():
        node = doc["spec"]
        keys = dotted.split("__")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    result = validate_manifest(doc)
    assert result.ok, [str(p) for p in result.problems]
    return Target(name=name, namespace="radiology", spec=result.spec, uid="0f6a7b9e-1111-4c4c-9d9d-123456789abc")


def store(server: ApiServer, obj: dict) -> dict:
    """Create the object through the emulator's full write path (strict field validation, like kubectl)."""
    group, _, version = obj["apiVersion"].rpartition("/")
    try:
        stored = server.put_object(group, version, PLURALS[obj["kind"]], obj["metadata"]["namespace"], obj)
    except ApiError as e:
        raise AssertionError(f"{obj['kind']} {obj['metadata']['name']}: HTTP {e.code}: {e.message}") from None
    server.delete_object(group, version, PLURALS[obj["kind"]], obj["metadata"]["namespace"], obj["metadata"]["name"])
    return stored


def rendered(t: Target, stable: int, canary: int | None = None) -> list[dict]:
    versions = [VersionPlan(stable, "stable", t.spec.serving.replicas)]
    if canary is not None:
        versions.append(VersionPlan(canary, "canary", 1, cpu_fallback=True))
    return desired_objects(t, versions, RoutePlan(stable=stable, canary=canary, canary_weight=10 if canary else 0))


# The longest names the CRD admits: metadata.name + "-v" + str(version) <= 63 (CEL), name <= 60.
LONGEST = [("n" * 60, 1), ("a" + "b" * 53, 1234567), ("x" * 59, 12)]


@pytest.mark.parametrize("name,version", LONGEST, ids=["name-60", "version-7-digits", "name-59-v12"])
def test_every_rendered_object_is_admitted_at_the_longest_names(server, name, version):
    t = target(name, version, serving__gpu={"count": 1, "fallbackToCPU": True})
    assert validate_manifest({**EXAMPLE, "metadata": {"name": name, "namespace": "radiology"},
                              "spec": {**EXAMPLE["spec"], "model": {**EXAMPLE["spec"]["model"], "version": version}}}).ok
    for obj in rendered(t, version, version + 1 if len(f"{name}-v{version + 1}") <= 63 else None):
        store(server, obj)


def test_the_crd_refuses_one_character_more(server):
    doc = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": "n" * 61, "namespace": "radiology"}
    with pytest.raises(ApiError) as info:
        server.put_object("modeldeploy.io", "v1alpha1", "modeldeployments", "radiology", doc)
    assert info.value.code == 422


@pytest.mark.parametrize("requests,limits", [
    ({"memory": "16Gi"}, {}),                       # above the default 8Gi limit
    ({"memory": "16Gi", "cpu": "8"}, {"cpu": "4"}),  # a user limit below a user request is refused by validate
])
def test_requests_above_the_default_limits_raise_them(server, requests, limits):
    try:
        t = target(serving__resources={"requests": requests, "limits": limits},
                   serving__gpu={"count": 1, "fallbackToCPU": True})
    except AssertionError as e:  # validate names the field and the limit
        assert limits, e
        assert "spec.serving.resources" in str(e) and "limit" in str(e)
        return
    for obj in rendered(t, 2, 3):
        stored = store(server, obj)
        if obj["kind"] == "Deployment" and obj["metadata"]["name"].startswith("resnet50-cxr-v"):
            resources = stored["spec"]["template"]["spec"]["containers"][0]["resources"]
            assert resources["requests"]["memory"] == "16Gi" and resources["limits"]["memory"] == "16Gi"


@pytest.mark.parametrize("edits", [
    {"serving__resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"memory": "1.5Gi"}}},
    {"serving__tolerations": [{"key": "dedicated", "operator": "Exists", "effect": ""}]},
    {"serving__resources": {"requests": {"cpu": 2, "memory": "2000Mi"}}},
], ids=["decimal-and-binary-quantities", "empty-toleration-effect", "integer-cpu"])
def test_what_the_server_stores_is_what_was_rendered(server, edits):
    """Quantities the server rewrites ("0.5" -> "500m") or empty fields it drops would make every resync
    see a difference and patch again: the rendered object must already be the stored form."""
    t = target(**edits, serving__gpu={"count": 1, "fallbackToCPU": True})
    for obj in rendered(t, 2, 3):
        stored = store(server, obj)
        assert is_subset({k: v for k, v in obj.items() if k != "status"}, stored), obj["metadata"]["name"]


def test_the_operator_writes_quantities_as_the_server_stores_them():
    from kubeemu import quantity as server_side
    from modeldeploy import quantity

    for text in ["0.5", "1024Mi", "1.5Gi", "0.5Ki", "2000m", "1e3", "17179869184", "16Gi", "0.1", "1000", "1500",
                 "0.0001n", "0.1Ki", 2, 0.25, "0", "12e6", "100m", "4", "12Gi", "3.5", "1E3", "750Mi", "2048Ki"]:
        assert quantity.canonical(text) == server_side.canonicalize(text), text
        assert quantity.value(text) == server_side.parse(text)[0], text
