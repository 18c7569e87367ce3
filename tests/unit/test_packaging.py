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


# ---------------------------------------------------------------------------------------- declared dependencies
import ast  # noqa: E402
import functools  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import tomllib  # noqa: E402

from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

# distribution -> (its pyproject.toml, the package folders it ships)
DISTRIBUTIONS = {
    "modeldeploy": (ROOT / "pyproject.toml", ["operator/modeldeploy", "common/mdcommon"]),
    "modeldeploy-model": (ROOT / "model" / "pyproject.toml", ["model/xraymodel", "common/mdcommon"]),
    "modeldeploy-sandbox": (ROOT / "sandbox" / "pyproject.toml", ["sandbox/kubeemu", "sandbox/mdsandbox"]),
    "modeldeploy-dashboard": (ROOT / "dashboard" / "pyproject.toml", ["dashboard/mddashboard"]),
}
OWN_PACKAGES = {"modeldeploy", "mdcommon", "xraymodel", "kubeemu", "mdsandbox", "mddashboard"}


def _project(pyproject: pathlib.Path) -> dict:
    return tomllib.loads(pyproject.read_text())["project"]


def _requirements(dist: str) -> tuple[list[Requirement], dict[str, list[Requirement]]]:
    project = _project(DISTRIBUTIONS[dist][0])
    extras = {k: [Requirement(r) for r in v] for k, v in project.get("optional-dependencies", {}).items()}
    return [Requirement(r) for r in project.get("dependencies", [])], extras


