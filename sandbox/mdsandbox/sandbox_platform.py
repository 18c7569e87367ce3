"""The platform one sandbox scenario runs on: every server and process, started and stopped together.

All on 127.0.0.1, all stopped by `stop` (each step tried even when an earlier one failed):
- the Kubernetes API emulator (its own process), with the ModelDeployment and Istio CRDs;
- a real Prometheus server (its own process) scraping the simulated fleet (and the evaluator);
- the simulated TF Serving fleet + Istio sidecars + clients (in this process), which serves the
  pods the Deployment controller reports, labelled as their pod template says;
- the Deployment controller (in this process) that plays the cluster's controllers and kubelets;
- the online golden-set evaluator, when the ModelDeployment has spec.evaluation (or the scenario
  says so);
- the operator, `modeldeploy operator`, as its own process;
- the scenario's webhook receivers (mdsandbox.webhooks: notifications, gates), their URLs in the Secret
  `modeldeploy-notifications` of the scenario's namespace.

`request` is the runner's own client of the emulator (async httpx, shared with the Deployment
controller); its writes are counted (`runner_writes`) so the report can tell the operator's
writes apart. `ApiServerProcess` (stdlib, sync) serves the threads (the evaluator's kubelet part).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import pathlib
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import httpx
import yaml

from kubeemu.process import ApiServerProcess
from mdsandbox.controllers import DeploymentController, WorkloadPods
from mdsandbox.evaluator_process import EvaluatorProcess
from mdsandbox.fleet import SimulatedFleet
from mdsandbox.operator_process import OperatorProcess
from mdsandbox.prometheus_process import PrometheusServer
from mdsandbox.scenario import Scenario
from mdsandbox.synthetic_golden import GoldenSet
from mdsandbox.webhooks import WebhookReceivers
from modeldeploy import API_VERSION, PLURAL
from modeldeploy.settings import CLUSTER_DOMAIN_ENV
from modeldeploy.spec import ModelDeploymentSpec

log = logging.getLogger(__name__)

ISTIO_CRDS = {"VirtualService": "istio-virtualservice.yaml", "DestinationRule": "istio-destinationrule.yaml"}
ISTIO_API = "networking.istio.io/v1"
OPERATOR_RESYNC_SECONDS = "10"
FLEET_SEED = 7


def _crd_dir() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parent / "crds"


def istio_crd_files() -> list[pathlib.Path]:
    """Istio's CRDs, vendored in the package (identical copies of tests/data/thirdparty-crds/)."""
    return [_crd_dir() / name for name in ISTIO_CRDS.values()]


@functools.lru_cache(maxsize=2)
def istio_schema(kind: str) -> dict:
    """Istio's own openAPIV3Schema (networking.istio.io/v1) for VirtualService or DestinationRule."""
    for doc in yaml.safe_load_all((_crd_dir() / ISTIO_CRDS[kind]).read_text()):
        if doc and doc.get("kind") == "CustomResourceDefinition":
            for version in doc["spec"]["versions"]:
                if version["name"] == "v1":
                    return version["schema"]["openAPIV3Schema"]
    raise LookupError(kind)


def md_crd_file() -> pathlib.Path:
    """The ModelDeployment CRD as the operator package ships it (works from a wheel, not only a checkout)."""
    return pathlib.Path(str(resources.files("modeldeploy") / "crd" / "modeldeployment.yaml"))


