"""Child-process chores shared by the sandbox's process wrappers (operator, evaluator, Prometheus)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (the usual bind-to-0 race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def terminate(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL if it hangs; a process that already exited is left alone."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def wait_http_ok(
    url: str, *, what: str, proc: subprocess.Popen | None, log_text: Callable[[], str], timeout: float = 20.0
) -> None:
    """Until GET `url` answers 200; fails early (with the log tail) if the process exits."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is None or proc.poll() is not None:
            code = None if proc is None else proc.returncode
            raise RuntimeError(f"{what} exited with {code}:\n{log_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not up at {url} in {timeout}s:\n{log_text()[-3000:]}")
