"""A real Prometheus scraping a real SimulatedFleet: what the operator's queries will see.

Every figure is measured BY PROMETHEUS (rate / histogram_quantile over the scraped Istio metrics),
with the Flagger-style selectors the operator uses (reporter="destination", namespace, service,
destination_version). Tolerances are several standard deviations of the simulated counts; the
latency checks compare against what Istio's coarse default buckets make histogram_quantile
report for the configured lognormal (the bias against the configured p95 is asserted too).
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from typing import Any

import httpx
import pytest

from mdsandbox.fleet import ISTIO_DURATION_BUCKETS_MS, SimulatedFleet, VersionBehaviour
from mdsandbox.synthetic_golden import GoldenSet
from mdsandbox.prometheus_api import PrometheusUnavailable, Sample
from mdsandbox.prometheus_process import PrometheusServer

SERVICE = "resnet50"  # the `fleet` fixture's defaults (tests/integration/conftest.py)
MODEL_NAME = "resnet50_cxr"
WINDOW = "3s"
pytestmark = pytest.mark.timeout(60)


# ------------------------------------------------------------------ helpers
def vs(*http: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": SERVICE}, "spec": {"hosts": [SERVICE], "http": list(http)}}  # fmt: skip


def dr(*versions: str) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": SERVICE},
            "spec": {"host": SERVICE, "subsets": [{"name": f"v{v}", "labels": {"version": f"v{v}"}} for v in versions]}}  # fmt: skip


def dest(version: str, weight: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"destination": {"host": SERVICE, "subset": f"v{version}"}}
    if weight is not None:
        d["weight"] = weight
    return d


def sel(fleet: SimulatedFleet, reporter: str = "destination", **extra: str) -> str:
    assert (fleet.service, fleet.model_name) == (SERVICE, MODEL_NAME)
    # The client sidecar's own replies (503 UH...) reach no workload: destination_workload_namespace
    # is "unknown" there, as in Istio, so source-side queries select the Service's namespace.
    ns_label = "destination_workload_namespace" if reporter == "destination" else "destination_service_namespace"
    labels = {"reporter": reporter, ns_label: fleet.namespace, "destination_service_name": SERVICE, **extra}
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def by_label(samples: list[Sample], label: str) -> dict[str, float]:
    return {s.labels.get(label, ""): s.value for s in samples}


async def wait_until(check, timeout: float, what: str, interval: float = 0.2):
    """Poll `check()` (async, returns a value or None) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


async def settle(prom: PrometheusServer, fleet: SimulatedFleet, seconds: float, **extra: str) -> None:
    """Wait until Prometheus has the fleet's series, then `seconds` more so rate windows are full."""
    promql = f"istio_requests_total{sel(fleet, **extra)}"
    await wait_until(lambda: prom.api.query(promql), 15, f"first scrape of {promql}")
    await asyncio.sleep(seconds)


def expected_histogram_quantile(beh: VersionBehaviour, q: float) -> float:
    """What histogram_quantile returns for an infinite sample of `beh` with Istio's buckets."""
    prev_le, prev_cdf = 0.0, 0.0
    for le in ISTIO_DURATION_BUCKETS_MS:
        cdf = beh.latency_cdf(le)
        if cdf >= q:
            return prev_le + (le - prev_le) * (q - prev_cdf) / (cdf - prev_cdf)
        prev_le, prev_cdf = le, cdf
    raise AssertionError("quantile beyond the last bucket")


# ------------------------------------------------------------------ traffic split
async def test_weighted_split_90_10_measured_by_prometheus(prometheus, fleet):
    f = await fleet({"1": {}, "2": {}}, {"rps": 800}, vs=vs({"route": [dest("1", 90), dest("2", 10)]}), dr=dr("1", "2"))
    await settle(prometheus, f, 3.5)
    rates = by_label(
        await prometheus.api.query(
            f"sum by (destination_version) (rate(istio_requests_total{sel(f)}[{WINDOW}]))"
        ),
        "destination_version",
    )
    assert set(rates) == {"v1", "v2"}
    share = rates["v2"] / (rates["v1"] + rates["v2"])
    print(f"MEASURED weights 90/10: canary share {share:.4f}, total rate {rates['v1'] + rates['v2']:.1f}/s (rps 800)")
    assert share == pytest.approx(0.10, abs=0.025), rates
    assert rates["v1"] + rates["v2"] == pytest.approx(800, rel=0.2), rates
    # the generator's own bookkeeping agrees with what Prometheus saw
    st = f.stats()["versions"]
    assert st["2"]["requests"] / (st["1"]["requests"] + st["2"]["requests"]) == pytest.approx(0.10, abs=0.02)


