"""Pure model of how Istio (Envoy) routes HTTP requests through a VirtualService + DestinationRule.

The sandbox has no mesh, so the simulated fleet asks this module where each request goes. It
models the parts of networking.istio.io/v1 that ModelDeploy renders and the operator relies on:

* ``spec.http`` is an ordered list of routes; the FIRST route whose ``match`` list matches wins
  (Istio semantics; a route without ``match`` matches everything). No matching route -> Envoy
  answers 404 with response flag ``NR``.
* ``match`` entries (HTTPMatchRequest) are OR-ed; the conditions inside one entry are AND-ed.
  Supported: ``headers`` and ``withoutHeaders`` (StringMatch ``exact`` / ``prefix`` / ``regex``;
  an empty ``{}`` checks presence; header names are case-insensitive; regexes must match the WHOLE
  value, as Envoy's RE2 ``safe_regex`` does), cookie matching via ``headers: {cookie: {regex: ...}}``
  (Istio's documented way), ``uri``, ``method``, ``queryParams``, ``ignoreUriCase``, and
  ``gateways`` (the match applies only to requests that entered through one of those gateways;
  ``mesh`` = the sidecars). Anything else that changes which route matches (sourceLabels,
  sourceNamespace, port) raises `UnsupportedRouting` rather than being silently ignored.
* Binding (``spec.gateways``, ``spec.hosts``): a VirtualService without ``gateways`` applies to the
  sidecars only (the reserved gateway ``mesh``); with ``gateways`` it applies to exactly those
  gateways (``<namespace>/<name>``, a bare name = the VirtualService's namespace) and to the
  sidecars only when ``mesh`` is listed. A gateway applies it to requests whose host is one of
  ``hosts`` (exact, or a ``*.`` wildcard prefix). `RoutingTable.applies` says whether a request
  from a sidecar (gateway None) or through a gateway is routed by this VirtualService at all;
  traffic it does not apply to is NOT routed by it (the caller sends it to the Service, as the
  gateway's own route or kube-proxy would).
* ``route`` destinations ``{destination: {host, subset, port}, weight}``. A single destination gets
  all traffic whatever its weight. With several, a destination receives ``weight / sum(weights)``
  of the requests: that is the documented semantics of current Istio ("Weight specifies the
  relative proportion of traffic ... A destination will receive weight/(sum of all weights)
  requests") and what Envoy's weighted_clusters do. Older Istio releases rejected totals other
  than 100 in their validation webhook (``total destination weight 110 != 100``):
  `validate_virtual_service` reports that as a warning. A total of 0 with several destinations
  raises `UnsupportedRouting` (Envoy would have no cluster to pick).
* ``mirror`` ``{host, subset}`` with ``mirrorPercentage: {value: float}`` (default 100 %), the
  deprecated integer ``mirrorPercent``, and the newer ``mirrors: [{destination, percentage}]`` list.
  Mirrored copies are fire-and-forget: the client never sees their answer. A primary destination
  whose subset the DestinationRule does not define gets 503 ``NC`` (cluster not found) and is not
  mirrored; a mirror to an undefined subset is dropped silently.
* The DestinationRule's ``subsets: [{name, labels}]`` give each subset its pod labels;
  ``version_label`` in results is ``labels[version_label_key]`` (default ``"version"``).
* Services (optional, `ServiceInfo`): Istio's endpoints of a destination are the pods its
  Service's selector selects, narrowed by the subset's labels. Given the namespace's Services, a
  destination resolves to their combined labels, and a host that is no Service gets 503 ``NC``.
  Without them (tests of routing alone) a destination without subset selects every pod.

Not modelled: retries, timeouts, fault injection (raises), redirects (raise), load-balancer
settings, outlier detection, locality, and hosts other than the one the DestinationRule is for
(they are reported as their own destinations, without subset labels).

`route_request` decides one request with a random source (anything with ``.random()``);
`split_requests` is the vectorized form the traffic generator uses: N requests, a share of which
carries extra headers, become per-destination counts (multinomial over weights, binomial for
mirrors). Both take plain dicts (full manifests or their ``spec``) and never mutate them.
"""

from __future__ import annotations

import random as _random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

