"""One evaluation of every listed version against the sandbox's simulated TF Serving (real HTTP on 127.0.0.1).

What the evaluator measures must be what the fleet was configured to produce (mean AUROC, output
shift -> PSI); a version that errors, times out or answers garbage must lose its series while the
other versions keep theirs and the evaluator carries on.
"""

from __future__ import annotations

import pytest

from evaluator_testkit import GARBAGE, SMALL_GOLDEN, parse_metrics, pick, value, write_config
from xraymodel.evaluator.exporter import EvaluatorMetrics
from xraymodel.evaluator.service import Evaluator

BASE = {"namespace": "radiology", "modeldeployment": "resnet50", "model": "resnet50_chest_xray"}


def _evaluator(config_path, endpoint, metrics=None, **kwargs) -> Evaluator:
    return Evaluator(config_path, metrics or EvaluatorMetrics(), endpoint_override=endpoint, first_publish_wait=0, **kwargs)


async def test_measured_auroc_and_psi_match_the_configured_behaviour(tmp_path, fleet, proxy):
    cfg = write_config(tmp_path / "evaluator.yaml", [(1, "stable"), (2, "canary"), (3, "canary")])
    ev = _evaluator(cfg, proxy.url, extra_headers={"x-source-workload": "resnet50-evaluator"})
    try:
        outcomes = await ev.evaluate_all()
    finally:
        await ev.close()
    assert all(o.ok for o in outcomes.values()), outcomes
    measured = {label: o.evaluation.auroc_mean for label, o in outcomes.items()}
    print(f"mean AUROC measured {measured} vs configured v1 0.85, v2 0.80, v3 0.85")
    assert measured["v1"] == pytest.approx(0.85, abs=2e-3)
    assert measured["v2"] == pytest.approx(0.80, abs=2e-3)
    assert measured["v3"] == pytest.approx(0.85, abs=2e-3)  # a pure shift keeps the ranking
    # drift of each canary against the stable v1
    psi_v2 = outcomes["v2"].drift.get("v1") or ev._refresh_drift()["v2"]["v1"]
    psi_v3 = ev._refresh_drift()["v3"]["v1"]
    print(f"PSI max: v2 (AUROC -0.05) {psi_v2.psi_max:.4f}, v3 (+0.1 shift) {psi_v3.psi_max:.3f}")
    assert psi_v3.psi_max > 0.2 and max(psi_v3.ks.values()) > 0.5
    assert psi_v2.psi_max < 0.1

    samples = parse_metrics(ev.metrics.render().decode())
    labels = dict(BASE, version="v3", baseline_version="v1")
    assert len(pick(samples, "modeldeploy_evaluator_psi", **labels)) == 14
    assert value(samples, "modeldeploy_evaluator_psi_max", **labels) == pytest.approx(psi_v3.psi_max)
    assert not pick(samples, "modeldeploy_evaluator_psi", version="v1")  # the stable has no baseline
    for version, auroc in measured.items():
        vl = dict(BASE, version=version)
        assert value(samples, "modeldeploy_evaluator_auroc_mean", **vl) == pytest.approx(auroc)
        assert value(samples, "modeldeploy_evaluator_samples_total", **vl) == 500
        assert len(pick(samples, "modeldeploy_evaluator_auroc", **vl)) == 14
        assert len(pick(samples, "modeldeploy_evaluator_sensitivity", **vl)) == 14
        assert len(pick(samples, "modeldeploy_evaluator_ece", **vl)) == 14
        assert len(pick(samples, "modeldeploy_evaluator_prediction_quantile", **vl)) == 42
        low = value(samples, "modeldeploy_evaluator_auroc_mean_ci", **vl, bound="lower")
        high = value(samples, "modeldeploy_evaluator_auroc_mean_ci", **vl, bound="upper")
        assert low < auroc < high
    assert value(samples, "modeldeploy_evaluator_golden_set_images", **BASE) == 500
    # every predict call named its version in the preview header (Istio's per-version route)
    assert {h.get("x-modeldeploy-version") for h in proxy.headers_seen} == {"v1", "v2", "v3"}
    assert {h.get("x-source-workload") for h in proxy.headers_seen} == {"resnet50-evaluator"}  # --header


FAILURES = [
    # (how v2 breaks, config extras, expected reason)
    ("http-500", {}, "http_5xx"),
    ("timeout", {"timeout": 0.2, "retries": 1}, "timeout"),
    ("not-served", {}, "http_4xx"),
    *[(f"garbage:{kind}", {}, "http_4xx" if kind == "tf-400" else "garbage") for kind in GARBAGE],
]


