"""Test harness: the API emulator + a namespace + the simulated Deployment controller + the real operator.

Used by the operator integration tests (imported, not a conftest, so helpers stay explicit).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import yaml

from mdsandbox.controllers import DeploymentController
from mdsandbox.operator_process import OperatorProcess

MD = ("modeldeploy.io", "v1alpha1", "modeldeployments")
DEPLOY = ("apps", "v1", "deployments")
CM = ("", "v1", "configmaps")
SVC = ("", "v1", "services")
VS = ("networking.istio.io", "v1", "virtualservices")
DR = ("networking.istio.io", "v1", "destinationrules")
EVENTS = ("", "v1", "events")


class BackgroundLoop:
    """An asyncio loop in a thread, for async sandbox parts driven from sync tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


def bind_operator_rbac(api: Any, namespace: str, tmp_path: Any, *, peering: bool = False) -> str:
    """The operator's identity in a test: a ServiceAccount bound to EXACTLY modeldeploy.rbac's rules in
    namespaced mode (a Role in the watched namespace, a ClusterRole for the cluster-scoped ones), as the
    chart binds them. Returns a kubeconfig that authenticates as it. The session emulator runs with RBAC
    authorization and OwnerReferencesPermissionEnforcement, so a missing permission is a 403 here too."""
    from modeldeploy import rbac

    def rules(triples: set[tuple[str, str, str]]) -> list[dict]:
        verbs: dict[tuple[str, str], set[str]] = {}
        for group, resource, verb in triples:
            verbs.setdefault((group, resource), set()).add(verb)
        return [{"apiGroups": [g], "resources": [r], "verbs": sorted(v)} for (g, r), v in sorted(verbs.items())]

    placed = rbac.rules_for(clusterwide=False, peering=peering)
    account = "modeldeploy-operator"
    token = f"operator-{namespace}-{uuid.uuid4().hex[:6]}"
    api.add_user(token, f"system:serviceaccount:{namespace}:{account}")
    subjects = [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    base = "/apis/rbac.authorization.k8s.io/v1"
    api.request("POST", f"{base}/namespaces/{namespace}/roles", {"metadata": {"name": account}, "rules": rules(placed["namespace"])})
    api.request("POST", f"{base}/namespaces/{namespace}/rolebindings", {
        "metadata": {"name": account}, "subjects": subjects,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account}})
    cluster_role = f"{account}-{namespace}"
    api.request("POST", f"{base}/clusterroles", {"metadata": {"name": cluster_role}, "rules": rules(placed["cluster"])})
    api.request("POST", f"{base}/clusterrolebindings", {
        "metadata": {"name": cluster_role}, "subjects": subjects,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role}})
    return str(api.user_kubeconfig(tmp_path / f"operator-{namespace}.kubeconfig", token, namespace=namespace))


class Cluster:
    def __init__(self, apiserver: Any, tmp_path: Any, *, ready_policy: Callable[[str, str, int], bool] | None = None,
                 ready_delay: float = 0.5, prometheus_url: str | None = None, operator_env: dict[str, str] | None = None,
                 peering: bool = False):
        self.api = apiserver
        self.namespace = f"t-{uuid.uuid4().hex[:8]}"
        self.tmp_path = tmp_path
        self.api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}})
        self.operator_kubeconfig = bind_operator_rbac(apiserver, self.namespace, tmp_path, peering=peering)
        self.not_ready: set[int] = set()
        policy = ready_policy or (lambda ns, name, version: version not in self.not_ready)
        self.bg = BackgroundLoop()
        self.controller = DeploymentController(api_url=apiserver.url, namespace=self.namespace,
                                               ready_policy=policy, ready_delay=ready_delay, poll_interval=0.1)
        self.bg.run(self.controller.start())
        env = {"MODELDEPLOY_RESYNC_SECONDS": "2"}
        env.update(operator_env or {})
        self.operator = OperatorProcess(kubeconfig=self.operator_kubeconfig, namespaces=[self.namespace],
                                        prometheus_url=prometheus_url, log_path=tmp_path / "operator.log", env=env)

    def close(self) -> None:
        self.operator.stop()
        try:
            self.bg.run(self.controller.stop())
        finally:
            self.bg.close()

    # ---- objects ------------------------------------------------------------------------------
    def apply_md(self, doc: dict | str) -> dict:
        if isinstance(doc, str):
            doc = yaml.safe_load(doc)
        doc = dict(doc)
        doc["metadata"] = dict(doc["metadata"], namespace=self.namespace)
        return self.api.put_object(*MD, self.namespace, doc)

    def md(self, name: str) -> dict | None:
        return self.api.get_object(*MD, self.namespace, name)

    def status(self, name: str) -> dict:
        return (self.md(name) or {}).get("status") or {}

    def patch_md(self, name: str, patch: dict) -> dict:
        return self.api.patch_object(*MD, self.namespace, name, patch)

    def get(self, kind: tuple, name: str) -> dict | None:
        return self.api.get_object(*kind, self.namespace, name)

    def list(self, kind: tuple) -> list[dict]:
        return self.api.list_objects(*kind, self.namespace)

    def events(self) -> list[dict]:
        return self.list(EVENTS)

    def event_reasons(self) -> list[str]:
        return [e.get("reason") for e in sorted(self.events(), key=lambda e: e["metadata"].get("resourceVersion", "0"))]

    def writes(self) -> int:
        return int(self.api.stats(self.namespace)["writes"])

    def wait(self, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            if self.operator.proc is not None and not self.operator.running:
                raise AssertionError(f"operator died:\n{self.operator.log_text()[-4000:]}")
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; operator log tail:\n{self.operator.log_text()[-3000:]}")

    def wait_phase(self, name: str, phase: str, timeout: float = 20.0) -> dict:
        return self.wait(lambda: self.status(name) if self.status(name).get("phase") == phase else None,
                         timeout, f"phase {phase} (now {self.status(name).get('phase')})")
