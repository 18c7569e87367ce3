"""Pure renderers: a parsed spec (plus what the rollout decided) in, plain Kubernetes objects out.

Nothing here talks to the API or reads the clock. `desired_objects()` is what both the operator and
`modeldeploy render` use, so a GitOps diff shows exactly what the operator will apply.
"""

from __future__ import annotations

from modeldeploy import names
from modeldeploy.plans import RoutePlan, Target, VersionPlan
from modeldeploy.render import evaluator, istio, serving

__all__ = ["desired_objects"]


def desired_objects(
    target: Target, versions: list[VersionPlan], route: RoutePlan, *, evaluator_image: str | None = None
) -> list[dict]:
    """Every object the operator keeps in place for this state, in apply order."""
    objects: list[dict] = []
    for plan in versions:
        objects.append(serving.configmap(target, plan))
        objects.append(serving.deployment(target, plan))
        if plan.cpu_fallback:
            objects.append(serving.deployment(target, plan, names.VARIANT_CPU_FALLBACK))
        objects.append(serving.version_service(target, plan.version))
    objects.append(serving.service(target, route.stable))
    objects.append(istio.virtual_service(target, route))
    if target.spec.evaluation is not None:
        objects.append(evaluator.configmap(target, versions))
        objects.append(evaluator.deployment(target, evaluator_image))
    return objects
