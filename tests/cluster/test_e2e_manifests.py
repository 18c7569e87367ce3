"""Offline checks of what the real-cluster suite applies (no cluster needed, so they run everywhere).

The e2e suite itself only runs against a real cluster; these tests keep its inputs honest in CI:
the ModelDeployment passes the operator's own validation, the helper objects are valid Kubernetes,
the chart values render, and the tiny SavedModel honours the exporter's serving contract.
"""

from __future__ import annotations

import base64
import json

import helm_python
import kubernetes_validate
import pytest
import yaml

import e2e_support as e2e
from modeldeploy.validation import validate_manifest


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_modeldeployment_passes_the_operators_validation(version):
    manifest = e2e.modeldeployment("md-e2e-x", version)
    result = validate_manifest(manifest)
    assert result.ok, [str(p) for p in result.problems]
    spec = result.spec
    assert spec.serving.gpu.count == 0, "kind has no GPU: CPU pods"
    assert spec.model.base_path == "pvc://models/resnet50" and spec.model.version == version
    example = yaml.safe_load(e2e.EXAMPLE.read_text())
    assert (manifest["apiVersion"], manifest["kind"]) == (example["apiVersion"], example["kind"])


def test_helper_objects_are_valid_kubernetes():
    ns = "md-e2e-x"
    for obj in (e2e.namespace_manifest(ns), e2e.models_pvc(ns), e2e.loader_pod(ns), e2e.loadgen(ns)):
        kubernetes_validate.validate(obj, "1.29.0", strict=True)
    assert e2e.namespace_manifest(ns)["metadata"]["labels"]["istio-injection"] == "enabled"
    script = e2e.loadgen(ns)["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert f"http://{e2e.MD_NAME}.{ns}.svc.cluster.local:8501/v1/models/{e2e.MODEL_NAME}:predict" in script


@pytest.mark.parametrize("image, repository, tag", [
    ("ghcr.io/modeldeploy/operator:dev", "ghcr.io/modeldeploy/operator", "dev"),
    ("localhost:5001/modeldeploy/operator:0.1.0", "localhost:5001/modeldeploy/operator", "0.1.0"),
    ("localhost:5001/operator", "localhost:5001/operator", "latest"),
])
def test_chart_values_render(image, repository, tag):
    values = e2e.chart_values(image=image, prometheus_url="http://prometheus.istio-system:9090")
    assert values["image"]["repository"] == repository and values["image"]["tag"] == tag
    rendered = helm_python.Chart.load(str(e2e.CHART)).render(values, name=e2e.RELEASE, namespace=e2e.OPERATOR_NAMESPACE)
    deployment = next(d for path, text in rendered.items() if not path.endswith("NOTES.txt")
                      for d in yaml.safe_load_all(text) if d and d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"{repository}:{tag}"


def test_prometheus_url_is_an_in_cluster_service():
    assert e2e.service_of("http://prometheus-operated.monitoring.svc:9090") == ("prometheus-operated", "monitoring", 9090)
    assert e2e.service_of("http://prometheus.istio-system:9090") == ("prometheus", "istio-system", 9090)
    with pytest.raises(ValueError):
        e2e.service_of("http://localhost:9090")


@pytest.mark.tf
def test_tiny_model_honours_the_serving_contract(tmp_path):
    tf = pytest.importorskip("tensorflow")
    for version in (1, 2):
        e2e.write_tiny_model(tmp_path, version)
    outputs = {}
    for version in (1, 2):
        loaded = tf.saved_model.load(str(tmp_path / "resnet50" / str(version)))
        serve = loaded.signatures["serving_default"]
        instance = json.loads(e2e.predict_body())["instances"][0]
        result = serve(image_bytes=tf.constant([base64.b64decode(instance["b64"])] * 3))
        assert result["probabilities"].shape == (3, 14)
        outputs[version] = float(result["probabilities"][0, 0])
    assert outputs[1] != outputs[2], "versions must be told apart"
