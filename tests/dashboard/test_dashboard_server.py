"""The real `modeldeploy dashboard` process against the API emulator: the watch, the SSE stream, actions, guards.

No browser here (test_dashboard_browser.py has one): these check the server's contract with httpx.
- changes reach a connected browser through ONE watch (no LIST after the first, nothing while idle);
- a read-only dashboard refuses actions (403);
- with --allow-actions and --identity-header, an action without the header is refused (401), one
  with it sets modeldeploy.io/action + action-by = "<user> via dashboard" on the object;
- a form POST (415), a cross-origin POST (403) and a foreign Host header (421, DNS rebinding) are
  refused; an unknown action is a 400;
- --allow-actions on a public address without --identity-header does not start (exit 2).
"""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import sys
import threading
import time

import httpx
import pytest

from kubeemu.process import ApiServerHTTPError

GROUP, VERSION, PLURAL = "modeldeploy.io", "v1alpha1", "modeldeployments"
_ns = itertools.count(1)


def manifest(name: str, ns: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "model": {"name": "resnet50_chest_xray", "basePath": "s3://models/resnet50", "version": 1},
            "analysis": {"metrics": [{"name": "latency-p95", "builtin": "latency", "max": 100}]},
        },
    }


@pytest.fixture
def namespace(apiserver) -> str:
    ns = f"dash-{next(_ns)}-{int(time.time() * 1000) % 100000}"
    try:
        apiserver.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    except ApiServerHTTPError:
        pass
    return ns


