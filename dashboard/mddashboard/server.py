"""The dashboard's web server (aiohttp): the built front end, a JSON API and one Server-Sent Events stream.

    GET  /                                   the page (static/index.html, built from frontend/)
    GET  /assets/...                         its scripts and styles (no CDN: everything is served here)
    GET  /healthz, /readyz                   alive; ready once the first LIST of ModelDeployments arrived
    GET  /api/config                         {allowActions, identity}
    GET  /api/modeldeployments               every summary (board.py)
    GET  /api/modeldeployments/{ns}/{name}   one summary, with the full history
    GET  /api/series/{ns}/{name}             the last computed metric series of its rollout (series.py)
    GET  /api/stream                         SSE: snapshot, upsert, delete, series, state, then live changes
    POST /api/modeldeployments/{ns}/{name}/actions  {"action": "abort"}  (only with allow_actions)

Live updates: the watch (watch.py) feeds the Board; each change is encoded ONCE and queued to every
connected browser; a browser that cannot keep up (QUEUE_MAX messages behind) is disconnected and
its EventSource reconnects to a fresh snapshot. Metric series are computed by ONE loop for all
browsers, every `series_interval` seconds and only while someone is connected and a rollout is
live (or just ended), so N browsers cost Prometheus the same as one.

Actions go through `modeldeploy.actions.request` (the kubectl plugin's code path) and record who:
the value of a header set by a trusted authenticating proxy (`identity_header`), or, without one,
the local user running the dashboard (only allowed on a loopback address; see docs/dashboard.md).
Browser-side protections: the Host must be a loopback name when listening on loopback (DNS
rebinding), a POST must be JSON from the same origin (CSRF), and the page may not be framed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
from aiohttp import web

from mddashboard.board import Board, Key
from mddashboard.series import RangeClient, rollout_series
from mddashboard.watch import WatchEvent
from modeldeploy import actions
from modeldeploy.rollout import MANUAL_ACTIONS

log = logging.getLogger(__name__)

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"
QUEUE_MAX = 500
HEARTBEAT_SECONDS = 15.0
SERIES_CONCURRENCY = 4
ACTOR_SUFFIX = " via dashboard"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765
    allow_actions: bool = False
    identity_header: str | None = None  # e.g. X-Forwarded-User (oauth2-proxy), X-Auth-Request-Email
    local_user: str | None = None  # recorded as the actor when there is no identity header (local mode)
    series_interval: float = 5.0
    static_dir: pathlib.Path = STATIC_DIR


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(host: str) -> str:
    """The name part of a Host header ("127.0.0.1:8765" -> "127.0.0.1", "[::1]:80" -> "::1")."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def check_settings(settings: Settings) -> None:
    """Refuse a configuration that would let anyone act under a name they did not prove."""
    if settings.allow_actions and not settings.identity_header and not is_loopback(settings.host):
        raise ValueError(
            "--allow-actions on a non-loopback address needs --identity-header (the header your authenticating "
            "proxy sets): without it, every request would act as the local user"
        )
    if settings.allow_actions and not settings.identity_header and not settings.local_user:
        raise ValueError("--allow-actions without --identity-header needs the local user's name")


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass(eq=False)
class _Client:
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=QUEUE_MAX))
    dropped: bool = False


