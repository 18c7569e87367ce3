"""Rendered manifests: golden files, Istio's own CRD schemas, kubernetes-validate --strict, TF Serving protos.

Set UPDATE_GOLDEN=1 to rewrite the golden files after an intended change (then review the diff).
"""

from __future__ import annotations

import os
import pathlib

import kubernetes_validate
import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from modeldeploy.cli.manifests import dump_yaml
from modeldeploy.plans import RoutePlan, Target, VersionPlan
from modeldeploy.render import desired_objects, istio, serving
from modeldeploy.render import tfserving_config as tfc
from modeldeploy.rollout import plans
from modeldeploy.spec import MatchRule
from modeldeploy.validation import validate_manifest
from modeldeploy.validation.openapi import schema_problems

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "golden"
THIRD_PARTY = ROOT / "tests" / "data" / "thirdparty-crds"
K8S_VERSION = "1.33"


def load_target(path: str = "examples/resnet50.yaml", uid: str | None = "0f6a7b9e-1111-4c4c-9d9d-123456789abc", **spec_edits) -> Target:
    doc = yaml.safe_load((ROOT / path).read_text())
    for dotted, value in spec_edits.items():
        node = doc["spec"]
        keys = dotted.split("__")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    result = validate_manifest(doc)
    assert result.ok, result.problems
    return Target(name=doc["metadata"]["name"], namespace=doc["metadata"]["namespace"], spec=result.spec, uid=uid)


def states():
    """(golden name, target, status) for the states DevOps will see in a GitOps diff."""
    base = load_target()
    yield "stable", base, {"stableVersion": 2}
    yield "canary-25", base, {"stableVersion": 2, "canaryVersion": 3, "canaryWeight": 25, "rollout": {"readyAt": "x"}}
    ab = load_target(strategy={"type": "ABTest", "abTest": {"match": [
        {"headers": {"x-model-variant": {"exact": "canary"}}}, {"headers": {"cookie": {"regex": "^(.*?;)?(variant=b)(;.*)?$"}}}]}})
    yield "abtest", ab, {"stableVersion": 2, "canaryVersion": 3, "strategy": "ABTest", "rollout": {"readyAt": "x"}}
    shadow = load_target(strategy={"type": "Shadow", "shadow": {"mirrorPercent": 50}})
    yield "shadow", shadow, {"stableVersion": 2, "canaryVersion": 3, "strategy": "Shadow", "rollout": {"readyAt": "x"}}
    gateway = load_target(traffic={"gateways": ["istio-ingress/public"], "hosts": ["xray.example.org"]})
    yield "canary-gateway", gateway, {"stableVersion": 2, "canaryVersion": 3, "canaryWeight": 25, "rollout": {"readyAt": "x"}}
    pvc = load_target(model__basePath="pvc://model-store/resnet50", model__credentialsSecret=None, model__s3=None,
                      serving__gpu={"count": 0}, serving__batching=None)
    yield "pvc-cpu", pvc, {"stableVersion": 2}


STATES = list(states())


