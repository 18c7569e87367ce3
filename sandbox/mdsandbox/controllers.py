"""The cluster's own controllers, played for the API emulator (which has none).

`DeploymentController` does what the Deployment/ReplicaSet controllers, the scheduler and the kubelets
would do for the TF Serving Deployments ModelDeploy creates, through the API like they do:
- it keeps one Pod object per desired replica (labels from the pod template), deleting extra ones;
- a scheduler model: pods that request `nvidia.com/gpu` get GPUs from a finite pool (`gpu_capacity`,
  None = unlimited), oldest Deployment first; the others stay Pending with PodScheduled=False,
  reason Unschedulable and the scheduler's usual message — which is how ModelDeploy notices a GPU
  shortage. `set_gpu_capacity()` adds or removes capacity at run time;
- scheduled pods become Ready `ready_delay` seconds later, unless the readiness policy (the
  scenario's `versions.<v>.ready`) says their model never loads;
- a crash policy (the scenario's `versions.<v>.crash: {after, reason}`) makes a version's TF Serving
  container crash `after` seconds after its pod became Ready, as a kubelet reports it: the pod is not
  Ready, `containerStatuses[tfserving]` has a growing `restartCount`, `lastState.terminated` with
  exit code 137 / reason OOMKilled (or 1 / Error) and `state.waiting` CrashLoopBackOff;
- each Deployment's status (observedGeneration, replicas, updated/ready/available) follows its pods.
It reports the ready pods per (ModelDeployment, version) — summed over a version's GPU and
CPU-fallback Deployments — so the simulated fleet serves exactly those.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from modeldeploy import names

log = logging.getLogger(__name__)

ReadyPolicy = Callable[[str, str, int], bool]  # (namespace, ModelDeployment name, version) -> pods become ready?
CrashPolicy = Callable[[str, str, int], "tuple[str, float] | None"]  # -> (reason, seconds after ready) or None
RESTART_EVERY_SECONDS = 2.0  # how often a crashing container is restarted (kubelet back-off, compressed)
MERGE = {"Content-Type": "application/merge-patch+json"}


def _now_ts() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _gpus(template: dict) -> int:
    total = 0
    for c in (template.get("spec") or {}).get("containers") or []:
        limits = (c.get("resources") or {}).get("limits") or {}
        try:
            total += int(str(limits.get("nvidia.com/gpu", 0)))
        except ValueError:
            pass
    return total


@dataclass
class _PodSim:
    scheduled_at: float | None = None
    unschedulable_ts: str | None = None
    last_status: dict | None = None
    ready_at: float | None = None  # when it first became Ready (a crash policy counts from here)


@dataclass
class DeploymentController:
    """Polls the emulator for ModelDeploy's Deployments; keeps their Pods and status like a cluster would."""

    api_url: str
    namespace: str
    ready_policy: ReadyPolicy = lambda ns, name, version: True
    crash_policy: CrashPolicy = lambda ns, name, version: None
    ready_delay: float = 1.0  # seconds from a pod being scheduled until it is Ready
    poll_interval: float = 0.2
    on_change: Callable[[str, int, int], None] | None = None  # (md name, version, ready pods of all variants)
    gpu_capacity: int | None = None  # nvidia.com/gpu in the whole (simulated) cluster; None = unlimited
    nodes: int = 3
    _pods: dict[str, _PodSim] = field(default_factory=dict)
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

    def set_gpu_capacity(self, capacity: int | None) -> None:
        self.gpu_capacity = capacity

    def ready_replicas(self, name: str, version: int) -> int:
        return self._ready.get((name, version), 0)

    async def _loop(self) -> None:
        while True:
            try:
                await self.sync_once()
            except httpx.HTTPError as exc:
                log.debug("deployment controller: %s", exc)
            await asyncio.sleep(self.poll_interval)

    # ---- one sync ---------------------------------------------------------------------------------
    async def sync_once(self) -> None:
        assert self._client is not None
        selector = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
        ns = self.namespace
        deps_resp = await self._client.get(
            f"/apis/apps/v1/namespaces/{ns}/deployments", params={"labelSelector": selector}
        )
        pods_resp = await self._client.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": selector})
        if deps_resp.status_code != 200 or pods_resp.status_code != 200:
            return
        deployments = [
            d
            for d in deps_resp.json().get("items", [])
            if ((d["metadata"].get("labels") or {}).get(names.LABEL_MODEL_VERSION, "")).isdigit()
        ]
        deployments.sort(
            key=lambda d: (d["metadata"].get("creationTimestamp", ""), int(d["metadata"].get("resourceVersion", 0)))
        )
        pods_by_owner: dict[str, list[dict]] = {}
        for pod in pods_resp.json().get("items", []):
            owner = (pod["metadata"].get("labels") or {}).get("modeldeploy.io/pod-of")
            pods_by_owner.setdefault(owner or "", []).append(pod)

        gpus_left = self.gpu_capacity
        ready_by_version: dict[tuple[str, int], int] = {}
        live_pods: set[str] = set()
        for dep in deployments:
            meta = dep["metadata"]
            labels = meta.get("labels") or {}
            owner, version = labels.get(names.LABEL_OWNER), int(labels[names.LABEL_MODEL_VERSION])
            template = (dep.get("spec") or {}).get("template") or {}
            desired = int((dep.get("spec") or {}).get("replicas", 1) or 0)
            gpu_per_pod = _gpus(template)
            becomes_ready = self.ready_policy(self.namespace, owner, version)
            pods = await self._ensure_pods(dep, desired, pods_by_owner.get(meta["name"], []))
            ready = 0
            for pod in pods:
                name = pod["metadata"]["name"]
                live_pods.add(name)
                sim = self._pods.setdefault(name, _PodSim())
                if sim.scheduled_at is None:
                    if gpu_per_pod == 0 or gpus_left is None or gpus_left >= gpu_per_pod:
                        sim.scheduled_at = time.monotonic()
                        sim.unschedulable_ts = None
                    elif sim.unschedulable_ts is None:
                        sim.unschedulable_ts = _now_ts()
                if sim.scheduled_at is not None and gpu_per_pod and gpus_left is not None:
                    gpus_left -= gpu_per_pod
                is_ready = (
                    sim.scheduled_at is not None
                    and becomes_ready
                    and time.monotonic() - sim.scheduled_at >= self.ready_delay
                )
                crash = None
                if is_ready:
                    sim.ready_at = sim.ready_at or time.monotonic()
                    policy = self.crash_policy(self.namespace, owner, version)
                    if policy is not None and time.monotonic() - sim.ready_at >= policy[1]:
                        crash = (policy[0], time.monotonic() - sim.ready_at - policy[1])
                        is_ready = False
                ready += int(is_ready)
                await self._pod_status(pod, sim, is_ready, gpu_per_pod, crash)
            key = (owner, version)
            ready_by_version[key] = ready_by_version.get(key, 0) + ready
            await self._deployment_status(dep, desired, ready)
        for name in list(self._pods):
            if name not in live_pods:
                self._pods.pop(name)
        for key in set(self._ready) | set(ready_by_version):
            self._set_ready(key, ready_by_version.get(key, 0))

    async def _ensure_pods(self, dep: dict, desired: int, pods: list[dict]) -> list[dict]:
        meta = dep["metadata"]
        template = (dep.get("spec") or {}).get("template") or {}
        rs = hashlib.sha256(f"{meta['name']}/{meta.get('uid')}/{meta.get('generation')}".encode()).hexdigest()[:9]
        pods = sorted(pods, key=lambda p: p["metadata"]["name"])
        # a template change replaces the pods (rolling update, simplified: all at once)
        current = [p for p in pods if (p["metadata"].get("labels") or {}).get("pod-template-hash") == rs]
        for pod in pods:
            if pod not in current or current.index(pod) >= desired:
                await self._client.delete(f"/api/v1/namespaces/{self.namespace}/pods/{pod['metadata']['name']}")
                self.writes += 1
        current = current[:desired]
        existing = {p["metadata"]["name"] for p in current}
        for i in range(desired):
            name = f"{meta['name']}-{rs}-{i}"
            if name in existing:
                continue
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": {
                        **((template.get("metadata") or {}).get("labels") or {}),
                        "pod-template-hash": rs,
                        "modeldeploy.io/pod-of": meta["name"],
                    },
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": meta["name"],
                            "uid": meta.get("uid"),
                            "controller": True,
                        }
                    ],
                },
                "spec": template.get("spec") or {},
            }
            resp = await self._client.post(f"/api/v1/namespaces/{self.namespace}/pods", json=pod)
            if resp.status_code in (200, 201):
                self.writes += 1
                current.append(resp.json())
        return current

    async def _pod_status(
        self, pod: dict, sim: _PodSim, ready: bool, gpus: int, crash: tuple[str, float] | None = None
    ) -> None:
        if sim.scheduled_at is None:
            others = self.nodes - 1
            status = {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "lastTransitionTime": sim.unschedulable_ts,
                        "message": f"0/{self.nodes} nodes are available: 1 Insufficient nvidia.com/gpu, "
                        f"{others} node(s) didn't match Pod's node affinity/selector.",
                    }
                ],
            }
        else:
            status = {
                "phase": "Running",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True" if ready else "False"},
                    {"type": "ContainersReady", "status": "True" if ready else "False"},
                ],
            }
            if crash is not None:
                reason, crashing_for = crash
                oom = reason == "OOMKilled"
                status["containerStatuses"] = [
                    {
                        "name": "tfserving",
                        "ready": False,
                        "restartCount": 1 + int(crashing_for / RESTART_EVERY_SECONDS),
                        "state": {"waiting": {"reason": "CrashLoopBackOff",
                                              "message": "back-off 10s restarting failed container=tfserving"}},
                        "lastState": {"terminated": {"exitCode": 137 if oom else 1, "reason": "OOMKilled" if oom else "Error",
                                                     "message": "" if oom else "tensorflow_model_server exited"}},
                    }
                ]  # fmt: skip
        if sim.last_status == status:
            return
        resp = await self._client.patch(
            f"/api/v1/namespaces/{self.namespace}/pods/{pod['metadata']['name']}/status",
            json={"status": status},
            headers=MERGE,
        )
        if resp.status_code == 200:
            self.writes += 1
            sim.last_status = status

    async def _deployment_status(self, dep: dict, desired: int, ready: int) -> None:
        meta = dep["metadata"]
        status = dep.get("status") or {}
        wanted = {
            "observedGeneration": int(meta.get("generation") or 1),
            "replicas": desired,
            "updatedReplicas": desired,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": desired - ready,
        }
        if all(status.get(k, 0) == v for k, v in wanted.items()):
            return
        resp = await self._client.patch(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{meta['name']}/status",
            json={"status": wanted},
            headers=MERGE,
        )
        if resp.status_code == 200:
            self.writes += 1

    def _set_ready(self, key: tuple[str, int], ready: int) -> None:
        if self._ready.get(key) != ready:
            self._ready[key] = ready
            if self.on_change:
                self.on_change(key[0], key[1], ready)
