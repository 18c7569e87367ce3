"""Names and labels of every object ModelDeploy creates for a ModelDeployment (one place, pure)."""

from __future__ import annotations

import hashlib

MAX_LABEL_VALUE = 63  # Kubernetes label values (and RFC 1123 labels: Service names)

MANAGED_BY = "modeldeploy"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_OWNER = "modeldeploy.io/model-deployment"
LABEL_MODEL_VERSION = "modeldeploy.io/model-version"
LABEL_ROLE = "modeldeploy.io/role"
LABEL_COMPONENT = "app.kubernetes.io/component"
PREVIEW_HEADER = "x-modeldeploy-version"
SERVED_BY_HEADER = "x-modeldeploy-served-by"  # response header naming the version that answered (stickiness)
ANNOTATION_CONFIG_HASH = "modeldeploy.io/config-hash"
ANNOTATION_ACTION = "modeldeploy.io/action"  # a manual action (modeldeploy.actions)
ANNOTATION_ACTION_BY = "modeldeploy.io/action-by"  # who asked for it, for the audit trail
ANNOTATION_ACTION_VIA = "modeldeploy.io/action-via"  # the trusted proxy (dashboard) that asked on their behalf
LABEL_VARIANT = "modeldeploy.io/variant"
VARIANT_PRIMARY = "primary"  # the Deployment as specified (GPU pods unless gpu.count is 0)
VARIANT_CPU_FALLBACK = "cpu-fallback"  # CPU replicas while GPU pods cannot be scheduled


def version_label(version: int) -> str:
    """Value of the pods' `version` label; Istio reports it as destination_version."""
    return f"v{int(version)}"


def deployment_name(name: str, version: int, variant: str = VARIANT_PRIMARY) -> str:
    base = f"{name}-v{int(version)}"
    return base if variant == VARIANT_PRIMARY else f"{base}-cpu"


def configmap_name(name: str, version: int) -> str:
    return f"{name}-v{int(version)}-tfserving"


def service_name(name: str) -> str:
    """The Service clients call: it selects the STABLE version's pods only (moved on promotion), so a
    client the VirtualService does not route (no sidecar, an unbound gateway) never reaches another."""
    return name


def service_host(name: str, namespace: str) -> str:
    return f"{service_name(name)}.{namespace}.svc.cluster.local"


def version_service_name(name: str, version: int) -> str:
    """The Service of one version's pods (the VirtualService's destinations; same name as its Deployment)."""
    return f"{name}-v{int(version)}"


def version_service_host(name: str, namespace: str, version: int) -> str:
    return f"{version_service_name(name, version)}.{namespace}.svc.cluster.local"


def version_of_host(name: str | None, host: str) -> int | None:
    """The version whose Service a destination host names (``<name>-v<N>[.<ns>...]``; any ``*-v<N>``
    when the name is not known), else None."""
    short = host.split(".", 1)[0]
    prefix = f"{name}-v" if name else short.rpartition("-v")[0] + "-v"
    if short.startswith(prefix) and short[len(prefix) :].isdigit() and len(prefix) > 2:
        return int(short[len(prefix) :])
    return None


def evaluator_name(name: str) -> str:
    """The evaluator's Deployment and ConfigMap (an RFC 1123 subdomain may be 253 characters)."""
    return f"{name}-evaluator"


def fit_label_value(value: str) -> str:
    """``value`` if it is a valid label value length, else a stable shortened form (prefix + hash).

    The CRD admits names up to 60 characters, so ``<name>-evaluator`` can reach 70: as a label value
    the API server would refuse it (422, "must be no more than 63 characters")."""
    if len(value) <= MAX_LABEL_VALUE:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    return f"{value[: MAX_LABEL_VALUE - 11].rstrip('-_.')}-{digest}"


def evaluator_app_label(name: str) -> str:
    """The evaluator pods' ``app`` label (and selector): its Deployment name, shortened when too long."""
    return fit_label_value(evaluator_name(name))


def common_labels(name: str) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_OWNER: name}


def selector_labels(name: str, version: int, variant: str = VARIANT_PRIMARY) -> dict[str, str]:
    """Immutable Deployment selector of one version's pods (Istio's app/version convention, plus the
    variant so that a version's GPU and CPU-fallback Deployments never select each other's pods)."""
    return {"app": name, "version": version_label(version), LABEL_VARIANT: variant}