async def test_header_match_routes_the_header_share(prometheus, fleet):
    routing = vs(
        {"name": "ab", "match": [{"headers": {"x-model-variant": {"exact": "canary"}}}], "route": [dest("2")]},
        {"name": "primary", "route": [dest("1", 100)]},
    )
    f = await fleet({"1": {}, "2": {}}, {"rps": 800, "headers": {"share": 0.3, "set": {"x-model-variant": "canary"}}},
                    vs=routing, dr=dr("1", "2"))  # fmt: skip
    await settle(prometheus, f, 3.5)
    rates = by_label(
        await prometheus.api.query(f"sum by (destination_version) (rate(istio_requests_total{sel(f)}[{WINDOW}]))"),
        "destination_version",
    )
    print(f"MEASURED header share 0.3: {rates['v2'] / (rates['v1'] + rates['v2']):.4f}")
    assert rates["v2"] / (rates["v1"] + rates["v2"]) == pytest.approx(0.3, abs=0.04), rates
    # a REST call through the mesh is routed by its headers too
    image = base64.b64encode(GoldenSet().image_bytes(0)).decode()
    async with httpx.AsyncClient(base_url=f.url) as client:
        before = f.stats()["versions"]["2"]["rest_requests"]
        for _ in range(3):
            r = await client.post(f"/v1/models/{MODEL_NAME}:predict", json={"instances": [{"b64": image}]},
                                  headers={"X-Model-Variant": "canary"})  # fmt: skip
            assert r.status_code == 200 and len(r.json()["predictions"][0]) == 14
        assert f.stats()["versions"]["2"]["rest_requests"] == before + 3


async def test_mirrored_requests_are_counted_on_the_mirror_version(prometheus, fleet):
    routing = vs({"route": [dest("1", 100)], "mirror": {"host": SERVICE, "subset": "v2"}, "mirrorPercentage": {"value": 50.0}})
    f = await fleet({"1": {}, "2": {}}, {"rps": 800}, vs=routing, dr=dr("1", "2"))
    await settle(prometheus, f, 3.5, destination_version="v2")
    dest_rates = by_label(
        await prometheus.api.query(f"sum by (destination_version) (rate(istio_requests_total{sel(f)}[{WINDOW}]))"),
        "destination_version",
    )
    print(f"MEASURED mirror 50 %: mirrored/primary {dest_rates['v2'] / dest_rates['v1']:.4f}")
    assert dest_rates["v2"] / dest_rates["v1"] == pytest.approx(0.5, abs=0.07), dest_rates
    # the client sidecar (reporter="source") never sees the shadow copies
    src_rates = by_label(
        await prometheus.api.query(
            f"sum by (destination_version) (rate(istio_requests_total{sel(f, 'source')}[{WINDOW}]))"
        ),
        "destination_version",
    )
    assert set(src_rates) == {"v1"}, src_rates
    # both sidecars count every live request to v1 (one query: same evaluation time for both)
    both = by_label(
        await prometheus.api.query(
            "sum by (reporter) (rate(istio_requests_total{destination_service_namespace="
            f'"{f.namespace}",destination_version="v1"}}[{WINDOW}]))'
        ),
        "reporter",
    )
    assert both["source"] == pytest.approx(both["destination"], rel=1e-9), both


async def test_not_ready_version_gets_503_no_healthy_upstream(prometheus, fleet):
    f = await fleet({"1": {}, "2": {"ready": False}}, {"rps": 800},
                    vs=vs({"route": [dest("1", 50), dest("2", 50)]}), dr=dr("1", "2"), ready={"1": 1, "2": 2})  # fmt: skip
    assert f.ready_replicas("2") == 0
    await settle(prometheus, f, 3.5, reporter="source")
    src = f"sum(rate(istio_requests_total{sel(f, 'source')}[{WINDOW}]))"
    uh = f"sum(rate(istio_requests_total{sel(f, 'source', response_code='503', response_flags='UH')}[{WINDOW}]))"
    share = (await prometheus.api.query(f"{uh} / {src}"))[0].value
    print(f"MEASURED not-ready 50 %: 503 UH share {share:.4f}")
    assert share == pytest.approx(0.5, abs=0.06)
    # the not-ready version's own sidecar saw nothing: per-version queries get NO DATA, not 0
    assert await prometheus.api.query(f"istio_requests_total{sel(f, destination_version='v2')}") == []
    async with httpx.AsyncClient(base_url=f.url) as client:
        r = await client.get(f"/v1/models/{MODEL_NAME}/versions/2")
        assert (r.status_code, r.text) == (503, "no healthy upstream")
        r = await client.post(f"/v1/models/{MODEL_NAME}/versions/2:predict", json={"instances": [{"b64": "AA=="}]})
        assert r.status_code == 503
        r = await client.get(f"/v1/models/{MODEL_NAME}/versions/1")
        assert r.status_code == 200 and r.json()["model_version_status"][0]["state"] == "AVAILABLE"


