"""
Discovery and OpenAPI documents of the API server emulator, built from its resource definitions.

kmock's discovery endpoints (``/apis``, ``/apis/<group>``, ``/apis/<group>/<version>``,
``/api/v1``) are served with these documents instead of kmock's defaults, so that preferred
versions follow Kubernetes version priority (v1 > v1beta1 > v1alpha1) and subresources are
described like a real server does (``deployments/scale`` is an ``autoscaling/v1`` Scale, which
``kubectl scale`` relies on). ``/openapi/v3`` is a skeleton: per group-version the object paths
with their GVK and the ``fieldValidation`` parameter, so kubectl delegates validation to the server
instead of failing to download schemas; without schemas kubectl falls back to its compiled-in types
for strategic merge patches of built-ins, and to merge patches for custom resources.
"""

from collections.abc import Iterable
from typing import Any

from kubeemu.store import ResourceDef, version_priority

Obj = dict[str, Any]
SERVER_VERSION: Obj = {
    "major": "1",
    "minor": "36",
    "gitVersion": "v1.36.0+modeldeploy-emulator",
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "n/a",
    "compiler": "n/a",
    "platform": "linux/amd64",
    "emulationMajor": "1",
    "emulationMinor": "36",
}


def _versions(defs: Iterable[ResourceDef]) -> dict[str, list[str]]:
    groups: dict[str, set[str]] = {}
    for rdef in defs:
        groups.setdefault(rdef.group, set()).add(rdef.version)
    return {group: sorted(versions, key=version_priority) for group, versions in groups.items()}


def _group_doc(group: str, versions: list[str]) -> Obj:
    entries = [{"groupVersion": f"{group}/{version}", "version": version} for version in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(defs: Iterable[ResourceDef]) -> Obj:
    """``/apis``: every named group with its versions, the preferred (highest priority) first."""
    groups = [_group_doc(group, versions) for group, versions in sorted(_versions(defs).items()) if group]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(defs: Iterable[ResourceDef], group: str) -> Obj | None:
    """``/apis/<group>``, or None if the group is unknown."""
    versions = _versions(defs).get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(group, versions)}


def api_resource_list(defs: Iterable[ResourceDef], group: str, version: str) -> Obj | None:
    """``/apis/<group>/<version>`` or ``/api/v1``, or None if nothing is served there."""
    selected = sorted((d for d in defs if d.group == group and d.version == version), key=lambda d: d.plural)
    if not selected:
        return None
    resources: list[Obj] = []
    for rdef in selected:
        resources.append(
            {
                "name": rdef.plural,
                "singularName": rdef.singular,
                "namespaced": rdef.namespaced,
                "kind": rdef.kind,
                "verbs": sorted(rdef.verbs),
                "shortNames": list(rdef.shortnames),
                "categories": list(rdef.categories),
            }
        )
        for sub in sorted(rdef.subresources):
            entry: Obj = {
                "name": f"{rdef.plural}/{sub}",
                "singularName": "",
                "namespaced": rdef.namespaced,
                "kind": rdef.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                entry.update(group="autoscaling", version="v1", kind="Scale")
            elif sub != "status":
                entry["verbs"] = ["get"]
            resources.append(entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}".lstrip("/"),
        "resources": resources,
    }


def openapi_v3(defs: Iterable[ResourceDef], group_version: str) -> Obj | None:
    """``/openapi/v3`` (group_version '') or ``/openapi/v3/<apis/g/v | api/v1>``; None if unknown."""
    by_gv: dict[str, list[ResourceDef]] = {}
    for rdef in defs:
        key = f"apis/{rdef.group}/{rdef.version}" if rdef.group else f"api/{rdef.version}"
        by_gv.setdefault(key, []).append(rdef)
    if not group_version:
        return {
            "paths": {
                key: {
                    "serverRelativeURL": f"/openapi/v3/{key}?hash="
                    + format(abs(hash(tuple(sorted(d.plural for d in gv_defs)))), "X")
                }
                for key, gv_defs in sorted(by_gv.items())
            }
        }
    if group_version not in by_gv:
        return None
    query = [
        {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        for name in ("dryRun", "fieldManager", "fieldValidation")
    ]
    paths: Obj = {}
    for rdef in by_gv[group_version]:
        prefix = "/" + group_version + ("/namespaces/{namespace}" if rdef.namespaced else "") + "/" + rdef.plural
        gvk = {"group": rdef.group, "version": rdef.version, "kind": rdef.kind}

        def operation(action: str, rdef: ResourceDef = rdef, gvk: Obj = gvk) -> Obj:
            return {
                "operationId": f"{action}{rdef.kind}",
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": query,
                "responses": {"200": {"description": "OK"}},
            }

        paths[prefix] = {"post": operation("post"), "get": operation("list")}
        paths[prefix + "/{name}"] = {
            "get": operation("get"),
            "put": operation("put"),
            "patch": operation("patch"),
            "delete": operation("delete"),
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.36.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }
