"""The CRD's openAPIV3Schema as an API server applies it: structural defaulting and schema validation.

Kubernetes' dialect differs from JSON Schema in a few places, converted here:
``nullable``, ``x-kubernetes-int-or-string``, OpenAPI 3.0's boolean ``exclusiveMinimum/Maximum``,
unknown fields (rejected, as kubectl's default strict field validation does, unless the schema says
``x-kubernetes-preserve-unknown-fields``) and ``x-kubernetes-list-type: map`` key uniqueness.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import jsonschema

from modeldeploy.spec import Problem


def format_path(parts: Any) -> str:
    """`spec.analysis.metrics[0].max` from a sequence of keys and indexes."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """Convert one openAPIV3Schema node (recursively) to JSON Schema (draft 2020-12)."""
    out: dict[str, Any] = {}
    preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "description", "default", "format"):
            continue
        if key == "properties":
            out["properties"] = {k: to_json_schema(v) for k, v in value.items()}
        elif key == "items":
            out["items"] = to_json_schema(value)
        elif key == "additionalProperties":
            out["additionalProperties"] = to_json_schema(value) if isinstance(value, dict) else value
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [to_json_schema(v) for v in value]
        elif key == "not":
            out[key] = to_json_schema(value)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            continue  # handled with minimum/maximum below
        else:
            out[key] = value
    if node.get("exclusiveMinimum") is True and "minimum" in node:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("exclusiveMaximum") is True and "maximum" in node:
        out["exclusiveMaximum"] = out.pop("maximum")
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.pop("anyOf", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    if out.get("type") == "number":
        out["type"] = ["number"]  # integers are numbers too (JSON Schema agrees); keep explicit
    return out


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """A deep copy of `value` with the schema's defaults filled in, the way the API server does."""
    value = copy.deepcopy(value)
    _default_in_place(schema, value)
    return value


def _default_in_place(schema: dict[str, Any], value: Any) -> None:
    if isinstance(value, dict):
        # Like the API server: nulls of non-nullable fields are pruned before defaulting.
        props = schema.get("properties") or {}
        for key in [k for k, v in value.items() if v is None]:
            extra = schema.get("additionalProperties")
            sub = props.get(key) or (extra if isinstance(extra, dict) else {})
            if not sub.get("nullable"):
                del value[key]
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _default_in_place(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in list(value):
                if key not in (schema.get("properties") or {}):
                    _default_in_place(extra, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default_in_place(schema["items"], item)


_VALIDATORS: dict[tuple[int, bool], tuple[dict, jsonschema.Draft202012Validator]] = {}


def _validator(schema: dict[str, Any], root: bool) -> jsonschema.Draft202012Validator:
    """The compiled validator of a schema (cached: converting and compiling costs milliseconds)."""
    key = (id(schema), root)
    cached = _VALIDATORS.get(key)
    if cached is not None and cached[0] is schema:
        return cached[1]
    converted = to_json_schema(schema)
    if root and converted.get("type") == "object":
        # The API server always accepts these at the root of an object, whatever the CRD lists.
        converted.setdefault("properties", {})
        for key_, kind in (("apiVersion", "string"), ("kind", "string"), ("metadata", "object")):
            converted["properties"].setdefault(key_, {"type": kind})
    validator = jsonschema.Draft202012Validator(converted)
    _VALIDATORS[key] = (schema, validator)
    return validator


def schema_problems(schema: dict[str, Any], value: Any, prefix: tuple = ()) -> list[Problem]:
    """Every schema violation of `value`, each naming its field path."""
    validator = _validator(schema, root=not prefix)
    problems = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path))):
        path = format_path(prefix + tuple(error.absolute_path))
        missing = (
            re.match(r"'([^']+)' is a required property$", error.message) if error.validator == "required" else None
        )
        if not path and missing:  # a field missing at the root: name it (`spec: is required`), not `<root>`
            problems.append(Problem(missing.group(1), "is required"))
            continue
        problems.append(Problem(path or "<root>", _describe(error)))
    problems.extend(_list_map_problems(schema, value, prefix))
    return problems


def _describe(error: jsonschema.ValidationError) -> str:
    validator = error.validator
    schema: Any = error.schema  # a mapping here: a validator error always comes from a schema object
    if validator == "additionalProperties":
        instance: Any = error.instance
        extra = sorted(set(instance) - set(schema.get("properties", {})))
        return f"unknown field(s): {', '.join(extra)}"
    if validator == "required":
        return error.message.replace("is a required property", "is required")
    if validator == "enum":
        return f"{error.instance!r} is not one of {error.validator_value}"
    if validator == "type":
        expected: Any = error.validator_value
        return f"{error.instance!r} is not of type {expected if isinstance(expected, str) else ' or '.join(expected)}"
    if validator == "pattern":
        return f"{error.instance!r} does not match the pattern {error.validator_value}"
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[validator]
        return f"{error.instance!r} must be {op} {error.validator_value}"
    if validator == "anyOf":
        return f"{error.instance!r} is not an integer or a string"
    return error.message


def _walk(schema: dict[str, Any], value: Any, path: tuple) -> Iterator[tuple[dict[str, Any], Any, tuple]]:
    """(schema node, value, path) for every present value, depth first."""
    yield schema, value, path
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, sub_value in value.items():
            sub = props.get(key) or (extra if isinstance(extra, dict) else None)
            if sub is not None:
                yield from _walk(sub, sub_value, path + (key,))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from _walk(schema["items"], item, path + (i,))


def walk(schema: dict[str, Any], value: Any, path: tuple = ()) -> Iterator[tuple[dict[str, Any], Any, tuple]]:
    return _walk(schema, value, path)


def _list_map_problems(schema: dict[str, Any], value: Any, prefix: tuple) -> list[Problem]:
    problems = []
    for node, sub, path in walk(schema, value, prefix):
        if node.get("x-kubernetes-list-type") == "map" and isinstance(sub, list):
            keys = node.get("x-kubernetes-list-map-keys") or []
            seen: dict[tuple, int] = {}
            for i, item in enumerate(sub):
                if not isinstance(item, dict):
                    continue
                key = tuple(item.get(k) for k in keys)
                if not all(isinstance(k, (str, int, float, bool, type(None))) for k in key):
                    continue  # an ill-typed key (a mapping, a list): the schema check already names it
                if key in seen:
                    shown = ", ".join(f"{k}={v!r}" for k, v in zip(keys, key))
                    problems.append(Problem(format_path(path + (i,)), f"duplicate entry ({shown})"))
                seen[key] = i
    return problems
