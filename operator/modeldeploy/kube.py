"""The ONLY module that talks to the Kubernetes API (besides kopf's own watching).

Everything goes through the official `kubernetes` client: typed APIs for built-in kinds (read raw,
as plain dicts, without model deserialisation), CustomObjectsApi for Istio's networking.istio.io/v1
objects and for ModelDeployments. The client is synchronous, so each call runs in a worker thread.

- `apply()` is idempotent and makes ZERO writes when the live object already matches: it keeps
  the last applied form in an annotation (3-way, like `kubectl apply`) and also repairs drift.
- Writes are JSON merge patches with the live resourceVersion as precondition (409 -> retry).
- API errors map to kopf's TemporaryError (409, 429, 5xx, network) or PermanentError (400, 403, 422)
  in one place, `_translate()`.
- Every call is counted per verb and kind (`calls`), for the operator's metrics and the benchmarks.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import copy
import datetime
import functools
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kopf
import kubernetes
import urllib3
from kubernetes.client.rest import ApiException

from modeldeploy import GROUP, PLURAL, VERSION

MERGE_PATCH = "application/merge-patch+json"
LAST_APPLIED = "modeldeploy.io/last-applied"


@dataclass(frozen=True)
class Kind:
    """How to reach one kind through the kubernetes client."""

    api_version: str
    kind: str
    plural: str
    typed: tuple[str, str] | None = None  # (API class, method suffix) for built-ins

    @property
    def group(self) -> str:
        return self.api_version.split("/")[0] if "/" in self.api_version else ""

    @property
    def version(self) -> str:
        return self.api_version.split("/")[-1]


KINDS: dict[tuple[str, str], Kind] = {
    ("v1", "ConfigMap"): Kind("v1", "ConfigMap", "configmaps", ("CoreV1Api", "config_map")),
    ("v1", "Service"): Kind("v1", "Service", "services", ("CoreV1Api", "service")),
    ("v1", "Secret"): Kind("v1", "Secret", "secrets", ("CoreV1Api", "secret")),
    ("v1", "ServiceAccount"): Kind("v1", "ServiceAccount", "serviceaccounts", ("CoreV1Api", "service_account")),
    ("v1", "Pod"): Kind("v1", "Pod", "pods", ("CoreV1Api", "pod")),
    ("apps/v1", "Deployment"): Kind("apps/v1", "Deployment", "deployments", ("AppsV1Api", "deployment")),
    ("networking.istio.io/v1", "VirtualService"): Kind("networking.istio.io/v1", "VirtualService", "virtualservices"),
    ("networking.istio.io/v1", "DestinationRule"): Kind(
        "networking.istio.io/v1", "DestinationRule", "destinationrules"
    ),
    # Istio < 1.22 serves no v1: the same objects under v1beta1 (identical schemas), see istio_api_version
    ("networking.istio.io/v1beta1", "VirtualService"): Kind(
        "networking.istio.io/v1beta1", "VirtualService", "virtualservices"
    ),
    ("networking.istio.io/v1beta1", "DestinationRule"): Kind(
        "networking.istio.io/v1beta1", "DestinationRule", "destinationrules"
    ),
    (f"{GROUP}/{VERSION}", "ModelDeployment"): Kind(f"{GROUP}/{VERSION}", "ModelDeployment", PLURAL),
}


ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1")  # in order of preference: v1 since Istio 1.22, v1beta1 before


def pick_istio_version(served: list[str]) -> str | None:
    """The networking.istio.io apiVersion to use among the served versions (None: Istio is not installed)."""
    for version in ISTIO_VERSIONS:
        if version in served:
            return f"{ISTIO_GROUP}/{version}"
    return None


def kind_of(obj: dict) -> Kind:
    try:
        return KINDS[(obj["apiVersion"], obj["kind"])]
    except KeyError:
        raise kopf.PermanentError(f"modeldeploy does not manage {obj.get('apiVersion')}/{obj.get('kind')}") from None


# --------------------------------------------------------------------------------------------
# Pure helpers: comparing desired and live objects
# --------------------------------------------------------------------------------------------


def is_subset(desired: Any, live: Any) -> bool:
    """True when every field we set in `desired` has the same value in `live` (server defaults may add more)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(is_subset(v, live.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return False
        return all(is_subset(d, lv) for d, lv in zip(desired, live))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    if isinstance(desired, (int, float)) and isinstance(live, (int, float)):
        return float(desired) == float(live)
    return desired == live


def merge_patch_for(last_applied: dict | None, desired: dict) -> dict:
    """A JSON merge patch that sets `desired` and deletes (null) what we applied before but no longer want."""
    patch = copy.deepcopy(desired)
    if isinstance(last_applied, dict):
        _null_removed(last_applied, patch)
    return patch


def _null_removed(old: dict, new: dict) -> None:
    for key, old_value in old.items():
        if key not in new:
            new[key] = None
        elif isinstance(old_value, dict) and isinstance(new[key], dict):
            _null_removed(old_value, new[key])


def _owned_view(obj: dict) -> dict:
    """The part of a desired object we compare and record (no status, no bookkeeping annotations)."""
    view = {k: copy.deepcopy(v) for k, v in obj.items() if k != "status"}
    meta = view.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(LAST_APPLIED, None)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return view


def _serialise(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def needs_write(desired: dict, live: dict) -> bool:
    """Whether applying `desired` over `live` would change anything."""
    owned = _owned_view(desired)
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    if annotations.get(LAST_APPLIED) != _serialise(owned):
        return True
    return not is_subset(owned, live)


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------


class Kube:
    """Async facade over the synchronous kubernetes client; one instance per operator (in kopf memo)."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None, *, workers: int = 32):
        if api_client is None:
            api_client = new_api_client(pool_size=workers)
        self.api_client = api_client
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.apps = kubernetes.client.AppsV1Api(api_client)
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.auth = kubernetes.client.AuthenticationV1Api(api_client)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.on_call: Callable[[str, str], None] | None = None  # metrics hook: (verb, kind)
        # The networking.istio.io version the server serves (detect_istio); rendered objects use v1.
        self.istio_api_version: str | None = f"{ISTIO_GROUP}/v1"

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.api_client.close()

    @property
    def writes(self) -> int:
        return sum(n for (verb, _), n in self.calls.items() if verb in ("create", "patch", "delete"))

    async def _call(self, verb: str, kind_name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls[(verb, kind_name)] += 1
        if self.on_call is not None:
            self.on_call(verb, kind_name)
        loop = asyncio.get_running_loop()
        call = unvalidated(fn)
        try:
            return await loop.run_in_executor(self._executor, lambda: call(*args, **kwargs))
        except ApiException as exc:
            raise _translate(exc, verb, kind_name) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise kopf.TemporaryError(f"{verb} {kind_name}: API unreachable: {exc}", delay=2) from None

    # ---- raw verbs -------------------------------------------------------------------------

    def _typed(self, k: Kind, action: str) -> Callable[..., Any]:
        api_name, suffix = k.typed  # type: ignore[misc]
        api = self.core if api_name == "CoreV1Api" else self.apps
        return getattr(api, f"{action}_namespaced_{suffix}")

    async def get(self, k: Kind, namespace: str, name: str) -> dict | None:
        """The live object, or None when it does not exist."""
        k = self.served_kind(k)
        try:
            if k.typed:
                resp = await self._call("get", k.kind, self._typed(k, "read"), name, namespace, _preload_content=False)
                return json.loads(resp.data)
            return await self._call(
                "get", k.kind, self.custom.get_namespaced_custom_object, k.group, k.version, namespace, k.plural, name
            )
        except NotFound:
            return None

    async def list(self, k: Kind, namespace: str, label_selector: str | None = None) -> list[dict]:
        k = self.served_kind(k)
        kwargs = {"label_selector": label_selector} if label_selector else {}
        if k.typed:
            resp = await self._call("list", k.kind, self._typed(k, "list"), namespace, _preload_content=False, **kwargs)
            return json.loads(resp.data).get("items", [])
        result = await self._call(
            "list", k.kind, self.custom.list_namespaced_custom_object, k.group, k.version, namespace, k.plural, **kwargs
        )
        return result.get("items", [])

    async def create(self, obj: dict) -> dict:
        k = self.served_kind(kind_of(obj))
        if obj.get("apiVersion") != k.api_version:
            obj = {**obj, "apiVersion": k.api_version}
        ns = obj["metadata"]["namespace"]
        if k.typed:
            resp = await self._call("create", k.kind, self._typed(k, "create"), ns, obj, _preload_content=False)
            return json.loads(resp.data)
        return await self._call(
            "create", k.kind, self.custom.create_namespaced_custom_object, k.group, k.version, ns, k.plural, obj
        )

    async def patch(self, k: Kind, namespace: str, name: str, patch: dict) -> dict:
        """JSON merge patch (lists are replaced whole, keys set to null are removed)."""
        k = self.served_kind(k)
        if k.typed:
            resp = await self._call(
                "patch",
                k.kind,
                self._typed(k, "patch"),
                name,
                namespace,
                patch,
                _content_type=MERGE_PATCH,
                _preload_content=False,
            )
            return json.loads(resp.data)
        return await self._call(
            "patch",
            k.kind,
            self.custom.patch_namespaced_custom_object,
            k.group,
            k.version,
            namespace,
            k.plural,
            name,
            patch,
            _content_type=MERGE_PATCH,
        )

    async def delete(self, k: Kind, namespace: str, name: str) -> bool:
        """Delete; False when it was already gone."""
        k = self.served_kind(k)
        try:
            if k.typed:
                await self._call("delete", k.kind, self._typed(k, "delete"), name, namespace, _preload_content=False)
            else:
                await self._call(
                    "delete",
                    k.kind,
                    self.custom.delete_namespaced_custom_object,
                    k.group,
                    k.version,
                    namespace,
                    k.plural,
                    name,
                )
            return True
        except NotFound:
            return False

    # ---- higher-level operations ----------------------------------------------------------

    async def apply(self, desired: dict, *, assume_absent: bool = False) -> str:
        """Make the live object match `desired`: 'created', 'updated' or 'unchanged' (no write).

        With assume_absent (a brand-new owner) it creates without reading first; if the object
        exists after all (409), it falls back to read + patch.
        """
        k = self.served_kind(kind_of(desired))
        if desired.get("apiVersion") != k.api_version:  # compared and recorded as the server has it
            desired = {**desired, "apiVersion": k.api_version}
        meta = desired["metadata"]
        owned = _owned_view(desired)
        record = _serialise(owned)
        live = None if assume_absent else await self.get(k, meta["namespace"], meta["name"])
        if live is None:
            body = copy.deepcopy(owned)
            body["metadata"].setdefault("annotations", {})[LAST_APPLIED] = record
            try:
                await self.create(body)
                return "created"
            except Conflict:
                live = await self.get(k, meta["namespace"], meta["name"])
                if live is None:
                    raise kopf.TemporaryError(
                        f"{k.kind} {meta['name']} conflicts but is absent; retrying", delay=1
                    ) from None
        if not needs_write(desired, live):
            return "unchanged"
        last_text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
        try:
            last = json.loads(last_text) if last_text else None
        except ValueError:
            last = None
        patch = merge_patch_for(last, owned)
        patch["metadata"].setdefault("annotations", {})
        if patch["metadata"]["annotations"] is None:
            patch["metadata"]["annotations"] = {}
        patch["metadata"]["annotations"][LAST_APPLIED] = record
        patch["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        await self.patch(k, meta["namespace"], meta["name"], patch)
        return "updated"

    async def patch_status(self, namespace: str, name: str, status_patch: dict) -> dict:
        """Merge-patch the ModelDeployment's status subresource."""
        return await self._call(
            "patch",
            "ModelDeployment/status",
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status_patch},
            _content_type=MERGE_PATCH,
        )

    async def patch_modeldeployment(self, namespace: str, name: str, patch: dict) -> dict:
        """Merge-patch the ModelDeployment itself (annotations: removing a handled manual action)."""
        return await self.patch(KINDS[(f"{GROUP}/{VERSION}", "ModelDeployment")], namespace, name, patch)

    async def get_modeldeployment(self, namespace: str, name: str) -> dict | None:
        return await self.get(KINDS[(f"{GROUP}/{VERSION}", "ModelDeployment")], namespace, name)

    async def served_versions(self, group: str) -> builtins.list[str]:
        """The versions of an API group the server serves, from discovery (GET /apis: no RBAC needed)."""
        apis = kubernetes.client.ApisApi(self.api_client)
        loop = asyncio.get_running_loop()
        self.calls[("discover", "APIGroupList")] += 1
        try:
            resp: Any = await loop.run_in_executor(
                self._executor, lambda: apis.get_api_versions(_preload_content=False)
            )
        except ApiException as exc:
            raise _translate(exc, "discover", "APIGroupList") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise kopf.TemporaryError(f"discover API groups: API unreachable: {exc}", delay=2) from None
        for entry in json.loads(resp.data).get("groups") or []:
            if entry.get("name") == group:
                return [v.get("version") for v in entry.get("versions") or [] if v.get("version")]
        return []

    async def detect_istio(self) -> str | None:
        """Set and return the networking.istio.io apiVersion to write (v1, else v1beta1; None if neither)."""
        self.istio_api_version = pick_istio_version(await self.served_versions(ISTIO_GROUP))
        return self.istio_api_version

    def served_kind(self, k: Kind) -> Kind:
        """``k`` in the served Istio version (non-Istio kinds unchanged). Every verb maps its kind so:
        the renderers and callers name networking.istio.io/v1, a cluster before Istio 1.22 gets v1beta1."""
        if k.group != ISTIO_GROUP or self.istio_api_version in (None, k.api_version):
            return k
        return KINDS[(self.istio_api_version, k.kind)]

    async def whoami(self) -> str | None:
        """The authenticated user name of THIS client (authentication.k8s.io/v1 SelfSubjectReview, what
        `kubectl auth whoami` asks); None when the API server does not serve it (before 1.28, emulators)."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        try:
            resp = await self._call(
                "create", "SelfSubjectReview", self.auth.create_self_subject_review, body, _preload_content=False
            )
        except (NotFound, kopf.PermanentError):
            return None
        try:
            return (json.loads(resp.data).get("status") or {}).get("userInfo", {}).get("username") or None
        except ValueError:
            return None

    async def emit_event(self, body: dict, *, type: str, reason: str, message: str) -> None:
        """A core/v1 Event on the ModelDeployment, with its own reason (never one generic 'Synced')."""
        meta = body.get("metadata", {})
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": body.get("apiVersion"),
                "kind": body.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type,
            "source": {"component": "modeldeploy-operator"},
            "reportingComponent": "modeldeploy.io/operator",
            "reportingInstance": "modeldeploy-operator",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._call(
                "create",
                "Event",
                self.core.create_namespaced_event,
                meta.get("namespace"),
                event,
                _preload_content=False,
            )
        except kopf.TemporaryError:
            pass  # an Event is best effort: never fail a reconcile over it


def unvalidated(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The generated client method without pydantic's @validate_call wrapper around it.

    Every generated API method re-validates its arguments (names, namespaces, the body as `object`) with
    pydantic on every call: ~7% of the operator's CPU in a burst of new ModelDeployments (py-spy). Our
    arguments are built by this module, always of the declared types; the request, the auth and the
    response handling are the generated method's own."""
    raw = getattr(fn, "raw_function", None)
    owner = getattr(fn, "__self__", None)
    if raw is None or owner is None:
        return fn
    return functools.partial(raw, owner)


class NotFound(kopf.TemporaryError):
    """404 (callers usually treat it as 'absent')."""


class Conflict(kopf.TemporaryError):
    """409: stale resourceVersion or already exists."""


def _translate(exc: ApiException, verb: str, kind_name: str) -> Exception:
    status = exc.status or 0
    reason = _reason(exc)
    what = f"{verb} {kind_name}: {status} {reason}"
    if status == 404:
        return NotFound(what, delay=1)
    if status == 409:
        return Conflict(what, delay=0.5)
    if status == 429:
        retry_after = 1.0
        try:
            retry_after = float((exc.headers or {}).get("Retry-After", 1))
        except (TypeError, ValueError):
            pass
        return kopf.TemporaryError(what, delay=max(0.2, retry_after))
    if status >= 500 or status == 0:
        return kopf.TemporaryError(what, delay=1)
    return kopf.PermanentError(what)


def _reason(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
        return body.get("message") or body.get("reason") or exc.reason or ""
    except (ValueError, TypeError):
        return exc.reason or ""


def new_api_client(
    pool_size: int = 32, *, kubeconfig: str | None = None, context: str | None = None
) -> kubernetes.client.ApiClient:
    """A client configured from in-cluster settings, else $KUBECONFIG / ~/.kube/config.

    An explicit `kubeconfig` or `context` (a CLI flag) skips the in-cluster settings."""
    configuration = kubernetes.client.Configuration()
    try:
        if kubeconfig or context:
            raise kubernetes.config.ConfigException("explicit kubeconfig")
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        # Read $KUBECONFIG now: the client's own default is frozen when it is imported.
        kubernetes.config.load_kube_config(
            config_file=kubeconfig or os.environ.get("KUBECONFIG") or None,
            context=context,
            client_configuration=configuration,
        )
    configuration.connection_pool_maxsize = pool_size
    return kubernetes.client.ApiClient(configuration)
