"""Istio routing of one ModelDeployment (pure): its VirtualService.

Clients call the Service `<name>`, which selects the stable version's pods only (render/serving.py).
The VirtualService (networking.istio.io/v1, host `<name>`) routes the clients it applies to — every
sidecar (`mesh`) — to per-version Services `<name>-v<N>` (each selects one version's pods), so:
- a client it does not apply to (no sidecar, an ingress gateway it is not bound to, ambient without
  a waypoint) balances over the stable pods only, and never reaches an unvetted version;
- a version is a plain Service, which is also what Gateway API HTTPRoute backendRefs need.
No DestinationRule subsets: a subset of `<name>` could only hold stable pods.
http routes, in Istio's first-match order:
  1. preview routes: header `x-modeldeploy-version: v<N>` reaches version N directly (BlueGreen
     preview and smoke checks, evaluators older than per-version endpoints; never live traffic;
     the online evaluator calls each version's Service `<name>-v<N>` instead);
  2. ABTest: requests matching the configured headers/cookie go 100% to the canary;
  3. stickiness (Canary): keyed requests whose key bucket is below the weight -> canary, other keyed
     requests -> stable (render/stickiness.py: a study reaches one version);
  4. cohort: only these requests are split / mirrored, everyone else -> stable;
  5. primary: weighted split stable/canary, plus a mirror of `mirror_percent` to the canary (Shadow).
Weights always sum to 100, as Istio requires.
"""

from __future__ import annotations

from typing import Any

from modeldeploy import names
from modeldeploy.plans import RoutePlan, Target
from modeldeploy.render import stickiness

API_VERSION = "networking.istio.io/v1"
MESH = "mesh"  # Istio's reserved gateway name: every sidecar


def _meta(target: Target, name: str) -> dict:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": target.namespace,
        "labels": {**names.common_labels(target.name), names.LABEL_COMPONENT: "routing"},
    }
    owners = target.owner_references()
    if owners:
        meta["ownerReferences"] = owners
    return meta


def _version_host(target: Target, version: int) -> str:
    return names.version_service_host(target.name, target.namespace, version, target.cluster_domain)


def _destination(target: Target, version: int, weight: int | None = None) -> dict:
    dest: dict = {"destination": {"host": _version_host(target, version)}}
    if weight is not None:
        dest["weight"] = weight
    return dest


def destination_version(target_name: str | None, destination: dict) -> str | None:
    """The version label ("v3") a route destination or mirror ({host, subset}) sends to."""
    if destination.get("subset"):  # a VirtualService of an earlier release (subsets of `<name>`)
        return str(destination["subset"])
    version = names.version_of_host(target_name, str(destination.get("host") or ""))
    return None if version is None else names.version_label(version)


def _istio_match(match) -> dict:
    """An Istio HTTPMatchRequest from a spec match rule (MatchRule or a plain dict)."""
    headers = match.headers if hasattr(match, "headers") else match.get("headers", {})
    out = {}
    for header, cond in sorted(headers.items()):
        if hasattr(cond, "model_dump"):
            cond = cond.model_dump(exclude_none=True)
        out[header] = {k: v for k, v in cond.items() if v is not None}
    return {"headers": out}


def _split(target: Target, route: RoutePlan, weight: int) -> list[dict]:
    if weight == 0 or route.canary is None:
        return [_destination(target, route.stable, 100)]
    if weight == 100:
        return [_destination(target, route.stable, 0), _destination(target, route.canary, 100)]
    return [_destination(target, route.stable, 100 - weight), _destination(target, route.canary, weight)]


def _and(matches: list[dict] | None, extra: dict) -> list[dict]:
    """Each HTTPMatchRequest of `matches` (None = match everything) with `extra`'s header conditions too."""
    if matches is None:
        return [{"headers": dict(extra)}]
    return [{**m, "headers": {**m.get("headers", {}), **extra}} for m in matches]


