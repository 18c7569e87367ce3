"""Benchmark: a platform's worth of ModelDeployments — N applied at once, then K canaries analysed at once.

Real operator process, API emulator, simulated Deployment controller (pods, readiness) and a real
Prometheus (the analyses' queries are real HTTP round trips; there is no per-ModelDeployment traffic
generator at this scale, so the canaries' analyses come back "no data" and hold — the point here is
whether the operator runs every analysis on time). Measured against issue 14 part 3's goals:
- time from the first create to ALL N ModelDeployments Stable (goal <= 60 s at N = 1,000), with the
  time to 50% and 90% Stable;
- operator peak RSS (VmHWM, goal <= 250 MB) and RSS once all are Stable;
- API writes during idle resync periods once all are Stable (goal 0): everyone's, and the operator's
  alone (the operator runs as its own user), by verb and resource;
- K concurrent canaries (interval 10 s, plus fail-fast checks every 2 s): each canary's interval
  analyses are seen through a watch (not by polling a list, which misses one that a fail-fast check
  overwrote between two polls); the gap between successive analyses as a ratio to the interval
  (lag = gap / interval - 1, goal p90 <= 0.1), every canary analysed at least `--min-analyses` times;
- CPU seconds of the operator and of the emulator per phase (far less noisy than wall time).
`--tracemalloc FILE` runs the operator under tracemalloc and writes the top allocations that grew from
before the first create to all Stable (a memory profile; slows the operator, so its timings are not
comparable). `--baseline DIR --rounds N` runs a baseline checkout's operator alternating with this code,
against fresh emulators, and prints the ratios of the medians.
Prints JSON and SUMMARY lines (with the CPU flags and the load average).

    python bench/scale.py [--count 1000] [--canaries 100] [--baseline DIR --rounds 1] [--tracemalloc FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import json
import os
import pathlib
import signal
import statistics
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / d) for d in ("operator", "common", "model", "sandbox")]

import httpx  # noqa: E402

from benchlib import code_env, cpu_info, cpu_seconds  # noqa: E402
from kubeemu.process import ApiServerProcess  # noqa: E402
from mdsandbox.controllers import DeploymentController  # noqa: E402
from mdsandbox.operator_process import OperatorProcess  # noqa: E402
from mdsandbox.prometheus_process import PrometheusServer  # noqa: E402

NS = "scale"
MD = ("modeldeploy.io", "v1alpha1", "modeldeployments")
INTERVAL = 10
OPERATOR_USER = "system:serviceaccount:modeldeploy:modeldeploy-operator"
GOALS = {"stable_s": 60.0, "rss_mb": 250.0, "lag_p90": 0.1}  # issue 14 part 3

# The operator under tracemalloc: the first SIGUSR1 (the bench sends it just before the first create) starts
# tracing (from the start, the imports alone would take minutes with several frames), the second one (all
# Stable) writes the snapshot: what the operator allocated for the N ModelDeployments and still holds.
TRACED = """
import os, runpy, signal, sys, tracemalloc
out, taken = os.environ["BENCH_TRACEMALLOC_OUT"], []
def snapshot(*_):
    taken.append(1)
    if len(taken) == 1:
        tracemalloc.start(int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "1")))
    tracemalloc.take_snapshot().dump(f"{out}.{len(taken)}")
    open(f"{out}.{len(taken)}.done", "w").close()
signal.signal(signal.SIGUSR1, snapshot)
sys.argv = ["modeldeploy"] + sys.argv[1:]
runpy.run_module("modeldeploy.cli", run_name="__main__")
"""


def manifest(i: int) -> dict:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": f"cxr-{i:04d}", "namespace": NS},
        "spec": {
            "model": {"name": "resnet50_chest_xray", "basePath": "s3://models/resnet50", "version": 1},
            "serving": {"replicas": 1},
            "strategy": {"type": "Canary", "canary": {"steps": [10, 50, 100]}},
            "analysis": {"interval": f"{INTERVAL}s", "scrapeInterval": "1s", "progressDeadline": "10m", "minRequests": 10,
                         "metrics": [{"name": "latency-p95", "builtin": "latency", "quantile": 0.95, "max": 100,
                                      "failFast": {"max": 400}},
                                     {"name": "error-rate", "builtin": "errorRate", "max": 1}]},
        },
    }  # fmt: skip


KEY_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "fma", "sha_ni")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def rnd(x: float | None, n: int = 3) -> float | None:
    return None if x is None else round(x, n)


def proc_status(pid: int, field: str) -> float:
    """A /proc/<pid>/status memory field in MB (VmHWM = peak RSS, VmRSS = now)."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class TracedOperator(OperatorProcess):
    def command(self) -> list[str]:
        return [sys.executable, "-c", TRACED] + super().command()[3:]


