#!/usr/bin/env python3
"""Generate docs/api-reference.md from the CRD (crds/modeldeployment.yaml), the API's single source of truth.

Every field of every served version: its type, whether it is required, its default, its
validation (enum, bounds, pattern, lengths, list semantics, CEL rules with their messages) and
its description, one section per object. The output is deterministic, so a test can regenerate it
and fail when docs/api-reference.md is stale.

    python scripts/gen_api_reference.py            # (re)write docs/api-reference.md  (`make docs`)
    python scripts/gen_api_reference.py --check    # exit 1 if docs/api-reference.md is stale
    python scripts/gen_api_reference.py --crd X --output -   # another CRD, to stdout

Only the standard library and PyYAML are needed.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_CRD = ROOT / "crds" / "modeldeployment.yaml"
DEFAULT_OUTPUT = ROOT / "docs" / "api-reference.md"


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
    tick = "``" if "`" in text else "`"
    pad = " " if tick == "``" else ""
    return f"{tick}{pad}{text}{pad}{tick}"


def _anchor(title: str) -> str:
    keep = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -_")
    return keep.replace(" ", "-")


def type_of(node: dict) -> str:
    """A short type name: string, integer (int64), []Metric, map[string]string, int-or-string..."""
    if node.get("x-kubernetes-int-or-string"):
        kind = "int-or-string"
    elif node.get("type") == "array":
        items = node.get("items") or {}
        kind = "[]" + (type_of(items) if items else "any")
    elif node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict) and not node.get("properties"):
        kind = "map[string]" + type_of(node["additionalProperties"])
    elif node.get("type"):
        kind = node["type"]
        if node.get("format"):
            kind += f" ({node['format']})"
    elif "anyOf" in node:
        kind = " or ".join(type_of(n) for n in node["anyOf"])
    elif node.get("x-kubernetes-preserve-unknown-fields"):
        kind = "any"
    else:
        kind = "any"
    if node.get("nullable"):
        kind += ", nullable"
    return kind


def rules_of(node: dict) -> list[str]:
    """Validation of one field, as short Markdown fragments."""
    out = []
    if "enum" in node:
        out.append("one of " + ", ".join(_code(v) for v in node["enum"]))
    lo, hi = node.get("minimum"), node.get("maximum")
    if lo is not None:
        out.append(f"{'>' if node.get('exclusiveMinimum') else '>='} {lo}")
    if hi is not None:
        out.append(f"{'<' if node.get('exclusiveMaximum') else '<='} {hi}")
    for key, label in (("minLength", "length >="), ("maxLength", "length <="), ("minItems", "items >="),
                       ("maxItems", "items <="), ("minProperties", "entries >="), ("maxProperties", "entries <=")):
        if key in node:
            out.append(f"{label} {node[key]}")
    if node.get("pattern"):
        out.append("pattern " + _code(node["pattern"]))
    if node.get("uniqueItems"):
        out.append("unique items")
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "map":
        out.append("list map keyed by " + ", ".join(_code(k) for k in node.get("x-kubernetes-list-map-keys") or []))
    elif list_type:
        out.append(f"list type {list_type}")
    if node.get("x-kubernetes-preserve-unknown-fields"):
        out.append("free-form (unknown fields kept)")
    for rule in node.get("x-kubernetes-validations") or []:
        out.append(f"CEL {_code(rule['rule'])}" + (f": {rule['message']}" if rule.get("message") else ""))
    return out


def _object_children(node: dict) -> dict | None:
    """The schema node whose `properties` describe the object at this field, if it is an object."""
    if node.get("properties"):
        return node
    if node.get("type") == "array" and isinstance(node.get("items"), dict) and node["items"].get("properties"):
        return node["items"]
    if isinstance(node.get("additionalProperties"), dict) and node["additionalProperties"].get("properties"):
        return node["additionalProperties"]
    return None


def _child_path(path: str, key: str, node: dict) -> str:
    here = f"{path}.{key}" if path else key
    if node.get("type") == "array":
        return here + "[]"
    if isinstance(node.get("additionalProperties"), dict) and not node.get("properties"):
        return here + ".*"
    return here


def sections(schema: dict, path: str = "") -> list[tuple[str, dict]]:
    """(path, object node) of every object, depth first, the root first."""
    out = [(path, schema)]
    for key, sub in (schema.get("properties") or {}).items():
        child = _object_children(sub)
        if child is not None:
            out += sections(child, _child_path(path, key, sub))
    return out


def render_version(kind: str, version: dict) -> list[str]:
    schema = version["schema"]["openAPIV3Schema"]
    lines: list[str] = []
    for path, node in sections(schema):
        if path in ("", "metadata"):
            continue
        title = f"{kind}.{path}"
        lines += ["", f"### `{title}`", ""]
        if node.get("description"):
            lines += [_cell(node["description"]), ""]
        object_rules = [r for r in rules_of(node) if r.startswith("CEL") or r.startswith("free-form")]
        if object_rules:
            lines += ["Rules on this object:", ""] + [f"- {r}" for r in object_rules] + [""]
        properties = node.get("properties") or {}
        if not properties:
            continue
        required = set(node.get("required") or [])
        lines += ["| Field | Type | Required | Default | Validation | Description |",
                  "|---|---|---|---|---|---|"]
        for key, sub in properties.items():
            child = _object_children(sub)
            field = f"`{key}`"
            if child is not None and child is not node:
                field = f"[`{key}`](#{_anchor(f'{kind}.{_child_path(path, key, sub)}')})"
            default = _cell(_code(sub["default"])) if "default" in sub else ""
            validation = "; ".join(rules_of(sub))
            if sub.get("type") == "array" and isinstance(sub.get("items"), dict):
                item_rules = "; ".join(r for r in rules_of(sub["items"]) if not (sub["items"].get("properties") and r.startswith("CEL")))
                if item_rules:
                    validation = "; ".join(filter(None, [validation, "each item: " + item_rules]))
            lines.append(f"| {field} | {_cell(type_of(sub))} | {'yes' if key in required else ''} | {default} | "
                         f"{_cell(validation) if validation else ''} | {_cell(sub.get('description', ''))} |")
    return lines


def generate(crd: dict, source: str) -> str:
    spec = crd["spec"]
    names = spec["names"]
    kind = names["kind"]
    lines = [
        f"# {kind} API reference",
        "",
        f"<!-- Generated by scripts/gen_api_reference.py from {source}. Do not edit: change the CRD and run `make docs`. -->",
        "",
        f"| | |",
        f"|---|---|",
        f"| Group | `{spec['group']}` |",
        f"| Kind | `{kind}` (list: `{names.get('listKind', kind + 'List')}`) |",
        f"| Plural / singular | `{names['plural']}` / `{names.get('singular', kind.lower())}` |",
        f"| Short names | {', '.join(_code(n) for n in names.get('shortNames') or []) or '-'} |",
        f"| Categories | {', '.join(_code(n) for n in names.get('categories') or []) or '-'} |",
        f"| Scope | {spec['scope']} |",
        f"| Versions | {', '.join(_code(v['name']) + (' (storage)' if v.get('storage') else '') for v in spec['versions'] if v.get('served'))} |",
    ]
    for version in spec["versions"]:
        if not version.get("served"):
            continue
        api_version = f"{spec['group']}/{version['name']}"
        lines += ["", f"## `{api_version}`", ""]
        subresources = sorted((version.get("subresources") or {}).keys())
        lines.append(f"Subresources: {', '.join(_code(s) for s in subresources) if subresources else 'none'}.")
        columns = version.get("additionalPrinterColumns") or []
        if columns:
            lines += ["", "`kubectl get` columns (priority 1 with `-o wide`):", "",
                      "| Column | Type | JSONPath | Priority | Description |", "|---|---|---|---|---|"]
            for col in columns:
                lines.append(f"| {_cell(col['name'])} | {col['type']} | {_cell(_code(col['jsonPath']))} | {col.get('priority', 0)} | "
                             f"{_cell(col.get('description', ''))} |")
        lines += render_version(kind, version)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crd", type=pathlib.Path, default=DEFAULT_CRD)
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="file to write, or - for stdout")
    parser.add_argument("--check", action="store_true", help="exit 1 if the output file is not up to date")
    args = parser.parse_args(argv)
    crd = yaml.safe_load(args.crd.read_text())
    try:
        source = args.crd.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        source = args.crd.name
    text = generate(crd, source)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    output = pathlib.Path(args.output)
    if args.check:
        current = output.read_text() if output.exists() else ""
        if current != text:
            print(f"{output} is stale: run `make docs` (python scripts/gen_api_reference.py)", file=sys.stderr)
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
