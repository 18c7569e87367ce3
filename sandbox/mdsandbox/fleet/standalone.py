"""The standalone fleet: ``python -m mdsandbox.fleet --config fleet.yaml [--prometheus]`` (`main`).

The YAML holds namespace, service, modelName, versions (scenario behaviour entries), traffic,
replicas ``{version: n}``, routing ``{virtualService, destinationRule}``, seed and port. With
``--prometheus`` a real Prometheus scrapes it. Runs until SIGINT/SIGTERM; a bad config exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import yaml

from mdsandbox.fleet.simulated_fleet import SimulatedFleet


async def _main_async(args: argparse.Namespace) -> None:
    cfg = yaml.safe_load(Path(args.config).read_text()) or {}
    fleet = SimulatedFleet(
        namespace=cfg.get("namespace", "default"),
        service=cfg.get("service") or cfg.get("name") or "model",
        model_name=cfg.get("modelName") or cfg.get("service") or "model",
        versions=cfg.get("versions") or {},
        traffic=cfg.get("traffic") or {},
        seed=cfg.get("seed"),
        port=args.port or cfg.get("port", 0),
    )
    for v, n in (cfg.get("replicas") or {}).items():
        fleet.set_ready(str(v), int(n))
    routing = cfg.get("routing") or {}
    if routing.get("virtualService"):
        fleet.set_routing(routing["virtualService"], routing.get("destinationRule"))
    await fleet.start()
    prom = None
    print(f"fleet: {fleet.url}  (metrics {fleet.url}/metrics, stats {fleet.url}/fleet/stats)", flush=True)
    if args.prometheus:
        from mdsandbox.prometheus_process import PrometheusServer

        prom = PrometheusServer(fleet.scrape_targets(), scrape_interval=args.scrape_interval)
        await asyncio.to_thread(prom.start_and_wait)
        print(f"prometheus: {prom.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        if prom is not None:
            await asyncio.to_thread(prom.stop)
        await fleet.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdsandbox.fleet", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="YAML: namespace, service, modelName, versions, traffic, "
                        "replicas {version: n}, routing {virtualService, destinationRule}, seed, port")  # fmt: skip
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--prometheus", action="store_true", help="also run a Prometheus scraping the fleet")
    parser.add_argument("--scrape-interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main_async(args))
    except ValueError as exc:
        print(f"fleet: bad config: {exc}", file=sys.stderr)
        return 2
    return 0
