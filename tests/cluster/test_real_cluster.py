"""End to end on a real cluster (kind + Istio + Prometheus): docs/real-cluster.md as a test.

Install the chart (helm CLI if present, else helm-python-sdk render + kubectl apply), serve
examples/resnet50.yaml on CPU pods (gpu.count 0) from a PVC with tiny SavedModels, drive live
traffic through the mesh, then:
1. version 1 becomes Stable;
2. version 2 is analysed on real Istio metrics and promoted;
3. version 3 (missing from the store: its pods never get ready) is rolled back at the progress deadline;
4. version 4 is aborted by hand (`kubectl modeldeploy abort`), retried, and promoted by hand (`promote --full`).
Skips unless a local cluster with Istio and Prometheus is reachable (tests/cluster/conftest.py).
The steps share one ModelDeployment and run in file order.
"""

from __future__ import annotations

import json

import pytest

import e2e_support as e2e
from modeldeploy import GROUP, PLURAL, VERSION
from modeldeploy.render.istio import read_weights

pytestmark = pytest.mark.cluster

STEP_TIMEOUT = 600.0  # first pulls of tensorflow/serving on a laptop take minutes


def md(cluster, namespace: str) -> dict:
    return cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, e2e.MD_NAME)


def status(cluster, namespace: str) -> dict:
    return md(cluster, namespace).get("status") or {}


def set_version(cluster, namespace: str, version: int) -> None:
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, e2e.MD_NAME,
                                                  {"spec": {"model": {"version": version}}},
                                                  _content_type="application/merge-patch+json")


def history_entry(cluster, namespace: str, action: str, version: int) -> dict | None:
    for record in status(cluster, namespace).get("history") or []:
        if record.get("action") == action and record.get("version") == version:
            return record
    return None


def weights(cluster, namespace: str) -> dict[str, int]:
    vs = cluster.custom.get_namespaced_custom_object("networking.istio.io", "v1", namespace, "virtualservices", e2e.MD_NAME)
    return read_weights(vs)


def diagnose(cluster, namespace: str):
    def dump() -> str:
        parts = []
        try:
            parts.append("status: " + json.dumps(status(cluster, namespace), indent=1)[:4000])
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            parts.append(f"status unavailable: {exc}")
        parts.append(e2e.kubectl("-n", namespace, "get", "pods,deployments,events", "--sort-by=.metadata.creationTimestamp",
                                 check=False).stdout[-4000:])
        parts.append(e2e.kubectl("-n", e2e.OPERATOR_NAMESPACE, "logs", f"deployment/{e2e.RELEASE}", "--tail=80",
                                 check=False).stdout)
        return "\n".join(parts)
    return dump


def test_operator_is_up_and_exports_metrics(cluster, operator_release):
    e2e.kubectl("-n", e2e.OPERATOR_NAMESPACE, "rollout", "status", f"deployment/{operator_release}", "--timeout=120s")
    service = f"{operator_release}-metrics"
    metrics = e2e.kubectl("get", "--raw", f"/api/v1/namespaces/{e2e.OPERATOR_NAMESPACE}/services/{service}:8080/proxy/metrics").stdout
    assert "modeldeploy_reconcile_duration_seconds" in metrics
    health = e2e.kubectl("get", "--raw", f"/api/v1/namespaces/{e2e.OPERATOR_NAMESPACE}/services/{service}:8081/proxy/healthz")
    assert health.returncode == 0
    pods = cluster.core.list_namespaced_pod(e2e.OPERATOR_NAMESPACE, label_selector="app.kubernetes.io/component=operator").items
    assert pods and all(p.spec.security_context.run_as_non_root for p in pods)


def test_first_version_becomes_stable(cluster, model_namespace):
    ns = model_namespace
    e2e.apply(e2e.modeldeployment(ns, 1), e2e.loadgen(ns))
    e2e.wait_for("version 1 Stable", lambda: status(cluster, ns).get("phase") == "Stable" and status(cluster, ns).get("stableVersion") == 1,
                 STEP_TIMEOUT, diagnose=diagnose(cluster, ns))
    assert weights(cluster, ns) == {"v1": 100}
    # the Service clients call selects the stable version only; the VirtualService routes to per-version Services
    assert cluster.core.read_namespaced_service(e2e.MD_NAME, ns).spec.selector == {"app": e2e.MD_NAME, "version": "v1"}
    cluster.core.read_namespaced_service(f"{e2e.MD_NAME}-v1", ns)