# The cluster's DNS domain (kubelet's --cluster-domain; istiod's trust of Service FQDNs follows it):
# Services are <name>.<namespace>.svc.<domain>. Every resolution below takes the domain the mesh runs
# with, so hosts rendered for another domain resolve to no Service (503 NC), as on a real cluster.
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
NO_FLAGS = "-"  # Istio's response_flags value when Envoy set none
FLAG_NO_ROUTE = "NR"
FLAG_NO_CLUSTER = "NC"
FLAG_NO_HEALTHY_UPSTREAM = "UH"

_SUPPORTED_MATCH_KEYS = {
    "name",
    "headers",
    "withoutHeaders",
    "uri",
    "method",
    "queryParams",
    "ignoreUriCase",
    "gateways",
}
_HARMLESS_ROUTE_KEYS = {
    "name", "match", "route", "mirror", "mirrorPercentage", "mirrorPercent", "mirrors",
    "timeout", "retries", "rewrite", "headers", "corsPolicy",
}  # fmt: skip
_IGNORED_HEADER_KEYS = {"uri", "scheme", "method", "authority"}  # "will be ignored" per the Istio API
MESH = "mesh"  # Istio's reserved gateway name: every sidecar
_CONFLICT = "\x00conflict"  # a label value no pod has: a Service selector and a subset that disagree


class UnsupportedRouting(ValueError):
    """The VirtualService uses a feature this model does not implement, or is invalid for Envoy."""


class RandomSource(Protocol):
    def random(self) -> float: ...


@dataclass(frozen=True)
class Destination:
    """A route destination as written in the VirtualService."""

    host: str
    subset: str | None = None
    port: int | None = None

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.host, self.subset)


