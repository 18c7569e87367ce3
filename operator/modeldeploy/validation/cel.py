"""The CRD's x-kubernetes-validations (CEL rules), evaluated as the API server would.

Only core CEL is used in our CRD (no Kubernetes CEL extensions), so the `common-expression-language`
package evaluates the very rules a real API server runs. Values are typed per the schema first
(``type: number`` is a CEL double even when YAML wrote an integer), as Kubernetes does.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import cel

from modeldeploy.spec import Problem
from modeldeploy.validation.openapi import format_path, walk


@lru_cache(maxsize=256)
def _program(rule: str) -> Any:
    return cel.compile(rule)


def typed(schema: dict[str, Any], value: Any) -> Any:
    """`value` with numbers converted to the schema's CEL types (number -> double)."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out = {}
        for key, sub in value.items():
            sub_schema = props.get(key) or (extra if isinstance(extra, dict) else {})
            out[key] = typed(sub_schema, sub)
        return out
    if isinstance(value, list):
        items = schema.get("items")
        return [typed(items if isinstance(items, dict) else {}, v) for v in value]
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# Rule results by (rule, value): ModelDeployments of one platform share most sub-specs, and the
# operator revalidates on every spec change; CEL evaluation is the expensive part of validation.
_RESULTS: dict[tuple[str, str], tuple[bool, str | None]] = {}
_RESULTS_LIMIT = 20_000


def _evaluate(expression: str, self_value: Any) -> tuple[bool, str | None]:
    """(rule holds, error text) for one rule on one value, memoised."""
    key = (expression, json.dumps(self_value, sort_keys=True, default=str))
    cached = _RESULTS.get(key)
    if cached is not None:
        return cached
    result: tuple[bool, str | None]
    try:
        result = (_program(expression).execute({"self": self_value}) is True, None)
    except Exception as exc:  # noqa: BLE001 - a rule that errors is a validation failure
        result = (False, f"{type(exc).__name__}: {exc}")
    if len(_RESULTS) >= _RESULTS_LIMIT:
        _RESULTS.clear()
    _RESULTS[key] = result
    return result


def cel_problems(schema: dict[str, Any], value: Any, prefix: tuple = ()) -> list[Problem]:
    """One Problem per failing rule, at the path of the node that carries the rule."""
    problems = []
    for node, sub, path in walk(schema, value, prefix):
        rules = node.get("x-kubernetes-validations") or []
        if not rules:
            continue
        self_value = typed(node, sub)
        for rule in rules:
            expression = rule["rule"]
            ok, error = _evaluate(expression, self_value)
            # fieldPath (relative to the rule's node, `.a.b` or `['a']`) is where the API server reports it.
            where = format_path(tuple(path) + _field_path(rule.get("fieldPath") or "")) or "<root>"
            if error is not None:
                problems.append(Problem(where, f"{rule.get('message') or expression} ({error})"))
            elif not ok:
                problems.append(Problem(where, rule.get("message") or f"failed rule: {expression}"))
    return problems


def _field_path(text: str) -> tuple[str, ...]:
    """A rule's fieldPath (`.metadata.name`, `.testMap['a.b']`) as keys."""
    return tuple(a or b for a, b in re.findall(r"\.([^.\[\]]+)|\['([^']*)'\]", text))
