"""The cluster's own controllers, played for the API emulator (which has none).

`DeploymentController` does what the Deployment/ReplicaSet controllers, the scheduler and the kubelets
would do for EVERY Deployment in its namespace, through the API like they do, driven only by each
Deployment's own spec (never by the labels of whoever created it, so a labelling bug in the
operator shows up here as it would in a cluster):
- it keeps one Pod object per desired replica: labels from the pod template plus
  ``pod-template-hash``, a controller ownerReference to the Deployment; a Deployment's pods are the
  ones it owns AND its ``spec.selector`` selects; extra ones are deleted, a template change
  replaces them (a rolling update, simplified: all at once);
- a scheduler model: pods that request `nvidia.com/gpu` get GPUs from a finite pool (`gpu_capacity`,
  None = unlimited), oldest Deployment first; the others stay Pending with PodScheduled=False,
  reason Unschedulable and the scheduler's usual message — which is how ModelDeploy notices a GPU
  shortage. `set_gpu_capacity()` adds or removes capacity at run time;
- a kubelet model: scheduled pods become Ready `ready_delay` seconds later, unless the readiness
  policy says their model never loads. The model version a pod must have loaded is the one its
  readiness (or startup) probe asks TF Serving for, ``GET /v1/models/<model>/versions/<v>[/metadata]``,
  the same thing a kubelet probes; a Ready pod stays Ready only while its readiness probe passes for the
  version's current TF Serving state (`model_state_policy`, the scenario's ``modelState``) as TF Serving
  answers that path (`readiness_probe_succeeds`: the status path passes in every state, /metadata only
  when AVAILABLE);
- a crash policy (the scenario's `versions.<v>.crash: {after, reason}`) makes a version's TF Serving
  container crash `after` seconds after its pod became Ready, as a kubelet reports it: the pod is not
  Ready, `containerStatuses[tfserving]` has a growing `restartCount`, `lastState.terminated` with
  exit code 137 / reason OOMKilled (or 1 / Error) and `state.waiting` CrashLoopBackOff;
- each Deployment's status follows its pods as the Deployment controller's ``calculateStatus`` and
  ``syncRolloutStatus`` write it: observedGeneration, replicas, updatedReplicas, readyReplicas,
  availableReplicas (a pod counts only once it has been Ready for ``spec.minReadySeconds``, like
  ``podutil.IsPodAvailable``), unavailableReplicas, and the ``Available`` (MinimumReplicasAvailable /
  MinimumReplicasUnavailable: available >= replicas - maxUnavailable) and ``Progressing``
  (ReplicaSetUpdated / NewReplicaSetAvailable / ProgressDeadlineExceeded) conditions.
It reports the ready pods of each workload (Deployment) with the model and version it serves and its
pods' labels (`WorkloadPods`), so the simulated fleet serves exactly those pods and Istio subsets
select them by their real labels.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from kubeemu.selectors import SelectorError, label_matcher

log = logging.getLogger(__name__)

# (namespace, Deployment name, model version its probe asks for or None) -> do its pods become ready?
ReadyPolicy = Callable[[str, str, "int | None"], bool]
# (namespace, Deployment name, model version or None) -> (reason, seconds after ready) or None
CrashPolicy = Callable[[str, str, "int | None"], "tuple[str, float] | None"]
RESTART_EVERY_SECONDS = 2.0  # how often a crashing container is restarted (kubelet back-off, compressed)
MERGE = {"Content-Type": "application/merge-patch+json"}
POD_TEMPLATE_HASH = "pod-template-hash"  # what the ReplicaSet controller adds to its pods' labels
_VERSION_PATH = re.compile(r"^/v1/models/(?P<model>[^/:]+)/versions/(?P<version>[0-9]+)(?P<metadata>/metadata)?$")
# (namespace, Deployment name, model version) -> TF Serving's state of that version in its pods
ModelStatePolicy = Callable[[str, str, "int | None"], str]


@dataclass(frozen=True)
class WorkloadPods:
    """The ready pods of one Deployment, as the simulated fleet needs them."""

    deployment: str
    model: str | None  # the TF Serving model the pods' probe asks for (None: not a versioned TF Serving pod)
    version: int | None
    labels: Mapping[str, str]  # the pod template's labels
    ready: int


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector (matchLabels + matchExpressions) in the ``labelSelector`` query syntax.

    An empty selector selects nothing here (apps/v1 requires a non-empty one)."""
    selector = selector or {}
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            terms.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            terms.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            terms.append(str(key))
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
        else:
            raise SelectorError(f"unknown matchExpressions operator {op!r}")
    return ",".join(terms)


