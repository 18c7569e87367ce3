"""The live clients of the simulated fleet: a traffic generator that follows the current routing.

``rps`` requests per clock-second (the fleet's injectable clock; `advance` is called every
``tick`` by the fleet's ticker, or by hand in tests) are split STATISTICALLY by the current
VirtualService (`mesh_routing.RoutingTable.split`: route matches, weights, mirrors), a
``headers.share`` of them carrying ``headers.set``. Before any VirtualService is set, traffic
spreads over all ready pods as a plain Kubernetes Service would. The client sidecar's own replies
(404 ``NR`` route miss, 503 ``NC`` undefined subset) are recorded here; what reaches a destination
is handed to the fleet's data plane (`SimulatedFleet.deliver`), which answers 503 ``UH`` when the
destination has no ready pod.

Study traffic (``traffic.studies``, `mdsandbox.studies`): a share of the requests carries a study
key and is routed one by one, so the fleet knows which version answered which study (stickiness).

Client classes (how a request enters): ``traffic.gateway.share`` of the requests come through an
Istio ingress gateway (``name`` = its Gateway resource, ``host`` = the Host they ask for), routed by
the VirtualService only when it binds that gateway and serves that host, and otherwise by the
gateway's own route to the Service (its endpoints, no subsets); ``traffic.nonMesh.share`` come from
clients without a sidecar (kube-proxy: the Service's endpoints, no Istio routing, no client-side
telemetry); the rest are mesh clients (sidecars: the VirtualService when it binds ``mesh``).

The scenario's ``traffic`` block is parsed by `traffic_settings` (unknown fields are errors).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mdsandbox import mesh_routing, studies

if TYPE_CHECKING:
    from mdsandbox.fleet.simulated_fleet import SimulatedFleet

PREDICT_URI = "/v1/models/{model}:predict"
MAX_TICK_SECONDS = 10.0  # a stalled event loop must not release a burst of minutes of traffic at once
CLIENT_MESH, CLIENT_GATEWAY, CLIENT_NON_MESH = "mesh", "gateway", "nonMesh"
CLIENT_CLASSES = (CLIENT_MESH, CLIENT_GATEWAY, CLIENT_NON_MESH)
GATEWAY_WORKLOAD = "istio-ingressgateway"  # the gateway's Deployment (source_workload of what it forwards)


def traffic_settings(traffic: Mapping[str, Any]) -> dict[str, Any]:
    """A scenario ``traffic`` block -> `TrafficGenerator.configure` keyword arguments."""
    unknown = set(traffic) - {"rps", "headers", "studies", "gateway", "nonMesh"}
    if unknown:
        raise ValueError(f"traffic: unknown field(s) {sorted(unknown)}")
    headers = traffic.get("headers") or {}
    if headers and (set(headers) - {"share", "set"}):
        raise ValueError(f"traffic.headers: unknown field(s) {sorted(set(headers) - {'share', 'set'})}")
    gateway = traffic.get("gateway") or None
    if gateway is not None and set(gateway) - {"share", "name", "host"}:
        raise ValueError(f"traffic.gateway: unknown field(s) {sorted(set(gateway) - {'share', 'name', 'host'})}")
    non_mesh = traffic.get("nonMesh") or None
    if non_mesh is not None and set(non_mesh) - {"share"}:
        raise ValueError(f"traffic.nonMesh: unknown field(s) {sorted(set(non_mesh) - {'share'})}")
    return {
        "rps": float(traffic.get("rps", 0.0) or 0.0),
        "header_share": float(headers.get("share", 0.0) or 0.0) if headers else 0.0,
        "header_set": dict(headers.get("set") or {}) if headers else {},
        "study_traffic": traffic.get("studies") or None,
        "gateway": dict(gateway) if gateway else None,
        "non_mesh_share": float((non_mesh or {}).get("share", 0.0) or 0.0),
    }


class TrafficGenerator:
    """Sends the fleet's live traffic (source workload `source_workload`) through its routing."""

    def __init__(self, fleet: SimulatedFleet, source_workload: str = "loadgen") -> None:
        self.fleet = fleet
        self.source_workload = source_workload
        self.rps = 0.0
        self.header_share = 0.0
        self.header_set: dict[str, str] = {}
        self.studies: studies.StudyTraffic | None = None  # keyed study requests (mdsandbox.studies)
        self.gateway_share = 0.0
        self.gateway_name = ""  # <namespace>/<name> of the Gateway resource the gateway clients come through
        self.gateway_host = ""  # the Host header they send
        self.non_mesh_share = 0.0
        self._carry = 0.0  # fractional requests owed from earlier ticks
        self._last_tick: float | None = None

    def configure(self, rps: float | None = None, header_share: float | None = None,
                  header_set: Mapping[str, str] | None = None, study_traffic: Mapping[str, Any] | None = None,
                  gateway: Mapping[str, Any] | None = None, non_mesh_share: float | None = None) -> None:  # fmt: skip
        if study_traffic is not None:
            self.studies = studies.StudyTraffic.from_scenario(study_traffic)
        if gateway is not None:
            share = float(gateway.get("share", 0.0) or 0.0)
            if not 0.0 <= share <= 1.0:
                raise ValueError("traffic.gateway.share must be within 0..1")
            if share > 0 and not (gateway.get("name") and gateway.get("host")):
                raise ValueError("traffic.gateway: needs name (the Gateway, <namespace>/<name>) and host")
            self.gateway_share = share
            self.gateway_name = mesh_routing.normalize_gateway(str(gateway.get("name") or ""), self.fleet.namespace)
            self.gateway_host = str(gateway.get("host") or "").lower()
        if non_mesh_share is not None:
            if not 0.0 <= non_mesh_share <= 1.0:
                raise ValueError("traffic.nonMesh.share must be within 0..1")
            self.non_mesh_share = float(non_mesh_share)
        if self.gateway_share + self.non_mesh_share > 1.0 + 1e-9:
            raise ValueError("traffic.gateway.share + traffic.nonMesh.share must be at most 1")
        if rps is not None:
            if rps < 0:
                raise ValueError("traffic.rps must be >= 0")
            self.rps = float(rps)
        if header_share is not None:
            if not 0.0 <= header_share <= 1.0:
                raise ValueError("traffic.headers.share must be within 0..1")
            self.header_share = float(header_share)
        if header_set is not None:
            self.header_set = {str(k).lower(): str(v) for k, v in header_set.items()}

    def start_clock(self, now: float) -> None:
        """The next `advance()` without `seconds` generates the traffic since `now`."""
        self._last_tick = now

    def advance(self, seconds: float | None = None) -> int:
        """Generate the traffic of `seconds` of clock time (default: since the last call). Returns N."""
        now = self.fleet.clock()
        if seconds is None:
            seconds = 0.0 if self._last_tick is None else now - self._last_tick
        self._last_tick = now
        seconds = max(0.0, min(float(seconds), MAX_TICK_SECONDS))
        self._carry += self.rps * seconds
        n = int(self._carry)
        self._carry -= n
        if n:
            self.generate(n, now)
        return n

    def client_shares(self) -> dict[str, float]:
        """Share of the live requests per client class (mesh = what the other two leave)."""
        return {CLIENT_MESH: max(0.0, 1.0 - self.gateway_share - self.non_mesh_share),
                CLIENT_GATEWAY: self.gateway_share, CLIENT_NON_MESH: self.non_mesh_share}  # fmt: skip

    def generate(self, n: int, now: float | None = None) -> None:
        """Send `n` live requests through the current routing (statistically), per client class."""
        fleet = self.fleet
        now = fleet.clock() if now is None else now
        fleet.totals["generated"] += n
        if self.gateway_share <= 0 and self.non_mesh_share <= 0:
            self._mesh(n, now)
            return
        shares = self.client_shares()
        counts = fleet.rng.multinomial(n, [shares[c] for c in CLIENT_CLASSES])
        self._mesh(int(counts[0]), now)
        self._gateway(int(counts[1]), now)
        self._non_mesh(int(counts[2]), now)

    def _to_service(
        self, n: int, now: float, source: str | None, client: str, source_namespace: str | None = None
    ) -> None:
        """`n` requests balanced over the endpoints of the Service clients call (no VirtualService applies)."""
        fleet = self.fleet
        if n <= 0:
            return
        labels = fleet.entry_labels()
        if labels is None:  # no such Service (yet): the name does not resolve
            fleet.totals["unavailable"] += n
            return
        fleet.deliver((fleet.service_host, None), n, now, False, source, labels, client=client,
                      source_namespace=source_namespace)  # fmt: skip

    def _mesh(self, n: int, now: float) -> None:
        """Mesh clients: their sidecar routes by the VirtualService when it binds ``mesh``."""
        fleet = self.fleet
        source = self.source_workload
        if n <= 0:
            return
        if fleet.routing is None or not fleet.routing.applies(host=fleet.service_host):
            self._to_service(n, now, source, CLIENT_MESH)
            return
        uri = PREDICT_URI.format(model=fleet.model_name)
        if self.studies is not None:
            keyed, n = studies.split_keyed(n, self.studies.share, fleet.rng)
            self._route_studies(keyed, now, source, uri)
        self._split(n, now, source, uri, CLIENT_MESH)

    def _gateway(self, n: int, now: float) -> None:
        """Gateway clients: the gateway routes by the VirtualService only when it binds the gateway and serves
        the requested host; otherwise by its own route to the Service (the Service's endpoints)."""
        fleet = self.fleet
        if n <= 0:
            return
        gw_ns = self.gateway_name.partition("/")[0] or None
        if fleet.routing is None or not fleet.routing.applies(self.gateway_name, self.gateway_host):
            self._to_service(n, now, GATEWAY_WORKLOAD, CLIENT_GATEWAY, gw_ns)
            return
        uri = PREDICT_URI.format(model=fleet.model_name)
        self._split(n, now, GATEWAY_WORKLOAD, uri, CLIENT_GATEWAY, self.gateway_name, gw_ns)

    def _non_mesh(self, n: int, now: float) -> None:
        """Clients without a sidecar: kube-proxy balances over the Service's endpoints (no Istio routing)."""
        self._to_service(n, now, None, CLIENT_NON_MESH)

    def _split(self, n: int, now: float, source: str, uri: str, client: str, gateway: str | None = None,
               source_namespace: str | None = None) -> None:  # fmt: skip
        fleet = self.fleet
        assert fleet.routing is not None
        classes = mesh_routing.traffic_classes(self.header_share, self.header_set)
        split = fleet.routing.split(n, fleet.rng, classes, uri=uri, gateway=gateway)
        fleet.totals["no_route"] += split.no_route
        fleet.totals["no_cluster"] += split.no_cluster
        fleet.totals["mirror_dropped"] += split.mirror_dropped
        fleet.telemetry.local_reply(split.no_route, 404, mesh_routing.FLAG_NO_ROUTE, source,
                                    source_namespace=source_namespace)  # fmt: skip
        fleet.telemetry.local_reply(split.no_cluster, 503, mesh_routing.FLAG_NO_CLUSTER, source,
                                    source_namespace=source_namespace)  # fmt: skip
        for key, c in split.routed.items():
            fleet.deliver(key, c, now, False, source, fleet.routing.subset_labels(mesh_routing.Destination(*key)),
                          client=client, source_namespace=source_namespace)  # fmt: skip
        for key, c in split.mirrored.items():
            fleet.deliver(key, c, now, True, source, fleet.routing.subset_labels(mesh_routing.Destination(*key)),
                          client=client, source_namespace=source_namespace)  # fmt: skip

    def _route_studies(self, n: int, now: float, source: str | None, uri: str) -> None:
        """Keyed study requests, routed one by one so the fleet knows which version answered which study."""
        fleet = self.fleet
        assert self.studies is not None and fleet.routing is not None
        adapter = RandomAdapter(fleet.rng)
        for study, headers, last in self.studies.next_requests(n, fleet.rng):
            rr = fleet.routing.route(headers, adapter, uri=uri)
            version = None
            if rr.response_code is not None:
                reply = 404 if rr.response_code == 404 else 503
                fleet.totals["no_route" if reply == 404 else "no_cluster"] += 1
                fleet.telemetry.local_reply(1, reply, rr.response_flags, source)
            elif rr.destination is not None:
                endpoints = fleet.endpoints(rr.subset_labels)
                if endpoints and fleet.is_our_host(rr.destination.host):
                    version = rr.version_label
                fleet.deliver(rr.destination.key, 1, now, False, source, rr.subset_labels)
                if rr.mirror_destination is not None:
                    fleet.deliver(rr.mirror_destination.key, 1, now, True, source, rr.mirror_subset_labels)
            self.studies.answered_by(study, last, version, rr.response_headers)


class RandomAdapter:
    """numpy Generator -> the `.random()` interface mesh_routing.route wants."""

    def __init__(self, rng: Any) -> None:
        self.rng = rng

    def random(self) -> float:
        return float(self.rng.random())


__all__ = [
    "CLIENT_CLASSES",
    "CLIENT_GATEWAY",
    "CLIENT_MESH",
    "CLIENT_NON_MESH",
    "GATEWAY_WORKLOAD",
    "MAX_TICK_SECONDS",
    "PREDICT_URI",
    "RandomAdapter",
    "TrafficGenerator",
    "traffic_settings",
]
