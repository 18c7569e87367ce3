"""Every shipped scenario in examples/scenarios/ runs through the real `modeldeploy sandbox run` command.

Each run starts its own API emulator, Prometheus, simulated fleet and operator process; three
run at a time (they mostly wait on the scenario clock). A scenario passes when its `expect` holds
(exit code 0); the REPORT.json must carry the contract's fields with real values and the PNG must
be a real image. The oracle itself is tested too: the scenarios in tests/data/failing-scenarios/
are designed to fail (each names, in a `# must fail:` line, the checks that must fail) and must
exit 1 with exactly those checks failed and no run error (the oracle's table is in
tests/unit/test_expectations.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import pathlib
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "examples" / "scenarios").glob("*.yaml"))
BAD = sorted((ROOT / "tests" / "data" / "bad-scenarios").glob("*.yaml"))
FAILING = sorted((ROOT / "tests" / "data" / "failing-scenarios").glob("*.yaml"))
PARALLEL = 3

pytestmark = pytest.mark.slow


async def _run(path: pathlib.Path, out: pathlib.Path, sem: asyncio.Semaphore) -> tuple[int, str]:
    async with sem:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "modeldeploy.cli", "sandbox", "run", str(path),
            "--report", str(out / f"{path.stem}.json"), "--view", "lines", "--workdir", str(out / f"{path.stem}.work"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
        )
        stdout, _ = await asyncio.wait_for(proc.communicate(), timeout=600)
        return proc.returncode, stdout.decode(errors="replace")


@pytest.fixture(scope="session")
def scenario_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenarios")

    async def all_runs():
        sem = asyncio.Semaphore(PARALLEL)
        # the designed-to-fail ones first: they are short and fill the pool while the long ones start
        paths = FAILING + SCENARIOS
        results = await asyncio.gather(*(_run(p, out, sem) for p in paths))
        return dict(zip((p.stem for p in paths), results))

    return out, asyncio.run(all_runs())


def test_at_least_ten_scenarios_with_expectations():
    assert len(SCENARIOS) >= 10
    for path in SCENARIOS:
        assert yaml.safe_load(path.read_text()).get("expect"), path.name


# The first test builds `scenario_runs` (every scenario, PARALLEL at a time, each bounded at 600 s by _run):
# its pytest timeout covers all the rounds, not one.
ALL_RUNS_TIMEOUT = 600 + 150 * math.ceil(len(SCENARIOS) / PARALLEL)


@pytest.mark.timeout(ALL_RUNS_TIMEOUT)
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_passes(path, scenario_runs):
    out, runs = scenario_runs
    rc, output = runs[path.stem]
    assert rc == 0, f"{path.name} exited {rc}:\n{output[-4000:]}"
    report = json.loads((out / f"{path.stem}.json").read_text())
    for key in ("outcome", "stableVersion", "timeline", "rollbackSeconds", "promotionSeconds", "apiWrites", "prometheusQueries"):
        assert key in report, key
    assert report["passed"] is True and report["errors"] == []
    assert report["timeline"] and {"t", "phase", "stableVersion", "canaryVersion", "canaryWeight", "metrics"} <= set(report["timeline"][0])
    assert report["apiWrites"] > 0
    assert report["routingWritesValidated"] > 0  # each VirtualService/DestinationRule validated against Istio's schema
    # the decision record: the chain verifies and holds every decision in the history (and nothing is left pending)
    audit = report["audit"]
    assert audit["ok"] and audit["pending"] == 0, audit
    decided = [h["action"] for h in report["history"]]
    assert [a for a in audit["actions"] if a != "manualAction"][-len(decided):] == decided, (audit["actions"], decided)
    expect = yaml.safe_load(path.read_text())["expect"]
    if expect.get("outcome") == "rolledBack" and "rollbackWithinSeconds" in expect:
        assert report["rollbackSeconds"] is not None and report["rollbackSeconds"] <= expect["rollbackWithinSeconds"]
    if expect.get("outcome") == "promoted":
        assert report["promotionSeconds"] is not None and report["prometheusQueries"] > 0
        md_metrics = yaml.safe_load(path.read_text())["modelDeployment"]["spec"]["analysis"]["metrics"]
        if any(m.get("builtin") in ("accuracy", "accuracyDrift", "predictionPSI") for m in md_metrics):
            # audit trail: the promotion records the evaluation that justified it
            promoted = next(h for h in report["history"] if h["action"] == "promoted")
            evaluation = promoted["evaluation"]
            assert evaluation["canary"]["aurocMean"] > 0.5 and evaluation["stable"]["aurocMean"] > 0.5
            assert len(evaluation["canary"]["aurocPerFinding"]) == 14 and len(evaluation["psiPerFinding"]) == 14
    png = out / f"{path.stem}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def _must_fail(path: pathlib.Path) -> list[str]:
    line = next(line for line in path.read_text().splitlines() if line.startswith("# must fail:"))
    return [name.strip() for name in line.split(":", 1)[1].split(",")]


def test_failing_scenarios_are_designed_to_fail():
    assert len(FAILING) >= 2
    assert not {p.stem for p in FAILING} & {p.stem for p in SCENARIOS}, "names share the report folder"
    for path in FAILING:
        expect = yaml.safe_load(path.read_text())["expect"]
        must_fail = _must_fail(path)
        assert must_fail and set(must_fail) < set(expect), f"{path.name}: some checks must fail and some hold"


@pytest.mark.parametrize("path", FAILING, ids=lambda p: p.stem)
def test_scenario_designed_to_fail_exits_1(path, scenario_runs):
    out, runs = scenario_runs
    rc, output = runs[path.stem]
    assert rc == 1, f"{path.name} exited {rc} (a failed expectation must exit 1):\n{output[-4000:]}"
    report = json.loads((out / f"{path.stem}.json").read_text())
    assert report["passed"] is False and report["errors"] == [], report["errors"]  # failed by the oracle, not a crash
    failed = [c["expect"] for c in report["expectations"] if not c["ok"]]
    held = [c["expect"] for c in report["expectations"] if c["ok"]]
    assert failed == _must_fail(path), report["expectations"]
    assert held, "the checks that should hold did (the oracle discriminates, it does not fail everything)"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_scenario_exits_2_naming_the_field(path, tmp_path):
    import subprocess

    expected = next(line.split("expect:", 1)[1].strip() for line in path.read_text().splitlines() if line.startswith("# expect:"))
    proc = subprocess.run([sys.executable, "-m", "modeldeploy.cli", "sandbox", "run", str(path), "--report", str(tmp_path / "r.json")],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert not (tmp_path / "r.json").exists()
