"""The cluster's own controllers, played for the API emulator (which has none).

`DeploymentController` does what kube-controller-manager and the kubelets would do for the TF Serving
Deployments ModelDeploy creates: it writes each Deployment's status (observedGeneration, replicas,
updatedReplicas, readyReplicas, availableReplicas) through the API like the real controller does.
Whether a version's pods become ready, and how long they take, comes from a policy callback — the
sandbox scenario's `versions.<v>.ready`, or a test's choice. It also reports which versions have
ready pods, so the simulated TF Serving fleet serves exactly those.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from modeldeploy.render import names

log = logging.getLogger(__name__)

ReadyPolicy = Callable[[str, str, int], bool]  # (namespace, ModelDeployment name, version) -> pods become ready?


@dataclass
class DeploymentController:
    """Polls the emulator for ModelDeploy's Deployments and writes their status."""

    api_url: str
    namespace: str
    ready_policy: ReadyPolicy = lambda ns, name, version: True
    ready_delay: float = 1.0  # seconds from a (re)scale or template change until pods are ready
    poll_interval: float = 0.2
    on_change: Callable[[str, int, int], None] | None = None  # (md name, version, ready replicas)
    _first_seen: dict[tuple[str, int], float] = field(default_factory=dict)
    _ready: dict[tuple[str, int], int] = field(default_factory=dict)
    _task: asyncio.Task | None = None
    _client: httpx.AsyncClient | None = None
    writes: int = 0

    async def start(self) -> None:
        self._client = httpx.AsyncClient(base_url=self.api_url, timeout=10)
        self._task = asyncio.create_task(self._loop(), name="deployment-controller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        if self._client is not None:
            await self._client.aclose()

    def ready_replicas(self, name: str, version: int) -> int:
        return self._ready.get((name, version), 0)

    async def _loop(self) -> None:
        while True:
            try:
                await self.sync_once()
            except httpx.HTTPError as exc:
                log.debug("deployment controller: %s", exc)
            await asyncio.sleep(self.poll_interval)

    async def sync_once(self) -> None:
        assert self._client is not None
        selector = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
        resp = await self._client.get(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments", params={"labelSelector": selector}
        )
        if resp.status_code != 200:
            return
        seen: set[tuple[str, int]] = set()
        for dep in resp.json().get("items", []):
            await self._reconcile(dep, seen)
        for key in list(self._ready):
            if key not in seen:
                self._ready.pop(key, None)
                self._first_seen.pop(key, None)
                if self.on_change:
                    self.on_change(key[0], key[1], 0)

    async def _reconcile(self, dep: dict, seen: set[tuple[str, int]]) -> None:
        meta = dep["metadata"]
        labels = meta.get("labels") or {}
        owner = labels.get(names.LABEL_OWNER)
        version_text = labels.get(names.LABEL_MODEL_VERSION, "")
        if not owner or not version_text.isdigit():
            return
        version = int(version_text)
        key = (owner, version)
        seen.add(key)
        generation = int(meta.get("generation") or 1)
        desired = int((dep.get("spec") or {}).get("replicas", 1) or 0)
        status = dep.get("status") or {}
        now = time.monotonic()
        changed = status.get("observedGeneration") != generation
        if changed or key not in self._first_seen:
            self._first_seen[key] = now
        becomes_ready = self.ready_policy(self.namespace, owner, version)
        ready = desired if (becomes_ready and now - self._first_seen[key] >= self.ready_delay) else 0
        wanted = {
            "observedGeneration": generation,
            "replicas": desired,
            "updatedReplicas": desired,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": desired - ready,
        }
        if all(status.get(k, 0) == v for k, v in wanted.items()):
            self._set_ready(key, ready)
            return
        resp = await self._client.patch(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{meta['name']}/status",
            json={"status": wanted},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        if resp.status_code == 200:
            self.writes += 1
            self._set_ready(key, ready)

    def _set_ready(self, key: tuple[str, int], ready: int) -> None:
        if self._ready.get(key) != ready:
            self._ready[key] = ready
            if self.on_change:
                self.on_change(key[0], key[1], ready)
