"""
A Kubernetes API server emulator for tests, the sandbox demo, ``kubectl`` and ``kopf run``.

:class:`ApiServer` extends ``kmock.KubernetesEmulator`` (kmock 0.8, by kopf's author): it keeps
kmock's server, request parsing and discovery endpoints, and takes over the resource requests
with its own store (:mod:`kubeemu.store`) to behave like a real API server:
uid/resourceVersion/generation, 201/404/409/410/422 with proper ``Status`` bodies, GET/LIST/WATCH
(gap-free, resumable from a list's resourceVersion), POST/PUT/PATCH (merge, JSON and strategic
merge patches), DELETE with finalizers, deletecollection, status and scale subresources,
ownerReferences garbage collection, label/field selectors, CRD registration (also via the API, so
``kubectl apply -f crd.yaml`` works), server-side Table output for ``kubectl get``, implicit
namespaces, request statistics and fault injection (``/_emulator/*``).

Run it as its own process (listening on 127.0.0.1 only)::

    python -m kubeemu.apiserver --port 0 --kubeconfig /tmp/kubeconfig --crd crds/x.yaml

It prints one JSON line ``{"url": ..., "kubeconfig": ...}`` when ready and exits cleanly on
SIGTERM/SIGINT. :class:`ApiServerProcess` starts and stops such a process; :func:`serve` runs a
server inside the current event loop (for quick async tests; call the sync kubernetes client
through ``asyncio.to_thread`` there, or it deadlocks the loop).
"""

import argparse
import asyncio
import contextlib
import json
import logging
import os
import pathlib
import signal
import sys
import traceback
import warnings
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

from kubeemu import authz, decode, discovery
from kubeemu import proto as protobuf
from kubeemu import table as tables
from kubeemu.admission import PLUGINS, Admission, WriteRequest
from kubeemu.faults import FaultConfig, FaultInjector, RequestStats
from kubeemu.patch import PatchError, PatchFormatError, json_patch, merge_patch, strategic_merge_patch
from kubeemu.process import ApiServerProcess, write_kubeconfig
from kubeemu.store import ApiError, Obj, ResourceDef, Store, Watcher, builtin_def

__all__ = ["ApiServer", "ApiServerProcess", "ApiError", "FaultConfig", "serve", "main", "write_kubeconfig"]

logger = logging.getLogger(__name__)

_CRD_KEY = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
_PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
}


