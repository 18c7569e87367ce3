"""The real operator (`modeldeploy operator`) as a child process, for the sandbox and the tests.

It is started exactly as the container starts it, pointed at a kubeconfig (the API emulator) and a
Prometheus URL; it can be stopped gracefully, SIGKILLed at any moment and started again — the
fault scenarios need all three. `starts` counts the starts (the runner reads the operator's
counters per start).
"""

from __future__ import annotations

import os
import sys

from kubeemu.childprocess import LISTEN_HOST, ChildProcess, free_port


class OperatorProcess(ChildProcess):
    what = "operator"

    def __init__(
        self,
        *,
        kubeconfig: str | os.PathLike[str],
        namespaces: list[str] | None = None,
        prometheus_url: str | None = None,
        log_path: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        metrics_port: int | None = None,
    ):
        super().__init__(log_path=log_path)
        self.kubeconfig = str(kubeconfig)
        self.namespaces = namespaces or []
        self.prometheus_url = prometheus_url
        self.extra_env = dict(env or {})
        self.metrics_port = metrics_port or free_port()
        self.starts = 0

    @property
    def metrics_url(self) -> str:
        return f"http://{LISTEN_HOST}:{self.metrics_port}/metrics"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KUBECONFIG=self.kubeconfig,
            MODELDEPLOY_METRICS_HOST=LISTEN_HOST,
            MODELDEPLOY_METRICS_PORT=str(self.metrics_port),
            PYTHONUNBUFFERED="1",
        )
        if self.prometheus_url:
            env["MODELDEPLOY_PROMETHEUS_URL"] = self.prometheus_url
        env.update(self.extra_env)
        return env

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "modeldeploy.cli", "operator"]
        for ns in self.namespaces:
            args += ["--namespace", ns]
        if not self.namespaces:
            args.append("--all-namespaces")
        return args

    def start(self) -> OperatorProcess:
        if self.running:
            return self
        self._spawn(self.command(), env=self.environment())
        self.starts += 1
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it hangs."""
        self.terminate(timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def wait_metrics(self, timeout: float = 20.0) -> None:
        """Until the operator's /metrics answers (it is up and its startup handler ran)."""
        self.wait_http_ok(self.metrics_url, timeout=timeout)

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
