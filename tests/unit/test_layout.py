"""Repository guard rails: no package shadows the stdlib, the CRD copies are identical, the operator never loads TF,
the import contracts hold (and can fail), ruff is clean."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("operator", "common", "model", "sandbox", "dashboard")  # the folders that hold import packages
BIN = pathlib.Path(sys.executable).parent


def test_operator_folder_is_not_a_package():
    assert not (ROOT / "operator" / "__init__.py").exists(), "operator/__init__.py would shadow the stdlib 'operator' module"


def test_no_top_level_module_shadows_the_stdlib():
    for src in SOURCE_DIRS:
        for entry in (ROOT / src).iterdir():
            name = entry.stem if entry.suffix == ".py" else entry.name
            if entry.is_dir() and not (entry / "__init__.py").exists():
                continue
            if entry.suffix not in (".py", "") or name.startswith((".", "_")):
                continue
            assert name not in sys.stdlib_module_names, f"{src}/{entry.name} shadows stdlib module {name!r}"


def test_stdlib_operator_still_importable_with_project_paths():
    code = "import operator, sys; assert operator.__file__.startswith(sys.base_prefix), operator.__file__; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": os.pathsep.join(str(ROOT / d) for d in SOURCE_DIRS)})
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_crd_copies_are_identical():
    source = (ROOT / "crds" / "modeldeployment.yaml").read_bytes()
    copies = [ROOT / "operator" / "modeldeploy" / "crd" / "modeldeployment.yaml"]
    chart_copy = ROOT / "charts" / "modeldeploy" / "crds" / "modeldeployment.yaml"
    if (ROOT / "charts" / "modeldeploy").exists():
        copies.append(chart_copy)
    for copy in copies:
        assert copy.read_bytes() == source, f"{copy} differs from crds/modeldeployment.yaml (run `make sync-crds`)"


def test_every_crd_field_has_a_description():
    crd = yaml.safe_load((ROOT / "crds" / "modeldeployment.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing = []

    def walk(node, path):
        for key, sub in (node.get("properties") or {}).items():
            here = f"{path}.{key}" if path else key
            if here != "metadata" and not sub.get("description"):
                missing.append(here)
            walk(sub, here)
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + "[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], path + ".*")

    walk(schema, "")
    assert not missing, missing


def test_operator_does_not_import_tensorflow():
    code = "import sys, modeldeploy.main, modeldeploy.cli; print('tensorflow' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return {name.split(".")[0] for name in proc.stdout.split()}


def test_the_running_operator_loads_nothing_of_the_sandbox_or_the_model():
    loaded = _loaded_after("import modeldeploy.main, modeldeploy.cli, modeldeploy.cli.plugin")
    assert not {"mdsandbox", "kubeemu", "xraymodel", "kmock", "numpy"} & loaded  # aiohttp: kopf uses it


def test_the_emulator_process_wrapper_does_not_load_kmock():
    """tests/conftest.py starts the emulator for every tier through kubeemu.process: stdlib + PyYAML only."""
    assert not {"kmock", "aiohttp", "attrs"} & _loaded_after("import kubeemu.process")


def test_the_dashboard_loads_nothing_of_the_sandbox_or_the_model():
    loaded = _loaded_after("import mddashboard.app, mddashboard.cli")
    assert not {"mdsandbox", "kubeemu", "xraymodel", "kmock", "numpy", "tensorflow"} & loaded


def test_the_evaluator_loads_nothing_of_the_operator():
    loaded = _loaded_after("import xraymodel.evaluator.service, xraymodel.evaluator.cli")
    assert not {"modeldeploy", "mdsandbox", "kubeemu", "kopf", "kubernetes", "pydantic"} & loaded


def test_every_module_has_a_docstring():
    import ast

    undocumented = []
    for path in [p for src in SOURCE_DIRS for p in (ROOT / src).rglob("*.py") if "node_modules" not in p.parts]:
        tree = ast.parse(path.read_text())
        if not ast.get_docstring(tree) and path.name != "__main__.py":
            undocumented.append(str(path.relative_to(ROOT)))
    assert not undocumented, undocumented


def test_vendored_istio_crds_match_the_test_copies():
    here = ROOT / "sandbox" / "mdsandbox" / "crds"
    vendored = sorted(here.glob("*.yaml"))
    assert vendored
    for path in vendored:
        assert path.read_bytes() == (ROOT / "tests" / "data" / "thirdparty-crds" / path.name).read_bytes()


def test_demo_scenarios_in_the_package_match_the_examples():
    """`modeldeploy demo` runs from an installed wheel: its scenarios are package data, copies of examples/."""
    from mdsandbox.cli import DEMO_SCENARIOS

    here = ROOT / "sandbox" / "mdsandbox" / "demo"
    assert sorted(p.name for p in here.glob("*.yaml")) == sorted(DEMO_SCENARIOS)
    for name in DEMO_SCENARIOS:
        copy = (here / name).read_bytes()
        assert copy == (ROOT / "examples" / "scenarios" / name).read_bytes(), f"{name} differs (run `make sync-demo`)"


def test_test_module_names_are_unique():
    """pytest imports test modules by basename (rootdir mode): two test_x.py in different folders collide."""
    import collections

    names = collections.Counter(p.name for p in (ROOT / "tests").rglob("*.py") if p.name != "conftest.py")
    assert not [n for n, c in names.items() if c > 1], [n for n, c in names.items() if c > 1]


# ---------------------------------------------------------------------------------------- import contracts
def _lint_imports(root: pathlib.Path) -> subprocess.CompletedProcess:
    """import-linter with the contracts of pyproject.toml, on the packages below `root`."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(root / d) for d in SOURCE_DIRS))
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache", "--config", str(root / "pyproject.toml")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_import_contracts_hold():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