@attrs.define(eq=False)
class _Route:
    rdef: ResourceDef
    namespace: str | None
    name: str | None
    subresource: str | None
    verb: str
    recorded: bool = False  # watches are counted when their stream starts
    user: authz.UserInfo = authz.ADMIN

    @property
    def resource(self) -> str:
        return f"{self.rdef.plural}/{self.subresource}" if self.subresource else self.rdef.plural


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> aiohttp.web.Response:
    return aiohttp.web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _get_path(obj: Any, path: str) -> Any:
    for part in path.strip(".").split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _set_path(obj: Obj, path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    for part in parts[:-1]:
        if not isinstance(obj.get(part), dict):
            obj[part] = {}
        obj = obj[part]
    obj[parts[-1]] = value


def _header(request: kmock.Request, name: str) -> str | None:
    return next((v for k, v in (request.headers or {}).items() if k.lower() == name), None)


def _warning_headers(write: WriteRequest) -> dict[str, str] | None:
    """RFC 7234 Warning headers, as kube-apiserver sends them (299, agent "-"); aiohttp joins them."""
    if not write.warnings:
        return None
    return {"Warning": ", ".join("299 - " + json.dumps(text) for text in write.warnings)}


def _refuse_non_finite(value: Any, context: str) -> None:
    """In-process writes get the answer HTTP ones would: a real server cannot decode NaN/Infinity."""
    where = decode.non_finite_path(value)
    if where is not None:
        raise ApiError(400, f"{context}: non-finite number at {where} (JSON has no NaN or Infinity)")


@attrs.define(kw_only=True, eq=False)
class ApiServer(kmock.KubernetesEmulator):
    """
    The API server emulator; serve it with :func:`serve` or ``kmock.Server(server)``.

    In-process helpers (``get_object`` … ``delete_object``) go through the same store, bump
    resourceVersions and notify watchers; call them from the server's event-loop thread.
    They are not counted in :meth:`stats` (only HTTP requests are).
    """

    history_limit: int = 1000  # watch events retained per resource (older RVs answer 410)
    request_log_limit: int = 200  # kmock's request log is trimmed to this many entries
    bookmark_interval: float = 10.0  # idle watches with allowWatchBookmarks=true get a BOOKMARK so often
    validate: bool = True  # decode/validate writes like kube-apiserver (False: store what is sent)
    authorization_mode: str = "AlwaysAllow"  # or "RBAC": non-system:masters users need RBAC rules
    admission_plugins: tuple[str, ...] = ()  # optional plugins, e.g. OwnerReferencesPermissionEnforcement
    hidden_versions: tuple[str, ...] = ()  # "group/version"s of registered CRDs NOT served (an older release)
    admission: Admission = attrs.field(init=False)
    authenticator: authz.Authenticator = attrs.field(init=False, factory=authz.Authenticator)
    store: Store = attrs.field(init=False)
    request_stats: RequestStats = attrs.field(init=False, factory=RequestStats)
    faults: FaultInjector = attrs.field(init=False, factory=FaultInjector)
    internal_errors: list[str] = attrs.field(init=False, factory=list)  # the last 100 tracebacks
    internal_error_count: int = attrs.field(init=False, default=0)
    _discovered: set[kmock.resource] = attrs.field(init=False, factory=set)
    _watchers: set[Watcher] = attrs.field(init=False, factory=set)
    _watch_info: dict[Watcher, dict[str, Any]] = attrs.field(init=False, factory=dict)  # open watches: who, what

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.store = Store(
            history_limit=self.history_limit,
            on_defs_changed=self._sync_discovery,
            hidden_versions=self.hidden_versions,
        )
        self.configure_access(self.authorization_mode, self.admission_plugins)
        with warnings.catch_warnings():  # kmock 0.8 uses the deprecated importlib.resources.read_binary
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()
        for resource in list(self.resources):
            info = self.resources[resource]
            self.store.add_def(
                builtin_def(
                    resource.group or "",
                    resource.version or "v1",
                    resource.plural or "",
                    kind=info.kind,
                    singular=info.singular,
                    namespaced=info.namespaced,
                    verbs=info.verbs,
                    shortnames=info.shortnames,
                    categories=info.categories,
                    subresources=info.subresources,
                )
            )
        for namespace in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.store.ensure_namespace(namespace)

    # --- configuration ---------------------------------------------------------------------------

    def configure_access(self, authorization_mode: str, admission_plugins: Iterable[str]) -> None:
        """Set the authorization mode (AlwaysAllow | RBAC) and the optional admission plugins."""
        if authorization_mode not in ("AlwaysAllow", "RBAC"):
            raise ValueError(f"unsupported authorization mode {authorization_mode!r} (AlwaysAllow, RBAC)")
        plugins = frozenset(admission_plugins)
        if plugins - set(PLUGINS):
            raise ValueError(f"unsupported admission plugins {sorted(plugins - set(PLUGINS))} (known: {list(PLUGINS)})")
        self.authorization_mode = authorization_mode
        self.admission_plugins = tuple(sorted(plugins))
        self.admission = Admission(validate=self.validate, plugins=plugins, store=self.store)

    def register_crd(self, crd: Obj) -> list[ResourceDef]:
        """Register (create or replace) a CustomResourceDefinition; returns its served versions."""
        rdef = self.store.defs[_CRD_KEY]
        existing = self.store.find(rdef, None, crd["metadata"]["name"])
        if existing is None:
            self.store.create(rdef, None, crd)
        else:
            self.store.update(
                rdef,
                None,
                crd["metadata"]["name"],
                lambda old: {**crd, "metadata": {**crd["metadata"], "resourceVersion": None}},
            )
        return list(self.store.crd_owned[crd["metadata"]["name"]])

    def register_crd_file(self, path: str | os.PathLike[str]) -> list[ResourceDef]:
        """Register every CustomResourceDefinition in a (multi-document) YAML file."""
        result = []
        with open(path, encoding="utf-8") as f:
            for doc in yaml.load_all(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    result.extend(self.register_crd(doc))
        return result

    def _sync_discovery(self) -> None:
        """Mirror the CRD-registered resources into kmock's resources array."""
        wanted = {kmock.resource(d.group, d.version, d.plural): d for d in self.store.defs.values() if d.custom}
        for resource in self._discovered - set(wanted):
            del self.resources[resource]
        for resource, rdef in wanted.items():
            self.resources[resource] = kmock.ResourceInfo(
                kind=rdef.kind,
                singular=rdef.singular,
                namespaced=rdef.namespaced,
                verbs=set(rdef.verbs),
                shortnames=set(rdef.shortnames),
                categories=set(rdef.categories),
                subresources=set(rdef.subresources),
            )
        self._discovered = set(wanted)

    def stats(self, namespace: str | None = None) -> dict[str, Any]:
        """Request counters (see :meth:`RequestStats.snapshot`) plus a few gauges."""
        result = self.request_stats.snapshot(namespace)
        result["internal_errors"] = self.internal_error_count
        result["watches_active"] = len(self._watchers)
        result["watches"] = sorted(
            (info for info in self._watch_info.values() if namespace is None or info["namespace"] == namespace),
            key=lambda info: (info["resource"], info["user"]),
        )
        result["resource_version"] = self.store.rv
        result["faults"] = self.faults.config.to_json()
        return result

    def reset_stats(self) -> None:
        self.request_stats.reset()

    def set_faults(self, config: FaultConfig | dict[str, Any] | None = None, **kwargs: Any) -> FaultConfig:
        """Configure fault injection from a FaultConfig, a camelCase JSON dict or keyword args."""
        if isinstance(config, FaultConfig):
            parsed = config
        elif config is not None or kwargs:
            parsed = FaultConfig.from_json({**(config or {}), **kwargs})
        else:
            parsed = FaultConfig()
        self.faults.configure(parsed)
        return parsed

    def clear_faults(self) -> None:
        self.faults.configure(FaultConfig())

    def close_watches(self) -> None:
        """End all watch streams (before shutting the server down)."""
        self.store.close_watchers()

    @property
    def base_url(self) -> str:
        return str(self.url).rstrip("/")

    # --- in-process object access ------------------------------------------------------------------

    def _rdef(self, group: str, version: str, plural: str) -> ResourceDef:
        rdef = self.store.resolve(group, version, plural)
        if rdef is None:
            raise ApiError(404, f"the server could not find the requested resource ({group}/{version}/{plural})")
        return rdef

    def _present(self, rdef: ResourceDef, obj: Obj) -> Obj:
        return obj if obj.get("apiVersion") == rdef.api_version else {**obj, "apiVersion": rdef.api_version}

    def get_object(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> Obj | None:
        rdef = self._rdef(group, version, plural)
        obj = self.store.find(rdef, namespace, name)
        return None if obj is None else json.loads(json.dumps(self._present(rdef, obj)))

    def list_objects(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        rdef = self._rdef(group, version, plural)
        items, _ = self.store.list_items(rdef, namespace, label_selector, field_selector)
        return json.loads(json.dumps([self._present(rdef, obj) for obj in items]))

    def put_object(
        self, group: str, version: str, plural: str, namespace: str | None, obj: Obj, *, subresource: str | None = None
    ) -> Obj:
        """Create or replace an object; with a status subresource, a given .status is stored too."""
        rdef = self._rdef(group, version, plural)
        _refuse_non_finite(obj, "couldn't get version/kind; json parse error")
        name = obj["metadata"]["name"]
        if subresource is None and self.store.find(rdef, namespace, name) is None:
            result = self.store.create(rdef, namespace, obj, admit=self._admitter("create", None))
        else:
            result = self.store.update(
                rdef,
                namespace,
                name,
                lambda old: json.loads(json.dumps(obj)),
                subresource=subresource,
                admit=self._admitter("update", subresource),
            )
        if subresource is None and rdef.has_status and "status" in obj and result.get("status") != obj["status"]:
            result = self.store.update(
                rdef,
                namespace,
                name,
                lambda old: {**old, "status": obj["status"]},
                subresource="status",
                admit=self._admitter("update", "status"),
            )
        return json.loads(json.dumps(self._present(rdef, result)))

    def patch_object(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> Obj:
        """Patch an object (patch_type: merge, json or strategic); subresource='status' for .status."""
        rdef = self._rdef(group, version, plural)
        _refuse_non_finite(patch, "error decoding patch")
        apply = {"merge": merge_patch, "json": json_patch, "strategic": strategic_merge_patch}[patch_type]
        result = self.store.update(
            rdef,
            namespace,
            name,
            lambda old: apply(old, patch),
            subresource=subresource,
            admit=self._admitter("update", subresource),
        )
        return json.loads(json.dumps(self._present(rdef, result)))

    def delete_object(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        name: str,
        *,
        propagation_policy: str = "Background",
    ) -> Obj | None:
        """Delete an object (marks it if it has finalizers); None if it did not exist."""
        rdef = self._rdef(group, version, plural)
        if self.store.find(rdef, namespace, name) is None:
            return None
        obj, _ = self.store.delete(rdef, namespace, name, {"propagationPolicy": propagation_policy})
        return json.loads(json.dumps(self._present(rdef, obj)))

    def _admitter(self, operation: str, subresource: str | None, request: WriteRequest | None = None) -> Any:
        """The store's admission callback for one write (in-process writes: strict field validation)."""
        write = request or WriteRequest(operation=operation, subresource=subresource, field_validation="Strict")
        return lambda rdef, new, old: self.admission.admit(rdef, new, old, write)

    # --- HTTP: dispatching -------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """kmock's entry point, minus its error accumulation and with a path-parsing fallback."""
        body = await raw_request.read()
        try:
            request = await kmock.Request._parse(raw_request, id=len(self._requests))
        except ValueError:  # kmock 0.8 cannot parse e.g. /api/v1/namespaces; we route by path anyway
            try:
                data = json.loads(body) if body else None
            except ValueError:
                data = None
            request = kmock.Request(
                id=len(self._requests),
                raw_request=raw_request,
                url=raw_request.url,
                method=raw_request.method,
                params=dict(raw_request.query),
                headers=dict(raw_request.headers),
                cookies=dict(raw_request.cookies),
                data=data,
                body=body,
                text=body.decode("utf-8", "replace"),
            )
        self._requests.append(request)
        try:
            return await self._handle(request)
        except Exception as e:
            self._internal_error(raw_request.method, raw_request.url)
            return _json(ApiError(500, f"internal error: {e!r}").status(), 500)

    def _internal_error(self, method: Any, url: Any) -> None:
        logger.exception("Internal error serving %s %s", method, url)
        self.internal_error_count += 1
        self.internal_errors.append(traceback.format_exc())
        del self.internal_errors[:-100]

    def _trim_logs(self) -> None:
        limit = self.request_log_limit
        if len(self._requests) > 2 * limit:
            del self._requests[:-limit]
        for payload in self._payloads:
            requests = getattr(payload, "_requests", None)
            if requests is not None and len(requests) > 2 * limit:
                del requests[:-limit]

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        self._trim_logs()
        path = request.url.path
        try:
            if path.startswith("/_emulator/"):
                return await self._serve_emulator(request, path)
            if path in ("/healthz", "/livez", "/readyz"):
                return aiohttp.web.Response(text="ok")
            if path == "/apis/":  # what the kubernetes client's ApisApi.get_api_versions asks (a real server
                return _json(await self._serve_apis(request))  # serves /apis and /apis/ alike)
            if path == "/openapi/v3" or path.startswith("/openapi/v3/"):
                group_version = path[len("/openapi/v3") :].strip("/")
                return _json(self._found(discovery.openapi_v3(self.store.defs.values(), group_version)))
            if path.startswith("/openapi/"):
                raise ApiError(404, "the server could not find the requested resource")
            route = self._route(request, path)
        except ApiError as e:
            return _json(e.status(), e.code, e.headers)
        if route is None:
            try:
                return await kmock.RawHandler._handle(self, request)
            except ApiError as e:
                return _json(e.status(), e.code, e.headers)
            except kmock.KubernetesError as e:
                return _json(ApiError(e.status, e.message or "").status(), e.status)
            except NotImplementedError:
                return _json(ApiError(404, "the server could not find the requested resource").status(), 404)

        try:
            route.user = self.authenticator.user(_header(request, "authorization"))
            self._authorize(route)
        except ApiError as e:
            self._record(route, e.code)
            return _json(e.status(), e.code, e.headers)
        injected = False
        try:
            user_agent = next((v for k, v in (request.headers or {}).items() if k.lower() == "user-agent"), "")
            latency, fault = self.faults.decide(route.verb, route.resource, route.namespace, user_agent)
            if latency:
                await asyncio.sleep(latency)
            if fault is not None:
                injected = True
                raise self._fault_error(route, fault)
            response = await self._execute(route, request)
        except ApiError as e:
            response = _json(e.status(), e.code, e.headers)
        except Exception as e:
            self._internal_error(request.method, request.url)
            response = _json(ApiError(500, f"internal error: {e!r}").status(), 500)
        if not route.recorded:
            self._record(route, response.status, injected)
        return response

    def _authorize(self, route: _Route) -> None:
        if self.authorization_mode != "RBAC" or route.user.is_master:
            return
        ask = authz.Request(
            route.verb, route.rdef.group, route.rdef.plural, route.subresource, route.namespace, route.name
        )
        if not authz.authorize(self.store, route.user, ask):
            raise authz.forbidden(route.user, ask, route.rdef.plural)

    def _record(self, route: _Route, status: int, injected: bool = False) -> None:
        route.recorded = True
        self.request_stats.record(
            namespace=route.namespace,
            verb=route.verb,
            resource=route.resource,
            status=status,
            injected=injected,
            user=route.user.name,
        )

    def _fault_error(self, route: _Route, status: int) -> ApiError:
        name = route.name or ""
        headers = {}
        details: dict[str, Any] = {
            "name": name,
            "group": route.rdef.group,
            "kind": route.rdef.plural,
            "causes": [{"reason": "InjectedFault", "message": "injected by the emulator"}],
        }
        if status == 429:
            seconds = self.faults.config.retry_after_seconds
            headers["Retry-After"] = str(seconds)
            details["retryAfterSeconds"] = seconds
        message = f'injected fault: HTTP {status} for {route.verb} {route.rdef.group_resource} "{name}"'
        return ApiError(status, message, details=details, headers=headers)

    def _route(self, request: kmock.Request, path: str) -> _Route | None:
        segments = [segment for segment in path.split("/") if segment]
        if len(segments) >= 2 and segments[0] == "api":
            group, version, rest = "", segments[1], segments[2:]
        elif len(segments) >= 3 and segments[0] == "apis":
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            return None
        if not rest:
            return None
        namespace = None
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and not (group == "" and len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        plural, name = rest[0], rest[1] if len(rest) > 1 else None
        subresource = "/".join(rest[2:]) or None
        rdef = self.store.resolve(group, version, plural)
        not_found = ApiError(404, "the server could not find the requested resource")
        if rdef is None or (namespace is not None and not rdef.namespaced):
            raise not_found
        if name is not None and rdef.namespaced and namespace is None:
            raise not_found
        method = request.method.value.upper() if hasattr(request.method, "value") else str(request.method).upper()
        watching = request.params.get("watch") in ("true", "1")
        if subresource is not None and subresource not in rdef.subresources:
            raise not_found
        if subresource not in (None, "status", "scale"):
            raise ApiError(405, f"the emulator does not serve the {subresource!r} subresource")
        verbs = (
            {"GET": "watch" if watching else "list", "POST": "create", "DELETE": "deletecollection"}
            if name is None
            else {
                "GET": "watch" if watching and subresource is None else "get",
                "PUT": "update",
                "PATCH": "patch",
                **({"DELETE": "delete"} if subresource is None else {}),
            }
        )
        if method not in verbs:
            raise ApiError(405, f"the server does not allow this method on the requested resource ({method})")
        return _Route(
            rdef=rdef,
            namespace=namespace if rdef.namespaced else None,
            name=name,
            subresource=subresource,
            verb=verbs[method],
        )

    # --- HTTP: verbs -----------------------------------------------------------------------------------

    async def _execute(self, route: _Route, request: kmock.Request) -> aiohttp.web.StreamResponse:
        rdef, store, params = route.rdef, self.store, request.params
        dry_run = params.get("dryRun") == "All"
        accept = request._raw_request.headers.get("Accept") if request._raw_request is not None else None
        if route.verb == "watch":
            return await self._serve_watch_stream(route, request, tables.wants_table(accept))
        if route.verb == "list":
            items, rv = store.list_items(
                rdef, route.namespace, params.get("labelSelector"), params.get("fieldSelector")
            )
            items = [self._present(rdef, obj) for obj in items]
            if tables.wants_table(accept):
                return _json(self._table(rdef, items, params, rv))
            return _json(
                {
                    "apiVersion": rdef.api_version,
                    "kind": rdef.list_kind,
                    "metadata": {"resourceVersion": rv},
                    "items": items,
                }
            )
        if route.verb == "create":
            write = WriteRequest.from_params("create", None, params, route.user)
            obj = store.create(
                rdef, route.namespace, self._body(request), dry_run=dry_run, admit=self._admitter("", None, write)
            )
            return _json(self._present(rdef, obj), 201, _warning_headers(write))
        if route.verb == "deletecollection":
            deleted = store.delete_collection(
                rdef,
                route.namespace,
                params.get("labelSelector"),
                params.get("fieldSelector"),
                self._delete_options(request),
                dry_run=dry_run,
            )
            return _json(
                {
                    "apiVersion": rdef.api_version,
                    "kind": rdef.list_kind,
                    "metadata": {"resourceVersion": str(store.rv)},
                    "items": [self._present(rdef, obj) for obj in deleted],
                }
            )
        assert route.name is not None
        name = route.name
        if route.subresource == "scale":
            return await self._serve_scale(route, request, dry_run)
        write = WriteRequest.from_params("update", route.subresource, params, route.user)
        if route.verb == "get":
            obj = self._present(rdef, store.get(rdef, route.namespace, name))
            if tables.wants_table(accept):
                return _json(self._table(rdef, [obj], params, obj["metadata"].get("resourceVersion")))
            return _json(obj)
        if route.verb == "update":
            body = self._body(request)
            obj = store.update(
                rdef,
                route.namespace,
                name,
                lambda old: body,
                subresource=route.subresource,
                dry_run=dry_run,
                admit=self._admitter("", None, write),
            )
            return _json(self._present(rdef, obj), headers=_warning_headers(write))
        if route.verb == "patch":
            apply = self._patcher(rdef, request)
            obj = store.update(
                rdef,
                route.namespace,
                name,
                apply,
                subresource=route.subresource,
                dry_run=dry_run,
                admit=self._admitter("", None, write),
            )
            return _json(self._present(rdef, obj), headers=_warning_headers(write))
        if route.verb == "delete":
            obj, removed = store.delete(rdef, route.namespace, name, self._delete_options(request), dry_run=dry_run)
            if removed and not rdef.custom:
                return _json(
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "details": {
                            "name": name,
                            "group": rdef.group,
                            "kind": rdef.plural,
                            "uid": obj["metadata"].get("uid"),
                        },
                    }
                )
            return _json(self._present(rdef, obj))
        raise ApiError(405, f"unsupported verb {route.verb}")

    def _body(self, request: kmock.Request, what: str = "object") -> Any:
        if not request.body:
            raise ApiError(400, "the request body is empty")
        content_type = request._raw_request.content_type if request._raw_request is not None else ""
        if "protobuf" in content_type:
            try:
                return protobuf.decode(request.body)
            except protobuf.UnsupportedProtobuf as e:
                raise ApiError(
                    415,
                    f"{e}; accepted media types include: application/json, application/yaml",
                    reason="UnsupportedMediaType",
                ) from None
        if "cbor" in content_type:
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json, application/yaml",
                reason="UnsupportedMediaType",
            )
        if "yaml" in content_type:
            try:
                return yaml.safe_load(request.body)
            except yaml.YAMLError as e:
                raise ApiError(400, f"error converting YAML to JSON: {e}") from None
        try:
            return decode.loads(request.body)
        except decode.BodyError as e:
            # kube-apiserver decodes with Go's encoding/json: no NaN/Infinity, no trailing garbage.
            if what == "patch":
                raise ApiError(400, f"error decoding patch: {e}") from None
            raise ApiError(400, f"couldn't get version/kind; json parse error: {e}") from None

    def _delete_options(self, request: kmock.Request) -> Obj:
        options: Obj = {}
        if request.body:
            try:
                parsed = decode.loads(request.body)
            except decode.BodyError as e:
                raise ApiError(400, f"couldn't get version/kind; json parse error: {e}") from None
            if isinstance(parsed, dict):
                options.update(parsed)
        for key in ("propagationPolicy", "gracePeriodSeconds"):
            if key in request.params:
                options[key] = request.params[key]
        if "orphanDependents" in options and "propagationPolicy" not in options:
            options["propagationPolicy"] = "Orphan" if options["orphanDependents"] else "Background"
        return options

    def _patcher(self, rdef: ResourceDef, request: kmock.Request) -> Any:
        content_type = (
            (
                request._raw_request.content_type
                if request._raw_request is not None
                else request.headers.get("Content-Type", "")
            )
            .split(";")[0]
            .strip()
        )
        patch_type = _PATCH_TYPES.get(content_type)
        accepted = "application/json-patch+json, application/merge-patch+json" + (
            "" if rdef.custom else ", application/strategic-merge-patch+json"
        )
        if patch_type is None or (patch_type == "strategic" and rdef.custom):
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types include: {accepted}",
                reason="UnsupportedMediaType",
            )
        patch = self._body(request, "patch")
        apply = {"merge": merge_patch, "json": json_patch, "strategic": strategic_merge_patch}[patch_type]
        if patch_type != "json" and not isinstance(patch, dict):
            raise ApiError(400, "the patch is not a JSON object")

        def mutate(old: Obj) -> Any:
            try:
                return apply(old, patch)
            except PatchFormatError as e:
                raise ApiError(400, str(e)) from None
            except PatchError as e:
                raise rdef.error(422, old["metadata"]["name"], str(e)) from None

        return mutate

    def _table(self, rdef: ResourceDef, items: list[Obj], params: Any, rv: str | None) -> Obj:
        cols = tables.columns(rdef.group, rdef.plural, rdef.printer_columns, rdef.custom)
        return tables.render_table(cols, items, include_object=params.get("includeObject"), resource_version=rv)

    # --- HTTP: scale subresource -------------------------------------------------------------------

    def _scale_of(self, rdef: ResourceDef, obj: Obj) -> Obj:
        paths = rdef.scale or {}
        meta = obj["metadata"]
        selector = _get_path(obj, paths["labelSelectorPath"]) if paths.get("labelSelectorPath") else None
        if selector is None and not rdef.custom:
            labels = _get_path(obj, ".spec.selector.matchLabels") or _get_path(obj, ".spec.selector") or {}
            selector = ",".join(f"{k}={v}" for k, v in labels.items() if isinstance(v, str))
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                key: meta[key]
                for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if key in meta
            },
            "spec": {"replicas": _get_path(obj, paths.get("specReplicasPath", ".spec.replicas")) or 0},
            "status": {
                "replicas": _get_path(obj, paths.get("statusReplicasPath", ".status.replicas")) or 0,
                **({"selector": selector} if selector else {}),
            },
        }

    async def _serve_scale(self, route: _Route, request: kmock.Request, dry_run: bool) -> aiohttp.web.Response:
        rdef, name = route.rdef, route.name or ""
        current = self.store.get(rdef, route.namespace, name)
        if route.verb == "get":
            return _json(self._scale_of(rdef, current))
        if route.verb == "update":
            body = self._body(request)
            to_scale = lambda scale: body  # noqa: E731
        else:
            apply = self._patcher(rdef, request)
            to_scale = apply
        spec_path = (rdef.scale or {}).get("specReplicasPath", ".spec.replicas")

        def mutate(old: Obj) -> Obj:
            scale = to_scale(self._scale_of(rdef, old))
            replicas = _get_path(scale, ".spec.replicas") if isinstance(scale, dict) else None
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise rdef.error(
                    422,
                    name,
                    f'Scale.autoscaling "{name}" is invalid: spec.replicas: '
                    f"Invalid value: {replicas!r}: must be greater than or equal to 0",
                )
            _set_path(old, spec_path, replicas)
            old["metadata"]["resourceVersion"] = (scale.get("metadata") or {}).get("resourceVersion")
            return old

        write = WriteRequest.from_params("update", "scale", request.params, route.user)
        obj = self.store.update(
            rdef, route.namespace, name, mutate, dry_run=dry_run, admit=self._admitter("", None, write)
        )
        return _json(self._scale_of(rdef, obj))

    # --- HTTP: watch ---------------------------------------------------------------------------------

    async def _serve_watch_stream(
        self, route: _Route, request: kmock.Request, as_table: bool
    ) -> aiohttp.web.StreamResponse:
        params, rdef = request.params, route.rdef
        initial_events = params.get("sendInitialEvents") == "true"
        since = None if initial_events else params.get("resourceVersion")
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        raw = request._raw_request
        assert raw is not None
        response = aiohttp.web.StreamResponse(status=200)
        response.content_type = "application/json"
        try:
            watcher, initial = self.store.watch(
                rdef, route.namespace, route.name, params.get("labelSelector"), params.get("fieldSelector"), since
            )
        except ApiError as e:
            if e.code != 410:
                raise
            self._record(route, 200)
            await response.prepare(raw)
            await response.write(json.dumps({"type": "ERROR", "object": e.status()}).encode() + b"\n")
            await response.write_eof()
            return response
        self._watchers.add(watcher)
        self._watch_info[watcher] = {
            "resource": rdef.group_resource,
            "namespace": route.namespace or "",
            "user": route.user.name,
            "labelSelector": params.get("labelSelector") or "",
            "fieldSelector": params.get("fieldSelector") or "",
        }
        self._record(route, 200)
        cols = tables.columns(rdef.group, rdef.plural, rdef.printer_columns, rdef.custom) if as_table else None

        def encode(kind: str, obj: Obj) -> bytes:
            obj = self._present(rdef, obj)
            if cols is not None and kind != "BOOKMARK":
                obj = tables.render_table(
                    cols,
                    [obj],
                    include_object=params.get("includeObject"),
                    resource_version=obj["metadata"].get("resourceVersion"),
                )
            return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"

        try:
            await response.prepare(raw)
            chunk = b"".join(encode(kind, obj) for kind, obj in initial)
            if initial_events:
                chunk += (
                    json.dumps(
                        {
                            "type": "BOOKMARK",
                            "object": {
                                "apiVersion": rdef.api_version,
                                "kind": rdef.kind,
                                "metadata": {
                                    "resourceVersion": str(self.store.rv),
                                    "annotations": {"k8s.io/initial-events-end": "true"},
                                },
                            },
                        }
                    ).encode()
                    + b"\n"
                )
            if chunk:
                await response.write(chunk)
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            bookmarks = params.get("allowWatchBookmarks") == "true"
            last_sent = loop.time()
            while True:
                wait = 1.0 if deadline is None else min(1.0, deadline - loop.time())
                if wait <= 0:
                    break
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    if raw.transport is None or raw.transport.is_closing():
                        break  # the client has gone away
                    if bookmarks and watcher.queue.empty() and loop.time() - last_sent >= self.bookmark_interval:
                        # Everything up to the current RV has been delivered: let the client resume from it.
                        await response.write(
                            json.dumps(
                                {
                                    "type": "BOOKMARK",
                                    "object": {
                                        "apiVersion": rdef.api_version,
                                        "kind": rdef.kind,
                                        "metadata": {"resourceVersion": str(self.store.rv)},
                                    },
                                }
                            ).encode()
                            + b"\n"
                        )
                        last_sent = loop.time()
                    continue
                last_sent = loop.time()
                items = [item]
                while items[-1] is not None and not watcher.queue.empty():
                    items.append(watcher.queue.get_nowait())
                payload = b"".join(encode(*event) for event in items if event is not None)
                if payload:
                    await response.write(payload)
                if items[-1] is None:
                    break
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client disconnected mid-stream
        finally:
            self.store.unwatch(watcher)
            self._watchers.discard(watcher)
            self._watch_info.pop(watcher, None)
        return response

    # --- HTTP: discovery (kmock's endpoints, documents from kubeemu.discovery) -----------------------

    async def _serve_apis(self, request: kmock.Request) -> Obj:
        return discovery.api_group_list(self.store.defs.values())

    async def _serve_group(self, request: kmock.Request) -> Obj:
        assert request.resource is not None
        return self._found(discovery.api_group(self.store.defs.values(), request.resource.group or ""))

    async def _serve_version(self, request: kmock.Request) -> Obj:
        assert request.resource is not None
        return self._found(
            discovery.api_resource_list(
                self.store.defs.values(), request.resource.group or "", request.resource.version or ""
            )
        )

    async def _serve_server_version(self, request: kmock.Request) -> Obj:
        return dict(discovery.SERVER_VERSION)

    @staticmethod
    def _found(document: Obj | None) -> Obj:
        if document is None:
            raise ApiError(404, "the server could not find the requested resource")
        return document

    # --- HTTP: /_emulator/* ----------------------------------------------------------------------------

    async def _serve_emulator(self, request: kmock.Request, path: str) -> aiohttp.web.Response:
        method = request.method.value.upper() if hasattr(request.method, "value") else str(request.method).upper()
        endpoint = path[len("/_emulator/") :].strip("/")
        if endpoint == "stats" and method == "GET":
            return _json(self.stats(request.params.get("namespace") or None))
        if endpoint == "reset-stats" and method == "POST":
            self.reset_stats()
            return _json({"ok": True})
        if endpoint == "faults" and method == "GET":
            return _json(self.faults.config.to_json())
        if endpoint == "faults" and method in ("POST", "PUT", "DELETE"):
            try:
                config = self.set_faults(self._body(request) if method != "DELETE" and request.body else None)
            except (ValueError, TypeError) as e:
                raise ApiError(400, f"invalid fault configuration: {e}") from None
            return _json(config.to_json())
        if endpoint == "crds" and method == "POST":
            defs = self.register_crd(self._body(request))
            return _json({"registered": [d.api_version + "/" + d.plural for d in defs]})
        if endpoint == "users" and method == "POST":
            body = self._body(request)
            user = self.authenticator.add(str(body["token"]), str(body["user"]), list(body.get("groups") or []))
            return _json({"user": user.name, "groups": list(user.groups)})
        if endpoint == "access" and method in ("GET", "POST"):
            if method == "POST":
                body = self._body(request)
                try:
                    self.configure_access(
                        body.get("authorizationMode", self.authorization_mode),
                        body.get("admissionPlugins", self.admission_plugins),
                    )
                except ValueError as e:
                    raise ApiError(400, str(e)) from None
            return _json(
                {"authorizationMode": self.authorization_mode, "admissionPlugins": list(self.admission_plugins)}
            )
        if endpoint == "errors" and method == "GET":
            return _json({"count": self.internal_error_count, "recent": self.internal_errors})
        if endpoint == "health":
            return _json({"ok": True, "resourceVersion": self.store.rv})
        raise ApiError(404, f"unknown emulator endpoint {method} {path}")


@contextlib.asynccontextmanager
async def serve(
    *,
    port: int = 0,
    crd_files: Iterable[str | os.PathLike[str]] = (),
    crds: Iterable[Obj] = (),
    kubeconfig: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> AsyncIterator[ApiServer]:
    """Run an ApiServer on 127.0.0.1 inside the current event loop (yields it; ``.base_url``)."""
    server = ApiServer(**kwargs)
    for path in crd_files:
        server.register_crd_file(path)
    for crd in crds:
        server.register_crd(crd)
    async with server, kmock.Server(server, host="127.0.0.1", port=port or None):
        if kubeconfig is not None:
            write_kubeconfig(kubeconfig, server.base_url)
        try:
            yield server
        finally:
            server.close_watches()
            await asyncio.sleep(0)


async def _run(args: argparse.Namespace) -> None:
    kubeconfig = pathlib.Path(args.kubeconfig).absolute() if args.kubeconfig else None
    async with serve(
        port=args.port,
        crd_files=args.crd,
        kubeconfig=kubeconfig,
        history_limit=args.history_limit,
        validate=not args.lenient,
        authorization_mode=args.authorization_mode,
        admission_plugins=tuple(p for p in args.enable_admission_plugins.split(",") if p),
        hidden_versions=tuple(args.hide_version),
    ) as server:
        for spec in args.user:
            token, _, who = spec.partition("=")
            name, _, groups = who.partition(":")
            server.authenticator.add(token, name, [g for g in groups.split(",") if g])
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        print(
            json.dumps(
                {"url": server.base_url, "kubeconfig": str(kubeconfig) if kubeconfig else None, "pid": os.getpid()}
            ),
            flush=True,
        )
        await stop.wait()
        logger.info("Stopping the API server emulator.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kubeemu.apiserver", description=__doc__.split("\n")[1])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = a free one)")
    parser.add_argument("--kubeconfig", help="write a kubeconfig pointing at the server to this path")
    parser.add_argument("--crd", action="append", default=[], help="a CRD YAML file to register (repeatable)")
    parser.add_argument("--history-limit", type=int, default=1000, help="watch events kept per resource")
    parser.add_argument(
        "--lenient", action="store_true", help="store writes as sent (no decoding, validation or admission)"
    )
    parser.add_argument("--authorization-mode", default="AlwaysAllow", choices=["AlwaysAllow", "RBAC"])
    parser.add_argument(
        "--enable-admission-plugins", default="", help="comma-separated, e.g. OwnerReferencesPermissionEnforcement"
    )
    parser.add_argument(
        "--hide-version",
        action="append",
        default=[],
        help="GROUP/VERSION of a registered CRD not to serve, e.g. networking.istio.io/v1 (Istio < 1.22)",
    )
    parser.add_argument(
        "--user", action="append", default=[], help="TOKEN=NAME[:GROUP,...]: a bearer token and its user (repeatable)"
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