class Dashboard:
    """The server's state: the Board, the connected browsers, the series loop; `app()` builds the aiohttp app."""

    def __init__(
        self,
        settings: Settings,
        *,
        kube: Any = None,  # modeldeploy.kube.Kube, for actions
        prometheus: RangeClient | None = None,
        clock: Callable[[], float] = time.time,
    ):
        check_settings(settings)
        self.settings = settings
        self.kube = kube
        self.prometheus = prometheus
        self.clock = clock
        self.board = Board(clock=clock)
        self.clients: set[_Client] = set()
        self.series: dict[Key, dict] = {}
        self._series_final: set[Key] = set()
        self.scopes: dict[str, dict] = {}  # watch scope -> {connected, error}
        self.listed = asyncio.Event()
        self._wake = asyncio.Event()
        self._series_task: asyncio.Task | None = None
        self.actions_requested: list[dict] = []

    # ---- the watch feeds this (on the event loop) --------------------------------------------------
    def on_watch(self, event: WatchEvent) -> None:
        before = self._rollouts()
        if event.type == "RESET":
            self.board.reset(event.objects, namespace=event.scope or None)
            self.listed.set()
            self._broadcast("snapshot", self.snapshot())
        elif event.type in ("ADDED", "MODIFIED"):
            for body in event.objects:
                self._broadcast("upsert", self.board.upsert(body))
        elif event.type == "DELETED":
            for body in event.objects:
                meta = body.get("metadata") or {}
                key = (meta.get("namespace") or "", meta.get("name") or "")
                self.board.delete(key)
                self.series.pop(key, None)
                self._broadcast("delete", {"key": f"{key[0]}/{key[1]}"})
        elif event.type == "STATE":
            self.scopes[event.scope] = {"connected": event.connected, "error": event.error}
            self._broadcast("state", self.state())
        if self._rollouts() != before:
            self._wake.set()  # a rollout started or ended: draw its series now

    def _rollouts(self) -> dict[Key, tuple[int, float | None]]:
        return {key: (id(mem), mem.ended_at) for key, mem in self.board.memory.items()}

    def snapshot(self) -> dict[str, Any]:
        return {"items": self.board.snapshot(), "state": self.state(), "config": self.config()}

    def state(self) -> dict[str, Any]:
        connected = bool(self.scopes) and all(s["connected"] for s in self.scopes.values())
        errors = [s["error"] for s in self.scopes.values() if s.get("error") and not s["connected"]]
        return {"connected": connected, "errors": errors, "time": self.clock()}

    def config(self) -> dict[str, Any]:
        s = self.settings
        if s.identity_header:
            identity = {"mode": "header", "header": s.identity_header}
        else:
            identity = {"mode": "local", "user": s.local_user}
        return {
            "allowActions": s.allow_actions,
            "actions": list(MANUAL_ACTIONS) if s.allow_actions else [],
            "identity": identity,
            "prometheus": self.prometheus is not None,
            "seriesInterval": s.series_interval,
        }

    def _broadcast(self, event: str, data: Any) -> None:
        message = sse(event, data)
        for client in list(self.clients):
            if client.dropped:
                continue
            try:
                client.queue.put_nowait(message)
            except asyncio.QueueFull:
                client.dropped = True  # too slow: its handler closes the stream, the browser reconnects

    # ---- series ------------------------------------------------------------------------------------
    async def refresh_series(self) -> int:
        """Compute the series of every live (or just ended) rollout once; returns how many were drawn."""
        if self.prometheus is None:
            return 0
        now = self.clock()
        todo = []
        for key, mem in self.board.memory.items():
            if key in self._series_final and mem.ended_at is not None:
                continue
            todo.append((key, mem))
        sem = asyncio.Semaphore(SERIES_CONCURRENCY)

        async def one(key: Key, mem) -> None:
            body = self.board.bodies.get(key)
            if body is None:
                return
            async with sem:
                result = await rollout_series(self.prometheus, body, mem, now)
            if self.board.memory.get(key) is not mem:
                return  # a new rollout began meanwhile
            self.series[key] = result
            if mem.ended_at is not None and now >= result.get("end", now):
                self._series_final.add(key)
            elif mem.ended_at is None:
                self._series_final.discard(key)
            self._broadcast("series", result)

        await asyncio.gather(*(one(k, m) for k, m in todo))
        return len(todo)

    async def _series_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.series_interval)
            self._wake.clear()
            if not self.clients:
                continue
            try:
                await self.refresh_series()
            except Exception:  # noqa: BLE001 - a chart must never take the server down
                log.exception("series refresh failed")

    # ---- HTTP ----------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/api/config", self._config)
        app.router.add_get("/api/modeldeployments", self._list)
        app.router.add_get("/api/modeldeployments/{namespace}/{name}", self._one)
        app.router.add_get("/api/series/{namespace}/{name}", self._series)
        app.router.add_get("/api/stream", self._stream)
        app.router.add_post("/api/modeldeployments/{namespace}/{name}/actions", self._action)
        assets = self.settings.static_dir / "assets"
        if assets.is_dir():
            app.router.add_static("/assets", assets, append_version=False)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._series_task = asyncio.create_task(self._series_loop(), name="dashboard-series")

    async def _on_shutdown(self, app: web.Application) -> None:
        if self._series_task is not None:
            self._series_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._series_task
        for client in list(self.clients):
            client.dropped = True
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)

    @web.middleware
    async def _guard(self, request: web.Request, handler) -> web.StreamResponse:
        if is_loopback(self.settings.host) and not is_loopback(host_name(request.host or "")):
            return web.Response(
                status=421, text=f"unexpected Host {request.host!r}: this dashboard serves loopback only"
            )
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("Origin")
            if origin is not None and origin.split("://", 1)[-1] != request.host:
                return web.json_response({"error": "cross-origin request refused"}, status=403)
            if request.content_type != "application/json":
                return web.json_response({"error": "send JSON (Content-Type: application/json)"}, status=415)
        response = await handler(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _index(self, request: web.Request) -> web.StreamResponse:
        index = self.settings.static_dir / "index.html"
        if not index.is_file():
            return web.Response(
                status=503,
                text="The dashboard's front end is not built: run `make setup` (or `npm ci && npm run build` in "
                "dashboard/frontend).\n",
            )
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, **self.state()})

    async def _readyz(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": self.listed.is_set()}, status=200 if self.listed.is_set() else 503)

    async def _config(self, request: web.Request) -> web.Response:
        return web.json_response(self.config())

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    def _key(self, request: web.Request) -> Key:
        key = (request.match_info["namespace"], request.match_info["name"])
        if key not in self.board.bodies:
            raise web.HTTPNotFound(text=json.dumps({"error": f"no ModelDeployment {key[0]}/{key[1]}"}),
                                   content_type="application/json")  # fmt: skip
        return key

    async def _one(self, request: web.Request) -> web.Response:
        key = self._key(request)
        summary = self.board.summary(key)
        summary["history"] = (self.board.bodies[key].get("status") or {}).get("history") or []
        return web.json_response(summary)

    async def _series(self, request: web.Request) -> web.Response:
        key = self._key(request)
        return web.json_response(self.series.get(key) or {"key": f"{key[0]}/{key[1]}", "series": []})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        await response.prepare(request)
        client = _Client()
        self.clients.add(client)
        if len(self.clients) == 1:
            self._wake.set()  # the first browser: draw the series now, not at the next tick
        try:
            await response.write(sse("snapshot", self.snapshot()))
            for result in list(self.series.values()):
                await response.write(sse("series", result))
            while not client.dropped or not client.queue.empty():
                try:
                    message = await asyncio.wait_for(client.queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    message = b": keep-alive\n\n"
                if message is None or client.dropped:
                    break
                await response.write(message)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.clients.discard(client)
        return response

    def actor(self, request: web.Request) -> str | None:
        """Who presses the button, as recorded in the audit trail (None: unknown, refuse)."""
        s = self.settings
        if s.identity_header:
            value = (request.headers.get(s.identity_header) or "").strip()
            return (value + ACTOR_SUFFIX) if value else None
        return (s.local_user + ACTOR_SUFFIX) if s.local_user else None

    async def _own_identity(self) -> str | None:
        """The dashboard's own authenticated user name (its ServiceAccount), sent as modeldeploy.io/action-via:
        the chart's admission policy lets a trusted proxy name someone else in action-by only so."""
        if not hasattr(self, "_identity_cache"):
            whoami = getattr(self.kube, "whoami", None)
            self._identity_cache = await whoami() if whoami is not None else None
        return self._identity_cache

    async def _action(self, request: web.Request) -> web.Response:
        if not self.settings.allow_actions:
            return web.json_response({"error": "read-only dashboard (start it with --allow-actions)"}, status=403)
        key = self._key(request)
        who = self.actor(request)
        if who is None:
            return web.json_response(
                {"error": f"no identity: the {self.settings.identity_header} header is missing"}, status=401
            )
        try:
            payload = await request.json()
        except ValueError:
            return web.json_response({"error": 'the body must be JSON: {"action": ...}'}, status=400)
        action = (payload or {}).get("action") if isinstance(payload, dict) else None
        try:
            await actions.request(self.kube, key[0], key[1], str(action), who, via=await self._own_identity())
        except actions.ActionError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except kopf.PermanentError as exc:
            return web.json_response({"error": f"the API server refused: {exc}"}, status=403)
        except kopf.TemporaryError as exc:
            return web.json_response({"error": f"the API server is unavailable: {exc}"}, status=503)
        record = {"key": f"{key[0]}/{key[1]}", "action": action, "by": actions.clean_actor(who), "at": self.clock()}
        self.actions_requested.append(record)
        log.info("action %s on %s/%s requested by %s", action, key[0], key[1], who)
        return web.json_response({"requested": action, "by": record["by"]}, status=202)