# ------------------------------------------------------------------ latency and errors
async def test_latency_p95_per_version_from_histogram_quantile(prometheus, fleet):
    versions = {"1": {"latencyMs": {"p50": 20, "p95": 40}}, "2": {"latencyMs": {"p50": 150, "p95": 400}}}
    f = await fleet(versions, {"rps": 1200}, vs=vs({"route": [dest("1", 50), dest("2", 50)]}), dr=dr("1", "2"))
    await settle(prometheus, f, 3.5)
    p95 = by_label(
        await prometheus.api.query(
            "histogram_quantile(0.95, sum by (le, destination_version) "
            f"(rate(istio_request_duration_milliseconds_bucket{sel(f)}[{WINDOW}])))"
        ),
        "destination_version",
    )
    for v, cfg in versions.items():
        beh = f.behaviour(v)
        theory = expected_histogram_quantile(beh, 0.95)
        measured = p95[f"v{v}"]
        print(f"MEASURED p95 v{v}: prometheus {measured:.1f} ms, bucket theory {theory:.1f}, configured "
              f"{cfg['latencyMs']['p95']} (ratio {measured / cfg['latencyMs']['p95']:.3f})")
        assert measured == pytest.approx(theory, rel=0.10), (v, measured, theory)
        # Istio's coarse buckets bias the estimate upwards by ~15-20 % here; never wildly off
        configured = cfg["latencyMs"]["p95"]
        assert configured * 0.95 < measured < configured * 1.3, (v, measured, configured)
    assert p95["v2"] > 5 * p95["v1"]


async def test_error_rate_five_percent(prometheus, fleet):
    versions = {"1": {"errorRate": 0.05}, "2": {"errorRate": 0.005}}
    f = await fleet(versions, {"rps": 3000}, vs=vs({"route": [dest("1", 50), dest("2", 50)]}), dr=dr("1", "2"))
    await settle(prometheus, f, 3.5)
    for v, rate in (("1", 0.05), ("2", 0.005)):
        s_all = sel(f, destination_version=f"v{v}")
        s_5xx = s_all[:-1] + ',response_code=~"5.."}'
        promql = (f"100 * (sum(rate(istio_requests_total{s_5xx}[{WINDOW}])) or vector(0))"
                  f" / sum(rate(istio_requests_total{s_all}[{WINDOW}]))")  # fmt: skip
        measured = (await prometheus.api.query(promql))[0].value
        print(f"MEASURED error rate v{v}: {measured:.3f} % (configured {100 * rate} %)")
        # ~3750 requests per version in the samples of the window: sd 0.36 points at 5 %, 0.12 at 0.5 %
        assert measured == pytest.approx(100 * rate, abs=1.5 if rate > 0.01 else 0.5), (v, measured)


async def test_changes_entry_shifts_latency_after_n_seconds(prometheus, fleet):
    versions = {"2": {"latencyMs": {"p50": 20, "p95": 30}, "changes": [{"after": 2.5, "latencyMs": {"p50": 400, "p95": 600}}]}}
    f = await fleet(versions, {"rps": 600})
    first = await wait_until(lambda: _first_traffic(f), 5, "first traffic")
    change_unix = time.time() - (time.monotonic() - first) + 2.5
    median = ("histogram_quantile(0.5, sum by (le) "
              f"(rate(istio_request_duration_milliseconds_bucket{sel(f, destination_version='v2')}[2s])))")  # fmt: skip

    async def post_change_median():
        got = await prometheus.api.query(median)
        return got[0].value if got and got[0].value > 200 else None

    await wait_until(post_change_median, 10, "the latency change to show in Prometheus")
    visible_after = time.time() - change_unix
    print(f"MEASURED change visible in Prometheus {visible_after:.2f} s after it took effect")
    assert 0 < visible_after < 3.5, visible_after  # one scrape + a rate window at most
    before = await prometheus.api.query(median, time=change_unix - 0.3)
    assert before and before[0].value < 30, before
    await asyncio.sleep(max(0.0, change_unix + 3.0 - time.time()))
    after = await prometheus.api.query(median)
    assert after[0].value == pytest.approx(expected_histogram_quantile(f.behaviour("2"), 0.5), rel=0.1)
    assert f.stats()["versions"]["2"]["changes_applied"][0]["after"] == 2.5


