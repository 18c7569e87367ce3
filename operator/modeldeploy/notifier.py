"""Outgoing webhooks: rollout notifications (modeldeploy.notifications) from a bounded queue, in workers of
their own, and the calls of webhook gates (modeldeploy.gates; `call_gate`, awaited in a task of its own).

The reconcile loop only calls `submit()`, which never waits: it puts each (receiver, notice) on an
asyncio.Queue of `queue_size` with `put_nowait`; when the queue is full the notification is DROPPED and
counted (modeldeploy_notifications_dropped{reason="queueFull"}), so a receiver that hangs or a storm of
rollouts can never slow reconciling or grow memory without bound. `workers` tasks take from the queue and
POST, each attempt bounded by `timeout`; a connection error, a timeout, 429 or a 5xx is retried with
exponential backoff (`backoff` * 2^n, at most `backoff_max`; a 429's Retry-After is honoured up to that),
up to `attempts` tries; another 4xx is final. Delivery is at most once: a notification still queued when
the operator stops is lost (the decision itself is in status.history and the audit chain).

The receiver's URL comes from a Secret in the ModelDeployment's namespace (GET, through kube.py),
read at delivery time and kept `secret_ttl` seconds, so a rotated webhook URL is used within that.
A URL is never logged, put in an Event or a metric label.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from modeldeploy.kube import KINDS, Kube
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.notifications import Notice, payload
from modeldeploy.spec import GateSpec, NotificationTarget, SecretKeyRef

log = logging.getLogger(__name__)
SECRET = KINDS[("v1", "Secret")]


class DeliveryError(Exception):
    """A notification that cannot be delivered; `retry` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retry: bool, delay: float | None = None):
        super().__init__(message)
        self.retry = retry
        self.delay = delay


@dataclass(frozen=True)
class Delivery:
    target: NotificationTarget
    notice: Notice
    owner: dict[str, Any]  # apiVersion/kind/metadata of the ModelDeployment, for a Warning Event
    enqueued: float = field(default_factory=time.monotonic)


