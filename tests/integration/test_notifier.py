"""The notifier (issue 13 part 3) against real parts: the API emulator (Secrets, Events, through kube.py) and real
HTTP receivers on 127.0.0.1 (aiohttp). A receiver that hangs never holds up `submit()` (the reconcile side) or
the other receivers; 5xx/429 are retried with backoff; a full queue drops and counts; a bad Secret fails without
retries and without echoing its value; a failed notification leaves a Warning Event. About 4 s."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid

import pytest
from aiohttp import web

from modeldeploy.kube import Kube, new_api_client
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.notifications import Notice
from modeldeploy.notifier import Notifier
from modeldeploy.spec import NotificationTarget

NOTICE = Notice(event="RolledBack", namespace="", name="cxr", model="m", version=2, from_version=1,
                action="rolledBack", reason="fail-fast threshold crossed", at="2026-11-25T12:00:00.000Z")  # fmt: skip


class Receivers:
    """Webhook receivers on 127.0.0.1: /ok, /hang (sleeps), /flaky (503 twice, then 200), /slow429."""

    def __init__(self) -> None:
        self.got: dict[str, list[tuple[float, dict]]] = {}
        self.hits: dict[str, int] = {}

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.hits[path] = self.hits.get(path, 0) + 1
        body = await request.json()
        if path == "hang":
            await asyncio.sleep(30)
        if path == "flaky" and self.hits[path] <= 2:
            return web.Response(status=503)
        if path == "limited" and self.hits[path] == 1:
            return web.Response(status=429, headers={"Retry-After": "0.1"})
        if path == "gone":
            return web.Response(status=404)
        self.got.setdefault(path, []).append((time.monotonic(), body))
        return web.json_response({"ok": True})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{path}", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


def target(name: str, fmt: str = "webhook", key: str | None = None, secret: str = "modeldeploy-notifications") -> NotificationTarget:
    return NotificationTarget.model_validate({"name": name, "format": fmt, "urlFrom": {"secretKeyRef": {"name": secret, "key": key or name}}})


@pytest.fixture
def namespace(apiserver):
    ns = f"n-{uuid.uuid4().hex[:8]}"
    apiserver.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    return ns


def put_secret(apiserver, ns: str, data: dict[str, str], name: str = "modeldeploy-notifications") -> None:
    apiserver.request("POST", f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})  # fmt: skip


def owner(ns: str) -> dict:
    return {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "cxr", "namespace": ns, "uid": "u1"}}


async def test_a_hanging_receiver_delays_nothing_and_retries_are_bounded(apiserver, namespace):
    receivers = Receivers()
    base = await receivers.start()
    put_secret(apiserver, namespace, {p: f"{base}/{p}" for p in ("ok", "hang", "flaky", "limited", "gone")} | {"slack": f"{base}/ok"})
    kube = Kube(new_api_client(kubeconfig=str(apiserver.kubeconfig)), workers=4)
    metrics = OperatorMetrics()
    notifier = Notifier(kube, metrics, workers=4, timeout=0.4, attempts=2, backoff=0.05, queue_size=16)
    notifier.start()
    notice = Notice(**{**NOTICE.__dict__, "namespace": namespace})
    try:
        started = time.perf_counter()
        queued = notifier.submit(owner(namespace), (target("hang"), target("ok"), target("flaky"), target("limited"),
                                                    target("gone"), target("slack", "slack")), [notice])  # fmt: skip
        submit_ms = (time.perf_counter() - started) * 1000
        assert queued == 6 and submit_ms < 20, submit_ms  # the reconcile side never waits on a receiver
        t0 = time.monotonic()
        await notifier.drain(timeout=10)
        assert receivers.got["ok"][0][0] - t0 < 1.0  # the good receiver was not held up by the hanging one
        assert receivers.got["ok"][0][1]["kind"] == "ModelDeploymentNotification"
        assert any("blocks" in body for _, body in receivers.got["ok"])  # the slack-format receiver on /ok
        value = lambda fmt, result: metrics.registry.get_sample_value(  # noqa: E731
            "modeldeploy_notifications_total", {"format": fmt, "event": "RolledBack", "result": result}) or 0  # fmt: skip
        assert value("webhook", "sent") == 2 and value("slack", "sent") == 1  # ok + limited (429 then 200)
        assert value("webhook", "failed") == 3  # hang (2 timeouts), flaky (503, 503: attempts 2), gone (404, no retry)
        assert receivers.hits["hang"] == 2 and receivers.hits["flaky"] == 2 and receivers.hits["gone"] == 1
        assert receivers.hits["limited"] == 2 and "limited" in receivers.got
        events = apiserver.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
        failed = sorted(e["message"] for e in events if e["reason"] == "NotificationFailed" and e["type"] == "Warning")
        assert len(failed) == 3 and any("no answer within 0.4s" in m for m in failed) and any("HTTP 404" in m for m in failed)
        assert not any(base in m for m in failed), "a receiver URL (a credential) leaked into an Event"
    finally:
        await notifier.aclose()
        await receivers.runner.cleanup()
        kube.close()


async def test_full_queue_drops_and_counts_and_bad_secrets_fail_without_echo(apiserver, namespace):
    put_secret(apiserver, namespace, {"notaurl": "s3cr3t-password"})
    kube = Kube(new_api_client(kubeconfig=str(apiserver.kubeconfig)), workers=2)
    metrics = OperatorMetrics()
    notifier = Notifier(kube, metrics, workers=1, timeout=0.5, attempts=3, backoff=0.05, queue_size=2)
    notice = Notice(**{**NOTICE.__dict__, "namespace": namespace})
    try:  # workers not started yet: the queue fills
        queued = notifier.submit(owner(namespace), (target("notaurl"), target("missing", secret="nope"), target("nokey")), [notice])
        assert queued == 2
        assert metrics.registry.get_sample_value("modeldeploy_notifications_dropped_total", {"reason": "queueFull"}) == 1
        notifier.start()
        await notifier.drain(timeout=10)
        events = apiserver.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
        messages = sorted(e["message"] for e in events if e["reason"] == "NotificationFailed")
        assert len(messages) == 2
        assert any("does not hold an http(s) URL" in m for m in messages) and any("nope not found" in m for m in messages)
        assert not any("s3cr3t" in m for m in messages)
    finally:
        await notifier.aclose()
        kube.close()
