"""Pure renderers: a parsed spec (plus what the rollout decided) in, plain Kubernetes objects out.

Nothing here talks to the API or reads the clock. `desired_objects()` is what both the operator and
`modeldeploy render` use, so a GitOps diff shows exactly what the operator will apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modeldeploy.spec import ModelDeploymentSpec


@dataclass(frozen=True)
class Target:
    """The ModelDeployment being rendered: identity plus typed spec."""

    name: str
    namespace: str
    spec: ModelDeploymentSpec
    uid: str | None = None  # None when rendering offline (no owner references then)

    def owner_references(self) -> list[dict]:
        if not self.uid:
            return []
        from modeldeploy import API_VERSION, KIND

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
    role: str  # "stable" | "canary"
    replicas: int
    cpu_fallback: bool = False  # GPU pods unschedulable: also run a CPU twin Deployment (same version label)


@dataclass(frozen=True)
class RoutePlan:
    """How live traffic is split (the VirtualService)."""

    stable: int
    canary: int | None = None
    canary_weight: int = 0  # percent of unmatched traffic to the canary
    match: tuple = ()  # ABTest: requests matching these go 100% to the canary
    mirror_percent: int = 0  # Shadow: percent of live traffic mirrored to the canary
    preview: tuple[int, ...] = field(default=())  # versions reachable by the preview header


def desired_objects(target: Target, versions: list[VersionPlan], route: RoutePlan, *,
                    evaluator_image: str | None = None) -> list[dict]:
    """Every object the operator keeps in place for this state, in apply order."""
    from modeldeploy.render import evaluator, istio, names, serving

    objects: list[dict] = []
    for plan in versions:
        objects.append(serving.configmap(target, plan))
        objects.append(serving.deployment(target, plan))
        if plan.cpu_fallback:
            objects.append(serving.deployment(target, plan, names.VARIANT_CPU_FALLBACK))
    objects.append(serving.service(target))
    live = sorted({v.version for v in versions} | {route.stable} | ({route.canary} if route.canary else set()))
    objects.append(istio.destination_rule(target, live))
    objects.append(istio.virtual_service(target, route))
    if target.spec.evaluation is not None:
        objects.append(evaluator.configmap(target, versions))
        objects.append(evaluator.deployment(target, evaluator_image))
    return objects