class Notifier:
    def __init__(
        self,
        kube: Kube,
        metrics: OperatorMetrics,
        *,
        queue_size: int = 256,
        workers: int = 4,
        timeout: float = 10.0,
        attempts: int = 4,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
        secret_ttl: float = 60.0,
        client: httpx.AsyncClient | None = None,
    ):
        self.kube = kube
        self.metrics = metrics
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=queue_size)
        self.workers = workers
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.secret_ttl = secret_ttl
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._tasks: list[asyncio.Task] = []
        self._secrets: dict[tuple[str, str, str], tuple[float, str]] = {}
        self.delivered: list[tuple[str, str, float]] = []  # (receiver, event, seconds from submit) for tests

    # ---- the reconcile side: never waits ------------------------------------------------------

    def submit(self, owner: dict, targets: tuple[NotificationTarget, ...], notices: list[Notice]) -> int:
        """Queue each notice for each receiver that wants its event; returns how many were queued."""
        queued = 0
        for notice in notices:
            for target in targets:
                if notice.event not in target.events:
                    continue
                try:
                    self.queue.put_nowait(Delivery(target, notice, owner))
                    queued += 1
                except asyncio.QueueFull:
                    self.metrics.notifications_dropped.labels("queueFull").inc()
                    log.warning("notification queue full: dropped %s for %s", notice.event, target.name)
        self.metrics.notification_queue.set(self.queue.qsize())
        return queued

    # ---- the workers ---------------------------------------------------------------------------

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._work(), name=f"notifier-{i}") for i in range(self.workers)]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._client.aclose()

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued notification was handled (tests)."""
        await asyncio.wait_for(self.queue.join(), timeout)

    async def _work(self) -> None:
        while True:
            delivery = await self.queue.get()
            try:
                await self._deliver(delivery)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a worker must survive anything one delivery does
                log.exception("notification worker error")
            finally:
                self.queue.task_done()
                self.metrics.notification_queue.set(self.queue.qsize())

    async def _deliver(self, d: Delivery) -> None:
        target, notice = d.target, d.notice
        body = payload(target.format, notice)
        error = "no attempt"
        for attempt in range(1, self.attempts + 1):
            try:
                url = await self._url(notice.namespace, target)
                await self._post(url, body)
            except DeliveryError as exc:
                error = str(exc)
                if not exc.retry or attempt == self.attempts:
                    break
                delay = min(self.backoff_max, exc.delay if exc.delay is not None else self.backoff * 2 ** (attempt - 1))
                log.info("notification %s to %s: %s; retry %d in %.1fs", notice.event, target.name, exc, attempt, delay)
                await asyncio.sleep(delay)
                continue
            self.metrics.notifications.labels(target.format, notice.event, "sent").inc()
            self.delivered.append((target.name, notice.event, time.monotonic() - d.enqueued))
            return
        self.metrics.notifications.labels(target.format, notice.event, "failed").inc()
        message = (
            f"{notice.event} for version {notice.version} to receiver {target.name} ({target.format}) failed: {error}"
        )
        log.warning("%s", message)
        try:
            await self.kube.emit_event(d.owner, type="Warning", reason="NotificationFailed", message=message)
        except Exception:  # noqa: BLE001 - best effort, like the notification itself
            log.debug("NotificationFailed event not written", exc_info=True)

    async def _post(self, url: str, body: dict) -> None:
        try:
            resp = await self._client.post(url, json=body, timeout=self.timeout)
        except httpx.TimeoutException:
            raise DeliveryError(f"no answer within {self.timeout:g}s", retry=True) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}", retry=True) from None
        if resp.status_code < 300:
            return
        if resp.status_code == 429:
            try:
                delay = float(resp.headers.get("Retry-After", "")) or None
            except ValueError:
                delay = None
            raise DeliveryError("429 Too Many Requests", retry=True, delay=delay)
        raise DeliveryError(f"HTTP {resp.status_code}", retry=resp.status_code >= 500)

    # ---- webhook gates (modeldeploy.gates): one call, awaited by its own task in the reconciler ----------

    async def call_gate(self, namespace: str, gate: GateSpec, body: dict) -> tuple[int | None, Any, str | None]:
        """POST to a gate: (HTTP status, JSON body or None, transport error or None). Never raises."""
        try:
            url = gate.url or await self._secret_url(namespace, gate.url_from.secret_key_ref)  # type: ignore[union-attr]
        except DeliveryError as exc:
            return None, None, str(exc)
        try:
            resp = await self._client.post(url, json=body, timeout=gate.timeout_seconds)
        except httpx.TimeoutException:
            return None, None, f"no answer within {gate.timeout}"
        except httpx.HTTPError as exc:
            return None, None, type(exc).__name__
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        return resp.status_code, answer, None

    async def _url(self, namespace: str, target: NotificationTarget) -> str:
        return await self._secret_url(namespace, target.url_from.secret_key_ref)

    async def _secret_url(self, namespace: str, ref: SecretKeyRef) -> str:
        key = (namespace, ref.name, ref.key)
        cached = self._secrets.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.secret_ttl:
            return cached[1]
        try:
            secret = await self.kube.get(SECRET, namespace, ref.name)
        except Exception as exc:  # noqa: BLE001 - forbidden (not in notifications.secretNames), API down
            raise DeliveryError(f"cannot read Secret {namespace}/{ref.name}: {exc}", retry=True) from None
        if secret is None:
            raise DeliveryError(f"Secret {namespace}/{ref.name} not found", retry=False)
        raw = (secret.get("data") or {}).get(ref.key)
        if raw is None:
            raise DeliveryError(f"Secret {namespace}/{ref.name} has no key {ref.key!r}", retry=False)
        try:
            url = base64.b64decode(raw).decode().strip()
        except (ValueError, UnicodeDecodeError):
            raise DeliveryError(f"Secret {namespace}/{ref.name} key {ref.key!r} is not text", retry=False) from None
        if not url.startswith(("https://", "http://")):  # never echo the value: it may be some other secret
            raise DeliveryError(
                f"Secret {namespace}/{ref.name} key {ref.key!r} does not hold an http(s) URL", retry=False
            )
        self._secrets[key] = (time.monotonic(), url)
        return url
