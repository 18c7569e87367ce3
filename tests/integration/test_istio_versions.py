"""The operator on clusters whose Istio serves another networking.istio.io version, or none (issue 11, point 7).

Istio 1.22 promoted the networking APIs to v1; older control planes (and their CRDs) serve v1beta1 only,
and a cluster without Istio serves neither. Each test runs its own API emulator (RBAC and
OwnerReferencesPermissionEnforcement on, like the session one) that serves what such a cluster does:
`--hide-version networking.istio.io/v1` registers Istio's CRDs without their v1.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterator

import pytest

from cluster import DEPLOY, Cluster
from kubeemu.process import ApiServerProcess
from test_operator import small_md

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELDEPLOY_CRD = ROOT / "crds" / "modeldeployment.yaml"
ISTIO_CRDS = sorted((ROOT / "tests" / "data" / "thirdparty-crds").glob("istio-*.yaml"))
V1BETA1 = ("networking.istio.io", "v1beta1")


def emulator(tmp_path, crds, hidden=()) -> ApiServerProcess:
    return ApiServerProcess(crd_files=crds, workdir=tmp_path / "apiserver", authorization_mode="RBAC",
                            admission_plugins=["OwnerReferencesPermissionEnforcement"], hidden_versions=hidden)


@pytest.fixture
def old_istio(tmp_path) -> Iterator[Cluster]:
    with emulator(tmp_path, [MODELDEPLOY_CRD, *ISTIO_CRDS], hidden=["networking.istio.io/v1"]) as api:
        c = Cluster(api, tmp_path)
        yield c
        c.close()


@pytest.fixture
def no_istio(tmp_path) -> Iterator[Cluster]:
    with emulator(tmp_path, [MODELDEPLOY_CRD]) as api:
        c = Cluster(api, tmp_path)
        yield c
        c.close()


def test_istio_before_1_22_gets_v1beta1_routing_objects(old_istio):
    c = old_istio
    assert c.api.get_object("networking.istio.io", "v1", "virtualservices", c.namespace, "x") is None  # not served
    c.operator.start()
    c.apply_md(small_md())
    c.wait_phase("cxr", "Stable", timeout=40)
    vs = c.api.get_object(*V1BETA1, "virtualservices", c.namespace, "cxr")
    assert vs is not None and vs["apiVersion"] == "networking.istio.io/v1beta1"
    assert "networking.istio.io/v1beta1" in c.operator.log_text()
    # compared as the server has it: no write loop over the apiVersion
    time.sleep(1.5)  # the pass after Stable settles (audit record, Events)
    before = c.api.stats(c.namespace)["writes_by_verb_resource"]
    time.sleep(4.5)  # two resyncs
    after = c.api.stats(c.namespace)["writes_by_verb_resource"]
    assert after == before, {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def test_without_istio_one_condition_and_one_event_then_recovers(no_istio):
    c = no_istio
    c.operator.start()
    c.apply_md(small_md())

    def condition():
        return next((x for x in c.status("cxr").get("conditions") or [] if x["type"] == "IstioAPI"), None)

    cond = c.wait(condition, timeout=30, what="condition IstioAPI")
    assert (cond["status"], cond["reason"]) == ("False", "NotServed")
    assert "networking.istio.io is not served" in cond["message"] and "install Istio" in cond["message"]
    time.sleep(4.5)  # two resyncs: no retry storm, no second Event, nothing applied
    warnings = [e for e in c.events() if e["reason"] == "IstioAPINotServed"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning"
    assert c.list(DEPLOY) == []
    assert c.api.stats(c.namespace)["responses_by_status"].get("404", 0) <= 2
    # Istio installed later: the next resync finds it and the rollout starts
    for path in ISTIO_CRDS:
        c.api.register_crd_file(path)
    c.wait_phase("cxr", "Stable", timeout=40)
    assert condition()["status"] == "True"
    assert c.api.get_object("networking.istio.io", "v1", "virtualservices", c.namespace, "cxr") is not None
