"""The operator's settings, read once from the environment at startup (one object, in kopf's memo)."""

from __future__ import annotations

import os
from dataclasses import dataclass


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
    kube_workers: int = 32  # MODELDEPLOY_KUBE_WORKERS: threads for the synchronous kubernetes client
    peering: str | None = None  # MODELDEPLOY_PEERING: kopf peering name for HA (None = standalone)
    peering_priority: int = 0  # MODELDEPLOY_PEERING_PRIORITY; 0 = derived from POD_ID/hostname (distinct per replica)
    peering_lifetime: int = 20  # MODELDEPLOY_PEERING_LIFETIME seconds: how long a dead leader blocks the others
    action_by_policy: str | None = (
        None  # MODELDEPLOY_ACTION_BY_POLICY: the admission policy binding action-by to the requester
    )
    evaluator_image: str | None = None  # MODELDEPLOY_EVALUATOR_IMAGE: the image when spec.evaluation.image is unset

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
        )


def replica_priority(identity: str) -> int:
    """A stable, distinct kopf peering priority for one replica (kopf pauses ALL peers on equal priorities)."""
    import hashlib

    return 1 + int.from_bytes(hashlib.sha256(identity.encode()).digest()[:4], "big") % 1_000_000
