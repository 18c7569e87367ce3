"""
Decoding request bodies the way kube-apiserver does: strict JSON, YAML only when the client says so.

kube-apiserver decodes JSON with Go's encoding/json (through sigs.k8s.io/json), which knows no
``NaN``, ``Infinity`` or ``-Infinity``: such a body is refused with 400 BadRequest before anything
else happens (a create: "json parse error", a merge patch: "error decoding patch"). Python's
``json.loads`` accepts all three, and ``json.dumps`` writes them, so a client that puts a
non-finite float into an object gets an error from a real cluster and a silent success from a
lenient emulator. These helpers make the emulator refuse them too, with Go's wording.
"""

import json
import math
from typing import Any

__all__ = ["BodyError", "loads", "non_finite_path"]


class BodyError(ValueError):
    """A body the real server cannot decode (the message is Go's decoder error)."""


def _go_error(constant: str) -> str:
    # Go's scanner stops at the first character that cannot start a value: 'N' of NaN, 'I' of
    # Infinity; for -Infinity the '-' starts a number and 'I' is then "in numeric literal".
    if constant.startswith("-"):
        return "invalid character 'I' in numeric literal"
    return f"invalid character '{constant[0]}' looking for beginning of value"


def _refuse(constant: str) -> Any:
    raise BodyError(_go_error(constant))


def loads(body: bytes | str) -> Any:
    """Parse a JSON body strictly: NaN, Infinity and -Infinity raise BodyError, like Go's decoder."""
    try:
        return json.loads(body, parse_constant=_refuse)
    except BodyError:
        raise
    except ValueError as e:
        raise BodyError(str(e)) from None


def non_finite_path(value: Any, path: str = "") -> str | None:
    """The path of the first non-finite float in a decoded value (None if there is none).

    For objects handed to the emulator in-process (not through HTTP, where :func:`loads` already
    refuses them): the real server could never have received them.
    """
    if isinstance(value, float):
        return None if math.isfinite(value) else (path or "<root>")
    if isinstance(value, dict):
        for key, item in value.items():
            found = non_finite_path(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = non_finite_path(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None
