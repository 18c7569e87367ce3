"""Every malformed manifest in tests/data/invalid/ is rejected with a message naming the field.

Each file starts with `# expect: <field path>: <message part>`; the same checks run in-process (what
the operator applies) and through the real `modeldeploy validate` command (what DevOps run in CI).
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from modeldeploy.validation import validate_manifest

ROOT = pathlib.Path(__file__).resolve().parents[2]
INVALID = sorted((ROOT / "tests" / "data" / "invalid").glob("*.yaml"))
VALID = sorted((ROOT / "examples").glob("*.yaml"))


def expectation(path: pathlib.Path) -> tuple[str, str]:
    match = re.search(r"^# expect: (\S+): (.*)$", path.read_text(), re.M)
    assert match, f"{path.name} has no '# expect:' line"
    return match.group(1), match.group(2)


def test_enough_invalid_examples():
    assert len(INVALID) >= 40


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_manifest_rejected_with_field(path):
    field, message = expectation(path)
    result = validate_manifest(yaml.safe_load(path.read_text()))
    assert not result.ok
    assert result.spec is None
    shown = [str(p) for p in result.problems]
    assert any(p.path == field and message in p.message for p in result.problems), shown


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_examples_are_valid(path):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "ModelDeployment":
            result = validate_manifest(doc)
            assert result.ok, [str(p) for p in result.problems]


def test_validate_command_reports_every_file():
    proc = subprocess.run(
        [sys.executable, "-m", "modeldeploy.cli", "validate", "-q", *map(str, INVALID)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    for path in INVALID:
        field, message = expectation(path)
        assert any(l.startswith(f"{path}: {field}: ") and message in l for l in lines), (path.name, lines)


def test_validate_command_accepts_valid_and_exits_zero():
    proc = subprocess.run(
        [sys.executable, "-m", "modeldeploy.cli", "validate", *map(str, VALID)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout


def test_defaults_are_applied_like_the_api_server():
    doc = {
        "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "m"},
        "spec": {"model": {"name": "m", "basePath": "/models/m", "version": 1}},
    }
    result = validate_manifest(doc)
    assert result.ok
    spec = result.defaulted["spec"]
    assert spec["serving"]["image"] == "tensorflow/serving:2.21.0-gpu"
    assert spec["serving"]["gpu"] == {"count": 1, "fallbackToCPU": False, "fallbackAfter": "5m"}
    assert spec["strategy"]["canary"]["steps"] == [10, 25, 50, 100]
    assert [m["name"] for m in spec["analysis"]["metrics"]] == ["error-rate", "latency-p99"]
    assert result.spec.serving.gpu.effective_product is None  # no GPU-model selector unless asked for
    assert spec["model"]["sync"] == {"mode": "Auto", "image": "rclone/rclone:1.74.2"}
    assert result.spec.analysis.interval_seconds == 30


def test_all_problems_reported_at_once():
    doc = yaml.safe_load((ROOT / "examples" / "resnet50.yaml").read_text())
    doc["spec"]["serving"]["replicas"] = -1
    doc["spec"]["strategy"]["canary"]["steps"] = [50, 20]
    doc["spec"]["analysis"]["onNoData"] = "maybe"
    paths = {p.path for p in validate_manifest(doc).problems}
    assert {"spec.serving.replicas", "spec.strategy.canary.steps", "spec.analysis.onNoData"} <= paths
