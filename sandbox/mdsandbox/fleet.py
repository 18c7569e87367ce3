"""Simulated TF Serving fleet behind Istio sidecars, for ONE ModelDeployment, on 127.0.0.1.

`SimulatedFleet` is one aiohttp server that plays every TF Serving pod of every version of one
ModelDeployment (namespace, Service name, TF Serving model name) plus their Istio sidecars and
the clients sending live traffic. The sandbox feeds it what the operator writes (`set_routing`
with the VirtualService/DestinationRule, `set_ready` when Deployments scale) and points a real
Prometheus at `scrape_targets()`.

Behaviour per version (the scenario's ``versions`` entries, see docs of `VersionBehaviour`):
latency (lognormal fitted to p50/p95), errorRate (share of 500 answers), accuracy (mean AUROC on
the golden set), findingAccuracy (per-finding AUROCs pinned, the mean held), outputShift, ready, and ``changes: [{after: s, ...}]`` applied ``after`` seconds
(of the injectable ``clock``) after the version FIRST receives live or mirrored traffic from the
traffic generator (REST calls, e.g. the evaluator's, do not start that clock).

Traffic: ``rps`` requests per clock-second are split every ``tick`` by the CURRENT routing
(`mesh_routing`), a ``headers.share`` of them carrying ``headers.set``. Before any VirtualService
is set, traffic spreads over all ready pods as a plain Kubernetes Service would. Requests a subset
sends to a version without ready pods get Envoy's 503 ``UH`` ("no healthy upstream") from the
CLIENT sidecar: they appear only with reporter="source" and destination_workload/version
"unknown" — exactly as in a real mesh, so per-version (reporter="destination") queries see no data
for a version that is not ready. Route misses are 404 ``NR``, undefined subsets 503 ``NC``.

Metrics, GET /metrics (Istio standard metrics, both reporters, full standard label set):
  istio_requests_total, istio_request_duration_milliseconds_{bucket,sum,count}
  (Istio's default buckets 0.5 ... 3600000 ms). Mirrored copies are counted only by the
  destination (mirror) sidecar, with their own latency and errors, as Istio does.
Per pod, GET /pods/<pod>/monitoring/prometheus/metrics (TF Serving's own families, which carry
NO version label — the scrape config adds ``namespace``/``pod``/``version``/``app`` target labels):
  :tensorflow:serving:request_count{model_name,status}  (status "OK", "INTERNAL", "INVALID_ARGUMENT")
  :tensorflow:serving:request_latency_{bucket,sum,count}{model_name,API,entrypoint} (microseconds,
  TF Serving's buckets 10 * 1.8^i, i < 33), :tensorflow:core:graph_runs.

TF Serving REST API (as TF Serving documents it):
  GET  /v1/models/<m>/versions/<v>             model status (AVAILABLE), 404 unknown, 503 not ready
  GET  /v1/models/<m>/versions/<v>/metadata    signature defs (serving_default: DT_STRING image_bytes)
  POST /v1/models/<m>/versions/<v>:predict     {"instances": [{"b64": ...}]} or {"inputs": ...}
  GET  /v1/models/<m>, POST /v1/models/<m>:predict   through the MESH: routed by the current
       VirtualService using the request's headers (e.g. the preview header x-modeldeploy-version).
Images map to golden-set ids through `golden.GoldenSet` (the PNG's first row encodes the id), so
the online evaluator measures exactly the configured accuracy and drift. Garbage -> 400
{"error": ...}. REST calls honour errorRate and latency (real ``asyncio.sleep`` of latency x
``time_scale``) and are recorded in the metrics (destination reporter; source_workload from the
optional ``x-source-workload`` request header, a sandbox convention, else "unknown").

Control: set_routing, set_ready, set_behaviour, set_traffic, stats, start/stop, advance (manual
stepping for tests), scrape_targets. Standalone: ``python -m mdsandbox.fleet --config
fleet.yaml [--prometheus]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import json
import logging
import math
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from aiohttp import web

from mdsandbox import mesh_routing, studies
from mdsandbox.prometheus_process import LISTEN_HOST, ScrapeTarget
from mdsandbox.synthetic_golden import GoldenSet, InvalidImage
from modeldeploy import names

ISTIO_DURATION_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)  # fmt: skip
TFS_LATENCY_BUCKETS_US: tuple[float, ...] = tuple(10 * 1.8**i for i in range(33))
TFS_METRICS_PATH = "/monitoring/prometheus/metrics"
ISTIO_LABELS: tuple[str, ...] = (
    "reporter",
    "source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
    "source_canonical_service", "source_canonical_revision", "source_cluster",
    "destination_workload", "destination_workload_namespace", "destination_principal", "destination_app",
    "destination_version", "destination_service", "destination_service_name", "destination_service_namespace",
    "destination_canonical_service", "destination_canonical_revision", "destination_cluster",
    "request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy",
)  # fmt: skip
UNKNOWN = "unknown"
Z95 = 1.6448536269514722
PREDICT_URI = "/v1/models/{model}:predict"
SOURCE_HEADER = "x-source-workload"
MAX_TICK_SECONDS = 10.0
log = logging.getLogger(__name__)

_SCENARIO_KEYS = {
    "latencyMs",
    "errorRate",
    "accuracy",
    "findingAccuracy",
    "outputShift",
    "ready",
    "changes",
    "replicas",
}
_SNAKE_TO_SCENARIO = {
    "latency_ms": "latencyMs",
    "error_rate": "errorRate",
    "output_shift": "outputShift",
    "finding_accuracy": "findingAccuracy",
}


# =========================================================================== behaviour
@dataclass(frozen=True)
class BehaviourChange:
    """``{after: seconds, ...overrides}`` from a scenario's ``changes`` list."""

    after: float
    overrides: Mapping[str, Any]


