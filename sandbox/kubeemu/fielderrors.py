"""
Field errors and name/label rules exactly as kube-apiserver words them.

A port of the parts of k8s.io/apimachinery the emulator's validation needs: ``field.Error``
(``spec.x: Invalid value: "v": detail``), the 422 ``Invalid`` Status with one cause per error
(``errors.NewInvalid``), and the identifier rules of ``util/validation``: RFC 1123 labels and
subdomains, RFC 1035 labels, qualified names (label and annotation keys), label values,
IANA service names (port names) and environment variable names — each with the real message.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from kubeemu.store import ApiError

__all__ = [
    "FieldError",
    "invalid",
    "dns1123_label",
    "dns1123_subdomain",
    "dns1035_label",
    "qualified_name",
    "label_value",
    "iana_svc_name",
    "env_var_name",
    "config_map_key",
]

_REASONS = {
    "Required": ("FieldValueRequired", "Required value"),
    "Invalid": ("FieldValueInvalid", "Invalid value"),
    "NotSupported": ("FieldValueNotSupported", "Unsupported value"),
    "Duplicate": ("FieldValueDuplicate", "Duplicate value"),
    "NotFound": ("FieldValueNotFound", "Not found"),
    "Forbidden": ("FieldValueForbidden", "Forbidden"),
    "TooLong": ("FieldValueTooLong", "Too long"),
    "TooMany": ("FieldValueTooMany", "Too many"),
    "TypeInvalid": ("FieldValueTypeInvalid", "Invalid value"),
}
_NO_VALUE = object()


def _show(value: Any) -> str:
    """Go's %#v-ish rendering of a bad value in field errors: strings quoted, numbers bare."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class FieldError:
    """One field.Error: type (Required, Invalid, NotSupported, ...), field path, bad value, detail."""

    type: str
    field: str
    value: Any = _NO_VALUE
    detail: str = ""

    @property
    def reason(self) -> str:
        return _REASONS[self.type][0]

    def body(self) -> str:
        """The part after ``<field>: `` (the cause's message)."""
        text = _REASONS[self.type][1]
        if self.type in ("Required", "Forbidden", "TooMany") or self.value is _NO_VALUE:
            return f"{text}: {self.detail}" if self.detail else text
        if self.type == "NotSupported":
            return f"{text}: {_show(self.value)}: {self.detail}"
        return f"{text}: {_show(self.value)}" + (f": {self.detail}" if self.detail else "")

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.body(), "field": self.field}


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("Required", field, detail=detail)


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid", field, value, detail)


def not_supported(field: str, value: Any, supported: list[str]) -> FieldError:
    return FieldError("NotSupported", field, value, "supported values: " + ", ".join(json.dumps(s) for s in supported))


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("Duplicate", field, value)


def not_found(field: str, value: Any) -> FieldError:
    return FieldError("NotFound", field, value)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("Forbidden", field, detail=detail)


def invalid_status(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """errors.NewInvalid: 422 Invalid, message ``Kind.group "name" is invalid: ...``, one cause each."""
    qualified = f"{kind}.{group}" if group else kind
    text = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
    return ApiError(
        422,
        f'{qualified} "{name}" is invalid: {text}',
        reason="Invalid",
        details={"name": name, "group": group, "kind": kind, "causes": [e.cause() for e in errors]},
    )


# --- identifiers (k8s.io/apimachinery/pkg/util/validation/validation.go) ----------------------------

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + ")*"
_DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(" + _QUALIFIED_NAME + ")?"
_ENV_VAR = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_CONFIG_KEY = "[-._a-zA-Z0-9]+"


def _regex_error(message: str, regex: str, *examples: str) -> str:
    shown = ",  or ".join(f"'{e}'" for e in examples)
    return f"{message} (e.g. {shown}, regex used for validation is '{regex}')"


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


def dns1123_label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append(_max_len(63))
    if not re.fullmatch(_DNS1123_LABEL, value):
        errors.append(
            _regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                "and must start and end with an alphanumeric character",
                _DNS1123_LABEL,
                "my-name",
                "123-abc",
            )
        )
    return errors


def dns1123_subdomain(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append(_max_len(253))
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        errors.append(
            _regex_error(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character",
                _DNS1123_SUBDOMAIN,
                "example.com",
            )
        )
    return errors


def dns1035_label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append(_max_len(63))
    if not re.fullmatch(_DNS1035_LABEL, value):
        errors.append(
            _regex_error(
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                "start with an alphabetic character, and end with an alphanumeric character",
                _DNS1035_LABEL,
                "my-name",
                "abc-123",
            )
        )
    return errors


def qualified_name(value: str) -> list[str]:
    """A label or annotation key: ``[prefix/]name``, prefix a DNS subdomain, name <= 63 characters."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        errors = []
    elif len(parts) == 2:
        prefix, name = parts
        errors = []
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors += ["prefix part " + e for e in dns1123_subdomain(prefix)]
    else:
        return [
            _regex_error(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                "end with an alphanumeric character",
                _QUALIFIED_NAME,
                "MyName",
                "my.name",
                "123-abc",
            )
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part " + _max_len(63))
    if name and not re.fullmatch(_QUALIFIED_NAME, name):
        errors.append(
            "name part "
            + _regex_error(
                "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                "alphanumeric character",
                _QUALIFIED_NAME,
                "MyName",
                "my.name",
                "123-abc",
            )
        )
    return errors


def label_value(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append(_max_len(63))
    if not re.fullmatch(_LABEL_VALUE, value):
        errors.append(
            _regex_error(
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character",
                _LABEL_VALUE,
                "MyValue",
                "my_value",
                "12345",
            )
        )
    return errors


def iana_svc_name(value: str) -> list[str]:
    """A port name (IsValidPortName): <= 15 characters, lowercase alphanumerics and '-', a letter."""
    errors = []
    if len(value) > 15:
        errors.append(_max_len(15))
    if not re.fullmatch("[-a-z0-9]+", value):
        errors.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errors.append("must not contain consecutive hyphens")
    if not re.search("[a-z]", value):
        errors.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        errors.append("must not begin or end with a hyphen")
    return errors


def env_var_name(value: str) -> list[str]:
    if re.fullmatch(_ENV_VAR, value):
        return []
    return [
        _regex_error(
            "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
            "and must not start with a digit",
            _ENV_VAR,
            "my.env-name",
            "MY_ENV.NAME",
            "MyEnvName1",
        )
    ]


def config_map_key(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append(_max_len(253))
    if not re.fullmatch(_CONFIG_KEY, value):
        errors.append(
            _regex_error(
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                _CONFIG_KEY,
                "key.name",
                "KEY_NAME",
                "key-name",
            )
        )
    if value in (".", ".."):
        errors.append("must not be '.' or '..'")
    return errors
