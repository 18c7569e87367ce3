"""Repository guard rails: no package shadows the stdlib, the CRD copies are identical, the operator never loads TF."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_operator_folder_is_not_a_package():
    assert not (ROOT / "operator" / "__init__.py").exists(), "operator/__init__.py would shadow the stdlib 'operator' module"


def test_no_top_level_module_shadows_the_stdlib():
    for src in ("operator", "model"):
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
                          env={"PYTHONPATH": f"{ROOT / 'operator'}:{ROOT / 'model'}"})
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


def test_every_module_has_a_docstring():
    import ast

    undocumented = []
    for path in list((ROOT / "operator" / "modeldeploy").rglob("*.py")) + list((ROOT / "model" / "xraymodel").rglob("*.py")):
        tree = ast.parse(path.read_text())
        if not ast.get_docstring(tree) and path.name != "__main__.py":
            undocumented.append(str(path.relative_to(ROOT)))
    assert not undocumented, undocumented


def test_vendored_istio_crds_match_the_test_copies():
    here = ROOT / "operator" / "modeldeploy" / "sandbox" / "crds"
    for path in here.glob("*.yaml"):
        assert path.read_bytes() == (ROOT / "tests" / "data" / "thirdparty-crds" / path.name).read_bytes()


def test_test_module_names_are_unique():
    """pytest imports test modules by basename (rootdir mode): two test_x.py in different folders collide."""
    import collections

    names = collections.Counter(p.name for p in (ROOT / "tests").rglob("*.py") if p.name != "conftest.py")
    assert not [n for n, c in names.items() if c > 1], [n for n, c in names.items() if c > 1]
