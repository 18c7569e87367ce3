"""Runs one sandbox scenario end to end: the whole platform on this machine, the REAL operator deciding.

Processes and servers, all on 127.0.0.1, all stopped at the end:
- the Kubernetes API emulator (own process), with the ModelDeployment and Istio CRDs;
- a real Prometheus server (own process) scraping the simulated fleet (and the evaluator);
- the operator, `modeldeploy operator`, as its own process — restarted or SIGKILLed on cue;
- the simulated TF Serving fleet + Istio sidecars + clients (in this process), whose traffic follows
  the VirtualService the operator writes, and the Deployment controller that marks pods ready;
- the online golden-set evaluator, when the ModelDeployment has spec.evaluation.

The runner plays the scenario's events on its clock, follows the status and the routing, measures
when a breach became visible in Prometheus and when traffic was back on stable, and writes the
REPORT (scenario-format.md): outcome, stableVersion, timeline, rollbackSeconds, promotionSeconds,
apiWrites, prometheusQueries, plus what each `expect` found.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import logging
import pathlib
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import httpx
import yaml

from mdsandbox.controllers import DeploymentController
from mdsandbox.fleet import SimulatedFleet
from mdsandbox.operator_process import OperatorProcess
from mdsandbox.prometheus_process import PrometheusServer
from mdsandbox.scenario import Scenario
from mdsandbox.synthetic_golden import GoldenSet
from modeldeploy import names
from modeldeploy.validation import validate_manifest
from modeldeploy.validation.openapi import schema_problems

log = logging.getLogger(__name__)

ISTIO_CRDS = ("istio-virtualservice.yaml", "istio-destinationrule.yaml")
TICK = 0.1
OPERATOR_METRICS_EVERY = 1.0


def _istio_crd_files() -> list[pathlib.Path]:
    """Istio's CRDs, vendored in the package (identical copies of tests/data/thirdparty-crds/)."""
    here = pathlib.Path(__file__).resolve().parent / "crds"
    return [here / name for name in ISTIO_CRDS]


@functools.lru_cache(maxsize=2)
def _istio_schema(kind: str) -> dict:
    """Istio's own openAPIV3Schema (networking.istio.io/v1) for VirtualService or DestinationRule."""
    name = {"VirtualService": "istio-virtualservice.yaml", "DestinationRule": "istio-destinationrule.yaml"}[kind]
    for doc in yaml.safe_load_all((pathlib.Path(__file__).resolve().parent / "crds" / name).read_text()):
        if doc and doc.get("kind") == "CustomResourceDefinition":
            for version in doc["spec"]["versions"]:
                if version["name"] == "v1":
                    return version["schema"]["openAPIV3Schema"]
    raise LookupError(kind)


def _md_crd_file() -> pathlib.Path:
    """The ModelDeployment CRD as the operator package ships it (works from a wheel, not only a checkout)."""
    return pathlib.Path(str(resources.files("modeldeploy") / "crd" / "modeldeployment.yaml"))


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


@dataclass
class RunState:
    """Everything the runner measured; becomes the REPORT."""

    timeline: list[Sample] = field(default_factory=list)
    marks: list[dict] = field(default_factory=list)  # {t, kind, text}
    status: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    routing: dict = field(default_factory=dict)
    breach_started: float | None = None  # unix time the canary's behaviour began to breach a bound
    breach_visible: float | None = None  # unix time of the first Prometheus sample showing it
    breach_version: int | None = None
    breach_metric: str | None = None
    rollback_done: float | None = None  # unix time the VirtualService was back at 100% stable
    rollout_started: dict[int, float] = field(default_factory=dict)  # version -> unix time of setVersion
    promoted: dict[int, float] = field(default_factory=dict)  # version -> unix time stable became it
    max_weight: int = 0
    analyses: dict[str, dict] = field(default_factory=dict)  # lastAnalysis.time -> {t, kind, verdict, metrics}
    operator_queries: float = 0.0
    runner_writes: int = 0
    errors: list[str] = field(default_factory=list)


