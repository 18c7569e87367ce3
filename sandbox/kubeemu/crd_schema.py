"""
Custom resources as apiextensions-apiserver handles a write: prune, default, validate (schema + CEL).

A port of what k8s.io/apiextensions-apiserver does with a CRD version's structural
``openAPIV3Schema`` on create and update:

1. **pruning** (``pkg/apiserver/schema/pruning``): fields the schema does not specify are dropped,
   unless a node says ``x-kubernetes-preserve-unknown-fields: true``; ``apiVersion``/``kind``/
   ``metadata`` stay at the root and in ``x-kubernetes-embedded-resource`` objects. The pruned paths
   are reported: with ``fieldValidation=Strict`` they are a 400, with ``Warn`` Warning headers;
2. **defaulting** (``schema/defaulting``): nulls of non-nullable fields are dropped, then every
   missing property with a ``default`` gets it (depth first, also in map values and list items);
3. **validation** (``pkg/apiserver/validation``, kube-openapi's validator): types (int-or-string,
   nullable), enum, numeric bounds, lengths, patterns, item/property counts, uniqueness, formats,
   required, ``x-kubernetes-list-type`` map/set keys, and every ``x-kubernetes-validations`` CEL rule
   (``self``; ``oldSelf`` rules only on an update of a value that existed), evaluated with the
   ``common-expression-language`` package — the library ``modeldeploy validate`` uses too.

Errors are :class:`kubeemu.fielderrors.FieldError` s with the real messages (``spec.x in body must be
of type integer: "string"``); the caller answers them as one 422 Invalid.
"""

import collections
import contextlib
import copy
import datetime
import functools
import json
import re
from typing import Any

import cel

from kubeemu import fielderrors as fe

Obj = dict[str, Any]
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")
_MISSING = object()
MISSING = _MISSING  # no stored value (a create)


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- 1. pruning -------------------------------------------------------------------------------------


def prune(schema: Obj, value: Any, path: str = "", *, root: bool = True, unknown: list[str] | None = None) -> Any:
    """A copy of ``value`` without the fields ``schema`` does not specify; their paths go to ``unknown``."""
    unknown = unknown if unknown is not None else []
    return _prune(schema, value, path, root, unknown)


def _prune(schema: Obj, value: Any, path: str, root: bool, unknown: list[str]) -> Any:
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = root or bool(schema.get("x-kubernetes-embedded-resource"))
        out = {}
        for key, item in value.items():
            sub_path = _child(path, key)
            if embedded and key in _ROOT_FIELDS:
                out[key] = item  # ObjectMeta and type meta are the server's, whatever the schema says
            elif key in props:
                out[key] = _prune(props[key], item, sub_path, False, unknown)
            elif isinstance(extra, dict):
                out[key] = _prune(extra, item, sub_path, False, unknown)
            elif extra is True or preserve:
                out[key] = item
            else:
                unknown.append(sub_path)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune(schema["items"], item, f"{path}[{i}]", False, unknown) for i, item in enumerate(value)]
    return value


# --- 2. defaulting ----------------------------------------------------------------------------------


def apply_defaults(schema: Obj, value: Any) -> Any:
    """A copy of ``value`` with nulls of non-nullable fields dropped and the schema's defaults filled in."""
    value = copy.deepcopy(value)
    _default(schema, value)
    return value


