"""Names and labels of every object ModelDeploy creates for a ModelDeployment (one place, pure)."""

from __future__ import annotations

import hashlib
import re

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
ANNOTATION_ACTION_ID = "modeldeploy.io/action-id"  # the request's idempotency key (status.rollout.handledActionId)
LABEL_VARIANT = "modeldeploy.io/variant"
VARIANT_PRIMARY = "primary"  # the Deployment as specified (GPU pods unless gpu.count is 0)
VARIANT_CPU_FALLBACK = "cpu-fallback"  # CPU replicas while GPU pods cannot be scheduled
# kubelet's --cluster-domain (clusterDomain in its config): Services are <svc>.<ns>.svc.<domain>.
# The operator's setting MODELDEPLOY_CLUSTER_DOMAIN (Helm value clusterDomain) reaches the renderers
# through plans.Target.cluster_domain; this default is what kubeadm, kind, GKE, EKS and AKS use.
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


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


def check_cluster_domain(domain: str) -> str:
    """`domain` normalised (lower case, no trailing dot) if it is a DNS name of RFC 1123 labels
    ("cluster.local", "corp.example"), else ValueError naming the problem."""
    value = str(domain).strip().lower().rstrip(".")
    if not value:
        raise ValueError("cluster domain: empty (kubelet's --cluster-domain, e.g. cluster.local)")
    if len(value) > 253 - len(".svc"):
        raise ValueError(f"cluster domain {domain!r}: longer than a DNS name allows")
    bad = [label for label in value.split(".") if not _DNS_LABEL.match(label)]
    if bad:
        raise ValueError(
            f"cluster domain {domain!r}: {bad[0]!r} is not a DNS label (lower-case letters, digits and '-', "
            "at most 63 characters, starting and ending with a letter or digit)"
        )
    return value


def _host(service: str, namespace: str, cluster_domain: str) -> str:
    return f"{service}.{namespace}.svc.{cluster_domain}"


def service_host(name: str, namespace: str, cluster_domain: str) -> str:
    """The FQDN of the Service clients call: ``<name>.<namespace>.svc.<cluster domain>``."""
    return _host(service_name(name), namespace, cluster_domain)


def version_service_name(name: str, version: int) -> str:
    """The Service of one version's pods (the VirtualService's destinations; same name as its Deployment)."""
    return f"{name}-v{int(version)}"


def version_service_host(name: str, namespace: str, version: int, cluster_domain: str) -> str:
    """The FQDN of one version's Service: ``<name>-v<N>.<namespace>.svc.<cluster domain>``."""
    return _host(version_service_name(name, version), namespace, cluster_domain)


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
