"""
Patch algorithms of the API server emulator: JSON merge patch, JSON patch and strategic merge patch.

* :func:`merge_patch` is RFC 7386 (``application/merge-patch+json``): dicts merge recursively,
  ``null`` deletes a key, anything else (lists included) replaces; patching onto ``null`` works.
* :func:`json_patch` is RFC 6902 (``application/json-patch+json``): add, remove, replace, move,
  copy and test; any failure raises :class:`PatchError` (the server answers 422 Invalid).
* :func:`strategic_merge_patch` approximates Kubernetes' strategic merge patch
  (``application/strategic-merge-patch+json``) for built-in kinds: like a merge patch, but lists
  of dicts are merged by their merge key (``name`` for containers/env/volumes/…, ``containerPort``
  or ``port`` for ports, ``type`` for conditions, ``mountPath`` for volume mounts; ``name`` for any
  other list whose items all have one), ``finalizers`` are merged as a set, and the directives
  ``$patch: replace|delete|merge``, ``$retainKeys``, ``$deleteFromPrimitiveList/<field>`` and
  ``$setElementOrder/<field>`` are honoured on a best-effort basis.

All functions return new structures and never mutate their inputs (the store keeps immutable
snapshots that watch histories share).
"""

import copy
from typing import Any


class PatchError(Exception):
    """A patch could not be applied (a failed ``test``, a missing path, a bad index …)."""


class PatchFormatError(PatchError):
    """The patch document itself is malformed (the server answers 400 BadRequest)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch; ``target`` may be None (merging onto null)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 JSON patch -------------------------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise PatchFormatError(f"JSON pointer must be a string, got {path!r}")
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchFormatError(f"JSON pointer must start with '/': {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _index(container: list[Any], token: str, *, for_insert: bool) -> int:
    if for_insert and token == "-":
        return len(container)
    if not token.isdigit() or (token.startswith("0") and token != "0"):
        raise PatchError(f"invalid array index {token!r}")
    index = int(token)
    limit = len(container) if for_insert else len(container) - 1
    if index > limit:
        raise PatchError(f"array index {index} out of range (length {len(container)})")
    return index


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"path component {token!r} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_insert=False)]
        else:
            raise PatchError(f"cannot traverse into a scalar at {token!r}")
    return node


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {'/' + '/'.join(tokens)!r} does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_insert=False)]
    raise PatchError(f"cannot index a scalar with {last!r}")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_insert=True), value)
    else:
        raise PatchError(f"cannot add into a scalar at {last!r}")
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {'/' + '/'.join(tokens)!r} does not exist")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, for_insert=False))
    raise PatchError(f"cannot remove from a scalar at {last!r}")


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: like ``==`` but booleans never equal numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b)


def json_patch(doc: Any, ops: Any) -> Any:
    """Apply an RFC 6902 JSON patch to a deep copy of ``doc`` and return the result."""
    if not isinstance(ops, list):
        raise PatchFormatError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise PatchFormatError(f"malformed JSON patch operation: {op!r}")
        kind = op["op"]
        tokens = _pointer(op.get("path"))
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchFormatError(f"operation {kind!r} needs a value: {op!r}")
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc, _ = _remove(doc, tokens)
        elif kind == "replace":
            if not tokens:
                doc = copy.deepcopy(op["value"])
                continue
            _get(doc, tokens)  # must exist
            parent = _parent(doc, tokens)
            if isinstance(parent, list):
                parent[_index(parent, tokens[-1], for_insert=False)] = copy.deepcopy(op["value"])
            else:
                parent[tokens[-1]] = copy.deepcopy(op["value"])
        elif kind == "move":
            source = _pointer(op.get("from"))
            if tokens[: len(source)] == source and len(tokens) > len(source):
                raise PatchError("cannot move a value into one of its own children")
            doc, value = _remove(doc, source)
            doc = _add(doc, tokens, value)
        elif kind == "copy":
            value = copy.deepcopy(_get(doc, _pointer(op.get("from"))))
            doc = _add(doc, tokens, value)
        elif kind == "test":
            actual = _get(doc, tokens)
            if not _json_equal(actual, op["value"]):
                raise PatchError(f"testing value {op.get('path')} failed: expected {op['value']!r}, got {actual!r}")
        else:
            raise PatchFormatError(f"unknown JSON patch operation {kind!r}")
    return doc


# --- strategic merge patch (approximation) ---------------------------------------------------------

# Merge keys of well-known list fields of the built-in kinds (patchMergeKey in the Go types).
_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "resourceClaims": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
}
# Lists of primitives with patchStrategy=merge: merged as ordered sets.
_SET_LISTS = {"finalizers"}


def _merge_key(field: str, old: list[Any], new: list[Any]) -> str | None:
    if not new or not all(isinstance(item, dict) for item in new):
        return None
    items = [item for item in new if item.get("$patch") != "replace"]
    if field == "ports":
        key = "containerPort" if all("containerPort" in item for item in items) else "port"
    else:
        key = _MERGE_KEYS.get(field, "name")
    if all(key in item for item in items) and all(isinstance(item, dict) and key in item for item in old):
        return key
    return None


def _merge_list(field: str, old: Any, new: list[Any]) -> list[Any]:
    old_list = old if isinstance(old, list) else []
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in new):
        return [copy.deepcopy(item) for item in new if not (isinstance(item, dict) and "$patch" in item)]
    if field in _SET_LISTS and all(not isinstance(item, (dict, list)) for item in new):
        return list(old_list) + [item for item in new if item not in old_list]
    key = _merge_key(field, old_list, new)
    if key is None:
        return [copy.deepcopy(item) for item in new]
    result = list(old_list)
    for item in new:
        positions = [i for i, existing in enumerate(result) if existing.get(key) == item.get(key)]
        if item.get("$patch") == "delete":
            result = [existing for i, existing in enumerate(result) if i not in positions]
        elif positions:
            result[positions[0]] = strategic_merge_patch(result[positions[0]], item)
        else:
            result.append(strategic_merge_patch(None, item))
    return result


def _apply_order(result: dict[str, Any], field: str, order: Any) -> None:
    items = result.get(field)
    if not isinstance(items, list) or not isinstance(order, list):
        return
    if all(not isinstance(entry, dict) for entry in order):
        ranked = {value: i for i, value in enumerate(order)}
        result[field] = sorted(
            items, key=lambda v: ranked.get(v, len(ranked)) if not isinstance(v, (dict, list)) else len(ranked)
        )
        return
    keys = {k for entry in order if isinstance(entry, dict) for k in entry}
    if len(keys) != 1:
        return
    key = keys.pop()
    ranked = {entry.get(key): i for i, entry in enumerate(order)}
    result[field] = sorted(
        items, key=lambda v: ranked.get(v.get(key), len(ranked)) if isinstance(v, dict) else len(ranked)
    )


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Apply a (simplified) Kubernetes strategic merge patch; returns a new structure."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if directive == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    orders: dict[str, Any] = {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
        elif key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [item for item in result[field] if item not in value]
        elif key.startswith("$"):
            continue
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = value
    for field, order in orders.items():
        _apply_order(result, field, order)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain or k in patch}
    return result
