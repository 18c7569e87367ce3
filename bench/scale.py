"""Benchmark: a platform's worth of ModelDeployments — 300 applied at once, then 50 canaries analysed at once.

Real operator process, API emulator, simulated Deployment controller (pods, readiness) and a real
Prometheus (the analyses' queries are real HTTP round trips; there is no per-ModelDeployment traffic
generator at this scale, so the canaries' analyses come back "no data" and hold — the point here is
whether the operator runs every analysis on time). Measured:
- time from the first create to all 300 ModelDeployments Stable (goal <= 30 s);
- operator peak RSS (goal <= 200 MB);
- API writes during idle resync periods (goal 0);
- 50 concurrent canaries (interval 10 s, plus fail-fast checks every 2 s): the gap between each
  canary's successive analyses, as a ratio to the interval (lag = gap / interval - 1; goal: ~0).
Prints JSON and one summary line.

    python bench/scale.py [--count 300] [--canaries 50]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import json
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / d) for d in ("operator", "common", "model", "sandbox")]

from kubeemu.process import ApiServerProcess  # noqa: E402
from mdsandbox.controllers import DeploymentController  # noqa: E402
from mdsandbox.operator_process import OperatorProcess  # noqa: E402
from mdsandbox.prometheus_process import PrometheusServer  # noqa: E402

NS = "scale"
MD = ("modeldeploy.io", "v1alpha1", "modeldeployments")
INTERVAL = 10


def manifest(i: int) -> dict:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": f"cxr-{i:03d}", "namespace": NS},
        "spec": {
            "model": {"name": "resnet50_chest_xray", "basePath": "s3://models/resnet50", "version": 1},
            "serving": {"replicas": 1},
            "strategy": {"type": "Canary", "canary": {"steps": [10, 50, 100]}},
            "analysis": {"interval": f"{INTERVAL}s", "scrapeInterval": "1s", "progressDeadline": "10m", "minRequests": 10,
                         "metrics": [{"name": "latency-p95", "builtin": "latency", "quantile": 0.95, "max": 100,
                                      "failFast": {"max": 400}},
                                     {"name": "error-rate", "builtin": "errorRate", "max": 1}]},
        },
    }


def cpu_info() -> dict:
    """CPU model, flags and load average of the machine the figures come from."""
    model, flags = "", ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu_model": model, "cpu_flags": flags, "cpu_count": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def rss_peak_mb(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run(count: int, canaries: int, resync: float) -> dict:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench-scale-"))
    crds = [ROOT / "crds/modeldeployment.yaml", ROOT / "tests/data/thirdparty-crds/istio-virtualservice.yaml",
            ROOT / "tests/data/thirdparty-crds/istio-destinationrule.yaml"]
    prom = PrometheusServer([], scrape_interval=1.0, storage_dir=workdir / "prom")
    prom.start_and_wait(20)
    with ApiServerProcess(crd_files=crds, workdir=workdir / "api", history_limit=20000) as api:
        api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        controller = DeploymentController(api_url=api.url, namespace=NS, ready_delay=0.2, poll_interval=1.0)
        asyncio.run_coroutine_threadsafe(controller.start(), loop).result(10)
        op = OperatorProcess(kubeconfig=api.kubeconfig, namespaces=[NS], prometheus_url=prom.url,
                             log_path=workdir / "operator.log", env={"MODELDEPLOY_RESYNC_SECONDS": str(resync)})
        op.start()
        op.wait_metrics(30)
        time.sleep(1.0)

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda i: api.put_object(*MD, NS, manifest(i)), range(count)))
        applied_s = time.monotonic() - t0
        stable_s = None
        while time.monotonic() - t0 < 180:
            items = api.list_objects(*MD, NS)
            if sum(1 for o in items if (o.get("status") or {}).get("phase") == "Stable") == count:
                stable_s = time.monotonic() - t0
                break
            time.sleep(0.5)

        time.sleep(resync + 2.0)
        before = api.stats(NS)["writes"]
        time.sleep(resync * 2)
        idle_writes = api.stats(NS)["writes"] - before

        # 50 canaries at once
        started = time.monotonic()
        for i in range(canaries):
            api.patch_object(*MD, NS, f"cxr-{i:03d}", {"spec": {"model": {"version": 2}}})
        observed: dict[str, list[str]] = {f"cxr-{i:03d}": [] for i in range(canaries)}
        while time.monotonic() - started < 6 * INTERVAL + 10:
            for obj in api.list_objects(*MD, NS):
                name = obj["metadata"]["name"]
                last = ((obj.get("status") or {}).get("lastAnalysis") or {})
                if name in observed and last.get("kind") == "interval" and last.get("time") and last["time"] not in observed[name]:
                    observed[name].append(last["time"])
            time.sleep(0.5)
        gaps = []
        for times in observed.values():
            moments = [datetime.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times]
            gaps += [(b - a).total_seconds() for a, b in zip(moments, moments[1:])]
        metrics_text = ""
        try:
            import httpx

            metrics_text = httpx.get(op.metrics_url, timeout=5).text
        except Exception:  # noqa: BLE001
            pass
        rss = rss_peak_mb(op.proc.pid)
        op.stop()
        asyncio.run_coroutine_threadsafe(controller.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
    prom.stop()
    queries = sum(float(line.rsplit(" ", 1)[1]) for line in metrics_text.splitlines()
                  if line.startswith("modeldeploy_prometheus_queries_total{"))
    lags = [g / INTERVAL - 1 for g in gaps]
    return {
        "benchmark": "scale", "date": time.strftime("%Y-%m-%d"), **cpu_info(),
        "modeldeployments": count,
        "apply_seconds": round(applied_s, 2),
        "all_stable_seconds": None if stable_s is None else round(stable_s, 2),
        "operator_peak_rss_mb": round(rss, 1),
        "idle_resync_periods": 2, "idle_writes": idle_writes,
        "canaries": canaries, "analysis_interval_s": INTERVAL,
        "analysis_gaps": len(gaps),
        "analysis_gap_s": {"median": round(statistics.median(gaps), 3) if gaps else None,
                           "p90": round(pct(gaps, 0.9), 3) if gaps else None,
                           "max": round(max(gaps), 3) if gaps else None},
        "analysis_lag_ratio": {"median": round(statistics.median(lags), 4) if lags else None,
                               "p90": round(pct(lags, 0.9), 4) if lags else None},
        "canaries_analysed": sum(1 for t in observed.values() if len(t) >= 2),
        "prometheus_queries_total": queries,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--canaries", type=int, default=50)
    parser.add_argument("--resync", type=float, default=10.0)
    args = parser.parse_args()
    r = run(args.count, args.canaries, args.resync)
    print(json.dumps(r, indent=2))
    goals = {
        "stable<=30s": r["all_stable_seconds"] is not None and r["all_stable_seconds"] <= 30,
        "rss<=200MB": r["operator_peak_rss_mb"] <= 200,
        "idle writes 0": r["idle_writes"] == 0,
        "lag p90<=0.1": r["analysis_lag_ratio"]["p90"] is not None and r["analysis_lag_ratio"]["p90"] <= 0.1,
    }
    print(f"SUMMARY scale: {r['modeldeployments']} ModelDeployments Stable in {r['all_stable_seconds']}s, "
          f"operator peak RSS {r['operator_peak_rss_mb']} MB, idle writes {r['idle_writes']}, "
          f"{r['canaries_analysed']}/{r['canaries']} canaries analysed with gap median {r['analysis_gap_s']['median']}s "
          f"p90 {r['analysis_gap_s']['p90']}s at interval {INTERVAL}s (lag ratio median {r['analysis_lag_ratio']['median']}, "
          f"p90 {r['analysis_lag_ratio']['p90']}): " + ", ".join(f"{k} {'PASS' if v else 'MISS'}" for k, v in goals.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
