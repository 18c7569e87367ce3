"""The decision record on a sandbox run: `kubectl modeldeploy audit verify` (the real plugin, against the
sandbox's API server while the platform still runs) says OK for the chain the real operator wrote;
after a record is doctored (deleted and recreated, as its immutability forces) it names that record."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_audit_verify_on_a_sandbox_run_then_after_tampering(tmp_path):
    from mdsandbox.cli import run_one

    plugin = shutil.which("kubectl-modeldeploy", path=os.path.dirname(sys.executable))
    seen: dict[str, object] = {}

    def on_finish(sandbox) -> None:
        env = dict(os.environ, KUBECONFIG=str(sandbox.api.kubeconfig))

        def plug(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([plugin, *args, "-n", sandbox.ns], env=env, capture_output=True, text=True, timeout=60)

        seen["ok"] = plug("audit", "verify", sandbox.name)
        seen["show"] = plug("audit", "show", sandbox.name)
        base = f"/api/v1/namespaces/{sandbox.ns}/configmaps"
        victim = sandbox.api.request("GET", f"{base}/{sandbox.name}-audit-00000002")
        record = json.loads(victim["data"]["record.json"])
        record["reason"] = "manual abort by somebody-else"
        doctored = {"apiVersion": "v1", "kind": "ConfigMap", "immutable": True,
                    "metadata": {k: victim["metadata"][k] for k in ("name", "labels", "annotations")},
                    "data": {"record.json": json.dumps(record, sort_keys=True, separators=(",", ":"))}}  # fmt: skip
        sandbox.api.request("DELETE", f"{base}/{victim['metadata']['name']}")
        sandbox.api.request("POST", base, doctored)
        seen["broken"] = plug("audit", "verify", sandbox.name)

    rc, report = run_one(str(ROOT / "examples" / "scenarios" / "manual-abort.yaml"), tmp_path / "r.json", view="lines",
                         workdir=str(tmp_path / "work"), on_finish=on_finish)  # fmt: skip
    assert rc == 0, report and report.get("checks")
    ok, broken = seen["ok"], seen["broken"]
    assert ok.returncode == 0 and ok.stdout.startswith("OK: radiology/resnet50: 2 record(s), chain intact, head "), ok.stdout + ok.stderr
    assert "deployed" in seen["show"].stdout and "aborted" in seen["show"].stdout
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert broken.stdout.startswith("BROKEN: radiology/resnet50: record 2 (resnet50-audit-00000002): content hash"), broken.stdout
    print("\n$ kubectl modeldeploy audit verify resnet50\n" + ok.stdout + seen["show"].stdout
          + "\n# after record 2 was doctored:\n$ kubectl modeldeploy audit verify resnet50\n" + broken.stdout)
