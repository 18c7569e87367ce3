"""The operator must never load TensorFlow: importing the model CLI (and the pure modules) stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _modules_loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": f"{REPO / 'operator'}:{REPO / 'model'}", "PATH": "/usr/bin:/bin"},
    )
    return set(result.stdout.split())


def test_importing_the_model_cli_does_not_import_tensorflow():
    loaded = _modules_loaded_after("import xraymodel.cli")
    assert not {"tensorflow", "keras", "pydicom", "matplotlib", "PIL"} & loaded


def test_metrics_for_the_evaluator_are_pure_numpy():
    loaded = _modules_loaded_after("import xraymodel.metrics, xraymodel.evaluation_report, xraymodel.findings")
    assert "numpy" in loaded
    assert not {"tensorflow", "keras", "sklearn", "scipy"} & loaded


def test_model_group_is_registered_with_every_subcommand():
    import argparse

    from xraymodel.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    for command in ("train", "evaluate", "export", "quantize", "gradcam"):
        args = parser.parse_args(["model", command, *_minimal_args(command)])
        assert callable(args.func)


def _minimal_args(command: str) -> list[str]:
    return {
        "train": ["--data", "d", "--out", "o"],
        "evaluate": ["--model", "m"],
        "export": ["--model", "m", "--base", "b"],
        "quantize": ["--model", "m", "--out", "o"],
        "gradcam": ["--model", "m", "--image", "i", "--finding", "Effusion", "--out", "o.png"],
    }[command]
