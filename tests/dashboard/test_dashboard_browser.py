"""The dashboard in a real headless Chromium during a real sandbox rollout (issue 13, part 1).

One short sandbox run (tests/dashboard/dashboard-tour.yaml: the real operator process against the
API emulator, the real Prometheus, the simulated fleet and the real online evaluator) with the real
`modeldeploy dashboard --allow-actions` process watching it; browser_flow.mjs drives Debian's
Chromium through playwright-core. The page must show the weight moving and the rollback, every
chart must hold Prometheus points, and pressing Abort must abort the next rollout: the scenario
itself never aborts, so its expectation (historyActions [rolledBack, aborted]) only holds if the
button works end to end, through the same annotation code path as `kubectl modeldeploy abort`.

Screenshots go to out/dashboard/ (canary.png, rolled-back.png, aborted.png); with
MODELDEPLOY_UPDATE_SCREENSHOT=1 the canary one is copied to docs/dashboard-canary.png.
"""

from __future__ import annotations

import getpass
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import pytest

from mdsandbox.scenario_runner import run_scenario
from mdsandbox.scenario import load_scenario

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
FRONTEND = ROOT / "dashboard" / "frontend"
SHOTS = ROOT / "out" / "dashboard"
CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.slow


class DashboardProcess:
    """`modeldeploy dashboard` as its own process; `url` once it listens."""

    def __init__(self, *args: str, log: pathlib.Path):
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mdcommon.cli", "dashboard", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, cwd=ROOT,
        )  # fmt: skip
        line = self.proc.stdout.readline()
        assert line.startswith("dashboard: http://"), f"dashboard did not start: {line!r}; see {log}"
        self.url = line.split()[1]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def test_dashboard_shows_the_rollout_and_its_abort_button_aborts(tmp_path):
    assert os.path.exists(CHROMIUM), "Debian chromium is installed by scripts/setup.sh"
    assert (FRONTEND / "node_modules" / "playwright-core").is_dir(), "scripts/setup.sh runs npm ci in dashboard/frontend"
    assert (ROOT / "dashboard" / "mddashboard" / "static" / "index.html").is_file(), "scripts/setup.sh builds the page"
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    started = time.monotonic()
    scenario = load_scenario(HERE / "dashboard-tour.yaml")
    running: dict = {}

    def on_start(sandbox) -> None:
        running["dashboard"] = DashboardProcess(
            "--kubeconfig", str(sandbox.api.kubeconfig), "--prometheus-url", sandbox.prometheus.url,
            "--allow-actions", "--series-interval", "1", log=tmp_path / "dashboard.log",
        )  # fmt: skip
        env = dict(os.environ, DASHBOARD_URL=running["dashboard"].url, SHOTS_DIR=str(SHOTS), FRONTEND_DIR=str(FRONTEND),
                   STEP_TIMEOUT_MS="70000", CHROMIUM=CHROMIUM)  # fmt: skip
        running["browser"] = subprocess.Popen(
            ["node", str(HERE / "browser_flow.mjs")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        # The browser is up (and the page live) before the scenario's clock starts.
        running["out"] = {}
        reader = threading.Thread(target=lambda: running["out"].update(zip(("stdout", "stderr"), running["browser"].communicate())))
        reader.start()
        running["reader"] = reader
        time.sleep(3)

    import asyncio

    try:
        report = asyncio.run(run_scenario(scenario, workdir=tmp_path / "sandbox", on_start=on_start))
        running["reader"].join(120)
    finally:
        if "browser" in running and running["browser"].poll() is None:
            running["browser"].kill()
        if "dashboard" in running:
            running["dashboard"].stop()
    duration = time.monotonic() - started
    stdout = running["out"].get("stdout", "")
    stderr = running["out"].get("stderr", "")
    assert running["browser"].returncode == 0, f"browser flow failed:\n{stdout[-3000:]}\n{stderr[-3000:]}"
    observed = json.loads(stdout.strip().splitlines()[-1])
    print(f"\nbrowser test: {duration:.0f} s in all; browser steps at {observed['steps']}; screenshots {observed['screenshots']}")

    # The page showed the weight moving, then the rollback, then the abort.
    v2 = [w["weight"] for w in observed["weights"] if w["canary"] == "v2"]
    assert "20%" in v2 and "50%" in v2 and v2.index("20%") < v2.index("50%"), observed["weights"]
    assert observed["steps"]["v2 rolled back"] < observed["steps"]["abort clicked"] < observed["steps"]["v3 aborted"]
    assert not observed["consoleErrors"], observed["consoleErrors"]  # CSP violations and script errors included
    # The button acted through the annotation, as the local user, and the audit trail says so.
    who = f"{os.environ.get('USER') or getpass.getuser()} via dashboard"
    assert f"requested by {who}" in (observed.get("actionResult") or ""), observed.get("actionResult")
    assert f"manual abort by {who}" in observed["abortRecord"], observed["abortRecord"]
    # The scenario's own expectations: v2 rolled back, v3 aborted (by the click), nothing promoted.
    assert report["passed"], json.dumps(report["expectations"], indent=1) + "\n" + "\n".join(report["errors"])
    aborted = [h for h in report["history"] if h["action"] == "aborted"]
    assert len(aborted) == 1 and aborted[0]["version"] == 3 and who in aborted[0]["reason"]
    for name, file in observed["screenshots"].items():
        data = pathlib.Path(file).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000, (name, len(data))
    if os.environ.get("MODELDEPLOY_UPDATE_SCREENSHOT") == "1":
        shutil.copy(observed["screenshots"]["canary"], ROOT / "docs" / "dashboard-canary.png")
