"""A rollout's metrics over time: Prometheus range queries of the SAME PromQL the operator's analysis runs.

For a rollout's new version against its stable version (the operator's `QueryContext`), every
metric of spec.analysis.metrics becomes one ``/api/v1/query_range`` over the rollout's time span
(from 10 s before it started to now, or to 10 s after it ended), at most MAX_POINTS points, with
the metric's own window (`AnalysisSpec.window_seconds`) and query (`analysis.runner.metric_query`:
builtin or the user's template). One more series is the share of live requests the new version
really served (Istio's metrics, the evaluator's probes left out), next to the weight the status
asked for. Thresholds and the analyses themselves come with the summary (board.py).

Nothing here writes or retries: a query that fails yields its error, shown in the chart's place.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx

from mdcommon.durations import format_duration
from mddashboard.board import RolloutMemory
from modeldeploy import names
from modeldeploy.analysis.builtins import QueryContext
from modeldeploy.analysis.prometheus import QueryResult
from modeldeploy.analysis.runner import metric_query
from modeldeploy.spec import ModelDeploymentSpec
from modeldeploy.status import from_timestamp
from modeldeploy.validation import validate_manifest

MAX_POINTS = 240
NO_SINGLE_SERIES = "judged per finding from the evaluator's paired figures (see the verdicts): no single series to draw"
MARGIN_SECONDS = 10.0


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    step: float


def span_of(memory: RolloutMemory, now: float, resolution: float) -> Span:
    """The time range of a rollout's charts and a step that keeps it within MAX_POINTS points."""
    start = memory.seen_at
    if memory.started_at:
        moment = from_timestamp(memory.started_at)
        if moment is not None:
            start = min(start, moment.timestamp())
    start -= MARGIN_SECONDS
    end = now if memory.ended_at is None else min(now, memory.ended_at + MARGIN_SECONDS)
    end = max(end, start + 1.0)
    step = max(resolution, math.ceil((end - start) / MAX_POINTS))
    return Span(start=start, end=end, step=float(step))


def traffic_share_query(ctx: QueryContext, window: str) -> str:
    """Percent of the Service's live requests answered by the canary version (mirrored ones included)."""
    base = (
        f'reporter="destination",destination_workload_namespace="{ctx.namespace}",'
        f'destination_app="{ctx.name}",source_workload!="{names.evaluator_name(ctx.name)}"'
    )
    canary = f'{base},destination_version="{names.version_label(ctx.canary_version)}"'
    return (
        f"100 * (sum(rate(istio_requests_total{{{canary}}}[{window}])) or vector(0))"
        f" / sum(rate(istio_requests_total{{{base}}}[{window}]))"
    )


class RangeClient:
    """Range queries against one Prometheus server (httpx, async); counts what it sends."""

    def __init__(self, url: str, *, timeout: float = 5.0, client: httpx.AsyncClient | None = None):
        self.url = url.rstrip("/")
        self._client = client or httpx.AsyncClient(base_url=self.url, timeout=timeout)
        self.queries = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def query_range(self, promql: str, span: Span) -> tuple[list[list[float | None]], str | None]:
        """([[t, value], ...] of the single series, None) or ([], the error)."""
        self.queries += 1
        params = {"query": promql, "start": f"{span.start:.3f}", "end": f"{span.end:.3f}", "step": f"{span.step:g}"}
        try:
            resp = await self._client.get("/api/v1/query_range", params=params)
        except httpx.HTTPError as exc:
            return [], f"Prometheus unreachable: {type(exc).__name__}: {exc}"
        try:
            body = resp.json()
        except ValueError:
            return [], f"Prometheus answered {resp.status_code} without JSON"
        if body.get("status") != "success":
            return [], f"Prometheus: {body.get('errorType', resp.status_code)}: {body.get('error', '')}"
        result = (body.get("data") or {}).get("result") or []
        if not result:
            return [], None  # no data over the whole span (e.g. no requests yet)
        if len(result) > 1:
            return [], f"the query yields {len(result)} series; an analysis query must aggregate to one"
        points = []
        for t, value in result[0].get("values") or []:
            number = float(value)
            points.append([float(t), None if math.isnan(number) or math.isinf(number) else number])
        return points, None


@lru_cache(maxsize=512)
def _spec_cached(uid: str, generation: int, manifest: str) -> ModelDeploymentSpec | None:
    return validate_manifest(json.loads(manifest)).spec


def spec_of(body: Mapping[str, Any]) -> ModelDeploymentSpec | None:
    """The typed spec (None when it is invalid), validated once per (uid, generation)."""
    meta = body.get("metadata") or {}
    manifest = {k: body.get(k) for k in ("apiVersion", "kind", "spec")}
    manifest["metadata"] = {"name": meta.get("name"), "namespace": meta.get("namespace")}
    return _spec_cached(str(meta.get("uid")), int(meta.get("generation") or 0), json.dumps(manifest, sort_keys=True))


async def rollout_series(client: RangeClient, body: dict, memory: RolloutMemory, now: float) -> dict[str, Any]:
    """Every chart's series of one rollout: the observed traffic share, then one per analysis metric."""
    meta = body.get("metadata") or {}
    st = body.get("status") or {}
    out: dict[str, Any] = {
        "key": f"{meta.get('namespace')}/{meta.get('name')}",
        "version": memory.version,
        "traffic": None,
        "series": [],
    }
    spec = spec_of(body)
    if spec is None:
        out["error"] = "the spec is invalid: no metrics to draw"
        return out
    stable = memory.stable if memory.stable is not None else st.get("stableVersion")
    ctx = QueryContext(
        namespace=meta.get("namespace") or "",
        name=meta.get("name") or "",
        model_name=spec.model.name,
        stable_version=int(stable if stable is not None else memory.version),
        canary_version=memory.version,
    )
    resolution = max(1.0, spec.analysis.scrape_interval_seconds)
    span = span_of(memory, now, resolution)
    out.update(start=span.start, end=span.end, step=span.step)
    traffic_window = format_duration(max(4 * spec.analysis.scrape_interval_seconds, 2 * span.step))
    queries: list[tuple[str, str | QueryResult | object]] = [("traffic", traffic_share_query(ctx, traffic_window))]
    for metric in spec.analysis.metrics:
        queries.append((metric.name, metric_query(metric, spec, ctx, spec.analysis.window_seconds(metric))))

    async def one(name: str, query: str | QueryResult | object) -> dict[str, Any]:
        if isinstance(query, QueryResult):
            return {"name": name, "query": None, "points": [], "error": query.error}
        if not isinstance(query, str):  # nonInferiority: per-finding paired tests, no single PromQL
            return {"name": name, "query": None, "points": [], "error": NO_SINGLE_SERIES}
        points, error = await client.query_range(query, span)
        return {"name": name, "query": query, "points": points, "error": error}

    answers = await asyncio.gather(*(one(n, q) for n, q in queries))
    out["traffic"], out["series"] = answers[0], list(answers[1:])
    return out
