"""Runs one sandbox scenario end to end: the whole platform on this machine, the REAL operator deciding.

`Sandbox(scenario).run()` starts the `Platform` (API emulator, Prometheus, simulated fleet,
Deployment controller, evaluator when needed, the operator process), applies the scenario's
ModelDeployment, then plays its events on the scenario clock (``speed`` x wall time) while the
`Observer` follows the status and the routing, and finally builds the REPORT
(`report.build_report`, checked by `expectations.check_expectations`; docs/scenarios.md):
outcome, stableVersion, timeline, rollbackSeconds, promotionSeconds, apiWrites,
prometheusQueries, plus what each ``expect`` found. A run that breaks is a failed run with the
reason in ``errors``, never a crash; the platform is always stopped.

Events (scenario ``events``): setVersion, annotate (manual actions, as `kubectl modeldeploy`
would), patch (a merge patch of the spec), gpuCapacity, apiFaults (faults aimed at the
operator's clients), prometheus down/up, operator kill/restart/start.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import pathlib
import tempfile
import time
from collections.abc import Callable
from typing import Any

from kubeemu.process import ApiServerProcess
from mdsandbox.fleet import SimulatedFleet
from mdsandbox.observe import Observer, RunState
from mdsandbox.prometheus_process import PrometheusServer
from mdsandbox.report import build_report
from mdsandbox.sandbox_platform import Platform
from mdsandbox.scenario import Event, Scenario
from modeldeploy.kube import USER_AGENT as OPERATOR_USER_AGENT
from modeldeploy.validation import validate_manifest

log = logging.getLogger(__name__)

TICK = 0.1
OPERATOR_METRICS_EVERY = 1.0
# API faults hit the operator's clients only: kopf's watches and patches, and the operator's own API client
# (modeldeploy.kube, on aiohttp since d5aa612; "OpenAPI-Generator" was the kubernetes client's agent).
OPERATOR_USER_AGENTS = ["kopf", OPERATOR_USER_AGENT, "OpenAPI-Generator"]
MERGE_PATCH = "application/merge-patch+json"
ACTION_BY = "modeldeploy.io/action-by"  # the API contract, as `kubectl modeldeploy` writes it


class Sandbox:
    """One scenario's run; `await Sandbox(scenario).run()` returns the report dict."""

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
        self.spec = validate_manifest(scenario.modelDeployment).spec
        self.platform = Platform(scenario, self.spec, self.workdir, self.speed)
        self.platform.clock = self.now
        self.observer = Observer(self.platform, scenario, self.spec, self.state, self.now, self.speed)
        self.t0 = 0.0  # time.monotonic() at scenario start
        self.t0_unix = 0.0

    # the platform's parts, for `on_start` / `on_finish` (e.g. the dashboard, the kubectl tour)
    @property
    def api(self) -> ApiServerProcess | None:
        """The API emulator process (kubeconfig, object access)."""
        return self.platform.api

    @property
    def prometheus(self) -> PrometheusServer | None:
        return self.platform.prometheus

    @property
    def fleet(self) -> SimulatedFleet | None:
        return self.platform.fleet

    # ---- clock ----------------------------------------------------------------------------------
    def now(self) -> float:
        """Scenario seconds since start (the scenario clock runs `speed` times wall time)."""
        return (time.monotonic() - self.t0) * self.speed

    # ---- the run ----------------------------------------------------------------------------------
    async def run(self) -> dict:
        try:
            await self.platform.start()
            if self.on_start is not None:
                await asyncio.to_thread(self.on_start, self)
            await self._play()
        except Exception as exc:  # noqa: BLE001 - a broken run is a failed expectation, with the reason
            log.exception("sandbox run failed")
            self.state.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            await self.observer.final_reads()
            if self.on_finish is not None and self.api is not None and self.api.running:
                try:
                    await asyncio.to_thread(self.on_finish, self)
                except Exception as exc:  # noqa: BLE001
                    log.warning("on_finish: %s", exc)
            await self.platform.stop()
        return self.report()

    async def _play(self) -> None:
        sc, p = self.scenario, self.platform
        md = copy.deepcopy(sc.modelDeployment)
        md["metadata"]["namespace"] = self.ns
        self.t0 = time.monotonic()
        self.t0_unix = time.time()
        await p.request("POST", p.md_collection_path, md)
        self.observer.mark("apply", f"ModelDeployment applied with version {sc.initial_version}")
        pending = sorted(enumerate(sc.events), key=lambda ie: ie[1].at)
        last_metrics_read = 0.0
        while self.now() < sc.until:
            while pending and pending[0][1].at <= self.now():
                _, event = pending.pop(0)
                await self._fire(event)
            await self.observer.observe()
            if time.monotonic() - last_metrics_read >= OPERATOR_METRICS_EVERY:
                last_metrics_read = time.monotonic()
                await self.observer.read_operator_queries()
                await self.observer.check_breach_visible()
            if self.on_tick is not None:
                self.on_tick(self)
            await asyncio.sleep(TICK / 2)

    async def _fire(self, event: Event) -> None:
        p, mark = self.platform, self.observer.mark
        assert p.api is not None and p.prometheus is not None and p.operator is not None and p.controller is not None
        kind = event.kind
        if kind == "setVersion":
            await p.request("PATCH", p.md_path, {"spec": {"model": {"version": event.setVersion}}}, MERGE_PATCH)
            assert event.setVersion is not None
            self.state.rollout_started[event.setVersion] = time.time()
            mark("setVersion", f"spec.model.version -> {event.setVersion}")
        elif kind == "annotate":
            assert event.annotate is not None
            annotations = dict(event.annotate, **{ACTION_BY: "sandbox"})  # who, for the audit trail
            await p.request("PATCH", p.md_path, {"metadata": {"annotations": annotations}}, MERGE_PATCH)
            mark("annotate", ", ".join(f"{k}={v}" for k, v in event.annotate.items()))
        elif kind == "patch":
            await p.request("PATCH", p.md_path, {"spec": event.patch}, MERGE_PATCH)
            mark("patch", json.dumps(event.patch)[:80])
        elif kind == "gpuCapacity":
            p.controller.set_gpu_capacity(event.gpuCapacity)
            mark("gpuCapacity", f"cluster GPU capacity -> {event.gpuCapacity}")
        elif kind == "apiFaults":
            config = dict(event.apiFaults or {})
            if config:
                config.setdefault("userAgents", OPERATOR_USER_AGENTS)
            await asyncio.to_thread(p.api.set_faults, config)
            mark("apiFaults", f"API faults {json.dumps(event.apiFaults)}" if config else "API faults off")
        elif kind == "prometheus":
            if event.prometheus == "down":
                await asyncio.to_thread(p.prometheus.kill)
            else:
                await asyncio.to_thread(p.prometheus.restart, True)
            mark("prometheus", f"Prometheus {event.prometheus}")
        elif kind == "operator":
            action = event.operator
            if action == "kill":
                await asyncio.to_thread(p.operator.kill)
            elif action == "restart":
                await asyncio.to_thread(p.operator.kill)
                await asyncio.to_thread(p.operator.start)
            else:
                await asyncio.to_thread(p.operator.start)
            mark("operator", f"operator {action}")

    # ---- the report -------------------------------------------------------------------------------
    def report(self) -> dict:
        return build_report(
            self.scenario,
            self.spec,
            self.state,
            speed=self.speed,
            t0_unix=self.t0_unix,
            controller_writes=self.platform.controller.writes if self.platform.controller else 0,
            runner_writes=self.platform.runner_writes,
            workdir=str(self.workdir),
            webhooks=self.platform.webhooks.report() if self.platform.webhooks else None,
        )


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


__all__ = ["Sandbox", "run_scenario"]