def http_routes(target: Target, route: RoutePlan) -> list[dict]:
    """The VirtualService's http list for a routing plan.

    With spec.strategy.cohort only requests matching the cohort can reach the canary (the A/B match,
    the weighted split and the mirror are restricted to them); with spec.strategy.stickiness keyed
    requests of a Canary split go to the canary exactly when their key's bucket is below the weight
    (render/stickiness.py), unkeyed ones by weight."""
    strategy = target.spec.strategy if target.spec is not None else None
    cohort = [_istio_match(m) for m in strategy.cohort.match] if strategy is not None and strategy.cohort else None
    sticky = strategy.stickiness if strategy is not None else None
    bound_gateways = bool(target.spec is not None and target.spec.traffic.gateways)
    routes: list[dict] = []
    for version in sorted(set(route.preview)):
        preview: dict = {"headers": {names.PREVIEW_HEADER: {"exact": names.version_label(version)}}}
        if bound_gateways:  # the sidecars only: no client of an ingress gateway picks a version by header
            preview["gateways"] = [MESH]
        routes.append(
            {
                "name": f"preview-{names.version_label(version)}",
                "match": [preview],
                "route": [_destination(target, version)],
            }
        )
    if route.canary is not None and route.match:
        ab = [_istio_match(m) for m in route.match]
        if cohort is not None:
            ab = [{"headers": {**c["headers"], **a["headers"]}} for c in cohort for a in ab]
        routes.append({"name": "ab-test", "match": ab, "route": [_destination(target, route.canary, 100)]})
    weight = max(0, min(100, int(route.canary_weight))) if route.canary is not None else 0
    if sticky is not None and route.canary is not None and 0 < weight:
        regex = stickiness.bucket_regex(stickiness.canary_buckets(weight, sticky.alphabet), sticky.alphabet)
        if regex is not None:
            routes.append({"name": "sticky-canary", "match": _and(cohort, {sticky.header: {"regex": regex}}),
                           "route": [_destination(target, route.canary, 100)]})  # fmt: skip
        routes.append({"name": "sticky-stable", "match": _and(cohort, {sticky.header: {"regex": ".*"}}),
                       "route": [_destination(target, route.stable, 100)]})  # fmt: skip
    mirror = {}
    if route.canary is not None and route.mirror_percent > 0:
        mirror = {
            "mirror": {"host": _version_host(target, route.canary)},
            "mirrorPercentage": {"value": float(route.mirror_percent)},
        }
    if cohort is not None and route.canary is not None and (weight > 0 or mirror):
        routes.append({"name": "cohort", "match": cohort, "route": _split(target, route, weight), **mirror})
        routes.append({"name": "primary", "route": [_destination(target, route.stable, 100)]})
    else:
        routes.append({"name": "primary", "route": _split(target, route, weight), **mirror})
    if sticky is not None:  # clients can pin an open study to the version that answered its first request
        for http in routes:
            for dest in http["route"]:
                served_by = destination_version(target.name, dest["destination"])
                dest["headers"] = {"response": {"set": {names.SERVED_BY_HEADER: served_by}}}
    return routes


def virtual_service(target: Target, route: RoutePlan) -> dict:
    host = names.service_host(target.name, target.namespace, target.cluster_domain)
    traffic = target.spec.traffic if target.spec is not None else None
    spec: dict = {"hosts": [host, *(h for h in (traffic.hosts if traffic else ()) if h != host)]}
    if traffic is not None and traffic.gateways:
        spec["gateways"] = [MESH, *traffic.gateways]
    spec["http"] = http_routes(target, route)
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": _meta(target, names.service_name(target.name)),
        "spec": spec,
    }


def read_weights(virtual_service_obj: dict) -> dict[str, int]:
    """Version label ("v3") -> weight of the weighted split of a live VirtualService ("cohort" with a
    cohort, else "primary")."""
    name = (virtual_service_obj.get("metadata") or {}).get("name")
    https = (virtual_service_obj.get("spec") or {}).get("http") or []
    split = "cohort" if any(h.get("name") == "cohort" for h in https) else "primary"
    for http in https:
        if http.get("name") == split:
            return {
                str(destination_version(name, r["destination"])): int(r.get("weight", 100))
                for r in http.get("route", [])
            }
    return {}