# (file to add a back edge to, the import, the contract that must break)
BACK_EDGES = [
    ("operator/modeldeploy/kube.py", "import mdsandbox.scenario_runner", "The operator imports neither"),
    ("operator/modeldeploy/reconciler.py", "import xraymodel.findings", "The operator imports neither"),
    ("model/xraymodel/evaluator/golden.py", "import mdsandbox.synthetic_golden", "The model tool chain"),
    ("model/xraymodel/evaluator/config.py", "import modeldeploy.spec", "The model tool chain"),
    ("model/xraymodel/evaluator/config.py", "import pydantic", "no kopf in the evaluator image"),
    ("sandbox/kubeemu/store.py", "import modeldeploy.names", "The API emulator is generic"),
    ("common/mdcommon/durations.py", "import yaml", "mdcommon is shared by every image"),
    ("operator/modeldeploy/analysis/runner.py", "import modeldeploy.rollout", "Operator layers"),
    ("operator/modeldeploy/spec.py", "import modeldeploy.validation", "Operator layers"),
    ("operator/modeldeploy/state.py", "import modeldeploy.rollout", "Operator layers"),
    ("operator/modeldeploy/state.py", "import modeldeploy.analysis.verdict", "Operator layers"),
    ("operator/modeldeploy/rollout.py", "import mddashboard.board", "The operator imports neither"),
    ("dashboard/mddashboard/server.py", "import mdsandbox.scenario_runner", "The dashboard reads the cluster"),
    ("sandbox/mdsandbox/cli.py", "import mddashboard.app", "Packages: the sandbox and the dashboard"),
]


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> pathlib.Path:
    """The Python sources and pyproject.toml, copied: the back edges go into the copy, never the tree."""
    root = tmp_path_factory.mktemp("layout")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    for src in SOURCE_DIRS:
        shutil.copytree(ROOT / src, root / src,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.yaml", "node_modules", "static"))  # fmt: skip
    return root


@pytest.mark.parametrize("path, statement, contract", BACK_EDGES, ids=[f"{p.split('/')[-1]}:{s}" for p, s, _ in BACK_EDGES])
def test_import_contracts_catch_a_back_edge(source_copy, path, statement, contract):
    target = source_copy / path
    original = target.read_text()
    try:
        target.write_text(original + f"\n\ndef _back_edge():\n    {statement}  # added by the test\n")
        proc = _lint_imports(source_copy)
    finally:
        target.write_text(original)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    broken = [line for line in proc.stdout.splitlines() if "BROKEN" in line or contract in line]
    assert any(contract in line for line in broken), proc.stdout
    assert str(source_copy) in proc.stdout or statement.split()[-1] in proc.stdout  # it analysed the copy


# ---------------------------------------------------------------------------------------- ruff
def test_ruff_lint_is_clean():
    proc = subprocess.run([str(BIN / "ruff"), "check", "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_is_clean():
    proc = subprocess.run([str(BIN / "ruff"), "format", "--check", "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------- mypy
def test_mypy_is_clean_on_the_operator_and_the_shared_package():
    """[tool.mypy] in pyproject.toml: modeldeploy and mdcommon, with the pydantic plugin (about 20 s of CPU
    from a cold cache, as in CI; about 1 s with the cache in .mypy_cache)."""
    proc = subprocess.run([str(BIN / "mypy")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout and "source files" in proc.stdout


def test_mypy_catches_a_type_error(tmp_path):
    """The check can fail: the same configuration on a copy of the packages with one bad call."""
    for src in ("operator", "common"):
        shutil.copytree(ROOT / src, tmp_path / src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.yaml", "*.j2"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    state = tmp_path / "operator" / "modeldeploy" / "state.py"
    state.write_text(state.read_text() + "\n\n_BAD: int = phase_of(RolloutStatus(), 1, False)  # added by the test\n")
    proc = subprocess.run([str(BIN / "mypy"), "--cache-dir", str(ROOT / ".mypy_cache")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "state.py" in proc.stdout and "Incompatible types in assignment" in proc.stdout, proc.stdout