async def _first_traffic(f: SimulatedFleet) -> float | None:
    return f.versions["2"].first_traffic_at


# ------------------------------------------------------------------ Prometheus faults
async def test_prometheus_kill_then_restart_keeps_history(fleet):
    """Dedicated instance (the session one must stay up): kill -> queries fail -> restart -> history."""
    f = await fleet({"1": {}}, {"rps": 200}, scraped=False)
    prom = PrometheusServer(f.scrape_targets(), scrape_interval=0.5)
    try:
        await asyncio.to_thread(prom.start_and_wait)
        await prom.api.wait_for_scrape("istio-mesh", timeout=20)
        await prom.api.wait_for_scrape("tfserving", timeout=5)
        total = f"sum(istio_requests_total{sel(f)})"
        await wait_until(lambda: prom.api.query(total), 5, "a sample")
        t_before = time.time()
        before = (await prom.api.query(total, time=t_before))[0].value
        assert before > 0
        # TF Serving's own metrics, per pod, with target labels added by the scrape config
        tfs = await prom.api.query(f':tensorflow:serving:request_count{{namespace="{f.namespace}",version="v1"}}')
        assert tfs and {s.labels["pod"] for s in tfs} == set(f.pod_names("1"))
        assert {s.labels["model_name"] for s in tfs} == {MODEL_NAME}

        port = prom.port
        prom.kill()
        with pytest.raises(PrometheusUnavailable):
            await prom.api.query(total)
        prom.start()
        await asyncio.to_thread(prom.wait_ready)
        assert prom.port == port  # same URL for everyone holding it
        again = await prom.api.query(total, time=t_before)
        assert again and again[0].value == pytest.approx(before)  # history survived the crash

        await asyncio.to_thread(prom.restart, False)  # now lose the TSDB on purpose
        assert await prom.api.query(total, time=t_before) == []
    finally:
        await asyncio.to_thread(prom.stop)
    assert not prom.running


# ------------------------------------------------------------------ sanity of the test helpers
def test_expected_histogram_quantile_helper():
    beh = VersionBehaviour(latency_p50_ms=20, latency_p95_ms=40)
    # p50 = 20 lies in (10, 25]: linear interpolation inside that bucket
    got = expected_histogram_quantile(beh, 0.5)
    lo, hi = beh.latency_cdf(10), beh.latency_cdf(25)
    assert got == pytest.approx(10 + 15 * (0.5 - lo) / (hi - lo))
    assert beh.latency_quantile_ms(0.95) == pytest.approx(40)
    assert math.isclose(beh.latency_cdf(20), 0.5)


# ------------------------------------------------------------------ the fleet's TF Serving REST API
def _auroc(scores, labels) -> float:
    import numpy as np

    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    pos = labels == 1
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


async def test_rest_predict_gives_the_evaluator_the_configured_accuracy_and_shift(fleet):
    import numpy as np

    f = await fleet({"1": {"accuracy": 0.84, "latencyMs": {"p50": 5, "p95": 8}},
                     "2": {"accuracy": 0.84, "outputShift": 0.15, "latencyMs": {"p50": 5, "p95": 8}}},
                    scraped=False, time_scale=0.01)  # fmt: skip
    golden = f.golden
    images = [base64.b64encode(img.data).decode() for img in golden.images()]
    preds: dict[str, np.ndarray] = {}
    async with httpx.AsyncClient(base_url=f.url, timeout=30) as client:
        for v in ("1", "2"):
            rows = []
            for start in range(0, len(images), 100):
                batch = {"signature_name": "serving_default", "instances": [{"b64": b} for b in images[start : start + 100]]}
                r = await client.post(f"/v1/models/{MODEL_NAME}/versions/{v}:predict", json=batch,
                                      headers={"x-source-workload": "resnet50-evaluator"})  # fmt: skip
                assert r.status_code == 200, r.text
                rows += r.json()["predictions"]
            preds[v] = np.array(rows)
    assert preds["1"].shape == (golden.size, 14)
    mean_auc = np.mean([_auroc(preds["1"][:, k], golden.labels[:, k]) for k in range(14)])
    assert mean_auc == pytest.approx(0.84, abs=0.01)
    assert np.allclose(preds["1"], golden.predictions("1", 0.84), atol=1e-6)
    assert (preds["2"] - golden.predictions("2", 0.84)).max() == pytest.approx(0.15, abs=1e-6)
    assert f.stats()["versions"]["1"]["rest_requests"] == 5


