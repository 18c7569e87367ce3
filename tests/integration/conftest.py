"""Integration fixtures: one real Prometheus per session, a simulated fleet per test.

Prometheus 2.42 needs 5-6 s to scrape a target after it starts and 1-5 s to pick up a changed
target list (its discovery manager forwards updates on a fixed 5 s tick), so:

* ``prometheus`` (session) is started once with a FIXED target list: the Istio metrics endpoint
  of whichever fleet currently listens on the session's ``fleet_port``. It waits until that target
  has been scraped once (the scrape fails until a fleet listens: ``up`` is 0, that is fine).
  Tests may still call ``prometheus.set_targets(...)`` (their own extra targets, 1-5 s to apply)
  but must restore ``SESSION_TARGETS`` afterwards; killing it is for dedicated instances only.
* ``fleet`` is a factory: ``await fleet(versions, traffic, vs=..., dr=..., ready={...})`` starts a
  `SimulatedFleet` on ``fleet_port`` (so Prometheus scrapes it within one scrape interval) in a
  namespace unique to the test (queries filter on it, so series of earlier tests never mix in),
  and stops it when the test ends. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from mdsandbox.fleet import SimulatedFleet
from kubeemu.childprocess import free_port
from mdsandbox.prometheus_process import PrometheusServer, ScrapeTarget

SCRAPE_INTERVAL = 0.5
ISTIO_JOB = "istio-mesh"
SERVICE = "resnet50"
MODEL_NAME = "resnet50_cxr"
_namespaces = itertools.count(1)


@pytest.fixture(scope="session")
def fleet_port() -> int:
    """The port every scraped fleet of this session listens on (127.0.0.1)."""
    return free_port()


@pytest.fixture(scope="session")
def session_targets(fleet_port: int) -> list[ScrapeTarget]:
    return [ScrapeTarget(ISTIO_JOB, f"127.0.0.1:{fleet_port}", "/metrics", {})]


@pytest.fixture(scope="session")
def prometheus(session_targets: list[ScrapeTarget]) -> Iterator[PrometheusServer]:
    """A real Prometheus (0.5 s scrape interval) that has already scraped the fleet port once."""
    prom = PrometheusServer(session_targets, scrape_interval=SCRAPE_INTERVAL)
    prom.start_and_wait()
    try:
        asyncio.run(prom.api.wait_for_scrape(ISTIO_JOB, timeout=20, healthy=False))
        yield prom
    finally:
        prom.stop()


FleetFactory = Callable[..., Awaitable[SimulatedFleet]]


@pytest.fixture
async def fleet(
    request: pytest.FixtureRequest, fleet_port: int, prometheus: PrometheusServer
) -> AsyncIterator[FleetFactory]:
    """Factory of started fleets on the scraped port; stops them all at the end of the test."""
    started: list[SimulatedFleet] = []

    async def make(
        versions: dict[str, dict[str, Any]],
        traffic: dict[str, Any] | None = None,
        *,
        vs: dict[str, Any] | None = None,
        dr: dict[str, Any] | None = None,
        ready: dict[str, int] | None = None,
        scraped: bool = True,
        seed: int = 1,
        **kwargs: Any,
    ) -> SimulatedFleet:
        if scraped and any(f.port == fleet_port for f in started):
            raise RuntimeError("only one scraped fleet per test (they share the scraped port)")
        slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
        namespace = f"t{next(_namespaces)}-{slug}"
        f = SimulatedFleet(namespace, SERVICE, MODEL_NAME, versions, traffic, seed=seed,
                           port=fleet_port if scraped else 0, **kwargs)  # fmt: skip
        for version, replicas in (ready if ready is not None else {v: 1 for v in versions}).items():
            f.set_ready(version, replicas)
        if vs is not None:
            f.set_routing(vs, dr)
        await f.start()
        started.append(f)
        return f

    yield make
    for f in started:
        await f.stop()
