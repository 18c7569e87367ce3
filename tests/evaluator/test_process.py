"""The evaluator as the container runs it (`modeldeploy evaluator run`, a real child process) and in the sandbox.

- `--help` (the image's entry point) does not import TensorFlow;
- `--once` prints the evaluation of every listed version as JSON and says by its exit code whether
  they all succeeded;
- EvaluatorProcess plays kubelet for the sandbox: the operator-rendered ConfigMap in the real API
  emulator becomes the evaluator's file, changes to it reach the running process, and its
  /metrics is what the sandbox's Prometheus scrapes.
"""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys

import httpx
import pytest

from evaluator_testkit import SMALL_GOLDEN, parse_metrics, pick, value, wait_for, write_config
from modeldeploy.plans import Target, VersionPlan
from modeldeploy.render import evaluator as render_evaluator
from mdsandbox.evaluator_process import EvaluatorProcess
from modeldeploy.spec import parse_spec


def test_evaluator_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from modeldeploy.cli import main\n"
        "try:\n    main(['evaluator', 'run', '--help'])\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'PIL', 'aiohttp', 'kopf') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--endpoint-override" in proc.stdout and "--metrics-port" in proc.stdout
    assert "HEAVY []" in proc.stdout, proc.stdout


async def _cli(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "modeldeploy.cli", "evaluator", "run", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


async def test_once_prints_every_versions_evaluation(tmp_path, small_fleet):
    cfg = write_config(tmp_path / "evaluator.yaml", [(1, "stable"), (3, "canary")], golden=SMALL_GOLDEN)
    rc, out, err = await _cli("--config", str(cfg), "--endpoint-override", small_fleet.url, "--once")
    assert rc == 0, err
    report = json.loads(out)
    assert report["v1"]["ok"] and report["v1"]["aurocMean"] == pytest.approx(0.85, abs=0.01)
    assert report["v3"]["aurocMean"] == pytest.approx(0.80, abs=0.01) and report["v3"]["psiMax"]["v1"] < 0.1
    assert report["v1"]["samples"] == 120 and len(report["v1"]["aurocPerFinding"]) == 14

    small_fleet.set_ready("3", 0)  # no longer served
    rc, out, err = await _cli("--config", str(cfg), "--endpoint-override", small_fleet.url, "--once")
    report = json.loads(out)
    assert rc == 1 and report["v1"]["ok"] and not report["v3"]["ok"] and report["v3"]["error"].startswith("http_4xx")

    rc, out, err = await _cli("--config", str(tmp_path / "missing.yaml"), "--once")
    assert rc == 2 and "missing.yaml" in err


def _configmap(versions: list[VersionPlan]) -> dict:
    spec = parse_spec({
        "model": {"name": "resnet50_chest_xray", "basePath": "s3://models/resnet50", "version": 1},
        "evaluation": {"goldenSet": {"uri": SMALL_GOLDEN}, "interval": "1s", "timeoutSeconds": 1},
    })  # fmt: skip
    return render_evaluator.configmap(Target(name="resnet50", namespace="ev-proc", spec=copy.deepcopy(spec)), versions)


async def test_sandbox_evaluator_process_follows_the_configmap(apiserver, small_fleet, tmp_path):
    ns = "ev-proc"
    try:
        apiserver.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    except Exception:  # noqa: BLE001 - already there from an earlier run of this session
        pass
    process = EvaluatorProcess(api=apiserver, namespace=ns, name="resnet50", fleet_url=small_fleet.url,
                               workdir=tmp_path, log_path=tmp_path / "evaluator.log")  # fmt: skip
    target = process.scrape_target()
    assert target.job == "evaluator" and target.address == f"127.0.0.1:{process.port}" and target.path == "/metrics"
    # started before the operator has rendered the ConfigMap, as in the sandbox
    await asyncio.to_thread(process.start)
    try:
        async with httpx.AsyncClient(base_url=process.url, timeout=5) as client:

            async def scrape() -> dict:
                return parse_metrics((await client.get("/metrics")).text)

            assert (await client.get("/healthz")).json()["configLoaded"] is False
            apiserver.put_object("", "v1", "configmaps", ns, _configmap([VersionPlan(1, "stable", 2)]))
            await wait_for(lambda: _has(scrape, "modeldeploy_evaluator_auroc_mean", version="v1"), timeout=15)
            samples = await scrape()
            assert value(samples, "modeldeploy_evaluator_auroc_mean", namespace=ns, modeldeployment="resnet50",
                         version="v1") == pytest.approx(0.85, abs=0.01)  # fmt: skip

            # the operator starts a canary: the ConfigMap changes, the running evaluator follows
            apiserver.put_object("", "v1", "configmaps", ns, _configmap([VersionPlan(1, "stable", 2), VersionPlan(3, "canary", 1)]))
            await wait_for(lambda: _has(scrape, "modeldeploy_evaluator_psi_max", version="v3", baseline_version="v1"), timeout=15)
            assert value(await scrape(), "modeldeploy_evaluator_auroc_mean", version="v3") == pytest.approx(0.80, abs=0.01)
            assert process.syncs == 2 and process.config_path.exists()
            # Istio's metrics tell the evaluator's probes from live traffic, as a mesh would (source_workload)
            assert 'source_workload="resnet50-evaluator"' in small_fleet.render_istio_metrics()
    finally:
        await asyncio.to_thread(process.stop)
    assert not process.running and process.proc.returncode == 0  # SIGTERM: a clean exit
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{process.url}/healthz", timeout=1)
    log = process.log_text()
    assert "v3 (canary): mean AUROC" in log and "Traceback" not in log


async def _has(scrape, name, **labels) -> bool:
    return bool(pick(await scrape(), name, **labels))
