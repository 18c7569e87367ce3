"""Helpers of the chart tests: render charts/modeldeploy with helm-python-sdk, validate what comes out.

- ``render(values)`` renders the chart offline (Helm's Go SDK, values.schema.json enforced) and
  returns the parsed objects, each tagged with the template it came from; renders are cached.
- ``MATRIX`` names the value sets every structural test runs against (default, every feature on,
  namespaced, HA, minimal...).
- ``k8s_problems(obj, version)`` lists EVERY kubernetes-validate --strict violation of a built-in
  object (kubernetes-validate itself stops at the first).
- ``crd_schema(file)`` reads the openAPIV3Schema of a vendored third-party CRD.
"""

from __future__ import annotations

import copy
import functools
import json
import pathlib
import re
from typing import Any

import helm_python
import jsonschema
import referencing
import yaml
from kubernetes_validate import utils as kv_utils

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modeldeploy"
THIRDPARTY_CRDS = ROOT / "tests" / "data" / "thirdparty-crds"
SHARED_CRDS = ROOT.parent / "shared" / "data" / "crds"
RELEASE = "modeldeploy"
NAMESPACE = "modeldeploy-system"
# Kubernetes versions the rendered objects must be valid for: Chart.yaml's kubeVersion floor and the newest schema.
K8S_VERSIONS = ("1.30.0", kv_utils.latest_version())  # 1.30: ValidatingAdmissionPolicy v1 (1.29 is out of support)

DIGEST = "sha256:" + "ab" * 32

ALL_FEATURES: dict[str, Any] = {
    "image": {"repository": "registry.example.com/ml/modeldeploy-operator", "tag": "0.1.0", "digest": DIGEST,
              "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "registry-credentials"}],
    "commonLabels": {"team": "ml-platform"},
    "replicaCount": 2,
    "peering": {"name": "modeldeploy-ha"},
    "prometheus": {"url": "http://prometheus-operated.monitoring.svc:9090", "timeoutSeconds": 3},
    "resyncSeconds": 30,
    "clusterDomain": "corp.example",
    "verbose": True,
    "evaluator": {"image": {"repository": "registry.example.com/ml/modeldeploy-evaluator", "tag": "0.1.0",
                            "digest": DIGEST}},
    "serviceAccount": {"create": True, "name": "modeldeploy-operator",
                       "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/modeldeploy"}},
    "podAnnotations": {"example.com/owner": "ml-platform"},
    "podLabels": {"example.com/tier": "control-plane"},
    "priorityClassName": "system-cluster-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "workload", "operator": "Equal", "value": "system", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "workload", "operator": "In", "values": ["system"]}]}}]}},
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                   "whenUnsatisfiable": "ScheduleAnyway",
                                   "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "modeldeploy"}}}],
    "extraEnv": [{"name": "MODELDEPLOY_EXTRA", "value": "1"}],
    "metrics": {"port": 8080, "service": {"enabled": True, "annotations": {"example.com/scrape": "true"}},
                "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "interval": "15s",
                                   "scrapeTimeout": "5s",
                                   "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
                                   "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "python_gc_.*", "action": "drop"}]}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"},
                       "alertLabels": {"team": "ml-platform"}},
    "dashboard": {"enabled": True, "namespace": "monitoring", "annotations": {"grafana_folder": "ModelDeploy"}},
    "networkPolicy": {"enabled": True},
    "tests": {"enabled": True},
}

MATRIX: dict[str, dict[str, Any]] = {
    "default": {},
    "all-features": ALL_FEATURES,
    "namespaced": {"watchNamespaces": ["radiology", "pathology"]},
    "namespaced-ha": {"watchNamespaces": ["radiology", "pathology"], "replicaCount": 3,
                      "metrics": {"port": 8080, "service": {"enabled": True},
                                  "serviceMonitor": {"enabled": True}},
                      "prometheusRule": {"enabled": True}, "networkPolicy": {"enabled": True}},
    "clusterwide-ha": {"replicaCount": 2},
    "minimal": {"rbac": {"create": False, "aggregateToDefaultRoles": False},
                "serviceAccount": {"create": False, "name": "preexisting"},
                "metrics": {"port": 9100, "service": {"enabled": False}, "serviceMonitor": {"enabled": False}},
                "health": {"port": 9101}, "tests": {"enabled": False}},
    "no-prometheus": {"prometheus": {"url": ""}},
    "digest-only": {"image": {"repository": "ghcr.io/modeldeploy/operator", "tag": "", "digest": DIGEST}},
    # The optional web dashboard (off in every entry above): read-only cluster-wide, and with actions
    # in namespaced mode with every one of its values set (tests/chart/test_chart_web_dashboard.py).
    "web-dashboard": {"webDashboard": {"enabled": True}},
    "web-dashboard-actions-namespaced": {
        "watchNamespaces": ["radiology", "pathology"],
        "webDashboard": {"enabled": True, "image": {"repository": "registry.example.com/ml/modeldeploy-dashboard",
                                                    "tag": "0.1.0", "digest": DIGEST, "pullPolicy": "Always"},
                         "replicas": 2, "port": 9000, "prometheusUrl": "http://prometheus.monitoring.svc:9090",
                         "allowActions": True, "identityHeader": "X-Forwarded-User",
                         "service": {"port": 8080, "annotations": {"example.com/exposed": "via-oauth2-proxy"}},
                         "serviceAccount": {"create": True, "name": "md-dashboard", "annotations": {"example.com/a": "b"}},
                         "podAnnotations": {"example.com/owner": "ml-platform"}, "podLabels": {"example.com/tier": "ui"},
                         "nodeSelector": {"kubernetes.io/os": "linux"},
                         "tolerations": [{"key": "workload", "operator": "Equal", "value": "ui", "effect": "NoSchedule"}],
                         "resources": {"requests": {"cpu": "20m", "memory": "96Mi"}, "limits": {"memory": "192Mi"}}},
    },
}


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@functools.lru_cache(maxsize=1)
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(str(CHART))


