"""The dashboard's only reader of the Kubernetes API: LIST, then WATCH, ModelDeployments. No polling.

One LIST gives the objects and a resourceVersion; one long WATCH from there streams every change
(allowWatchBookmarks keeps the resourceVersion fresh while nothing changes). When the stream ends
(server timeout) the watch resumes from the last resourceVersion; when the server answers 410 Gone
(that version is too old) it lists again. Errors back off exponentially up to BACKOFF_MAX seconds.
So an idle dashboard holds one open connection per watched scope and sends nothing else.

The official `kubernetes` client is synchronous: each scope runs in its own daemon thread and hands
events to the event loop (`loop.call_soon_threadsafe`). `stop()` closes the client's connections,
which ends a blocked read at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import kubernetes
import urllib3
from kubernetes.client.rest import ApiException

from modeldeploy import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 300  # the server ends each watch after this; we resume from the last resourceVersion
READ_TIMEOUT_SECONDS = WATCH_TIMEOUT_SECONDS + 30
BACKOFF_MAX = 10.0


@dataclass(frozen=True)
class WatchEvent:
    type: str  # RESET (a fresh list: `objects`), ADDED, MODIFIED, DELETED, STATE (connected or not)
    objects: tuple[dict, ...] = ()
    connected: bool = True
    error: str | None = None
    scope: str = ""


class ModelDeploymentWatch:
    """List+watch ModelDeployments of some namespaces (None = the whole cluster) in daemon threads."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        namespaces: list[str] | None,
        on_event: Callable[[WatchEvent], None],
        loop: asyncio.AbstractEventLoop,
    ):
        self.api_client = api_client
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self.on_event = on_event
        self.loop = loop
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.lists = 0  # LIST calls made (a test checks an idle dashboard makes no more)
        self.watches = 0  # WATCH streams opened

    def start(self) -> None:
        for scope in self.scopes:
            thread = threading.Thread(target=self._run, args=(scope,), name=f"md-watch-{scope or 'all'}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        try:
            self.api_client.rest_client.pool_manager.clear()  # ends a blocked read
        except Exception:  # noqa: BLE001 - best effort on shutdown
            pass

    # ---- in the worker thread ------------------------------------------------------------------------
    def _emit(self, event: WatchEvent) -> None:
        if not self._stop.is_set():
            self.loop.call_soon_threadsafe(self.on_event, event)

    def _list(self, scope: str | None) -> dict:
        self.lists += 1
        if scope is None:
            return self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, scope, PLURAL)

    def _stream(self, scope: str | None, resource_version: str):
        self.watches += 1
        watch = kubernetes.watch.Watch()
        kwargs = dict(
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_TIMEOUT_SECONDS,
            _request_timeout=(10, READ_TIMEOUT_SECONDS),
        )
        if scope is None:
            return watch, watch.stream(self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL, **kwargs)
        return watch, watch.stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, scope, PLURAL, **kwargs)

    def _run(self, scope: str | None) -> None:
        name = scope or "all namespaces"
        backoff = 0.5
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    listed = self._list(scope)
                    resource_version = (listed.get("metadata") or {}).get("resourceVersion") or "0"
                    items = tuple(listed.get("items") or [])
                    for item in items:  # list items carry no apiVersion/kind
                        item.setdefault("apiVersion", f"{GROUP}/{VERSION}")
                        item.setdefault("kind", "ModelDeployment")
                    self._emit(WatchEvent("RESET", objects=items, scope=scope or ""))
                    self._emit(WatchEvent("STATE", connected=True, scope=scope or ""))
                watch, stream = self._stream(scope, resource_version)
                for event in stream:
                    if self._stop.is_set():
                        watch.stop()
                        break
                    kind = event.get("type")
                    obj = event.get("raw_object") or event.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        resource_version = rv
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self._emit(WatchEvent(kind, objects=(obj,), scope=scope or ""))
                    backoff = 0.5
            except ApiException as exc:
                if exc.status == 410:
                    log.info("watch of %s: resourceVersion too old (410): listing again", name)
                    resource_version = None
                    continue
                self._failed(scope, f"API error {exc.status}: {exc.reason}", backoff)
                resource_version = None
                backoff = min(BACKOFF_MAX, backoff * 2)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                if self._stop.is_set():
                    return
                # A read timeout or a dropped connection: list again (it reports connected once through).
                self._failed(scope, f"{type(exc).__name__}: {exc}", backoff)
                resource_version = None
                backoff = min(BACKOFF_MAX, backoff * 2)

    def _failed(self, scope: str | None, error: str, backoff: float) -> None:
        if self._stop.is_set():
            return
        log.warning("watch of %s: %s (retrying in %.1fs)", scope or "all namespaces", error, backoff)
        self._emit(WatchEvent("STATE", connected=False, error=error, scope=scope or ""))
        self._stop.wait(backoff)
