"""The ONLY module that talks to the Kubernetes API (besides kopf's own watching).

Requests go out on aiohttp from the event loop, as plain JSON (dicts in, dicts out): built-in kinds,
Istio's networking.istio.io objects and ModelDeployments alike, each by its resource path. The official
`kubernetes` client only reads the configuration (in-cluster or kubeconfig: server, TLS, credentials).
It used to make the calls too, in worker threads: its request layer and the thread hand-offs were ~30% of
the operator's CPU in a burst of new ModelDeployments (docs/benchmarks.md).

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
import json
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf
import kubernetes
from kubernetes.client.rest import ApiException

from modeldeploy import GROUP, PLURAL, VERSION

MERGE_PATCH = "application/merge-patch+json"
LAST_APPLIED = "modeldeploy.io/last-applied"


@dataclass(frozen=True)
class Kind:
    """How to reach one kind: its API group/version and resource name (plural)."""

    api_version: str
    kind: str
    plural: str

    @property
    def group(self) -> str:
        return self.api_version.split("/")[0] if "/" in self.api_version else ""

    @property
    def version(self) -> str:
        return self.api_version.split("/")[-1]


KINDS: dict[tuple[str, str], Kind] = {
    ("v1", "ConfigMap"): Kind("v1", "ConfigMap", "configmaps"),
    ("v1", "Service"): Kind("v1", "Service", "services"),
    ("v1", "Secret"): Kind("v1", "Secret", "secrets"),
    ("v1", "ServiceAccount"): Kind("v1", "ServiceAccount", "serviceaccounts"),
    ("v1", "Pod"): Kind("v1", "Pod", "pods"),
    ("apps/v1", "Deployment"): Kind("apps/v1", "Deployment", "deployments"),
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
MODELDEPLOYMENT = KINDS[(f"{GROUP}/{VERSION}", "ModelDeployment")]
EVENT = Kind("v1", "Event", "events")
SELF_SUBJECT_REVIEW = Kind("authentication.k8s.io/v1", "SelfSubjectReview", "selfsubjectreviews")  # cluster-scoped

HTTP_METHODS = {"get": "GET", "list": "GET", "create": "POST", "patch": "PATCH", "delete": "DELETE"}
# The kubernetes client had no timeout at all; a request that hangs this long is a TemporaryError.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)
USER_AGENT = "modeldeploy-operator"
CREDENTIALS_TTL = 1.0  # seconds a token from the refresh hook is reused


def resource_path(k: Kind, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
    """/api/v1/namespaces/n/configmaps/x, /apis/<group>/<version>/... (k8s.io/apiserver's request paths)."""
    path = f"/apis/{k.api_version}" if k.group else f"/api/{k.version}"
    if namespace is not None:
        path += f"/namespaces/{namespace}"
    path += f"/{k.plural}"
    if name is not None:
        path += f"/{name}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


def ssl_context(config: kubernetes.client.Configuration) -> ssl.SSLContext | bool:
    """TLS as the configuration says: the cluster's CA, the client certificate, verification on or off."""
    if not config.host.startswith("https"):
        return False
    context = ssl.create_default_context(cafile=config.ssl_ca_cert or None)
    if not config.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif config.assert_hostname is False:
        context.check_hostname = False
    if config.cert_file:
        context.load_cert_chain(config.cert_file, config.key_file or None)
    return context


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
    """Async client of the Kubernetes API; one instance per operator (in kopf memo).

    Requests go out on aiohttp (as kopf's own do) from the event loop: no worker threads, no hand-offs.
    The kubernetes client is kept for what it does well: reading the configuration (in-cluster service
    account or kubeconfig: server, CA, client certificate, token and its refresh)."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None, *, workers: int = 32):
        if api_client is None:
            api_client = new_api_client(pool_size=workers)
        self.api_client = api_client
        self.configuration: kubernetes.client.Configuration = api_client.configuration
        self._connections = workers  # concurrent connections to the API server
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._auth: tuple[float, dict[str, str]] | None = None  # (asked at, credential headers)
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.on_call: Callable[[str, str], None] | None = None  # metrics hook: (verb, kind)
        # The networking.istio.io version the server serves (detect_istio); rendered objects use v1.
        self.istio_api_version: str | None = f"{ISTIO_GROUP}/v1"

    def close(self) -> None:
        """Close the connections from synchronous code (`aclose()` from a coroutine of the same loop)."""
        session, self._session = self._session, None
        _discard(session, self._session_loop)
        self.api_client.close()

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._session_loop is asyncio.get_running_loop():
            await session.close()
        else:
            _discard(session, self._session_loop)
        self.api_client.close()

    @property
    def writes(self) -> int:
        return sum(n for (verb, _), n in self.calls.items() if verb in ("create", "patch", "delete"))

    def _http(self) -> aiohttp.ClientSession:
        """The session of the running loop (a CLI may run several loops one after another)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            _discard(self._session, self._session_loop)
            connector = aiohttp.TCPConnector(limit=self._connections, ssl=ssl_context(self.configuration))
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=REQUEST_TIMEOUT, skip_auto_headers=("User-Agent",)
            )
            self._session_loop = loop
        return self._session

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if content_type:
            headers["Content-Type"] = content_type
        headers.update(self._credentials())
        return headers

    def _credentials(self) -> dict[str, str]:
        """The credential headers as the kubernetes client sends them (its update_params_for_auth), asked
        for at most once a second: auth_settings() runs the token refresh hook (in-cluster service
        account tokens rotate, exec plugins expire), which re-reads the kubeconfig and re-derives the
        proxy settings each time (~4% of the operator's CPU when asked on every request)."""
        now = time.monotonic()
        if self._auth is None or now - self._auth[0] >= CREDENTIALS_TTL:
            auths: Any = self.configuration.auth_settings()  # a TypedDict of {"in", "key", "value", ...} dicts
            found = {a["key"]: a["value"] for a in auths.values() if a.get("in") == "header" and a.get("value")}
            self._auth = (now, found)
        return self._auth[1]

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> Any:
        """One request; the decoded JSON answer. An error answer raises ApiException (as the client did)."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        if data is not None and content_type is None:
            content_type = "application/json"
        config = self.configuration
        async with self._http().request(
            method,
            config.host.rstrip("/") + path,
            data=data,
            params=params,
            headers=self._headers(content_type),
            proxy=config.proxy or None,
            server_hostname=config.tls_server_name or None,
        ) as resp:
            text = await resp.read()
            if resp.status >= 400:
                exc = ApiException(status=resp.status, reason=resp.reason, body=text.decode("utf-8", "replace"))
                exc.headers = resp.headers
                raise exc
            return json.loads(text) if text else {}

    async def _call(
        self,
        verb: str,
        kind_name: str,
        k: Kind,
        namespace: str | None = None,
        name: str | None = None,
        *,
        subresource: str | None = None,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> Any:
        """`verb` (get, list, create, patch, delete) on kind `k` — its resource path from the Kind, so the
        RBAC scanner (tests/chart/rbac_scan.py) reads the permission off this call site."""
        self.calls[(verb, kind_name)] += 1
        if self.on_call is not None:
            self.on_call(verb, kind_name)
        try:
            return await self._request(
                HTTP_METHODS[verb],
                resource_path(k, namespace, name, subresource),
                body=body,
                params=params,
                content_type=content_type,
            )
        except ApiException as exc:
            raise _translate(exc, verb, kind_name) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise kopf.TemporaryError(f"{verb} {kind_name}: API unreachable: {exc!r}", delay=2) from None

    # ---- raw verbs -------------------------------------------------------------------------

    async def get(self, k: Kind, namespace: str, name: str) -> dict | None:
        """The live object, or None when it does not exist."""
        k = self.served_kind(k)
        try:
            return await self._call("get", k.kind, k, namespace, name)
        except NotFound:
            return None

    async def list(self, k: Kind, namespace: str, label_selector: str | None = None) -> builtins.list[dict]:
        k = self.served_kind(k)
        params = {"labelSelector": label_selector} if label_selector else None
        result = await self._call("list", k.kind, k, namespace, params=params)
        return result.get("items") or []

    async def create(self, obj: dict) -> dict:
        k = self.served_kind(kind_of(obj))
        if obj.get("apiVersion") != k.api_version:
            obj = {**obj, "apiVersion": k.api_version}
        return await self._call("create", k.kind, k, obj["metadata"]["namespace"], body=obj)

    async def patch(self, k: Kind, namespace: str, name: str, patch: dict) -> dict:
        """JSON merge patch (lists are replaced whole, keys set to null are removed)."""
        k = self.served_kind(k)
        return await self._call("patch", k.kind, k, namespace, name, body=patch, content_type=MERGE_PATCH)

    async def delete(self, k: Kind, namespace: str, name: str) -> bool:
        """Delete; False when it was already gone."""
        k = self.served_kind(k)
        try:
            await self._call("delete", k.kind, k, namespace, name)
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
            MODELDEPLOYMENT,
            namespace,
            name,
            subresource="status",
            body={"status": status_patch},
            content_type=MERGE_PATCH,
        )

    async def patch_modeldeployment(self, namespace: str, name: str, patch: dict) -> dict:
        """Merge-patch the ModelDeployment itself (annotations: removing a handled manual action)."""
        return await self.patch(MODELDEPLOYMENT, namespace, name, patch)

    async def get_modeldeployment(self, namespace: str, name: str) -> dict | None:
        return await self.get(MODELDEPLOYMENT, namespace, name)

    async def served_versions(self, group: str) -> builtins.list[str]:
        """The versions of an API group the server serves, from discovery (GET /apis: no RBAC needed)."""
        self.calls[("discover", "APIGroupList")] += 1
        try:
            groups = await self._request("GET", "/apis")
        except ApiException as exc:
            raise _translate(exc, "discover", "APIGroupList") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise kopf.TemporaryError(f"discover API groups: API unreachable: {exc!r}", delay=2) from None
        for entry in groups.get("groups") or []:
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
            review = await self._call("create", "SelfSubjectReview", SELF_SUBJECT_REVIEW, body=body)
        except (NotFound, kopf.PermanentError):
            return None
        return ((review.get("status") or {}).get("userInfo") or {}).get("username") or None

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
            await self._call("create", "Event", EVENT, meta.get("namespace"), body=event)
        except kopf.TemporaryError:
            pass  # an Event is best effort: never fail a reconcile over it


def _discard(session: aiohttp.ClientSession | None, loop: asyncio.AbstractEventLoop | None) -> None:
    """Close a session without awaiting it: in its loop (a task there, or run there if it is stopped); a
    closed loop has taken its connections with it."""
    if session is None or session.closed or loop is None or loop.is_closed():
        return
    if loop.is_running():
        loop.call_soon_threadsafe(lambda: loop.create_task(session.close()))
    else:
        loop.run_until_complete(session.close())


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
