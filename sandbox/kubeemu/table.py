"""
Server-side ``meta.k8s.io/v1`` Table rendering of the API server emulator (what ``kubectl get`` asks for).

For custom resources, the columns are Name plus the CRD's ``additionalPrinterColumns`` of the served
version (simple JSONPaths evaluated server-side; ``date`` columns rendered as an age like ``5m12s``;
``priority`` kept, so only ``kubectl get -o wide`` shows priority > 0 columns), or Name + Age when
the CRD declares none. Built-in kinds get their usual kubectl columns for a few common kinds
(Deployments, ReplicaSets, Pods, Services, ConfigMaps, Namespaces, Events, CRDs) and Name + Age
for all others. Each row carries ``object`` as PartialObjectMetadata (``includeObject=Metadata``,
the default), the full object (``includeObject=Object``) or nothing (``includeObject=None``).
"""

import datetime
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

Obj = dict[str, Any]
Cell = Callable[[Obj, datetime.datetime], Any]

_NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "priority": 0,
    "description": "Name must be unique within a namespace.",
}
_AGE_DESCRIPTION = "CreationTimestamp is a timestamp representing the server time when this object was created."


def parse_time(value: Any) -> datetime.datetime | None:
    """Parse an RFC 3339 timestamp as Kubernetes writes it; None if unparseable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def human_duration(seconds: float) -> str:
    """kubectl's duration.HumanDuration: 45s, 3m12s, 15m, 5h3m, 2d4h, 1y30d …"""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, (hours // 24) % 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // 24 // 365}y"


def age(value: Any, now: datetime.datetime) -> str | None:
    moment = parse_time(value)
    return None if moment is None else human_duration((now - moment).total_seconds())


# --- simple JSONPath (as used in additionalPrinterColumns) ---------------------------------------

_TOKEN = re.compile(
    r"""
    \.(?P<field>[A-Za-z0-9_$\-]+)
  | \[(?P<index>-?\d+)\]
  | \[(?P<star>\*)\]
  | \[['"](?P<quoted>[^'"]*)['"]\]
  | \[\?\(@\.(?P<fpath>[A-Za-z0-9_.\-]+)\s*(?P<fop>==|!=)\s*['"]?(?P<fvalue>[^'")]*)['"]?\)\]
""",
    re.VERBOSE,
)


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Evaluate a simple JSONPath (``.a.b``, ``[0]``, ``[*]``, ``['x.y']``, ``[?(@.k=="v")]``)."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    nodes: list[Any] = [obj]
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            return []
        pos = m.end()
        following: list[Any] = []
        for node in nodes:
            if m["field"] is not None or m["quoted"] is not None:
                key = m["field"] if m["field"] is not None else m["quoted"]
                if isinstance(node, dict) and key in node:
                    following.append(node[key])
            elif m["index"] is not None:
                if isinstance(node, list) and -len(node) <= int(m["index"]) < len(node):
                    following.append(node[int(m["index"])])
            elif m["star"] is not None:
                if isinstance(node, list):
                    following.extend(node)
                elif isinstance(node, dict):
                    following.extend(node.values())
            elif m["fpath"] is not None and isinstance(node, list):
                for item in node:
                    found = jsonpath(item, "." + m["fpath"])
                    value = "" if not found else str(found[0]).lower() if isinstance(found[0], bool) else str(found[0])
                    if (value == m["fvalue"]) != (m["fop"] == "!="):
                        following.append(item)
        nodes = following
    return nodes


def _cell(column_type: str, value: Any, now: datetime.datetime) -> Any:
    if value is None:
        return None
    if column_type == "date":
        return age(value, now)
    if column_type == "integer":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if column_type == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# --- columns of built-in kinds ---------------------------------------------------------------------


