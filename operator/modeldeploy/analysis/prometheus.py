"""Metric provider: the Prometheus HTTP API (/api/v1/query) over httpx, asyncio-native.

Like Flagger's provider interface (`run_query -> float`, `is_online`), but a query answers one of
three things explicitly: a value, NO DATA (empty vector, NaN), or an error (unreachable, bad query,
several series where one was expected). Callers never mistake "nothing" for "fine".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class QueryResult:
    value: float | None = None  # None = no data or error
    series: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.value is not None and not math.isnan(self.value)


@dataclass(frozen=True)
class VectorResult:
    """All series of an instant vector as (labels, value), or the error that prevented reading them."""

    series: list[tuple[dict[str, str], float]] = field(default_factory=list)
    error: str | None = None


class PrometheusClient:
    """Async client for one Prometheus server; counts the queries it sends."""

    def __init__(self, url: str, *, timeout: float = 5.0, client: httpx.AsyncClient | None = None):
        self.url = url.rstrip("/")
        self._client = client or httpx.AsyncClient(base_url=self.url, timeout=timeout)
        self.queries = 0
        self.errors = 0
        self.on_query: Callable[[bool], None] | None = None  # metrics hook: (failed)
        self.last_latency = 0.0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def is_online(self) -> bool:
        try:
            resp = await self._client.get("/-/ready")
            return resp.status_code == 200
        except httpx.HTTPError:
            return False

    async def query(self, promql: str, at: float | None = None) -> QueryResult:
        """Instant query that must yield at most ONE series (aggregate in PromQL)."""
        result = await self._query(promql, at)
        if self.on_query is not None:
            self.on_query(result.error is not None)
        return result

    async def _query(self, promql: str, at: float | None) -> QueryResult:
        self.queries += 1
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        started = time.perf_counter()
        try:
            resp = await self._client.get("/api/v1/query", params=params)
        except httpx.HTTPError as exc:
            self.errors += 1
            return QueryResult(error=f"prometheus unreachable: {type(exc).__name__}: {exc}".rstrip(": "))
        finally:
            self.last_latency = time.perf_counter() - started
        try:
            payload = resp.json()
        except ValueError:
            self.errors += 1
            return QueryResult(error=f"prometheus answered {resp.status_code} without JSON")
        if resp.status_code != 200 or payload.get("status") != "success":
            self.errors += 1
            return QueryResult(error=f"prometheus query failed ({resp.status_code}): {payload.get('error', payload)}")
        data = payload.get("data") or {}
        kind = data.get("resultType")
        result: Any = data.get("result")  # JSON: [time, "value"] for a scalar, a list of series for a vector
        if kind == "scalar":
            return QueryResult(value=float(result[1]), series=1)
        if kind != "vector":
            return QueryResult(error=f"query must return an instant vector or scalar, got {kind}")
        if not result:
            return QueryResult(value=None, series=0)
        if len(result) > 1:
            return QueryResult(
                error=f"query returned {len(result)} series; aggregate it to one (e.g. sum(...))", series=len(result)
            )
        return QueryResult(value=float(result[0]["value"][1]), series=1)

    async def query_vector(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """Every series of an instant vector as (labels, value); [] on no data or error."""
        return (await self.query_series(promql)).series

    async def query_series(self, promql: str) -> VectorResult:
        """Every series of an instant vector, or the error; counted with its outcome AFTER it was sent."""
        result = await self._query_series(promql)
        if self.on_query is not None:
            self.on_query(result.error is not None)
        return result

    async def _query_series(self, promql: str) -> VectorResult:
        self.queries += 1
        try:
            resp = await self._client.get("/api/v1/query", params={"query": promql})
        except httpx.HTTPError as exc:
            self.errors += 1
            return VectorResult(error=f"prometheus unreachable: {type(exc).__name__}: {exc}".rstrip(": "))
        try:
            payload = resp.json()
        except ValueError:
            self.errors += 1
            return VectorResult(error=f"prometheus answered {resp.status_code} without JSON")
        if resp.status_code != 200 or payload.get("status") != "success":
            self.errors += 1
            return VectorResult(error=f"prometheus query failed ({resp.status_code}): {payload.get('error', payload)}")
        data = payload.get("data") or {}
        if data.get("resultType") != "vector":
            return VectorResult(error=f"query must return an instant vector, got {data.get('resultType')}")
        return VectorResult(
            series=[(item.get("metric", {}), float(item["value"][1])) for item in data.get("result") or []]
        )
