"""`SimulatedFleet`: every TF Serving pod of every version of ONE ModelDeployment, on 127.0.0.1.

The fleet holds the state a cluster would: which versions exist, how many pods each has and how
they behave (`behaviour`), the routing the operator wrote (`set_routing` with the live
VirtualService/DestinationRule and the namespace's Services: `set_routing`, `set_services`), and the
data plane that turns "n requests reach this destination" into pods answering (`deliver`): endpoint
selection by the Service's selector and the subset's labels, latency and errors
from the version's behaviour, Istio metrics from both sidecars (`istio_metrics`) and TF Serving's
own per-pod metrics (`tfserving_metrics`); its other parts are listed in the package docstring.

One aiohttp server (`start`) serves GET /metrics (the sidecars' Istio metrics), GET
/pods/<pod>/monitoring/prometheus/metrics (each pod's TF Serving metrics), GET /fleet/stats and
the REST API. The sandbox feeds it what the operator writes (`set_routing`; `set_ready` when the
Deployment controller's pods become ready) and points a real Prometheus at `scrape_targets()`.

Version behaviour changes (``changes: [{after: s, ...}]``) apply ``after`` seconds of the injectable
``clock`` after the version FIRST receives live or mirrored traffic from the traffic generator
(REST calls, e.g. the evaluator's, do not start that clock). Requests a subset sends to a version
without ready pods get Envoy's 503 ``UH`` from the CLIENT sidecar: they appear only with
reporter="source" and destination_workload/version "unknown", exactly as in a real mesh.

Live clients come in three classes (`traffic`): mesh clients (sidecars, routed by the
VirtualService when it binds ``mesh``), clients entering through an ingress gateway (routed by it
only when it binds that gateway, else by the gateway's own route to the Service) and clients
without a sidecar (kube-proxy: the Service's endpoints, no Istio routing at all). The fleet counts
the live answers per class and version, and which of them came from a version that had not been
the stable one by that moment (`set_stable`; "unvetted"): BlueGreen and Shadow must never give one
to a client that did not ask for the preview.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from mdsandbox import mesh_routing
from mdsandbox.fleet.behaviour import VersionBehaviour
from mdsandbox.fleet.istio_metrics import IstioTelemetry, workload_name
from mdsandbox.fleet.tfserving_api import TFServingRestApi
from mdsandbox.fleet.tfserving_metrics import TFS_METRICS_PATH, PodMetrics, record_requests
from mdsandbox.fleet.traffic import (
    CLIENT_CLASSES,
    CLIENT_MESH,
    CLIENT_NON_MESH,
    RandomAdapter,
    TrafficGenerator,
    traffic_settings,
)
from mdsandbox.prometheus_process import LISTEN_HOST, ScrapeTarget
from mdsandbox.synthetic_golden import GoldenSet

log = logging.getLogger(__name__)


@dataclass
class VersionStats:
    requests: int = 0  # live requests served (any code), not mirrored
    errors: int = 0  # of which 5xx
    mirrored: int = 0
    mirrored_errors: int = 0
    rest_requests: int = 0
    rest_errors: int = 0


@dataclass
class VersionState:
    version: str
    base: VersionBehaviour
    pods: int = 0  # pods that exist (set_ready); they are ready only if the behaviour says so
    first_traffic_at: float | None = None
    stats: VersionStats = field(default_factory=VersionStats)
    pod_states: dict[str, PodMetrics] = field(default_factory=dict)
    changes_seen: dict[float, float] = field(default_factory=dict)  # change.after -> clock time applied
    # Deployment -> (its pods' labels, ready pods), as the Deployment controller reports them; empty when
    # the fleet is driven by `set_ready` alone (tests, standalone), then `pod_labels` says the labels.
    workloads: dict[str, tuple[dict[str, str], int]] = field(default_factory=dict)


class SimulatedFleet:
    """All TF Serving pods + Istio sidecars + live clients of one ModelDeployment (module docstring)."""

    def __init__(
        self,
        namespace: str,
        service: str,
        model_name: str,
        versions: Mapping[str | int, Mapping[str, Any] | VersionBehaviour] | None = None,
        traffic: Mapping[str, Any] | None = None,
        *,
        golden: GoldenSet | None = None,
        clock: Callable[[], float] = time.monotonic,
        tick: float = 0.1,
        time_scale: float = 1.0,
        seed: int | None = None,
        port: int = 0,
        source_workload: str = "loadgen",
        pod_labels: Callable[[str], Mapping[str, str]] | None = None,
        version_label_key: str = "version",
        cluster_domain: str = mesh_routing.DEFAULT_CLUSTER_DOMAIN,
    ) -> None:
        self.namespace = namespace
        self.cluster_domain = cluster_domain  # kubelet's --cluster-domain: Services are <svc>.<ns>.svc.<domain>
        self.service = service
        self.model_name = model_name
        self.golden = golden or GoldenSet()
        self.clock = clock
        self.tick = float(tick)
        self.time_scale = float(time_scale)
        self.port = int(port)
        self.version_label_key = version_label_key
        self._pod_labels = pod_labels or self.default_pod_labels
        self.rng = np.random.default_rng(seed)
        self.versions: dict[str, VersionState] = {}
        for v, raw in (versions or {}).items():
            self.add_version(str(v), raw)
        self.traffic = TrafficGenerator(self, source_workload)
        self.set_traffic(**traffic_settings(traffic or {}))
        self.routing: mesh_routing.RoutingTable | None = None
        self.routing_specs: tuple[Any, Any] | None = None
        self.services: list[mesh_routing.ServiceInfo] | None = None  # None: not modelled (routing-only tests)
        self.vetted: set[str] | None = None  # every version stable so far (`set_stable`); None: not tracked
        self.client_stats: dict[str, dict[str, dict[str, int]]] = {
            c: {"served": {}, "unvetted": {}} for c in CLIENT_CLASSES
        }
        self.totals = {"generated": 0, "no_route": 0, "no_cluster": 0, "unavailable": 0,
                       "mirror_dropped": 0, "other_hosts": 0}  # fmt: skip
        self.telemetry = IstioTelemetry(namespace, service, cluster_domain)
        self.rest_api = TFServingRestApi(self)
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_scenario(cls, scenario: Mapping[str, Any], **kwargs: Any) -> SimulatedFleet:
        """A fleet for a sandbox scenario dict (inline ``modelDeployment``, ``versions``, ``traffic``)."""
        md = scenario.get("modelDeployment") or {}
        if "metadata" not in md:
            raise ValueError("modelDeployment: needs an inline manifest here (resolve `file:` first)")
        meta, spec = md["metadata"], md.get("spec") or {}
        versions = scenario.get("versions") or {}
        if not isinstance(versions, Mapping):
            raise ValueError("versions: must be a mapping of version -> behaviour")
        return cls(
            namespace=meta.get("namespace", "default"),
            service=meta["name"],
            model_name=(spec.get("model") or {}).get("name", meta["name"]),
            versions=versions,
            traffic=scenario.get("traffic") or {},
            **kwargs,
        )

    def default_pod_labels(self, version: str) -> dict[str, str]:
        """Pod labels of a version nobody reported (`set_ready` alone): Istio's app/version convention."""
        return {"app": self.service, "version": f"v{version}"}

    def add_version(self, version: str | int, behaviour: Mapping[str, Any] | VersionBehaviour | None = None) -> None:
        version = str(version)
        if isinstance(behaviour, VersionBehaviour):
            parsed, replicas = behaviour, None
        else:
            raw = dict(behaviour or {})
            replicas = raw.pop("replicas", None)
            parsed = VersionBehaviour.from_scenario(raw, f'versions["{version}"]')
        state = self.versions.get(version)
        if state is None:
            self.versions[version] = VersionState(version, parsed)
        else:
            state.base = parsed
        if replicas is not None:
            self.set_ready(version, int(replicas))

    # ------------------------------------------------------------------ identity helpers
    @property
    def service_host(self) -> str:
        return self.telemetry.service_host

    def workload(self, version: str) -> str:
        return workload_name(self.service, version)

    def pod_names(self, version: str) -> list[str]:
        """Deterministic, Kubernetes-looking pod names: <deployment>-<rs hash>-<suffix>."""
        state = self.versions[str(version)]
        alphabet = "bcdfghjklmnpqrstvwxz2456789"

        def word(seed: str, n: int) -> str:
            h = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
            return "".join(alphabet[(h // len(alphabet) ** i) % len(alphabet)] for i in range(n))

        rs = word(f"{self.namespace}/{self.service}/{version}", 10)
        return [f"{self.workload(version)}-{rs}-{word(f'{rs}/{i}', 5)}" for i in range(state.pods)]

    def ready_replicas(self, version: str | int) -> int:
        state = self.versions.get(str(version))
        if state is None:
            return 0
        return state.pods if self.behaviour(state.version).ready else 0

    # ------------------------------------------------------------------ control
    def set_routing(
        self, virtual_service: Mapping[str, Any] | None, destination_rule: Mapping[str, Any] | None
    ) -> None:
        """Route by this VirtualService/DestinationRule from now on (None: plain Service balancing)."""
        if virtual_service is None:
            self.routing, self.routing_specs = None, None
            return
        self.routing = mesh_routing.RoutingTable(
            virtual_service, destination_rule, namespace=self.namespace, version_label_key=self.version_label_key,
            services=self.services, cluster_domain=self.cluster_domain,
        )  # fmt: skip
        self.routing_specs = (virtual_service, destination_rule)

    def set_services(self, services: list[Mapping[str, Any]] | None) -> None:
        """The namespace's Services (manifests) from now on: destinations and kube-proxy clients resolve
        through their selectors, and the server sidecars name them in destination_service_name."""
        self.services = (
            None
            if services is None
            else [mesh_routing.ServiceInfo.from_manifest(s, self.cluster_domain) for s in services]
        )
        if self.routing_specs is not None:
            self.set_routing(*self.routing_specs)

    def set_stable(self, version: str | int) -> None:
        """`version` is stable now: from now on answers from a version never stable count as unvetted."""
        self.vetted = (self.vetted or set()) | {str(version)}

    def set_ready(self, version: str | int, ready_replicas: int) -> None:
        """`ready_replicas` pods of `version` exist and are ready (unless its behaviour has ready: false)."""
        version = str(version)
        if ready_replicas < 0:
            raise ValueError("ready_replicas must be >= 0")
        if version not in self.versions:
            self.add_version(version, None)  # a version the scenario did not describe: defaults
        state = self.versions[version]
        state.pods = int(ready_replicas)
        for name in self.pod_names(version):
            state.pod_states.setdefault(name, PodMetrics(name, version))

    def set_workload_ready(self, version: str | int, workload: str, labels: Mapping[str, str], ready: int) -> None:
        """`ready` pods of Deployment `workload`, labelled `labels` (its pod template's), serve `version`.

        Subsets then select these pods by their REAL labels: pods the operator labelled wrongly get no
        traffic, as in a mesh."""
        version = str(version)
        if ready < 0:
            raise ValueError("ready must be >= 0")
        if version not in self.versions:
            self.add_version(version, None)
        state = self.versions[version]
        state.workloads[workload] = (dict(labels), int(ready))
        self.set_ready(version, sum(n for _, n in state.workloads.values()))

    def set_behaviour(self, version: str | int, behaviour: Mapping[str, Any] | VersionBehaviour | None = None,
                      **overrides: Any) -> None:  # fmt: skip
        """Replace (`behaviour`) and/or override (scenario or snake_case keys) a version's behaviour."""
        version = str(version)
        if version not in self.versions or behaviour is not None:
            self.add_version(version, behaviour)
        if overrides:
            state = self.versions[version]
            state.base = state.base.with_overrides(overrides)

    def set_traffic(self, rps: float | None = None, header_share: float | None = None,
                    header_set: Mapping[str, str] | None = None, study_traffic: Mapping[str, Any] | None = None,
                    gateway: Mapping[str, Any] | None = None, non_mesh_share: float | None = None) -> None:  # fmt: skip
        """Change the live traffic (`TrafficGenerator.configure`)."""
        self.traffic.configure(rps, header_share, header_set, study_traffic, gateway, non_mesh_share)

    @property
    def rps(self) -> float:
        return self.traffic.rps

    @property
    def studies(self) -> Any:
        """The keyed study traffic (`mdsandbox.studies.StudyTraffic`), when the scenario has one."""
        return self.traffic.studies

    def advance(self, seconds: float | None = None) -> int:
        """Generate the traffic of `seconds` of clock time (default: since the last call). Returns N."""
        return self.traffic.advance(seconds)

    def generate(self, n: int, now: float | None = None) -> None:
        """Send `n` live requests through the current routing (statistically)."""
        self.traffic.generate(n, now)

    def behaviour(self, version: str | int, now: float | None = None) -> VersionBehaviour:
        """The version's behaviour in effect now (base + changes due since its first traffic)."""
        state = self.versions[str(version)]
        now = self.clock() if now is None else now
        elapsed = None if state.first_traffic_at is None else now - state.first_traffic_at
        current, applied = state.base.effective(elapsed)
        for ch in applied:
            state.changes_seen.setdefault(ch.after, state.first_traffic_at + ch.after)  # type: ignore[operator]
        return current

    # ------------------------------------------------------------------ the data plane
    def endpoints(self, subset_labels: Mapping[str, str]) -> list[tuple[str, int]]:
        """(version, ready pods) selected by a subset's labels ({} = the whole Service)."""
        out = []
        for v, state in self.versions.items():
            ready = self.ready_replicas(v)
            if not ready:
                continue
            if state.workloads:
                ready = sum(n for labels, n in state.workloads.values() if mesh_routing.selects(subset_labels, labels))
            elif not mesh_routing.selects(subset_labels, self._pod_labels(v)):
                ready = 0
            if ready:
                out.append((v, ready))
        return out

    def is_our_host(self, host: str) -> bool:
        if self.services is not None:
            canonical = mesh_routing.canonical_host(host, self.namespace, self.cluster_domain)
            return any(canonical == s.host for s in self.services if s.namespace == self.namespace)
        return mesh_routing.same_host(host, self.service_host, self.namespace, self.cluster_domain)

    def entry_labels(self) -> dict[str, str] | None:
        """Pod labels the Service clients call (`service`) selects: what kube-proxy, a sidecar without
        a VirtualService or a gateway's own route balance over. {} = every pod (Services not modelled),
        None = no such Service (yet)."""
        if self.services is None:
            return {}
        for svc in self.services:
            if svc.name == self.service and svc.namespace == self.namespace:
                return dict(svc.selector) if svc.selector else None
        return None

    def _version_labels(self, version: str) -> dict[str, str]:
        state = self.versions[version]
        for labels, _ in state.workloads.values():
            return dict(labels)
        return dict(self._pod_labels(version))

    def inbound_service(self, version: str) -> str:
        """destination_service_name the server sidecars of `version`'s pods report: the oldest Service
        selecting them (name breaks ties), else their canonical service (the `app` label)."""
        if self.services is None:
            return self.service
        labels = self._version_labels(version)
        selecting = [s for s in self.services if s.selector and s.namespace == self.namespace
                     and mesh_routing.selects(s.selector, labels)]  # fmt: skip
        if not selecting:
            return labels.get("app", self.service)
        return min(selecting, key=lambda s: (s.created, s.name)).name

    def mesh_pick(self, headers: Mapping[str, str], *, uri: str, method: str, query: Mapping[str, str],
                  record: bool = False, source: str | None = None) -> tuple[str | None, int, str]:  # fmt: skip
        """Route ONE request to the Service through the client sidecar: (version, 0, "") or (None, code, flags).

        With `record`, the client sidecar's local replies (404 NR, 503 NC/UH) are counted like the
        traffic generator's (reporter="source")."""
        code, flags = 503, mesh_routing.FLAG_NO_HEALTHY_UPSTREAM
        endpoints: list[tuple[str, int]] = []
        if self.routing is None or not self.routing.applies(host=self.service_host):
            entry = self.entry_labels()
            endpoints = self.endpoints(entry) if entry is not None else []
        else:
            rr = self.routing.route(dict(headers), RandomAdapter(self.rng), uri=uri, method=method, query=dict(query))
            if rr.response_code is not None:
                code, flags = rr.response_code, rr.response_flags
            elif rr.destination is not None and self.is_our_host(rr.destination.host):
                endpoints = self.endpoints(rr.subset_labels)
        if not endpoints:
            if record:
                self.telemetry.local_reply(1, code, flags, source)
            return None, code, flags
        weights = np.array([r for _, r in endpoints], dtype=float)
        version = endpoints[int(self.rng.choice(len(endpoints), p=weights / weights.sum()))][0]
        return version, 0, ""

    def host_pick(self, host: str, headers: Mapping[str, str], *, uri: str, method: str, query: Mapping[str, str],
                  sidecar: bool = True, record: bool = False,
                  source: str | None = None) -> tuple[str | None, int, str]:  # fmt: skip
        """Route ONE request for the cluster host `host` (its Host header): (version, 0, "") or (None, code, flags).

        The host resolves only to a Service of this namespace under the fleet's cluster domain (else
        flags "DNS": the name does not resolve). The Service clients call, from a sidecar, is routed
        by the VirtualService when it applies (`mesh_pick`, e.g. a preview header); any other Service,
        or any Service from a client without a sidecar (kube-proxy), balances over the pods its
        selector picks. Which version's pod answers is decided here; TF Serving in that pod serves
        only its own version (the caller checks the URL's version against it)."""
        if self.services is None:
            raise ValueError("host_pick needs the namespace's Services (set_services)")
        canonical = mesh_routing.canonical_host(host.rsplit(":", 1)[0], self.namespace, self.cluster_domain)
        svc = next((s for s in self.services if s.host == canonical), None)
        if svc is None:
            return None, 503, "DNS"
        if svc.name == self.service and sidecar:
            return self.mesh_pick(headers, uri=uri, method=method, query=query, record=record, source=source)
        endpoints = self.endpoints(svc.selector) if svc.selector else []
        if not endpoints:
            if record and sidecar:
                self.telemetry.local_reply(1, 503, mesh_routing.FLAG_NO_HEALTHY_UPSTREAM, source, service=svc.name)
            return None, 503, mesh_routing.FLAG_NO_HEALTHY_UPSTREAM
        weights = np.array([r for _, r in endpoints], dtype=float)
        return endpoints[int(self.rng.choice(len(endpoints), p=weights / weights.sum()))][0], 0, ""

    def _record_tfserving(self, version: str, n_ok: int, n_err: int, latencies_ms: np.ndarray,
                          status_err: str = "INTERNAL") -> None:  # fmt: skip
        pods = self.pod_names(version)[: self.ready_replicas(version)] or self.pod_names(version)
        record_requests(self.versions[version].pod_states, pods, version, self.model_name, n_ok, n_err,
                        latencies_ms, self.rng, status_err)  # fmt: skip

    def _serve_bulk(self, version: str, n: int, now: float, mirrored: bool, source: str | None, *,
                    client: str = CLIENT_MESH, service: str | None = None,
                    source_namespace: str | None = None) -> None:  # fmt: skip
        """`n` requests reach `version`'s ready pods (the destination sidecar records them; the client's
        too unless the client has no sidecar). `service`: the Service the client side routed to."""
        if n <= 0:
            return
        state = self.versions[version]
        if state.first_traffic_at is None:
            state.first_traffic_at = now
        beh = self.behaviour(version, now)
        lat = beh.sample_latency_ms(self.rng, n)
        n_err = int(self.rng.binomial(n, beh.error_rate)) if beh.error_rate > 0 else 0
        ok_lat, err_lat = lat[: n - n_err], lat[n - n_err :]
        sidecar = client != CLIENT_NON_MESH
        inbound = self.inbound_service(version)
        for code, part in ((200, ok_lat), (500, err_lat)):
            if len(part):
                self.telemetry.record("destination", source, version, code, "-", part, service=inbound,
                                      source_namespace=source_namespace, mtls=sidecar)  # fmt: skip
                if not mirrored and sidecar:
                    self.telemetry.record("source", source, version, code, "-", part, service=service,
                                          source_namespace=source_namespace)  # fmt: skip
        self._record_tfserving(version, n - n_err, n_err, lat)
        if mirrored:
            state.stats.mirrored += n
            state.stats.mirrored_errors += n_err
        else:
            state.stats.requests += n
            state.stats.errors += n_err
            answers = self.client_stats[client]
            answers["served"][version] = answers["served"].get(version, 0) + n
            if self.vetted is not None and version not in self.vetted:
                answers["unvetted"][version] = answers["unvetted"].get(version, 0) + n

    def deliver(self, key: tuple[str, str | None], n: int, now: float, mirrored: bool, source: str | None,
                labels: Mapping[str, str] | None, *, client: str = CLIENT_MESH,
                source_namespace: str | None = None) -> None:  # fmt: skip
        """`n` requests (or mirrored copies) for destination `key` = (host, subset) selecting pods by `labels`,
        sent by a client of class `client` (a non-mesh client's requests carry no Istio telemetry of its own)."""
        host, _subset = key
        if not self.is_our_host(host):
            self.totals["other_hosts"] += n
            return
        endpoints = self.endpoints(labels or {})
        if not endpoints:
            if mirrored:
                self.totals["mirror_dropped"] += n  # shadow traffic to nowhere is silently dropped
            else:
                self.totals["unavailable"] += n
                if client != CLIENT_NON_MESH:  # kube-proxy has no endpoint: connection refused, no telemetry
                    self.telemetry.local_reply(n, 503, mesh_routing.FLAG_NO_HEALTHY_UPSTREAM, source,
                                               service=host.split(".")[0], source_namespace=source_namespace)  # fmt: skip
            return
        weights = np.array([r for _, r in endpoints], dtype=float)
        counts = self.rng.multinomial(n, weights / weights.sum()) if len(endpoints) > 1 else [n]
        for (version, _), c in zip(endpoints, counts):
            self._serve_bulk(version, int(c), now, mirrored, source, client=client, service=host.split(".")[0],
                             source_namespace=source_namespace)  # fmt: skip

    def record_rest_call(self, version: str, source: str | None, status: int, status_label: str,
                         latency_ms: float, via_mesh: bool) -> None:  # fmt: skip
        """One REST predict call `version` answered with `status` (both sidecars when it came through the mesh)."""
        lat = np.array([latency_ms])
        self.telemetry.record("destination", source, version, status, "-", lat, service=self.inbound_service(version))
        if via_mesh:
            self.telemetry.record("source", source, version, status, "-", lat)
        n_err = 0 if status == 200 else 1
        self._record_tfserving(version, 1 - n_err, n_err, lat, status_err=status_label if n_err else "INTERNAL")
        stats = self.versions[version].stats
        stats.rest_requests += 1
        stats.rest_errors += 1 if status >= 500 else 0

    # ------------------------------------------------------------------ stats and exposition
    def stats(self) -> dict[str, Any]:
        now = self.clock()
        versions = {}
        for v, state in self.versions.items():
            beh = self.behaviour(v, now)
            versions[v] = {
                **state.stats.__dict__,
                "pods": state.pods,
                "ready_replicas": self.ready_replicas(v),
                "first_traffic_at": state.first_traffic_at,
                "changes_applied": [{"after": a, "at": t} for a, t in sorted(state.changes_seen.items())],
                "behaviour": {
                    "latencyMs": {"p50": beh.latency_p50_ms, "p95": beh.latency_p95_ms},
                    "errorRate": beh.error_rate,
                    "accuracy": beh.accuracy,
                    "outputShift": beh.output_shift,
                    "ready": beh.ready,
                },  # fmt: skip
            }
        out = {"now": now, "rps": self.rps, **self.totals, "versions": versions,
               "clients": self.clients_stats()}  # fmt: skip
        if self.studies is not None:
            out["studies"] = self.studies.stats()
        return out

    def clients_stats(self) -> dict[str, dict[str, dict[str, int]]]:
        """Live answers per client class that sent any: {class: {served: {v: n}, unvetted: {v: n}}}."""
        active = self.traffic.client_shares()
        return {c: {k: dict(sorted(v.items())) for k, v in self.client_stats[c].items()}
                for c in CLIENT_CLASSES if active.get(c, 0.0) > 0 or self.client_stats[c]["served"]}  # fmt: skip

    def render_istio_metrics(self) -> str:
        return self.telemetry.render()

    def scrape_targets(self, istio_job: str = "istio-mesh", tfserving_job: str = "tfserving") -> list[ScrapeTarget]:
        """What Prometheus should scrape: the sidecars' endpoint and one TF Serving target per pod."""
        address = f"{LISTEN_HOST}:{self.port}"
        targets = [ScrapeTarget(istio_job, address, "/metrics", {})]
        for v in self.versions:
            for pod in self.pod_names(v):
                labels = {"namespace": self.namespace, "pod": pod, "app": self.service, "version": f"v{v}"}
                targets.append(ScrapeTarget(tfserving_job, address, f"/pods/{pod}{TFS_METRICS_PATH}", labels))
        return targets

    @property
    def url(self) -> str:
        return f"http://{LISTEN_HOST}:{self.port}"

    # ------------------------------------------------------------------ HTTP: metrics and stats
    async def _h_metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.render_istio_metrics(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})  # fmt: skip

    async def _h_pod_metrics(self, request: web.Request) -> web.Response:
        pod = request.match_info["pod"]
        for state in self.versions.values():
            if pod in state.pod_states:
                return web.Response(text=state.pod_states[pod].render(), content_type="text/plain")
        return web.Response(status=404, text=f"no pod {pod}\n")

    async def _h_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> SimulatedFleet:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(
            [
                web.get("/metrics", self._h_metrics),
                web.get("/pods/{pod}" + TFS_METRICS_PATH, self._h_pod_metrics),
                web.get("/fleet/stats", self._h_stats),
                *self.rest_api.routes(),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LISTEN_HOST, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.traffic.start_clock(self.clock())
        self._task = asyncio.create_task(self._ticker(), name=f"fleet-{self.namespace}-{self.service}")
        return self

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                self.advance()
            except Exception:  # a bad routing spec must not silently stop all traffic for good
                log.exception("fleet %s/%s: traffic tick failed", self.namespace, self.service)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimulatedFleet:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


__all__ = ["SimulatedFleet", "VersionState", "VersionStats"]
