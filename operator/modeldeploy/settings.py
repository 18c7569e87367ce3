"""The operator's settings, read once from the environment at startup (one object, in kopf's memo)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from modeldeploy.names import DEFAULT_CLUSTER_DOMAIN, check_cluster_domain
from modeldeploy.spec import NotificationTarget

CLUSTER_DOMAIN_ENV = "MODELDEPLOY_CLUSTER_DOMAIN"


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    prometheus_url: str | None = None  # MODELDEPLOY_PROMETHEUS_URL: where serving/evaluator metrics are
    prometheus_timeout: float = 5.0  # MODELDEPLOY_PROMETHEUS_TIMEOUT seconds per query
    metrics_host: str = "127.0.0.1"  # MODELDEPLOY_METRICS_HOST (the Helm chart sets 0.0.0.0 for scraping)
    metrics_port: int = 8080  # MODELDEPLOY_METRICS_PORT; 0 = no metrics endpoint
    resync_seconds: float = 60.0  # MODELDEPLOY_RESYNC_SECONDS: idle re-check period (no writes if unchanged)
    kube_workers: int = 32  # MODELDEPLOY_KUBE_WORKERS: concurrent connections to the API server
    peering: str | None = None  # MODELDEPLOY_PEERING: kopf peering name for HA (None = standalone)
    peering_priority: int = 0  # MODELDEPLOY_PEERING_PRIORITY; 0 = derived from POD_ID/hostname (distinct per replica)
    peering_lifetime: int = 20  # MODELDEPLOY_PEERING_LIFETIME seconds: how long a dead leader blocks the others
    action_by_policy: str | None = (
        None  # MODELDEPLOY_ACTION_BY_POLICY: the admission policy binding action-by to the requester
    )
    evaluator_image: str | None = None  # MODELDEPLOY_EVALUATOR_IMAGE: the image when spec.evaluation.image is unset
    # MODELDEPLOY_NOTIFICATIONS: JSON list of spec.notifications entries for ModelDeployments without their own
    # (the Helm value notifications.defaults); each URL from a Secret in the ModelDeployment's namespace
    default_notifications: tuple[NotificationTarget, ...] = ()
    notification_queue: int = 256  # MODELDEPLOY_NOTIFICATION_QUEUE: bounded queue; beyond it, dropped and counted
    notification_timeout: float = 10.0  # MODELDEPLOY_NOTIFICATION_TIMEOUT seconds per attempt
    notification_attempts: int = 4  # MODELDEPLOY_NOTIFICATION_ATTEMPTS (backoff 1 s, 2 s, 4 s... at most 30 s)
    # MODELDEPLOY_CLUSTER_DOMAIN (Helm value clusterDomain): kubelet's --cluster-domain; every rendered
    # host is <svc>.<ns>.svc.<cluster_domain>. A value that is no DNS name stops the operator at start.
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN

    def __post_init__(self) -> None:
        object.__setattr__(self, "cluster_domain", check_cluster_domain(self.cluster_domain))

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            prometheus_url=env.get("MODELDEPLOY_PROMETHEUS_URL") or None,
            prometheus_timeout=_float("MODELDEPLOY_PROMETHEUS_TIMEOUT", 5.0),
            metrics_host=env.get("MODELDEPLOY_METRICS_HOST", "127.0.0.1"),
            metrics_port=int(_float("MODELDEPLOY_METRICS_PORT", 8080)),
            resync_seconds=_float("MODELDEPLOY_RESYNC_SECONDS", 60.0),
            kube_workers=int(_float("MODELDEPLOY_KUBE_WORKERS", 32)),
            peering=env.get("MODELDEPLOY_PEERING") or None,
            peering_priority=int(_float("MODELDEPLOY_PEERING_PRIORITY", 0)),
            peering_lifetime=int(_float("MODELDEPLOY_PEERING_LIFETIME", 20)),
            evaluator_image=env.get("MODELDEPLOY_EVALUATOR_IMAGE") or None,
            action_by_policy=env.get("MODELDEPLOY_ACTION_BY_POLICY") or None,
            default_notifications=parse_notifications(env.get("MODELDEPLOY_NOTIFICATIONS") or "[]"),
            notification_queue=int(_float("MODELDEPLOY_NOTIFICATION_QUEUE", 256)),
            notification_timeout=_float("MODELDEPLOY_NOTIFICATION_TIMEOUT", 10.0),
            notification_attempts=int(_float("MODELDEPLOY_NOTIFICATION_ATTEMPTS", 4)),
            cluster_domain=_cluster_domain(env.get(CLUSTER_DOMAIN_ENV)),
        )


def _cluster_domain(raw: str | None) -> str:
    try:
        return check_cluster_domain(raw) if raw not in (None, "") else DEFAULT_CLUSTER_DOMAIN
    except ValueError as exc:
        raise ValueError(f"{CLUSTER_DOMAIN_ENV}: {exc}") from None


def parse_notifications(text: str) -> tuple[NotificationTarget, ...]:
    """The default receivers: a JSON list in the spec.notifications format (ValueError naming the entry)."""
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"MODELDEPLOY_NOTIFICATIONS is not JSON: {exc}") from None
    if not isinstance(items, list):
        raise ValueError("MODELDEPLOY_NOTIFICATIONS must be a JSON list of spec.notifications entries")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(NotificationTarget.model_validate(item))
        except Exception as exc:  # noqa: BLE001 - pydantic's message names the field
            raise ValueError(f"MODELDEPLOY_NOTIFICATIONS[{i}]: {exc}") from None
    return tuple(out)


def replica_priority(identity: str) -> int:
    """A stable, distinct kopf peering priority for one replica (kopf pauses ALL peers on equal priorities)."""
    import hashlib

    return 1 + int.from_bytes(hashlib.sha256(identity.encode()).digest()[:4], "big") % 1_000_000
