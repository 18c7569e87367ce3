"""The four distributions hold what they should: the operator wheel only the operator, the model wheel no operator.

Each wheel is really built (pip wheel, no build isolation: the venv's setuptools) and its file list
compared with the source folders, so a module left out of a distribution -- or one that leaks into
the operator image -- fails here, not in a cluster. Also: the entry points every `modeldeploy`
command group is registered under, and the message of a group that is not installed.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import zipfile
from importlib import metadata

import pytest

from mdcommon import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _python_files(folder: pathlib.Path, package: str) -> set[str]:
    return {f"{package}/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, set[str]]:
    out = tmp_path_factory.mktemp("wheels")
    built = {}
    for name, source in (("operator", ROOT), ("model", ROOT / "model"), ("sandbox", ROOT / "sandbox"),
                         ("dashboard", ROOT / "dashboard")):  # fmt: skip
        target = out / name
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                               "-w", str(target), str(source)], capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (wheel,) = target.glob("*.whl")
        with zipfile.ZipFile(wheel) as zf:
            built[name] = {n for n in zf.namelist() if ".dist-info/" not in n}
    return built


def _top_levels(files: set[str]) -> set[str]:
    return {name.split("/")[0] for name in files}


def test_the_operator_wheel_is_only_the_operator(wheels):
    files = wheels["operator"]
    assert _top_levels(files) == {"modeldeploy", "mdcommon"}
    assert _python_files(ROOT / "operator" / "modeldeploy", "modeldeploy") <= files
    assert {"modeldeploy/crd/modeldeployment.yaml", "modeldeploy/render/templates/model_config.pbtxt.j2"} <= files


def test_the_model_wheel_has_the_evaluator_and_mdcommon_but_not_the_operator(wheels):
    files = wheels["model"]
    assert _top_levels(files) == {"xraymodel", "mdcommon"}
    assert _python_files(ROOT / "model" / "xraymodel", "xraymodel") <= files, "a module of model/ is not packaged"
    assert {f for f in files if f.startswith("mdcommon/")} == {f for f in wheels["operator"] if f.startswith("mdcommon/")}


def test_the_sandbox_wheel_has_the_emulator_and_the_platform_with_their_data(wheels):
    files = wheels["sandbox"]
    assert _top_levels(files) == {"kubeemu", "mdsandbox"}
    assert _python_files(ROOT / "sandbox" / "kubeemu", "kubeemu") | _python_files(ROOT / "sandbox" / "mdsandbox", "mdsandbox") <= files
    assert {"mdsandbox/crds/istio-virtualservice.yaml", "mdsandbox/demo/good-canary-promoted.yaml"} <= files


def test_the_dashboard_wheel_has_the_server_and_the_built_page(wheels):
    """The page is built by scripts/setup.sh (npm ci && npm run build) before the wheel; the wheel serves it."""
    files = wheels["dashboard"]
    assert _top_levels(files) == {"mddashboard"}
    assert _python_files(ROOT / "dashboard" / "mddashboard", "mddashboard") <= files
    assert "mddashboard/static/index.html" in files
    assert any(f.startswith("mddashboard/static/assets/") and f.endswith(".js") for f in files)


def test_every_command_group_is_an_entry_point_of_its_distribution():
    groups = {ep.name: ep for ep in metadata.entry_points(group=cli.ENTRY_POINT_GROUP)}
    assert set(cli.PROVIDERS) <= set(groups), "scripts/setup.sh installs all three distributions"
    for name, ep in groups.items():
        assert ep.dist.name == cli.PROVIDERS[name].distribution, name
        sub = argparse.ArgumentParser().add_subparsers()
        ep.load()(sub)
        assert list(sub.choices) == [name], f"entry point {name} must add exactly the command {name}"


def test_a_missing_group_names_the_distribution_to_install(capsys):
    present = {ep.name: ep for ep in metadata.entry_points(group=cli.ENTRY_POINT_GROUP) if ep.name != "sandbox"}
    parser = cli.build_parser(present)
    assert "not installed: sandbox" in parser.format_help()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "installed_groups", lambda: present)
        assert cli.main(["sandbox", "run", "x.yaml", "--report", "r.json"]) == 2
    err = capsys.readouterr().err
    assert "modeldeploy-sandbox" in err and "pip install" in err and "./sandbox" in err
