"""A real Prometheus server run as a child process, for the sandbox and the integration tests.

`PrometheusServer` starts the Debian `prometheus` binary (2.42) in the foreground on 127.0.0.1 and
a free port, with a private working directory holding a generated config, the scrape-target file
and (unless you pass your own) the TSDB. It never listens on anything but 127.0.0.1.

Scrape targets are `ScrapeTarget(job, address, path, labels)` records and can change at run time:

* ``target_mode="file_sd"`` (default): one scrape config reads ``targets.json`` through
  ``file_sd_configs``; `set_targets` rewrites the file atomically. Prometheus notices the file at
  once (inotify), but its discovery manager forwards target updates only on a fixed 5 s tick (and
  the scrape manager reloads on a 5 s tick too; no flag for either in 2.42).
* ``target_mode="reload"``: the targets are written into the config as ``static_configs`` and
  `set_targets` POSTs ``/-/reload``. The same throttles apply after the reload.

Measured here (0.5 s scrape interval, 12 changes at random phases per mode): a NEW target was
first scraped 0.6-5.0 s after `set_targets` with file_sd (median 2.9 s) and 0.7-5.6 s with reload
(median 2.8 s) — the same, so file_sd is the default (no HTTP call, no re-applied config). The
job, metrics path and extra labels of each target travel as target-group labels (``job``,
``__metrics_path__``), which Prometheus honours over the scrape config's defaults. Tests that need
a target scraped quickly keep the target list fixed and vary what the target serves.

Fault scenarios: `kill` (SIGKILL, TSDB kept), `stop` (SIGTERM; deletes the working directory
unless ``keep_data=True``), `start` again on the SAME port (the URL clients hold stays valid) and
`restart(keep_data=True)`. The first scrape after any start comes 5-6 s later (same throttles).

Queries: `query` / `query_async` (instant, parsed into `Sample` records), `query_range`,
`wait_for_scrape` (until ``up{job=...} == 1`` has a sample). Usable as a context manager, sync or
async::

    with PrometheusServer([("fleet", "127.0.0.1:8080", "/metrics", {})], scrape_interval=0.5) as prom:
        prom.wait_for_scrape("fleet")
        prom.query('sum(rate(istio_requests_total[5s]))')
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from mdsandbox.processes import free_port

LISTEN_HOST = "127.0.0.1"
PROMETHEUS_BINARY_ENV = "MODELDEPLOY_PROMETHEUS"
PROMTOOL_BINARY_ENV = "MODELDEPLOY_PROMTOOL"
FILE_SD_NAME = "targets.json"
CONFIG_NAME = "prometheus.yml"
LOG_NAME = "prometheus.log"


class PrometheusError(RuntimeError):
    """Any failure talking to or running the Prometheus child process."""


class PrometheusUnavailable(PrometheusError):
    """The server is not reachable (not started, killed, or still replaying its WAL)."""


class PrometheusQueryError(PrometheusError):
    """Prometheus answered, but with an error (bad PromQL, unsupported result type...)."""


def _find_binary(name: str, env_var: str) -> str:
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if not found:
        raise PrometheusError(
            f"`{name}` not found on PATH (set {env_var}, or run scripts/setup.sh which installs the "
            "Debian `prometheus` package)"
        )
    return found


def prometheus_path() -> str:
    """Path of the `prometheus` server binary ($MODELDEPLOY_PROMETHEUS overrides PATH lookup)."""
    return _find_binary("prometheus", PROMETHEUS_BINARY_ENV)


def promtool_path() -> str:
    """Path of `promtool` ($MODELDEPLOY_PROMTOOL overrides PATH lookup)."""
    return _find_binary("promtool", PROMTOOL_BINARY_ENV)


def prometheus_duration(seconds: float) -> str:
    """Seconds as a Prometheus duration string (``0.5`` -> ``500ms``, ``2`` -> ``2s``)."""
    millis = int(round(seconds * 1000))
    if millis <= 0:
        raise ValueError(f"duration must be positive, got {seconds!r}")
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


@dataclass(frozen=True)
class ScrapeTarget:
    """One endpoint to scrape: its job label, ``host:port``, metrics path and extra target labels."""

    job: str
    address: str
    path: str = "/metrics"
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def coerce(cls, value: ScrapeTarget | Sequence[Any]) -> ScrapeTarget:
        """Accept a `ScrapeTarget` or a ``(job, address[, path[, labels]])`` tuple."""
        if isinstance(value, ScrapeTarget):
            return value
        if not isinstance(value, (tuple, list)) or not 2 <= len(value) <= 4:
            raise ValueError(f"a scrape target is (job, host:port, path, labels), got {value!r}")
        job, address, *rest = value
        path = rest[0] if rest else "/metrics"
        labels = rest[1] if len(rest) > 1 else {}
        return cls(str(job), str(address), str(path or "/metrics"), dict(labels or {}))

    def target_group(self) -> dict[str, Any]:
        """This target as a file_sd / static_configs target group."""
        host = self.address.rsplit(":", 1)[0]
        if host not in (LISTEN_HOST, "localhost"):
            # The sandbox only ever scrapes loopback servers it started itself.
            raise ValueError(f"scrape target {self.address!r} is not on {LISTEN_HOST}")
        path = self.path if self.path.startswith("/") else "/" + self.path
        labels = {str(k): str(v) for k, v in self.labels.items()}
        labels.update({"job": self.job, "__metrics_path__": path})
        return {"targets": [self.address], "labels": labels}


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


class PrometheusServer:
    """The real `prometheus` binary as a child process on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        targets: Iterable[ScrapeTarget | Sequence[Any]] = (),
        *,
        scrape_interval: float = 1.0,
        scrape_timeout: float | None = None,
        evaluation_interval: float | None = None,
        target_mode: str = "file_sd",
        file_sd_refresh: float = 1.0,
        rule_files: Iterable[str | os.PathLike[str]] = (),
        storage_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
        log_level: str = "warn",
    ) -> None:
        if target_mode not in ("file_sd", "reload"):
            raise ValueError("target_mode must be 'file_sd' or 'reload'")
        self.scrape_interval = float(scrape_interval)
        self.scrape_timeout = float(scrape_timeout) if scrape_timeout else min(self.scrape_interval, 10.0)
        if self.scrape_timeout > self.scrape_interval:
            raise ValueError("scrape_timeout must not exceed scrape_interval")
        self.evaluation_interval = float(evaluation_interval or scrape_interval)
        self.target_mode = target_mode
        self.file_sd_refresh = float(file_sd_refresh)
        self.rule_files = [str(Path(p).resolve()) for p in rule_files]
        self.binary = binary or prometheus_path()
        self.extra_args = list(extra_args)
        self.log_level = log_level
        self._targets: list[ScrapeTarget] = [ScrapeTarget.coerce(t) for t in targets]
        self._fixed_port = port
        self.port: int = port or free_port()
        self._workdir: Path | None = None
        self._own_storage = storage_dir is None
        self._storage_arg = Path(storage_dir).resolve() if storage_dir else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._started_once = False

    # ------------------------------------------------------------------ properties
    @property
    def url(self) -> str:
        return f"http://{LISTEN_HOST}:{self.port}"

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="modeldeploy-prometheus-"))
        return self._workdir

    @property
    def storage_dir(self) -> Path:
        return self._storage_arg or self.workdir / "data"

    @property
    def config_path(self) -> Path:
        return self.workdir / CONFIG_NAME

    @property
    def log_path(self) -> Path:
        return self.workdir / LOG_NAME

    @property
    def targets(self) -> list[ScrapeTarget]:
        return list(self._targets)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    # ------------------------------------------------------------------ configuration
    def config(self) -> dict[str, Any]:
        """The Prometheus configuration this server runs with (as a dict)."""
        job: dict[str, Any] = {"job_name": "sandbox"}
        if self.target_mode == "file_sd":
            job["file_sd_configs"] = [
                {
                    "files": [str(self.workdir / FILE_SD_NAME)],
                    "refresh_interval": prometheus_duration(self.file_sd_refresh),
                }
            ]
        else:
            job["static_configs"] = [t.target_group() for t in self._targets]
        cfg: dict[str, Any] = {
            "global": {
                "scrape_interval": prometheus_duration(self.scrape_interval),
                "scrape_timeout": prometheus_duration(self.scrape_timeout),
                "evaluation_interval": prometheus_duration(self.evaluation_interval),
            },
            "scrape_configs": [job],
        }
        if self.rule_files:
            cfg["rule_files"] = list(self.rule_files)
        return cfg

    def _write_files(self) -> None:
        _atomic_write(self.workdir / FILE_SD_NAME, json.dumps([t.target_group() for t in self._targets], indent=1))
        _atomic_write(self.config_path, yaml.safe_dump(self.config(), sort_keys=False))

    def set_targets(self, targets: Iterable[ScrapeTarget | Sequence[Any]]) -> None:
        """Replace the scrape targets. Takes effect in 5-10 s (Prometheus' discovery throttles)."""
        self._targets = [ScrapeTarget.coerce(t) for t in targets]
        for target in self._targets:
            target.target_group()  # validate before writing anything
        self._write_files()
        if self.target_mode == "reload" and self.running:
            self.reload()

    def reload(self) -> None:
        """POST /-/reload (needs --web.enable-lifecycle, which we always pass)."""
        try:
            resp = httpx.post(f"{self.url}/-/reload", timeout=10)
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(f"reload failed: {exc}") from exc
        if resp.status_code != 200:
            raise PrometheusError(f"reload failed: HTTP {resp.status_code}: {resp.text.strip()}")

    # ------------------------------------------------------------------ lifecycle
    def _command(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.storage_dir}",
            f"--web.listen-address={LISTEN_HOST}:{self.port}",
            "--web.enable-lifecycle",
            f"--log.level={self.log_level}",
            *self.extra_args,
        ]

    def start(self) -> PrometheusServer:
        """Start the child process (no-op if running). Returns at once; see `wait_ready`."""
        if self.running:
            return self
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self._write_files()
        self._close_log()
        self._log_file = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,  # a Ctrl-C in the terminal is for us, not for the child
        )
        self._started_once = True
        return self

    def _port_taken(self) -> bool:
        return "address already in use" in self.log_tail().lower()

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Block until GET /-/ready answers 200 (ready in < 0.2 s; longer after a big WAL replay)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while True:
                self._check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.url}/-/ready").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise PrometheusUnavailable(f"not ready after {timeout}s; log tail:\n{self.log_tail()}")
                time.sleep(0.05)

    async def wait_ready_async(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while True:
                self._check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/-/ready")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise PrometheusUnavailable(f"not ready after {timeout}s; log tail:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    def _check_alive(self) -> None:
        if self._proc is None:
            raise PrometheusUnavailable("Prometheus was never started")
        code = self._proc.poll()
        if code is not None:
            raise PrometheusUnavailable(f"Prometheus exited with code {code}; log tail:\n{self.log_tail()}")

    def start_and_wait(self, timeout: float = 15.0) -> PrometheusServer:
        """`start` + `wait_ready`; on the first start, retries on another port if ours was taken."""
        for attempt in range(3):
            self.start()
            try:
                self.wait_ready(timeout)
                return self
            except PrometheusUnavailable:
                if attempt < 2 and self._fixed_port is None and not self.running and self._port_taken():
                    self.port = free_port()
                    continue
                raise
        raise AssertionError("unreachable")

    def _signal_and_wait(self, sig: int, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=5)
        self._proc = None
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the server (a crash). The TSDB stays; `start` replays its WAL on the same port."""
        self._signal_and_wait(signal.SIGKILL, timeout=5)

    def terminate(self) -> None:
        """SIGTERM and wait (a clean shutdown), keeping the working directory and TSDB."""
        self._signal_and_wait(signal.SIGTERM, timeout=15)

    def stop(self, keep_data: bool = False) -> None:
        """SIGTERM, wait, then delete the working directory (and our own TSDB) unless `keep_data`."""
        self.terminate()
        if not keep_data:
            self._cleanup()

    def restart(self, keep_data: bool = True, timeout: float = 15.0) -> None:
        """Stop (SIGTERM) if running and start again on the same port; `keep_data=False` wipes the TSDB."""
        self.terminate()
        if not keep_data:
            shutil.rmtree(self.storage_dir, ignore_errors=True)
        self.start()
        self.wait_ready(timeout)

    def _cleanup(self) -> None:
        self._close_log()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> PrometheusServer:
        return self.start_and_wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> PrometheusServer:
        self.start()
        await self.wait_ready_async()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def __del__(self) -> None:  # last resort: never leak a child process
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                proc.kill()

    # ------------------------------------------------------------------ queries
    def _get_json(self, path: str, params: Mapping[str, str], timeout: float) -> Mapping[str, Any]:
        try:
            resp = httpx.get(f"{self.url}{path}", params=params, timeout=timeout)
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(f"{self.url}{path}: {exc!r}") from exc
        return _decode(resp)

    async def _get_json_async(
        self, path: str, params: Mapping[str, str], timeout: float, client: httpx.AsyncClient | None
    ) -> Mapping[str, Any]:
        try:
            if client is not None:
                resp = await client.get(f"{self.url}{path}", params=params, timeout=timeout)
            else:
                async with httpx.AsyncClient(timeout=timeout) as own:
                    resp = await own.get(f"{self.url}{path}", params=params)
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(f"{self.url}{path}: {exc!r}") from exc
        return _decode(resp)

    def query(self, promql: str, time: float | dt.datetime | None = None, timeout: float = 10.0) -> list[Sample]:
        """Instant query -> samples. Raises PrometheusUnavailable / PrometheusQueryError."""
        return parse_instant_result(self._get_json("/api/v1/query", {"query": promql, **_time_param(time)}, timeout))

    async def query_async(
        self,
        promql: str,
        time: float | dt.datetime | None = None,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> list[Sample]:
        payload = await self._get_json_async("/api/v1/query", {"query": promql, **_time_param(time)}, timeout, client)
        return parse_instant_result(payload)

    def query_value(self, promql: str, time: float | dt.datetime | None = None) -> float | None:
        """The single value of a one-element result, None for an empty result (no data)."""
        samples = self.query(promql, time)
        if not samples:
            return None
        if len(samples) > 1:
            raise PrometheusQueryError(f"expected at most one sample, got {len(samples)}: {promql}")
        return samples[0].value

    def query_range(
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
        return parse_range_result(self._get_json("/api/v1/query_range", params, timeout))

    def active_targets(self) -> list[dict[str, Any]]:
        """The /api/v1/targets activeTargets list (discovered and scraped)."""
        payload = self._get_json("/api/v1/targets", {"state": "active"}, 5.0)
        return list(payload["data"]["activeTargets"])

    def _up_query(self, job: str, labels: Mapping[str, str] | None, healthy: bool = True) -> str:
        matchers = [f"job={_quote(job)}"] + [f"{k}={_quote(v)}" for k, v in (labels or {}).items()]
        return f"up{{{','.join(matchers)}}}" + (" == 1" if healthy else "")

    def wait_for_scrape(
        self, job: str, timeout: float = 20.0, labels: Mapping[str, str] | None = None, healthy: bool = True
    ) -> list[Sample]:
        """Block until ``up{job=...} == 1`` has a sample (a successful scrape); returns those samples.

        ``healthy=False`` waits for any ``up`` sample: the target was discovered and scraped once,
        even if the scrape failed (nothing listening yet)."""
        promql = self._up_query(job, labels, healthy)
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            try:
                found = self.query(promql)
                if found:
                    return found
            except PrometheusUnavailable as exc:
                last_error = exc
                self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no successful scrape of job {job!r} within {timeout}s "
                    f"(last error: {last_error}); targets: {self._targets}"
                )
            time.sleep(min(0.2, self.scrape_interval / 2))

    async def wait_for_scrape_async(
        self, job: str, timeout: float = 20.0, labels: Mapping[str, str] | None = None, healthy: bool = True
    ) -> list[Sample]:
        promql = self._up_query(job, labels, healthy)
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        async with httpx.AsyncClient(timeout=5.0) as client:
            while True:
                try:
                    found = await self.query_async(promql, client=client)
                    if found:
                        return found
                except PrometheusUnavailable as exc:
                    last_error = exc
                    self._check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"no successful scrape of job {job!r} within {timeout}s (last error: {last_error})"
                    )
                await asyncio.sleep(min(0.2, self.scrape_interval / 2))


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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


__all__ = [
    "PrometheusError",
    "PrometheusQueryError",
    "PrometheusServer",
    "PrometheusUnavailable",
    "Sample",
    "ScrapeTarget",
    "Series",
    "parse_instant_result",
    "parse_range_result",
    "prometheus_duration",
    "prometheus_path",
    "promtool_path",
]
