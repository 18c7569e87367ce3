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


def traffic_settings(traffic: Mapping[str, Any]) -> dict[str, Any]:
    """A scenario ``traffic`` block -> `TrafficGenerator.configure` keyword arguments."""
    unknown = set(traffic) - {"rps", "headers", "studies"}
    if unknown:
        raise ValueError(f"traffic: unknown field(s) {sorted(unknown)}")
    headers = traffic.get("headers") or {}
    if headers and (set(headers) - {"share", "set"}):
        raise ValueError(f"traffic.headers: unknown field(s) {sorted(set(headers) - {'share', 'set'})}")
    return {
        "rps": float(traffic.get("rps", 0.0) or 0.0),
        "header_share": float(headers.get("share", 0.0) or 0.0) if headers else 0.0,
        "header_set": dict(headers.get("set") or {}) if headers else {},
        "study_traffic": traffic.get("studies") or None,
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
        self._carry = 0.0  # fractional requests owed from earlier ticks
        self._last_tick: float | None = None

    def configure(self, rps: float | None = None, header_share: float | None = None,
                  header_set: Mapping[str, str] | None = None, study_traffic: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        if study_traffic is not None:
            self.studies = studies.StudyTraffic.from_scenario(study_traffic)
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

    def generate(self, n: int, now: float | None = None) -> None:
        """Send `n` live requests through the current routing (statistically)."""
        fleet = self.fleet
        now = fleet.clock() if now is None else now
        fleet.totals["generated"] += n
        source = self.source_workload
        if fleet.routing is None:
            fleet.deliver((fleet.service_host, None), n, now, False, source, {})
            return
        uri = PREDICT_URI.format(model=fleet.model_name)
        if self.studies is not None:
            keyed, n = studies.split_keyed(n, self.studies.share, fleet.rng)
            self._route_studies(keyed, now, source, uri)
        classes = mesh_routing.traffic_classes(self.header_share, self.header_set)
        split = fleet.routing.split(n, fleet.rng, classes, uri=uri)
        fleet.totals["no_route"] += split.no_route
        fleet.totals["no_cluster"] += split.no_cluster
        fleet.totals["mirror_dropped"] += split.mirror_dropped
        fleet.telemetry.local_reply(split.no_route, 404, mesh_routing.FLAG_NO_ROUTE, source)
        fleet.telemetry.local_reply(split.no_cluster, 503, mesh_routing.FLAG_NO_CLUSTER, source)
        for key, c in split.routed.items():
            fleet.deliver(key, c, now, False, source, fleet.routing.subset_labels(mesh_routing.Destination(*key)))
        for key, c in split.mirrored.items():
            fleet.deliver(key, c, now, True, source, fleet.routing.subset_labels(mesh_routing.Destination(*key)))

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


__all__ = ["MAX_TICK_SECONDS", "PREDICT_URI", "RandomAdapter", "TrafficGenerator", "traffic_settings"]
