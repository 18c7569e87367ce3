"""The sandbox's Prometheus HTTP API client: one async client, raw samples (for the runner and tests).

`PrometheusApi` asks a Prometheus server what it has: instant queries parsed into `Sample`
records (labels, value, timestamp), range queries into `Series`, the active targets, and
`wait_for_scrape` (until ``up{job=...} == 1`` has a sample). Errors are typed:
`PrometheusUnavailable` (not reachable: not started, killed, replaying its WAL) and
`PrometheusQueryError` (it answered with an error: bad PromQL, wrong result type).

Why not the operator's `modeldeploy.analysis.prometheus.PrometheusClient`: that one answers the
analysis' question (ONE value, NO DATA, or an error, counted for the operator's metrics), while
the test bed needs every series with its labels, range vectors and target state. There is no
sync twin: synchronous callers (a session fixture) use ``asyncio.run(api.wait_for_scrape(...))``,
and the process' own readiness wait lives with the process (`prometheus_process`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx


class PrometheusError(RuntimeError):
    """Any failure talking to or running the Prometheus child process."""


class PrometheusUnavailable(PrometheusError):
    """The server is not reachable (not started, killed, or still replaying its WAL)."""


class PrometheusQueryError(PrometheusError):
    """Prometheus answered, but with an error (bad PromQL, unsupported result type...)."""


@dataclass(frozen=True)
class Sample:
    """One element of an instant-vector (or scalar) query result."""

    labels: dict[str, str]
    value: float
    timestamp: float

    @property
    def name(self) -> str | None:
        return self.labels.get("__name__")


@dataclass(frozen=True)
class Series:
    """One series of a range-query (matrix) result: labels and ``(unix_time, value)`` points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


def _time_param(when: float | dt.datetime | None) -> dict[str, str]:
    if when is None:
        return {}
    if isinstance(when, dt.datetime):
        when = when.timestamp()
    return {"time": repr(float(when))}


def _parse_value(raw: str) -> float:
    # Prometheus encodes +Inf, -Inf and NaN as strings too; float() handles them all.
    return float(raw)


def parse_instant_result(payload: Mapping[str, Any]) -> list[Sample]:
    """Parse an /api/v1/query JSON answer into samples (vector or scalar results)."""
    if payload.get("status") != "success":
        raise PrometheusQueryError(f"{payload.get('errorType', 'error')}: {payload.get('error', payload)}")
    data = payload["data"]
    kind = data["resultType"]
    if kind == "vector":
        return [
            Sample(dict(item["metric"]), _parse_value(item["value"][1]), float(item["value"][0]))
            for item in data["result"]
        ]
    if kind == "scalar":
        ts, raw = data["result"]
        return [Sample({}, _parse_value(raw), float(ts))]
    raise PrometheusQueryError(f"instant query returned a {kind} result; use query_range for range vectors")


def parse_range_result(payload: Mapping[str, Any]) -> list[Series]:
    """Parse an /api/v1/query_range answer (or an instant query of a range vector)."""
    if payload.get("status") != "success":
        raise PrometheusQueryError(f"{payload.get('errorType', 'error')}: {payload.get('error', payload)}")
    data = payload["data"]
    if data["resultType"] != "matrix":
        raise PrometheusQueryError(f"expected a matrix result, got {data['resultType']}")
    return [
        Series(dict(item["metric"]), [(float(t), _parse_value(v)) for t, v in item["values"]])
        for item in data["result"]
    ]


def _decode(resp: httpx.Response) -> Mapping[str, Any]:
    try:
        payload = resp.json()
    except ValueError as exc:
        raise PrometheusQueryError(f"HTTP {resp.status_code}: not JSON: {resp.text[:200]!r}") from exc
    if payload.get("status") != "success":
        raise PrometheusQueryError(f"HTTP {resp.status_code}: {payload.get('errorType')}: {payload.get('error')}")
    return payload


def _quote(value: str) -> str:
    return json.dumps(str(value))


