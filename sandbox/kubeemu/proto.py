"""
A minimal decoder of Kubernetes protobuf request bodies, for kubectl's typed-client writes.

Since client-go 1.31, typed clients (e.g. ``kubectl create namespace``, ``kubectl create configmap``)
send ``application/vnd.kubernetes.protobuf`` bodies and cannot fall back to JSON. The emulator
answers in JSON (which those clients accept), and decodes the request envelope
(``k8s\\x00`` + runtime.Unknown) for the few kinds listed in :data:`_DECODERS`: ObjectMeta's
name/generateName/namespace/labels/annotations/finalizers plus the kind's simple fields.
Any other kind raises :class:`UnsupportedProtobuf` (answered as 415).
"""

import base64
from collections.abc import Callable, Iterator
from typing import Any

MAGIC = b"k8s\x00"


class UnsupportedProtobuf(ValueError):
    """The body is protobuf of a kind (or a shape) this decoder does not know."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise UnsupportedProtobuf("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) with varints as ints and length-delimited fields as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            yield number, data[pos : pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise UnsupportedProtobuf(f"unsupported wire type {wire}")


def _str(value: int | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _map_entry(value: int | bytes) -> tuple[str, bytes]:
    key, item = "", b""
    for number, field in _fields(value if isinstance(value, bytes) else b""):
        if number == 1:
            key = _str(field)
        elif number == 2 and isinstance(field, bytes):
            item = field
    return key, item


def _metadata(data: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    names = {1: "name", 2: "generateName", 3: "namespace"}
    for number, value in _fields(data):
        if number in names and value:
            meta[names[number]] = _str(value)
        elif number in (11, 12):
            key, item = _map_entry(value)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = item.decode()
        elif number == 14:
            meta.setdefault("finalizers", []).append(_str(value))
    return meta


def _configmap(obj: dict[str, Any], number: int, value: int | bytes) -> None:
    if number in (2, 3):
        key, item = _map_entry(value)
        if number == 2:
            obj.setdefault("data", {})[key] = item.decode()
        else:
            obj.setdefault("binaryData", {})[key] = base64.b64encode(item).decode()
    elif number == 4:
        obj["immutable"] = bool(value)


def _secret(obj: dict[str, Any], number: int, value: int | bytes) -> None:
    if number == 2:
        key, item = _map_entry(value)
        obj.setdefault("data", {})[key] = base64.b64encode(item).decode()
    elif number == 3:
        obj["type"] = _str(value)
    elif number == 4:
        key, item = _map_entry(value)
        obj.setdefault("stringData", {})[key] = item.decode()
    elif number == 5:
        obj["immutable"] = bool(value)


def _namespace(obj: dict[str, Any], number: int, value: int | bytes) -> None:
    if number == 2 and isinstance(value, bytes):
        finalizers = [_str(v) for n, v in _fields(value) if n == 1]
        obj["spec"] = {"finalizers": finalizers} if finalizers else {}


_DECODERS: dict[tuple[str, str], Callable[[dict[str, Any], int, int | bytes], None]] = {
    ("v1", "Namespace"): _namespace,
    ("v1", "ConfigMap"): _configmap,
    ("v1", "Secret"): _secret,
}


def decode(body: bytes) -> dict[str, Any]:
    """Decode a protobuf-encoded object of a supported kind into its JSON form."""
    if not body.startswith(MAGIC):
        raise UnsupportedProtobuf("missing the k8s protobuf envelope")
    api_version = kind = ""
    raw = b""
    for number, value in _fields(body[len(MAGIC) :]):
        if number == 1 and isinstance(value, bytes):
            for sub, item in _fields(value):
                if sub == 1:
                    api_version = _str(item)
                elif sub == 2:
                    kind = _str(item)
        elif number == 2 and isinstance(value, bytes):
            raw = value
    decoder = _DECODERS.get((api_version, kind))
    if decoder is None:
        raise UnsupportedProtobuf(f"protobuf bodies of {api_version}/{kind} are not supported by the emulator")
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": {}}
    for number, value in _fields(raw):
        if number == 1 and isinstance(value, bytes):
            obj["metadata"] = _metadata(value)
        else:
            decoder(obj, number, value)
    return obj
