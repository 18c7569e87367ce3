"""One base for the test bed's child-process wrappers: start with a log file, wait for HTTP 200, stop.

`ChildProcess` is what the API emulator's `ApiServerProcess` and the sandbox's operator,
evaluator and Prometheus wrappers share: the `Popen` handle (`proc`), a log file the child
writes to (appended across restarts, so a restarted child's log keeps the first run), `running`,
`terminate` (SIGTERM, wait, SIGKILL if it hangs), `kill` (SIGKILL: a crash at whatever line it was
on), `wait_http_ok` (until a URL answers 200, failing early with the log tail when the child
exits), the log text, and a last-resort kill when the wrapper is garbage-collected with its child
still running. Subclasses build the command and say what "ready" means. Standard library only
(httpx is not needed: urllib, never through an HTTP proxy); nothing of ModelDeploy.

Also here: `free_port` (bind to port 0 on 127.0.0.1) and `atomic_write` (write a sibling, then
``os.replace``, so a reader polling the file never sees half of it).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import IO, Any

LISTEN_HOST = "127.0.0.1"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP proxy


def free_port(host: str = LISTEN_HOST) -> int:
    """A TCP port that was free on `host` a moment ago (the usual bind-to-0 race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def atomic_write(path: pathlib.Path, text: str, encoding: str = "utf-8") -> None:
    """Replace `path`'s content in one step (a hidden sibling file, then os.replace)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding=encoding)
    os.replace(tmp, path)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True if GET `url` answers 200 (any error or other status: False)."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ChildProcess:
    """A child process with a log file; subclasses set `what` and call `_spawn` from their `start`."""

    what = "child process"  # named in error messages

    def __init__(self, *, log_path: str | os.PathLike[str] | None = None) -> None:
        self.log_path: pathlib.Path | None = pathlib.Path(log_path) if log_path else None
        self.proc: subprocess.Popen[Any] | None = None
        self._log_file: IO[bytes] | None = None

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.running else None

    # ------------------------------------------------------------------ start
    def _spawn(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        stdout: Any = None,
        text: bool = False,
        new_session: bool = True,
    ) -> subprocess.Popen[Any]:
        """Popen `command`: stderr (and stdout unless given) appended to the log, stdin closed.

        `new_session`: a Ctrl-C in the terminal is for the parent, which stops its children itself."""
        self._close_log()
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed by _close_log
        log: Any = self._log_file if self._log_file is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log if stdout is None else stdout,
            stderr=log if stdout is not None else subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            text=text,
            start_new_session=new_session,
        )
        return self.proc

    # ------------------------------------------------------------------ stop
    def _signal_and_wait(self, sig: int, timeout: float) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=5)
        self._close_log()

    def terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait, then SIGKILL if it hangs; a child that already exited is left alone."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: the child dies at whatever line it was on."""
        self._signal_and_wait(signal.SIGKILL, 5.0)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the child (subclasses also remove what they own)."""
        self.terminate(timeout)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __del__(self) -> None:  # last resort: never leak a child process
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                proc.kill()

    # ------------------------------------------------------------------ readiness and logs
    def wait_http_ok(self, url: str, timeout: float = 20.0, interval: float = 0.1) -> None:
        """Until GET `url` answers 200; fails early (with the log tail) if the child exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(f"{self.what} exited with {code}:\n{self.log_text()[-3000:]}")
            if http_ok(url):
                return
            time.sleep(interval)
        raise TimeoutError(f"{self.what} not up at {url} in {timeout}s:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        if self.log_path is not None and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


__all__ = ["LISTEN_HOST", "ChildProcess", "atomic_write", "free_port", "http_ok"]
