"""
Built-in objects as kube-apiserver decodes and stores them, from the OpenAPI schema of a pinned version.

The schemas are kubernetes-validate's copy of the Kubernetes OpenAPI definitions (one JSON file per
release; the emulator pins the release its /version reports). A real server decodes a request into
Go structs, which is what :func:`TypeSchemas.decode` reproduces:

- a value of the wrong JSON type is a decoding error: **400** ``<Kind> in version "v1" cannot be handled
  as a <Kind>: json: cannot unmarshal string into Go struct field ...`` (also a quantity that does not
  parse, a time that is not RFC 3339);
- unknown fields are dropped (Go ignores them); with ``fieldValidation=Strict`` (what kubectl sends)
  they are a 400 ``strict decoding error: unknown field "spec.x"``, with the default ``Warn`` each
  one gives a ``Warning`` response header;
- what is stored is what the structs serialise back to: quantities in canonical form (``0.5`` ->
  ``500m``, :mod:`kubeemu.quantity`), times in RFC 3339 UTC, and optional (``omitempty``) fields
  holding ``""``, ``[]`` or an empty map left out (a toleration's ``effect: ""`` is not stored).

The schema has no semantic rules; :mod:`kubeemu.builtin_rules` checks those afterwards (422).
"""

import datetime
import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from kubeemu.quantity import QuantityError, canonicalize

Obj = dict[str, Any]
_REF_PREFIX = "#/$defs/"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
TIME = "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
MICRO_TIME = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"
_DROP = object()


class DecodeError(ValueError):
    """The body cannot be decoded into the Go type (answered 400 BadRequest)."""


@dataclass
class Decoded:
    """A decoded object as it would be stored, plus where each schema definition occurred."""

    obj: Obj
    unknown: list[str] = field(default_factory=list)  # dotted paths of dropped unknown fields
    visits: list[tuple[str, str, Any]] = field(default_factory=list)  # (definition, field path, value)

    def at(self, definition: str) -> list[tuple[str, Any]]:
        return [(path, value) for name, path, value in self.visits if name == definition]


def _short(definition: str) -> str:
    return definition.rsplit(".", 1)[-1]


