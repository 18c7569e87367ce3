"""The real operator (`modeldeploy operator`) as a child process, for the sandbox and the tests.

It is started exactly as the container starts it, pointed at a kubeconfig (the API emulator) and a
Prometheus URL; it can be stopped gracefully, SIGKILLed at any moment and started again — the
fault scenarios need all three.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from mdsandbox.processes import free_port, terminate, wait_http_ok


class OperatorProcess:
    def __init__(
        self,
        *,
        kubeconfig: str | os.PathLike,
        namespaces: list[str] | None = None,
        prometheus_url: str | None = None,
        log_path: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
        metrics_port: int | None = None,
    ):
        self.kubeconfig = str(kubeconfig)
        self.namespaces = namespaces or []
        self.prometheus_url = prometheus_url
        self.log_path = pathlib.Path(log_path) if log_path else None
        self.extra_env = dict(env or {})
        self.metrics_port = metrics_port or free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._log_file = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KUBECONFIG=self.kubeconfig,
            MODELDEPLOY_METRICS_HOST="127.0.0.1",
            MODELDEPLOY_METRICS_PORT=str(self.metrics_port),
            PYTHONUNBUFFERED="1",
        )
        if self.prometheus_url:
            env["MODELDEPLOY_PROMETHEUS_URL"] = self.prometheus_url
        env.update(self.extra_env)
        return env

    def start(self) -> OperatorProcess:
        if self.running:
            return self
        args = [sys.executable, "-m", "modeldeploy.cli", "operator"]
        for ns in self.namespaces:
            args += ["--namespace", ns]
        if not self.namespaces:
            args.append("--all-namespaces")
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")
            out = self._log_file
        else:
            out = subprocess.DEVNULL
        self.proc = subprocess.Popen(
            args, env=self.environment(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.starts += 1
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it hangs."""
        if self.proc is None:
            return
        terminate(self.proc, timeout)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: the operator dies at whatever line it was on."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._close_log()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_text(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""

    def wait_metrics(self, timeout: float = 20.0) -> None:
        """Until the operator's /metrics answers (it is up and its startup handler ran)."""
        wait_http_ok(self.metrics_url, what="operator", proc=self.proc, log_text=self.log_text, timeout=timeout)

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