def routing_view(vs: dict | None, stable: int | None) -> dict:
    """Weights, match routes and mirror of a live VirtualService's primary route."""
    out = {"weights": {}, "abTest": False, "mirrorPercent": 0.0, "mirror": None}
    if not vs:
        return out
    https = (vs.get("spec") or {}).get("http") or []
    # with spec.strategy.cohort the weighted split (and mirror) is the "cohort" route; else "primary"
    split = "cohort" if any(h.get("name") == "cohort" for h in https) else "primary"
    for http in https:
        if http.get("name") == "ab-test":
            out["abTest"] = True
        if http.get("name") == split:
            for r in http.get("route") or []:
                out["weights"][r["destination"]["subset"]] = int(r.get("weight", 100))
            if http.get("mirror"):
                out["mirror"] = http["mirror"].get("subset")
                out["mirrorPercent"] = float((http.get("mirrorPercentage") or {}).get("value", 100.0))
    return out


def all_on_stable(view: dict, stable: int | None) -> bool:
    if stable is None:
        return False
    sub = names.subset_name(stable)
    others = {k: w for k, w in view["weights"].items() if k != sub}
    return view["weights"].get(sub, 0) == 100 and not any(others.values()) and not view["abTest"] and not view["mirror"]


class Sandbox:
    """One scenario's platform; `await Sandbox(scenario).run()` returns the report dict."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        workdir: pathlib.Path | None = None,
        speed: float = 1.0,
        on_tick: Callable[[Sandbox], None] | None = None,
        on_finish: Callable[[Sandbox], Any] | None = None,
        on_start: Callable[[Sandbox], Any] | None = None,
    ):
        self.scenario = scenario
        self.speed = max(0.1, float(speed))
        self.workdir = pathlib.Path(workdir or tempfile.mkdtemp(prefix=f"sandbox-{scenario.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.on_tick = on_tick
        self.on_finish = on_finish  # called (in a thread) before the platform stops, e.g. to run kubectl
        self.on_start = on_start  # called (in a thread) once the platform is up, before the scenario's clock starts
        self.state = RunState()
        self.ns = scenario.namespace
        self.name = scenario.md_name
        self.api = None
        self.prometheus: PrometheusServer | None = None
        self.fleet: SimulatedFleet | None = None
        self.controller: DeploymentController | None = None
        self.operator: OperatorProcess | None = None
        self.evaluator = None
        self.http: httpx.AsyncClient | None = None
        self.t0 = 0.0  # time.monotonic() at scenario start
        self.t0_unix = 0.0
        self.spec = validate_manifest(scenario.modelDeployment).spec

    # ---- clock ----------------------------------------------------------------------------------
    def now(self) -> float:
        """Scenario seconds since start (the scenario clock runs `speed` times wall time)."""
        return (time.monotonic() - self.t0) * self.speed

    def scenario_seconds(self, unix_a: float, unix_b: float) -> float:
        return (unix_b - unix_a) * self.speed

    # ---- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        from kubeemu.process import ApiServerProcess

        sc = self.scenario
        self.api = ApiServerProcess(crd_files=[_md_crd_file(), *_istio_crd_files()], workdir=self.workdir / "apiserver")
        golden = GoldenSet.from_uri(self._golden_uri()) if self._golden_uri() else GoldenSet()
        self.fleet = SimulatedFleet(
            namespace=self.ns,
            service=self.name,
            model_name=self.spec.model.name,
            versions=sc.behaviour_dict(),
            traffic=sc.traffic.model_dump(exclude_none=True),
            golden=golden,
            clock=lambda: time.monotonic() * self.speed,
            seed=7,
        )
        await self.fleet.start()
        self.prometheus = PrometheusServer(
            self.fleet.scrape_targets(), scrape_interval=sc.scrapeInterval, storage_dir=self.workdir / "prometheus-data"
        )
        await asyncio.gather(asyncio.to_thread(self.api.start), asyncio.to_thread(self.prometheus.start_and_wait, 20))
        self.http = httpx.AsyncClient(base_url=self.api.url, timeout=10)
        await self._api(
            "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.ns}}
        )
        self.controller = DeploymentController(
            api_url=self.api.url,
            namespace=self.ns,
            ready_policy=self._ready_policy,
            crash_policy=self._crash_policy,
            ready_delay=1.0,
            poll_interval=0.1,
            on_change=self._on_pods,
            gpu_capacity=sc.cluster.gpuCapacity,
        )
        await self.controller.start()
        if self._evaluator_enabled():
            await self._start_evaluator()
        self.operator = OperatorProcess(
            kubeconfig=self.api.kubeconfig,
            namespaces=[self.ns],
            prometheus_url=self.prometheus.url,
            log_path=self.workdir / "operator.log",
            env={"MODELDEPLOY_RESYNC_SECONDS": "10"},
        )
        self.operator.start()
        # Prometheus scrapes for the first time ~5 s after it starts: wait, so the timeline is fair.
        await asyncio.gather(
            asyncio.to_thread(self.operator.wait_metrics, 30),
            self.prometheus.wait_for_scrape_async("istio-mesh", timeout=30),
        )

    async def stop(self) -> None:
        for step in (
            self._stop_operator,
            self._stop_evaluator,
            self._stop_controller,
            self._stop_fleet,
            self._stop_prometheus,
            self._stop_http,
            self._stop_api,
        ):
            try:
                await step()
            except Exception as exc:  # noqa: BLE001 - always try to stop everything
                log.warning("sandbox stop: %s: %s", step.__name__, exc)

    async def _stop_operator(self) -> None:
        if self.operator is not None:
            await asyncio.to_thread(self.operator.stop)

    async def _stop_evaluator(self) -> None:
        if self.evaluator is not None:
            await asyncio.to_thread(self.evaluator.stop)

    async def _stop_controller(self) -> None:
        if self.controller is not None:
            await self.controller.stop()

    async def _stop_fleet(self) -> None:
        if self.fleet is not None:
            await self.fleet.stop()

    async def _stop_prometheus(self) -> None:
        if self.prometheus is not None:
            await asyncio.to_thread(self.prometheus.stop)

    async def _stop_http(self) -> None:
        if self.http is not None:
            await self.http.aclose()

    async def _stop_api(self) -> None:
        if self.api is not None:
            await asyncio.to_thread(self.api.stop)

    # ---- the evaluator (joins when spec.evaluation is set) -----------------------------------------
    def _golden_uri(self) -> str | None:
        ev = self.spec.evaluation
        if ev is not None and ev.golden_set.uri.startswith("sandbox://"):
            return ev.golden_set.uri
        return None

    def _evaluator_enabled(self) -> bool:
        if self.scenario.evaluator is not None:
            return self.scenario.evaluator
        return self.spec.evaluation is not None

    async def _start_evaluator(self) -> None:
        try:
            from mdsandbox.evaluator_process import EvaluatorProcess
        except ImportError:
            self.state.errors.append("spec.evaluation is set but the online evaluator is not available in this build")
            return
        self.evaluator = EvaluatorProcess(self, log_path=self.workdir / "evaluator.log")
        await asyncio.to_thread(self.evaluator.start)
        self.prometheus.set_targets([*self.fleet.scrape_targets(), self.evaluator.scrape_target()])

    # ---- cluster plumbing -------------------------------------------------------------------------
    def _ready_policy(self, namespace: str, name: str, version: int) -> bool:
        behaviour = self.scenario.versions.get(str(version))
        return True if behaviour is None else behaviour.ready

    def _crash_policy(self, namespace: str, name: str, version: int) -> tuple[str, float] | None:
        behaviour = self.scenario.versions.get(str(version))
        crash = None if behaviour is None else behaviour.crash
        return None if crash is None else (crash.reason, crash.after / self.speed)

    def _on_pods(self, name: str, version: int, ready: int) -> None:
        if self.fleet is not None and name == self.name:
            self.fleet.set_ready(version, ready)

    async def _api(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> dict | None:
        assert self.http is not None
        resp = await self.http.request(
            method, path, content=None if body is None else json.dumps(body), headers={"Content-Type": content_type}
        )
        if method != "GET" and resp.status_code < 300:
            self.state.runner_writes += 1
        if resp.status_code == 404 and method == "GET":
            return None
        if resp.status_code >= 400 and not (method == "POST" and resp.status_code == 409):
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp.json() if resp.content else None

    def _md_path(self) -> str:
        return f"/apis/modeldeploy.io/v1alpha1/namespaces/{self.ns}/modeldeployments/{self.name}"

    def _istio_path(self, plural: str) -> str:
        return f"/apis/networking.istio.io/v1/namespaces/{self.ns}/{plural}/{self.name}"

    # ---- the run ----------------------------------------------------------------------------------
    async def run(self) -> dict:
        try:
            await self.start()
            if self.on_start is not None:
                await asyncio.to_thread(self.on_start, self)
            await self._play()
        except Exception as exc:  # noqa: BLE001 - a broken run is a failed expectation, with the reason
            log.exception("sandbox run failed")
            self.state.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            await self._final_reads()
            if self.on_finish is not None and self.api is not None and self.api.running:
                try:
                    await asyncio.to_thread(self.on_finish, self)
                except Exception as exc:  # noqa: BLE001
                    log.warning("on_finish: %s", exc)
            await self.stop()
        return self.report()

    async def _play(self) -> None:
        sc = self.scenario
        md = copy.deepcopy(sc.modelDeployment)
        md["metadata"]["namespace"] = self.ns
        self.t0 = time.monotonic()
        self.t0_unix = time.time()
        await self._api("POST", f"/apis/modeldeploy.io/v1alpha1/namespaces/{self.ns}/modeldeployments", md)
        self._mark("apply", f"ModelDeployment applied with version {sc.initial_version}")
        pending = sorted(enumerate(sc.events), key=lambda ie: ie[1].at)
        last_metrics_read = 0.0
        while self.now() < sc.until:
            while pending and pending[0][1].at <= self.now():
                _, event = pending.pop(0)
                await self._fire(event)
            await self._observe()
            if time.monotonic() - last_metrics_read >= OPERATOR_METRICS_EVERY:
                last_metrics_read = time.monotonic()
                await self._read_operator_queries()
                await self._check_breach_visible()
            if self.on_tick is not None:
                self.on_tick(self)
            await asyncio.sleep(TICK / 2)

    async def _fire(self, event: Any) -> None:
        kind = event.kind
        if kind == "setVersion":
            await self._api(
                "PATCH",
                self._md_path(),
                {"spec": {"model": {"version": event.setVersion}}},
                "application/merge-patch+json",
            )
            self.state.rollout_started[event.setVersion] = time.time()
            self._mark("setVersion", f"spec.model.version -> {event.setVersion}")
        elif kind == "annotate":
            await self._api(
                "PATCH",
                self._md_path(),
                {"metadata": {"annotations": dict(event.annotate, **{"modeldeploy.io/action-by": "sandbox"})}},
                "application/merge-patch+json",
            )
            self._mark("annotate", ", ".join(f"{k}={v}" for k, v in event.annotate.items()))
        elif kind == "patch":
            await self._api("PATCH", self._md_path(), {"spec": event.patch}, "application/merge-patch+json")
            self._mark("patch", json.dumps(event.patch)[:80])
        elif kind == "gpuCapacity":
            self.controller.set_gpu_capacity(event.gpuCapacity)
            self._mark("gpuCapacity", f"cluster GPU capacity -> {event.gpuCapacity}")
        elif kind == "apiFaults":
            config = dict(event.apiFaults)
            if config:
                config.setdefault("userAgents", ["kopf", "OpenAPI-Generator"])  # the operator's clients only
            await asyncio.to_thread(self.api.set_faults, config)
            self._mark("apiFaults", f"API faults {json.dumps(event.apiFaults)}" if config else "API faults off")
        elif kind == "prometheus":
            if event.prometheus == "down":
                await asyncio.to_thread(self.prometheus.kill)
            else:
                await asyncio.to_thread(self.prometheus.restart, True)
            self._mark("prometheus", f"Prometheus {event.prometheus}")
        elif kind == "operator":
            action = event.operator
            if action == "kill":
                await asyncio.to_thread(self.operator.kill)
            elif action == "restart":
                await asyncio.to_thread(self.operator.kill)
                await asyncio.to_thread(self.operator.start)
            else:
                await asyncio.to_thread(self.operator.start)
            self._mark("operator", f"operator {action}")

    def _mark(self, kind: str, text: str) -> None:
        self.state.marks.append({"t": round(self.now(), 2), "kind": kind, "text": text})

    async def _observe(self) -> None:
        md = await self._api("GET", self._md_path())
        vs = await self._api("GET", self._istio_path("virtualservices"))
        dr = await self._api("GET", self._istio_path("destinationrules"))
        status = (md or {}).get("status") or {}
        st = self.state
        stable = status.get("stableVersion")
        view = routing_view(vs, stable)
        if vs is not None and (vs.get("spec"), (dr or {}).get("spec")) != st.routing.get("specs"):
            self.fleet.set_routing(vs, dr)
            st.routing["specs"] = (vs.get("spec"), (dr or {}).get("spec"))
            st.routing["versions_written"] = st.routing.get("versions_written", 0) + 1
            for obj, kind in ((vs, "VirtualService"), (dr, "DestinationRule")):
                if obj is not None:
                    problems = schema_problems(_istio_schema(kind), obj)
                    if problems:  # every routing the operator writes must be valid for Istio itself
                        st.errors.append(
                            f"{kind} written at t={self.now():.1f}s violates Istio's CRD schema: "
                            + "; ".join(map(str, problems[:3]))
                        )
        st.status = status
        st.history = status.get("history") or []
        canary = status.get("canaryVersion")
        routed = 0
        if canary is not None:
            routed = view["weights"].get(names.subset_name(canary), 0)
        st.max_weight = max(st.max_weight, int(status.get("canaryWeight") or 0), routed)
        if stable is not None and stable != self.scenario.initial_version and stable not in st.promoted:
            st.promoted[stable] = time.time()
            self._mark("promoted", f"version {stable} promoted")
        self._track_breach(status, view)
        if (
            st.breach_visible is not None
            and st.rollback_done is None
            and all_on_stable(view, stable)
            and st.breach_version is not None
            and st.breach_version != stable
        ):
            st.rollback_done = time.time()
            self._mark("rollback", f"VirtualService back at 100% on stable {stable}")
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
        if (
            previous is None
            or sample.t - previous.t >= 1.0
            or (
                sample.phase,
                sample.stableVersion,
                sample.canaryVersion,
                sample.canaryWeight,
                sample.routedWeight,
                sample.metrics,
            )
            != (
                previous.phase,
                previous.stableVersion,
                previous.canaryVersion,
                previous.canaryWeight,
                previous.routedWeight,
                previous.metrics,
            )
        ):
            st.timeline.append(sample)

    # ---- breach detection: when did the canary's behaviour cross a bound, and when did Prometheus see it?
    def _breaching_metric(self, version: int, at_monotonic: float, stable: int | None) -> str | None:
        """Name of a configured metric the version's simulated behaviour breaches at that moment."""
        state = self.fleet.versions.get(str(version))
        if state is None or state.first_traffic_at is None:
            return None
        elapsed = at_monotonic * self.speed - state.first_traffic_at
        if elapsed < 0:
            return None
        beh, _ = state.base.effective(elapsed)
        stable_beh = None
        if stable is not None and str(stable) in self.fleet.versions:
            stable_beh, _ = self.fleet.versions[str(stable)].base.effective(None)
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
                value = 1.0 if abs(beh.output_shift - stable_beh.output_shift) >= 0.02 else 0.0
            if value is not None and metric.bounds.breached_by(value):
                return metric.name
        return None

    def _track_breach(self, status: dict, view: dict) -> None:
        st = self.state
        if st.breach_started is not None:
            return
        stable = status.get("stableVersion")
        for version_text, state in self.fleet.versions.items():
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
                metric = self._breaching_metric(version, start_mono + 1e-6, stable)
                if metric is not None:
                    st.breach_started = time.time() - (mono_now - start_mono)
                    st.breach_version = version
                    st.breach_metric = metric
                    self._mark("breach", f"version {version} breaches {metric}")
                    return

    async def _check_breach_visible(self) -> None:
        st = self.state
        if st.breach_started is None or st.breach_visible is not None or not self.prometheus.running:
            return
        metric = next((m for m in self.spec.analysis.metrics if m.name == st.breach_metric), None)
        label = names.version_label(st.breach_version)
        if metric is not None and metric.builtin in ("accuracy", "accuracyDrift", "predictionPSI"):
            query = (
                f'max(timestamp(modeldeploy_evaluator_auroc_mean{{modeldeployment="{self.name}",version="{label}"}}))'
            )
        else:
            query = (
                f'max(timestamp(istio_requests_total{{reporter="destination",destination_service_name="{self.name}",'
                f'destination_version="{label}"}}))'
            )
        try:
            samples = await self.prometheus.query_async(query)
        except Exception:  # noqa: BLE001 - Prometheus may be down in this scenario
            return
        if samples and samples[0].value >= st.breach_started:
            st.breach_visible = samples[0].value
            self._mark("visible", f"breach of {st.breach_metric} visible in Prometheus")

    async def _read_operator_queries(self) -> None:
        if self.operator is None or not self.operator.running:
            return
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                text = (await client.get(self.operator.metrics_url)).text
        except httpx.HTTPError:
            return
        total = sum(
            float(m.group(1))
            for m in re.finditer(r"^modeldeploy_prometheus_queries_total\{[^}]*\} ([0-9.e+]+)$", text, re.M)
        )
        key = f"starts{self.operator.starts}"
        previous = self.state.routing.get(key, 0.0)
        self.state.operator_queries += max(0.0, total - previous)
        self.state.routing[key] = total

    async def _final_reads(self) -> None:
        try:
            if self.http is not None:
                await self._read_operator_queries()
                md = await self._api("GET", self._md_path())
                if md is not None:
                    self.state.status = md.get("status") or {}
                    self.state.history = self.state.status.get("history") or []
                events = await self._api("GET", f"/api/v1/namespaces/{self.ns}/events") or {}
                ordered = sorted(events.get("items", []), key=lambda e: int(e["metadata"].get("resourceVersion", 0)))
                self.state.routing["eventReasons"] = [
                    e.get("reason") for e in ordered if (e.get("involvedObject") or {}).get("kind") == "ModelDeployment"
                ]
                await self._verify_audit()
                if self.fleet is not None and self.fleet.studies is not None:
                    self.state.routing["studies"] = self.fleet.studies.stats()
                stats = await asyncio.to_thread(self.api.stats, self.ns)
                self.state.routing["apiWrites"] = stats["writes"]
                self.state.routing["faultsInjected"] = stats.get("faults_injected", 0)
        except Exception as exc:  # noqa: BLE001
            self.state.errors.append(f"final read failed: {exc}")

    async def _verify_audit(self) -> None:
        """The decision record, checked as `kubectl modeldeploy audit verify` does (modeldeploy.audit)."""
        from modeldeploy import audit

        listed = await self._api(
            "GET", f"/api/v1/namespaces/{self.ns}/configmaps?labelSelector={audit.selector(self.scenario.md_name)}"
        )
        items = (listed or {}).get("items", [])
        verdict = audit.verify(items, self.state.status.get("audit"))
        records = [json.loads((cm.get("data") or {}).get(audit.RECORD_KEY) or "{}") for cm in items]
        self.state.routing["audit"] = {
            "ok": verdict.ok,
            "records": verdict.records,
            "head": verdict.head,
            "problem": verdict.problem,
            "pending": len((self.state.status.get("audit") or {}).get("pending") or []),
            "actions": [r.get("action") for r in sorted(records, key=lambda r: r.get("seq", 0))],
        }

    # ---- the report -------------------------------------------------------------------------------
    def outcome(self) -> str:
        st = self.state
        status = st.status
        phase = status.get("phase")
        stable = status.get("stableVersion")
        if phase == "Failed":
            return "failed"
        if phase in ("Progressing", "Paused") and status.get("canaryVersion") is not None:
            return "progressing"
        if (
            stable is not None
            and stable != self.scenario.initial_version
            and any(h.get("action") == "promoted" and h.get("version") == stable for h in st.history)
        ):
            return "promoted"
        if any(h.get("action") in ("rolledBack", "aborted") for h in st.history):
            return "rolledBack"
        if phase in ("Progressing", "Paused"):
            return "progressing"
        return "stable"

    def report(self) -> dict:
        st = self.state
        sc = self.scenario
        rollback_s = None
        if st.breach_visible is not None and st.rollback_done is not None:
            rollback_s = round(max(0.0, self.scenario_seconds(st.breach_visible, st.rollback_done)), 2)
        promotion_s = None
        stable = st.status.get("stableVersion")
        if stable in st.promoted and stable in st.rollout_started:
            promotion_s = round(self.scenario_seconds(st.rollout_started[stable], st.promoted[stable]), 2)
        controller_writes = self.controller.writes if self.controller else 0
        api_writes = st.routing.get("apiWrites")
        operator_writes = None if api_writes is None else max(0, api_writes - controller_writes - st.runner_writes)
        report = {
            "name": sc.name,
            "outcome": self.outcome(),
            "stableVersion": stable,
            "phase": st.status.get("phase"),
            "timeline": [s.to_json() for s in st.timeline],
            "rollbackSeconds": rollback_s,
            "promotionSeconds": promotion_s,
            "apiWrites": operator_writes,
            "prometheusQueries": int(st.operator_queries),
            "breach": None
            if st.breach_started is None
            else {
                "version": st.breach_version,
                "metric": st.breach_metric,
                "startedAt": round(self.scenario_seconds(self.t0_unix, st.breach_started), 2),
                "visibleAt": None
                if st.breach_visible is None
                else round(self.scenario_seconds(self.t0_unix, st.breach_visible), 2),
                "rolledBackAt": None
                if st.rollback_done is None
                else round(self.scenario_seconds(self.t0_unix, st.rollback_done), 2),
            },
            "maxCanaryWeight": st.max_weight,
            "analyses": sorted(st.analyses.values(), key=lambda a: a["t"]),
            "routingWritesValidated": st.routing.get("versions_written", 0),
            "apiFaultsInjected": st.routing.get("faultsInjected", 0),
            "eventReasons": st.routing.get("eventReasons", []),
            "audit": st.routing.get("audit"),
            "studies": st.routing.get("studies"),
            "marks": st.marks,
            "history": st.history,
            "analysis": {
                "interval": self.spec.analysis.interval,
                "failureThreshold": self.spec.analysis.failure_threshold,
                "metrics": [
                    {
                        "name": m.name,
                        "min": m.min,
                        "max": m.max,
                        "failFast": None if m.fail_fast is None else m.fail_fast.model_dump(exclude_none=True),
                    }
                    for m in self.spec.analysis.metrics
                ],
            },
            "speed": self.speed,
            "errors": st.errors,
            "workdir": str(self.workdir),
        }
        report["expectations"] = check_expectations(sc, report)
        report["passed"] = all(e["ok"] for e in report["expectations"]) and not st.errors
        return report