class Watcher:
    """Follows the namespace's ModelDeployments through one watch: phase of each, and every interval
    analysis (status.lastAnalysis of kind interval, by its time) of each, as it happens."""

    def __init__(self, api_url: str):
        self.api_url = api_url
        self.phase: dict[str, str] = {}
        self.analyses: dict[str, list[str]] = {}
        self.step_started: dict[str, str] = {}
        self.stable_at: dict[str, float] = {}
        self.events = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def stable(self) -> int:
        return sum(1 for p in self.phase.values() if p == "Stable")

    def _see(self, obj: dict, now: float) -> None:
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        phase = status.get("phase") or ""
        if phase == "Stable" and self.phase.get(name) != "Stable":
            self.stable_at.setdefault(name, now)
        self.phase[name] = phase
        last = status.get("lastAnalysis") or {}
        if last.get("kind") == "interval" and last.get("time"):
            seen = self.analyses.setdefault(name, [])
            if last["time"] not in seen:
                seen.append(last["time"])
        started = (status.get("rollout") or {}).get("stepStartedAt")
        if started:
            self.step_started.setdefault(name, started)

    def _run(self) -> None:
        path = f"{self.api_url}/apis/{MD[0]}/{MD[1]}/namespaces/{NS}/{MD[2]}"
        with httpx.Client(timeout=httpx.Timeout(10, read=None)) as client:
            while not self._stop.is_set():
                try:
                    listed = client.get(path).json()
                    for obj in listed.get("items") or []:
                        self._see(obj, time.monotonic())
                    rv = listed["metadata"]["resourceVersion"]
                    params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "3600"}
                    with client.stream("GET", path, params=params) as stream:
                        for line in stream.iter_lines():
                            if self._stop.is_set():
                                return
                            if not line:
                                continue
                            event = json.loads(line)
                            if event.get("type") in ("ADDED", "MODIFIED"):
                                self.events += 1
                                self._see(event["object"], time.monotonic())
                except (httpx.HTTPError, ValueError, KeyError):
                    time.sleep(0.5)


def operator_counters(url: str) -> dict[str, float]:
    """The operator's own counters (its API calls by verb and kind, Prometheus queries, reconcile passes)."""
    out: dict[str, float] = {}
    try:
        text = httpx.get(url, timeout=10).text
    except httpx.HTTPError:
        return out
    for line in text.splitlines():
        if line.startswith(
            (
                "modeldeploy_kubernetes_api_calls_total{",
                "modeldeploy_prometheus_queries_total{",
                "modeldeploy_reconcile_duration_seconds_count",
                "modeldeploy_reconcile_errors_total{",
            )
        ):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def tracemalloc_report(out: str, top: int = 25) -> dict:
    import tracemalloc

    first, second = tracemalloc.Snapshot.load(f"{out}.1"), tracemalloc.Snapshot.load(f"{out}.2")
    report: dict = {"traced_mb_before": round(sum(s.size for s in first.statistics("filename")) / 2**20, 2),
                    "traced_mb_after": round(sum(s.size for s in second.statistics("filename")) / 2**20, 2)}  # fmt: skip
    for key in ("filename", "lineno", "traceback"):
        rows = []
        for stat in second.compare_to(first, key)[:top]:
            frames = [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in stat.traceback]
            rows.append({"where": frames if key == "traceback" else frames[0], "size_diff_kb": round(stat.size_diff / 1024, 1),
                         "count_diff": stat.count_diff})  # fmt: skip
        report[f"top_by_{key}"] = rows
    return report