def up_query(job: str, labels: Mapping[str, str] | None = None, healthy: bool = True) -> str:
    """``up{job="...",...}`` (``== 1`` when `healthy`): has the target been scraped (successfully)?"""
    matchers = [f"job={_quote(job)}"] + [f"{k}={_quote(v)}" for k, v in (labels or {}).items()]
    return f"up{{{','.join(matchers)}}}" + (" == 1" if healthy else "")


class PrometheusApi:
    """Async client of one Prometheus server (`url` may be a callable: a restarted server's URL)."""

    def __init__(
        self,
        url: str | Callable[[], str],
        *,
        check_alive: Callable[[], None] | None = None,
        poll_interval: float = 0.2,
    ) -> None:
        self._url = url
        self._check_alive = check_alive  # raises when the server process is gone (wait_for_scrape fails early)
        self.poll_interval = poll_interval

    @property
    def url(self) -> str:
        return self._url() if callable(self._url) else self._url

    async def _get_json(
        self, path: str, params: Mapping[str, str], timeout: float, client: httpx.AsyncClient | None = None
    ) -> Mapping[str, Any]:
        url = f"{self.url}{path}"
        try:
            if client is not None:
                resp = await client.get(url, params=params, timeout=timeout)
            else:
                async with httpx.AsyncClient(timeout=timeout) as own:
                    resp = await own.get(url, params=params)
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(f"{url}: {exc!r}") from exc
        return _decode(resp)

    async def query(
        self,
        promql: str,
        time: float | dt.datetime | None = None,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> list[Sample]:
        """Instant query -> samples. Raises PrometheusUnavailable / PrometheusQueryError."""
        payload = await self._get_json("/api/v1/query", {"query": promql, **_time_param(time)}, timeout, client)
        return parse_instant_result(payload)

    async def query_value(self, promql: str, time: float | dt.datetime | None = None) -> float | None:
        """The single value of a one-element result, None for an empty result (no data)."""
        samples = await self.query(promql, time)
        if not samples:
            return None
        if len(samples) > 1:
            raise PrometheusQueryError(f"expected at most one sample, got {len(samples)}: {promql}")
        return samples[0].value

    async def query_range(
        self,
        promql: str,
        start: float | dt.datetime,
        end: float | dt.datetime,
        step: float,
        timeout: float = 10.0,
    ) -> list[Series]:
        params = {
            "query": promql,
            "start": _time_param(start)["time"],
            "end": _time_param(end)["time"],
            "step": repr(float(step)),
        }
        return parse_range_result(await self._get_json("/api/v1/query_range", params, timeout))

    async def active_targets(self) -> list[dict[str, Any]]:
        """The /api/v1/targets activeTargets list (discovered and scraped)."""
        payload = await self._get_json("/api/v1/targets", {"state": "active"}, 5.0)
        return list(payload["data"]["activeTargets"])

    async def wait_for_scrape(
        self, job: str, timeout: float = 20.0, labels: Mapping[str, str] | None = None, healthy: bool = True
    ) -> list[Sample]:
        """Until ``up{job=...} == 1`` has a sample (a successful scrape); returns those samples.

        ``healthy=False`` waits for any ``up`` sample: the target was discovered and scraped once,
        even if the scrape failed (nothing listening yet)."""
        promql = up_query(job, labels, healthy)
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        async with httpx.AsyncClient(timeout=5.0) as client:
            while True:
                try:
                    found = await self.query(promql, client=client)
                    if found:
                        return found
                except PrometheusUnavailable as exc:
                    last_error = exc
                    if self._check_alive is not None:
                        self._check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"no successful scrape of job {job!r} within {timeout}s (last error: {last_error})"
                    )
                await asyncio.sleep(self.poll_interval)


__all__ = [
    "PrometheusApi",
    "PrometheusError",
    "PrometheusQueryError",
    "PrometheusUnavailable",
    "Sample",
    "Series",
    "parse_instant_result",
    "parse_range_result",
    "up_query",
]
