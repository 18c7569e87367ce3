"""Container images (static checks; building needs a Docker daemon, which CI does not have).

operator/Dockerfile: small (slim base, multi-stage, the operator distribution only: no sandbox, no
model tool chain, no TensorFlow), non-root numeric user matching the chart's runAsUser, the entry
point the chart runs, the ports the chart probes. model/Dockerfile (evaluator): the model
distribution's base install (numpy, httpx, prometheus-client), no TensorFlow, no kopf/kubernetes/
pydantic (nothing of the operator), non-root. What each build copies and installs is checked against
what the distributions contain (tests/unit/test_packaging.py builds the wheels).
"""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from chartlib import CHART, ROOT

OPERATOR = ROOT / "operator" / "Dockerfile"
EVALUATOR = ROOT / "model" / "Dockerfile"
DASHBOARD = ROOT / "dashboard" / "Dockerfile"
# What the build-time guard of each image must prove absent (find_spec(...) is None).
MUST_BE_ABSENT = {
    OPERATOR: {"tensorflow", "mdsandbox", "kubeemu", "xraymodel"},
    EVALUATOR: {"tensorflow", "kopf", "kubernetes", "pydantic", "modeldeploy", "mdsandbox"},
    DASHBOARD: {"tensorflow", "mdsandbox", "kubeemu", "xraymodel"},
}


def instructions(path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage(path) -> list[tuple[str, str]]:
    ins = instructions(path)
    last_from = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    return ins[last_from:]


@pytest.mark.parametrize("path", [OPERATOR, EVALUATOR, DASHBOARD], ids=["operator", "evaluator", "dashboard"])
def test_image_is_multi_stage_slim_and_non_root(path):
    ins = instructions(path)
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) >= 2, "build in one stage, copy only the virtualenv into the final one"
    args = dict(rest.split("=", 1) for word, rest in ins if word == "ARG" and "=" in rest)
    base = args.get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    final = final_stage(path)
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root uid lets the kubelet verify runAsNonRoot"
    installs = " ".join(rest for word, rest in ins if word == "RUN")
    pip_installs = re.findall(r"pip install ([^&|;]*)", installs)
    assert pip_installs, "expected a pip install"
    for args in pip_installs:
        assert "tensorflow" not in args.lower() and "[ml" not in args, f"pip install {args}: no TensorFlow, no ml extra"
    guarded = set(re.findall(r"'([\w.]+)'", " ".join(re.findall(r"for m in \(([^)]*)\) if importlib\.util\.find_spec\(m\) is not None", installs))))
    assert MUST_BE_ABSENT[path] <= guarded, f"the build must prove absent: {sorted(MUST_BE_ABSENT[path] - guarded)}"
    assert not any(word == "ADD" for word, _ in ins), "COPY, not ADD (no remote fetches or auto-extraction)"


def test_operator_image_runs_what_the_chart_expects():
    final = final_stage(OPERATOR)
    entrypoint = yaml.safe_load(next(rest for word, rest in final if word == "ENTRYPOINT"))
    assert entrypoint == ["modeldeploy"]
    exposed = {int(p) for word, rest in final if word == "EXPOSE" for p in rest.split()}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert exposed == {values["metrics"]["port"], values["health"]["port"]}
    cmd = yaml.safe_load(next(rest for word, rest in final if word == "CMD"))
    from modeldeploy.cli import build_parser

    args = build_parser().parse_args(cmd)
    assert args.command == "operator" and args.all_namespaces and args.liveness.endswith(f":{values['health']['port']}/healthz")