@pytest.mark.parametrize(
    "path, body, status, error",
    [
        ("/versions/1:predict", {"instances": [{"b64": "aGVsbG8="}]}, 400, "Unknown image file format"),
        ("/versions/1:predict", {"instances": [{"b64": "***"}]}, 400, "Unable to base64 decode"),
        ("/versions/1:predict", {"instance": []}, 400, "Missing 'inputs' or 'instances' key"),
        ("/versions/1:predict", {"instances": [], "inputs": []}, 400, "can't have both"),
        ("/versions/1:predict", {"signature_name": "nope", "instances": [{"b64": "AA=="}]}, 400, "not found in signature def"),
        ("/versions/1:predict", b"{not json", 400, "JSON Parse error"),
        ("/versions/7:predict", {"instances": []}, 404, "Servable not found for request: Specific(resnet50_cxr, 7)"),
    ],
)
async def test_rest_errors_look_like_tf_serving(fleet, path, body, status, error):
    f = await fleet({"1": {"errorRate": 0.0}}, scraped=False, time_scale=0.0)
    async with httpx.AsyncClient(base_url=f.url) as client:
        kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
        r = await client.post(f"/v1/models/{MODEL_NAME}{path}", **kwargs)
    assert r.status_code == status
    assert error in r.json()["error"]


async def test_rest_columnar_inputs_metadata_and_status(fleet):
    f = await fleet({"3": {}}, scraped=False, time_scale=0.0)
    image = base64.b64encode(f.golden.image_bytes(5)).decode()
    async with httpx.AsyncClient(base_url=f.url) as client:
        r = await client.post(f"/v1/models/{MODEL_NAME}/versions/3:predict", json={"inputs": {"image_bytes": [{"b64": image}]}})
        assert r.status_code == 200 and len(r.json()["outputs"]) == 1 and len(r.json()["outputs"][0]) == 14
        r = await client.get(f"/v1/models/{MODEL_NAME}/versions/3")
        assert r.json() == {"model_version_status": [{"version": "3", "state": "AVAILABLE",
                                                      "status": {"error_code": "OK", "error_message": ""}}]}  # fmt: skip
        r = await client.get(f"/v1/models/{MODEL_NAME}/versions/3/metadata")
        sig = r.json()["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert sig["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
        r = await client.get("/v1/models/other_model/versions/3")
        assert r.status_code == 404 and "Servable not found" in r.json()["error"]
        metrics = (await client.get(f"/pods/{f.pod_names('3')[0]}/monitoring/prometheus/metrics")).text
    assert f':tensorflow:serving:request_count{{model_name="{MODEL_NAME}",status="OK"}} 1' in metrics


async def test_status_answers_every_state_metadata_only_an_available_version(fleet):
    """As TF Serving: GetModelStatus is 200 for any state of a known version (here END, after a change
    unloaded it), GetModelMetadata needs the loaded servable: 404 with TF Serving's NOT_FOUND text."""
    now = [1000.0]
    f = await fleet({"3": {"changes": [{"after": 30, "modelState": "END"}]}}, {"rps": 100}, scraped=False,
                    clock=lambda: now[0], tick=3600)  # fmt: skip
    async with httpx.AsyncClient(base_url=f.url) as client:
        assert f.advance(10) == 1000  # first traffic: the change is due 30 s later
        assert (await client.get(f"/v1/models/{MODEL_NAME}/versions/3/metadata")).status_code == 200
        now[0] += 30
        r = await client.get(f"/v1/models/{MODEL_NAME}/versions/3")
        assert r.status_code == 200 and r.json()["model_version_status"][0]["state"] == "END"
        r = await client.get(f"/v1/models/{MODEL_NAME}/versions/3/metadata")
        assert r.status_code == 404
        assert r.json() == {"error": f"Servable not found for request: Specific({MODEL_NAME}, 3)"}


async def test_changes_follow_the_injected_clock(fleet):
    now = [1000.0]
    f = await fleet({"1": {"errorRate": 0.0, "changes": [{"after": 30, "errorRate": 1.0}, {"after": 60, "ready": False}]}},
                    {"rps": 100}, scraped=False, clock=lambda: now[0], tick=3600)  # fmt: skip
    assert f.advance(10) == 1000 and f.stats()["versions"]["1"]["errors"] == 0
    now[0] += 29.9
    assert f.behaviour("1").error_rate == 0.0
    now[0] += 0.2
    f.advance(1)
    assert f.stats()["versions"]["1"]["errors"] == 100
    assert f.stats()["versions"]["1"]["changes_applied"] == [{"after": 30.0, "at": 1030.0}]
    now[0] += 30
    assert f.ready_replicas("1") == 0
    f.advance(1)
    assert f.stats()["unavailable"] == 100
