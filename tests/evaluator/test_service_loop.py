"""The evaluator as a service: its loop, its /metrics and /healthz over HTTP, the config re-read while running.

Everything real: the loop (Evaluator.run) on a 1 s interval, the metrics server on 127.0.0.1
scraped with httpx, the sandbox fleet as TF Serving. The scenario is a rollout seen from the
evaluator: the stable alone, a canary added to the config, the canary breaking and recovering, a
broken config file, the promotion (roles change, the old stable leaves the list).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from evaluator_testkit import SMALL_GOLDEN, parse_metrics, pick, value, wait_for, write_config
from xraymodel.evaluator.exporter import EvaluatorMetrics, MetricsServer
from xraymodel.evaluator.service import Evaluator


@pytest.fixture
async def service(tmp_path, small_fleet):
    cfg = tmp_path / "evaluator.yaml"  # not there yet: the ConfigMap is not mounted at first
    metrics = EvaluatorMetrics()
    evaluator = Evaluator(cfg, metrics, endpoint_override=small_fleet.url, poll_seconds=0.1, first_publish_wait=3.0)
    server = MetricsServer(metrics, "127.0.0.1", 0, evaluator.health).start()
    stop = asyncio.Event()
    task = asyncio.create_task(evaluator.run(stop))
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.address[1]}", timeout=5)
    try:
        yield cfg, evaluator, client
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await client.aclose()
        server.stop()


async def scrape(client: httpx.AsyncClient) -> dict:
    resp = await client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    return parse_metrics(resp.text)


def write(cfg, versions, **extra):
    settings = {"golden": SMALL_GOLDEN, "interval": "1s", "timeout": 0.3, "retries": 0, "bootstrapResamples": 50, **extra}
    return write_config(cfg, versions, **settings)


async def test_the_service_follows_a_rollout(service, small_fleet):
    cfg, evaluator, client = service
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json()["configLoaded"] is False  # alive, waiting for its config
    assert (await client.get("/nope")).status_code == 404

    # 1. the stable version alone
    write(cfg, [(1, "stable")])
    await wait_for(lambda: _has(client, "modeldeploy_evaluator_auroc_mean", version="v1"))
    health = (await client.get("/healthz")).json()
    assert health["configLoaded"] and health["goldenSet"]["images"] == 120 and health["versions"]["v1"]["ok"]

    # 2. the operator lists a canary: its counter is exposed at 0 before its first evaluation counts
    write(cfg, [(1, "stable"), (3, "canary")])
    seen: list[float] = []

    async def canary_counted():
        count = value(await scrape(client), "modeldeploy_evaluator_samples_total", version="v3")
        if count is not None and (not seen or seen[-1] != count):
            seen.append(count)
        return count is not None and count > 0

    await wait_for(canary_counted, every=0.02)
    assert seen[0] == 0 and seen[-1] == 120, seen  # so Prometheus' increase() sees the first evaluation
    samples = await scrape(client)
    assert value(samples, "modeldeploy_evaluator_auroc_mean", version="v3") == pytest.approx(0.80, abs=0.01)
    await wait_for(lambda: _has(client, "modeldeploy_evaluator_psi_max", version="v3", baseline_version="v1"))
    # the paired per-finding comparison the nonInferiority gate reads, next to the drift figures
    paired = await scrape(client)
    deltas = pick(paired, "modeldeploy_evaluator_auroc_delta", version="v3", baseline_version="v1")
    ses = pick(paired, "modeldeploy_evaluator_auroc_delta_se", version="v3", baseline_version="v1")
    assert len(deltas) == len(ses) == 14 and all(se > 0 for se in ses.values())
    assert sum(deltas.values()) / 14 == pytest.approx(0.80 - 0.85, abs=0.01)  # v3 0.80 vs v1 0.85

    # evaluations repeat every interval
    before = value(await scrape(client), "modeldeploy_evaluator_samples_total", version="v1")
    await asyncio.sleep(2.2)
    after = value(await scrape(client), "modeldeploy_evaluator_samples_total", version="v1")
    assert after - before >= 2 * 120

    # 3. the canary breaks (500s): its figures go missing, its counter stops; the stable carries on
    small_fleet.set_behaviour("3", errorRate=1.0)
    await wait_for(lambda: _gone(client, "modeldeploy_evaluator_auroc_mean", version="v3"), timeout=5)
    frozen = await scrape(client)
    assert not pick(frozen, "modeldeploy_evaluator_psi", version="v3")
    await asyncio.sleep(1.5)
    later = await scrape(client)
    assert value(later, "modeldeploy_evaluator_samples_total", version="v3") == value(frozen, "modeldeploy_evaluator_samples_total", version="v3")
    assert value(later, "modeldeploy_evaluator_samples_total", version="v1") > value(frozen, "modeldeploy_evaluator_samples_total", version="v1")
    assert value(later, "modeldeploy_evaluator_last_evaluation_ok", version="v3") == 0
    assert (await client.get("/healthz")).status_code == 200  # the service itself is fine

    # 4. it recovers: figures come back on the next evaluations
    small_fleet.set_behaviour("3", errorRate=0.0)
    await wait_for(lambda: _has(client, "modeldeploy_evaluator_auroc_mean", version="v3"), timeout=5)

    # 5. a broken config file is counted and ignored: the last good one stays in effect
    cfg.write_text("versions: [unclosed\n")
    await wait_for(lambda: _value_at_least(client, "modeldeploy_evaluator_config_errors_total", 1))
    assert "not YAML" in (await client.get("/healthz")).json()["configError"]
    assert _has_now(await scrape(client), "modeldeploy_evaluator_auroc_mean", version="v3")

    # 6. promotion: v3 becomes stable, v1 leaves the list -> v1's series and the drift figures disappear
    write(cfg, [(3, "stable")])
    await wait_for(lambda: _gone(client, "modeldeploy_evaluator_samples_total", version="v1"))
    samples = await scrape(client)
    assert not pick(samples, "modeldeploy_evaluator_auroc_mean", version="v1")
    assert not pick(samples, "modeldeploy_evaluator_psi")
    assert value(samples, "modeldeploy_evaluator_versions") == 1
    # 7. the next canary is compared with the NEW stable
    write(cfg, [(2, "canary"), (3, "stable")])
    await wait_for(lambda: _has(client, "modeldeploy_evaluator_psi_max", version="v2", baseline_version="v3"))
    assert evaluator.config.stable.version == 3


async def test_a_hanging_version_does_not_hold_up_the_others(service, small_fleet):
    """v2 answers after 2 s (the deadline is 0.9 s): v1 keeps being evaluated every second meanwhile."""
    cfg, evaluator, client = service
    small_fleet.set_behaviour("2", latencyMs={"p50": 2000, "p95": 2000})
    write(cfg, [(1, "stable"), (2, "canary")], timeout=10)  # only the evaluation deadline can stop it
    await wait_for(lambda: _has(client, "modeldeploy_evaluator_auroc_mean", version="v1"))
    start = value(await scrape(client), "modeldeploy_evaluator_samples_total", version="v1")
    t0 = time.monotonic()
    await asyncio.sleep(3.0)
    samples = await scrape(client)
    assert value(samples, "modeldeploy_evaluator_samples_total", version="v1") - start >= 2 * 120
    assert value(samples, "modeldeploy_evaluator_samples_total", version="v2") == 0
    assert value(samples, "modeldeploy_evaluator_evaluations_total", version="v2", outcome="failure") >= 2
    assert not pick(samples, "modeldeploy_evaluator_auroc_mean", version="v2")
    assert time.monotonic() - t0 < 4.0


async def _has(client, name, **labels) -> bool:
    return _has_now(await scrape(client), name, **labels)


def _has_now(samples, name, **labels) -> bool:
    return bool(pick(samples, name, **labels))


async def _gone(client, name, **labels) -> bool:
    return not pick(await scrape(client), name, **labels)


async def _value_at_least(client, name, minimum) -> bool:
    v = value(await scrape(client), name)
    return v is not None and v >= minimum


async def test_a_golden_set_that_is_not_there_yet_is_retried(service, tmp_path):
    """A folder golden set missing at first (PVC not synced yet): counted, reported, retried; no crash."""
    from mdsandbox.synthetic_golden import GoldenSet

    cfg, evaluator, client = service
    folder = tmp_path / "golden"
    write(cfg, [(1, "stable")], golden=str(folder))
    await wait_for(lambda: _value_at_least(client, "modeldeploy_evaluator_golden_set_errors_total", 1))
    health = await client.get("/healthz")
    assert health.status_code == 200 and "folder not found" in health.json()["goldenSetError"]
    assert not pick(await scrape(client), "modeldeploy_evaluator_auroc_mean")
    GoldenSet.from_uri(SMALL_GOLDEN).write(folder)  # the same images the fleet knows, as files + labels.csv
    await wait_for(lambda: _has(client, "modeldeploy_evaluator_auroc_mean", version="v1"), timeout=10)
    samples = await scrape(client)
    assert value(samples, "modeldeploy_evaluator_auroc_mean", version="v1") == pytest.approx(0.85, abs=0.01)
    assert value(samples, "modeldeploy_evaluator_golden_set_info", source=str(folder)) == 1


def test_health_reports_a_stalled_loop(tmp_path):
    evaluator = Evaluator(tmp_path / "evaluator.yaml")
    assert evaluator.health()[0] is True
    evaluator.heartbeat -= 60  # the loop has not ticked for a minute
    ok, detail = evaluator.health()
    assert ok is False and detail["status"] == "stalled"
    evaluator.loading_golden = True  # ... because it is downloading the golden set: still alive
    assert evaluator.health()[0] is True


async def test_first_evaluation_waits_until_the_zeroed_counter_was_scraped(tmp_path, small_fleet):
    """Otherwise Prometheus' first sample of samples_total would be 120 and increase() would miss that evaluation."""
    cfg = write(tmp_path / "evaluator.yaml", [(1, "stable")])
    metrics = EvaluatorMetrics()
    evaluator = Evaluator(cfg, metrics, endpoint_override=small_fleet.url, first_publish_wait=30)
    server = MetricsServer(metrics, "127.0.0.1", 0, evaluator.health).start()
    try:
        task = asyncio.create_task(evaluator.evaluate_all())
        await asyncio.sleep(1.0)  # the evaluation itself is done by now (~0.2 s), but nobody has scraped
        unscraped = parse_metrics(metrics.render().decode())  # a look that is not a scrape
        assert not task.done()
        assert value(unscraped, "modeldeploy_evaluator_samples_total", version="v1") == 0
        assert not pick(unscraped, "modeldeploy_evaluator_auroc_mean")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.address[1]}") as client:
            first = await scrape(client)  # Prometheus scrapes: it has seen 0
            outcomes = await asyncio.wait_for(task, 5)
            later = await scrape(client)
        assert value(first, "modeldeploy_evaluator_samples_total", version="v1") == 0
        assert outcomes["v1"].ok and value(later, "modeldeploy_evaluator_samples_total", version="v1") == 120
    finally:
        await evaluator.close()
        server.stop()
