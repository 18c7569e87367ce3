"""What the scenario runner measures while a scenario plays: status, routing, breaches, counters.

`Observer.observe` (every tick) reads the live VirtualService, DestinationRule and the namespace's
Services, then the ModelDeployment (in that order: the operator writes the status before the
children, so the stable version the fleet is told is never older than the routing it follows),
hands changed routing and Services to the simulated fleet (after checking the routing against
Istio's own CRD schema: every routing the operator writes must be valid for Istio itself), tells
the fleet which version is stable (answers from a version never stable are "unvetted"), and records a
timeline `Sample` when something visible changed (at least once a second). It also tracks:

* the breach: the first moment a canary's simulated behaviour crossed a configured bound
  (`breaching_metric`: from the version's behaviour, not from measurements), when Prometheus first
  had a sample of that version after it (`check_breach_visible`), and when the VirtualService
  was back at 100% on stable (the rollback);
* promotions (stable changed to a new version), the highest canary weight (status or routed);
* each analysis the operator recorded (status.lastAnalysis), and the Prometheus queries the
  operator sent (its own counter, summed over restarts);
* at the end (`final_reads`): the last status and history, the ModelDeployment's Event reasons,
  the decision record verified like `kubectl modeldeploy audit verify` (`verify_audit`), the
  emulator's write and fault counters.

Everything lands in a `RunState`, which `report.build_report` turns into the REPORT.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from mdsandbox.sandbox_platform import Platform, istio_schema
from mdsandbox.scenario import Scenario
from modeldeploy import audit, names
from modeldeploy.render import istio
from modeldeploy.spec import ModelDeploymentSpec
from modeldeploy.validation.openapi import schema_problems

EVALUATOR_BUILTINS = ("accuracy", "accuracyDrift", "predictionPSI")
PSI_VISIBLE_SHIFT = 0.02  # an outputShift difference this large makes the PSI breach its bound
_QUERIES_TOTAL = re.compile(r"^modeldeploy_prometheus_queries_total\{[^}]*\} ([0-9.e+]+)$", re.M)
_SAMPLE = re.compile(r"^(modeldeploy_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+|\+Inf|NaN)$", re.M)


def operator_stats(text: str) -> dict:
    """From the operator's /metrics: its reconcile passes (count, mean, the smallest histogram bound that
    holds them all), its fail-fast checks and its notifications (sent, failed, dropped)."""
    passes = 0.0
    total = 0.0
    buckets: list[tuple[float, float]] = []
    fail_fast = 0.0
    notifications: dict[str, float] = {}
    dropped = 0.0
    for name, labels, value in _SAMPLE.findall(text):
        v = float(value) if value not in ("+Inf", "NaN") else float("nan")
        if name == "modeldeploy_reconcile_duration_seconds_count":
            passes = v
        elif name == "modeldeploy_reconcile_duration_seconds_sum":
            total = v
        elif name == "modeldeploy_reconcile_duration_seconds_bucket":
            le = re.search(r'le="([^"]+)"', labels or "")
            if le and le.group(1) != "+Inf":
                buckets.append((float(le.group(1)), v))
        elif name == "modeldeploy_analyses_total" and 'kind="failFast"' in (labels or ""):
            fail_fast += v
        elif name == "modeldeploy_notifications_total":
            result = re.search(r'result="([^"]+)"', labels or "")
            if result:
                notifications[result.group(1)] = notifications.get(result.group(1), 0.0) + v
        elif name == "modeldeploy_notifications_dropped_total":
            dropped += v
    all_within = next((le for le, n in sorted(buckets) if n >= passes), None) if passes else None
    return {
        "reconcilePasses": int(passes),
        "reconcileMeanSeconds": round(total / passes, 4) if passes else None,
        "reconcileAllWithinSeconds": all_within,  # None: some pass took longer than the largest bucket (10 s)
        "failFastChecks": int(fail_fast),
        "notifications": {k: int(v) for k, v in sorted(notifications.items())},
        "notificationsDropped": int(dropped),
    }


@dataclass
class Sample:
    t: float
    phase: str | None
    stableVersion: int | None
    canaryVersion: int | None
    canaryWeight: int
    routedWeight: int
    mirrorPercent: float
    metrics: dict[str, float | None]
    failedChecks: int = 0

    def to_json(self) -> dict:
        return {
            "t": round(self.t, 2),
            "phase": self.phase,
            "stableVersion": self.stableVersion,
            "canaryVersion": self.canaryVersion,
            "canaryWeight": self.canaryWeight,
            "routedWeight": self.routedWeight,
            "mirrorPercent": self.mirrorPercent,
            "failedChecks": self.failedChecks,
            "metrics": self.metrics,
        }

    def visible(self) -> tuple:
        """What a new timeline point is recorded for when it changes."""
        return (self.phase, self.stableVersion, self.canaryVersion, self.canaryWeight, self.routedWeight, self.metrics)


@dataclass
class RunState:
    """Everything the runner measured; becomes the REPORT."""

    timeline: list[Sample] = field(default_factory=list)
    marks: list[dict] = field(default_factory=list)  # {t, kind, text}
    status: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    breach_started: float | None = None  # unix time the canary's behaviour began to breach a bound
    breach_visible: float | None = None  # unix time of the first Prometheus sample showing it
    breach_version: int | None = None
    breach_metric: str | None = None
    rollback_done: float | None = None  # unix time the VirtualService was back at 100% stable
    rollout_started: dict[int, float] = field(default_factory=dict)  # version -> unix time of setVersion
    promoted: dict[int, float] = field(default_factory=dict)  # version -> unix time stable became it
    max_weight: int = 0
    analyses: dict[str, dict] = field(default_factory=dict)  # lastAnalysis.time -> {t, kind, verdict, metrics}
    routing_specs: tuple[Any, Any] | None = None  # the (VirtualService, DestinationRule) specs the fleet follows
    routing_writes_validated: int = 0  # routing versions checked against Istio's schema
    operator_queries: float = 0.0
    operator_queries_seen: dict[int, float] = field(default_factory=dict)  # operator start -> its counter
    event_reasons: list[str] = field(default_factory=list)
    api_writes: int | None = None  # every write the emulator served (operator + controller + runner)
    api_faults_injected: int = 0
    studies: dict | None = None  # the fleet's keyed study traffic: which version answered which study
    clients: dict | None = None  # live answers per client class: {class: {served: {v: n}, unvetted: {v: n}}}
    services_seen: list | None = None  # the Services (name, selector, created) the fleet resolves through
    audit: dict | None = None  # the decision record, verified as `kubectl modeldeploy audit verify` does
    operator: dict | None = None  # the operator's own figures at the end (observe.operator_stats)
    errors: list[str] = field(default_factory=list)


def routing_view(vs: dict | None, stable: int | None) -> dict:
    """Weights (per version label), match routes and mirror of a live VirtualService's weighted route
    (primary, or cohort)."""
    out: dict[str, Any] = {"weights": {}, "abTest": False, "mirrorPercent": 0.0, "mirror": None}
    if not vs:
        return out
    name = (vs.get("metadata") or {}).get("name") or ""
    https = (vs.get("spec") or {}).get("http") or []
    # with spec.strategy.cohort the weighted split (and mirror) is the "cohort" route; else "primary"
    split = "cohort" if any(h.get("name") == "cohort" for h in https) else "primary"
    for http in https:
        if http.get("name") == "ab-test":
            out["abTest"] = True
        if http.get("name") == split:
            for r in http.get("route") or []:
                out["weights"][istio.destination_version(name, r["destination"])] = int(r.get("weight", 100))
            if http.get("mirror"):
                out["mirror"] = istio.destination_version(name, http["mirror"])
                out["mirrorPercent"] = float((http.get("mirrorPercentage") or {}).get("value", 100.0))
    return out


def all_on_stable(view: dict, stable: int | None) -> bool:
    """Is every request (no A/B route, no mirror) going to the stable version?"""
    if stable is None:
        return False
    sub = names.version_label(stable)
    others = {k: w for k, w in view["weights"].items() if k != sub}
    return view["weights"].get(sub, 0) == 100 and not any(others.values()) and not view["abTest"] and not view["mirror"]


class Observer:
    """Follows one scenario's platform into a `RunState` (module docstring)."""

    def __init__(
        self,
        platform: Platform,
        scenario: Scenario,
        spec: ModelDeploymentSpec,
        state: RunState,
        now: Callable[[], float],
        speed: float,
    ) -> None:
        self.platform = platform
        self.scenario = scenario
        self.spec = spec
        self.state = state
        self.now = now  # scenario seconds since start
        self.speed = speed

    def mark(self, kind: str, text: str) -> None:
        self.state.marks.append({"t": round(self.now(), 2), "kind": kind, "text": text})

    # ---- every tick -------------------------------------------------------------------------------
    async def observe(self) -> None:
        p, st = self.platform, self.state
        vs = await p.request("GET", p.istio_path("virtualservices"))
        dr = await p.request("GET", p.istio_path("destinationrules"))
        services = (await p.request("GET", f"/api/v1/namespaces/{p.ns}/services") or {}).get("items", [])
        md = await p.request("GET", p.md_path)
        status = (md or {}).get("status") or {}
        stable = status.get("stableVersion")
        view = routing_view(vs, stable)
        assert p.fleet is not None
        p.fleet.set_stable(stable if stable is not None else self.scenario.initial_version)
        seen = [(s["metadata"]["name"], (s.get("spec") or {}).get("selector"), s["metadata"].get("creationTimestamp"))
                for s in services]  # fmt: skip
        if seen != st.services_seen:
            p.fleet.set_services(services)
            st.services_seen = seen
        if vs is not None and (vs.get("spec"), (dr or {}).get("spec")) != st.routing_specs:
            self._follow_routing(vs, dr)
        st.status = status
        st.history = status.get("history") or []
        canary = status.get("canaryVersion")
        routed = 0
        if canary is not None:
            routed = view["weights"].get(names.version_label(canary), 0)
        st.max_weight = max(st.max_weight, int(status.get("canaryWeight") or 0), routed)
        if stable is not None and stable != self.scenario.initial_version and stable not in st.promoted:
            st.promoted[stable] = time.time()
            self.mark("promoted", f"version {stable} promoted")
        self._track_breach(status)
        if (
            st.breach_visible is not None
            and st.rollback_done is None
            and all_on_stable(view, stable)
            and st.breach_version is not None
            and st.breach_version != stable
        ):
            st.rollback_done = time.time()
            self.mark("rollback", f"VirtualService back at 100% on stable {stable}")
        last = status.get("lastAnalysis") or {}
        metrics = {m["name"]: m.get("value") for m in (last.get("metrics") or [])}
        if last.get("time") and last["time"] not in st.analyses:
            st.analyses[last["time"]] = {
                "t": round(self.now(), 2),
                "kind": last.get("kind", "interval"),
                "verdict": last.get("verdict"),
                "metrics": metrics,
            }
        sample = Sample(
            t=self.now(),
            phase=status.get("phase"),
            stableVersion=stable,
            canaryVersion=canary,
            canaryWeight=int(status.get("canaryWeight") or 0),
            routedWeight=routed,
            mirrorPercent=view["mirrorPercent"] if view["mirror"] else 0.0,
            metrics=metrics,
            failedChecks=int(status.get("failedChecks") or 0),
        )
        previous = st.timeline[-1] if st.timeline else None
        if previous is None or sample.t - previous.t >= 1.0 or sample.visible() != previous.visible():
            st.timeline.append(sample)

    def _follow_routing(self, vs: dict, dr: dict | None) -> None:
        """New routing: the fleet follows it; it must be valid for Istio's own CRD schema."""
        st = self.state
        assert self.platform.fleet is not None
        self.platform.fleet.set_routing(vs, dr)
        st.routing_specs = (vs.get("spec"), (dr or {}).get("spec"))
        st.routing_writes_validated += 1
        for obj, kind in ((vs, "VirtualService"), (dr, "DestinationRule")):
            if obj is not None:
                problems = schema_problems(istio_schema(kind), obj)
                if problems:  # every routing the operator writes must be valid for Istio itself
                    st.errors.append(
                        f"{kind} written at t={self.now():.1f}s violates Istio's CRD schema: "
                        + "; ".join(map(str, problems[:3]))
                    )

    # ---- breach detection: when did the canary's behaviour cross a bound, and when did Prometheus see it?
    def breaching_metric(self, version: int, at_monotonic: float, stable: int | None) -> str | None:
        """Name of a configured metric the version's simulated behaviour breaches at that moment."""
        fleet = self.platform.fleet
        assert fleet is not None
        state = fleet.versions.get(str(version))
        if state is None or state.first_traffic_at is None:
            return None
        elapsed = at_monotonic * self.speed - state.first_traffic_at
        if elapsed < 0:
            return None
        beh, _ = state.base.effective(elapsed)
        stable_beh = None
        if stable is not None and str(stable) in fleet.versions:
            stable_beh, _ = fleet.versions[str(stable)].base.effective(None)
        for metric in self.spec.analysis.metrics:
            value = None
            if metric.builtin == "latency":
                value = beh.latency_quantile_ms(metric.effective_quantile)
            elif metric.builtin == "errorRate":
                value = beh.error_rate * 100.0
            elif metric.builtin == "accuracy":
                value = beh.accuracy
            elif metric.builtin == "accuracyDrift" and stable_beh is not None:
                value = stable_beh.accuracy - beh.accuracy
            elif metric.builtin == "predictionPSI" and stable_beh is not None:
                value = 1.0 if abs(beh.output_shift - stable_beh.output_shift) >= PSI_VISIBLE_SHIFT else 0.0
            if value is not None and metric.bounds.breached_by(value):
                return metric.name
        return None

    def _track_breach(self, status: dict) -> None:
        st = self.state
        if st.breach_started is not None:
            return
        fleet = self.platform.fleet
        assert fleet is not None
        stable = status.get("stableVersion")
        for version_text, state in fleet.versions.items():
            version = int(version_text)
            if version == stable or state.first_traffic_at is None:
                continue
            # candidate moments: first traffic, and each behaviour change after it
            mono_now = time.monotonic()
            starts = [state.first_traffic_at] + [state.first_traffic_at + ch.after for ch in state.base.changes]
            for start_clock in sorted(starts):
                start_mono = start_clock / self.speed
                if start_mono > mono_now:
                    continue
                metric = self.breaching_metric(version, start_mono + 1e-6, stable)
                if metric is not None:
                    st.breach_started = time.time() - (mono_now - start_mono)
                    st.breach_version = version
                    st.breach_metric = metric
                    self.mark("breach", f"version {version} breaches {metric}")
                    return

    async def check_breach_visible(self) -> None:
        st, prometheus = self.state, self.platform.prometheus
        if st.breach_started is None or st.breach_visible is not None or prometheus is None or not prometheus.running:
            return
        assert st.breach_version is not None
        metric = next((m for m in self.spec.analysis.metrics if m.name == st.breach_metric), None)
        label = names.version_label(st.breach_version)
        name = self.platform.name
        if metric is not None and metric.builtin in EVALUATOR_BUILTINS:
            query = f'max(timestamp(modeldeploy_evaluator_auroc_mean{{modeldeployment="{name}",version="{label}"}}))'
        else:
            query = (
                f'max(timestamp(istio_requests_total{{reporter="destination",destination_app="{name}",'
                f'destination_version="{label}"}}))'
            )
        try:
            samples = await prometheus.api.query(query)
        except Exception:  # noqa: BLE001 - Prometheus may be down in this scenario
            return
        if samples and samples[0].value >= st.breach_started:
            st.breach_visible = samples[0].value
            self.mark("visible", f"breach of {st.breach_metric} visible in Prometheus")

    async def read_operator_queries(self) -> None:
        """Add the operator's Prometheus queries since the last read (its counter restarts with it)."""
        operator = self.platform.operator
        if operator is None or not operator.running:
            return
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                text = (await client.get(operator.metrics_url)).text
        except httpx.HTTPError:
            return
        self.state.operator = operator_stats(text)  # of the current operator process (restarts start over)
        total = sum(float(m.group(1)) for m in _QUERIES_TOTAL.finditer(text))
        previous = self.state.operator_queries_seen.get(operator.starts, 0.0)
        self.state.operator_queries += max(0.0, total - previous)
        self.state.operator_queries_seen[operator.starts] = total

    # ---- at the end -------------------------------------------------------------------------------
    async def final_reads(self) -> None:
        p, st = self.platform, self.state
        try:
            if p.http is not None and p.api is not None:
                await self.read_operator_queries()
                md = await p.request("GET", p.md_path)
                if md is not None:
                    st.status = md.get("status") or {}
                    st.history = st.status.get("history") or []
                events = await p.request("GET", f"/api/v1/namespaces/{p.ns}/events") or {}
                ordered = sorted(events.get("items", []), key=lambda e: int(e["metadata"].get("resourceVersion", 0)))
                st.event_reasons = [
                    e.get("reason") for e in ordered if (e.get("involvedObject") or {}).get("kind") == "ModelDeployment"
                ]
                await self.verify_audit()
                if p.fleet is not None and p.fleet.studies is not None:
                    st.studies = p.fleet.studies.stats()
                if p.fleet is not None:
                    st.clients = p.fleet.clients_stats()
                stats = await asyncio.to_thread(p.api.stats, p.ns)
                st.api_writes = stats["writes"]
                st.api_faults_injected = stats.get("faults_injected", 0)
        except Exception as exc:  # noqa: BLE001
            st.errors.append(f"final read failed: {exc}")

    async def verify_audit(self) -> None:
        """The decision record, checked as `kubectl modeldeploy audit verify` does (modeldeploy.audit)."""
        p, st = self.platform, self.state
        listed = await p.request("GET", f"/api/v1/namespaces/{p.ns}/configmaps?labelSelector={audit.selector(p.name)}")
        items = (listed or {}).get("items", [])
        verdict = audit.verify(items, st.status.get("audit"))
        records = [json.loads((cm.get("data") or {}).get(audit.RECORD_KEY) or "{}") for cm in items]
        st.audit = {
            "ok": verdict.ok,
            "records": verdict.records,
            "head": verdict.head,
            "problem": verdict.problem,
            "pending": len((st.status.get("audit") or {}).get("pending") or []),
            "actions": [r.get("action") for r in sorted(records, key=lambda r: r.get("seq", 0))],
        }


__all__ = ["Observer", "RunState", "Sample", "all_on_stable", "routing_view"]
