"""Fixtures for the evaluator tests: the sandbox's simulated TF Serving fleet as the server, a proxy that can misbehave.

The fleet (mdsandbox.fleet.SimulatedFleet, aiohttp on 127.0.0.1) answers TF Serving's
REST predict API with predictions whose mean AUROC on the sandbox golden set is each version's
configured `accuracy`; `latencyMs` and `errorRate` give real slowness and real 500s. The
`ChaosProxy` (also aiohttp on 127.0.0.1) sits in front of it and, per version, can answer garbage
or fail the first N requests — for what the fleet cannot do (model_card signature calls pass through,
counted apart). Both are stopped by their fixtures.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from mdsandbox.fleet import SimulatedFleet
from mdsandbox.synthetic_golden import GoldenSet, materialize

MODEL = "resnet50_chest_xray"
SMALL_GOLDEN = "sandbox://golden?size=120&seed=1&min_positives=4"


def write_config(path: pathlib.Path, versions: list[tuple[int, str]], *, golden: str = "sandbox://golden",
                 interval: str = "10s", timeout: float = 2.0, concurrency: int = 4, endpoint: str = "http://unused:8501",
                 **extra) -> pathlib.Path:  # fmt: skip
    """An evaluator.yaml like the operator renders (modeldeploy.render.evaluator.config), atomically replaced.

    A ``sandbox://`` golden set is written to a folder next to the file first and the config names
    that folder, as the sandbox's EvaluatorProcess does (the evaluator knows no sandbox:// scheme)."""
    if golden.startswith("sandbox://"):
        golden = str(materialize(golden, path.parent / "golden"))
    config = {
        "namespace": "radiology", "modelDeployment": "resnet50", "modelName": MODEL,
        "signatureName": "serving_default", "endpoint": endpoint, "previewHeader": "x-modeldeploy-version",
        "goldenSet": {"uri": golden, "labels": "labels.csv"}, "interval": interval, "timeoutSeconds": timeout,
        "concurrency": concurrency, "operatingThreshold": None,
        "versions": [{"version": v, "role": role} for v, role in versions], **extra,
    }  # fmt: skip
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.replace(path)
    return path


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text -> {(sample name, labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def pick(samples: dict, name: str, **labels: str) -> dict[frozenset, float]:
    """Samples of one name whose labels include `labels`."""
    want = set(labels.items())
    return {lab: v for (n, lab), v in samples.items() if n == name and want <= set(lab)}


def value(samples: dict, name: str, **labels: str) -> float | None:
    found = pick(samples, name, **labels)
    assert len(found) <= 1, found
    return next(iter(found.values()), None)


@pytest.fixture
async def fleet() -> AsyncIterator[SimulatedFleet]:
    """v1 0.85 (stable), v2 0.80, v3 0.85 with outputs shifted by +0.1; 5 ms latency; full sandbox golden set."""
    f = SimulatedFleet("radiology", "resnet50", MODEL, versions={
        "1": {"accuracy": 0.85, "latencyMs": {"p50": 5, "p95": 8}, "replicas": 1},
        "2": {"accuracy": 0.80, "latencyMs": {"p50": 5, "p95": 8}, "replicas": 1},
        "3": {"accuracy": 0.85, "outputShift": 0.1, "latencyMs": {"p50": 5, "p95": 8}, "replicas": 1},
    }, seed=3)  # fmt: skip
    await f.start()
    try:
        yield f
    finally:
        await f.stop()


@pytest.fixture
async def small_fleet() -> AsyncIterator[SimulatedFleet]:
    """Like `fleet` on a 120-image golden set (fast rounds for the 1 s-interval loop tests)."""
    f = SimulatedFleet("radiology", "resnet50", MODEL, golden=GoldenSet.from_uri(SMALL_GOLDEN), versions={
        "1": {"accuracy": 0.85, "latencyMs": {"p50": 3, "p95": 5}, "replicas": 1},
        "2": {"accuracy": 0.85, "latencyMs": {"p50": 3, "p95": 5}, "replicas": 1},
        "3": {"accuracy": 0.80, "latencyMs": {"p50": 3, "p95": 5}, "replicas": 1},
    }, seed=3)  # fmt: skip
    await f.start()
    try:
        yield f
    finally:
        await f.stop()


GARBAGE = {
    "html": (200, "text/html", "<html><body>502 Bad Gateway from some proxy</body></html>"),
    "predictions-not-a-list": (200, "application/json", json.dumps({"predictions": "lol"})),
    "13-findings": (200, "application/json", None),  # built per request: right rows, one column short
    "too-few-rows": (200, "application/json", json.dumps({"predictions": [[0.5] * 14]})),
    "nan": (200, "application/json", None),  # built per request: NaN probabilities
    "logits": (200, "application/json", None),  # built per request: values outside [0, 1]
    "error-body-200": (200, "application/json", json.dumps({"error": "Servable not found"})),
    "tf-400": (400, "application/json", json.dumps({"error": "Invalid argument: Unknown image file format"})),
}


@dataclass
class ChaosProxy:
    """Forwards predict calls to the fleet unless told otherwise for a version."""

    upstream: str
    garbage: dict[str, str] = field(default_factory=dict)  # version -> GARBAGE key
    fail_first: dict[str, int] = field(default_factory=dict)  # version -> 503s still to give
    inflight: int = 0
    max_inflight: int = 0
    requests: int = 0
    headers_seen: list[dict] = field(default_factory=list)
    url: str = ""
    card_requests: int = 0  # model_card signature calls: forwarded as they are, not counted in `requests`

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            card_call = json.loads(body).get("signature_name") == "model_card"
        except (ValueError, AttributeError):
            card_call = False
        if card_call:
            self.card_requests += 1
            async with self._session.post(f"{self.upstream}{request.path}", data=body, headers={
                    "Content-Type": "application/json"}) as resp:  # fmt: skip
                return web.Response(status=resp.status, body=await resp.read(), content_type="application/json")
        self.requests += 1
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            version = request.match_info["version"]
            self.headers_seen.append(dict(request.headers))
            if self.fail_first.get(version, 0) > 0:
                self.fail_first[version] -= 1
                return web.Response(status=503, text="upstream connect error")
            kind = self.garbage.get(version)
            if kind is not None:
                status, content_type, text = GARBAGE[kind]
                if text is None:
                    n = len(json.loads(body)["instances"])
                    row = {"13-findings": [0.5] * 13, "nan": [float("nan")] * 14, "logits": [3.2] * 14}[kind]
                    text = json.dumps({"predictions": [row] * n})
                return web.Response(status=status, text=text, content_type=content_type)
            async with self._session.post(f"{self.upstream}{request.path}", data=body, headers={
                    "Content-Type": "application/json"}) as resp:  # fmt: skip
                return web.Response(status=resp.status, body=await resp.read(), content_type="application/json")
        finally:
            self.inflight -= 1

    async def start(self) -> "ChaosProxy":
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post(r"/v1/models/{model}/versions/{version:[0-9]+}:predict", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)  # do not wait for hung upstreams
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()
        await self._session.close()


@pytest.fixture
async def proxy(fleet) -> AsyncIterator[ChaosProxy]:
    p = await ChaosProxy(fleet.url).start()
    try:
        yield p
    finally:
        await p.stop()


@pytest.fixture
async def small_proxy(small_fleet) -> AsyncIterator[ChaosProxy]:
    p = await ChaosProxy(small_fleet.url).start()
    try:
        yield p
    finally:
        await p.stop()


async def wait_for(predicate, timeout: float = 10.0, every: float = 0.05):
    """Poll an (async or plain) predicate until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(every)