def run(count: int, canaries: int, resync: float, *, code: str | None = None, stable_timeout: float = 300.0,
        min_analyses: int = 6, canary_timeout: float = 180.0, trace: str | None = None, frames: int = 1,
        operator_env: dict[str, str] | None = None) -> dict:  # fmt: skip
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench-scale-"))
    crds = [ROOT / "crds/modeldeployment.yaml", ROOT / "tests/data/thirdparty-crds/istio-virtualservice.yaml",
            ROOT / "tests/data/thirdparty-crds/istio-destinationrule.yaml"]  # fmt: skip
    prom = PrometheusServer([], scrape_interval=1.0, storage_dir=workdir / "prom")
    prom.start_and_wait(20)
    result: dict = {"benchmark": "scale", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "code": code or str(ROOT), **cpu_info(), "modeldeployments": count, "canaries": canaries,
                    "analysis_interval_s": INTERVAL, "resync_s": resync, "tracemalloc": bool(trace),
                    "operator_env": operator_env or {}}  # fmt: skip
    with ApiServerProcess(crd_files=crds, workdir=workdir / "api", history_limit=20000) as api:
        api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        api.add_user("bench-operator-token", OPERATOR_USER)
        kubeconfig = api.user_kubeconfig(workdir / "operator.kubeconfig", "bench-operator-token", namespace=NS)
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        controller = DeploymentController(api_url=api.url, namespace=NS, ready_delay=0.2, poll_interval=1.0)
        syncs: list[float] = []  # how long one pass of the simulated cluster takes (the test bed's own lag)
        sync_once = controller.sync_once

        async def timed_sync() -> None:
            t = time.monotonic()
            await sync_once()
            syncs.append(time.monotonic() - t)

        controller.sync_once = timed_sync  # type: ignore[method-assign]
        asyncio.run_coroutine_threadsafe(controller.start(), loop).result(10)
        env = {"MODELDEPLOY_RESYNC_SECONDS": str(resync), **code_env(code), **(operator_env or {})}
        if trace:
            env.update(BENCH_TRACEMALLOC_OUT=trace, BENCH_TRACEMALLOC_FRAMES=str(frames))
        op = (TracedOperator if trace else OperatorProcess)(
            kubeconfig=kubeconfig, namespaces=[NS], prometheus_url=prom.url, log_path=workdir / "operator.log", env=env
        )
        op.start()
        op.wait_metrics(60)
        watcher = Watcher(api.url).start()
        time.sleep(1.0)
        pids = {"operator": op.proc.pid, "apiserver": api.proc.pid, "bench": os.getpid()}
        result["operator_idle_rss_mb"] = round(proc_status(op.proc.pid, "VmRSS"), 1)

        def snapshot_now(n: int) -> None:
            op.proc.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 120
            while not os.path.exists(f"{trace}.{n}.done") and time.monotonic() < deadline:
                time.sleep(0.2)

        if trace:
            snapshot_now(1)

        # ---- 1. N at once -> all Stable ------------------------------------------------------------
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        calls0 = operator_counters(op.metrics_url)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda i: api.put_object(*MD, NS, manifest(i)), range(count)))
        result["apply_seconds"] = round(time.monotonic() - t0, 2)
        marks: dict[str, float | None] = {"50%": None, "90%": None, "100%": None}
        while time.monotonic() - t0 < stable_timeout:
            stable = watcher.stable()
            for mark in marks:
                if marks[mark] is None and stable >= count * int(mark[:-1]) / 100:
                    marks[mark] = round(time.monotonic() - t0, 2)
            if stable >= count:
                break
            time.sleep(0.2)
        result["all_stable_seconds"] = marks["100%"]
        result["stable_seconds"] = marks
        result["stable_after_timeout"] = watcher.stable()
        result["stable_timeout_s"] = stable_timeout
        result["stable_cpu_s"] = {k: round(cpu_seconds(p) - cpu0[k], 2) for k, p in pids.items()}
        result["operator_cpu_ms_per_modeldeployment"] = round(result["stable_cpu_s"]["operator"] * 1000 / count, 2)
        result["operator_calls_to_stable"] = diff(operator_counters(op.metrics_url), calls0)
        result["controller_sync_s"] = {"count": len(syncs), "median": rnd(statistics.median(syncs)) if syncs else None,
                                       "max": rnd(max(syncs)) if syncs else None}  # fmt: skip
        result["operator_peak_rss_mb_at_stable"] = round(proc_status(op.proc.pid, "VmHWM"), 1)
        result["operator_rss_mb_at_stable"] = round(proc_status(op.proc.pid, "VmRSS"), 1)

        # ---- 2. idle writes ------------------------------------------------------------------------
        time.sleep(resync + 2.0)
        before, calls1, cpu1 = (
            api.stats(NS),
            operator_counters(op.metrics_url),
            {k: cpu_seconds(p) for k, p in pids.items()},
        )
        time.sleep(resync * 2)
        after = api.stats(NS)
        result["idle_resync_periods"] = 2
        result["idle_writes"] = after["writes"] - before["writes"]
        result["idle_writes_by_user"] = {
            user: sum(ns.values()) - sum((before["writes_by_user"].get(user) or {}).values())
            for user, ns in after["writes_by_user"].items()
            if sum(ns.values()) - sum((before["writes_by_user"].get(user) or {}).values())
        }
        result["idle_operator_writes"] = result["idle_writes_by_user"].get(OPERATOR_USER, 0)
        result["idle_writes_by_verb_resource"] = {
            k: v - before["writes_by_verb_resource"].get(k, 0)
            for k, v in after["writes_by_verb_resource"].items()
            if v - before["writes_by_verb_resource"].get(k, 0)
        }
        result["idle_operator_calls"] = diff(operator_counters(op.metrics_url), calls1)
        result["idle_cpu_s"] = {k: round(cpu_seconds(p) - cpu1[k], 2) for k, p in pids.items()}
        result["phases_not_stable"] = sorted({p for p in watcher.phase.values() if p != "Stable"})
        if trace:
            snapshot_now(2)
            result["memory_profile"] = tracemalloc_report(trace)

        # ---- 3. K canaries at once -----------------------------------------------------------------
        names = [f"cxr-{i:04d}" for i in range(min(canaries, count))]
        cpu2, calls2 = {k: cpu_seconds(p) for k, p in pids.items()}, operator_counters(op.metrics_url)
        started = time.monotonic()
        for name in names:
            api.patch_object(*MD, NS, name, {"spec": {"model": {"version": 2}}})
        result["canary_apply_seconds"] = round(time.monotonic() - started, 2)
        while time.monotonic() - started < canary_timeout and names:
            if all(len(watcher.analyses.get(n) or []) >= min_analyses for n in names):
                break
            time.sleep(0.5)
        result["canary_window_s"] = round(time.monotonic() - started, 1)
        result["canary_cpu_s"] = {k: round(cpu_seconds(p) - cpu2[k], 2) for k, p in pids.items()}
        calls_end = operator_counters(op.metrics_url)
        rss = proc_status(op.proc.pid, "VmHWM")
        rss_now = proc_status(op.proc.pid, "VmRSS")
        watcher.stop()
        op.stop()
        asyncio.run_coroutine_threadsafe(controller.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
    prom.stop()

    gaps, first_delays = [], []
    for name in names:
        moments = [datetime.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in watcher.analyses.get(name) or []]
        gaps += [(b - a).total_seconds() for a, b in zip(moments, moments[1:])]
        step = watcher.step_started.get(name)
        if moments and step:  # the first analysis is due one interval after the step began
            began = datetime.datetime.fromisoformat(step.replace("Z", "+00:00"))
            first_delays.append((moments[0] - began).total_seconds() / INTERVAL - 1)
    lags = [g / INTERVAL - 1 for g in gaps]
    analysed = [len(watcher.analyses.get(n) or []) for n in names]
    result.update({
        "operator_peak_rss_mb": round(rss, 1),
        "operator_rss_mb_end": round(rss_now, 1),
        "canaries_analysed_twice": sum(1 for a in analysed if a >= 2),
        "canaries_analysed_min_times": sum(1 for a in analysed if a >= min_analyses),
        "min_analyses": min_analyses,
        "analyses_per_canary": {"min": min(analysed) if analysed else None,
                                "median": statistics.median(analysed) if analysed else None},
        "analysis_gaps": len(gaps),
        "analysis_gap_s": {"median": rnd(statistics.median(gaps)) if gaps else None, "p90": rnd(pct(gaps, 0.9)),
                           "max": rnd(max(gaps)) if gaps else None},
        "analysis_lag_ratio": {"median": rnd(statistics.median(lags), 4) if lags else None, "p90": rnd(pct(lags, 0.9), 4),
                               "max": rnd(max(lags), 4) if lags else None},
        "first_analysis_lag_ratio": {"median": rnd(statistics.median(first_delays), 4) if first_delays else None,
                                     "p90": rnd(pct(first_delays, 0.9), 4)},
        "canary_operator_calls": diff(calls_end, calls2),
        "watch_events": watcher.events,
    })  # fmt: skip
    return result


def goals(r: dict) -> dict[str, bool]:
    return {
        f"stable<={GOALS['stable_s']:.0f}s": r["all_stable_seconds"] is not None
        and r["all_stable_seconds"] <= GOALS["stable_s"],
        f"rss<={GOALS['rss_mb']:.0f}MB": r["operator_peak_rss_mb"] <= GOALS["rss_mb"],
        "idle writes 0": r["idle_writes"] == 0,
        f"lag p90<={GOALS['lag_p90']}": r["analysis_lag_ratio"]["p90"] is not None
        and r["analysis_lag_ratio"]["p90"] <= GOALS["lag_p90"]
        and r["canaries_analysed_min_times"] == min(r["canaries"], r["modeldeployments"]),
    }


def summary(r: dict, label: str = "") -> str:
    flags = " ".join(f for f in KEY_FLAGS if f in r["cpu_flags"].split())
    return (
        f"SUMMARY scale{label}: {r['modeldeployments']} ModelDeployments all Stable in {r['all_stable_seconds']}s "
        f"(50% {r['stable_seconds']['50%']}s, 90% {r['stable_seconds']['90%']}s; operator CPU "
        f"{r['operator_cpu_ms_per_modeldeployment']} ms/MD), operator peak RSS {r['operator_peak_rss_mb']} MB "
        f"(at Stable {r['operator_peak_rss_mb_at_stable']}), idle writes {r['idle_writes']} (operator's "
        f"{r['idle_operator_writes']}), {r['canaries_analysed_min_times']}/{min(r['canaries'], r['modeldeployments'])} "
        f"canaries analysed >= {r['min_analyses']} times, gap median {r['analysis_gap_s']['median']}s p90 "
        f"{r['analysis_gap_s']['p90']}s at interval {INTERVAL}s (lag ratio median {r['analysis_lag_ratio']['median']}, "
        f"p90 {r['analysis_lag_ratio']['p90']}; first analysis lag p90 {r['first_analysis_lag_ratio']['p90']}) | "
        + ", ".join(f"{k} {'PASS' if v else 'MISS'}" for k, v in goals(r).items())
        + f" | {r['cpu_model']} x{r['cpu_count']} [{flags}] load {r['load_average']}"
        + (" [tracemalloc: timings not comparable]" if r["tracemalloc"] else "")
    )


COMPARED = (
    ("all_stable_seconds", lambda r: r["all_stable_seconds"]),
    ("operator_cpu_ms_per_md", lambda r: r["operator_cpu_ms_per_modeldeployment"]),
    ("apiserver_cpu_s_to_stable", lambda r: r["stable_cpu_s"]["apiserver"]),
    ("operator_peak_rss_mb", lambda r: r["operator_peak_rss_mb"]),
    ("operator_peak_rss_mb_at_stable", lambda r: r["operator_peak_rss_mb_at_stable"]),
    ("idle_operator_writes", lambda r: r["idle_operator_writes"]),
    ("lag_p90", lambda r: r["analysis_lag_ratio"]["p90"]),
    ("canary_operator_cpu_s", lambda r: r["canary_cpu_s"]["operator"]),
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--canaries", type=int, default=100)
    parser.add_argument("--resync", type=float, default=10.0)
    parser.add_argument("--stable-timeout", type=float, default=300.0)
    parser.add_argument("--min-analyses", type=int, default=6, help="interval analyses to see per canary")
    parser.add_argument("--canary-timeout", type=float, default=180.0)
    parser.add_argument("--tracemalloc", default=None, metavar="FILE", help="memory profile of the operator")
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc frames per allocation")
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the operator process (e.g. MALLOC_ARENA_MAX=2)",
    )
    parser.add_argument("--baseline", default=None, help="checkout of the baseline commit (git worktree)")
    parser.add_argument("--rounds", type=int, default=1, help="with --baseline: alternating rounds")
    args = parser.parse_args()
    codes = [args.baseline, None] if args.baseline else [None]
    results = []
    for _ in range(args.rounds if args.baseline else 1):
        for code in codes:
            r = run(args.count, args.canaries, args.resync, code=code, stable_timeout=args.stable_timeout,
                    min_analyses=args.min_analyses, canary_timeout=args.canary_timeout, trace=args.tracemalloc,
                    frames=args.frames, operator_env=dict(kv.split("=", 1) for kv in args.operator_env))  # fmt: skip
            results.append(r)
            print(summary(r, " (baseline)" if code else ""), flush=True)
    print(json.dumps({"runs": results}, indent=2), flush=True)
    if args.baseline:
        base = [r for r in results if r["code"] != str(ROOT)]
        new = [r for r in results if r["code"] == str(ROOT)]
        row = {}
        for key, get in COMPARED:
            bs, ns = [get(r) for r in base if get(r) is not None], [get(r) for r in new if get(r) is not None]
            b = statistics.median(bs) if bs else None
            n = statistics.median(ns) if ns else None
            row[key] = {"baseline_median": b, "new_median": n, "ratio": round(n / b, 3) if b and n else None}
        print(json.dumps({"comparison": row}, indent=2))
        print(f"SUMMARY scale vs baseline ({args.rounds} rounds, medians): "
              + ", ".join(f"{k} {v['baseline_median']} -> {v['new_median']} (x{v['ratio']})" for k, v in row.items()))  # fmt: skip
    for r in results:
        print(summary(r, " (baseline)" if r["code"] != str(ROOT) else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
