"""The sandbox's webhook receivers: HTTP endpoints on 127.0.0.1 for the operator's notifications and gates.

A scenario's `webhooks:` names receivers and how each answers; the sandbox serves them all on one port
(`POST /<name>`) and puts their URLs into the Secret `modeldeploy-notifications` (key = receiver name) in the
scenario's namespace before the ModelDeployment is applied, so `spec.notifications[].urlFrom` and
`spec.gates[].urlFrom` reach them exactly as they would reach Slack or an approval service.

Behaviour of one receiver (scenario seconds; the scenario clock):
  hangSeconds: N      wait N seconds before answering (a receiver that hangs)
  answers:            the answer in force at the request's time: the last entry whose `from` <= now
    - {from: 0, status: 202}                                   e.g. "not decided yet"
    - {from: 20, status: 200, body: {by: dr-jones}}            then an approval
  (none)              200 {"ok": true} at once

Every request is recorded: when it came, when it was answered (None: still hanging at the end), the
status sent and what it carried (`event` of a notification, `gate`/`type` of a gate call), for the report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

SECRET_NAME = "modeldeploy-notifications"


class WebhookReceivers:
    def __init__(self, behaviours: dict[str, Any], clock: Callable[[], float]):
        self.behaviours = behaviours  # name -> mdsandbox.scenario.Webhook
        self.clock = clock  # scenario seconds
        self.requests: dict[str, list[dict[str, Any]]] = {name: [] for name in behaviours}
        self.url = ""
        self._runner: web.AppRunner | None = None

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{name}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def secret(self, namespace: str) -> dict[str, Any]:
        import base64

        data = {name: base64.b64encode(self.url_of(name).encode()).decode() for name in self.behaviours}
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET_NAME, "namespace": namespace},
                "type": "Opaque", "data": data}  # fmt: skip

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        behaviour = self.behaviours.get(name)
        if behaviour is None:
            return web.Response(status=404)
        try:
            body = await request.json()
        except ValueError:
            body = {}
        now = self.clock()
        record: dict[str, Any] = {"t": round(now, 2), "answeredAt": None, "status": None}
        for key in ("event", "action", "version", "gate", "type"):
            if isinstance(body, dict) and body.get(key) is not None:
                record[key] = body[key]
        if isinstance(body, dict) and "blocks" in body:
            record["format"] = "slack"
        elif isinstance(body, dict) and body.get("type") == "message":
            record["format"] = "teams"
        self.requests[name].append(record)
        started = time.monotonic()
        if behaviour.hangSeconds:
            await asyncio.sleep(behaviour.hangSeconds)
        status, payload = 200, {"ok": True}
        for answer in behaviour.answers:
            if answer.from_ <= now:
                status, payload = answer.status, answer.body
        record["status"] = status
        record["answeredAt"] = round(now + (time.monotonic() - started), 2)
        return web.json_response(payload, status=status)

    def report(self) -> dict[str, list[dict[str, Any]]]:
        return {name: list(reqs) for name, reqs in self.requests.items()}
