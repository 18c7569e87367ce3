"""
Label and field selectors of the API server emulator, parsed once and matched against objects.

Label selectors support every form of the Kubernetes syntax: ``k=v``, ``k==v``, ``k!=v``,
``k in (a,b)``, ``k notin (a,b)``, ``k`` (exists), ``!k`` (does not exist), ``k>1`` / ``k<1``,
joined with commas. Field selectors support ``path=value``, ``path==value`` and ``path!=value``
for any dotted path (``metadata.name``, ``metadata.namespace``, ``status.phase``,
``involvedObject.name`` …) — more lenient than a real server, which allows a few fields per kind.
A malformed selector raises :class:`SelectorError` (the server answers 400 BadRequest).
"""

import re
from collections.abc import Callable, Mapping
from typing import Any

Matcher = Callable[[Mapping[str, Any]], bool]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_RE_SET = re.compile(rf"^(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_RE_EQ = re.compile(rf"^(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})$")
_RE_CMP = re.compile(rf"^(?P<key>{_KEY})\s*(?P<op>[<>])\s*(?P<value>-?\d+)$")
_RE_EXISTS = re.compile(rf"^(?P<neg>!?)\s*(?P<key>{_KEY})$")


class SelectorError(ValueError):
    """A malformed label or field selector."""


def _split_terms(selector: str) -> list[str]:
    terms: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced parentheses in {selector!r}")
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    if depth != 0:
        raise SelectorError(f"unbalanced parentheses in {selector!r}")
    terms.append(current.strip())
    return [term for term in terms if term]


def _label_requirement(term: str) -> Matcher:
    if m := _RE_SET.match(term):
        key, values = m["key"], {v.strip() for v in m["values"].split(",") if v.strip()}
        if m["op"] == "in":
            return lambda labels: key in labels and labels[key] in values
        return lambda labels: key not in labels or labels[key] not in values
    if m := _RE_EQ.match(term):
        key, value = m["key"], m["value"]
        if m["op"] == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: key in labels and labels[key] == value
    if m := _RE_CMP.match(term):
        key, bound, greater = m["key"], int(m["value"]), m["op"] == ">"

        def compare(labels: Mapping[str, Any]) -> bool:
            try:
                number = int(labels[key])
            except (KeyError, ValueError, TypeError):
                return False
            return number > bound if greater else number < bound

        return compare
    if m := _RE_EXISTS.match(term):
        key, negated = m["key"], bool(m["neg"])
        return lambda labels: (key in labels) != negated
    raise SelectorError(f"unable to parse requirement: {term!r}")


def label_matcher(selector: str | None) -> Matcher | None:
    """Parse a label selector into a predicate over a labels dict (None if it selects all)."""
    if not selector or not selector.strip():
        return None
    requirements = [_label_requirement(term) for term in _split_terms(selector)]
    return lambda labels: all(requirement(labels) for requirement in requirements)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def field_matcher(selector: str | None) -> Matcher | None:
    """Parse a field selector into a predicate over a whole object (None if it selects all)."""
    if not selector or not selector.strip():
        return None
    checks: list[tuple[str, str, bool]] = []
    for term in _split_terms(selector):
        m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$", term)
        if not m:
            raise SelectorError(f"invalid field selector term: {term!r}")
        checks.append((m[1], m[3].strip(), m[2] == "!="))
    return lambda obj: all((_field_value(obj, path) == value) != negated for path, value, negated in checks)
