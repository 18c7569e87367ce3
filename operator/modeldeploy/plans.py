"""The plan types: what the rollout decided, in the shape the renderers consume.

Neutral ground between `rollout` (which produces plans) and `render` (which turns them into
objects): neither package imports the other for these types, and `render` no longer imports itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modeldeploy import API_VERSION, KIND
from modeldeploy.names import DEFAULT_CLUSTER_DOMAIN
from modeldeploy.spec import ModelDeploymentSpec


@dataclass(frozen=True)
class Target:
    """The ModelDeployment being rendered: identity plus typed spec."""

    name: str
    namespace: str
    spec: ModelDeploymentSpec
    uid: str | None = None  # None when rendering offline (no owner references then)
    # the cluster's DNS domain (the operator's setting MODELDEPLOY_CLUSTER_DOMAIN): every host rendered
    # (VirtualService hosts and destinations, the evaluator's URLs) is <svc>.<ns>.svc.<cluster_domain>
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN

    def owner_references(self) -> list[dict]:
        if not self.uid:
            return []
        return [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": self.name,
                "uid": self.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


@dataclass(frozen=True)
class VersionPlan:
    """One model version's Deployment as the rollout wants it."""

    version: int
    role: str  # "stable" | "canary" | "previous" | "rolledback" (see rollout.plans)
    replicas: int
    cpu_fallback: bool = False  # GPU pods unschedulable: also run a CPU twin Deployment (same version label)
    digest: str | None = None  # the pinned artifact digest of this version (checked before TF Serving starts)


@dataclass(frozen=True)
class RoutePlan:
    """How live traffic is split (the VirtualService)."""

    stable: int
    canary: int | None = None
    canary_weight: int = 0  # percent of unmatched traffic to the canary
    match: tuple = ()  # ABTest: requests matching these go 100% to the canary
    mirror_percent: int = 0  # Shadow: percent of live traffic mirrored to the canary
    preview: tuple[int, ...] = field(default=())  # versions reachable by the preview header