def check_expectations(scenario: Scenario, report: dict) -> list[dict]:
    exp = scenario.expect
    checks: list[dict] = []

    def check(name: str, expected: Any, actual: Any, ok: bool) -> None:
        checks.append({"expect": name, "expected": expected, "actual": actual, "ok": bool(ok)})

    if exp.outcome is not None:
        check("outcome", exp.outcome, report["outcome"], report["outcome"] == exp.outcome)
    if exp.stableVersion is not None:
        check("stableVersion", exp.stableVersion, report["stableVersion"], report["stableVersion"] == exp.stableVersion)
    if exp.rollbackWithinSeconds is not None:
        actual = report["rollbackSeconds"]
        check(
            "rollbackWithinSeconds",
            exp.rollbackWithinSeconds,
            actual,
            actual is not None and actual <= exp.rollbackWithinSeconds,
        )
    if exp.promotionWithinSeconds is not None:
        actual = report["promotionSeconds"]
        check(
            "promotionWithinSeconds",
            exp.promotionWithinSeconds,
            actual,
            actual is not None and actual <= exp.promotionWithinSeconds,
        )
    if exp.neverWeightAbove is not None:
        check(
            "neverWeightAbove",
            exp.neverWeightAbove,
            report["maxCanaryWeight"],
            report["maxCanaryWeight"] <= exp.neverWeightAbove,
        )
    if exp.neverPromoted is not None:
        promoted = any(h.get("action") == "promoted" for h in report["history"])
        check("neverPromoted", exp.neverPromoted, not promoted, (not promoted) == exp.neverPromoted)
    if exp.weightNeverBackwards is not None:
        backwards = []
        timeline = report["timeline"]
        for a, b in zip(timeline, timeline[1:]):
            if (
                a["canaryVersion"] is not None
                and a["canaryVersion"] == b["canaryVersion"]
                and b["routedWeight"] < a["routedWeight"]
            ):
                backwards.append({"t": b["t"], "from": a["routedWeight"], "to": b["routedWeight"]})
        check(
            "weightNeverBackwards",
            exp.weightNeverBackwards,
            backwards or "never",
            (not backwards) == exp.weightNeverBackwards,
        )
    if exp.eventReasons is not None:
        seen = iter(report["eventReasons"])
        in_order = all(any(r == want for r in seen) for want in exp.eventReasons)
        check("eventReasons", exp.eventReasons, report["eventReasons"], in_order)
    if exp.historyActions is not None:
        actions = [h.get("action") for h in report["history"] if h.get("action") != "deployed"]
        check("historyActions", exp.historyActions, actions, actions == exp.historyActions)
    studies = report.get("studies") or {}
    if exp.maxStudiesOnTwoVersions is not None:
        got = studies.get("answeredByTwoVersions")
        check("maxStudiesOnTwoVersions", exp.maxStudiesOnTwoVersions, got,
              got is not None and got <= exp.maxStudiesOnTwoVersions)  # fmt: skip
    if exp.minStudies is not None:
        got = studies.get("studies", 0)
        check("minStudies", exp.minStudies, got, got >= exp.minStudies)
    if exp.sitesOnlyOnStable is not None:
        initial = f"v{scenario.initial_version}"
        reached = {site: sorted(studies.get("versionsBySite", {}).get(site, {})) for site in exp.sitesOnlyOnStable}
        check("sitesOnlyOnStable", exp.sitesOnlyOnStable, reached,
              bool(studies) and all(v in ([initial], []) for v in reached.values()))  # fmt: skip
    if exp.historyReasonContains is not None:
        reasons = [h.get("reason") or "" for h in report["history"] if h.get("action") != "deployed"]
        missing = [text for text in exp.historyReasonContains if not any(text in r for r in reasons)]
        check("historyReasonContains", exp.historyReasonContains, reasons, not missing)
    return checks


async def run_scenario(
    scenario: Scenario,
    *,
    workdir: pathlib.Path | None = None,
    speed: float = 1.0,
    on_tick: Callable[[Sandbox], None] | None = None,
    on_finish: Callable[[Sandbox], Any] | None = None,
    on_start: Callable[[Sandbox], Any] | None = None,
) -> dict:
    return await Sandbox(
        scenario, workdir=workdir, speed=speed, on_tick=on_tick, on_finish=on_finish, on_start=on_start
    ).run()