def served_model_version(template: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """(model, version) a pod template's readiness/startup probe asks TF Serving for, else (None, None)."""
    for container in (template.get("spec") or {}).get("containers") or []:
        for probe in ("readinessProbe", "startupProbe"):
            path = ((container.get(probe) or {}).get("httpGet") or {}).get("path") or ""
            m = _VERSION_PATH.match(path)
            if m:
                return m["model"], int(m["version"])
    return None, None


def readiness_probe_succeeds(template: Mapping[str, Any], state: str) -> bool:
    """Does the readiness probe pass while TF Serving holds the version in `state`?

    As TF Serving answers the probe's path: GetModelStatus (``/versions/<v>``) is 200 for every state of a
    version it knows (START..END); GetModelMetadata (``/versions/<v>/metadata``) needs a servable handle,
    which only an AVAILABLE version has (404 otherwise). Any other probe is not about the model."""
    for container in (template.get("spec") or {}).get("containers") or []:
        path = (((container.get("readinessProbe") or {}).get("httpGet")) or {}).get("path") or ""
        m = _VERSION_PATH.match(path)
        if m and m["metadata"]:
            return state == "AVAILABLE"
    return True


def _now_ts() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _since(ts: str | None) -> dict[str, str]:
    return {"lastTransitionTime": ts} if ts else {}


def _int_or_percent(value: Any, total: int, default: str, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: an int, or a percentage of `total` (rounded up or down)."""
    value = default if value is None else value
    if isinstance(value, str) and value.endswith("%"):
        scaled = int(value[:-1]) * total / 100
        return int(math.ceil(scaled)) if round_up else int(math.floor(scaled))
    return int(value)


def max_unavailable(dep: Mapping[str, Any]) -> int:
    """deploymentutil.MaxUnavailable: 0 for Recreate or no replicas; else maxUnavailable resolved against the
    replicas (rounded down; 1 when maxSurge and maxUnavailable both resolve to 0), at most the replicas."""
    spec = dep.get("spec") or {}
    replicas = int(spec.get("replicas", 1) or 0)
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate" or replicas == 0:
        return 0
    rolling = strategy.get("rollingUpdate") or {}
    surge = _int_or_percent(rolling.get("maxSurge"), replicas, "25%", round_up=True)
    unavailable = _int_or_percent(rolling.get("maxUnavailable"), replicas, "25%", round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return min(unavailable, replicas)


def deployment_conditions(dep: Mapping[str, Any], desired: int, counts: Mapping[str, int], now_ts: str) -> list[dict]:
    """The Available and Progressing conditions as the Deployment controller sets them.

    Available (calculateStatus): True MinimumReplicasAvailable when availableReplicas >= replicas -
    maxUnavailable, else False MinimumReplicasUnavailable. Progressing (syncRolloutStatus): True
    NewReplicaSetAvailable once every replica is updated and available; True ReplicaSetUpdated while it
    progresses (lastUpdateTime moves with every change of the replica counts); False ProgressDeadlineExceeded
    after spec.progressDeadlineSeconds (default 600) without progress. As SetDeploymentCondition does, a
    condition whose status and reason stay is not rewritten, and lastTransitionTime moves only with the status."""
    meta = dep.get("metadata") or {}
    status = dep.get("status") or {}
    old = {c.get("type"): c for c in status.get("conditions") or []}

    def cond(kind: str, state: str, reason: str, message: str, *, touch: bool = False) -> dict:
        before = old.get(kind) or {}
        if before.get("status") == state and before.get("reason") == reason and not touch:
            return before
        return {
            "type": kind,
            "status": state,
            "lastUpdateTime": now_ts,
            "lastTransitionTime": before.get("lastTransitionTime", now_ts) if before.get("status") == state else now_ts,
            "reason": reason,
            "message": message,
        }

    available = counts["availableReplicas"]
    if available >= desired - max_unavailable(dep):
        availability = cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        availability = cond(
            "Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
        )
    rs = f'ReplicaSet "{meta.get("name")}"'
    progressed = any(status.get(k, 0) != v for k, v in counts.items()) or status.get("observedGeneration") != meta.get(
        "generation"
    )
    before = old.get("Progressing") or {}
    if counts["replicas"] == desired and counts["updatedReplicas"] == desired and available >= desired:
        progressing = cond("Progressing", "True", "NewReplicaSetAvailable", f"{rs} has successfully progressed.")
    elif progressed or before.get("status") != "True" or before.get("reason") == "NewReplicaSetAvailable":
        progressing = cond("Progressing", "True", "ReplicaSetUpdated", f"{rs} is progressing.", touch=progressed)
    else:
        progressing = before
        deadline = int((dep.get("spec") or {}).get("progressDeadlineSeconds") or 600)
        last, now = _parse_ts(before.get("lastUpdateTime")), _parse_ts(now_ts)
        if last is not None and now is not None and (now - last).total_seconds() > deadline:
            progressing = cond("Progressing", "False", "ProgressDeadlineExceeded", f"{rs} has timed out progressing.")
    return [availability, progressing]


def _parse_ts(ts: str | None) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(ts or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


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
    ready_since: float | None = None  # since when it is Ready without a break (minReadySeconds counts from here)
    ready_ts: str | None = None  # the Ready condition's lastTransitionTime


def _pod_status(sim: _PodSim, ready: bool, nodes: int, crash: tuple[str, float] | None = None) -> dict:
    """The status a kubelet (or, unscheduled, the scheduler) reports for one simulated pod."""
    if sim.scheduled_at is None:
        others = nodes - 1
        status = {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "lastTransitionTime": sim.unschedulable_ts,
                    "message": f"0/{nodes} nodes are available: 1 Insufficient nvidia.com/gpu, "
                    f"{others} node(s) didn't match Pod's node affinity/selector.",
                }
            ],
        }
    else:
        status = {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True" if ready else "False", **_since(sim.ready_ts)},
                {"type": "ContainersReady", "status": "True" if ready else "False", **_since(sim.ready_ts)},
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
    return status


@dataclass
class DeploymentController:
    """Polls the emulator for the namespace's Deployments; keeps their Pods and status like a cluster would."""

    api_url: str
    namespace: str
    ready_policy: ReadyPolicy = lambda ns, name, version: True
    crash_policy: CrashPolicy = lambda ns, name, version: None
    model_state_policy: ModelStatePolicy = lambda ns, name, version: "AVAILABLE"
    ready_delay: float = 1.0  # seconds from a pod being scheduled until it is Ready
    poll_interval: float = 0.2
    on_change: Callable[[WorkloadPods], None] | None = None  # a workload's ready pods changed
    gpu_capacity: int | None = None  # nvidia.com/gpu in the whole (simulated) cluster; None = unlimited
    nodes: int = 3
    concurrency: int = 8  # Deployments synced at once (kube-controller-manager: --concurrent-deployment-syncs=5)
    client: httpx.AsyncClient | None = None  # shared with the caller (base_url = api_url); else our own
    _pods: dict[str, _PodSim] = field(default_factory=dict)
    _ready: dict[str, WorkloadPods] = field(default_factory=dict)
    _task: asyncio.Task | None = None
    _own_client: bool = False
    writes: int = 0

    async def start(self) -> None:
        if self.client is None:
            self.client = httpx.AsyncClient(base_url=self.api_url, timeout=10)
            self._own_client = True
        self._task = asyncio.create_task(self._loop(), name="deployment-controller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        if self.client is not None and self._own_client:
            await self.client.aclose()

    def set_gpu_capacity(self, capacity: int | None) -> None:
        self.gpu_capacity = capacity

    def workloads(self) -> list[WorkloadPods]:
        """The last reported ready pods of every Deployment."""
        return list(self._ready.values())

    async def _loop(self) -> None:
        while True:
            try:
                await self.sync_once()
            except httpx.HTTPError as exc:
                log.debug("deployment controller: %s", exc)
            await asyncio.sleep(self.poll_interval)

    # ---- one sync ---------------------------------------------------------------------------------
    async def sync_once(self) -> None:
        """One pass over the namespace, in three steps: the pods of every Deployment (creates/deletes),
        concurrently; scheduling and readiness in Deployment age order (the GPU pool goes to the oldest
        first; no I/O); then each Deployment's pod and Deployment status writes, Deployments concurrently.
        Like a cluster, whose Deployment/ReplicaSet controllers run several workers and whose kubelets
        run in parallel: one pass at 1,000 Deployments must not take one write's latency times 3,000."""
        assert self.client is not None
        ns = self.namespace
        deps_resp = await self.client.get(f"/apis/apps/v1/namespaces/{ns}/deployments")
        pods_resp = await self.client.get(f"/api/v1/namespaces/{ns}/pods")
        if deps_resp.status_code != 200 or pods_resp.status_code != 200:
            return
        deployments = list(deps_resp.json().get("items", []))
        deployments.sort(
            key=lambda d: (d["metadata"].get("creationTimestamp", ""), int(d["metadata"].get("resourceVersion", 0)))
        )
        pods_by_owner: dict[str, list[dict]] = {}
        for pod in pods_resp.json().get("items", []):
            for ref in pod["metadata"].get("ownerReferences") or []:
                if ref.get("controller") and ref.get("kind") == "Deployment":
                    pods_by_owner.setdefault(ref.get("uid") or "", []).append(pod)

        selected: list[tuple[dict, int, list[dict]]] = []  # (Deployment, desired replicas, its pods)
        for dep in deployments:
            meta = dep["metadata"]
            spec = dep.get("spec") or {}
            try:
                selects = label_matcher(selector_string(spec.get("selector"))) or (lambda labels: False)
            except SelectorError as exc:
                log.debug("deployment %s: bad selector: %s", meta["name"], exc)
                continue
            owned = [
                p for p in pods_by_owner.get(meta.get("uid") or "", []) if selects(p["metadata"].get("labels") or {})
            ]
            selected.append((dep, int(spec.get("replicas", 1) or 0), owned))
        pods_of = await self._concurrently([self._ensure_pods(dep, desired, owned) for dep, desired, owned in selected])

        gpus_left = self.gpu_capacity
        reported: dict[str, WorkloadPods] = {}
        live_pods: set[str] = set()
        writes = []
        for (dep, desired, _), pods in zip(selected, pods_of):
            meta = dep["metadata"]
            spec = dep.get("spec") or {}
            template = spec.get("template") or {}
            model, version = served_model_version(template)
            gpu_per_pod = _gpus(template)
            becomes_ready = self.ready_policy(self.namespace, meta["name"], version)
            # once loaded, the readiness probe keeps asking TF Serving about the version (it may be unloaded)
            probe_passes = readiness_probe_succeeds(
                template, self.model_state_policy(self.namespace, meta["name"], version)
            )
            min_ready = max(0, int(spec.get("minReadySeconds") or 0))
            ready = available = 0
            pod_statuses = []
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
                    and probe_passes
                )
                crash = None
                if is_ready:
                    sim.ready_at = sim.ready_at or time.monotonic()
                    policy = self.crash_policy(self.namespace, meta["name"], version)
                    if policy is not None and time.monotonic() - sim.ready_at >= policy[1]:
                        crash = (policy[0], time.monotonic() - sim.ready_at - policy[1])
                        is_ready = False
                if is_ready and sim.ready_since is None:
                    sim.ready_since, sim.ready_ts = time.monotonic(), _now_ts()
                elif not is_ready and sim.ready_since is not None:
                    sim.ready_since, sim.ready_ts = None, _now_ts()
                ready += int(is_ready)
                # podutil.IsPodAvailable: Ready, and for at least minReadySeconds
                available += int(is_ready and time.monotonic() - (sim.ready_since or 0.0) >= min_ready)
                pod_statuses.append((pod, sim, _pod_status(sim, is_ready, self.nodes, crash)))
            labels = dict((template.get("metadata") or {}).get("labels") or {})
            # the fleet serves every Ready pod (an Endpoints address is ready as soon as the pod is Ready)
            reported[meta["name"]] = WorkloadPods(meta["name"], model, version, labels, ready)
            writes.append(self._write_statuses(dep, pod_statuses, desired, len(pods), ready, available))
        await self._concurrently(writes)
        for name in list(self._pods):
            if name not in live_pods:
                self._pods.pop(name)
        for name, gone in list(self._ready.items()):
            if name not in reported:  # the Deployment was deleted: its pods are gone
                reported[name] = replace(gone, ready=0)
        for workload in reported.values():
            self._report(workload)
        current = {d["metadata"]["name"] for d in deployments}
        for name in [n for n in self._ready if n not in current]:
            self._ready.pop(name)

    async def _concurrently(self, coroutines: list) -> list:
        """Run the coroutines at most `concurrency` at a time, results in order; the first failure cancels
        the rest (the next sync starts over from a fresh list)."""
        limit = asyncio.Semaphore(self.concurrency)

        async def one(coroutine: Any) -> Any:
            async with limit:
                return await coroutine

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(c)) for c in coroutines]
        return [t.result() for t in tasks]

    async def _write_statuses(
        self, dep: dict, pod_statuses: list[tuple[dict, _PodSim, dict]], desired: int, pods: int, ready: int,
        available: int,
    ) -> None:  # fmt: skip
        """A Deployment's pod status writes (kubelets), then its own status (the Deployment controller)."""
        for pod, sim, status in pod_statuses:
            await self._write_pod_status(pod, sim, status)
        await self._deployment_status(dep, desired, pods, ready, available)

    async def _ensure_pods(self, dep: dict, desired: int, pods: list[dict]) -> list[dict]:
        assert self.client is not None
        meta = dep["metadata"]
        template = (dep.get("spec") or {}).get("template") or {}
        rs = hashlib.sha256(f"{meta['name']}/{meta.get('uid')}/{meta.get('generation')}".encode()).hexdigest()[:9]
        pods = sorted(pods, key=lambda p: p["metadata"]["name"])
        # a template change replaces the pods (rolling update, simplified: all at once)
        current = [p for p in pods if (p["metadata"].get("labels") or {}).get(POD_TEMPLATE_HASH) == rs]
        for pod in pods:
            if pod not in current or current.index(pod) >= desired:
                await self.client.delete(f"/api/v1/namespaces/{self.namespace}/pods/{pod['metadata']['name']}")
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
                    "labels": {**((template.get("metadata") or {}).get("labels") or {}), POD_TEMPLATE_HASH: rs},
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
            resp = await self.client.post(f"/api/v1/namespaces/{self.namespace}/pods", json=pod)
            if resp.status_code in (200, 201):
                self.writes += 1
                current.append(resp.json())
        return current

    async def _write_pod_status(self, pod: dict, sim: _PodSim, status: dict) -> None:
        if sim.last_status == status:
            return
        assert self.client is not None
        resp = await self.client.patch(
            f"/api/v1/namespaces/{self.namespace}/pods/{pod['metadata']['name']}/status",
            json={"status": status},
            headers=MERGE,
        )
        if resp.status_code == 200:
            self.writes += 1
            sim.last_status = status

    async def _deployment_status(self, dep: dict, desired: int, pods: int, ready: int, available: int) -> None:
        meta = dep["metadata"]
        status = dep.get("status") or {}
        wanted: dict[str, Any] = {
            "observedGeneration": int(meta.get("generation") or 1),
            "replicas": pods,
            "updatedReplicas": pods,  # every pod has the current template (the rolling update is all at once)
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": max(0, desired - available),
        }
        conditions = deployment_conditions(dep, desired, wanted, _now_ts())
        if all(status.get(k, 0) == v for k, v in wanted.items()) and (status.get("conditions") or []) == conditions:
            return
        assert self.client is not None
        resp = await self.client.patch(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{meta['name']}/status",
            json={"status": {**wanted, "conditions": conditions}},
            headers=MERGE,
        )
        if resp.status_code == 200:
            self.writes += 1

    def _report(self, workload: WorkloadPods) -> None:
        if self._ready.get(workload.deployment) != workload:
            self._ready[workload.deployment] = workload
            if self.on_change:
                self.on_change(workload)
