"""One ModelDeployment's control loop: read -> validate -> measure -> decide (pure) -> write status -> act.

kopf runs one `run()` per ModelDeployment (an async daemon); events on the ModelDeployment or on
its Deployments wake it early. Each pass:
1. takes the freshest body (kopf's live view, or a GET when our own last write is not in it yet);
2. validates the spec (schema + CEL + semantic, cached per generation); invalid -> phase Invalid,
   a Warning Event, and no child is touched;
3. observes the version Deployments (from kopf's index: no API reads) and, when due, runs an
   analysis or a fail-fast check against Prometheus;
4. `rollout.decide()` computes the next status and the objects it implies;
5. writes the status first (one merge patch, only if it changed), then applies the children
   (idempotent: zero writes when they match), deletes the versions no longer wanted (their Service
   first, then Deployment and ConfigMap: a crash in between leaves a Deployment, found stale again),
   emits Events, and clears a handled manual action annotation;
6. the rollout events of the decision (RolloutStarted, Promoted, RolledBack, Failed) are queued for the
   notifier (`modeldeploy.notifier`: its own workers; the queue put never waits);
7. every decision recorded in status.history (and every handled manual action) also becomes a
   record of the tamper-evident audit chain (`modeldeploy.audit`): the records are first written
   into status.audit.pending with the status, then appended to the chain (one immutable ConfigMap
   each) and removed from pending, so a crash in between re-appends them on the next pass, once.
A pass with nothing to change makes zero API writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import kopf

from modeldeploy import audit, gates, names, notifications
from modeldeploy.analysis import builtins
from modeldeploy.analysis.prometheus import PrometheusClient
from modeldeploy.analysis.runner import analyse
from modeldeploy.kube import KINDS, Conflict, Kube, NotFound
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.notifier import Notifier
from modeldeploy.plans import Target
from modeldeploy.render import desired_objects
from modeldeploy.rollout import (
    DeploymentState,
    Observation,
    analysis_due,
    available_replicas,
    decide,
    decide_invalid,
    fail_fast_applies,
    plans,
)
from modeldeploy.settings import Settings
from modeldeploy.spec import ModelDeploymentSpec
from modeldeploy.status import finite, from_timestamp, now_utc, set_condition, status_patch, to_timestamp
from modeldeploy.validation import ValidationResult, validate_spec

ACTION_BY = names.ANNOTATION_ACTION_BY
WAKE_DEBOUNCE_SECONDS = 0.03
DRIFT_CHECKS_AT_ONCE = 8  # periodic drift checks (unchanged children re-read) in flight at once
DEPLOYMENT = KINDS[("apps/v1", "Deployment")]
ISTIO_CONDITION = "IstioAPI"  # False while networking.istio.io is not served
CONFIGMAP = KINDS[("v1", "ConfigMap")]
SERVICE = KINDS[("v1", "Service")]
DESTINATION_RULE = KINDS[("networking.istio.io/v1", "DestinationRule")]


@dataclass
class _Memory:
    """Per-ModelDeployment in-memory caches. Never state: losing them costs reads, not correctness."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    validated_generation: Any = None
    validated_spec_json: str | None = None
    validation: ValidationResult | None = None
    written_rv: str | None = None  # resourceVersion our last write produced
    applied_fingerprint: str | None = None
    applied_at: float = 0.0
    # Whether an evaluator may exist: None = unknown (fresh process), True = we applied one, False = we
    # deleted it / it is absent. Deleting only on a transition keeps idle resyncs at 0 API writes.
    evaluator_present: bool | None = None
    last_fail_fast: float = 0.0
    audit_head: tuple[int, str, str] | None = None  # (seq, hash, record id) of the chain's newest record
    gate_calls: dict[str, asyncio.Task] = field(default_factory=dict)  # gate name -> its call in flight
    gate_answers: list[gates.GateAnswer] = field(default_factory=list)  # finished calls not decided on yet


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        prometheus: PrometheusClient | None,
        settings: Settings,
        metrics: OperatorMetrics,
        notifier: Notifier | None = None,
    ):
        self.kube = kube
        self.prometheus = prometheus
        self.settings = settings
        self.metrics = metrics
        self.notifier = notifier
        self._memory: dict[tuple[str, str], _Memory] = {}
        self._drift_checks = asyncio.Semaphore(DRIFT_CHECKS_AT_ONCE)

    def _mem(self, namespace: str, name: str) -> _Memory:
        return self._memory.setdefault((namespace, name), _Memory())

    def wake(self, namespace: str, name: str, resource_version: str | None = None) -> None:
        """Wake a ModelDeployment's loop early — unless the change is our own last write."""
        mem = self._memory.get((namespace, name))
        if mem is None or (resource_version is not None and resource_version == mem.written_rv):
            return
        mem.wake.set()

    def forget(self, namespace: str, name: str) -> None:
        self._memory.pop((namespace, name), None)
        self.metrics.forget(namespace, name)

    # ---- the loop ------------------------------------------------------------------------------

    async def run(self, body: kopf.Body, stopped: kopf.DaemonStopped, index: Any, logger: kopf.Logger) -> None:
        """Reconcile until kopf stops this daemon (object deleted, operator exiting or paused by a peer)."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        mem = self._mem(namespace, name)
        backoff = 0.5
        try:
            while not stopped:
                mem.wake.clear()
                started = time.perf_counter()
                try:
                    wake_in = await self.reconcile(body, index, logger)
                    backoff = 0.5
                except kopf.TemporaryError as exc:
                    self.metrics.reconcile_errors.labels("temporary").inc()
                    logger.warning("reconcile will retry: %s", exc)
                    wake_in = max(0.2, float(exc.delay or 1.0))
                except kopf.PermanentError as exc:
                    self.metrics.reconcile_errors.labels("permanent").inc()
                    logger.error("reconcile failed: %s", exc)
                    wake_in = self.settings.resync_seconds
                except Exception:  # noqa: BLE001 - never let one bad pass kill the daemon
                    self.metrics.reconcile_errors.labels("unexpected").inc()
                    logger.exception("unexpected error in reconcile; backing off %.1fs", backoff)
                    wake_in = backoff
                    backoff = min(backoff * 2, 30.0)
                finally:
                    self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
                await self._sleep(mem, stopped, wake_in)
        finally:
            if stopped.reason is not None and stopped.reason.name == "DONE":  # object deleted
                self.forget(namespace, name)

    async def _sleep(self, mem: _Memory, stopped: kopf.DaemonStopped, seconds: float) -> None:
        if seconds <= 0:
            return
        waits = [asyncio.ensure_future(mem.wake.wait()), asyncio.ensure_future(stopped.wait())]
        try:
            done, _ = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if done and not stopped:
            # Events come in bursts (a Deployment's status, its pods, our own writes echoed back):
            # gather them for a moment and decide once.
            await asyncio.sleep(WAKE_DEBOUNCE_SECONDS)

    # ---- one pass --------------------------------------------------------------------------------

    async def reconcile(
        self, live_body: kopf.Body | dict, index: Any, logger: kopf.Logger, now: datetime.datetime | None = None
    ) -> float:
        body = await self._fresh_body(live_body)
        if body is None:
            return self.settings.resync_seconds  # deleted meanwhile
        meta = body["metadata"]
        namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation")
        mem = self._mem(namespace, name)
        status = dict(body.get("status") or {})
        now = now or now_utc()
        written_before = mem.written_rv  # our writes in this pass move it: the object's latest resourceVersion

        validation = self._validate(mem, body)
        if not validation.ok:
            message = "invalid spec: " + "; ".join(str(p) for p in validation.problems)
            new_status, events = decide_invalid(status, message, now, generation)
            await self._write_status(mem, body, status, new_status)
            for event in events:
                await self.kube.emit_event(body, type=event.type, reason=event.reason, message=event.message)
            self.metrics.record_status(namespace, name, new_status)
            return self.settings.resync_seconds
        spec = validation.spec
        assert spec is not None
        if not await self._routing_api_served(mem, body, status, now, logger):
            return self.settings.resync_seconds

        annotations = meta.get("annotations") or {}
        action = annotations.get(names.ANNOTATION_ACTION)
        action_id = annotations.get(names.ANNOTATION_ACTION_ID)
        if action and not action_id:  # asked without a key (plain kubectl annotate): give the request one first
            action_id = await self._key_action_request(mem, meta)
        observation = Observation(
            deployments=self._deployments(index, namespace, name),
            action=action,
            action_by=annotations.get(ACTION_BY),
            action_id=action_id,
        )
        observation = await self._measure(spec, body, status, observation, mem, now, logger)
        answers, mem.gate_answers = tuple(mem.gate_answers), []
        if answers:
            observation = dataclasses.replace(observation, gate_answers=answers)

        decision = decide(spec, status, observation, now, generation)
        scrubbed = finite(decision.status)  # no NaN/Infinity may reach the API (400) or the audit chain
        decision.status.clear()
        decision.status.update(scrubbed)
        via = annotations.get(names.ANNOTATION_ACTION_VIA) if action else None
        pending = self._audit_pending(body, spec, status, decision, observation, now, via)
        await self._write_status(mem, body, status, decision.status)
        if pending:
            await self._append_audit(mem, body, decision.status, pending)

        target = Target(name=name, namespace=namespace, spec=spec, uid=meta.get("uid"),
                        cluster_domain=self.settings.cluster_domain)  # fmt: skip
        await self._apply_children(mem, target, decision, observation)

        for event in decision.events:
            log = logger.warning if event.type == "Warning" else logger.info
            log("%s: %s", event.reason, event.message)
            await self.kube.emit_event(body, type=event.type, reason=event.reason, message=event.message)
            if event.reason == "Promoted":
                self.metrics.promotions.labels(namespace, name).inc()
            elif event.reason in ("RolledBack", "Aborted"):
                self.metrics.rollbacks.labels(namespace, name, event.reason).inc()
        self._notify(body, spec, status, decision, now)
        self._ask_gates(mem, body, spec, decision.status, observation, now)
        if decision.action_handled:
            # Preconditioned on the object as this pass last wrote or read it: a NEW request set meanwhile (the
            # pass took a while: slow children) is a 409 here instead of being wiped unseen; the next pass
            # looks at it (and at the old one again: same key, nothing applied twice).
            latest = mem.written_rv if mem.written_rv != written_before else meta.get("resourceVersion")
            result = await self.kube.patch_modeldeployment(
                namespace,
                name,
                {
                    "metadata": {
                        "resourceVersion": latest,
                        "annotations": {
                            names.ANNOTATION_ACTION: None,
                            ACTION_BY: None,
                            names.ANNOTATION_ACTION_VIA: None,
                            names.ANNOTATION_ACTION_ID: None,
                        },
                    }
                },
            )
            mem.written_rv = (result.get("metadata") or {}).get("resourceVersion")
        self.metrics.record_status(namespace, name, decision.status, spec)
        return min(decision.wake_in, self.settings.resync_seconds)

    # ---- helpers -------------------------------------------------------------------------------

    async def _key_action_request(self, mem: _Memory, meta: Mapping[str, Any]) -> str:
        """Give a manual action asked for without an idempotency key (plain `kubectl annotate`; the plugin and
        the dashboard send one) its key, modeldeploy.io/action-id, BEFORE acting on it: the key recorded with
        the action's effect is then the one a retry sees. Preconditioned on the resourceVersion: a request
        changed meanwhile is a 409, and the next pass looks at it afresh."""
        key = uuid.uuid4().hex
        result = await self.kube.patch_modeldeployment(
            meta["namespace"],
            meta["name"],
            {
                "metadata": {
                    "resourceVersion": meta.get("resourceVersion"),
                    "annotations": {names.ANNOTATION_ACTION_ID: key},
                }
            },
        )
        mem.written_rv = (result.get("metadata") or {}).get("resourceVersion")
        return key

    async def _routing_api_served(
        self, mem: _Memory, body: dict, status: dict, now: datetime.datetime, logger: kopf.Logger
    ) -> bool:
        """Is networking.istio.io served (v1, else v1beta1)? If not: one condition and one Event, no retry storm.

        Detected at start-up; re-detected here (one discovery request per resync) while it is missing,
        so installing Istio later recovers without a restart. Nothing is applied meanwhile: a rollout
        without its routing objects would shift no traffic."""
        previous = next((c for c in status.get("conditions") or [] if c.get("type") == ISTIO_CONDITION), None)
        if self.kube.istio_api_version is None:
            await self.kube.detect_istio()
        generation = body["metadata"].get("generation")
        if self.kube.istio_api_version is not None:
            if previous is not None and previous.get("status") == "False":
                conditions = set_condition(
                    status.get("conditions") or [],
                    ISTIO_CONDITION,
                    True,
                    "Served",
                    f"{self.kube.istio_api_version} is served",
                    generation,
                    now,
                )
                await self._write_status(mem, body, status, {**status, "conditions": conditions})
                status["conditions"] = conditions
            return True
        message = (
            "networking.istio.io is not served by the API server (neither v1, Istio >= 1.22, nor v1beta1): "
            "install Istio (its CRDs) in this cluster; nothing is applied until then (checked every resync)"
        )
        conditions = set_condition(
            status.get("conditions") or [], ISTIO_CONDITION, False, "NotServed", message, generation, now
        )
        await self._write_status(mem, body, status, {**status, "conditions": conditions})
        if previous is None or previous.get("status") != "False":
            logger.warning("%s", message)
            await self.kube.emit_event(body, type="Warning", reason="IstioAPINotServed", message=message)
        return False

    def _ask_gates(
        self,
        mem: _Memory,
        body: dict,
        spec: ModelDeploymentSpec,
        status: dict,
        obs: Observation,
        now: datetime.datetime,
    ) -> None:
        """Start the calls of the gates due now, each in a task of its own (a slow gate never holds up this
        loop: fail-fast checks go on); a finished call wakes the loop, which decides on its answer."""
        canary = status.get("canaryVersion")
        dep = obs.deployments.get(canary) if canary is not None else None
        if self.notifier is None or not spec.gates or canary is None:  # gates judge a new version
            return
        meta = body["metadata"]
        for gate in gates.due(spec, status, now, canary_ready=dep is not None and dep.is_ready):
            running = mem.gate_calls.get(gate.name)
            if running is not None and not running.done():
                continue
            request = gates.request_body(gate, namespace=meta["namespace"], name=meta["name"], spec=spec, status=status)
            mem.gate_calls[gate.name] = asyncio.create_task(
                self._call_gate(mem, meta["namespace"], gate, canary, request)
            )

    async def _call_gate(self, mem: _Memory, namespace: str, gate: Any, version: int, request: dict) -> None:
        asked = now_utc()
        status_code, answer, error = await self.notifier.call_gate(namespace, gate, request)  # type: ignore[union-attr]
        verdict, by, detail = gates.interpret(status_code, answer, error)
        mem.gate_answers.append(gates.GateAnswer(name=gate.name, version=version, verdict=verdict, at=now_utc(),
                                                 asked_at=asked, http_status=status_code, by=by, detail=detail))  # fmt: skip
        mem.wake.set()

    def _notify(self, body: dict, spec: ModelDeploymentSpec, old: dict, decision: Any, now: datetime.datetime) -> None:
        """Hand this decision's rollout events to the notifier (a queue put: never waits on a receiver)."""
        targets = spec.notifications if spec.notifications is not None else self.settings.default_notifications
        if self.notifier is None or not targets:
            return
        meta = body["metadata"]
        found = notifications.notices(
            namespace=meta["namespace"], name=meta["name"], model=spec.model.name, old_status=old,
            new_status=decision.status, events=decision.events, at=to_timestamp(now),
        )  # fmt: skip
        if found:
            owner = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                     "metadata": {k: meta.get(k) for k in ("name", "namespace", "uid", "resourceVersion")}}  # fmt: skip
            self.notifier.submit(owner, targets, found)

    async def _fresh_body(self, live_body: kopf.Body | dict) -> dict | None:
        """kopf's live body, unless our own last write is not in it yet (then the one we wrote, or a GET)."""
        body = dict(live_body)
        body["metadata"] = dict(live_body["metadata"])
        mem = self._mem(body["metadata"]["namespace"], body["metadata"]["name"])
        if mem.written_rv is None or body["metadata"].get("resourceVersion") == mem.written_rv:
            return body
        fresh = await self.kube.get_modeldeployment(body["metadata"]["namespace"], body["metadata"]["name"])
        if fresh is not None:
            mem.written_rv = fresh["metadata"].get("resourceVersion")
        return fresh

    def _validate(self, mem: _Memory, body: dict) -> ValidationResult:
        spec = body.get("spec") or {}
        spec_json = json.dumps(spec, sort_keys=True)
        if mem.validation is None or mem.validated_spec_json != spec_json:
            mem.validation = validate_spec(spec, name=body["metadata"]["name"])
            mem.validated_spec_json = spec_json
        return mem.validation

    def _deployments(self, index: Any, namespace: str, name: str) -> dict[int, DeploymentState]:
        """Readiness per version from kopf's indexes: primary Deployment, CPU twin, pods that are stuck."""
        deployments, pods = index if isinstance(index, tuple) else (index, None)
        primary: dict[int, dict] = {}
        fallback: dict[int, dict] = {}
        for version, summary in deployments.get((namespace, name), []) if deployments is not None else []:
            (fallback if summary.get("variant") == names.VARIANT_CPU_FALLBACK else primary)[version] = summary
        unschedulable: dict[int, tuple[datetime.datetime, str]] = {}
        stuck: dict[int, list[tuple[datetime.datetime, PodHealth]]] = {}
        crashes: dict[int, list[PodHealth]] = {}
        for pod in pods.get((namespace, name), []) if pods is not None else []:
            if not isinstance(pod, PodHealth):
                continue
            moment = from_timestamp(pod.unschedulable_since)
            if pod.variant == names.VARIANT_PRIMARY and moment is not None:
                if pod.version not in unschedulable or moment < unschedulable[pod.version][0]:
                    unschedulable[pod.version] = (moment, pod.scheduler_message)
            stuck_at = from_timestamp(pod.stuck_since)
            if pod.stuck_reason and stuck_at is not None:
                stuck.setdefault(pod.version, []).append((stuck_at, pod))
            if pod.restarts or pod.crash_reason:
                crashes.setdefault(pod.version, []).append(pod)
        out: dict[int, DeploymentState] = {}
        for version in set(primary) | set(fallback):
            state = DeploymentState.from_object(version, primary.get(version))
            twin = fallback.get(version)
            since, message = unschedulable.get(version, (None, ""))
            state = dataclasses.replace(
                state,
                fallback_exists=twin is not None,
                fallback_ready=available_replicas(twin),
                unschedulable_since=since,
                unschedulable_reason=message[:200],
            )
            if stuck.get(version):
                first_at, first = min(stuck[version], key=lambda item: item[0])
                state = dataclasses.replace(
                    state,
                    stuck_pods=len(stuck[version]),
                    stuck_since=first_at,
                    stuck_reason=first.stuck_reason or "",
                    stuck_message=first.stuck_message[:300],
                )
            if crashes.get(version):
                pods_ = crashes[version]
                rank = {"CrashLoopBackOff": 2, "OOMKilled": 1, "": 0}
                worst = max(pods_, key=lambda p: (rank.get(p.crash_reason, 0), p.restarts))
                state = dataclasses.replace(
                    state,
                    restarts=sum(p.restarts for p in pods_),
                    crash_reason=worst.crash_reason,
                    crash_message=worst.crash_message[:300],
                )
            out[version] = state
        return out

    async def _measure(
        self,
        spec: ModelDeploymentSpec,
        body: dict,
        status: dict,
        obs: Observation,
        mem: _Memory,
        now: datetime.datetime,
        logger: kopf.Logger,
    ) -> Observation:
        """Run an interval analysis or a fail-fast check if one is due."""
        kind: Literal["interval", "failFast"] | None = None
        if analysis_due(spec, status, now):
            kind = "interval"
        elif (
            fail_fast_applies(spec, status)
            and time.monotonic() - mem.last_fail_fast >= spec.analysis.fail_fast_interval_seconds * 0.9
        ):
            kind = "failFast"
        if kind is None:
            return obs
        meta = body["metadata"]
        ctx = builtins.QueryContext(
            namespace=meta["namespace"],
            name=meta["name"],
            model_name=spec.model.name,
            stable_version=status["stableVersion"],
            canary_version=status["canaryVersion"],
        )
        started = time.perf_counter()
        result = await analyse(spec, ctx, self.prometheus, now, kind=kind)
        self.metrics.analysis_seconds.observe(time.perf_counter() - started)
        self.metrics.record_analysis(meta["namespace"], meta["name"], result)
        if kind == "failFast":
            mem.last_fail_fast = time.monotonic()
            logger.debug("fail-fast check: %s", result.summary())
            return dataclasses.replace(obs, analysis=None, fail_fast=result)
        logger.info("analysis (%s): %s", result.verdict, result.summary())
        return dataclasses.replace(obs, analysis=result, fail_fast=None)

    def _audit_pending(
        self,
        body: dict,
        spec: ModelDeploymentSpec,
        old: dict,
        decision: Any,
        obs: Observation,
        now: datetime.datetime,
        via: str | None = None,
    ) -> list[dict]:
        """Audit records of this decision (and any still pending), put into decision.status.audit.pending."""
        meta = body["metadata"]
        entries = audit.new_history_entries(old.get("history") or [], decision.status.get("history") or [])
        if obs.action and decision.action_handled and not decision.action_replayed and not entries:
            # an action without a history record (a replayed one was recorded by the pass that applied it)
            entries = [{
                "action": "manualAction", "at": to_timestamp(now), "version": decision.status.get("canaryVersion")
                or decision.status.get("stableVersion"), "request": obs.action.strip(),
                "reason": f"modeldeploy.io/action {obs.action.strip()!r} by {obs.action_by or 'unknown'}",
                "outcome": "; ".join(f"{e.reason}: {e.message}" for e in decision.events) or "no change",
            }]  # fmt: skip
        golden = ((decision.status.get("lastAnalysis") or {}).get("evaluation") or {}).get("goldenSet")
        records = []
        for entry in entries:
            actor = audit.actor_for(entry.get("action"), obs.action, obs.action_by, self.settings.action_by_policy, via)
            if entry.get("action") == "gate":  # the gate answered (its `by` is as the gate asserts it)
                actor = audit.Actor(f"gate/{entry['gate']['name']}", "webhook gate")
            record = audit.decision_record(
                entry=entry, namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid"),
                generation=meta.get("generation"), spec=spec, actor=actor, golden_set=golden,
                digests=decision.status.get("modelDigests"),
            )  # fmt: skip
            if entry.get("request"):
                record["request"] = entry["request"]
            record["id"] = audit.record_hash(audit.canonical(record))
            records.append(record)
        state = dict(decision.status.get("audit") or {})
        pending = list(state.get("pending") or []) + records
        if pending:
            state["pending"] = pending
            decision.status["audit"] = state
        return pending

    async def _append_audit(self, mem: _Memory, body: dict, status: dict, pending: list[dict]) -> None:
        """Append the pending records to the chain (once each), then record the new head in the status."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        head = mem.audit_head or await self._audit_head(namespace, name)
        for record in pending:
            if head[2] == record.get("id"):
                continue  # appended by a pass that died before clearing pending
            while True:
                seq = head[0] + 1
                _, data, digest = audit.chain(record, seq, head[1])
                try:
                    await self.kube.create(audit.configmap(namespace, name, seq, data, digest))
                except Conflict:  # someone appended seq meanwhile (or we did, before a crash): re-read
                    head = await self._audit_head(namespace, name)
                    if head[2] == record.get("id"):
                        break
                    continue
                head = (seq, digest, record.get("id", ""))
                break
        mem.audit_head = head
        new = {**(status.get("audit") or {}), "seq": head[0], "head": head[1]}
        new.pop("pending", None)
        old = status.get("audit") or {}
        status["audit"] = new
        await self._write_status(mem, body, {"audit": old}, {"audit": new})

    async def _audit_head(self, namespace: str, name: str) -> tuple[int, str, str]:
        items = await self.kube.list(CONFIGMAP, namespace, label_selector=audit.selector(name))
        return audit.head_of(items)

    async def _write_status(self, mem: _Memory, body: dict, old: dict, new: dict) -> None:
        patch = status_patch(old, new)
        if not patch:
            return
        meta = body["metadata"]
        result = await self.kube.patch_status(meta["namespace"], meta["name"], patch)
        mem.written_rv = (result.get("metadata") or {}).get("resourceVersion")

    async def _apply_children(self, mem: _Memory, target: Target, decision: Any, obs: Observation) -> None:
        # The children are a pure function of (identity, spec, plans): fingerprint the inputs and
        # skip rendering and applying while they are unchanged (a full drift check every resync).
        fingerprint = hashlib.sha256(
            f"{target.uid}|{mem.validated_spec_json}|{decision.versions!r}|{decision.route!r}".encode()
        ).hexdigest()
        wanted_versions = {plan.version for plan in decision.versions}
        on_cpu = {plan.version for plan in decision.versions if plan.cpu_fallback}
        stale = [v for v, dep in obs.deployments.items() if dep.exists and v not in wanted_versions]
        stale_twins = [v for v, dep in obs.deployments.items() if dep.fallback_exists and v not in on_cpu]
        fresh_enough = time.monotonic() - mem.applied_at < self.settings.resync_seconds
        drift_check = fingerprint == mem.applied_fingerprint and not stale and not stale_twins
        if drift_check and fresh_enough:
            return
        # Nothing changed, the resync's drift check is due (a read of every child): at most
        # DRIFT_CHECKS_AT_ONCE of them run at a time, so a fleet's checks (1,000 ModelDeployments x 5 reads,
        # all due within seconds of each other) never queue ahead of the passes that act on a change.
        async with self._drift_checks if drift_check else contextlib.nullcontext():
            await self._apply_objects(mem, target, decision, obs, stale, stale_twins)
        mem.applied_fingerprint = fingerprint
        mem.applied_at = time.monotonic()

    async def _apply_objects(
        self, mem: _Memory, target: Target, decision: Any, obs: Observation, stale: list[int], stale_twins: list[int]
    ) -> None:
        objects = desired_objects(
            target, list(decision.versions), decision.route, evaluator_image=self.settings.evaluator_image
        )
        # A brand-new ModelDeployment has no children yet: create straight away (a 409 falls back to
        # read + patch). Children are independent objects, so they are applied concurrently.
        assume_absent = mem.applied_fingerprint is None and not obs.deployments and not decision_has_history(decision)
        try:
            await asyncio.gather(*(self.kube.apply(obj, assume_absent=assume_absent) for obj in objects))
        except NotFound:
            self.kube.istio_api_version = None  # Istio's CRDs may be gone: the next pass asks discovery again
            raise
        if mem.applied_fingerprint is None and not assume_absent:
            # Earlier releases routed by DestinationRule subsets of `<name>`; its subsets are unused now.
            await self.kube.delete(DESTINATION_RULE, target.namespace, names.service_name(target.name))
        if target.spec.evaluation is not None:
            mem.evaluator_present = True
        elif mem.evaluator_present is not False:
            # spec.evaluation was removed (or this process does not know): drop the evaluator once
            if not assume_absent:
                await self.kube.delete(DEPLOYMENT, target.namespace, names.evaluator_name(target.name))
                await self.kube.delete(CONFIGMAP, target.namespace, names.evaluator_name(target.name))
            mem.evaluator_present = False
        for version in stale:
            await self.kube.delete(SERVICE, target.namespace, names.version_service_name(target.name, version))
            await self.kube.delete(DEPLOYMENT, target.namespace, names.deployment_name(target.name, version))
            await self.kube.delete(CONFIGMAP, target.namespace, names.configmap_name(target.name, version))
        for version in stale_twins:  # GPUs are back (or the version is gone): drop the CPU replicas
            await self.kube.delete(
                DEPLOYMENT, target.namespace, names.deployment_name(target.name, version, names.VARIANT_CPU_FALLBACK)
            )


WARM_UP_SPEC = {
    "model": {"name": "warm-up", "basePath": "pvc://models/warm-up", "version": 1},
    "analysis": {"metrics": [{"name": "errors", "builtin": "errorRate", "max": 1}]},
}


def warm_up() -> None:
    """Pay the one-off costs at start-up, not in the first ModelDeployment's pass: parse the packaged CRD,
    compile its schema validator and CEL rules, load the render templates (a burst of new objects used
    to pay ~0.2 s of CPU for these on the first pass). Pure: no API call."""
    result = validate_spec(WARM_UP_SPEC, name="warm-up")
    if result.spec is None:  # the sample must stay valid; a broken one only costs the warm-up
        return
    versions, route = plans(result.spec, {"stableVersion": 1})
    desired_objects(Target(name="warm-up", namespace="default", spec=result.spec), list(versions), route)


def decision_has_history(decision: Any) -> bool:
    """Whether this ModelDeployment ever got past its first pass (children may exist then)."""
    return bool((decision.status.get("rollout") or {}).get("initialized") or decision.status.get("history"))


@dataclass(frozen=True)
class PodHealth:
    """What the pods index keeps of one TF Serving pod: enough to say why it does not serve."""

    version: int
    variant: str
    unschedulable_since: str | None = None  # PodScheduled=False/Unschedulable since (the GPU fallback's trigger)
    scheduler_message: str = ""
    stuck_reason: str | None = None  # why a not-ready pod waits: Unschedulable, ContainerCreating, ...
    stuck_since: str | None = None  # since when (scheduled at, or created at)
    stuck_message: str = ""
    restarts: int = 0  # restartCount of the TF Serving container
    crash_reason: str = ""  # CrashLoopBackOff (waiting now) | OOMKilled (last termination) | ""
    crash_message: str = ""


# Waiting reasons of a container that are not progress (kubelet's ContainerStateWaiting reasons).
_NORMAL_WAITING = {"PodInitializing"}


def _waiting(statuses: list[dict] | None) -> tuple[str, str, str] | None:
    """(container, reason, message) of the first container that waits or failed, if any."""
    for cs in statuses or []:
        state = cs.get("state") or {}
        waiting = state.get("waiting")
        if waiting and waiting.get("reason") not in _NORMAL_WAITING:
            last = ((cs.get("lastState") or {}).get("terminated")) or {}
            detail = (
                waiting.get("message")
                or last.get("message")
                or (f"last exit code {last['exitCode']} ({last.get('reason', 'Error')})" if "exitCode" in last else "")
            )
            return cs.get("name", ""), waiting.get("reason") or "Waiting", detail
        terminated = state.get("terminated")
        if terminated and terminated.get("exitCode", 0) != 0:
            return (
                cs.get("name", ""),
                terminated.get("reason") or "Error",
                terminated.get("message") or (f"exit code {terminated['exitCode']}"),
            )
    return None


def _digest_mismatch(statuses: list[dict] | None) -> tuple[str, str] | None:
    """(container, termination message) of an init container that refused the model's digest. The kubelet
    keeps the message in state.terminated (first failure) or lastState.terminated (in CrashLoopBackOff)."""
    for cs in statuses or []:
        for state in (cs.get("state") or {}, cs.get("lastState") or {}):
            message = (state.get("terminated") or {}).get("message") or ""
            if "ModelDigestMismatch" in message:
                return cs.get("name", ""), message.strip()
    return None


def _crash(status: dict, pod: str) -> tuple[int, str, str]:
    """(restarts, crash reason, message) of the TF Serving container: CrashLoopBackOff while it waits to
    be restarted again, OOMKilled when its last run was killed for memory."""
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") != "tfserving":
            continue
        restarts = int(cs.get("restartCount") or 0)
        last = ((cs.get("lastState") or {}).get("terminated")) or {}
        exit_info = f"exit code {last['exitCode']} ({last.get('reason', 'Error')})" if "exitCode" in last else ""
        text = (
            f"pod {pod}: "
            + (exit_info or "no termination recorded")
            + (f": {last['message'][:160]}" if last.get("message") else "")
        )
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            return restarts, "CrashLoopBackOff", text
        if last.get("reason") == "OOMKilled":
            return restarts, "OOMKilled", text
        return restarts, "", text if restarts else ""
    return 0, "", ""


def pod_health(version: int, labels: dict, status: dict, created: str | None = None, name: str = "") -> PodHealth:
    """Why one TF Serving pod does not serve (if it does not), and how often it crashed: from its status
    alone, no API reads."""
    health = _pod_health(version, labels, status or {}, created)
    restarts, crash, message = _crash(status or {}, name or "?")
    if restarts or crash:
        health = dataclasses.replace(health, restarts=restarts, crash_reason=crash, crash_message=message)
    return health


def _pod_health(version: int, labels: dict, status: dict, created: str | None = None) -> PodHealth:
    status = status or {}
    variant = labels.get(names.LABEL_VARIANT, names.VARIANT_PRIMARY)
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled") or {}
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        since, message = scheduled.get("lastTransitionTime"), scheduled.get("message") or ""
        return PodHealth(version, variant, since, message, "Unschedulable", since, message)
    if (conditions.get("Ready") or {}).get("status") == "True" or status.get("phase") in ("Succeeded", "Failed"):
        return PodHealth(version, variant)
    since = scheduled.get("lastTransitionTime") if scheduled.get("status") == "True" else None
    since = since or created
    init = _waiting(status.get("initContainerStatuses"))
    if init is not None:
        container, reason, message = init
        mismatch = _digest_mismatch(status.get("initContainerStatuses"))
        if mismatch is not None:  # the digest check of render.serving.digest_script, from its termination message
            return PodHealth(version, variant, stuck_reason="ModelDigestMismatch", stuck_since=since,
                             stuck_message=f"init container {mismatch[0]}: {mismatch[1]}")  # fmt: skip
        return PodHealth(version, variant, stuck_reason=f"Init{reason}", stuck_since=since,
                         stuck_message=f"init container {container}: {message}".rstrip(": "))  # fmt: skip
    main = _waiting(status.get("containerStatuses"))
    if main is not None:
        container, reason, message = main
        return PodHealth(version, variant, stuck_reason=reason, stuck_since=since,
                         stuck_message=f"container {container}: {message}".rstrip(": "))  # fmt: skip
    if status.get("phase") == "Running":
        message = "running, but the readiness probe fails: TF Serving has the model version not loaded (not AVAILABLE)"
        return PodHealth(version, variant, stuck_reason="NotReady", stuck_since=since, stuck_message=message)
    if scheduled.get("status") == "True":
        return PodHealth(version, variant, stuck_reason="Pending", stuck_since=since, stuck_message="")
    return PodHealth(version, variant)


def deployment_summary(body: Mapping[str, Any]) -> dict:
    """What the index keeps of a Deployment: enough for readiness decisions."""
    meta = body.get("metadata") or {}
    return {
        "variant": ((meta.get("labels") or {}).get(names.LABEL_VARIANT) or names.VARIANT_PRIMARY),
        "metadata": {"generation": meta.get("generation"), "name": meta.get("name")},
        "spec": {"replicas": (body.get("spec") or {}).get("replicas", 1)},
        "status": dict(body.get("status") or {}),
    }
