"""Fixtures of the real-cluster suite: skip cleanly unless a usable, local (or explicitly allowed) cluster exists.

The suite runs when ALL of these hold, and otherwise skips with the reason:
- kubectl is on PATH and a kubeconfig has a current context;
- that context is a local one (kind-*, k3d-*, minikube, docker-desktop, ...) or equals
  $MODELDEPLOY_E2E_CONTEXT, so `make test` never installs into a shared cluster by accident;
- the API server answers within 5 s and lists at least one node;
- Istio's CRDs are installed and Prometheus answers through the API server's service proxy;
- TensorFlow is importable on this machine (it builds the tiny test SavedModels).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

import e2e_support as e2e


@dataclass
class ClusterAccess:
    context: str
    api: Any  # kubernetes.client.ApiClient
    core: Any
    custom: Any
    apiext: Any


def _skip(reason: str) -> None:
    pytest.skip(f"real cluster: {reason} (see docs/real-cluster.md)")


@pytest.fixture(scope="session")
def cluster() -> ClusterAccess:
    if e2e.kubectl_binary() is None:
        _skip("kubectl not found")
    try:
        import kubernetes
    except ImportError:  # pragma: no cover
        _skip("the kubernetes client is not installed")
    try:
        _, active = kubernetes.config.list_kube_config_contexts()
    except (kubernetes.config.ConfigException, FileNotFoundError, TypeError) as exc:
        _skip(f"no kubeconfig/context ({exc.__class__.__name__})")
    context = (active or {}).get("name") or ""
    if not context:
        _skip("no current kubeconfig context")
    if not (e2e.LOCAL_CONTEXT.match(context) or context == os.environ.get("MODELDEPLOY_E2E_CONTEXT")):
        _skip(f"context {context!r} is not a local cluster; set MODELDEPLOY_E2E_CONTEXT={context} to allow it")
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(context=context, client_configuration=configuration)
    api = kubernetes.client.ApiClient(configuration)
    core = kubernetes.client.CoreV1Api(api)
    try:
        nodes = core.list_node(_request_timeout=5).items
    except Exception as exc:  # unreachable server, TLS, auth...
        _skip(f"context {context!r} does not answer ({exc.__class__.__name__})")
    if not nodes:
        _skip(f"context {context!r} has no nodes")
    access = ClusterAccess(context, api, core, kubernetes.client.CustomObjectsApi(api),
                           kubernetes.client.ApiextensionsV1Api(api))
    names = {c.metadata.name for c in access.apiext.list_custom_resource_definition(_request_timeout=10).items}
    if not {"virtualservices.networking.istio.io", "destinationrules.networking.istio.io"} <= names:
        _skip("Istio is not installed (istioctl install)")
    try:
        e2e.prometheus_query("up")
    except Exception as exc:
        _skip(f"Prometheus {e2e.PROMETHEUS_URL} does not answer through the API server ({str(exc)[:200]}); "
              "set MODELDEPLOY_E2E_PROMETHEUS_URL")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        _skip("TensorFlow is needed on this machine to build the tiny test models (make setup)")
    return access


@pytest.fixture(scope="session")
def operator_release(cluster: ClusterAccess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The chart installed with the helm CLI if present, else rendered by helm-python-sdk and applied."""
    values = e2e.chart_values()
    if e2e.helm_available():
        values_file = tmp_path_factory.mktemp("helm") / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        e2e.run(["helm", "upgrade", "--install", e2e.RELEASE, str(e2e.CHART), "-n", e2e.OPERATOR_NAMESPACE,
                 "--create-namespace", "--wait", "--timeout", "5m", "-f", str(values_file)], timeout=360)
        e2e.run(["helm", "test", e2e.RELEASE, "-n", e2e.OPERATOR_NAMESPACE, "--timeout", "3m"], timeout=240)
    else:
        import helm_python

        chart = helm_python.Chart.load(str(e2e.CHART))
        manifests = chart.render(values, name=e2e.RELEASE, namespace=e2e.OPERATOR_NAMESPACE)
        objects = [doc for path, text in sorted(manifests.items())
                   if not path.endswith("NOTES.txt") and "/templates/tests/" not in path
                   for doc in yaml.safe_load_all(text) if doc]
        for crd in chart.crds:
            e2e.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=crd["data"])
        e2e.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modeldeploy.io", "--timeout=60s")
        e2e.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": e2e.OPERATOR_NAMESPACE}})
        e2e.apply(*objects)
        e2e.kubectl("-n", e2e.OPERATOR_NAMESPACE, "rollout", "status", f"deployment/{e2e.RELEASE}", "--timeout=300s",
                    timeout=320)
    yield e2e.RELEASE
    if not e2e.KEEP:
        if e2e.helm_available():
            e2e.run(["helm", "uninstall", e2e.RELEASE, "-n", e2e.OPERATOR_NAMESPACE, "--wait"], check=False)
        e2e.kubectl("delete", "namespace", e2e.OPERATOR_NAMESPACE, "--ignore-not-found", "--wait=false", check=False)
        e2e.kubectl("delete", "clusterrole,clusterrolebinding", "-l", f"app.kubernetes.io/instance={e2e.RELEASE}",
                    "--ignore-not-found", check=False)


@pytest.fixture(scope="session")
def model_namespace(cluster: ClusterAccess, operator_release: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A sidecar-injected namespace with model versions 1, 2 and 4 on a PVC, and live traffic."""
    namespace = f"md-e2e-{uuid.uuid4().hex[:6]}"
    e2e.apply(e2e.namespace_manifest(namespace), e2e.models_pvc(namespace), e2e.loader_pod(namespace))
    workdir = tmp_path_factory.mktemp("models")
    for version in e2e.PRESENT_VERSIONS:
        e2e.write_tiny_model(workdir, version)
    e2e.kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/model-loader", "--timeout=180s", timeout=200)
    e2e.kubectl("-n", namespace, "exec", "model-loader", "--", "mkdir", "-p", "/models/resnet50")
    for version in e2e.PRESENT_VERSIONS:
        e2e.kubectl("-n", namespace, "cp", str(workdir / "resnet50" / str(version)), f"model-loader:/models/resnet50/{version}")
    e2e.kubectl("-n", namespace, "exec", "model-loader", "--", "chmod", "-R", "a+rX", "/models")
    e2e.kubectl("-n", namespace, "delete", "pod", "model-loader", "--wait=true", "--timeout=60s")
    yield namespace
    if not e2e.KEEP:
        e2e.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false", check=False)
