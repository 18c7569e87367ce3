"""The Prometheus client's bookkeeping: every query is counted with its OUTCOME, after it was sent.

The operator's `modeldeploy_prometheus_queries_total{result}` feeds the ModelDeployPrometheusUnreachable
alert ("errors and no ok in 5m"); a query counted as ok before it is sent would silence that alert
whenever the evaluator figures (query_vector) are read (feature review row 18).
"""

from __future__ import annotations

import socket

from modeldeploy.analysis import builtins
from modeldeploy.analysis.prometheus import PrometheusClient
from modeldeploy.analysis.runner import analyse
from modeldeploy.spec import parse_spec
from modeldeploy.status import now_utc


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released): connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(outcomes: list[bool]) -> PrometheusClient:
    client = PrometheusClient(f"http://127.0.0.1:{_closed_port()}", timeout=1.0)
    client.on_query = outcomes.append
    return client


async def test_query_vector_counts_an_unreachable_prometheus_as_an_error():
    outcomes: list[bool] = []
    client = _client(outcomes)
    try:
        answer = await client.query_vector("up")
    finally:
        await client.aclose()
    assert answer == []
    assert outcomes == [True], "an unreachable Prometheus must be counted as a failed query, never as ok"
    assert client.errors == 1


async def test_query_counts_an_unreachable_prometheus_as_an_error():
    outcomes: list[bool] = []
    client = _client(outcomes)
    try:
        result = await client.query("up")
    finally:
        await client.aclose()
    assert result.error and "unreachable" in result.error
    assert outcomes == [True]


async def test_an_analysis_with_evaluator_gates_and_prometheus_down_counts_no_ok_query():
    spec = parse_spec({
        "model": {"name": "m", "basePath": "s3://b/m", "version": 2},
        "analysis": {"metrics": [{"name": "auroc", "builtin": "accuracy", "min": 0.8},
                                 {"name": "drift", "builtin": "accuracyDrift", "max": 0.02}]},
        "evaluation": {"goldenSet": {"uri": "pvc://golden/set"}},
    })  # fmt: skip
    ctx = builtins.QueryContext(namespace="ns", name="md", model_name="m", stable_version=1, canary_version=2)
    outcomes: list[bool] = []
    client = _client(outcomes)
    try:
        result = await analyse(spec, ctx, client, now_utc())
    finally:
        await client.aclose()
    assert result.verdict == "noData"
    assert outcomes and all(outcomes), f"{outcomes.count(False)} of {len(outcomes)} queries counted ok"