def check_golden(path: pathlib.Path, text: str) -> None:
    """`text` equals the golden file; UPDATE_GOLDEN=1 rewrites it first. A missing file is a failure, never a
    file written in passing (CI would then compare the output with itself)."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"golden file {path} is missing (UPDATE_GOLDEN=1 writes it; review the diff, commit it)"
    assert text == path.read_text(), f"rendered {path.stem} differs from {path} (UPDATE_GOLDEN=1 to accept)"


@pytest.mark.parametrize("name,target,status", STATES, ids=[s[0] for s in STATES])
def test_golden(name, target, status):
    versions, route = plans(target.spec, status)
    check_golden(GOLDEN / f"{name}.yaml", dump_yaml(desired_objects(target, list(versions), route)))


def test_golden_files_are_exactly_the_states():
    """No stale golden file for a state that is gone, none missing."""
    assert sorted(p.stem for p in GOLDEN.glob("*.yaml")) == sorted(s[0] for s in STATES)


def test_missing_golden_file_fails_and_is_not_written(tmp_path, monkeypatch):
    monkeypatch.delenv("UPDATE_GOLDEN", raising=False)
    path = tmp_path / "gone.yaml"
    with pytest.raises(AssertionError, match="is missing"):
        check_golden(path, "kind: Service\n")
    assert not path.exists()
    path.write_text("kind: Service\n")
    with pytest.raises(AssertionError, match="differs"):
        check_golden(path, "kind: Deployment\n")
    assert path.read_text() == "kind: Service\n"
    monkeypatch.setenv("UPDATE_GOLDEN", "1")
    check_golden(tmp_path / "new.yaml", "kind: Deployment\n")
    assert (tmp_path / "new.yaml").read_text() == "kind: Deployment\n"


def _crd_schema(filename: str, version: str = "v1") -> dict:
    for doc in yaml.safe_load_all((THIRD_PARTY / filename).read_text()):
        if doc and doc.get("kind") == "CustomResourceDefinition":
            for v in doc["spec"]["versions"]:
                if v["name"] == version:
                    return v["schema"]["openAPIV3Schema"]
    raise LookupError(filename)


ISTIO_SCHEMAS = {
    "VirtualService": _crd_schema("istio-virtualservice.yaml"),
    "DestinationRule": _crd_schema("istio-destinationrule.yaml"),
}


def all_rendered():
    for name, target, status in STATES:
        versions, route = plans(target.spec, status)
        for obj in desired_objects(target, list(versions), route):
            yield f"{name}/{obj['kind']}/{obj['metadata']['name']}", obj


RENDERED = list(all_rendered())


@pytest.mark.parametrize("where,obj", RENDERED, ids=[w for w, _ in RENDERED])
def test_rendered_objects_validate_against_their_schemas(where, obj):
    if obj["apiVersion"].startswith("networking.istio.io/"):
        problems = schema_problems(ISTIO_SCHEMAS[obj["kind"]], obj)
        assert not problems, [str(p) for p in problems]
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_schema_check_is_able_to_fail():
    vs = istio.virtual_service(load_target(), RoutePlan(stable=2, canary=3, canary_weight=10))
    vs["spec"]["http"][0]["route"][0]["wieght"] = 5  # typo: Istio's schema rejects unknown fields
    assert schema_problems(ISTIO_SCHEMAS["VirtualService"], vs)
    dep = serving.deployment(load_target(), VersionPlan(2, "stable", 1))
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


def test_weights_always_sum_to_100():
    target = load_target()
    for weight in range(0, 101, 5):
        routes = istio.http_routes(target, RoutePlan(stable=2, canary=3, canary_weight=weight))
        primary = routes[-1]
        assert sum(r["weight"] for r in primary["route"]) == 100
        assert istio.read_weights({"spec": {"http": routes}}).get("v3", 0) == weight


def test_deployment_gpu_placement_probes_and_security():
    target = load_target()
    dep = serving.deployment(target, VersionPlan(3, "canary", 2))
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert dep["metadata"]["name"] == "resnet50-cxr-v3"
    assert dep["spec"]["selector"]["matchLabels"] == {"app": "resnet50-cxr", "version": "v3", "modeldeploy.io/variant": "primary"}
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nodeSelector" not in pod  # no GPU-model label required (set gpu.product where feature discovery runs)
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    # Ready only while version 3 is AVAILABLE: GetModelMetadata (the status path is 200 in any state, even END)
    assert c["readinessProbe"]["httpGet"] == {"path": "/v1/models/resnet50_chest_xray/versions/3/metadata", "port": 8501}
    assert c["startupProbe"]["httpGet"]["path"] == "/v1/models/resnet50_chest_xray/versions/3"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v1/models/resnet50_chest_xray"
    assert "tcpSocket" not in c["readinessProbe"]
    assert c["args"][:4] == [
        "--port=8500", "--rest_api_port=8501",
        "--model_config_file=/etc/tfserving/model_config.pbtxt",
        "--monitoring_config_file=/etc/tfserving/monitoring.pbtxt",
    ]
    assert "--enable_batching=true" in c["args"] and "--batching_parameters_file=/etc/tfserving/batching.pbtxt" in c["args"]
    assert pod["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["allowPrivilegeEscalation"] is False
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/path"] == "/monitoring/prometheus/metrics" and ann["prometheus.io/port"] == "8501"
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    # credentials by reference only (the init container copying the version from S3 reads them)
    env = {e["name"]: e for e in pod["initContainers"][0]["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "model-store-credentials", "key": "AWS_ACCESS_KEY_ID"}
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]


def test_node_selector_override_and_extra_tolerations():
    target = load_target(serving__nodeSelector={"nvidia.com/gpu.product": "NVIDIA-A10G", "pool": "inference"},
                         serving__tolerations=[{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}])
    pod = serving.deployment(target, VersionPlan(2, "stable", 1))["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A10G", "pool": "inference"}
    assert [t["key"] for t in pod["tolerations"]] == ["nvidia.com/gpu", "dedicated"]


def test_cpu_only_and_cpu_fallback_have_no_gpu():
    for target, plan, variant in (
        (load_target(serving__gpu={"count": 0}), VersionPlan(2, "stable", 1), "primary"),
        (load_target(serving__gpu={"count": 1, "fallbackToCPU": True}), VersionPlan(2, "stable", 1, cpu_fallback=True), "cpu-fallback"),
    ):
        pod = serving.deployment(target, plan, variant)["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert "nvidia.com/gpu" not in c["resources"]["limits"]
        assert "nodeSelector" not in pod and "tolerations" not in pod
        assert c["image"] == "tensorflow/serving:2.21.0"


def test_cpu_fallback_runs_a_twin_next_to_the_pending_gpu_deployment():
    target = load_target(serving__gpu={"count": 1, "fallbackToCPU": True})
    plan = VersionPlan(3, "canary", 2, cpu_fallback=True)
    objs = desired_objects(target, [plan], RoutePlan(stable=3))
    deps = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Deployment" and "evaluator" not in o["metadata"]["name"]}
    assert set(deps) == {"resnet50-cxr-v3", "resnet50-cxr-v3-cpu"}
    gpu, cpu = deps["resnet50-cxr-v3"], deps["resnet50-cxr-v3-cpu"]
    assert gpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # never overlapping selectors, but both behind the version's Service (version=v3)
    assert gpu["spec"]["selector"]["matchLabels"] != cpu["spec"]["selector"]["matchLabels"]
    for dep in (gpu, cpu):
        assert dep["spec"]["template"]["metadata"]["labels"]["version"] == "v3"
    cpu_c = cpu["spec"]["template"]["spec"]["containers"][0]
    gpu_c = gpu["spec"]["template"]["spec"]["containers"][0]
    assert cpu_c["readinessProbe"]["timeoutSeconds"] > gpu_c["readinessProbe"]["timeoutSeconds"]
    assert cpu_c["resources"]["requests"]["cpu"] == "4"


def test_pvc_storage_mounted_read_only():
    target = load_target(model__basePath="pvc://model-store/resnet50", model__credentialsSecret=None, model__s3=None)
    dep = serving.deployment(target, VersionPlan(2, "stable", 1))
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["model-store"]["persistentVolumeClaim"] == {"claimName": "model-store", "readOnly": True}
    files = serving.config_files(target, VersionPlan(2, "stable", 1))
    assert 'base_path: "/models/resnet50"' in files[tfc.MODEL_CONFIG_FILE]


def test_gcs_credentials_mounted_from_secret():
    target = load_target(model__basePath="gs://bucket/resnet50", model__s3=None)
    c = serving.deployment(target, VersionPlan(2, "stable", 1))["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/secrets/google/key.json"} in c["env"]


def test_promotion_does_not_change_the_pod_template():
    target = load_target()
    as_canary = serving.deployment(target, VersionPlan(3, "canary", 2))
    as_stable = serving.deployment(target, VersionPlan(3, "stable", 2))
    assert as_canary["spec"]["template"] == as_stable["spec"]["template"]


def test_gateways_are_bound_next_to_the_mesh_and_previews_stay_in_the_mesh():
    target = load_target(traffic={"gateways": ["istio-ingress/public", "edge"], "hosts": ["xray.example.org"]})
    vs = istio.virtual_service(target, RoutePlan(stable=2, canary=3, canary_weight=25, preview=(2, 3)))
    assert vs["spec"]["gateways"] == ["mesh", "istio-ingress/public", "edge"]
    assert vs["spec"]["hosts"] == ["resnet50-cxr.radiology.svc.cluster.local", "xray.example.org"]
    previews = [r for r in vs["spec"]["http"] if r["name"].startswith("preview-")]
    assert previews and all(m["gateways"] == ["mesh"] for r in previews for m in r["match"])
    plain = istio.virtual_service(load_target(), RoutePlan(stable=2, canary=3, preview=(2, 3)))
    assert "gateways" not in plain["spec"] and "gateways" not in plain["spec"]["http"][0]["match"][0]


def test_abtest_match_and_preview_routes_come_first():
    target = load_target()
    match = (MatchRule.model_validate({"headers": {"x-model-variant": {"exact": "canary"}}}),)
    routes = istio.http_routes(target, RoutePlan(stable=2, canary=3, match=match, preview=(2, 3)))
    assert [r["name"] for r in routes] == ["preview-v2", "preview-v3", "ab-test", "primary"]
    assert routes[2]["match"] == [{"headers": {"x-model-variant": {"exact": "canary"}}}]
    assert routes[2]["route"][0]["destination"] == {"host": "resnet50-cxr-v3.radiology.svc.cluster.local"}


# ---- TF Serving text protos, parsed with message definitions mirroring TF Serving's .proto files ----

def _tfserving_messages():
    """ModelServerConfig comes from tensorflow-serving-api; MonitoringConfig and BatchingParameters are
    not shipped there, so they are declared here with TF Serving's field names and types."""
    from google.protobuf import wrappers_pb2
    from tensorflow_serving.config import model_server_config_pb2

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    f = descriptor_pb2.FileDescriptorProto(name="tfs_mirror.proto", package="tensorflow.serving", syntax="proto3",
                                          dependency=["google/protobuf/wrappers.proto"])
    T = descriptor_pb2.FieldDescriptorProto
    prom = f.message_type.add(name="PrometheusConfig")
    prom.field.add(name="enable", number=1, type=T.TYPE_BOOL, label=T.LABEL_OPTIONAL)
    prom.field.add(name="path", number=2, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    mon = f.message_type.add(name="MonitoringConfig")
    mon.field.add(name="prometheus_config", number=1, type=T.TYPE_MESSAGE, type_name=".tensorflow.serving.PrometheusConfig", label=T.LABEL_OPTIONAL)
    bp = f.message_type.add(name="BatchingParameters")
    for number, name in ((1, "max_batch_size"), (2, "batch_timeout_micros"), (3, "num_batch_threads"), (4, "max_enqueued_batches")):
        bp.field.add(name=name, number=number, type=T.TYPE_MESSAGE, type_name=".google.protobuf.Int64Value", label=T.LABEL_OPTIONAL)
    bp.field.add(name="allowed_batch_sizes", number=6, type=T.TYPE_INT64, label=T.LABEL_REPEATED)
    bp.field.add(name="pad_variable_length_inputs", number=7, type=T.TYPE_BOOL, label=T.LABEL_OPTIONAL)
    pool.Add(f)
    get = message_factory.GetMessageClass
    return (model_server_config_pb2.ModelServerConfig,
            get(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")),
            get(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")))


def test_tfserving_configs_parse_as_their_protos():
    ModelServerConfig, MonitoringConfig, BatchingParameters = _tfserving_messages()
    target = load_target()
    files = serving.config_files(target, VersionPlan(3, "canary", 2))
    cfg = text_format.Parse(files[tfc.MODEL_CONFIG_FILE], ModelServerConfig())
    (model,) = cfg.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == ("resnet50_chest_xray", "/models", "tensorflow")
    assert list(model.model_version_policy.specific.versions) == [3]
    assert dict(model.version_labels) == {"canary": 3}
    mon = text_format.Parse(files[tfc.MONITORING_FILE], MonitoringConfig())
    assert mon.prometheus_config.enable and mon.prometheus_config.path == "/monitoring/prometheus/metrics"
    bp = text_format.Parse(files[tfc.BATCHING_FILE], BatchingParameters())
    assert (bp.max_batch_size.value, bp.batch_timeout_micros.value, bp.num_batch_threads.value, bp.max_enqueued_batches.value) == (32, 2000, 4, 4)
    with pytest.raises(text_format.ParseError):  # the parse is strict: a typo would be caught
        text_format.Parse(files[tfc.BATCHING_FILE].replace("max_batch_size", "max_batch_sise"), BatchingParameters())


def test_model_name_with_quotes_is_escaped():
    text = tfc.model_config(model_name="a", base_path='/m/"x"', version=1, label="stable", deployment="d")
    assert 'base_path: "/m/\\"x\\""' in text


# ---- real-cluster correctness (issue 11): model storage the stock image can read, GPU placement ----

STOCK_IMAGES_WITHOUT_S3 = ("tensorflow/serving:2.21.0-gpu", "tensorflow/serving:2.21.0", "tensorflow/serving:latest")


def _tfserving_base_path(target: Target, plan: VersionPlan) -> str:
    text = serving.config_files(target, plan)[tfc.MODEL_CONFIG_FILE]
    return text.split('base_path: "', 1)[1].split('"', 1)[0]


@pytest.mark.parametrize("edits", [
    {},  # the example: s3:// with the stock GPU image
    {"serving__gpu": {"count": 0}},
    {"serving__gpu": {"count": 1, "fallbackToCPU": True}},
    {"model__s3": {"endpoint": "minio.storage:9000", "useHttps": False}},
], ids=["example", "cpu-only", "cpu-fallback", "minio"])
def test_no_accepted_spec_points_a_stock_image_at_s3(edits):
    """Stock tensorflow/serving >= 2.7 has no S3 filesystem (tensorflow/serving#1963): a spec that validates
    must never make such a container read s3:// itself."""
    target = load_target(**edits)
    for variant, plan in (("primary", VersionPlan(3, "canary", 2)), ("cpu-fallback", VersionPlan(3, "canary", 2, cpu_fallback=True))):
        dep = serving.deployment(target, plan, variant)
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        if image in STOCK_IMAGES_WITHOUT_S3:
            assert not _tfserving_base_path(target, plan).startswith("s3://"), (variant, image)


def test_s3_version_copied_by_a_pinned_init_container_into_an_empty_dir():
    target = load_target()
    plan = VersionPlan(3, "canary", 2)
    pod = serving.deployment(target, plan)["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["name"] == "model-sync" and init["image"] == "rclone/rclone:1.74.2"
    assert init["command"] == ["rclone"]
    args = init["args"]
    assert args[:2] == ["copy", ":s3:models/resnet50/3"] and "/models/3" in args
    assert "--s3-provider=AWS" in args and "--s3-env-auth=true" in args and "--s3-region=eu-west-1" in args
    env = {e["name"]: e for e in init["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "model-store-credentials"
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    c = pod["containers"][0]
    assert "env" not in c  # TF Serving no longer talks to S3
    assert {"name": "model-cache", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
    assert {"name": "model-cache", "emptyDir": {}} in pod["volumes"]
    assert _tfserving_base_path(target, plan) == "/models"


def test_minio_settings_become_rclone_flags():
    target = load_target(model__s3={"endpoint": "minio.storage:9000", "useHttps": False, "verifySsl": False})
    args = serving.deployment(target, VersionPlan(2, "stable", 1))["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert "--s3-provider=Other" in args and "--s3-endpoint=http://minio.storage:9000" in args
    assert "--no-check-certificate" in args


def test_gs_read_directly_unless_copying_is_asked_for():
    direct = load_target(model__basePath="gs://bucket/resnet50", model__s3=None)
    pod = serving.deployment(direct, VersionPlan(2, "stable", 1))["spec"]["template"]["spec"]
    assert "initContainers" not in pod  # GCS is compiled into TensorFlow
    assert _tfserving_base_path(direct, VersionPlan(2, "stable", 1)) == "gs://bucket/resnet50"
    copied = load_target(model__basePath="gs://bucket/resnet50", model__s3=None,
                         model__sync={"mode": "InitContainer", "sizeLimit": "4Gi"})
    pod = serving.deployment(copied, VersionPlan(2, "stable", 1))["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert init["args"][1] == ":gcs:bucket/resnet50/2"
    assert "--gcs-service-account-file=/var/secrets/google/key.json" in init["args"]
    assert {"name": "gcp-credentials", "mountPath": "/var/secrets/google", "readOnly": True} in init["volumeMounts"]
    assert {"name": "model-cache", "emptyDir": {"sizeLimit": "4Gi"}} in pod["volumes"]


def test_gpu_pods_select_a_gpu_model_only_when_asked():
    pod = serving.deployment(load_target(serving__gpu={"count": 1}), VersionPlan(2, "stable", 1))["spec"]["template"]["spec"]
    assert "nvidia.com/gpu.product" not in pod.get("nodeSelector", {})  # no GPU feature discovery label required
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    gke = load_target(serving__gpu={"count": 1}, serving__nodeSelector={"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"})
    pod = serving.deployment(gke, VersionPlan(2, "stable", 1))["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}


def test_time_sliced_gpu_gets_a_memory_fraction():
    target = load_target(serving__gpu={"count": 1, "product": "Tesla-T4-SHARED", "memoryFraction": 0.45, "fallbackToCPU": True})
    gpu = serving.deployment(target, VersionPlan(2, "stable", 1))["spec"]["template"]["spec"]
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-T4-SHARED"}
    assert "--per_process_gpu_memory_fraction=0.45" in gpu["containers"][0]["args"]
    cpu = serving.deployment(target, VersionPlan(2, "stable", 1, cpu_fallback=True), "cpu-fallback")["spec"]["template"]["spec"]
    assert not any(a.startswith("--per_process_gpu_memory_fraction") for a in cpu["containers"][0]["args"])


@pytest.mark.parametrize("min_ready, rendered", [(0, None), (15, 15)])
def test_min_ready_seconds_rendered_only_when_set(min_ready, rendered):
    """0 is the API server's default and is not stored (an omitempty int32): rendering it would make every
    apply a no-op PATCH (the live object never contains it)."""
    spec = serving.deployment(load_target(serving__minReadySeconds=min_ready), VersionPlan(2, "stable", 1))["spec"]
    assert spec.get("minReadySeconds") == rendered
    assert spec["progressDeadlineSeconds"] > (rendered or 0)  # apps validation: must be greater than minReadySeconds
