"""Benchmark: N ModelDeployments applied at once -> all their children present; writes per idle resync.

Runs the real operator (child process) against the API emulator with the simulated Deployment
controller. For each ModelDeployment: time from its create call returning to all five children
(ConfigMap, Deployment, the Service clients call, the version's Service, VirtualService) existing. Then, once all are Stable,
API writes during several idle resync periods (goal: 0). Prints JSON and one summary line.

    python bench/control_plane.py [--count 50] [--resync 2]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import signal
import pathlib
import statistics
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / d) for d in ("operator", "common", "model", "sandbox")]

from benchlib import code_env, cpu_info, cpu_seconds  # noqa: E402
from kubeemu.process import ApiServerProcess  # noqa: E402
from mdsandbox.controllers import DeploymentController  # noqa: E402
from mdsandbox.operator_process import OperatorProcess  # noqa: E402

NS = "bench"
KINDS = {
    "configmaps": ("", "v1", "configmaps"),
    "deployments": ("apps", "v1", "deployments"),
    "services": ("", "v1", "services"),
    "virtualservices": ("networking.istio.io", "v1", "virtualservices"),
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def manifest(i: int) -> dict:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": f"cxr-{i:03d}", "namespace": NS},
        "spec": {
            "model": {"name": "resnet50_chest_xray", "basePath": "s3://models/resnet50", "version": 1},
            "serving": {"replicas": 1, "batching": {"maxBatchSize": 32}},
            "analysis": {"metrics": [{"name": "errors", "builtin": "errorRate", "max": 1}]},
        },
    }


def children_names(i: int) -> list[tuple[str, str]]:
    name = f"cxr-{i:03d}"
    return [
        ("configmaps", f"{name}-v1-tfserving"),
        ("deployments", f"{name}-v1"),
        ("services", name),
        ("services", f"{name}-v1"),
        ("virtualservices", name),
    ]


def run(
    count: int, resync: float, idle_periods: int, pace: float = 0.0, profile: str | None = None, code: str | None = None
) -> dict:
    workdir = pathlib.Path(os.environ.get("BENCH_WORKDIR") or tempfile.mkdtemp(prefix="bench-cp-"))
    crds = [
        ROOT / "crds" / "modeldeployment.yaml",
        ROOT / "tests/data/thirdparty-crds/istio-virtualservice.yaml",
        ROOT / "tests/data/thirdparty-crds/istio-destinationrule.yaml",
    ]
    # the baseline checkout's emulator too: a change on either side of the API shows in the comparison
    emulator = pathlib.Path(code).resolve() / "sandbox" if code else None
    with ApiServerProcess(crd_files=crds, workdir=workdir, package_root=emulator) as api:
        api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        controller = DeploymentController(api_url=api.url, namespace=NS, ready_delay=0.2, poll_interval=0.2)
        asyncio.run_coroutine_threadsafe(controller.start(), loop).result(10)
        op = OperatorProcess(
            kubeconfig=api.kubeconfig,
            namespaces=[NS],
            log_path=workdir / "operator.log",
            env={"MODELDEPLOY_RESYNC_SECONDS": str(resync), **code_env(code)},
        )
        op.start()
        op.wait_metrics(30)
        time.sleep(1.0)
        spy = None
        if profile:  # py-spy samples the operator process (pip install py-spy); speedscope/flamegraph output
            import shutil
            import subprocess

            spy_bin = shutil.which("py-spy") or str(pathlib.Path(sys.executable).with_name("py-spy"))
            gil = ["--gil"] if os.environ.get("BENCH_PROFILE_GIL") else []
            spy = [
                subprocess.Popen(
                    [
                        spy_bin,
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        "250",
                        "--nonblocking",
                        *gil,
                        "--format",
                        "raw",
                        "-o",
                        out,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for pid, out in ((op.proc.pid, profile), (api.proc.pid, profile + ".apiserver"))
            ]
            time.sleep(1.0)

        created_at: dict[int, float] = {}
        done_at: dict[int, float] = {}

        def create(i: int) -> None:
            api.put_object("modeldeploy.io", "v1alpha1", "modeldeployments", NS, manifest(i))
            created_at[i] = time.monotonic()

        cpu0 = {"operator": cpu_seconds(op.proc.pid), "apiserver": cpu_seconds(api.proc.pid)}
        t0 = time.monotonic()
        if pace > 0:  # one ModelDeployment every `pace` seconds (GitOps sync of many small changes)

            def paced() -> None:
                for i in range(count):
                    create(i)
                    time.sleep(pace)

            threading.Thread(target=paced, daemon=True).start()
        else:  # all at once (a whole platform synced in one go)
            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(create, range(count)))
        deadline = time.monotonic() + 120
        while len(done_at) < count and time.monotonic() < deadline:
            present = {k: {o["metadata"]["name"] for o in api.list_objects(*gvr, NS)} for k, gvr in KINDS.items()}
            now = time.monotonic()
            for i in range(count):
                if i not in done_at and all(n in present[k] for k, n in children_names(i)):
                    done_at[i] = now
            time.sleep(0.1)
        all_children_s = time.monotonic() - t0
        latencies = [done_at[i] - created_at[i] for i in done_at]

        # all Stable, then idle writes
        stable_deadline = time.monotonic() + 120
        while time.monotonic() < stable_deadline:
            items = api.list_objects("modeldeploy.io", "v1alpha1", "modeldeployments", NS)
            if sum(1 for o in items if (o.get("status") or {}).get("phase") == "Stable") == count:
                break
            time.sleep(0.2)
        stable_s = time.monotonic() - t0
        burst_stats = api.stats(NS)
        cpu_ms = {
            k: round((cpu_seconds(pid) - cpu0[k]) * 1000 / count, 2)
            for k, pid in (("operator", op.proc.pid), ("apiserver", api.proc.pid))
        }
        operator_calls = {}
        try:
            import urllib.request

            for line in urllib.request.urlopen(op.metrics_url, timeout=5).read().decode().splitlines():
                if line.startswith("modeldeploy_kubernetes_api_calls_total{"):
                    labels, value = line.rsplit(" ", 1)
                    operator_calls[labels[labels.index("{") :]] = float(value)
        except OSError:
            pass
        for sampler in spy or []:
            sampler.send_signal(signal.SIGINT)
        for sampler in spy or []:
            sampler.wait(20)
        time.sleep(resync + 1.0)
        before = api.stats(NS)["writes"]
        time.sleep(resync * idle_periods)
        idle_writes = api.stats(NS)["writes"] - before
        rss_kb = 0
        try:
            for line in open(f"/proc/{op.proc.pid}/status"):
                if line.startswith("VmHWM:"):
                    rss_kb = int(line.split()[1])
        except OSError:
            pass
        op.stop()
        asyncio.run_coroutine_threadsafe(controller.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)

    return {
        "benchmark": "control_plane",
        "date": time.strftime("%Y-%m-%d"),
        "modeldeployments": count,
        "code": code or str(ROOT),
        "mode": f"paced, one every {pace}s" if pace > 0 else "burst, all at once",
        "children_present": len(done_at),
        "children_latency_s": {
            "p50": round(statistics.median(latencies), 4) if latencies else None,
            "p90": round(percentile(latencies, 0.90), 4) if latencies else None,
            "p95": round(percentile(latencies, 0.95), 4) if latencies else None,
            "max": round(max(latencies), 4) if latencies else None,
        },
        "p95_as_ratio_of_30s_interval": round(percentile(latencies, 0.95) / 30.0, 5) if latencies else None,
        "all_children_seconds": round(all_children_s, 3),
        "all_stable_seconds": round(stable_s, 3),
        "idle_resync_periods": idle_periods,
        "idle_writes_total": idle_writes,
        "writes_per_idle_resync_per_modeldeployment": idle_writes / (idle_periods * count),
        "operator_peak_rss_mb": round(rss_kb / 1024, 1),
        # CPU time from the first create to all Stable, per ModelDeployment, of each process
        "operator_cpu_ms_per_modeldeployment": cpu_ms["operator"],
        "apiserver_cpu_ms_per_modeldeployment": cpu_ms["apiserver"],
        # API requests until all were Stable, per ModelDeployment (everyone's: operator, controller, bench)
        "requests_per_modeldeployment": round(burst_stats["requests"] / count, 2),
        "writes_per_modeldeployment": round(burst_stats["writes"] / count, 2),
        "writes_by_verb_resource": dict(burst_stats["writes_by_verb_resource"]),
        "requests_by_verb": dict(burst_stats["requests_by_verb"]),
        "operator_calls_by_verb_kind": operator_calls,  # our client's calls (kopf's own are not counted)
        **cpu_info(),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--resync", type=float, default=2.0)
    parser.add_argument("--idle-periods", type=int, default=3)
    parser.add_argument(
        "--pace", type=float, default=None, help="seconds between applies (default: run burst and paced 0.1s)"
    )
    parser.add_argument("--profile", default=None, help="py-spy raw (collapsed) samples of the operator to this file")
    parser.add_argument(
        "--baseline",
        default=None,
        help="checkout of the baseline commit (git worktree): runs alternate baseline/this code (operator and emulator)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="with --baseline: alternating rounds per mode")
    args = parser.parse_args()
    modes = [args.pace] if args.pace is not None else [0.0, 0.1]
    codes = [args.baseline, None] if args.baseline else [None]
    results = []
    for pace in modes:
        for _ in range(args.rounds if args.baseline else 1):
            for code in codes:
                results.append(run(args.count, args.resync, args.idle_periods, pace, args.profile, code))
    comparisons: list[dict] = []
    print(json.dumps({"runs": results}, indent=2), flush=True)  # before the comparison: never lose the runs
    if args.baseline:
        for pace in modes:
            mode = [r for r in results if r["mode"] == results[modes.index(pace) * len(codes) * args.rounds]["mode"]]
            base = [r for r in mode if r["code"] != str(ROOT)]
            new = [r for r in mode if r["code"] == str(ROOT)]
            row: dict = {"mode": mode[0]["mode"], "rounds": args.rounds}
            for key, get in (
                ("p50", lambda r: r["children_latency_s"]["p50"]),
                ("p95", lambda r: r["children_latency_s"]["p95"]),
                ("all_stable_seconds", lambda r: r["all_stable_seconds"]),
                ("operator_cpu_ms", lambda r: r["operator_cpu_ms_per_modeldeployment"]),
                ("apiserver_cpu_ms", lambda r: r["apiserver_cpu_ms_per_modeldeployment"]),
                ("writes_per_md", lambda r: r["writes_per_modeldeployment"]),
                ("requests_per_md", lambda r: r["requests_per_modeldeployment"]),
            ):
                bs, ns = [get(r) for r in base if get(r) is not None], [get(r) for r in new if get(r) is not None]
                b = statistics.median(bs) if bs else None  # None: no ModelDeployment got its children in time
                n = statistics.median(ns) if ns else None
                row[key] = {"baseline_median": b, "new_median": n, "ratio": round(n / b, 3) if b and n else None}
            comparisons.append(row)
    print(json.dumps({"comparisons": comparisons}, indent=2))
    for row in comparisons:
        print(
            f"SUMMARY control_plane vs baseline ({row['mode']}, {row['rounds']} rounds, medians): "
            + ", ".join(
                f"{k} {v['baseline_median']} -> {v['new_median']} (x{v['ratio']})"
                for k, v in row.items()
                if isinstance(v, dict)
            )
        )
    for result in results:
        lat = result["children_latency_s"]
        ok = result["children_present"] == args.count and (lat["p95"] or 99) <= 0.5 and result["idle_writes_total"] == 0
        print(
            f"SUMMARY control_plane ({result['mode']}{', baseline' if result['code'] != str(ROOT) else ''}): {args.count} ModelDeployments -> children p50 {lat['p50']}s "
            f"p90 {lat['p90']}s p95 {lat['p95']}s (goal p95 <= 0.5s), idle writes {result['idle_writes_total']} over "
            f"{args.idle_periods} resyncs (goal 0), operator CPU {result['operator_cpu_ms_per_modeldeployment']} ms/MD "
            f"(API server {result['apiserver_cpu_ms_per_modeldeployment']}), operator peak RSS {result['operator_peak_rss_mb']} MB: {'PASS' if ok else 'MISS'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