@dataclass(frozen=True)
class ServiceInfo:
    """A Kubernetes Service as Istio sees it: its selector picks the endpoints of its host."""

    name: str
    namespace: str
    selector: Mapping[str, str] = field(default_factory=dict)
    created: str = ""  # metadata.creationTimestamp (RFC 3339): Istio orders a pod's Services by it
    domain: str = DEFAULT_CLUSTER_DOMAIN  # the cluster's DNS domain

    @property
    def host(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{self.domain}"

    @classmethod
    def from_manifest(cls, obj: Mapping[str, Any], domain: str = DEFAULT_CLUSTER_DOMAIN) -> ServiceInfo:
        meta = obj.get("metadata") or {}
        selector = (obj.get("spec") or {}).get("selector") or {}
        return cls(str(meta.get("name")), str(meta.get("namespace") or "default"),
                   {str(k): str(v) for k, v in selector.items()}, str(meta.get("creationTimestamp") or ""),
                   domain)  # fmt: skip


def merge_selectors(service: Mapping[str, str], subset: Mapping[str, str]) -> dict[str, str]:
    """The labels a pod needs to be an endpoint of a Service's subset (both selectors hold).

    A key both set to different values selects no pod: its value becomes one no label can have."""
    merged = dict(service)
    for key, value in subset.items():
        merged[key] = value if merged.get(key, value) == value else _CONFLICT
    return merged


def normalize_gateway(name: str, namespace: str | None) -> str:
    """``mesh`` | ``<namespace>/<name>`` (a bare name is in the VirtualService's namespace)."""
    name = str(name).strip()
    if name == MESH or "/" in name:
        return name
    return f"{namespace or 'default'}/{name}"


def host_matches(pattern: str, host: str, namespace: str | None = None, domain: str = DEFAULT_CLUSTER_DOMAIN) -> bool:
    """A VirtualService host (exact or ``*.`` wildcard prefix) against a request's host."""
    pattern, host = pattern.strip().lower(), host.strip().lower()
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return same_host(pattern, host, namespace, domain)


@dataclass(frozen=True)
class RoutingResult:
    """Where one request went.

    ``response_code`` is None when the request was forwarded to ``destination``; otherwise the
    sidecar answered itself (404 ``NR`` no route matched, 503 ``NC`` subset/cluster not defined).
    """

    route_index: int | None
    route_name: str | None
    destination: Destination | None
    subset: str | None
    version_label: str | None
    subset_labels: Mapping[str, str] = field(default_factory=dict)
    mirror_destination: Destination | None = None
    mirror_subset: str | None = None
    mirror_version_label: str | None = None
    mirror_subset_labels: Mapping[str, str] = field(default_factory=dict)
    response_code: int | None = None
    response_flags: str = NO_FLAGS
    response_headers: Mapping[str, str] = field(default_factory=dict)  # set by the chosen destination

    @property
    def forwarded(self) -> bool:
        return self.response_code is None

    @property
    def mirrored(self) -> bool:
        return self.mirror_destination is not None


@dataclass
class TrafficSplit:
    """Counts from `split_requests`: where N requests (and their mirrored copies) went."""

    total: int = 0
    routed: dict[tuple[str, str | None], int] = field(default_factory=dict)
    mirrored: dict[tuple[str, str | None], int] = field(default_factory=dict)
    no_route: int = 0  # 404 NR
    no_cluster: int = 0  # 503 NC
    mirror_dropped: int = 0
    subset_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    version_label_key: str = "version"
    labels: dict[tuple[str, str | None], dict[str, str]] = field(default_factory=dict)  # pod labels per destination

    def _by_version(self, counts: Mapping[tuple[str, str | None], int]) -> dict[str | None, int]:
        out: dict[str | None, int] = {}
        for key, n in counts.items():
            label = self.labels.get(key, {}).get(self.version_label_key)
            out[label] = out.get(label, 0) + n
        return out

    @property
    def per_version(self) -> dict[str | None, int]:
        """Forwarded requests per subset version label (None: no subset / no version label)."""
        return self._by_version(self.routed)

    @property
    def mirrored_per_version(self) -> dict[str | None, int]:
        return self._by_version(self.mirrored)

    @property
    def per_subset(self) -> dict[str | None, int]:
        out: dict[str | None, int] = {}
        for (_host, subset), n in self.routed.items():
            out[subset] = out.get(subset, 0) + n
        return out


# --------------------------------------------------------------------------- helpers
def _spec(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not obj:
        return {}
    if "spec" in obj and isinstance(obj["spec"], Mapping):
        return obj["spec"]
    return obj


def canonical_host(host: str, namespace: str | None, domain: str = DEFAULT_CLUSTER_DOMAIN) -> str:
    """Expand a short service host the way Istio does (``svc`` / ``svc.ns`` -> ``svc.ns.svc.<domain>``)."""
    host = host.strip().lower()
    parts = host.split(".")
    if len(parts) == 1 and namespace:
        return f"{host}.{namespace}.svc.{domain}"
    if len(parts) == 2:
        return f"{host}.svc.{domain}"
    if host.endswith(".svc"):
        return f"{host}.{domain}"
    return host


def same_host(a: str, b: str, namespace: str | None = None, domain: str = DEFAULT_CLUSTER_DOMAIN) -> bool:
    ca, cb = canonical_host(a, namespace, domain), canonical_host(b, namespace, domain)
    if ca == cb:
        return True
    if namespace is None and ("." not in a or "." not in b):
        return a.split(".")[0].lower() == b.split(".")[0].lower()
    return False


def _string_match(spec: Mapping[str, Any] | None, value: str | None, *, ignore_case: bool = False) -> bool:
    """Istio StringMatch against one value (None = absent). Empty spec = presence check."""
    if value is None:
        return False
    if not spec:
        return True
    if len(spec) != 1:
        raise UnsupportedRouting(f"a StringMatch has exactly one of exact/prefix/regex, got {dict(spec)}")
    ((kind, pattern),) = spec.items()
    pattern = "" if pattern is None else str(pattern)
    if kind == "exact":
        return value.lower() == pattern.lower() if ignore_case else value == pattern
    if kind == "prefix":
        return value.lower().startswith(pattern.lower()) if ignore_case else value.startswith(pattern)
    if kind == "regex":
        try:
            return re.fullmatch(pattern, value, re.IGNORECASE if ignore_case else 0) is not None
        except re.error as exc:
            raise UnsupportedRouting(f"invalid regex {pattern!r}: {exc}") from exc
    raise UnsupportedRouting(f"unknown StringMatch kind {kind!r} (exact, prefix, regex)")


def _lower_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (headers or {}).items()}


def _match_one(
    match: Mapping[str, Any],
    headers: Mapping[str, str],
    uri: str,
    method: str,
    query: Mapping[str, str],
    gateway: str = MESH,
    namespace: str | None = None,
) -> bool:
    unknown = set(match) - _SUPPORTED_MATCH_KEYS
    if unknown:
        raise UnsupportedRouting(f"HTTPMatchRequest fields not modelled: {sorted(unknown)}")
    gateways = match.get("gateways")
    if gateways and gateway not in {normalize_gateway(g, namespace) for g in gateways}:
        return False  # this match is for other gateways (it overrides the VirtualService's own list)
    for name, sm in (match.get("headers") or {}).items():
        if name.lower() in _IGNORED_HEADER_KEYS:
            continue
        if not _string_match(sm, headers.get(name.lower())):
            return False
    for name, sm in (match.get("withoutHeaders") or {}).items():
        if name.lower() in _IGNORED_HEADER_KEYS:
            continue
        if _string_match(sm, headers.get(name.lower())):
            return False
    if "uri" in match and not _string_match(match["uri"], uri, ignore_case=bool(match.get("ignoreUriCase"))):
        return False
    if "method" in match and not _string_match(match["method"], method):
        return False
    for name, sm in (match.get("queryParams") or {}).items():
        if sm and "prefix" in sm:
            raise UnsupportedRouting("queryParams support exact and regex only (Istio)")
        if not _string_match(sm, query.get(name)):
            return False
    return True


@dataclass(frozen=True)
class _Mirror:
    destination: Destination
    fraction: float  # 0..1


@dataclass(frozen=True)
class _Route:
    index: int
    name: str | None
    matches: tuple[Mapping[str, Any], ...]
    destinations: tuple[Destination, ...]
    fractions: tuple[float, ...]
    mirrors: tuple[_Mirror, ...]
    response_headers: tuple[Mapping[str, str], ...] = ()  # per destination: headers.response.set

    def matches_request(self, headers: Mapping[str, str], uri: str, method: str, query: Mapping[str, str],
                        gateway: str = MESH, namespace: str | None = None) -> bool:  # fmt: skip
        if not self.matches:
            return True
        return any(_match_one(m, headers, uri, method, query, gateway, namespace) for m in self.matches)


def _destination(raw: Mapping[str, Any] | None, where: str) -> Destination:
    if not raw or not raw.get("host"):
        raise UnsupportedRouting(f"{where}: destination.host is required")
    port = raw.get("port")
    number = port.get("number") if isinstance(port, Mapping) else port
    return Destination(str(raw["host"]), raw.get("subset") or None, int(number) if number else None)


def _percent(raw: Any, where: str) -> float:
    value = raw.get("value", 0.0) if isinstance(raw, Mapping) else raw
    value = float(value or 0.0)
    if not 0.0 <= value <= 100.0:
        raise UnsupportedRouting(f"{where}: percentage {value} outside 0..100")
    return value / 100.0


def _compile_route(index: int, raw: Mapping[str, Any]) -> _Route:
    where = f"http[{index}]"
    unknown = set(raw) - _HARMLESS_ROUTE_KEYS
    if unknown:
        raise UnsupportedRouting(f"{where}: fields not modelled: {sorted(unknown)}")
    dests_raw = raw.get("route") or []
    if not dests_raw:
        raise UnsupportedRouting(f"{where}: a route needs at least one destination")
    destinations = tuple(_destination(d.get("destination"), f"{where}.route[{i}]") for i, d in enumerate(dests_raw))
    if len(destinations) == 1:
        fractions: tuple[float, ...] = (1.0,)
    else:
        weights = [d.get("weight") or 0 for d in dests_raw]
        if any(w < 0 for w in weights):
            raise UnsupportedRouting(f"{where}: negative weight in {weights}")
        total = float(sum(weights))
        if total <= 0:
            raise UnsupportedRouting(f"{where}: total destination weight is 0")
        fractions = tuple(w / total for w in weights)
    mirrors: list[_Mirror] = []
    if raw.get("mirror"):
        if "mirrorPercentage" in raw:
            fraction = _percent(raw["mirrorPercentage"], f"{where}.mirrorPercentage")
        elif "mirrorPercent" in raw:
            fraction = _percent(raw["mirrorPercent"], f"{where}.mirrorPercent")
        else:
            fraction = 1.0  # Istio: mirror without a percentage mirrors everything
        mirrors.append(_Mirror(_destination(raw["mirror"], f"{where}.mirror"), fraction))
    for i, m in enumerate(raw.get("mirrors") or []):
        fraction = _percent(m["percentage"], f"{where}.mirrors[{i}]") if "percentage" in m else 1.0
        mirrors.append(_Mirror(_destination(m.get("destination"), f"{where}.mirrors[{i}]"), fraction))
    response_headers = tuple(_response_set(d, f"{where}.route[{i}]") for i, d in enumerate(dests_raw))
    return _Route(index, raw.get("name"), tuple(raw.get("match") or ()), destinations, fractions, tuple(mirrors),
                  response_headers)  # fmt: skip


def _response_set(raw: Mapping[str, Any], where: str) -> Mapping[str, str]:
    """HTTPRouteDestination.headers.response.set (what Envoy sets on the response of that destination)."""
    headers = raw.get("headers") or {}
    unknown = set(headers) - {"response"} or set(headers.get("response") or {}) - {"set"}
    if unknown:
        raise UnsupportedRouting(f"{where}.headers: only response.set is modelled, got {sorted(unknown)}")
    return {str(k).lower(): str(v) for k, v in ((headers.get("response") or {}).get("set") or {}).items()}


class RoutingTable:
    """A compiled VirtualService + DestinationRule pair. Build once, route many requests."""

    def __init__(
        self,
        virtual_service: Mapping[str, Any] | None,
        destination_rule: Mapping[str, Any] | None = None,
        *,
        namespace: str | None = None,
        version_label_key: str = "version",
        services: Sequence[ServiceInfo] | None = None,
        cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
    ) -> None:
        vs = _spec(virtual_service)
        self.domain = cluster_domain
        dr = _spec(destination_rule)
        meta_ns = None
        for obj in (virtual_service, destination_rule):
            if obj and isinstance(obj.get("metadata"), Mapping):
                meta_ns = meta_ns or obj["metadata"].get("namespace")
        self.namespace = namespace or meta_ns
        self.version_label_key = version_label_key
        self.hosts: tuple[str, ...] = tuple(vs.get("hosts") or ())
        self.gateways = frozenset(normalize_gateway(g, self.namespace) for g in vs.get("gateways") or [MESH])
        self.services: dict[str, ServiceInfo] | None = (
            None if services is None else {canonical_host(s.host, None, self.domain): s for s in services}
        )
        self.routes: tuple[_Route, ...] = tuple(_compile_route(i, r) for i, r in enumerate(vs.get("http") or []))
        self.dr_host: str | None = dr.get("host")
        self.subsets: dict[str, dict[str, str]] = {
            str(s["name"]): {str(k): str(v) for k, v in (s.get("labels") or {}).items()}
            for s in dr.get("subsets") or []
        }

    # -- binding and resolution
    def applies(self, gateway: str | None = None, host: str | None = None) -> bool:
        """Is a request routed by this VirtualService? From a sidecar (gateway None) when it binds
        ``mesh``; through a gateway when it binds that gateway; in both cases only for a request to
        one of its hosts (`host` None: not checked). Short hosts expand with the mesh's domain, so a
        VirtualService written for another cluster domain routes none of the sidecars' requests."""
        if gateway is None:
            bound = MESH in self.gateways
        else:
            bound = normalize_gateway(gateway, self.namespace) in self.gateways
        if not bound:
            return False
        return host is None or any(host_matches(h, host, self.namespace, self.domain) for h in self.hosts)

    def service(self, host: str) -> ServiceInfo | None:
        """The Service behind a destination host (None when Services are not modelled or it is none)."""
        if self.services is None:
            return None
        return self.services.get(canonical_host(host, self.namespace, self.domain))

    def subset_labels(self, destination: Destination) -> dict[str, str] | None:
        """Pod labels a destination selects ({} = every pod, when Services are not modelled), None if
        its cluster does not exist (no such Service, or the subset is undefined: 503 NC)."""
        base: dict[str, str] = {}
        if self.services is not None:
            svc = self.service(destination.host)
            if svc is None:
                return None
            base = dict(svc.selector) if svc.selector else {"\x00no-selector": _CONFLICT}  # manual endpoints: none here
        if destination.subset is None:
            return base
        if self.dr_host is not None and not same_host(destination.host, self.dr_host, self.namespace, self.domain):
            return None  # this DestinationRule does not define subsets for that host
        subset = self.subsets.get(destination.subset)
        return None if subset is None else merge_selectors(base, subset)

    def match(
        self,
        headers: Mapping[str, str] | None = None,
        uri: str = "/",
        method: str = "POST",
        query: Mapping[str, str] | None = None,
        gateway: str | None = None,
    ) -> _Route | None:
        hdrs = _lower_headers(headers)
        gw = MESH if gateway is None else normalize_gateway(gateway, self.namespace)
        for route in self.routes:
            if route.matches_request(hdrs, uri, method, query or {}, gw, self.namespace):
                return route
        return None

    # -- one request
    def route(
        self,
        headers: Mapping[str, str] | None,
        rng: RandomSource,
        uri: str = "/",
        method: str = "POST",
        query: Mapping[str, str] | None = None,
        gateway: str | None = None,
    ) -> RoutingResult:
        """Route one request from a sidecar (gateway None) or through `gateway` (see `applies`)."""
        route = self.match(headers, uri, method, query, gateway)
        if route is None:
            return RoutingResult(None, None, None, None, None, response_code=404, response_flags=FLAG_NO_ROUTE)
        draw = rng.random()
        chosen = route.destinations[-1]
        chosen_index = len(route.destinations) - 1
        acc = 0.0
        for i, (dest, frac) in enumerate(zip(route.destinations, route.fractions)):
            acc += frac
            if frac > 0 and draw < acc:
                chosen, chosen_index = dest, i
                break
        labels = self.subset_labels(chosen)
        if labels is None:
            return RoutingResult(
                route.index, route.name, chosen, chosen.subset, None,
                response_code=503, response_flags=FLAG_NO_CLUSTER,
            )  # fmt: skip
        mirror_dest: Destination | None = None
        mirror_labels: Mapping[str, str] = {}
        for mirror in route.mirrors:  # Istio sends to every mirror independently; we report the first taken
            if rng.random() < mirror.fraction:
                resolved = self.subset_labels(mirror.destination)
                if resolved is not None and mirror_dest is None:
                    mirror_dest, mirror_labels = mirror.destination, resolved
        return RoutingResult(
            route_index=route.index,
            route_name=route.name,
            destination=chosen,
            subset=chosen.subset,
            version_label=labels.get(self.version_label_key),
            subset_labels=labels,
            mirror_destination=mirror_dest,
            mirror_subset=mirror_dest.subset if mirror_dest else None,
            mirror_version_label=mirror_labels.get(self.version_label_key) if mirror_dest else None,
            mirror_subset_labels=mirror_labels,
            response_headers=dict(route.response_headers[chosen_index]) if route.response_headers else {},
        )

    # -- many requests
    def split(
        self,
        n: int,
        rng: np.random.Generator | _random.Random,
        classes: Sequence[tuple[float, Mapping[str, str]]] = ((1.0, {}),),
        uri: str = "/",
        method: str = "POST",
        gateway: str | None = None,
    ) -> TrafficSplit:
        """Split `n` requests over destinations. `classes` = [(share, headers)], shares summing to 1;
        from sidecars (gateway None) or through `gateway`."""
        gen = _numpy_rng(rng)
        out = TrafficSplit(subset_labels={k: dict(v) for k, v in self.subsets.items()},
                           version_label_key=self.version_label_key)  # fmt: skip
        if n <= 0:
            return out
        out.total = int(n)
        shares = np.array([max(0.0, float(s)) for s, _ in classes], dtype=float)
        if shares.sum() <= 0:
            raise ValueError("class shares must sum to a positive number")
        per_class = gen.multinomial(int(n), shares / shares.sum())
        for (_, headers), count in zip(classes, per_class):
            if count == 0:
                continue
            route = self.match(headers, uri, method, gateway=gateway)
            if route is None:
                out.no_route += int(count)
                continue
            counts = gen.multinomial(int(count), np.array(route.fractions))
            forwarded = 0
            for dest, c in zip(route.destinations, counts):
                if c == 0:
                    continue
                if self.subset_labels(dest) is None:
                    out.no_cluster += int(c)
                    continue
                out.routed[dest.key] = out.routed.get(dest.key, 0) + int(c)
                out.labels[dest.key] = self.subset_labels(dest) or {}
                forwarded += int(c)
            for mirror in route.mirrors:
                m = int(gen.binomial(forwarded, mirror.fraction)) if forwarded else 0
                if m == 0:
                    continue
                if self.subset_labels(mirror.destination) is None:
                    out.mirror_dropped += m
                    continue
                key = mirror.destination.key
                out.mirrored[key] = out.mirrored.get(key, 0) + m
                out.labels[key] = self.subset_labels(mirror.destination) or {}
        return out


def _numpy_rng(rng: np.random.Generator | _random.Random | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    return np.random.default_rng(rng.getrandbits(64))


# --------------------------------------------------------------------------- public functions
def route_request(
    virtual_service: Mapping[str, Any] | None,
    destination_rule: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None,
    rng: RandomSource,
    *,
    uri: str = "/",
    method: str = "POST",
    query: Mapping[str, str] | None = None,
    namespace: str | None = None,
    version_label_key: str = "version",
) -> RoutingResult:
    """Route one request (see the module docstring for the semantics)."""
    table = RoutingTable(virtual_service, destination_rule, namespace=namespace, version_label_key=version_label_key)
    return table.route(headers, rng, uri=uri, method=method, query=query)


def split_requests(
    virtual_service: Mapping[str, Any] | None,
    destination_rule: Mapping[str, Any] | None,
    n: int,
    rng: np.random.Generator | _random.Random,
    *,
    header_share: float = 0.0,
    header_set: Mapping[str, str] | None = None,
    base_headers: Mapping[str, str] | None = None,
    uri: str = "/",
    method: str = "POST",
    namespace: str | None = None,
    version_label_key: str = "version",
) -> TrafficSplit:
    """Split `n` requests; a `header_share` of them carry `header_set` on top of `base_headers`."""
    table = RoutingTable(virtual_service, destination_rule, namespace=namespace, version_label_key=version_label_key)
    return table.split(n, rng, traffic_classes(header_share, header_set, base_headers), uri=uri, method=method)


def traffic_classes(
    header_share: float = 0.0,
    header_set: Mapping[str, str] | None = None,
    base_headers: Mapping[str, str] | None = None,
) -> list[tuple[float, dict[str, str]]]:
    """[(share, headers)] for a population where `header_share` of requests carry `header_set`."""
    if not 0.0 <= header_share <= 1.0:
        raise ValueError(f"header share {header_share} outside 0..1")
    base = dict(base_headers or {})
    if not header_set or header_share == 0.0:
        return [(1.0, base)]
    return [(1.0 - header_share, base), (header_share, {**base, **header_set})]


def validate_virtual_service(
    virtual_service: Mapping[str, Any], destination_rule: Mapping[str, Any] | None = None
) -> list[str]:
    """Warnings a real mesh would give (older validation webhooks, undefined subsets). Raises on unsupported."""
    table = RoutingTable(virtual_service, destination_rule)
    warnings: list[str] = []
    for raw_index, raw in enumerate(_spec(virtual_service).get("http") or []):
        dests = raw.get("route") or []
        if len(dests) > 1:
            total = sum(d.get("weight") or 0 for d in dests)
            if total != 100:
                warnings.append(
                    f"http[{raw_index}]: total destination weight {total} != 100 (normalised here and by current "
                    "Istio; rejected by older validation webhooks)"
                )
    for route in table.routes:
        for dest in (*route.destinations, *(m.destination for m in route.mirrors)):
            if table.subset_labels(dest) is None:
                warnings.append(f"http[{route.index}]: subset {dest.subset!r} of {dest.host} is not defined (503 NC)")
    return warnings


def selects(subset_labels: Mapping[str, str], pod_labels: Mapping[str, str]) -> bool:
    """True if a subset's label selector selects a pod with `pod_labels` (all labels equal)."""
    return all(pod_labels.get(k) == v for k, v in subset_labels.items())


__all__ = [
    "Destination",
    "MESH",
    "ServiceInfo",
    "FLAG_NO_CLUSTER",
    "FLAG_NO_HEALTHY_UPSTREAM",
    "FLAG_NO_ROUTE",
    "NO_FLAGS",
    "RoutingResult",
    "RoutingTable",
    "TrafficSplit",
    "UnsupportedRouting",
    "canonical_host",
    "host_matches",
    "merge_selectors",
    "normalize_gateway",
    "route_request",
    "same_host",
    "selects",
    "split_requests",
    "traffic_classes",
    "validate_virtual_service",
]
