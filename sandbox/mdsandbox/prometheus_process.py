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

This module is the process only. Queries go through ONE async client, `prometheus_api.PrometheusApi`
(`server.api`: instant and range queries, targets, `wait_for_scrape`). Usable as a context
manager, sync or async::

    async with PrometheusServer([("fleet", "127.0.0.1:8080", "/metrics", {})], scrape_interval=0.5) as prom:
        await prom.api.wait_for_scrape("fleet")
        await prom.api.query('sum(rate(istio_requests_total[5s]))')
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from kubeemu.childprocess import LISTEN_HOST, ChildProcess, atomic_write, free_port, http_ok
from mdsandbox.prometheus_api import PrometheusApi, PrometheusError, PrometheusUnavailable

PROMETHEUS_BINARY_ENV = "MODELDEPLOY_PROMETHEUS"
PROMTOOL_BINARY_ENV = "MODELDEPLOY_PROMTOOL"
FILE_SD_NAME = "targets.json"
CONFIG_NAME = "prometheus.yml"
LOG_NAME = "prometheus.log"


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


class PrometheusServer(ChildProcess):
    """The real `prometheus` binary as a child process on 127.0.0.1 (see the module docstring)."""

    what = "Prometheus"

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
        super().__init__()
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
        self.api = PrometheusApi(lambda: self.url, check_alive=self._check_alive,
                                 poll_interval=min(0.2, self.scrape_interval / 2))  # fmt: skip

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
    def targets(self) -> list[ScrapeTarget]:
        return list(self._targets)

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
        atomic_write(self.workdir / FILE_SD_NAME, json.dumps([t.target_group() for t in self._targets], indent=1))
        atomic_write(self.config_path, yaml.safe_dump(self.config(), sort_keys=False))

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
        self.log_path = self.workdir / LOG_NAME
        self._spawn(self._command(), cwd=self.workdir)
        return self

    def _port_taken(self) -> bool:
        return "address already in use" in self.log_tail().lower()

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Block until GET /-/ready answers 200 (ready in < 0.2 s; longer after a big WAL replay)."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if http_ok(f"{self.url}/-/ready"):
                return
            if time.monotonic() > deadline:
                raise PrometheusUnavailable(f"not ready after {timeout}s; log tail:\n{self.log_tail()}")
            time.sleep(0.05)

    def _check_alive(self) -> None:
        if self.proc is None:
            raise PrometheusUnavailable("Prometheus was never started")
        code = self.proc.poll()
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

    def kill(self) -> None:
        """SIGKILL the server (a crash). The TSDB stays; `start` replays its WAL on the same port."""
        super().kill()
        self.proc = None

    def terminate(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait (a clean shutdown), keeping the working directory and TSDB."""
        super().terminate(timeout)
        self.proc = None

    def stop(self, timeout: float = 15.0, keep_data: bool = False) -> None:
        """SIGTERM, wait, then delete the working directory (and our own TSDB) unless `keep_data`."""
        self.terminate(timeout)
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

    def __enter__(self) -> PrometheusServer:
        return self.start_and_wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> PrometheusServer:
        return await asyncio.to_thread(self.start_and_wait)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


__all__ = [
    "LISTEN_HOST",
    "PrometheusServer",
    "ScrapeTarget",
    "prometheus_duration",
    "prometheus_path",
    "promtool_path",
]
