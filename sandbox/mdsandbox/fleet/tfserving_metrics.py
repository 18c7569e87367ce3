"""TF Serving's own Prometheus metrics, per simulated pod (its monitoring endpoint).

TF Serving exposes, at ``/monitoring/prometheus/metrics`` when monitoring is on, families that
carry NO version or pod label (the scrape config adds ``namespace``/``pod``/``version``/``app``
target labels, see `SimulatedFleet.scrape_targets`):

* ``:tensorflow:serving:request_count{model_name,status}`` (status "OK", "INTERNAL",
  "INVALID_ARGUMENT"; a counter without the ``_total`` suffix);
* ``:tensorflow:serving:request_latency_{bucket,sum,count}{model_name,API,entrypoint}`` in
  microseconds, TF Serving's buckets ``10 * 1.8^i`` for i < 33;
* ``:tensorflow:core:graph_runs``.

`PodMetrics` is one pod's families; `record_requests` spreads a batch of requests over a version's
ready pods (multinomial, as a Service balances them) in the order the fleet's random generator
dictates.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mdsandbox.fleet.exposition import CounterFamily, HistogramFamily, fmt_number

TFS_LATENCY_BUCKETS_US: tuple[float, ...] = tuple(10 * 1.8**i for i in range(33))
TFS_METRICS_PATH = "/monitoring/prometheus/metrics"


@dataclass
class PodMetrics:
    """The TF Serving metric families of one pod."""

    name: str
    version: str
    request_count: CounterFamily = field(
        default_factory=lambda: CounterFamily(
            ":tensorflow:serving:request_count", "The total number of requests.", ("model_name", "status")
        )
    )
    request_latency: HistogramFamily = field(
        default_factory=lambda: HistogramFamily(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ("model_name", "API", "entrypoint"),
            TFS_LATENCY_BUCKETS_US,
        )
    )
    graph_runs: float = 0.0

    def render(self) -> str:
        out: list[str] = []
        self.request_count.render(out)
        self.request_latency.render(out)
        out.append("# HELP :tensorflow:core:graph_runs The number of graph executions.")
        out.append("# TYPE :tensorflow:core:graph_runs counter")
        out.append(f":tensorflow:core:graph_runs {fmt_number(self.graph_runs)}")
        return "\n".join(out) + "\n"


def record_requests(
    pod_metrics: MutableMapping[str, PodMetrics],
    pods: Sequence[str],
    version: str,
    model_name: str,
    n_ok: int,
    n_err: int,
    latencies_ms: np.ndarray,
    rng: np.random.Generator,
    status_err: str = "INTERNAL",
) -> None:
    """Spread `n_ok + n_err` REST predict requests (with their latencies) over `pods`."""
    if not pods:
        return
    n = n_ok + n_err
    per_pod = rng.multinomial(n, np.full(len(pods), 1.0 / len(pods))) if len(pods) > 1 else np.array([n])
    codes = np.array([0] * n_ok + [1] * n_err)
    rng.shuffle(codes)
    start = 0
    for pod, k in zip(pods, per_pod):
        if k == 0:
            continue
        pm = pod_metrics.setdefault(pod, PodMetrics(pod, version))
        sl = slice(start, start + int(k))
        errs = int(codes[sl].sum())
        pm.request_count.inc((model_name, "OK"), int(k) - errs)
        pm.request_count.inc((model_name, status_err), errs)
        pm.request_latency.observe_many((model_name, "predict", "REST"), latencies_ms[sl] * 1000.0)
        pm.graph_runs += int(k)
        start += int(k)


__all__ = ["PodMetrics", "TFS_LATENCY_BUCKETS_US", "TFS_METRICS_PATH", "record_requests"]