def _col(name: str, type_: str = "string", priority: int = 0, fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": type_, "format": fmt, "description": name, "priority": priority}


def _age_cell(obj: Obj, now: datetime.datetime) -> Any:
    return age(obj.get("metadata", {}).get("creationTimestamp"), now)


def _sub(obj: Obj, *path: str, default: Any = None) -> Any:
    node: Any = obj
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return default if node is None else node


def _containers(obj: Obj) -> list[Obj]:
    return _sub(obj, "spec", "template", "spec", "containers", default=[])


def _selector(obj: Obj) -> str:
    labels = _sub(obj, "spec", "selector", "matchLabels", default=None)
    if labels is None:
        labels = _sub(obj, "spec", "selector", default={})
    return ",".join(f"{k}={v}" for k, v in labels.items() if isinstance(v, str)) or "<none>"


def _pod_status(obj: Obj) -> str:
    if _sub(obj, "metadata", "deletionTimestamp"):
        return "Terminating"
    for status in _sub(obj, "status", "containerStatuses", default=[]):
        reason = _sub(status, "state", "waiting", "reason") or _sub(status, "state", "terminated", "reason")
        if reason:
            return reason
    return _sub(obj, "status", "reason") or _sub(obj, "status", "phase", default="Pending")


def _ports(obj: Obj) -> str:
    ports = _sub(obj, "spec", "ports", default=[])
    return (
        ",".join(
            f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/{p.get('protocol', 'TCP')}"
            for p in ports
        )
        or "<none>"
    )


def _involved(obj: Obj) -> str:
    ref = obj.get("involvedObject") or obj.get("regarding") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


_BUILTIN: dict[tuple[str, str], list[tuple[dict[str, Any], Cell]]] = {
    ("apps", "deployments"): [
        (
            _col("Ready"),
            lambda o, n: f"{_sub(o, 'status', 'readyReplicas', default=0)}/{_sub(o, 'spec', 'replicas', default=1)}",
        ),
        (_col("Up-to-date", "integer"), lambda o, n: _sub(o, "status", "updatedReplicas", default=0)),
        (_col("Available", "integer"), lambda o, n: _sub(o, "status", "availableReplicas", default=0)),
        (_col("Age"), _age_cell),
        (_col("Containers", priority=1), lambda o, n: ",".join(c.get("name", "") for c in _containers(o))),
        (_col("Images", priority=1), lambda o, n: ",".join(c.get("image", "") for c in _containers(o))),
        (_col("Selector", priority=1), lambda o, n: _selector(o)),
    ],
    ("apps", "replicasets"): [
        (_col("Desired", "integer"), lambda o, n: _sub(o, "spec", "replicas", default=1)),
        (_col("Current", "integer"), lambda o, n: _sub(o, "status", "replicas", default=0)),
        (_col("Ready", "integer"), lambda o, n: _sub(o, "status", "readyReplicas", default=0)),
        (_col("Age"), _age_cell),
    ],
    ("", "pods"): [
        (
            _col("Ready"),
            lambda o, n: "{}/{}".format(
                sum(1 for s in _sub(o, "status", "containerStatuses", default=[]) if s.get("ready")),
                len(_sub(o, "spec", "containers", default=[])),
            ),
        ),
        (_col("Status"), lambda o, n: _pod_status(o)),
        (
            _col("Restarts", "string"),
            lambda o, n: str(sum(s.get("restartCount", 0) for s in _sub(o, "status", "containerStatuses", default=[]))),
        ),
        (_col("Age"), _age_cell),
        (_col("IP", priority=1), lambda o, n: _sub(o, "status", "podIP", default="<none>")),
        (_col("Node", priority=1), lambda o, n: _sub(o, "spec", "nodeName", default="<none>")),
    ],
    ("", "services"): [
        (_col("Type"), lambda o, n: _sub(o, "spec", "type", default="ClusterIP")),
        (_col("Cluster-IP"), lambda o, n: _sub(o, "spec", "clusterIP", default="<none>")),
        (_col("External-IP"), lambda o, n: ",".join(_sub(o, "spec", "externalIPs", default=[])) or "<none>"),
        (_col("Port(s)"), lambda o, n: _ports(o)),
        (_col("Age"), _age_cell),
        (
            _col("Selector", priority=1),
            lambda o, n: ",".join(f"{k}={v}" for k, v in _sub(o, "spec", "selector", default={}).items()) or "<none>",
        ),
    ],
    ("", "configmaps"): [
        (_col("Data", "integer"), lambda o, n: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
        (_col("Age"), _age_cell),
    ],
    ("", "namespaces"): [
        (_col("Status"), lambda o, n: _sub(o, "status", "phase", default="Active")),
        (_col("Age"), _age_cell),
    ],
    ("", "events"): [
        (
            _col("Last Seen"),
            lambda o, n: age(
                o.get("lastTimestamp") or o.get("eventTime") or _sub(o, "metadata", "creationTimestamp"), n
            ),
        ),
        (_col("Type"), lambda o, n: o.get("type", "")),
        (_col("Reason"), lambda o, n: o.get("reason", "")),
        (_col("Object"), lambda o, n: _involved(o)),
        (_col("Message"), lambda o, n: o.get("message") or o.get("note", "")),
    ],
    ("apiextensions.k8s.io", "customresourcedefinitions"): [
        (_col("Created At", "date"), lambda o, n: _sub(o, "metadata", "creationTimestamp")),
    ],
}
_BUILTIN[("events.k8s.io", "events")] = _BUILTIN[("", "events")]


def columns(
    group: str, plural: str, printer_columns: list[dict[str, Any]] | None, is_custom: bool
) -> list[tuple[dict[str, Any], Cell]]:
    """The column definitions and cell functions for a resource (Name first)."""
    result: list[tuple[dict[str, Any], Cell]] = [(_NAME_COLUMN, lambda o, n: _sub(o, "metadata", "name", default=""))]
    if is_custom and printer_columns:
        for column in printer_columns:
            definition = {
                "name": column.get("name", ""),
                "type": column.get("type", "string"),
                "format": column.get("format", ""),
                "description": column.get("description", ""),
                "priority": int(column.get("priority", 0)),
            }
            result.append((definition, _printer_cell(column)))
    elif (group, plural) in _BUILTIN:
        result.extend(_BUILTIN[(group, plural)])
    else:
        result.append(
            ({"name": "Age", "type": "string", "format": "", "priority": 0, "description": _AGE_DESCRIPTION}, _age_cell)
        )
    return result


def _printer_cell(column: dict[str, Any]) -> Cell:
    path, column_type = column.get("jsonPath", ""), column.get("type", "string")

    def cell(obj: Obj, now: datetime.datetime) -> Any:
        found = jsonpath(obj, path)
        return _cell(column_type, found[0], now) if found else None

    return cell


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "Object":
        return obj
    if include == "None":
        return None
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def render_table(
    cols: list[tuple[dict[str, Any], Cell]],
    objects: Iterable[Obj],
    *,
    include_object: str | None,
    resource_version: str | None,
) -> Obj:
    """Build a meta.k8s.io/v1 Table of the given objects."""
    now = datetime.datetime.now(tz=datetime.UTC)
    include = include_object or "Metadata"
    rows = []
    for obj in objects:
        row: Obj = {"cells": [fn(obj, now) for _, fn in cols]}
        embedded = _row_object(obj, include)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    metadata = {"resourceVersion": resource_version} if resource_version else {}
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [definition for definition, _ in cols],
        "rows": rows,
    }


def wants_table(accept: str | None) -> bool:
    """Whether an Accept header prefers a meta.k8s.io Table (as kubectl get sends)."""
    if not accept:
        return False
    first = accept.split(",")[0]
    return "as=Table" in first and "g=meta.k8s.io" in first