@dataclass(frozen=True)
class VersionBehaviour:
    """How one version's pods behave. Scenario keys: latencyMs {p50, p95}, errorRate (0..1),
    accuracy (mean AUROC on the golden set), findingAccuracy ({finding: AUROC}: those findings pinned,
    the mean still `accuracy`), outputShift, ready, changes."""

    latency_p50_ms: float = 25.0
    latency_p95_ms: float = 40.0
    error_rate: float = 0.0
    accuracy: float = 0.85
    finding_accuracy: tuple[tuple[str, float], ...] = ()  # sorted (finding, AUROC) pairs
    output_shift: float = 0.0
    ready: bool = True
    changes: tuple[BehaviourChange, ...] = ()

    def __post_init__(self) -> None:
        if not self.latency_p50_ms > 0:
            raise ValueError(f"latencyMs.p50 must be > 0, got {self.latency_p50_ms}")
        if self.latency_p95_ms < self.latency_p50_ms:
            raise ValueError(f"latencyMs.p95 ({self.latency_p95_ms}) must be >= p50 ({self.latency_p50_ms})")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"errorRate must be within 0..1, got {self.error_rate}")
        if not 0.0 < self.accuracy < 1.0:
            raise ValueError(f"accuracy (mean AUROC) must be inside (0, 1), got {self.accuracy}")
        if not -1.0 <= self.output_shift <= 1.0:
            raise ValueError(f"outputShift must be within -1..1, got {self.output_shift}")
        if self.finding_accuracy:
            from mdsandbox.synthetic_golden import finding_auc_targets

            finding_auc_targets(self.accuracy, finding_accuracy=dict(self.finding_accuracy))  # names, ranges

    # lognormal latency fitted to the two quantiles
    @property
    def log_mu(self) -> float:
        return math.log(self.latency_p50_ms)

    @property
    def log_sigma(self) -> float:
        return math.log(self.latency_p95_ms / self.latency_p50_ms) / Z95

    def sample_latency_ms(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.log_sigma == 0:
            return np.full(n, self.latency_p50_ms)
        return rng.lognormal(self.log_mu, self.log_sigma, n)

    def latency_quantile_ms(self, q: float) -> float:
        from statistics import NormalDist

        return math.exp(self.log_mu + self.log_sigma * NormalDist().inv_cdf(q))

    def latency_cdf(self, x_ms: float) -> float:
        if x_ms <= 0:
            return 0.0
        if self.log_sigma == 0:
            return 1.0 if x_ms >= self.latency_p50_ms else 0.0
        return 0.5 * (1 + math.erf((math.log(x_ms) - self.log_mu) / (self.log_sigma * math.sqrt(2))))

    @classmethod
    def from_scenario(cls, raw: Mapping[str, Any] | None, where: str = "version") -> VersionBehaviour:
        """Parse a scenario ``versions`` entry; errors name the bad field (``where``.field)."""
        raw = dict(raw or {})
        unknown = set(raw) - _SCENARIO_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)} (known: {sorted(_SCENARIO_KEYS)})")
        base = cls()._apply(raw, where)
        changes = []
        for i, ch in enumerate(raw.get("changes") or []):
            if not isinstance(ch, Mapping) or "after" not in ch:
                raise ValueError(f"{where}.changes[{i}]: needs `after` (seconds)")
            after = float(ch["after"])
            if after < 0:
                raise ValueError(f"{where}.changes[{i}].after must be >= 0")
            overrides = {k: v for k, v in ch.items() if k != "after"}
            bad = set(overrides) - (_SCENARIO_KEYS - {"changes", "replicas"})
            if bad:
                raise ValueError(f"{where}.changes[{i}]: unknown field(s) {sorted(bad)}")
            base._apply(overrides, f"{where}.changes[{i}]")  # validate now, not when it fires
            changes.append(BehaviourChange(after, overrides))
        return replace(base, changes=tuple(sorted(changes, key=lambda c: c.after)))

    def _apply(self, overrides: Mapping[str, Any], where: str) -> VersionBehaviour:
        kw: dict[str, Any] = {}
        try:
            if "latencyMs" in overrides:
                lat = overrides["latencyMs"]
                if not isinstance(lat, Mapping) or not {"p50", "p95"} >= set(lat) or not lat:
                    raise ValueError("latencyMs needs {p50, p95}")
                p50 = float(lat.get("p50", self.latency_p50_ms))
                p95 = float(lat.get("p95", max(p50, self.latency_p95_ms * p50 / self.latency_p50_ms)))
                kw.update(latency_p50_ms=p50, latency_p95_ms=p95)
            if "errorRate" in overrides:
                kw["error_rate"] = float(overrides["errorRate"])
            if "accuracy" in overrides:
                kw["accuracy"] = float(overrides["accuracy"])
            if "findingAccuracy" in overrides:
                pins = overrides["findingAccuracy"] or {}
                if not isinstance(pins, Mapping):
                    raise ValueError("findingAccuracy must map findings to AUROCs")
                kw["finding_accuracy"] = tuple(sorted((str(f), float(a)) for f, a in pins.items()))
            if "outputShift" in overrides:
                kw["output_shift"] = float(overrides["outputShift"] or 0.0)
            if "ready" in overrides:
                if not isinstance(overrides["ready"], bool):
                    raise ValueError("ready must be true or false")
                kw["ready"] = overrides["ready"]
            return replace(self, **kw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None

    def with_overrides(self, overrides: Mapping[str, Any]) -> VersionBehaviour:
        """Apply scenario-style (latencyMs, errorRate...) or snake_case (error_rate...) overrides."""
        norm = {_SNAKE_TO_SCENARIO.get(k, k): v for k, v in overrides.items()}
        if "changes" in norm:
            fresh = VersionBehaviour.from_scenario({"changes": norm.pop("changes")}, "changes")
            return replace(self._apply(norm, "behaviour"), changes=fresh.changes)
        return self._apply(norm, "behaviour")

    def effective(self, elapsed: float | None) -> tuple[VersionBehaviour, list[BehaviourChange]]:
        """Behaviour `elapsed` seconds after first traffic (None: no traffic yet) and the changes applied."""
        current, applied = self, []
        if elapsed is not None:
            for ch in self.changes:
                if elapsed >= ch.after:
                    current = current._apply(ch.overrides, "change")
                    applied.append(ch)
        return replace(current, changes=()), applied


# =========================================================================== metric storage
def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_labels(names: Iterable[str], values: Iterable[str], extra: str = "") -> str:
    body = ",".join(f'{n}="{_escape(str(v))}"' for n, v in zip(names, values))
    if extra:
        body = f"{body},{extra}" if body else extra
    return "{" + body + "}" if body else ""


def _fmt_number(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return format(x, ".10g")


class CounterFamily:
    def __init__(self, name: str, help_text: str, label_names: tuple[str, ...]) -> None:
        self.name, self.help, self.label_names = name, help_text, label_names
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        if amount:
            self.values[labels] = self.values.get(labels, 0.0) + amount

    def render(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {self.help}")
        out.append(f"# TYPE {self.name} counter")
        for labels, value in self.values.items():
            out.append(f"{self.name}{_fmt_labels(self.label_names, labels)} {_fmt_number(value)}")


class HistogramFamily:
    def __init__(self, name: str, help_text: str, label_names: tuple[str, ...], buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.label_names = name, help_text, label_names
        self.buckets = np.array(buckets, dtype=float)
        self._le = [_fmt_number(b) for b in buckets] + ["+Inf"]
        self.series: dict[tuple[str, ...], list[Any]] = {}  # labels -> [bucket counts (non-cumulative), sum]

    def observe_many(self, labels: tuple[str, ...], values: np.ndarray) -> None:
        if len(values) == 0:
            return
        entry = self.series.get(labels)
        if entry is None:
            entry = self.series[labels] = [np.zeros(len(self.buckets) + 1, dtype=np.int64), 0.0]
        idx = np.searchsorted(self.buckets, values, side="left")  # value <= le
        entry[0] += np.bincount(idx, minlength=len(self.buckets) + 1)
        entry[1] += float(values.sum())

    def count(self, labels: tuple[str, ...]) -> int:
        entry = self.series.get(labels)
        return int(entry[0].sum()) if entry is not None else 0

    def render(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {self.help}")
        out.append(f"# TYPE {self.name} histogram")
        for labels, (counts, total) in self.series.items():
            cumulative = np.cumsum(counts)
            for le, c in zip(self._le, cumulative):
                le_label = 'le="' + le + '"'
                out.append(f"{self.name}_bucket{_fmt_labels(self.label_names, labels, le_label)} {int(c)}")
            out.append(f"{self.name}_sum{_fmt_labels(self.label_names, labels)} {_fmt_number(total)}")
            out.append(f"{self.name}_count{_fmt_labels(self.label_names, labels)} {int(cumulative[-1])}")


@dataclass
class PodState:
    name: str
    version: str
    request_count: CounterFamily = field(
        default_factory=lambda: CounterFamily(
            ":tensorflow:serving:request_count", "The total number of requests.", ("model_name", "status")
        )
    )
    request_latency: HistogramFamily = field(
        default_factory=lambda: HistogramFamily(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ("model_name", "API", "entrypoint"),
            TFS_LATENCY_BUCKETS_US,
        )
    )
    graph_runs: float = 0.0

    def render(self) -> str:
        out: list[str] = []
        self.request_count.render(out)
        self.request_latency.render(out)
        out.append("# HELP :tensorflow:core:graph_runs The number of graph executions.")
        out.append("# TYPE :tensorflow:core:graph_runs counter")
        out.append(f":tensorflow:core:graph_runs {_fmt_number(self.graph_runs)}")
        return "\n".join(out) + "\n"


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
    pod_states: dict[str, PodState] = field(default_factory=dict)
    changes_seen: dict[float, float] = field(default_factory=dict)  # change.after -> clock time applied


# =========================================================================== the fleet
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
    ) -> None:
        self.namespace = namespace
        self.service = service
        self.model_name = model_name
        self.golden = golden or GoldenSet()
        self.clock = clock
        self.tick = float(tick)
        self.time_scale = float(time_scale)
        self.port = int(port)
        self.source_workload = source_workload
        self.version_label_key = version_label_key
        self._pod_labels = pod_labels or self.default_pod_labels
        self.rng = np.random.default_rng(seed)
        self.versions: dict[str, VersionState] = {}
        for v, raw in (versions or {}).items():
            self.add_version(str(v), raw)
        self.rps = 0.0
        self.header_share = 0.0
        self.header_set: dict[str, str] = {}
        self.studies: studies.StudyTraffic | None = None
        self.set_traffic(**_traffic_kwargs(traffic or {}))
        self.routing: mesh_routing.RoutingTable | None = None
        self.routing_specs: tuple[Any, Any] | None = None
        self._carry = 0.0
        self._last_tick: float | None = None
        self.totals = {"generated": 0, "no_route": 0, "no_cluster": 0, "unavailable": 0,
                       "mirror_dropped": 0, "other_hosts": 0}  # fmt: skip
        self.requests_total = CounterFamily(
            "istio_requests_total", "Total requests handled by an Istio proxy.", ISTIO_LABELS
        )
        self.request_duration = HistogramFamily(
            "istio_request_duration_milliseconds",
            "Duration of requests handled by an Istio proxy, in milliseconds.",
            ISTIO_LABELS,
            ISTIO_DURATION_BUCKETS_MS,
        )
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
        """Pod labels of a version, from the same helpers render/serving.py uses (app, version=v<N>)."""
        if not str(version).isdigit():
            return {"app": self.service, "version": f"v{version}"}
        return {**names.selector_labels(self.service, int(version)), names.LABEL_MODEL_VERSION: str(version)}

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
        return f"{self.service}.{self.namespace}.svc.cluster.local"

    def workload(self, version: str) -> str:
        return f"{self.service}-v{version}"

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
            virtual_service, destination_rule, namespace=self.namespace, version_label_key=self.version_label_key
        )
        self.routing_specs = (virtual_service, destination_rule)

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
            state.pod_states.setdefault(name, PodState(name, version))

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

    def behaviour(self, version: str | int, now: float | None = None) -> VersionBehaviour:
        """The version's behaviour in effect now (base + changes due since its first traffic)."""
        state = self.versions[str(version)]
        now = self.clock() if now is None else now
        elapsed = None if state.first_traffic_at is None else now - state.first_traffic_at
        current, applied = state.base.effective(elapsed)
        for ch in applied:
            state.changes_seen.setdefault(ch.after, state.first_traffic_at + ch.after)  # type: ignore[operator]
        return current

    # ------------------------------------------------------------------ endpoints
    def _endpoints(self, subset_labels: Mapping[str, str]) -> list[tuple[str, int]]:
        """(version, ready pods) selected by a subset's labels ({} = the whole Service)."""
        out = []
        for v, _state in self.versions.items():
            ready = self.ready_replicas(v)
            if ready and mesh_routing.selects(subset_labels, self._pod_labels(v)):
                out.append((v, ready))
        return out

    def _is_our_host(self, host: str) -> bool:
        return mesh_routing.same_host(host, self.service_host, self.namespace)

    # ------------------------------------------------------------------ labels
    def _source_labels(self, source: str | None) -> list[str]:
        if source is None:
            return [UNKNOWN] * 8
        return [source, self.namespace, f"spiffe://cluster.local/ns/{self.namespace}/sa/{source}", source,
                UNKNOWN, source, "latest", "Kubernetes"]  # fmt: skip

    def _istio_labels(
        self, reporter: str, source: str | None, version: str | None, code: int, flags: str
    ) -> tuple[str, ...]:
        if version is None:
            dest = [UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, self.service_host, self.service,
                    self.namespace, UNKNOWN, UNKNOWN, UNKNOWN]  # fmt: skip
        else:
            dest = [self.workload(version), self.namespace, f"spiffe://cluster.local/ns/{self.namespace}/sa/default",
                    self.service, f"v{version}", self.service_host, self.service, self.namespace, self.service,
                    f"v{version}", "Kubernetes"]  # fmt: skip
        security = "mutual_tls" if reporter == "destination" else UNKNOWN
        return (reporter, *self._source_labels(source), *dest, "http", str(code), "", flags, security)

    # ------------------------------------------------------------------ recording
    def _record_istio(self, reporter: str, source: str | None, version: str | None, code: int, flags: str,
                      latencies_ms: np.ndarray) -> None:  # fmt: skip
        labels = self._istio_labels(reporter, source, version, code, flags)
        self.requests_total.inc(labels, len(latencies_ms))
        self.request_duration.observe_many(labels, latencies_ms)

    def _record_tfserving(self, version: str, n_ok: int, n_err: int, latencies_ms: np.ndarray,
                          status_err: str = "INTERNAL") -> None:  # fmt: skip
        state = self.versions[version]
        pods = self.pod_names(version)[: self.ready_replicas(version)] or self.pod_names(version)
        if not pods:
            return
        n = n_ok + n_err
        per_pod = self.rng.multinomial(n, np.full(len(pods), 1.0 / len(pods))) if len(pods) > 1 else np.array([n])
        codes = np.array([0] * n_ok + [1] * n_err)
        self.rng.shuffle(codes)
        start = 0
        for pod, k in zip(pods, per_pod):
            if k == 0:
                continue
            ps = state.pod_states.setdefault(pod, PodState(pod, version))
            sl = slice(start, start + int(k))
            errs = int(codes[sl].sum())
            ps.request_count.inc((self.model_name, "OK"), int(k) - errs)
            ps.request_count.inc((self.model_name, status_err), errs)
            ps.request_latency.observe_many((self.model_name, "predict", "REST"), latencies_ms[sl] * 1000.0)
            ps.graph_runs += int(k)
            start += int(k)

    def _serve_bulk(self, version: str, n: int, now: float, mirrored: bool, source: str | None) -> None:
        """`n` requests reach `version`'s ready pods (the destination sidecar records them)."""
        if n <= 0:
            return
        state = self.versions[version]
        if state.first_traffic_at is None:
            state.first_traffic_at = now
        beh = self.behaviour(version, now)
        lat = beh.sample_latency_ms(self.rng, n)
        n_err = int(self.rng.binomial(n, beh.error_rate)) if beh.error_rate > 0 else 0
        ok_lat, err_lat = lat[: n - n_err], lat[n - n_err :]
        for code, part in ((200, ok_lat), (500, err_lat)):
            if len(part):
                self._record_istio("destination", source, version, code, "-", part)
                if not mirrored:
                    self._record_istio("source", source, version, code, "-", part)
        self._record_tfserving(version, n - n_err, n_err, lat)
        if mirrored:
            state.stats.mirrored += n
            state.stats.mirrored_errors += n_err
        else:
            state.stats.requests += n
            state.stats.errors += n_err

    def _sidecar_local_reply(self, n: int, code: int, flags: str, source: str | None) -> None:
        if n > 0:
            self._record_istio("source", source, None, code, flags, np.full(n, 0.2))

    def _deliver(self, key: tuple[str, str | None], n: int, now: float, mirrored: bool, source: str | None,
                 labels: Mapping[str, str] | None) -> None:  # fmt: skip
        host, _subset = key
        if not self._is_our_host(host):
            self.totals["other_hosts"] += n
            return
        endpoints = self._endpoints(labels or {})
        if not endpoints:
            if mirrored:
                self.totals["mirror_dropped"] += n  # shadow traffic to nowhere is silently dropped
            else:
                self.totals["unavailable"] += n
                self._sidecar_local_reply(n, 503, mesh_routing.FLAG_NO_HEALTHY_UPSTREAM, source)
            return
        weights = np.array([r for _, r in endpoints], dtype=float)
        counts = self.rng.multinomial(n, weights / weights.sum()) if len(endpoints) > 1 else [n]
        for (version, _), c in zip(endpoints, counts):
            self._serve_bulk(version, int(c), now, mirrored, source)

    def advance(self, seconds: float | None = None) -> int:
        """Generate the traffic of `seconds` of clock time (default: since the last call). Returns N."""
        now = self.clock()
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
        now = self.clock() if now is None else now
        self.totals["generated"] += n
        source = self.source_workload
        uri = PREDICT_URI.format(model=self.model_name)
        if self.routing is None:
            self._deliver((self.service_host, None), n, now, False, source, {})
            return
        if self.studies is not None:
            keyed, n = studies.split_keyed(n, self.studies.share, self.rng)
            self._route_studies(keyed, now, source, uri)
        classes = mesh_routing.traffic_classes(self.header_share, self.header_set)
        split = self.routing.split(n, self.rng, classes, uri=uri)
        self.totals["no_route"] += split.no_route
        self.totals["no_cluster"] += split.no_cluster
        self.totals["mirror_dropped"] += split.mirror_dropped
        self._sidecar_local_reply(split.no_route, 404, mesh_routing.FLAG_NO_ROUTE, source)
        self._sidecar_local_reply(split.no_cluster, 503, mesh_routing.FLAG_NO_CLUSTER, source)
        for key, c in split.routed.items():
            self._deliver(key, c, now, False, source, self.routing.subset_labels(mesh_routing.Destination(*key)))
        for key, c in split.mirrored.items():
            self._deliver(key, c, now, True, source, self.routing.subset_labels(mesh_routing.Destination(*key)))

    def _route_studies(self, n: int, now: float, source: str | None, uri: str) -> None:
        """Keyed study requests, routed one by one so the fleet knows which version answered which study."""
        assert self.studies is not None and self.routing is not None
        adapter = _RandomAdapter(self.rng)
        for study, headers, last in self.studies.next_requests(n, self.rng):
            rr = self.routing.route(headers, adapter, uri=uri)
            version = None
            if rr.response_code is not None:
                reply = 404 if rr.response_code == 404 else 503
                self.totals["no_route" if reply == 404 else "no_cluster"] += 1
                self._sidecar_local_reply(1, reply, rr.response_flags, source)
            elif rr.destination is not None:
                endpoints = self._endpoints(rr.subset_labels)
                if endpoints and self._is_our_host(rr.destination.host):
                    version = rr.version_label
                self._deliver(rr.destination.key, 1, now, False, source, rr.subset_labels)
                if rr.mirror_destination is not None:
                    self._deliver(rr.mirror_destination.key, 1, now, True, source, rr.mirror_subset_labels)
            self.studies.answered_by(study, last, version, rr.response_headers)

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
        out = {"now": now, "rps": self.rps, **self.totals, "versions": versions}
        if self.studies is not None:
            out["studies"] = self.studies.stats()
        return out

    def render_istio_metrics(self) -> str:
        out: list[str] = []
        self.requests_total.render(out)
        self.request_duration.render(out)
        return "\n".join(out) + "\n"

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

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> SimulatedFleet:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(
            [
                web.get("/metrics", self._h_metrics),
                web.get("/pods/{pod}" + TFS_METRICS_PATH, self._h_pod_metrics),
                web.get("/fleet/stats", self._h_stats),
                web.get(r"/v1/models/{model:[^/:]+}", self._h_mesh_status),
                web.get(r"/v1/models/{model:[^/:]+}/metadata", self._h_mesh_metadata),
                web.post(r"/v1/models/{model:[^/:]+}:predict", self._h_mesh_predict),
                web.get(r"/v1/models/{model:[^/:]+}/versions/{version:[0-9]+}", self._h_version_status),
                web.get(r"/v1/models/{model:[^/:]+}/versions/{version:[0-9]+}/metadata", self._h_version_metadata),
                web.post(r"/v1/models/{model:[^/:]+}/versions/{version:[0-9]+}:predict", self._h_version_predict),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LISTEN_HOST, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._last_tick = self.clock()
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

    # ------------------------------------------------------------------ HTTP handlers
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

    def _servable_not_found(self, version: str | None) -> web.Response:
        what = f"Specific({self.model_name}, {version})" if version else f"Latest({self.model_name})"
        return _tf_error(404, f"Servable not found for request: {what}")

    def _check_version(self, request: web.Request) -> tuple[str | None, web.Response | None]:
        model, version = request.match_info["model"], request.match_info["version"]
        if model != self.model_name:
            return None, _tf_error(404, f"Servable not found for request: Specific({model}, {version})")
        if version not in self.versions or self.versions[version].pods == 0:
            return None, self._servable_not_found(version)
        if self.ready_replicas(version) == 0:
            return None, _no_healthy_upstream()
        return version, None

    def _mesh_route(self, request: web.Request, record: bool = False) -> tuple[str | None, web.Response | None]:
        """Pick the version a request to the Service reaches through the mesh.

        With `record`, the client sidecar's local replies (404 NR, 503 NC/UH) are counted like
        the traffic generator's (reporter="source")."""
        if request.match_info["model"] != self.model_name:
            return None, self._servable_not_found(None)
        code, flags = 503, mesh_routing.FLAG_NO_HEALTHY_UPSTREAM
        endpoints: list[tuple[str, int]] = []
        if self.routing is None:
            endpoints = self._endpoints({})
        else:
            rr = self.routing.route(dict(request.headers), _RandomAdapter(self.rng), uri=request.path,
                                    method=request.method, query=dict(request.query))  # fmt: skip
            if rr.response_code is not None:
                code, flags = rr.response_code, rr.response_flags
            elif rr.destination is not None and self._is_our_host(rr.destination.host):
                endpoints = self._endpoints(rr.subset_labels)
        if not endpoints:
            if record:
                self._sidecar_local_reply(1, code, flags, request.headers.get(SOURCE_HEADER))
            if code == 503 and flags == mesh_routing.FLAG_NO_HEALTHY_UPSTREAM:
                return None, _no_healthy_upstream()
            return None, web.Response(status=code, text="")
        weights = np.array([r for _, r in endpoints], dtype=float)
        version = endpoints[int(self.rng.choice(len(endpoints), p=weights / weights.sum()))][0]
        return version, None

    def _status_body(self, version: str) -> dict[str, Any]:
        return {"model_version_status": [{"version": version, "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}  # fmt: skip

    async def _h_version_status(self, request: web.Request) -> web.Response:
        version, err = self._check_version(request)
        return err or web.json_response(self._status_body(version))  # type: ignore[arg-type]

    async def _h_mesh_status(self, request: web.Request) -> web.Response:
        version, err = self._mesh_route(request)
        return err or web.json_response(self._status_body(version))  # type: ignore[arg-type]

    def _metadata_body(self, version: str) -> dict[str, Any]:
        def tensor(name: str, dtype: str, dims: list[int]) -> dict[str, Any]:
            return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims],
                                                     "unknown_rank": False}, "name": name}  # fmt: skip

        probs = tensor("StatefulPartitionedCall:0", "DT_FLOAT", [-1, 14])
        return {
            "model_spec": {"name": self.model_name, "signature_name": "", "version": version},
            "metadata": {"signature_def": {"signature_def": {
                "serving_default": {"inputs": {"image_bytes": tensor("serving_default_image_bytes:0", "DT_STRING", [-1])},
                                    "outputs": {"probabilities": probs}, "method_name": "tensorflow/serving/predict"},
                "predict_float": {"inputs": {"images": tensor("predict_float_images:0", "DT_FLOAT", [-1, 224, 224, 3])},
                                  "outputs": {"probabilities": probs}, "method_name": "tensorflow/serving/predict"},
            }}},
        }  # fmt: skip

    async def _h_version_metadata(self, request: web.Request) -> web.Response:
        version, err = self._check_version(request)
        return err or web.json_response(self._metadata_body(version))  # type: ignore[arg-type]

    async def _h_mesh_metadata(self, request: web.Request) -> web.Response:
        version, err = self._mesh_route(request)
        return err or web.json_response(self._metadata_body(version))  # type: ignore[arg-type]

    async def _h_version_predict(self, request: web.Request) -> web.Response:
        version, err = self._check_version(request)
        if err is not None:
            return err
        return await self._predict(request, version, via_mesh=False)  # type: ignore[arg-type]

    async def _h_mesh_predict(self, request: web.Request) -> web.Response:
        version, err = self._mesh_route(request, record=True)
        if err is not None:
            return err
        return await self._predict(request, version, via_mesh=True)  # type: ignore[arg-type]

    async def _predict(self, request: web.Request, version: str, via_mesh: bool) -> web.Response:
        source = request.headers.get(SOURCE_HEADER)
        beh = self.behaviour(version)
        latency_ms = float(beh.sample_latency_ms(self.rng, 1)[0])
        failed = beh.error_rate > 0 and self.rng.random() < beh.error_rate
        status, status_label = 200, "OK"
        body: dict[str, Any]
        if failed:
            status, status_label = 500, "INTERNAL"
            body = {"error": "Internal: simulated model server failure (errorRate)"}
        else:
            try:
                payload = json.loads(await request.read() or b"null")
                body = self._predictions(version, beh, payload)
            except json.JSONDecodeError as exc:
                status, status_label = 400, "INVALID_ARGUMENT"
                body = {"error": f"JSON Parse error: {exc.msg} at offset: {exc.pos}"}
            except _BadRequest as exc:
                status, status_label = 400, "INVALID_ARGUMENT"
                body = {"error": str(exc)}
        if latency_ms > 0 and self.time_scale > 0:
            await asyncio.sleep(latency_ms / 1000.0 * self.time_scale)
        lat = np.array([latency_ms])
        self._record_istio("destination", source, version, status, "-", lat)
        if via_mesh:
            self._record_istio("source", source, version, status, "-", lat)
        n_err = 0 if status == 200 else 1
        self._record_tfserving(version, 1 - n_err, n_err, lat, status_err=status_label if n_err else "INTERNAL")
        stats = self.versions[version].stats
        stats.rest_requests += 1
        stats.rest_errors += 1 if status >= 500 else 0
        return web.json_response(body, status=status)

    def _predictions(self, version: str, beh: VersionBehaviour, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise _BadRequest("JSON Value: must be an object with 'instances' or 'inputs'")
        if "instances" in payload and "inputs" in payload:
            raise _BadRequest("Request can't have both 'instances' and 'inputs' fields")
        signature = payload.get("signature_name") or "serving_default"
        if signature not in ("serving_default", "predict_float"):
            raise _BadRequest(f'Serving signature name: "{signature}" not found in signature def')
        row_format = "instances" in payload
        if row_format:
            items = payload["instances"]
            if not isinstance(items, list) or not items:
                raise _BadRequest("'instances' must be a non-empty JSON array")
        elif "inputs" in payload:
            items = payload["inputs"]
            if isinstance(items, dict):
                key = "image_bytes" if signature == "serving_default" else "images"
                if set(items) != {key}:
                    raise _BadRequest(f"Missing input: {key} (got {sorted(items)})")
                items = items[key]
            if not isinstance(items, list):
                items = [items]
        else:
            raise _BadRequest("Missing 'inputs' or 'instances' key")
        out = []
        for item in items:
            if signature == "serving_default":
                if isinstance(item, dict) and "image_bytes" in item and set(item) == {"image_bytes"}:
                    item = item["image_bytes"]
                data = _decode_b64_item(item)
                try:
                    probs = self.golden.predict_image(
                        version, data, beh.accuracy, beh.output_shift, dict(beh.finding_accuracy)
                    )
                except InvalidImage as exc:
                    raise _BadRequest(f"Invalid argument: {exc}\n\t [[{{{{node DecodeImage}}}}]]") from None
            else:
                if isinstance(item, dict) and set(item) == {"images"}:
                    item = item["images"]
                if not isinstance(item, list):
                    raise _BadRequest("predict_float expects float32 [224, 224, 3] arrays")
                key = int.from_bytes(hashlib.sha256(json.dumps(item).encode()).digest()[:8], "big")
                probs = self.golden.predict_virtual(
                    version, key, beh.accuracy, beh.output_shift, dict(beh.finding_accuracy)
                )
            out.append([float(p) for p in probs])
        return {"predictions": out} if row_format else {"outputs": out}


class _BadRequest(ValueError):
    pass


class _RandomAdapter:
    """numpy Generator -> the `.random()` interface mesh_routing.route wants."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def random(self) -> float:
        return float(self.rng.random())


def _decode_b64_item(item: Any) -> bytes:
    if isinstance(item, dict) and set(item) == {"b64"} and isinstance(item["b64"], str):
        try:
            return base64.b64decode(item["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise _BadRequest("Unable to base64 decode") from None
    if isinstance(item, str):  # DT_STRING without b64: the raw string's bytes
        return item.encode()
    raise _BadRequest('Expected a {"b64": ...} object or a string for DT_STRING input image_bytes')


def _tf_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _no_healthy_upstream() -> web.Response:
    return web.Response(status=503, text="no healthy upstream", content_type="text/plain")


def _traffic_kwargs(traffic: Mapping[str, Any]) -> dict[str, Any]:
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


# =========================================================================== standalone entry point
async def _main_async(args: argparse.Namespace) -> None:
    cfg = yaml.safe_load(Path(args.config).read_text()) or {}
    fleet = SimulatedFleet(
        namespace=cfg.get("namespace", "default"),
        service=cfg.get("service") or cfg.get("name") or "model",
        model_name=cfg.get("modelName") or cfg.get("service") or "model",
        versions=cfg.get("versions") or {},
        traffic=cfg.get("traffic") or {},
        seed=cfg.get("seed"),
        port=args.port or cfg.get("port", 0),
    )
    for v, n in (cfg.get("replicas") or {}).items():
        fleet.set_ready(str(v), int(n))
    routing = cfg.get("routing") or {}
    if routing.get("virtualService"):
        fleet.set_routing(routing["virtualService"], routing.get("destinationRule"))
    await fleet.start()
    prom = None
    print(f"fleet: {fleet.url}  (metrics {fleet.url}/metrics, stats {fleet.url}/fleet/stats)", flush=True)
    if args.prometheus:
        from mdsandbox.prometheus_process import PrometheusServer

        prom = PrometheusServer(fleet.scrape_targets(), scrape_interval=args.scrape_interval)
        prom.start()
        await prom.wait_ready_async()
        print(f"prometheus: {prom.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        if prom is not None:
            await asyncio.to_thread(prom.stop)
        await fleet.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdsandbox.fleet", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="YAML: namespace, service, modelName, versions, traffic, "
                        "replicas {version: n}, routing {virtualService, destinationRule}, seed, port")  # fmt: skip
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--prometheus", action="store_true", help="also run a Prometheus scraping the fleet")
    parser.add_argument("--scrape-interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main_async(args))
    except ValueError as exc:
        print(f"fleet: bad config: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = [
    "BehaviourChange",
    "ISTIO_DURATION_BUCKETS_MS",
    "ISTIO_LABELS",
    "SimulatedFleet",
    "TFS_LATENCY_BUCKETS_US",
    "VersionBehaviour",
    "main",
]

if __name__ == "__main__":
    sys.exit(main())