@pytest.mark.parametrize("how, extra, reason", FAILURES, ids=[f[0] for f in FAILURES])
async def test_a_failing_version_loses_its_series_and_the_others_keep_theirs(tmp_path, small_fleet, small_proxy, how, extra,
                                                                             reason):  # fmt: skip
    fleet, proxy = small_fleet, small_proxy  # 120 golden images, both versions at AUROC 0.85
    cfg = write_config(tmp_path / "evaluator.yaml", [(1, "stable"), (2, "canary")], golden=SMALL_GOLDEN,
                       bootstrapResamples=0, **extra)  # fmt: skip
    ev = _evaluator(cfg, proxy.url)
    try:
        first = await ev.evaluate_all()
        assert first["v2"].ok and first["v1"].ok
        before = parse_metrics(ev.metrics.render().decode())
        assert value(before, "modeldeploy_evaluator_psi_max", version="v2", baseline_version="v1") is not None

        if how == "http-500":
            fleet.set_behaviour("2", errorRate=1.0)
        elif how == "timeout":
            fleet.set_behaviour("2", latencyMs={"p50": 1000, "p95": 1000})
        elif how == "not-served":
            fleet.set_ready("2", 0)  # scaled away: TF Serving's 404 "Servable not found"
        else:
            proxy.garbage["2"] = how.split(":", 1)[1]
        second = await ev.evaluate_all()
        third = await ev.evaluate_all()  # still failing: nothing comes back, nothing crashes
    finally:
        await ev.close()

    assert not second["v2"].ok and second["v2"].reason == reason, second["v2"]
    assert not third["v2"].ok and second["v1"].ok and third["v1"].ok
    after = parse_metrics(ev.metrics.render().decode())
    v2 = dict(BASE, version="v2")
    for name in ("auroc_mean", "auroc", "sensitivity", "specificity", "ece", "ece_mean", "prediction_mean"):
        assert not pick(after, f"modeldeploy_evaluator_{name}", **v2), name
    assert not pick(after, "modeldeploy_evaluator_psi", version="v2")  # no drift without the canary's figures
    assert not pick(after, "modeldeploy_evaluator_ks", version="v2")
    assert value(after, "modeldeploy_evaluator_samples_total", **v2) == 120  # did not move
    assert value(after, "modeldeploy_evaluator_evaluations_total", **v2, outcome="failure") == 2
    assert value(after, "modeldeploy_evaluator_last_evaluation_ok", **v2) == 0
    assert value(after, "modeldeploy_evaluator_request_errors_total", **v2, reason=reason) >= 2
    # the stable version is untouched
    v1 = dict(BASE, version="v1")
    assert value(after, "modeldeploy_evaluator_auroc_mean", **v1) == pytest.approx(0.85, abs=5e-3)
    assert value(after, "modeldeploy_evaluator_samples_total", **v1) == 3 * 120
    assert value(after, "modeldeploy_evaluator_last_evaluation_ok", **v1) == 1


async def test_transient_errors_are_retried_and_requests_are_bounded(tmp_path, fleet, proxy):
    cfg = write_config(tmp_path / "evaluator.yaml", [(1, "stable")], concurrency=3, retries=2)
    proxy.fail_first["1"] = 2  # two 503s, then the fleet answers
    ev = _evaluator(cfg, proxy.url)
    try:
        outcomes = await ev.evaluate_all()
    finally:
        await ev.close()
    assert outcomes["v1"].ok and outcomes["v1"].evaluation.auroc_mean == pytest.approx(0.85, abs=2e-3)
    samples = parse_metrics(ev.metrics.render().decode())
    assert value(samples, "modeldeploy_evaluator_request_errors_total", version="v1", reason="http_5xx") == 2
    assert proxy.requests == 500 // 16 + 1 + 2  # 32 batches of up to 16 images, plus the probe's 2 retries
    assert proxy.max_inflight == 3  # concurrency 3: used, and never exceeded


async def test_retries_give_up(tmp_path, fleet, proxy):
    cfg = write_config(tmp_path / "evaluator.yaml", [(1, "stable")], retries=1)
    proxy.fail_first["1"] = 1000
    ev = _evaluator(cfg, proxy.url)
    try:
        outcome = (await ev.evaluate_all())["v1"]
    finally:
        await ev.close()
    assert not outcome.ok and outcome.reason == "http_5xx" and "503" in outcome.error
    assert proxy.requests == 2  # the probe batch, tried twice; the other 31 batches were never sent


async def test_nothing_listening(tmp_path):
    cfg = write_config(tmp_path / "evaluator.yaml", [(1, "stable")], retries=0, golden="sandbox://golden?size=40&min_positives=4")
    ev = _evaluator(cfg, "http://127.0.0.1:9")  # discard port: connection refused
    try:
        outcome = (await ev.evaluate_all())["v1"]
    finally:
        await ev.close()
    assert not outcome.ok and outcome.reason == "connect"