@functools.lru_cache(maxsize=1)
def default_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


@functools.lru_cache(maxsize=64)
def _render_cached(values_json: str, name: str, namespace: str) -> tuple[tuple[str, str], ...]:
    manifests = chart().render(json.loads(values_json), name=name, namespace=namespace)
    return tuple(sorted(manifests.items()))


def render_raw(values: dict | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    """{template path: rendered text}, NOTES.txt included."""
    return dict(_render_cached(json.dumps(values or {}, sort_keys=True), name, namespace))


def render(values: dict | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE,
           tests: bool = True) -> list[dict]:
    """Every object the chart renders (parsed; `_template` holds its source). tests=False drops helm test hooks."""
    objects = []
    for path, text in render_raw(values, name=name, namespace=namespace).items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            if not tests and "/templates/tests/" in path:
                continue
            doc["_template"] = path
            objects.append(doc)
    return objects


def strip(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "_template"}


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def notes(values: dict | None = None) -> str:
    return next(text for path, text in render_raw(values).items() if path.endswith("NOTES.txt"))


# ---------------------------------------------------------------------------------------------
# kubernetes-validate --strict, every error
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _k8s_registry(version: str) -> tuple[str, referencing.Registry]:
    schema_dir = f"v{version}-local-strict"
    definitions = kv_utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version)
    registry = referencing.Resource.from_contents(definitions) @ referencing.Registry()
    return schema_dir, registry


@functools.lru_cache(maxsize=128)
def _k8s_validator(version: str, api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    schema_dir, registry = _k8s_registry(version)
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = kv_utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{group_version}.json", version)
    resource = referencing.Resource.from_contents(schema)
    return jsonschema.Draft202012Validator(schema, registry=resource @ registry)


def k8s_problems(obj: dict, version: str) -> list[str]:
    """Every strict-schema violation of a built-in object, as 'path: message'."""
    validator = _k8s_validator(version, obj["apiVersion"], obj["kind"])
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(strip(obj))]


def is_builtin(obj: dict) -> bool:
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    return group == "" or group.endswith(".k8s.io") or group in ("apps", "batch", "policy", "autoscaling")


# ---------------------------------------------------------------------------------------------
# Third-party CRDs
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def crd_schema(filename: str, version: str = "v1") -> dict:
    crd = yaml.safe_load((THIRDPARTY_CRDS / filename).read_text())
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(f"{filename} has no version {version}")


def rules_file(objects: list[dict]) -> dict:
    """The Prometheus rules file inside the rendered PrometheusRule (what promtool checks and tests)."""
    rule = one(objects, "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


# ---------------------------------------------------------------------------------------------
# Metric names: what the alerts and the dashboard may query
# ---------------------------------------------------------------------------------------------

# Metrics ModelDeploy does not export itself, with where they come from.
THIRD_PARTY_METRICS = {
    "istio_requests_total": "Istio standard metrics (reporter=destination)",
    "istio_request_duration_milliseconds_bucket": "Istio standard metrics",
    ":tensorflow:serving:request_count": "TF Serving --monitoring_config_file (prometheus_config)",
    ":tensorflow:serving:request_latency_bucket": "TF Serving, microseconds",
    "DCGM_FI_DEV_GPU_UTIL": "NVIDIA dcgm-exporter",
    "DCGM_FI_DEV_FB_USED": "NVIDIA dcgm-exporter, MiB",
    "DCGM_FI_DEV_FB_FREE": "NVIDIA dcgm-exporter, MiB",
    "up": "Prometheus, per scrape target",
}


@functools.lru_cache(maxsize=1)
def operator_metric_names() -> frozenset[str]:
    """Sample names the operator's registry exposes (prometheus-client adds _total, _bucket...)."""
    from modeldeploy.metrics import OperatorMetrics

    names = set()
    for family in OperatorMetrics().registry.collect():
        if family.type == "counter":
            names |= {family.name + "_total"}
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_count", "_sum")}
        else:
            names.add(family.name)
    return frozenset(names)


@functools.lru_cache(maxsize=1)
def evaluator_metric_names() -> frozenset[str]:
    """The evaluator's metric names, as documented where the analysis queries them."""
    text = (ROOT / "operator" / "modeldeploy" / "analysis" / "builtins.py").read_text()
    return frozenset(re.findall(r"\bmodeldeploy_evaluator_[a-z_]+\b", text))


def allowed_metric_names() -> frozenset[str]:
    return operator_metric_names() | evaluator_metric_names() | frozenset(THIRD_PARTY_METRICS)


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                 "offset", "bool", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, labels and strings skipped)."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        if m.group(2) or m.group(1) in _PROMQL_WORDS:
            continue
        names.add(m.group(1))
    return names
