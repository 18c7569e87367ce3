"""Fuzzing the front door (issue 14 part 2): hypothesis-generated ModelDeployment manifests through
`modeldeploy validate` (in process: mdcommon.cli.main) and the operator's validate + render path.

Two sources of manifests: (1) built from the CRD's own openAPIV3Schema (every property, type, enum,
range and pattern it declares; optional fields drawn at random), and (2) targeted mutations of the
shipped example (examples/resnet50.yaml): a value at a random path replaced by one the schema allows,
by one of the wrong type or out of range, a key deleted, an unknown key added, a list emptied.

Properties, each its own test:
- never a crash: validate_manifest returns for anything, and `modeldeploy validate -` exits 0 (valid) or 1
  (one `-: <path>: <message>` line per problem), never a traceback;
- every rejection names a field path that leads into the manifest (its parent exists);
- every accepted manifest renders, for a stable and a mid-rollout status, objects that are valid for
  Kubernetes (kubernetes-validate, strict, as tests/unit/test_render.py) and Istio (its CRD schemas).

Budget: the hypothesis `ci` profile (tests/conftest.py); HYPOTHESIS_PROFILE=long for a deep local run.
"""

from __future__ import annotations

import contextlib
import copy
import io
import pathlib
import re
import sys

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from mdcommon.cli import main as modeldeploy_cli
from modeldeploy.plans import Target
from modeldeploy.render import desired_objects
from modeldeploy.rollout import plans
from modeldeploy.validation import crd_schema, validate_manifest, validate_spec
from modeldeploy.validation.openapi import schema_problems

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "resnet50.yaml").read_text())
SCHEMA = crd_schema()
K8S_VERSION = "1.33"
THIRD_PARTY = ROOT / "tests" / "data" / "thirdparty-crds"


