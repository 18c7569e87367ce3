"""The online golden-set evaluator of one ModelDeployment (pure): its ConfigMap and Deployment.

The evaluator (`modeldeploy evaluator run`, image spec.evaluation.image) sends the golden set to every
live model version through TF Serving's REST API every `interval`, and exports AUROC, calibration and
prediction drift (PSI, KS between the canary and the stable version) as Prometheus metrics that the
rollout analysis reads (builtins accuracy, accuracyDrift, predictionPSI).

Which versions are live changes during a rollout; the ConfigMap (file `evaluator.yaml`) lists them
and the evaluator re-reads it every round, so no restart is needed. Reaching one version: POST
<its endpoint>/v1/models/<model>/versions/<N>:predict, its endpoint being its own Service
`http://<name>-v<N>.<ns>.svc.<cluster domain>:8501` (that version's pods only): no preview header,
no VirtualService, so it works whether or not the evaluator pod has a sidecar. The shared `endpoint`
and `previewHeader` stay in the file for evaluators older than per-version endpoints (a pinned
spec.evaluation.image), which reach a version through Istio's preview route.
"""

from __future__ import annotations

from typing import Any

import yaml

from modeldeploy import __version__, names
from modeldeploy.plans import Target, VersionPlan
from modeldeploy.render.serving import HTTP_PORT, _storage

CONFIG_FILE = "evaluator.yaml"
CONFIG_DIR = "/etc/evaluator"
METRICS_PORT = 9090
GOLDEN_MOUNT = "/golden"
# the operator's own default (no MODELDEPLOY_EVALUATOR_IMAGE): the evaluator of the operator's version
DEFAULT_IMAGE = f"ghcr.io/modeldeploy/evaluator:{__version__}"


def _meta(target: Target, labels: dict[str, str]) -> dict:
    meta: dict[str, Any] = {"name": names.evaluator_name(target.name), "namespace": target.namespace, "labels": labels}
    owners = target.owner_references()
    if owners:
        meta["ownerReferences"] = owners
    return meta


def _labels(target: Target) -> dict[str, str]:
    return {
        **names.common_labels(target.name),
        names.LABEL_COMPONENT: "evaluator",
        "app": names.evaluator_app_label(target.name),
    }


def golden_set_path(target: Target) -> str:
    """The golden set's location as the evaluator pod sees it."""
    evaluation = target.spec.evaluation
    assert evaluation is not None, "only a ModelDeployment with spec.evaluation has an evaluator"
    uri = evaluation.golden_set.uri
    if uri.startswith("pvc://"):
        _, _, path = uri[len("pvc://") :].partition("/")
        return f"{GOLDEN_MOUNT}/{path}".rstrip("/")
    return uri


def _version_endpoint(target: Target, version: int) -> str:
    """TF Serving REST base URL of one version's own Service."""
    return f"http://{names.version_service_host(target.name, target.namespace, version, target.cluster_domain)}:{HTTP_PORT}"


def config(target: Target, versions: list[VersionPlan]) -> dict:
    """The evaluator's configuration (evaluator.yaml): where to send what, and which versions are live."""
    ev = target.spec.evaluation
    assert ev is not None
    live = [v for v in versions if v.replicas > 0 and v.role in ("stable", "canary")]
    return {
        "namespace": target.namespace,
        "modelDeployment": target.name,
        "modelName": target.spec.model.name,
        "signatureName": target.spec.model.signature_name,
        "endpoint": f"http://{names.service_host(target.name, target.namespace, target.cluster_domain)}:{HTTP_PORT}",
        "previewHeader": names.PREVIEW_HEADER,
        "goldenSet": {"uri": golden_set_path(target), "labels": ev.golden_set.labels},
        "interval": ev.interval,
        "timeoutSeconds": ev.timeout_seconds,
        "concurrency": ev.concurrency,
        "operatingThreshold": ev.operating_threshold,
        "versions": [
            {"version": v.version, "role": v.role, "endpoint": _version_endpoint(target, v.version)}
            for v in sorted(live, key=lambda p: p.version)
        ],
    }


def configmap(target: Target, versions: list[VersionPlan]) -> dict:
    text = yaml.safe_dump(config(target, versions), sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(target, _labels(target)),
        "data": {CONFIG_FILE: text},
    }


def evaluator_image(spec_image: str | None, operator_default: str | None) -> str:
    """The evaluator's image: spec.evaluation.image when set, else the operator's (Helm: evaluator.image),
    else DEFAULT_IMAGE. Objects stored while the CRD still defaulted the field carry DEFAULT_IMAGE
    literally; that value counts as unset, so they follow the chart's image too."""
    if spec_image and spec_image != DEFAULT_IMAGE:
        return spec_image
    return operator_default or DEFAULT_IMAGE


def deployment(target: Target, image_override: str | None = None) -> dict:
    ev = target.spec.evaluation
    assert ev is not None
    labels = _labels(target)
    selector = {"app": names.evaluator_app_label(target.name), names.LABEL_OWNER: target.name}
    env, volumes, mounts = _storage(target)  # the golden set lives next to the models: same credentials
    uri = ev.golden_set.uri
    if uri.startswith("pvc://"):
        claim = uri[len("pvc://") :].partition("/")[0]
        volumes = [v for v in volumes if v["name"] != "golden-set"] + [
            {"name": "golden-set", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        ]
        mounts = mounts + [{"name": "golden-set", "mountPath": GOLDEN_MOUNT, "readOnly": True}]
    container = {
        "name": "evaluator",
        "image": evaluator_image(ev.image, image_override),
        "command": ["modeldeploy"],
        "args": [
            "evaluator",
            "run",
            "--config",
            f"{CONFIG_DIR}/{CONFIG_FILE}",
            "--metrics-host",
            "0.0.0.0",
            "--metrics-port",
            str(METRICS_PORT),
        ],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": METRICS_PORT}, "periodSeconds": 10},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": METRICS_PORT},
            "periodSeconds": 20,
            "failureThreshold": 6,
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            *mounts,
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if env:
        container["env"] = env
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(target, labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {
                    "labels": {**labels, **selector},
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(METRICS_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": names.evaluator_name(target.name)}},
                        {"name": "tmp", "emptyDir": {}},
                        *volumes,
                    ],
                },
            },
        },
    }
