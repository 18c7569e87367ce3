"""Benchmark: how fast a bad canary is rolled back, and how fast a good one is promoted, in the sandbox.

Everything real except the data plane: the operator process, the API emulator, a real Prometheus
scraping the simulated fleet every second. Measured per run (scenario clock = wall clock):
- rollback: from the first Prometheus sample showing the breach to the VirtualService back at 100%
  stable — failureThreshold 1 at interval 5 s and 10 s (goal <= 1 interval + 2 s; Flagger needs
  interval x threshold, 60 s by default), and with a fail-fast bound crossed (goal <= 3 s whatever
  the interval);
- promotion of a good canary through steps [20, 50, 100] vs the ideal steps x interval.
Reported as median and p90, and as ratios to the interval. Prints JSON and one summary line.

    python bench/rollout.py [--runs 5] [--parallel 3]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / d) for d in ("operator", "common", "model", "sandbox")]

from mdsandbox.scenario_runner import run_scenario  # noqa: E402
from mdsandbox.scenario import parse_scenario  # noqa: E402

BASE = {
    "modelDeployment": {
        "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "resnet50", "namespace": "bench"},
        "spec": {
            "model": {"name": "resnet50_chest_xray", "basePath": "s3://models/resnet50", "version": 1},
            "serving": {"replicas": 2},
            "strategy": {"type": "Canary", "canary": {"steps": [20, 50, 100]}, "scaleDownDelay": "2s"},
            "analysis": {"interval": "5s", "scrapeInterval": "1s", "failureThreshold": 1, "failFastInterval": "1s",
                         "minRequests": 20,
                         "metrics": [{"name": "latency-p95", "builtin": "latency", "quantile": 0.95, "max": 100},
                                     {"name": "error-rate", "builtin": "errorRate", "max": 1}]},
        },
    },
    "traffic": {"rps": 50},
    "versions": {"1": {"latencyMs": {"p50": 25, "p95": 40}, "errorRate": 0.001}},
    "events": [{"at": 6, "setVersion": 2}],
}


def scenario(kind: str, interval: int, run: int) -> dict:
    sc = copy.deepcopy(BASE)
    sc["name"] = f"{kind}-{interval}s-{run}"
    analysis = sc["modelDeployment"]["spec"]["analysis"]
    analysis["interval"] = f"{interval}s"
    if kind == "rollback":
        sc["versions"]["2"] = {"latencyMs": {"p50": 150, "p95": 300}, "errorRate": 0.001}
        sc["until"] = 8 + 3 * interval + 8
    elif kind == "failfast":
        analysis["metrics"][1]["failFast"] = {"max": 10}
        analysis["failureThreshold"] = 3
        # healthy at first, then an error burst 3 s into its traffic (between two analyses)
        sc["versions"]["2"] = {"latencyMs": {"p50": 25, "p95": 40}, "errorRate": 0.001, "changes": [{"after": 3, "errorRate": 0.3}]}
        sc["until"] = 8 + interval + 10
    else:  # promote
        sc["versions"]["2"] = {"latencyMs": {"p50": 25, "p95": 40}, "errorRate": 0.001}
        sc["until"] = 8 + 4 * interval + 8
    return sc


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def run_all(runs: int, parallel: int) -> dict:
    configs = [("rollback", 5), ("rollback", 10), ("failfast", 5), ("failfast", 10), ("promote", 5)]
    sem = asyncio.Semaphore(parallel)
    results: dict[tuple[str, int], list[dict]] = {c: [] for c in configs}

    async def one(kind: str, interval: int, i: int) -> None:
        async with sem:
            sc = parse_scenario(scenario(kind, interval, i))
            report = await run_scenario(sc, workdir=pathlib.Path(tempfile.mkdtemp(prefix=f"bench-{sc.name}-")))
            results[(kind, interval)].append(report)

    await asyncio.gather(*(one(k, iv, i) for (k, iv) in configs for i in range(runs)))
    out: dict = {"benchmark": "rollout", "date": time.strftime("%Y-%m-%d"), "runs_per_config": runs,
                 "cpu_count": os.cpu_count(), "configs": []}
    for (kind, interval), reports in results.items():
        entry: dict = {"kind": kind, "interval_s": interval}
        if kind in ("rollback", "failfast"):
            secs = [r["rollbackSeconds"] for r in reports if r["rollbackSeconds"] is not None]
            entry.update({
                "rolled_back": sum(1 for r in reports if r["outcome"] == "rolledBack"), "runs": len(reports),
                "seconds_median": round(statistics.median(secs), 2) if secs else None,
                "seconds_p90": round(pct(secs, 0.9), 2) if secs else None,
                "ratio_to_interval_median": round(statistics.median(secs) / interval, 3) if secs else None,
                "ratio_to_interval_p90": round(pct(secs, 0.9) / interval, 3) if secs else None,
                "goal_s": interval + 2 if kind == "rollback" else 3,
                "flagger_default_s": 60 * 1,
            })
        else:
            secs = [r["promotionSeconds"] for r in reports if r["promotionSeconds"] is not None]
            ideal = 3 * interval
            entry.update({
                "promoted": sum(1 for r in reports if r["outcome"] == "promoted"), "runs": len(reports),
                "seconds_median": round(statistics.median(secs), 2) if secs else None,
                "seconds_p90": round(pct(secs, 0.9), 2) if secs else None,
                "ideal_steps_x_interval_s": ideal,
                "ratio_to_ideal_median": round(statistics.median(secs) / ideal, 3) if secs else None,
            })
        out["configs"].append(entry)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(run_all(args.runs, args.parallel))
    print(json.dumps(result, indent=2))
    parts = []
    for c in result["configs"]:
        if c["kind"] == "promote":
            parts.append(f"promote@{c['interval_s']}s median {c['seconds_median']}s ({c['ratio_to_ideal_median']}x ideal {c['ideal_steps_x_interval_s']}s)")
        else:
            ok = c["seconds_p90"] is not None and c["seconds_p90"] <= c["goal_s"]
            parts.append(f"{c['kind']}@{c['interval_s']}s median {c['seconds_median']}s p90 {c['seconds_p90']}s "
                         f"({c['ratio_to_interval_median']}x interval; goal <= {c['goal_s']}s {'PASS' if ok else 'MISS'})")
    print("SUMMARY rollout: " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