class Platform:
    """The servers and processes of one scenario (module docstring); `start`, then `stop`."""

    def __init__(self, scenario: Scenario, spec: ModelDeploymentSpec, workdir: pathlib.Path, speed: float) -> None:
        self.scenario = scenario
        self.spec = spec
        self.workdir = workdir
        self.speed = speed
        self.ns = scenario.namespace
        self.name = scenario.md_name
        self.api: ApiServerProcess | None = None
        self.prometheus: PrometheusServer | None = None
        self.fleet: SimulatedFleet | None = None
        self.controller: DeploymentController | None = None
        self.operator: OperatorProcess | None = None
        self.evaluator: EvaluatorProcess | None = None
        self.http: httpx.AsyncClient | None = None
        self.webhooks: WebhookReceivers | None = None
        self.clock: Callable[[], float] = lambda: 0.0  # scenario seconds (the runner sets it)
        self.runner_writes = 0
        self.errors: list[str] = []  # problems found while starting (reported, not raised)

    # ---- paths --------------------------------------------------------------------------------------
    @property
    def md_collection_path(self) -> str:
        return f"/apis/{API_VERSION}/namespaces/{self.ns}/{PLURAL}"

    @property
    def md_path(self) -> str:
        return f"{self.md_collection_path}/{self.name}"

    def istio_path(self, plural: str) -> str:
        return f"/apis/{ISTIO_API}/namespaces/{self.ns}/{plural}/{self.name}"

    # ---- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        sc = self.scenario
        self.api = ApiServerProcess(crd_files=[md_crd_file(), *istio_crd_files()], workdir=self.workdir / "apiserver")
        golden_uri = self._golden_uri()
        self.fleet = SimulatedFleet(
            namespace=self.ns,
            service=self.name,
            model_name=self.spec.model.name,
            versions=sc.behaviour_dict(),
            traffic=sc.traffic.model_dump(exclude_none=True),
            golden=GoldenSet.from_uri(golden_uri) if golden_uri else GoldenSet(),
            clock=lambda: time.monotonic() * self.speed,
            seed=FLEET_SEED,
            cluster_domain=sc.cluster.domain,
        )
        await self.fleet.start()
        self.prometheus = PrometheusServer(
            self.fleet.scrape_targets(), scrape_interval=sc.scrapeInterval, storage_dir=self.workdir / "prometheus-data"
        )
        await asyncio.gather(asyncio.to_thread(self.api.start), asyncio.to_thread(self.prometheus.start_and_wait, 20))
        self.http = httpx.AsyncClient(base_url=self.api.url, timeout=10)
        await self.request(
            "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.ns}}
        )
        if sc.webhooks:  # receivers for notifications and gates; their URLs in a Secret, as in production
            self.webhooks = WebhookReceivers(sc.webhooks, clock=lambda: self.clock())
            await self.webhooks.start()
            await self.request("POST", f"/api/v1/namespaces/{self.ns}/secrets", self.webhooks.secret(self.ns))
        self.controller = DeploymentController(
            api_url=self.api.url,
            namespace=self.ns,
            ready_policy=self._ready_policy,
            crash_policy=self._crash_policy,
            model_state_policy=self._model_state_policy,
            ready_delay=1.0,
            poll_interval=0.1,
            on_change=self._on_pods,
            gpu_capacity=sc.cluster.gpuCapacity,
            client=self.http,
        )
        await self.controller.start()
        if self._evaluator_enabled():
            await self._start_evaluator()
        self.operator = OperatorProcess(
            kubeconfig=self.api.kubeconfig,
            namespaces=[self.ns],
            prometheus_url=self.prometheus.url,
            log_path=self.workdir / "operator.log",
            env={"MODELDEPLOY_RESYNC_SECONDS": OPERATOR_RESYNC_SECONDS, CLUSTER_DOMAIN_ENV: sc.cluster.domain},
        )
        self.operator.start()
        # Prometheus scrapes for the first time ~5 s after it starts: wait, so the timeline is fair.
        await asyncio.gather(
            asyncio.to_thread(self.operator.wait_metrics, 30),
            self.prometheus.api.wait_for_scrape("istio-mesh", timeout=30),
        )

    async def stop(self) -> None:
        for step in (
            self._stop_operator,
            self._stop_webhooks,
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

    async def _stop_webhooks(self) -> None:
        if self.webhooks is not None:
            await self.webhooks.stop()

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
        assert self.api is not None and self.fleet is not None and self.prometheus is not None
        self.evaluator = EvaluatorProcess(
            api=self.api,
            namespace=self.ns,
            name=self.name,
            fleet_url=self.fleet.url,
            workdir=self.workdir,
            log_path=self.workdir / "evaluator.log",
        )
        await asyncio.to_thread(self.evaluator.start)
        self.prometheus.set_targets([*self.fleet.scrape_targets(), self.evaluator.scrape_target()])

    # ---- cluster plumbing -------------------------------------------------------------------------
    def _ready_policy(self, namespace: str, deployment: str, version: int | None) -> bool:
        """Pods load their model unless the scenario says that version never becomes ready."""
        behaviour = None if version is None else self.scenario.versions.get(str(version))
        return True if behaviour is None else behaviour.ready

    def _crash_policy(self, namespace: str, deployment: str, version: int | None) -> tuple[str, float] | None:
        """The scenario's versions.<v>.crash: TF Serving crashes that long (wall seconds) after being ready."""
        behaviour = None if version is None else self.scenario.versions.get(str(version))
        crash = None if behaviour is None else behaviour.crash
        return None if crash is None else (crash.reason, crash.after / self.speed)

    def _model_state_policy(self, namespace: str, deployment: str, version: int | None) -> str:
        """TF Serving's state of the version in its pods: the fleet's behaviour now (a change's modelState)."""
        if self.fleet is None or version is None or str(version) not in self.fleet.versions:
            return "AVAILABLE"
        return self.fleet.behaviour(version).model_state

    def _on_pods(self, workload: WorkloadPods) -> None:
        if self.fleet is not None and workload.model == self.spec.model.name and workload.version is not None:
            self.fleet.set_workload_ready(workload.version, workload.deployment, workload.labels, workload.ready)

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> dict | None:
        """One call to the emulator: the decoded answer, None for a 404 GET (a 409 POST is fine too)."""
        assert self.http is not None
        resp = await self.http.request(
            method, path, content=None if body is None else json.dumps(body), headers={"Content-Type": content_type}
        )
        if method != "GET" and resp.status_code < 300:
            self.runner_writes += 1
        if resp.status_code == 404 and method == "GET":
            return None
        if resp.status_code >= 400 and not (method == "POST" and resp.status_code == 409):
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp.json() if resp.content else None


__all__ = ["Platform", "istio_crd_files", "istio_schema", "md_crd_file"]