def _default(schema: Obj, value: Any) -> None:
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else None
        for key in [k for k, v in value.items() if v is None]:
            sub = props.get(key) or extra or {}
            if not sub.get("nullable"):
                del value[key]
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _default(sub, value[key])
        if extra is not None:
            for key in value:
                if key not in props:
                    _default(extra, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default(schema["items"], item)


# --- 3. validation ----------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _has_type(value: Any, expected: str) -> bool:
    actual = _type_name(value)
    if expected == "number":
        return actual in ("integer", "number")
    if expected == "integer" and isinstance(value, float) and value.is_integer():
        return True  # JSON has one number type; 2.0 is an integer to the validator
    return actual == expected


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


_FORMATS = {
    "date-time": lambda v: _rfc3339(v),
    "date": lambda v: bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", v)),
    "int32": lambda v: True,
    "int64": lambda v: True,
    "byte": lambda v: bool(re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", v)),
    "uuid": lambda v: bool(re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", v)),
}


def _rfc3339(value: str) -> bool:
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return "T" in value.upper()


def validate(schema: Obj, value: Any, path: str = "", *, old: Any = _MISSING) -> list[fe.FieldError]:
    """Every schema and CEL error of ``value`` (``old``: the stored value, for transition rules)."""
    errors: list[fe.FieldError] = []
    _validate(schema, value, path, old, errors, root=not path, cel_phase=False)
    if any(e.type == "TypeInvalid" for e in errors):
        # apiextensions' hasBlockingErr: CEL rules need well-typed values, so none of them runs.
        errors.append(
            fe.invalid(
                "<nil>",
                None,
                "some validation rules were not checked because the object was invalid; "
                "correct the existing errors to complete validation",
            )
        )
    else:
        _validate(schema, value, path, old, errors, root=not path, cel_phase=True)
    return errors


def _type_error(path: str, shown: str, expected: str, value: Any) -> fe.FieldError:
    # kube-openapi's InvalidType carries the actual type name as the value: Invalid value: "string"
    actual = _type_name(value)
    return fe.FieldError("TypeInvalid", path, actual, f'{shown} in body must be of type {expected}: "{actual}"')


def _validate(
    schema: Obj, value: Any, path: str, old: Any, errors: list[fe.FieldError], *, root: bool = False, cel_phase: bool
) -> None:
    """One of two passes over a value: the schema's own checks, or (when those found no type error) CEL."""
    if cel_phase:
        if isinstance(value, dict):
            _validate_object(schema, value, path, old, errors, root, cel_phase)
        elif isinstance(value, list):
            _validate_array(schema, value, path, old, errors, cel_phase)
        if value is not None:
            _check_rules(schema, value, path, old, errors)
        return
    shown = path or "<root>"
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            errors.append(_type_error(path, shown, schema["type"], None))
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (_has_type(value, "integer") or isinstance(value, str)):
            errors.append(_type_error(path, shown, "integer,string", value))
            return
    elif schema.get("type") and not _has_type(value, schema["type"]):
        errors.append(_type_error(path, shown, schema["type"], value))
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(fe.not_supported(path, value, [str(v) for v in schema["enum"]]))
    if isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(schema, value, path, shown, errors)
    if isinstance(value, str):
        _check_string(schema, value, path, shown, errors)
    for junctor in ("allOf", "anyOf", "oneOf", "not"):
        if junctor in schema:
            _check_junctor(junctor, schema[junctor], value, path, shown, errors)
    if isinstance(value, dict):
        _check_object(schema, value, path, shown, errors)
        _validate_object(schema, value, path, old, errors, root, cel_phase)
    elif isinstance(value, list):
        _check_array(schema, value, path, shown, errors)
        _validate_array(schema, value, path, old, errors, cel_phase)


def _check_number(schema: Obj, value: float, path: str, shown: str, errors: list[fe.FieldError]) -> None:
    if "maximum" in schema:
        limit = schema["maximum"]
        if value > limit or (schema.get("exclusiveMaximum") and value == limit):
            op = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
            errors.append(fe.invalid(path, value, f"{shown} in body should be {op} {_number(limit)}"))
    if "minimum" in schema:
        limit = schema["minimum"]
        if value < limit or (schema.get("exclusiveMinimum") and value == limit):
            op = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
            errors.append(fe.invalid(path, value, f"{shown} in body should be {op} {_number(limit)}"))
    if schema.get("multipleOf") and (value / schema["multipleOf"]) % 1:
        errors.append(
            fe.invalid(path, value, f"{shown} in body should be a multiple of {_number(schema['multipleOf'])}")
        )


def _check_string(schema: Obj, value: str, path: str, shown: str, errors: list[fe.FieldError]) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(fe.FieldError("TooLong", path, value, f"may not be more than {schema['maxLength']} bytes"))
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(fe.invalid(path, value, f"{shown} in body should be at least {schema['minLength']} chars long"))
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(fe.invalid(path, value, f"{shown} in body should match '{schema['pattern']}'"))
    check = _FORMATS.get(schema.get("format", ""))
    if check is not None and not check(value):
        errors.append(fe.invalid(path, value, f'{shown} in body must be of type {schema["format"]}: "{value}"'))


def _check_junctor(junctor: str, schemas: Any, value: Any, path: str, shown: str, errors: list[fe.FieldError]) -> None:
    """Structural junctors only constrain values (no types, no defaults): check their value rules."""

    def passes(sub: Obj) -> bool:
        found: list[fe.FieldError] = []
        _validate(sub, value, path, _MISSING, found, cel_phase=False)
        return not found

    if junctor == "not":
        if passes(schemas):
            errors.append(fe.invalid(path, value, f"{shown} in body must not validate the schema (not)"))
    elif junctor == "allOf":
        for sub in schemas:
            _validate(sub, value, path, _MISSING, errors, cel_phase=False)
    elif junctor == "anyOf":
        if not any(passes(sub) for sub in schemas):
            errors.append(fe.invalid(path, value, f"{shown} in body must validate at least one schema (anyOf)"))
    elif sum(passes(sub) for sub in schemas) != 1:
        errors.append(fe.invalid(path, value, f"{shown} in body must validate one and only one schema (oneOf)"))


def _check_object(schema: Obj, value: Obj, path: str, shown: str, errors: list[fe.FieldError]) -> None:
    for key in schema.get("required") or []:
        if key not in value:
            errors.append(fe.required(_child(path, key)))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(fe.FieldError("TooMany", path, len(value), f"must have at most {schema['maxProperties']} items"))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errors.append(
            fe.invalid(path, value, f"{shown} in body should have at least {schema['minProperties']} properties")
        )


def _validate_object(
    schema: Obj, value: Obj, path: str, old: Any, errors: list[fe.FieldError], root: bool, cel_phase: bool
) -> None:
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else None
    old_map = old if isinstance(old, dict) else {}
    for key, item in value.items():
        if root and key in _ROOT_FIELDS:
            continue
        sub = props.get(key) or extra
        if sub is None:
            continue
        if root:  # spec, status: most writes change one of them and leave the other as it was
            errors += _validated_part(sub, item, _child(path, key), old_map.get(key, _MISSING), cel_phase)
        else:
            _validate(sub, item, _child(path, key), old_map.get(key, _MISSING), errors, cel_phase=cel_phase)


_PART_CACHE: collections.OrderedDict[tuple, tuple[fe.FieldError, ...]] = collections.OrderedDict()
_PART_CACHE_SIZE = 2048


def _validated_part(schema: Obj, value: Any, path: str, old: Any, cel_phase: bool) -> list[fe.FieldError]:
    """The errors of one top-level part of a custom resource (spec, status), remembered by content.

    Validation is a pure function of (schema, value, path, old value, phase): the same inputs give the
    same errors, so a status write re-checks an unchanged spec from memory (and 50 objects with one spec
    share the work) while every changed part is validated in full. Keys are the values' JSON texts: a
    value JSON cannot write (never the case for a request body) is simply validated."""
    try:
        key = (
            id(schema),
            path,
            cel_phase,
            json.dumps(value),
            "" if old is _MISSING else json.dumps(old),
            old is _MISSING,
        )
    except (TypeError, ValueError):
        found: list[fe.FieldError] = []
        _validate(schema, value, path, old, found, cel_phase=cel_phase)
        return found
    cached = _PART_CACHE.get(key)
    if cached is not None and _PART_SCHEMAS.get(id(schema)) is schema:
        with contextlib.suppress(KeyError):  # evicted meanwhile by another thread (tests validate from several)
            _PART_CACHE.move_to_end(key)
        return list(cached)
    found = []
    _validate(schema, value, path, old, found, cel_phase=cel_phase)
    _PART_SCHEMAS[id(schema)] = schema  # held here, so its id never names another schema
    _PART_CACHE[key] = tuple(found)
    if len(_PART_CACHE) > _PART_CACHE_SIZE:
        with contextlib.suppress(KeyError):
            _PART_CACHE.popitem(last=False)
    return found


_PART_SCHEMAS: dict[int, Obj] = {}


def _check_array(schema: Obj, value: list, path: str, shown: str, errors: list[fe.FieldError]) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(fe.FieldError("TooMany", path, len(value), f"must have at most {schema['maxItems']} items"))
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(fe.invalid(path, value, f"{shown} in body should have at least {schema['minItems']} items"))
    list_type = schema.get("x-kubernetes-list-type")
    if schema.get("uniqueItems") or list_type == "set":
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                errors.append(fe.duplicate(f"{path}[{i}]", item))
            seen.append(item)
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: set[tuple] = set()
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)
            if key in seen_keys:
                errors.append(fe.duplicate(f"{path}[{i}]", {k: item.get(k) for k in keys}))
            seen_keys.add(key)


def _validate_array(
    schema: Obj, value: list, path: str, old: Any, errors: list[fe.FieldError], cel_phase: bool
) -> None:
    items = schema.get("items")
    if not isinstance(items, dict):
        return
    keys = schema.get("x-kubernetes-list-map-keys") or []
    by_key = schema.get("x-kubernetes-list-type") == "map" and isinstance(old, list)
    old_items = {_map_key(o, keys): o for o in old if isinstance(o, dict)} if by_key else {}
    for i, item in enumerate(value):
        previous = old_items.get(_map_key(item, keys), _MISSING) if by_key and isinstance(item, dict) else _MISSING
        _validate(items, item, f"{path}[{i}]", previous, errors, cel_phase=cel_phase)


def _map_key(item: Obj, keys: list[str]) -> tuple:
    return tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)


# --- CEL --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _program(rule: str) -> Any:
    return cel.compile(rule)


def cel_value(schema: Obj, value: Any) -> Any:
    """``value`` typed as CEL sees it under ``schema``: ``type: number`` is a double even when written 2."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else {}
        return {k: cel_value(props.get(k) or extra, v) for k, v in value.items()}
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        return [cel_value(items, v) for v in value]
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if schema.get("type") == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_RULE_REASONS = {
    "FieldValueRequired": "Required",
    "FieldValueForbidden": "Forbidden",
    "FieldValueDuplicate": "Duplicate",
    "FieldValueInvalid": "Invalid",
}


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


@functools.lru_cache(maxsize=1024)
def selected_fields(expression: str, variable: str) -> frozenset[str] | None:
    """The fields of ``variable`` that ``expression`` reaches, when it only ever selects fields of it
    (``self.spec.x``, ``has(self.status)``); None when it uses the value otherwise (``size(self)``,
    ``self.all(...)``, ``self[k]``, ``self == ...``, ``self.?x``): then the rule needs all of it.

    kube-apiserver converts ``self`` lazily (only what a rule touches is read); the CEL package here
    converts the whole value it is given. A rule at the root of a custom resource would then convert the
    whole object, status included, on every write. Handing it only the fields it selects is the same
    evaluation: a field selection reads that field (or, absent, fails or answers has() the same way)."""
    uses = len(re.findall(rf"\b{variable}\b", expression))
    fields = set()
    for match in re.finditer(rf"\b{variable}\s*\.\s*({_IDENT})(\s*\()?", expression):
        if match.group(2):  # a macro or method on the value itself (self.all(...)): all of it
            return None
        fields.add(match.group(1))
    return frozenset(fields) if len(re.findall(rf"\b{variable}\s*\.\s*{_IDENT}", expression)) == uses else None


def _rule_input(schema: Obj, value: Any, fields: frozenset[str] | None, cache: dict) -> Any:
    """``value`` typed for CEL, restricted to ``fields`` (None: all of it); one conversion per field set."""
    if fields is not None and isinstance(value, dict):
        value = {k: v for k, v in value.items() if k in fields}
    if fields not in cache:
        cache[fields] = cel_value(schema, value)
    return cache[fields]


def _check_rules(schema: Obj, value: Any, path: str, old: Any, errors: list[fe.FieldError]) -> None:
    rules = schema.get("x-kubernetes-validations") or []
    if not rules:
        return
    typed: dict = {}
    typed_old: dict = {}
    for rule in rules:
        expression = rule.get("rule", "")
        transition = re.search(r"\boldSelf\b", expression) is not None
        if transition and old is _MISSING and not rule.get("optionalOldSelf"):
            continue  # transition rules only run on updates of a value that existed before
        variables = {"self": _rule_input(schema, value, selected_fields(expression, "self"), typed)}
        if transition:
            variables["oldSelf"] = (
                None if old is _MISSING else _rule_input(schema, old, selected_fields(expression, "oldSelf"), typed_old)
            )
        where = path + (rule.get("fieldPath") or "") if rule.get("fieldPath") else path
        try:
            ok = _program(expression).execute(variables) is True
        except Exception as e:  # noqa: BLE001 - a rule that cannot be evaluated is a validation error
            errors.append(fe.invalid(where, schema.get("type", "object"), f"{expression}: {type(e).__name__}: {e}"))
            continue
        if ok:
            continue
        message = rule.get("message") or f"failed rule: {_rule_text(expression)}"
        kind = _RULE_REASONS.get(rule.get("reason") or "FieldValueInvalid", "Invalid")
        if kind == "Invalid":
            errors.append(fe.invalid(where, schema.get("type", "object"), message))
        elif kind == "Duplicate":
            errors.append(fe.FieldError("Duplicate", where, schema.get("type", "object"), message))
        else:
            errors.append(fe.FieldError(kind, where, detail=message))


def _rule_text(expression: str) -> str:
    return " ".join(expression.split())
