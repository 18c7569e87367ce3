"""
Running the API server emulator as its own process, and talking to it from tests and the sandbox.

:class:`ApiServerProcess` starts ``python -m kubeemu.apiserver`` on 127.0.0.1 with a
free port, waits for its ready line, and offers the emulator controls (stats, faults, CRDs) and
plain object access over HTTP (stdlib only, usable from any thread). Use it as a context manager
or call :meth:`start` / :meth:`stop`; point kopf, kubectl or the kubernetes client at
:attr:`kubeconfig` (or pass :meth:`env` to subprocesses).
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

import yaml

from kubeemu.childprocess import ChildProcess

_PACKAGE_ROOT = pathlib.Path(__file__).resolve().parents[1]  # the folder that holds the kubeemu package
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP proxy


def write_kubeconfig(
    path: str | os.PathLike[str], server_url: str, *, namespace: str = "default", name: str = "modeldeploy-emulator"
) -> pathlib.Path:
    """Write a kubeconfig with one cluster/user/context pointing at the emulator (no TLS)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server_url}}],
        "users": [{"name": f"{name}-user", "user": {"token": "emulator-token"}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-user", "namespace": namespace}}],
        "current-context": name,
    }
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return target


class ApiServerHTTPError(Exception):
    """An error answer of the emulator (``.code``, ``.headers`` and the decoded ``.body``, a Status)."""

    def __init__(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {code}: {body}")
        self.code = code
        self.body = body
        self.headers = headers or {}


def _resource_path(
    group: str,
    version: str,
    plural: str,
    namespace: str | None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    path = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


class ApiServerProcess(ChildProcess):
    """The emulator in a child process (127.0.0.1, a free port unless ``port`` is given)."""

    what = "the API server emulator"

    def __init__(
        self,
        *,
        crd_files: Iterable[str | os.PathLike[str]] = (),
        kubeconfig: str | os.PathLike[str] | None = None,
        port: int = 0,
        workdir: str | os.PathLike[str] | None = None,
        history_limit: int | None = None,
        startup_timeout: float = 30.0,
        log_level: str = "WARNING",
        lenient: bool = False,
        authorization_mode: str = "AlwaysAllow",
        admission_plugins: Iterable[str] = (),
        hidden_versions: Iterable[str] = (),
        package_root: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        # the folder to import kubeemu from (a benchmark's baseline checkout); default: this one's
        self.package_root = pathlib.Path(package_root) if package_root is not None else _PACKAGE_ROOT
        self.lenient = lenient
        self.authorization_mode = authorization_mode
        self.admission_plugins = tuple(admission_plugins)
        self.hidden_versions = tuple(hidden_versions)
        self.crd_files = [str(pathlib.Path(path).absolute()) for path in crd_files]
        self.port = port
        self.history_limit = history_limit
        self.startup_timeout = startup_timeout
        self.log_level = log_level
        self._own_workdir = workdir is None
        self.workdir = pathlib.Path(workdir) if workdir is not None else None
        self._kubeconfig_arg = kubeconfig
        self.url: str = ""
        self.kubeconfig: str = ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Self:
        if self.proc is not None:
            raise RuntimeError("the API server process is already started")
        if self.workdir is None:
            self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="modeldeploy-apiserver-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        kubeconfig = pathlib.Path(self._kubeconfig_arg or self.workdir / "kubeconfig").absolute()
        self.log_path = self.workdir / "apiserver.log"
        command = [
            sys.executable,
            "-m",
            "kubeemu.apiserver",
            "--port",
            str(self.port),
            "--kubeconfig",
            str(kubeconfig),
            "--log-level",
            self.log_level,
        ]
        for path in self.crd_files:
            command += ["--crd", path]
        if self.history_limit is not None:
            command += ["--history-limit", str(self.history_limit)]
        if self.lenient:
            command.append("--lenient")
        command += ["--authorization-mode", self.authorization_mode]
        if self.admission_plugins:
            command += ["--enable-admission-plugins", ",".join(self.admission_plugins)]
        for hidden in self.hidden_versions:
            command += ["--hide-version", hidden]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.package_root), env.get("PYTHONPATH")]))
        # The ready line (JSON: url, kubeconfig) comes on stdout; the log gets stderr.
        process = self._spawn(command, env=env, stdout=subprocess.PIPE, text=True, new_session=False)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(self.startup_timeout)
        if not lines or not lines[0].strip():
            self.stop()
            raise RuntimeError(f"the API server emulator did not start; log:\n{self.log_text()[-4000:]}")
        ready = json.loads(lines[0])
        self.url, self.kubeconfig = ready["url"], ready["kubeconfig"]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        process = self.proc
        self.terminate(timeout)
        self.proc = None
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def env(self, **extra: str) -> dict[str, str]:
        """os.environ plus KUBECONFIG pointing at this emulator (for kopf/kubectl subprocesses)."""
        return {**os.environ, "KUBECONFIG": self.kubeconfig, **extra}

    # --- HTTP --------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Any:
        """One HTTP request to the emulator; returns the decoded JSON; raises ApiServerHTTPError."""
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            url, data=data, method=method.upper(), headers={"Content-Type": content_type, "Accept": "application/json"}
        )
        try:
            with _OPENER.open(req, timeout=timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                decoded = json.loads(raw)
            except ValueError:
                decoded = raw.decode(errors="replace")
            raise ApiServerHTTPError(e.code, decoded, dict(e.headers.items())) from None
        return json.loads(text) if text else None

    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        return self.request("GET", "/_emulator/stats", params={"namespace": namespace} if namespace else None)

    def reset_stats(self) -> None:
        self.request("POST", "/_emulator/reset-stats", {})

    def set_faults(self, config: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """Configure faults with camelCase keys, e.g. set_faults(errorRate=0.2, statuses=[500])."""
        return self.request("POST", "/_emulator/faults", {**(config or {}), **kwargs})

    def clear_faults(self) -> None:
        self.request("POST", "/_emulator/faults", {})

    def add_user(self, token: str, name: str, groups: Iterable[str] = ()) -> None:
        """Register a bearer token for a user (authorized by RBAC with --authorization-mode RBAC)."""
        self.request("POST", "/_emulator/users", {"token": token, "user": name, "groups": list(groups)})

    def set_access(
        self, *, authorization_mode: str | None = None, admission_plugins: Iterable[str] | None = None
    ) -> dict:
        body: dict[str, Any] = {}
        if authorization_mode is not None:
            body["authorizationMode"] = authorization_mode
        if admission_plugins is not None:
            body["admissionPlugins"] = list(admission_plugins)
        return self.request("POST", "/_emulator/access", body)

    def user_kubeconfig(self, path: str | os.PathLike[str], token: str, *, namespace: str = "default") -> pathlib.Path:
        """A kubeconfig for this emulator that authenticates with ``token`` (see :meth:`add_user`)."""
        written = write_kubeconfig(path, self.url, namespace=namespace)
        config = yaml.safe_load(written.read_text())
        config["users"][0]["user"]["token"] = token
        written.write_text(yaml.safe_dump(config, sort_keys=False))
        return written

    def register_crd(self, crd: dict[str, Any]) -> list[str]:
        return self.request("POST", "/_emulator/crds", crd)["registered"]

    def register_crd_file(self, path: str | os.PathLike[str]) -> list[str]:
        registered: list[str] = []
        with open(path, encoding="utf-8") as f:
            for doc in yaml.load_all(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    registered += self.register_crd(doc)
        return registered

    def get_object(
        self, group: str, version: str, plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        try:
            return self.request("GET", _resource_path(group, version, plural, namespace, name))
        except ApiServerHTTPError as e:
            if e.code == 404:
                return None
            raise

    def list_objects(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        params = {
            key: value for key, value in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if value
        }
        return self.request("GET", _resource_path(group, version, plural, namespace), params=params)["items"]

    def put_object(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        obj: dict[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Create or replace (unconditionally unless obj carries a resourceVersion)."""
        name = obj["metadata"]["name"]
        if subresource is None and self.get_object(group, version, plural, namespace, name) is None:
            result = self.request("POST", _resource_path(group, version, plural, namespace), obj)
            if "status" in obj and result.get("status") != obj["status"]:
                result = self.patch_object(
                    group, version, plural, namespace, name, {"status": obj["status"]}, subresource="status"
                )
            return result
        return self.request("PUT", _resource_path(group, version, plural, namespace, name, subresource), obj)

    def patch_object(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        content_type = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
        }[patch_type]
        return self.request(
            "PATCH",
            _resource_path(group, version, plural, namespace, name, subresource),
            patch,
            content_type=content_type,
        )

    def delete_object(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> Any:
        try:
            return self.request("DELETE", _resource_path(group, version, plural, namespace, name))
        except ApiServerHTTPError as e:
            if e.code == 404:
                return None
            raise

    def wait_for(self, predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
        """Poll ``predicate()`` until it returns a truthy value (returned) or fail after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)