def _istio_schema(filename: str) -> dict:
    for doc in yaml.safe_load_all((THIRD_PARTY / filename).read_text()):
        if doc and doc.get("kind") == "CustomResourceDefinition":
            return next(v for v in doc["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
    raise LookupError(filename)


ISTIO_SCHEMAS = {
    "VirtualService": _istio_schema("istio-virtualservice.yaml"),
    "DestinationRule": _istio_schema("istio-destinationrule.yaml"),
}

# ---- values from the CRD schema ------------------------------------------------------------------

_SIMPLE_TEXT = st.text(alphabet="abcxyz019-_./:{} ", max_size=12)


def _pattern(pattern: str):
    try:
        return st.from_regex(pattern, fullmatch=True).filter(lambda s: len(s) < 80)
    except Exception:  # a pattern Python's re cannot read: any text (the schema check decides)
        return _SIMPLE_TEXT


def from_schema(node: dict, depth: int = 0, optional: float = 0.3):
    """A strategy for values the schema node describes (mostly valid; CEL and semantic rules may still reject)."""
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if node.get("x-kubernetes-int-or-string"):
        return st.one_of(st.integers(0, 100), st.sampled_from(["1", "50%", "100m", "2Gi"]))
    if node.get("x-kubernetes-preserve-unknown-fields") and "properties" not in node:
        return st.just({})
    kind = node.get("type")
    if kind == "string":
        return _pattern(node["pattern"]) if "pattern" in node else _SIMPLE_TEXT
    if kind == "integer":
        lo = int(node.get("minimum", -3))
        return st.integers(lo, int(node.get("maximum", lo + 200)))
    if kind == "number":
        lo = float(node.get("minimum", -1.0))
        return st.floats(lo, float(node.get("maximum", lo + 1000)), allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        items = node.get("items") or {}
        if depth > 6:
            return st.just([])
        return st.lists(
            from_schema(items, depth + 1, optional),
            min_size=node.get("minItems", 0),
            max_size=min(3, node.get("maxItems", 3)),
        )
    if kind == "object":
        props = node.get("properties") or {}
        if not props:
            extra = node.get("additionalProperties")
            if isinstance(extra, dict) and depth <= 6:
                return st.dictionaries(st.sampled_from(["a", "b", "x-site"]), from_schema(extra, depth + 1), max_size=2)
            return st.just({})
        required = set(node.get("required") or [])
        if depth > 6:
            return st.fixed_dictionaries({k: from_schema(props[k], depth + 1, optional) for k in sorted(required)})

        @st.composite
        def obj(draw):
            out = {}
            for key in sorted(props):
                if key in required or draw(st.floats(0, 1)) < optional:
                    out[key] = draw(from_schema(props[key], depth + 1, optional))
            return out

        return obj()
    return st.one_of(st.none(), st.integers(), _SIMPLE_TEXT)


def _schema_at(path: list) -> dict | None:
    node = SCHEMA
    for part in path:
        if isinstance(part, int):
            node = node.get("items") or {}
        else:
            props = node.get("properties") or {}
            if part not in props:
                return None
            node = props[part]
    return node


def _paths(value, prefix=()):
    """Every path (keys and indexes) into a manifest."""
    yield list(prefix)
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _get(doc, path):
    for part in path:
        doc = doc[part]
    return doc


WRONG = st.one_of(
    st.none(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.text(max_size=8), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(["", "-1s", "1d", "0s", "{{ x", "sha256:zz", "s3://", "ABTest", "Canary", "nonInferiority"]),
)  # fmt: skip


@st.composite
def mutated(draw):
    """The example with one to three targeted mutations."""
    doc = copy.deepcopy(EXAMPLE)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p and p[0] == "spec"]
        if not paths:  # spec itself was deleted
            break
        path = draw(st.sampled_from(paths))
        parent, key = _get(doc, path[:-1]), path[-1]
        how = draw(st.sampled_from(["schema", "schema", "wrong", "delete", "unknown", "empty"]))
        event(f"mutation: {how}")
        node = _schema_at(path)
        if how == "schema" and node is not None:
            parent[key] = draw(from_schema(node, depth=len(path), optional=0.5))
        elif how == "delete" and isinstance(parent, dict):
            del parent[key]
        elif how == "unknown" and isinstance(_get(doc, path), dict):
            _get(doc, path)[draw(st.sampled_from(["wieght", "extra", "Steps"]))] = 1
        elif how == "empty":
            parent[key] = type(parent[key])() if isinstance(parent[key], (dict, list, str)) else None
        else:
            parent[key] = draw(WRONG)
    return doc


@st.composite
def from_crd(draw):
    """A whole manifest drawn from the CRD schema (metadata and the top-level keys mostly right)."""
    spec = draw(from_schema(SCHEMA["properties"]["spec"], depth=1, optional=0.25))
    doc = {
        "apiVersion": draw(st.sampled_from(["modeldeploy.io/v1alpha1"] * 6 + ["modeldeploy.io/v1", "v1"])),
        "kind": draw(st.sampled_from(["ModelDeployment"] * 6 + ["Deployment"])),
        "metadata": {"name": draw(st.sampled_from(["resnet", "m-1", "UPPER", "a" * 70, ""])), "namespace": "ns"},
        "spec": spec,
    }
    return doc


MANIFESTS = st.one_of(mutated(), from_crd())
# A fuzz example costs a few ms (a render ~50 ms): three times the profile's max_examples per property.
FUZZ = settings(max_examples=3 * settings.default.max_examples,
                suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])  # fmt: skip

# ---- the properties ------------------------------------------------------------------------------


def _cli_validate(doc) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    stdin = sys.stdin
    sys.stdin = io.StringIO(yaml.safe_dump(doc, sort_keys=False))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = modeldeploy_cli(["validate", "-"])
            except SystemExit as exc:  # argparse: a usage error would be a bug here too
                rc = exc.code if isinstance(exc.code, int) else 2
    finally:
        sys.stdin = stdin
    return rc, out.getvalue(), err.getvalue()


@FUZZ
@given(MANIFESTS)
def test_validate_never_crashes_and_the_cli_agrees(doc):
    result = validate_manifest(doc)  # must not raise
    event("accepted" if result.ok else "rejected")
    rc, out, err = _cli_validate(doc)
    assert "Traceback" not in out + err
    if not str(doc.get("apiVersion", "modeldeploy.io")).startswith("modeldeploy.io"):
        assert (rc, out.strip()) == (0, f"-: skipped ({doc.get('kind')})"), (rc, out, err)  # another API's object
    elif result.ok:
        assert (rc, out.strip()) == (0, "-: valid"), (rc, out, err)
    else:
        assert rc == 1, (rc, out, err)
        lines = out.strip().splitlines()
        assert len(lines) == len(result.problems), (lines, result.problems)
        for line, problem in zip(lines, result.problems):
            assert line == f"-: {problem}", (line, problem)


TOP = ("apiVersion", "kind", "metadata", "spec")


def _split(path: str) -> list:
    parts: list = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        parts.append(int(index) if index else name)
    return parts


def _leads_into(doc, parts: list) -> bool:
    """The path's parent exists in the manifest (the field itself may be the missing one)."""
    node = doc
    for part in parts[:-1]:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return False
        elif not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


# Failing examples the fuzzer found, kept as a table (each failed before its fix).
REJECTIONS = [
    # CEL rules at the CRD's root (metadata.name a DNS-1035 label; '<name>-v<version>' <= 63) were reported at
    # '<root>', naming no field; now at metadata.name (the rules' fieldPath, as the API server reports them).
    ("name-not-dns-1035", {"metadata": {"name": "UPPER", "namespace": "ns"}}, "metadata.name"),
    ("name-too-long-with-version", {"metadata": {"name": "a" * 62, "namespace": "ns"}}, "metadata.name"),
    # a manifest without spec: "'spec' is required" at '<root>'; now `spec: is required`.
    ("no-spec", {"spec": None}, "spec"),
    # HYPOTHESIS_PROFILE=long: a list-map key of the wrong type (metrics[].name a mapping) crashed validation
    # (TypeError: unhashable type: 'dict' in the duplicate-key check) and `modeldeploy validate` with a traceback.
    ("metric-name-a-mapping", {"spec": {**EXAMPLE["spec"], "analysis": {**EXAMPLE["spec"]["analysis"], "metrics": [
        {"name": {}, "builtin": "errorRate", "max": 1}]}}}, "spec.analysis.metrics[0].name"),
]


@pytest.mark.parametrize("edit, path", [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS])
def test_regression_rejections_name_their_field(edit, path):
    doc = {k: v for k, v in {**copy.deepcopy(EXAMPLE), **edit}.items() if v is not None}
    result = validate_manifest(doc)
    assert [p.path for p in result.problems] == [path], result.problems
    rc, out, _ = _cli_validate(doc)
    assert rc == 1 and out.startswith(f"-: {path}: "), out


@FUZZ
@given(MANIFESTS)
def test_every_rejection_names_a_field_path(doc):
    result = validate_manifest(doc)
    for problem in result.problems:
        parts = _split(problem.path)
        assert parts and parts[0] in TOP, problem
        defaulted = result.defaulted or doc
        assert _leads_into(defaulted, parts) or _leads_into(doc, parts), (problem, doc)
        assert problem.message.strip(), problem


# The states an accepted manifest is rendered in: stable, and one mid-rollout state of its strategy.
def _statuses(spec) -> list[dict]:
    version = spec.model.version
    kind = spec.strategy.type
    weight = spec.strategy.canary.steps[0] if kind == "Canary" else 0
    rollout = {"stableVersion": version, "canaryVersion": version + 1, "canaryWeight": weight, "strategy": kind,
               "rollout": {"state": "Analysing", "readyAt": "2026-11-25T12:00:00Z"}}  # fmt: skip
    return [{"stableVersion": version, "strategy": kind}, rollout]


@FUZZ
@given(mutated())
def test_every_accepted_manifest_renders_valid_kubernetes_and_istio_objects(doc):
    result = validate_spec(doc.get("spec"), name=doc["metadata"]["name"])  # the operator's entry point
    event("accepted" if result.ok else "rejected")
    if not result.ok:
        return
    assert result.spec is not None
    target = Target(name=doc["metadata"]["name"], namespace="radiology", spec=result.spec, uid="0f6a7b9e-1111")
    for status in _statuses(result.spec):
        versions, route = plans(result.spec, status)
        for obj in desired_objects(target, list(versions), route):
            note(f"{obj['kind']}/{obj['metadata']['name']}")
            if obj["apiVersion"].startswith("networking.istio.io/"):
                problems = schema_problems(ISTIO_SCHEMAS[obj["kind"]], obj)
                assert not problems, [str(p) for p in problems]
            else:
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