def test_good_version_is_analysed_on_istio_metrics_and_promoted(cluster, model_namespace):
    ns = model_namespace
    set_version(cluster, ns, 2)
    e2e.wait_for("version 2 receiving canary traffic", lambda: status(cluster, ns).get("canaryVersion") == 2
                 and (status(cluster, ns).get("canaryWeight") or 0) > 0, STEP_TIMEOUT, diagnose=diagnose(cluster, ns))
    # The analysis measures exactly the canary's pods: Istio's destination_version label.
    e2e.wait_for("Istio metrics of v2 in Prometheus", lambda: e2e.prometheus_query(
        f'sum(istio_requests_total{{reporter="destination", destination_workload_namespace="{ns}", destination_version="v2"}})'),
        240, interval=10, diagnose=diagnose(cluster, ns))
    record = e2e.wait_for("version 2 promoted", lambda: history_entry(cluster, ns, "promoted", 2), STEP_TIMEOUT,
                          diagnose=diagnose(cluster, ns))
    assert {m["name"] for m in record.get("metrics") or []} >= {"latency-p95", "error-rate"}, record
    e2e.wait_for("version 2 Stable", lambda: status(cluster, ns).get("phase") == "Stable", 180, diagnose=diagnose(cluster, ns))
    assert status(cluster, ns)["stableVersion"] == 2
    assert weights(cluster, ns) == {"v2": 100}


def test_version_that_never_gets_ready_is_rolled_back(cluster, model_namespace):
    ns = model_namespace
    set_version(cluster, ns, 3)  # not in the model store
    record = e2e.wait_for("version 3 rolled back", lambda: history_entry(cluster, ns, "rolledBack", 3), STEP_TIMEOUT,
                          diagnose=diagnose(cluster, ns))
    assert "ProgressDeadlineExceeded" in record.get("reason", ""), record
    st = status(cluster, ns)
    assert st["phase"] == "RolledBack" and st["stableVersion"] == 2 and st.get("canaryVersion") is None
    assert weights(cluster, ns) == {"v2": 100}


def test_manual_abort_retry_and_promote(cluster, model_namespace):
    ns = model_namespace
    set_version(cluster, ns, 4)
    e2e.wait_for("version 4 receiving canary traffic", lambda: status(cluster, ns).get("canaryVersion") == 4
                 and (status(cluster, ns).get("canaryWeight") or 0) > 0, STEP_TIMEOUT, diagnose=diagnose(cluster, ns))
    out = e2e.plugin("abort", e2e.MD_NAME, "-n", ns, "--by", "e2e")
    assert "abort requested" in out.stdout, out.stdout
    assert history_entry(cluster, ns, "aborted", 4), status(cluster, ns).get("history")
    assert weights(cluster, ns) == {"v2": 100}

    e2e.plugin("retry", e2e.MD_NAME, "-n", ns, "--by", "e2e")
    e2e.wait_for("version 4 canary again", lambda: status(cluster, ns).get("canaryVersion") == 4
                 and (status(cluster, ns).get("canaryWeight") or 0) > 0, STEP_TIMEOUT, diagnose=diagnose(cluster, ns))
    e2e.plugin("promote", e2e.MD_NAME, "-n", ns, "--full", "--by", "e2e")
    e2e.wait_for("version 4 promoted by hand", lambda: history_entry(cluster, ns, "promoted", 4), 180,
                 diagnose=diagnose(cluster, ns))
    e2e.wait_for("version 4 Stable", lambda: status(cluster, ns).get("phase") == "Stable"
                 and status(cluster, ns).get("stableVersion") == 4, 180, diagnose=diagnose(cluster, ns))
    assert weights(cluster, ns) == {"v4": 100}
    history = e2e.plugin("history", e2e.MD_NAME, "-n", ns).stdout
    for action in ("promoted", "rolledBack", "aborted"):
        assert action in history, history
