"""Validation of ModelDeployment manifests, exactly as the operator applies it and `modeldeploy validate` reports it.

Three layers, in the order an API server plus the operator apply them:
1. the CRD's openAPIV3Schema after structural defaulting (types, enums, ranges, patterns, unknown fields),
2. the CRD's CEL rules (x-kubernetes-validations: cross-field rules),
3. the semantic rules in `modeldeploy.validation.semantic` (what CEL cannot say: templates, durations, regexes...).
Each problem names the field path. The CRD is read from the package's copy of crds/modeldeployment.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from modeldeploy import API_VERSION, KIND
from modeldeploy.spec import ModelDeploymentSpec, Problem, SpecError, parse_spec
from modeldeploy.validation.cel import cel_problems
from modeldeploy.validation.openapi import apply_defaults, schema_problems
from modeldeploy.validation.semantic import semantic_problems


@lru_cache(maxsize=1)
def load_crd() -> dict[str, Any]:
    """The ModelDeployment CRD shipped inside the package (identical to crds/modeldeployment.yaml)."""
    text = resources.files("modeldeploy").joinpath("crd/modeldeployment.yaml").read_text()
    return yaml.safe_load(text)


@lru_cache(maxsize=1)
def crd_schema() -> dict[str, Any]:
    crd = load_crd()
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == API_VERSION.split("/")[1]]
    return version["schema"]["openAPIV3Schema"]


@dataclass
class ValidationResult:
    """What validation found; `spec` is set only when there are no problems."""

    problems: list[Problem] = field(default_factory=list)
    defaulted: dict[str, Any] | None = None
    spec: ModelDeploymentSpec | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_manifest(doc: Any) -> ValidationResult:
    """Validate a whole ModelDeployment manifest (apiVersion, kind, metadata, spec)."""
    if not isinstance(doc, dict):
        return ValidationResult([Problem("<root>", "a ModelDeployment must be a mapping")])
    problems: list[Problem] = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(Problem("apiVersion", f"must be {API_VERSION}, not {doc.get('apiVersion')!r}"))
    if doc.get("kind") != KIND:
        problems.append(Problem("kind", f"must be {KIND}, not {doc.get('kind')!r}"))
    raw_metadata = doc.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    if not metadata.get("name") and not metadata.get("generateName"):
        problems.append(Problem("metadata.name", "is required"))
    if problems:
        return ValidationResult(problems)

    schema = crd_schema()
    body = {k: v for k, v in doc.items() if k != "status"}
    defaulted = apply_defaults(schema, body)
    problems = schema_problems(schema, defaulted)
    cel_view = dict(defaulted, metadata={k: metadata[k] for k in ("name", "generateName") if k in metadata})
    cel = cel_problems(schema, cel_view)
    if problems:  # evaluation errors on ill-typed values only repeat the schema problems
        cel = [p for p in cel if "Error:" not in p.message]
    problems.extend(cel)
    if problems:
        return ValidationResult(_unique(problems), defaulted)
    try:
        spec = parse_spec(defaulted.get("spec") or {})
    except SpecError as exc:
        return ValidationResult(_unique(exc.problems), defaulted)
    problems = semantic_problems(spec)
    if problems:
        return ValidationResult(_unique(problems), defaulted)
    return ValidationResult([], defaulted, spec)


def validate_spec(spec: dict[str, Any], name: str = "x") -> ValidationResult:
    """Validate a spec as found on a live object (the operator's entry point)."""
    return validate_manifest({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec})


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for p in problems:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            out.append(p)
    return out
