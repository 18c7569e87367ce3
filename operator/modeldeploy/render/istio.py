"""Istio routing objects of one ModelDeployment (pure): a DestinationRule and a VirtualService.

- DestinationRule: one subset per live model version, selected by the pods' `version` label.
- VirtualService (networking.istio.io/v1), http routes in Istio's first-match order:
  1. preview routes: header `x-modeldeploy-version: v<N>` reaches version N directly (the online
     evaluator and smoke checks use it; never live traffic);
  2. ABTest: requests matching the configured headers/cookie go 100% to the canary;
  3. primary: weighted split stable/canary, plus a mirror of `mirror_percent` to the canary (Shadow).
Weights always sum to 100, as Istio requires.
"""

from __future__ import annotations

from modeldeploy import names
from modeldeploy.plans import RoutePlan, Target

API_VERSION = "networking.istio.io/v1"


def _meta(target: Target, name: str) -> dict:
    meta = {
        "name": name,
        "namespace": target.namespace,
        "labels": {**names.common_labels(target.name), names.LABEL_COMPONENT: "routing"},
    }
    owners = target.owner_references()
    if owners:
        meta["ownerReferences"] = owners
    return meta


def destination_rule(target: Target, versions: list[int]) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": _meta(target, names.service_name(target.name)),
        "spec": {
            "host": names.service_host(target.name, target.namespace),
            "subsets": [
                {"name": names.subset_name(v), "labels": {"version": names.version_label(v)}}
                for v in sorted(set(versions))
            ],
        },
    }


def _destination(target: Target, version: int, weight: int | None = None) -> dict:
    dest: dict = {
        "destination": {"host": names.service_host(target.name, target.namespace), "subset": names.subset_name(version)}
    }
    if weight is not None:
        dest["weight"] = weight
    return dest


def _istio_match(match) -> dict:
    """An Istio HTTPMatchRequest from a spec match rule (MatchRule or a plain dict)."""
    headers = match.headers if hasattr(match, "headers") else match.get("headers", {})
    out = {}
    for header, cond in sorted(headers.items()):
        if hasattr(cond, "model_dump"):
            cond = cond.model_dump(exclude_none=True)
        out[header] = {k: v for k, v in cond.items() if v is not None}
    return {"headers": out}


def http_routes(target: Target, route: RoutePlan) -> list[dict]:
    """The VirtualService's http list for a routing plan."""
    routes: list[dict] = []
    for version in sorted(set(route.preview)):
        routes.append(
            {
                "name": f"preview-{names.version_label(version)}",
                "match": [{"headers": {names.PREVIEW_HEADER: {"exact": names.version_label(version)}}}],
                "route": [_destination(target, version)],
            }
        )
    if route.canary is not None and route.match:
        routes.append(
            {
                "name": "ab-test",
                "match": [_istio_match(m) for m in route.match],
                "route": [_destination(target, route.canary, 100)],
            }
        )
    weight = max(0, min(100, int(route.canary_weight))) if route.canary is not None else 0
    primary: dict = {"name": "primary"}
    if weight == 0:
        primary["route"] = [_destination(target, route.stable, 100)]
    elif weight == 100:
        primary["route"] = [_destination(target, route.stable, 0), _destination(target, route.canary, 100)]
    else:
        primary["route"] = [
            _destination(target, route.stable, 100 - weight),
            _destination(target, route.canary, weight),
        ]
    if route.canary is not None and route.mirror_percent > 0:
        primary["mirror"] = {
            "host": names.service_host(target.name, target.namespace),
            "subset": names.subset_name(route.canary),
        }
        primary["mirrorPercentage"] = {"value": float(route.mirror_percent)}
    routes.append(primary)
    return routes


def virtual_service(target: Target, route: RoutePlan) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": _meta(target, names.service_name(target.name)),
        "spec": {
            "hosts": [names.service_host(target.name, target.namespace)],
            "http": http_routes(target, route),
        },
    }


def read_weights(virtual_service_obj: dict) -> dict[str, int]:
    """Subset -> weight of the primary route of a live VirtualService (for verification after a write)."""
    for http in (virtual_service_obj.get("spec") or {}).get("http") or []:
        if http.get("name") == "primary":
            return {r["destination"]["subset"]: int(r.get("weight", 100)) for r in http.get("route", [])}
    return {}