def _go_type(node: Obj) -> str:
    types = node.get("type")
    types = [t for t in (types if isinstance(types, list) else [types]) if t and t != "null"]
    kind = types[0] if types else "object"
    if kind == "integer":
        return "int64" if node.get("format") == "int64" else "int32"
    return {"string": "string", "number": "float64", "boolean": "bool", "array": "[]", "object": "map"}.get(kind, kind)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _time(value: str, micro: bool) -> str:
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise DecodeError(
            f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse "{value}" as "2006"'
        ) from None
    if parsed.tzinfo is None or "T" not in value.upper():
        raise DecodeError(f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse')
    parsed = parsed.astimezone(datetime.UTC)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


class TypeSchemas:
    """The OpenAPI definitions of one Kubernetes release, indexed by group/version/kind."""

    def __init__(self, kubernetes_version: str = "1.36") -> None:
        self.version = kubernetes_version
        folder = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
        name = f"v{kubernetes_version}.0-local-strict"
        if not folder.joinpath(name).is_dir():
            raise ValueError(f"kubernetes-validate has no schemas for Kubernetes {kubernetes_version}")
        self.defs: dict[str, Obj] = json.loads(folder.joinpath(name, "_definitions.json").read_text())["$defs"]
        self.by_gvk: dict[tuple[str, str, str], str] = {}
        for def_name, node in self.defs.items():
            for gvk in node.get("x-kubernetes-group-version-kind") or []:
                if "metadata" in (node.get("properties") or {}):
                    self.by_gvk[(gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))] = def_name

    def root(self, group: str, version: str, kind: str) -> str | None:
        return self.by_gvk.get((group, version, kind))

    def decode(self, definition: str, obj: Obj) -> Decoded:
        """Decode ``obj`` as the Go type of ``definition``; raises DecodeError (400)."""
        result = Decoded({})
        value = self._decode({"$ref": _REF_PREFIX + definition}, obj, "", definition, result)
        result.obj = value if isinstance(value, dict) else {}
        return result

    def _decode(self, node: Obj, value: Any, path: str, struct: str, out: Decoded) -> Any:
        ref = node.get("$ref")
        if ref is not None:
            definition = ref[len(_REF_PREFIX) :]
            decoded = self._decode_definition(definition, value, path, struct, out)
            if decoded is not _DROP:
                out.visits.append((definition, path, decoded))
            return decoded
        if value is None:
            return _DROP  # null decodes to the zero value, which is not serialised
        types = node.get("type")
        types = set(types if isinstance(types, list) else [types] if types else [])
        if "object" in types or "properties" in node:
            return self._decode_object(node, value, path, struct, out)
        if "array" in types:
            if not isinstance(value, list):
                self._mismatch(value, node, path, struct)
            items = node.get("items") or {}
            decoded_items = [self._decode(items, item, f"{path}[{i}]", struct, out) for i, item in enumerate(value)]
            return [None if item is _DROP else item for item in decoded_items]
        if "string" in types:
            if not isinstance(value, str):
                self._mismatch(value, node, path, struct)
            return value
        if "integer" in types:
            if isinstance(value, bool) or not isinstance(value, int):
                self._mismatch(value, node, path, struct)
            return value
        if "number" in types:
            if isinstance(value, bool) or not isinstance(value, int | float):
                self._mismatch(value, node, path, struct)
            return value
        if "boolean" in types:
            if not isinstance(value, bool):
                self._mismatch(value, node, path, struct)
            return value
        return value  # untyped (free-form JSON)

    def _decode_definition(self, definition: str, value: Any, path: str, struct: str, out: Decoded) -> Any:
        if value is None:
            return _DROP
        if definition == QUANTITY:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise DecodeError(_mismatch_text(value, "resource.Quantity", path, struct))
            try:
                return canonicalize(value)
            except QuantityError as e:
                raise DecodeError(str(e)) from None
        if definition == INT_OR_STRING:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise DecodeError(_mismatch_text(value, "intstr.IntOrString", path, struct))
            return value
        if definition in (TIME, MICRO_TIME):
            if not isinstance(value, str):
                raise DecodeError(_mismatch_text(value, "v1." + _short(definition), path, struct))
            return _time(value, definition == MICRO_TIME)
        node = self.defs.get(definition)
        if node is None:
            return value
        return self._decode(node, value, path, _short(definition), out)

    def _decode_object(self, node: Obj, value: Any, path: str, struct: str, out: Decoded) -> Any:
        if not isinstance(value, dict):
            self._mismatch(value, node, path, struct)
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if props is None and not isinstance(extra, dict):
            return value  # free-form (RawExtension, FieldsV1)
        required = set(node.get("required") or ())
        result: Obj = {}
        for key, item in value.items():
            sub_path = f"{path}.{key}" if path else key
            if props is not None and key in props:
                sub = props[key]
                decoded = self._decode(sub, item, sub_path, struct, out)
                if decoded is _DROP or (key not in required and _omitted(sub, decoded, self.defs)):
                    continue
                result[key] = decoded
            elif isinstance(extra, dict):
                decoded = self._decode(extra, item, sub_path, struct, out)
                result[key] = None if decoded is _DROP else decoded
            else:
                out.unknown.append(sub_path)
        return result

    def _mismatch(self, value: Any, node: Obj, path: str, struct: str) -> None:
        raise DecodeError(_mismatch_text(value, _go_type(node), path, struct))


def _mismatch_text(value: Any, go_type: str, path: str, struct: str) -> str:
    clean = ".".join(part.split("[")[0] for part in path.split("."))  # Go's path has no indexes
    return f"json: cannot unmarshal {_json_type(value)} into Go struct field {struct}.{clean} of type {go_type}"


def _omitted(node: Obj, value: Any, defs: dict[str, Obj]) -> bool:
    """Go's omitempty for an optional field: "", [] and empty maps are not serialised (structs are)."""
    if value == "" or value == []:
        return True
    if value == {}:
        ref = node.get("$ref")
        target = defs.get(ref[len(_REF_PREFIX) :], {}) if ref else node
        return "properties" not in target and isinstance(target.get("additionalProperties"), dict)
    return False


@functools.lru_cache(maxsize=4)
def schemas(kubernetes_version: str = "1.36") -> TypeSchemas:
    """The (cached) schemas of one release; loading one costs ~50 ms."""
    return TypeSchemas(kubernetes_version)