class Dashboard:
    def __init__(self, apiserver, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mdcommon.cli", "dashboard", "--kubeconfig", str(apiserver.kubeconfig), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = self.proc.stdout.readline()
        assert line.startswith("dashboard: http://"), line + self.proc.stderr.read()
        self.url = line.split()[1]
        self.http = httpx.Client(base_url=self.url, timeout=10)
        deadline = time.monotonic() + 20
        while self.http.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the dashboard never listed ModelDeployments"
            time.sleep(0.1)

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(10)


class EventStream:
    """The SSE stream in a thread: (event, data) pairs in a queue."""

    def __init__(self, url: str):
        self.events: queue.Queue = queue.Queue()
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=60))
        self._thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self._thread.start()

    def _read(self, url: str) -> None:
        try:
            with self._client.stream("GET", url + "api/stream") as resp:
                event = None
                for line in resp.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        self.events.put((event, json.loads(line[6:])))
        except httpx.HTTPError:
            pass

    def wait_for(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "no such event in time"
            event, data = self.events.get(timeout=left)
            if predicate(event, data):
                return event, data

    def close(self) -> None:
        self._client.close()


def test_changes_stream_through_one_watch_and_a_read_only_dashboard_refuses_actions(apiserver, namespace):
    apiserver.put_object(GROUP, VERSION, PLURAL, namespace, manifest("first", namespace))
    dash = Dashboard(apiserver, "-n", namespace)
    stream = EventStream(dash.url)
    try:
        _, snapshot = stream.wait_for(lambda e, d: e == "snapshot")
        assert [i["key"] for i in snapshot["items"]] == [f"{namespace}/first"]
        assert snapshot["config"]["allowActions"] is False and snapshot["config"]["actions"] == []

        apiserver.put_object(GROUP, VERSION, PLURAL, namespace, manifest("second", namespace))
        stream.wait_for(lambda e, d: e == "upsert" and d["key"] == f"{namespace}/second")
        apiserver.patch_object(GROUP, VERSION, PLURAL, namespace, "second",
                               {"status": {"phase": "Progressing", "stableVersion": 1, "canaryVersion": 2,
                                           "canaryWeight": 20, "rollout": {"startedAt": "2026-01-01T10:00:00.000Z"}}},
                               subresource="status")  # fmt: skip
        _, upsert = stream.wait_for(lambda e, d: e == "upsert" and d["key"].endswith("/second") and d["phase"] == "Progressing")
        assert upsert["canaryWeight"] == 20 and upsert["rollout"]["version"] == 2
        apiserver.delete_object(GROUP, VERSION, PLURAL, namespace, "first")
        stream.wait_for(lambda e, d: e == "delete" and d["key"] == f"{namespace}/first")

        # Idle: one watch open, no LIST after the first, no request at all for a while.
        before = apiserver.stats(namespace)["requests_by_verb"]
        time.sleep(3)
        after = apiserver.stats(namespace)["requests_by_verb"]
        assert after.get("list", 0) == before.get("list", 0) == 1, (before, after)
        assert after.get("watch", 0) == before.get("watch", 0) >= 1, (before, after)
        assert sum(after.values()) == sum(before.values()), (before, after)

        resp = dash.http.post(f"/api/modeldeployments/{namespace}/second/actions", json={"action": "abort"})
        assert resp.status_code == 403 and "read-only" in resp.json()["error"]
        annotations = apiserver.get_object(GROUP, VERSION, PLURAL, namespace, "second")["metadata"].get("annotations") or {}
        assert "modeldeploy.io/action" not in annotations
        page = dash.http.get("/")
        assert page.status_code == 200 and "<script" in page.text
        assert "default-src 'self'" in page.headers["Content-Security-Policy"] and page.headers["X-Frame-Options"] == "DENY"
        asset = page.text.split('src="./', 1)[1].split('"', 1)[0]
        assert dash.http.get("/" + asset).status_code == 200  # the built bundle is served here, no CDN
    finally:
        stream.close()
        dash.stop()


def test_actions_need_the_trusted_identity_header_and_use_the_plugins_annotations(apiserver, namespace):
    apiserver.put_object(GROUP, VERSION, PLURAL, namespace, manifest("resnet50", namespace))
    dash = Dashboard(apiserver, "-n", namespace, "--allow-actions", "--identity-header", "X-Forwarded-User")
    path = f"/api/modeldeployments/{namespace}/resnet50/actions"
    try:
        assert dash.http.get("/api/config").json()["identity"] == {"mode": "header", "header": "X-Forwarded-User"}
        resp = dash.http.post(path, json={"action": "pause"})
        assert resp.status_code == 401 and "X-Forwarded-User" in resp.json()["error"]
        resp = dash.http.post(path, data={"action": "pause"}, headers={"X-Forwarded-User": "alice"})
        assert resp.status_code == 415  # a plain HTML form (CSRF) cannot send JSON
        resp = dash.http.post(path, json={"action": "pause"}, headers={"X-Forwarded-User": "alice", "Origin": "http://evil.example"})
        assert resp.status_code == 403
        resp = dash.http.get("/api/modeldeployments", headers={"Host": "evil.example:8765"})
        assert resp.status_code == 421  # DNS rebinding: a loopback dashboard answers loopback names only
        resp = dash.http.post(path, json={"action": "explode"}, headers={"X-Forwarded-User": "alice"})
        assert resp.status_code == 400 and "unknown action" in resp.json()["error"]
        assert dash.http.post(f"/api/modeldeployments/{namespace}/nope/actions", json={"action": "pause"},
                              headers={"X-Forwarded-User": "alice"}).status_code == 404  # fmt: skip

        resp = dash.http.post(path, json={"action": "pause"}, headers={"X-Forwarded-User": "alice@example.org"})
        assert resp.status_code == 202, resp.text
        assert resp.json() == {"requested": "pause", "by": "alice@example.org via dashboard"}
        annotations = apiserver.get_object(GROUP, VERSION, PLURAL, namespace, "resnet50")["metadata"]["annotations"]
        assert annotations["modeldeploy.io/action"] == "pause"
        assert annotations["modeldeploy.io/action-by"] == "alice@example.org via dashboard"
    finally:
        dash.stop()


def test_actions_on_a_public_address_without_an_identity_header_do_not_start(apiserver):
    proc = subprocess.run(
        [sys.executable, "-m", "mdcommon.cli", "dashboard", "--kubeconfig", str(apiserver.kubeconfig),
         "--host", "0.0.0.0", "--port", "0", "--allow-actions"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "--identity-header" in proc.stderr and "dashboard: http" not in proc.stdout