def _imports(folders: list[str], *, exclude: str | None = None) -> dict[str, set[str]]:
    """Top-level third-party module -> the files that import it (absolute imports, also function-local)."""
    out: dict[str, set[str]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if exclude and rel.startswith(exclude):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in OWN_PACKAGES and top != "__future__":
                        out.setdefault(top, set()).add(rel)
    return out


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _distributions_of(module: str) -> set[str]:
    return {canonicalize_name(d) for d in _packages_distributions().get(module, [module])}


@pytest.mark.parametrize("dist", list(DISTRIBUTIONS))
def test_every_third_party_import_is_declared(dist):
    """A module imported directly is a declared dependency (base or an extra) of the distribution that
    ships the importing file: arriving through another package's dependencies does not count."""
    base, extras = _requirements(dist)
    declared = {canonicalize_name(r.name) for r in base + [r for reqs in extras.values() for r in reqs]}
    siblings = {canonicalize_name(d) for d in DISTRIBUTIONS}
    undeclared = {m: sorted(files)[:3] for m, files in _imports(DISTRIBUTIONS[dist][1]).items()
                  if not _distributions_of(m) & (declared | siblings)}  # fmt: skip
    assert not undeclared, f"{dist} imports these without declaring them: {undeclared}"


def test_the_evaluator_imports_only_the_model_distributions_base_dependencies():
    """The evaluator image installs ./model without extras: xraymodel.evaluator needs nothing more."""
    base, _ = _requirements("modeldeploy-model")
    declared = {canonicalize_name(r.name) for r in base}
    used = _imports(["model/xraymodel/evaluator", "common/mdcommon"])
    outside = {m: sorted(f) for m, f in used.items() if not _distributions_of(m) & declared}
    assert not outside, outside


def test_constraints_pin_every_declared_dependency_within_its_range():
    """constraints.txt (scripts/setup.sh installs with -c; `make lock` writes it) pins every dependency of
    every distribution and extra, and each pin satisfies the range the pyproject.toml asks for."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    own = {canonicalize_name(d) for d in DISTRIBUTIONS} | {"tensorflow"}  # installed by path
    problems = []
    for dist in DISTRIBUTIONS:
        base, extras = _requirements(dist)
        for req in base + [r for reqs in extras.values() for r in reqs]:
            name = canonicalize_name(req.name)
            if name in own:
                continue
            if name not in pins:
                problems.append(f"{dist}: {req} is not pinned")
            elif not req.specifier.contains(pins[name], prereleases=True):
                problems.append(f"{dist}: {req} but constraints.txt pins {pins[name]}")
    assert not problems, problems


def test_the_installed_versions_are_the_pinned_ones():
    """The venv the tests run in was built from constraints.txt (a stale venv or lock shows here)."""
    wrong = []
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue  # a pin of a platform-specific package this machine does not need
            if installed != version:
                wrong.append(f"{name}: installed {installed}, pinned {version}")
    assert not wrong, wrong


# ---------------------------------------------------------------------------------------- one version number
def test_one_version_number_everywhere():
    """modeldeploy.__version__ is the version; every other copy equals it (the four distributions, the pins
    between them and in the operator's extras, the chart, the evaluator's default image, the CRD text)."""
    import modeldeploy
    from modeldeploy.render.evaluator import DEFAULT_IMAGE

    version = modeldeploy.__version__
    found = {f"{d} version": _project(p)["version"] for d, (p, _) in DISTRIBUTIONS.items()}
    for dist in DISTRIBUTIONS:
        base, extras = _requirements(dist)
        for req in base + [r for reqs in extras.values() for r in reqs]:
            if canonicalize_name(req.name) in {canonicalize_name(d) for d in DISTRIBUTIONS}:
                found[f"{dist} requires {req}"] = str(req.specifier).removeprefix("==")
    chart = (ROOT / "charts" / "modeldeploy" / "Chart.yaml").read_text()
    found["Chart.yaml version"] = re.search(r"^version: (\S+)", chart, re.M).group(1)
    found["Chart.yaml appVersion"] = re.search(r'^appVersion: "?([^"\s]+)', chart, re.M).group(1)
    found["render.evaluator.DEFAULT_IMAGE"] = DEFAULT_IMAGE.rsplit(":", 1)[1]
    for crd in ("crds/modeldeployment.yaml", "operator/modeldeploy/crd/modeldeployment.yaml"):
        found[crd] = re.search(r"else ghcr\.io/modeldeploy/evaluator:([0-9.]+)\.", (ROOT / crd).read_text()).group(1)
    found["dashboard/frontend/package.json"] = re.search(r'"version": "([^"]+)"', (ROOT / "dashboard" / "frontend" / "package.json").read_text()).group(1)
    assert {k: v for k, v in found.items() if v != version} == {}, f"not {version}"


# ---------------------------------------------------------------------------------------- pip install . alone
@pytest.mark.skipif(os.environ.get("MODELDEPLOY_FRESH_VENV") != "1",
                    reason="set MODELDEPLOY_FRESH_VENV=1: builds a fresh venv and installs the operator (~1-2 min)")
def test_pip_install_dot_alone_is_a_kopf_run_able_operator_without_the_rest(tmp_path, apiserver):
    """`pip install .` (no extras) into a new venv: the operator and mdcommon only, no sandbox, model,
    dashboard, TensorFlow or numpy; `modeldeploy sandbox` names the extra and folders to install; and
    `kopf run -m modeldeploy.main` from that venv reconciles a ModelDeployment on the API emulator."""
    import json
    import socket
    import time
    import urllib.request

    import yaml

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(ROOT)],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    probe = ("import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None for m in "
             "['modeldeploy', 'mdcommon', 'kopf', 'mdsandbox', 'kubeemu', 'xraymodel', 'mddashboard', 'tensorflow', "
             "'numpy', 'kmock']}))")  # fmt: skip
    present = json.loads(subprocess.run([str(py), "-c", probe], capture_output=True, text=True, check=True).stdout)
    assert [m for m, here in present.items() if here] == ["modeldeploy", "mdcommon", "kopf"], present
    hint = subprocess.run([str(venv / "bin" / "modeldeploy"), "sandbox", "run", "x.yaml"], capture_output=True, text=True)
    assert hint.returncode == 2 and "'.[sandbox]' ./model ./sandbox" in hint.stderr, hint.stderr

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        health_port = s.getsockname()[1]
    namespace = "fresh-venv"
    env = dict(os.environ, KUBECONFIG=str(apiserver.kubeconfig), MODELDEPLOY_METRICS_PORT="0")
    env.pop("PYTHONPATH", None)
    operator = subprocess.Popen([str(venv / "bin" / "kopf"), "run", "-m", "modeldeploy.main", "-n", namespace,
                                 "--liveness", f"http://127.0.0.1:{health_port}/healthz"],
                                env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        doc = yaml.safe_load((ROOT / "examples" / "resnet50.yaml").read_text())
        doc["metadata"] = {"name": "fresh", "namespace": namespace}
        kubectl = [str(BIN_KUBECTL), "--kubeconfig", str(apiserver.kubeconfig)]
        subprocess.run(kubectl + ["create", "namespace", namespace], capture_output=True, timeout=30)
        subprocess.run(kubectl + ["apply", "-f", "-"], input=yaml.safe_dump(doc), text=True, check=True,
                       capture_output=True, timeout=30)  # fmt: skip
        deadline = time.monotonic() + 60
        status = {}
        while time.monotonic() < deadline and not status.get("stableVersion"):
            time.sleep(0.5)
            out = subprocess.run(kubectl + ["-n", namespace, "get", "modeldeployment", "fresh", "-o", "json"],
                                 capture_output=True, text=True, timeout=30)  # fmt: skip
            status = json.loads(out.stdout).get("status") or {} if out.returncode == 0 else {}
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=5) as resp:
            assert resp.status == 200
        assert status.get("stableVersion") == doc["spec"]["model"]["version"], status
        assert status["rollout"]["state"] == "Idle" and status["phase"] == "Initializing", status
    finally:
        operator.terminate()
        try:
            operator.wait(timeout=20)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait()


BIN_KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"