def test_evaluator_image_has_what_the_evaluator_needs():
    final = final_stage(EVALUATOR)
    entrypoint = yaml.safe_load(next(rest for word, rest in final if word == "ENTRYPOINT"))
    assert entrypoint == ["modeldeploy"]
    from modeldeploy.cli import build_parser

    # the image's default command and the Deployment the operator renders both parse as `evaluator run`
    cmd = yaml.safe_load(next(rest for word, rest in final if word == "CMD"))
    assert build_parser().parse_args(cmd).command == "evaluator"
    from modeldeploy.render import evaluator as render_evaluator
    from modeldeploy.plans import Target
    from modeldeploy.validation import validate_manifest

    doc = yaml.safe_load((ROOT / "examples" / "resnet50.yaml").read_text())
    spec = validate_manifest(doc).spec
    container = render_evaluator.deployment(Target("m", "ns", spec))["spec"]["template"]["spec"]["containers"][0]
    rendered = container["command"] + container["args"]
    assert rendered[0] == "modeldeploy"
    parsed = build_parser().parse_args(rendered[1:])
    assert parsed.command == "evaluator" and parsed.config.endswith("evaluator.yaml")
    installs = " ".join(rest for word, rest in instructions(EVALUATOR) if word == "RUN")
    assert [a.split() for a in re.findall(r"pip install ([^&|;]*)", installs)] == [["--no-cache-dir", "-c", "constraints.txt", "./model"]], "no extras"
    names = dependency_names(ROOT / "model" / "pyproject.toml")
    assert {"numpy", "httpx", "prometheus-client", "pyyaml"} <= names, "the evaluator's base install"
    assert not {"kopf", "kubernetes", "pydantic", "modeldeploy"} & names, "nothing of the operator in the evaluator image"


def test_dashboard_image_runs_what_the_chart_expects():
    final = final_stage(DASHBOARD)
    assert yaml.safe_load(next(rest for word, rest in final if word == "ENTRYPOINT")) == ["modeldeploy"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    exposed = {int(p) for word, rest in final if word == "EXPOSE" for p in rest.split()}
    assert exposed == {values["webDashboard"]["port"]}
    import argparse

    from mddashboard.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(yaml.safe_load(next(rest for word, rest in final if word == "CMD")))
    assert (args.command, args.host, args.port, args.allow_actions) == ("dashboard", "0.0.0.0", 8765, False)
    # the page is built inside the image from the committed lock (npm ci), then copied next to the server
    page = instructions(DASHBOARD)
    assert ("RUN", "npm ci --no-audit --no-fund") in page
    assert any(word == "COPY" and rest.startswith("--from=page") and "mddashboard/static" in rest for word, rest in page)


def dependency_names(pyproject) -> set[str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return {re.split(r"[<>=!~\[ ;@]", d, maxsplit=1)[0].strip().lower() for d in deps}


@pytest.mark.parametrize(
    "path, copied, installed",
    [
        (OPERATOR, {"pyproject.toml", "README.md", "constraints.txt", "operator/", "common/"}, "."),
        (EVALUATOR, {"constraints.txt", "common/", "model/"}, "./model"),
        (DASHBOARD, {"pyproject.toml", "README.md", "constraints.txt", "operator/", "common/", "dashboard/pyproject.toml",
                     "dashboard/mddashboard/", "dashboard/frontend/package.json", "dashboard/frontend/package-lock.json",
                     "dashboard/frontend/"}, "./dashboard"),
    ],
    ids=["operator", "evaluator", "dashboard"],
)
def test_each_image_gets_only_its_own_distribution(path, copied, installed):
    """The operator image never sees sandbox/ or model/; the evaluator image never sees operator/ or sandbox/."""
    sources = {src for word, rest in instructions(path) if word == "COPY" and not rest.startswith("--from")
               for src in rest.split()[:-1]}  # fmt: skip
    assert sources == copied
    installs = " ".join(rest for word, rest in instructions(path) if word == "RUN")
    pips = re.findall(r"pip install ([^&|;]*)", installs)
    assert [args.split()[-1] for args in pips] == [installed]
    assert all("-c constraints.txt" in args for args in pips), "images install the versions CI tested (constraints.txt)"


@pytest.mark.parametrize("pyproject", ["pyproject.toml", "model/pyproject.toml"])
def test_base_dependencies_exclude_tensorflow(pyproject):
    """Both images install their distribution WITHOUT extras: its base dependencies must stay TF-free."""
    names = dependency_names(ROOT / pyproject)
    assert not [d for d in names if d.startswith(("tensorflow", "keras", "torch"))], names


def test_dockerignore_keeps_the_context_small():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "allowlist: ignore everything, then re-include what the build needs"
    included = {p[1:] for p in patterns if p.startswith("!")}
    assert {"pyproject.toml", "README.md", "constraints.txt", "operator/**", "common/**", "model/**"} <= included
    assert not {".venv", "tests/**", ".git", "sandbox/**"} & included
    copied = {rest.split()[0] for path in (OPERATOR, EVALUATOR) for word, rest in instructions(path)
              if word == "COPY" and not rest.startswith("--from")}
    for source in copied:
        assert any(source.rstrip("/") in (p.rstrip("/*"), p) for p in included), f"{source} is copied but ignored"
