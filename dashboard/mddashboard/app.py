"""The dashboard process: connect to the API server and Prometheus, start the watch and the web server, serve.

`run()` is what `modeldeploy dashboard` runs: one Kubernetes client (in-cluster settings, else the
kubeconfig) shared by the watch and the actions, the aiohttp server on `settings.host:port`, and a
clean stop on SIGINT/SIGTERM (the watch threads end, open browser streams are closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from aiohttp import web

from mddashboard.series import RangeClient
from mddashboard.server import Dashboard, Settings
from mddashboard.watch import ModelDeploymentWatch
from modeldeploy.kube import Kube, new_api_client

SHUTDOWN_TIMEOUT = 2.0


async def run(
    settings: Settings,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    namespaces: list[str] | None = None,
    prometheus_url: str | None = None,
) -> int:
    api_client = new_api_client(pool_size=4 + len(namespaces or [None]), kubeconfig=kubeconfig, context=context)
    kube = Kube(api_client, workers=2)
    prometheus = RangeClient(prometheus_url) if prometheus_url else None
    dashboard = Dashboard(settings, kube=kube, prometheus=prometheus)
    watch = ModelDeploymentWatch(api_client, namespaces, dashboard.on_watch, asyncio.get_running_loop())
    runner = web.AppRunner(dashboard.app(), shutdown_timeout=SHUTDOWN_TIMEOUT, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else settings.port
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    mode = "actions allowed" if settings.allow_actions else "read-only"
    scope = ", ".join(namespaces) if namespaces else "all namespaces"
    print(f"dashboard: http://{shown}:{port}/ ({mode}; watching {scope})", flush=True)
    watch.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        watch.stop()
        await runner.cleanup()
        if prometheus is not None:
            await prometheus.aclose()
        kube.close()
        print("dashboard: stopped", file=sys.stderr, flush=True)
    return 0
