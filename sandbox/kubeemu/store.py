"""
The object store of the API server emulator: resource definitions, objects and their semantics.

Objects are immutable snapshots (every write stores a new dict), keyed by storage key
``(group, plural)`` — shared by all served versions of a resource — and ``(namespace, name)``.
The store implements what a real API server does to them: uid, creationTimestamp, one global
monotonic resourceVersion, generation (bumped on changes outside metadata/status), generateName,
optimistic concurrency (409 on a stale resourceVersion), status-subresource isolation, no-op
detection (no new resourceVersion, no event), finalizers and deletionTimestamp, implicit
namespaces, ownerReferences garbage collection, CRD registration from CRD objects, and a bounded
per-resource event history that makes watches gap-free (a list's resourceVersion followed by a
watch from it delivers every later change; an evicted resourceVersion answers 410 Expired).

Everything here is synchronous and must run in the server's event-loop thread; watchers receive
events through asyncio queues filled synchronously at commit time, so nothing can slip between
a watch's replay and its subscription.
"""

import asyncio
import collections
import copy
import datetime
import random
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubeemu.selectors import Matcher, SelectorError, field_matcher, label_matcher

Obj = dict[str, Any]
StorageKey = tuple[str, str]  # (group, plural)
ObjectKey = tuple[str | None, str]  # (namespace, name)
Event = tuple[int, str, Obj, Obj | None]  # (resourceVersion, type, object, previous object)
# Admission of a write: (definition, new object, stored object or None on create) -> the object to store.
# Runs after the store's own defaulting, before immutability and no-op checks; raises ApiError.
Admit = Callable[["ResourceDef", Obj, Obj | None], Obj]
_S = TypeVar("_S", bound="Selection")

ALL_VERBS = frozenset({"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"})
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_BUILTIN_SCALE = {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}


class ApiError(Exception):
    """An error answered as a Kubernetes ``Status`` object."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = details
        self.headers = headers or {}

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def version_priority(version: str) -> tuple[int, int, int]:
    """Sort key of Kubernetes version priority (v1 > v1beta2 > v1beta1 > v1alpha1 > other)."""
    m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", version)
    if not m:
        return (3, 0, 0)
    stage = {None: 0, "beta": 1, "alpha": 2}[m[2]]
    return (stage, -int(m[1]), -int(m[3] or 0))


@dataclass(eq=False)
class ResourceDef:
    """One served group/version/plural and how objects of it behave."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str = ""
    namespaced: bool = True
    list_kind: str = ""
    subresources: frozenset[str] = frozenset()
    shortnames: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: frozenset[str] = ALL_VERBS
    printer_columns: list[dict[str, Any]] = field(default_factory=list)
    scale: dict[str, Any] | None = None
    custom: bool = False
    schema: dict[str, Any] | None = None  # a custom resource version's openAPIV3Schema

    @property
    def skey(self) -> StorageKey:
        return (self.group, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def error(self, code: int, name: str, message: str, **kwargs: Any) -> ApiError:
        details = {"name": name, "group": self.group, "kind": self.plural, **kwargs.pop("details", {})}
        return ApiError(code, message, details=details, **kwargs)

    def not_found(self, name: str) -> ApiError:
        return self.error(404, name, f'{self.group_resource} "{name}" not found')


def builtin_def(
    group: str,
    version: str,
    plural: str,
    *,
    kind: str | None,
    singular: str | None,
    namespaced: bool | None,
    verbs: Iterable[str],
    shortnames: Iterable[str],
    categories: Iterable[str],
    subresources: Iterable[str],
) -> ResourceDef:
    subs = frozenset(subresources)
    return ResourceDef(
        group=group,
        version=version,
        plural=plural,
        kind=kind or plural.capitalize(),
        singular=singular or (kind or plural).lower(),
        namespaced=bool(namespaced),
        list_kind=f"{kind or plural.capitalize()}List",
        subresources=subs,
        shortnames=tuple(sorted(shortnames)),
        categories=tuple(sorted(categories)),
        verbs=frozenset(verbs) or ALL_VERBS,
        scale=dict(_BUILTIN_SCALE) if "scale" in subs else None,
    )


def crd_defs(crd: Obj) -> list[ResourceDef]:
    """The ResourceDefs of every served version of a CustomResourceDefinition object."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, kind, plural = spec.get("group"), names.get("kind"), names.get("plural")
    if not group or not kind or not plural:
        raise ApiError(422, "CustomResourceDefinition needs spec.group, spec.names.kind and spec.names.plural")
    result = []
    for version in spec.get("versions") or [{"name": spec.get("version"), "served": True}]:
        if not version.get("name") or not version.get("served", True):
            continue
        subresources = version.get("subresources") or spec.get("subresources") or {}
        columns = version.get("additionalPrinterColumns") or spec.get("additionalPrinterColumns") or []
        columns = [{**column, "jsonPath": column.get("jsonPath", column.get("JSONPath", ""))} for column in columns]
        result.append(
            ResourceDef(
                group=group,
                version=version["name"],
                plural=plural,
                kind=kind,
                singular=names.get("singular") or kind.lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                list_kind=names.get("listKind") or f"{kind}List",
                subresources=frozenset(sub for sub in ("status", "scale") if sub in subresources),
                shortnames=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                printer_columns=columns,
                scale=subresources.get("scale"),
                custom=True,
                schema=((version.get("schema") or spec.get("validation") or {}).get("openAPIV3Schema")),
            )
        )
    return result


def now_rfc3339() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _strip_for_generation(rdef: ResourceDef, obj: Obj) -> Obj:
    skipped = {"metadata", "status", "apiVersion", "kind"} if rdef.has_status else {"metadata", "apiVersion", "kind"}
    return {key: value for key, value in obj.items() if key not in skipped}


class Selection:
    """Which objects of a resource a list or watch selects (namespace, name, label/field selectors)."""

    def __init__(
        self, rdef: ResourceDef, namespace: str | None, name: str | None, labels: Matcher | None, fields: Matcher | None
    ) -> None:
        self.rdef = rdef
        self.namespace = namespace
        self.name = name
        self.labels = labels
        self.fields = fields

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.name is not None and meta.get("name") != self.name:
            return False
        if self.labels is not None and not self.labels(meta.get("labels") or {}):
            return False
        return self.fields is None or self.fields(obj)


class Watcher(Selection):
    """One watch request: a selection plus a queue of (type, object) events; None ends the stream."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.queue: asyncio.Queue[tuple[str, Obj] | None] = asyncio.Queue()

    def translate(self, event: Event) -> tuple[str, Obj] | None:
        """The event as this watcher sees it (objects entering/leaving the selection)."""
        _, kind, obj, old = event
        now, before = self.matches(obj), self.matches(old)
        if kind == "MODIFIED":
            kind = "MODIFIED" if now and before else "ADDED" if now else "DELETED" if before else ""
            return (kind, obj) if kind else None
        return (kind, obj) if now else None

    def offer(self, event: Event) -> None:
        translated = self.translate(event)
        if translated is not None:
            self.queue.put_nowait(translated)

    def close(self) -> None:
        self.queue.put_nowait(None)


class Store:
    """All objects, the resourceVersion counter, event histories and watchers."""

    def __init__(
        self,
        *,
        history_limit: int = 1000,
        on_defs_changed: Callable[[], None] | None = None,
        hidden_versions: Iterable[str] = (),
    ) -> None:
        self.history_limit = history_limit
        # "group/version"s a registered CRD does not serve here although it lists them: an older release
        # of the CRD's owner (Istio < 1.22 has no networking.istio.io/v1)
        self.hidden_versions = frozenset(hidden_versions)
        self.on_defs_changed = on_defs_changed
        self.rv = 0
        self.defs: dict[tuple[str, str, str], ResourceDef] = {}
        self.objects: dict[StorageKey, dict[ObjectKey, Obj]] = collections.defaultdict(dict)
        self.history: dict[StorageKey, collections.deque[Event]] = collections.defaultdict(collections.deque)
        self.evicted: dict[StorageKey, int] = collections.defaultdict(int)
        self.watchers: dict[StorageKey, set[Watcher]] = collections.defaultdict(set)
        self.uids: dict[str, tuple[StorageKey, ObjectKey]] = {}
        self.crd_owned: dict[str, list[ResourceDef]] = {}  # CRD name -> defs it registered
        self._next_ip = 10

    # --- definitions -----------------------------------------------------------------------------

    def add_def(self, rdef: ResourceDef) -> None:
        self.defs[(rdef.group, rdef.version, rdef.plural)] = rdef

    def resolve(self, group: str, version: str, plural: str) -> ResourceDef | None:
        return self.defs.get((group, version, plural))

    def storage_def(self, skey: StorageKey) -> ResourceDef | None:
        candidates = [d for d in self.defs.values() if d.skey == skey]
        return min(candidates, key=lambda d: version_priority(d.version)) if candidates else None

    def _register_crd(self, crd: Obj) -> None:
        name = crd["metadata"]["name"]
        self._unregister_crd(name, drop_objects=False)
        defs = [d for d in crd_defs(crd) if d.api_version not in self.hidden_versions]
        for rdef in defs:
            self.add_def(rdef)
        self.crd_owned[name] = defs
        if self.on_defs_changed:
            self.on_defs_changed()

    def _unregister_crd(self, name: str, *, drop_objects: bool) -> None:
        defs = self.crd_owned.pop(name, [])
        for rdef in defs:
            self.defs.pop((rdef.group, rdef.version, rdef.plural), None)
        if drop_objects and defs:
            skey = defs[0].skey
            for obj in list(self.objects.get(skey, {}).values()):
                self._remove(defs[0], obj, cascade=True)
            for watcher in self.watchers.pop(skey, set()):
                watcher.close()
        if defs and self.on_defs_changed:
            self.on_defs_changed()

    # --- reading ---------------------------------------------------------------------------------

    def find(self, rdef: ResourceDef, namespace: str | None, name: str) -> Obj | None:
        return self.objects[rdef.skey].get((namespace if rdef.namespaced else None, name))

    def get(self, rdef: ResourceDef, namespace: str | None, name: str) -> Obj:
        obj = self.find(rdef, namespace, name)
        if obj is None:
            raise rdef.not_found(name)
        return obj

    def list_items(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], str]:
        selection = self._select(Selection, rdef, namespace, None, label_selector, field_selector)
        items = [
            obj
            for key, obj in sorted(self.objects[rdef.skey].items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
            if selection.matches(obj)
        ]
        return items, str(self.rv)

    def _select(
        self,
        cls: type[_S],
        rdef: ResourceDef,
        namespace: str | None,
        name: str | None,
        label_selector: str | None,
        field_selector: str | None,
    ) -> _S:
        try:
            labels, fields = label_matcher(label_selector), field_matcher(field_selector)
        except SelectorError as e:
            raise ApiError(400, str(e)) from None
        return cls(rdef, namespace if rdef.namespaced else None, name, labels, fields)

    # --- committing ------------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _commit(self, rdef: ResourceDef, kind: str, obj: Obj, old: Obj | None) -> None:
        meta = obj["metadata"]
        key = (meta.get("namespace"), meta["name"])
        if kind == "DELETED":
            self.objects[rdef.skey].pop(key, None)
            self.uids.pop(meta.get("uid", ""), None)
        else:
            self.objects[rdef.skey][key] = obj
            self.uids[meta["uid"]] = (rdef.skey, key)
        event: Event = (int(meta["resourceVersion"]), kind, obj, old)
        history = self.history[rdef.skey]
        history.append(event)
        while len(history) > self.history_limit:
            self.evicted[rdef.skey] = history.popleft()[0]
        for watcher in list(self.watchers.get(rdef.skey, ())):
            watcher.offer(event)
        if rdef.skey == ("apiextensions.k8s.io", "customresourcedefinitions"):
            if kind == "DELETED":
                self._unregister_crd(meta["name"], drop_objects=True)
            else:
                self._register_crd(obj)

    # --- creating --------------------------------------------------------------------------------

    def ensure_namespace(self, name: str) -> None:
        rdef = self.resolve("", "v1", "namespaces")
        if rdef is not None and self.find(rdef, None, name) is None:
            self.create(rdef, None, {"metadata": {"name": name}})

    def create(
        self, rdef: ResourceDef, namespace: str | None, body: Any, *, dry_run: bool = False, admit: Admit | None = None
    ) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request is not a JSON object")
        obj = copy.deepcopy(body)
        meta = obj["metadata"] = dict(obj.get("metadata") or {})
        if rdef.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise ApiError(
                    400, "the namespace of the provided object does not match the namespace sent on the request"
                )
            namespace = namespace or body_ns
            if not namespace:
                raise ApiError(400, "a namespace is required for a namespaced resource")
            meta["namespace"] = namespace
        else:
            namespace = None
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise rdef.error(
                    422,
                    "",
                    f'{rdef.kind} "" is invalid: metadata.name: Required value: name or generateName is required',
                )
            for _ in range(100):
                meta["name"] = meta["generateName"] + "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))
                if self.find(rdef, namespace, meta["name"]) is None:
                    break
        name = meta["name"]
        self._validate_name(rdef, name)
        if self.find(rdef, namespace, name) is not None:
            raise rdef.error(409, name, f'{rdef.group_resource} "{name}" already exists', reason="AlreadyExists")
        if rdef.skey == ("apiextensions.k8s.io", "customresourcedefinitions"):
            crd_defs(obj)  # validate before storing
        for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(transient, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        obj = {**obj, "apiVersion": rdef.api_version, "kind": rdef.kind}
        obj = {"apiVersion": obj.pop("apiVersion"), "kind": obj.pop("kind"), "metadata": obj.pop("metadata"), **obj}
        if rdef.has_status:
            obj.pop("status", None)
            if not rdef.custom:
                obj["status"] = {"loadBalancer": {}} if rdef.skey == ("", "services") else {}
        self._default(rdef, obj, None)
        if admit is not None:
            obj = admit(rdef, obj, None)
            meta = obj["metadata"]
        if dry_run:
            meta["resourceVersion"] = str(self.rv)
            return obj
        if namespace is not None:
            self.ensure_namespace(namespace)
        meta["resourceVersion"] = self._next_rv()
        self._commit(rdef, "ADDED", obj, None)
        return obj

    def _validate_name(self, rdef: ResourceDef, name: str) -> None:
        if rdef.group == "rbac.authorization.k8s.io":
            ok = bool(name) and "/" not in name and name not in (".", "..")
        else:
            ok = len(name) <= 253 and bool(_NAME_RE.match(name))
        if not ok:
            raise rdef.error(
                422,
                name,
                f'{rdef.kind} "{name}" is invalid: metadata.name: Invalid value: '
                f'"{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                "alphanumeric characters, '-' or '.'",
            )

    def _default(self, rdef: ResourceDef, obj: Obj, old: Obj | None) -> None:
        """A few defaults a real API server fills in (enough for kubectl's columns)."""
        spec = obj.get("spec")
        if rdef.skey in (("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets")):
            if isinstance(spec, dict) and spec.get("replicas") is None:
                obj["spec"] = {**spec, "replicas": 1}
        elif rdef.skey == ("", "services") and isinstance(spec, dict):
            spec = obj["spec"] = dict(spec)
            spec.setdefault("type", "ClusterIP")
            if "clusterIP" not in spec:
                previous = ((old or {}).get("spec") or {}).get("clusterIP")
                if previous:
                    spec["clusterIP"] = previous
                else:
                    self._next_ip += 1
                    spec["clusterIP"] = f"10.96.{self._next_ip // 250}.{self._next_ip % 250 + 1}"
            spec["ports"] = [
                {"protocol": "TCP", "targetPort": port.get("port"), **port}
                for port in spec.get("ports") or []
                if isinstance(port, dict)
            ]
        elif rdef.skey == ("", "namespaces"):
            meta = obj["metadata"]
            meta["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": meta["name"]}
            obj["spec"] = {"finalizers": ["kubernetes"], **(obj.get("spec") or {})}
            obj["status"] = (old or {}).get("status") or {"phase": "Active"}
        elif rdef.skey == ("", "pods") and old is None:
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif rdef.skey == ("apiextensions.k8s.io", "customresourcedefinitions"):
            names = (obj.get("spec") or {}).get("names") or {}
            obj["status"] = {
                "acceptedNames": names,
                "storedVersions": [
                    v.get("name") for v in (obj.get("spec") or {}).get("versions") or [] if v.get("storage")
                ],
                "conditions": [
                    {
                        "type": "NamesAccepted",
                        "status": "True",
                        "reason": "NoConflicts",
                        "message": "no conflicts found",
                        "lastTransitionTime": obj["metadata"]["creationTimestamp"],
                    },
                    {
                        "type": "Established",
                        "status": "True",
                        "reason": "InitialNamesAccepted",
                        "message": "the initial names have been accepted",
                        "lastTransitionTime": obj["metadata"]["creationTimestamp"],
                    },
                ],
            }

    # --- updating --------------------------------------------------------------------------------

    def update(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        name: str,
        mutate: Callable[[Obj], Any],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        admit: Admit | None = None,
    ) -> Obj:
        """
        Replace an object with ``mutate(copy of the current object)`` (a PUT body or a patched copy).

        Applies the precondition on metadata.resourceVersion (409), status isolation, immutable
        metadata, generation bumps, no-op detection and the final removal of a deleted object whose
        last finalizer has gone. Returns the stored object (or the last state if it was removed).
        """
        old = self.get(rdef, namespace, name)
        candidate = mutate(copy.deepcopy(old))
        if not isinstance(candidate, dict):
            raise rdef.error(422, name, f'{rdef.kind} "{name}" is invalid: the result is not an object')
        cand_meta = candidate.get("metadata") if isinstance(candidate.get("metadata"), dict) else {}
        precondition = cand_meta.get("resourceVersion")
        if precondition not in (None, "") and str(precondition) != old["metadata"]["resourceVersion"]:
            raise rdef.error(
                409,
                name,
                f'Operation cannot be fulfilled on {rdef.group_resource} "{name}": '
                "the object has been modified; please apply your changes to the latest version and try again",
                reason="Conflict",
            )
        if cand_meta.get("name") not in (None, name):
            raise ApiError(
                400, f"the name of the object ({cand_meta.get('name')}) does not match the name on the URL ({name})"
            )
        if subresource == "status":
            new = dict(old)
            if "status" in candidate:
                new["status"] = candidate["status"]
            else:
                new.pop("status", None)
            meta = dict(old["metadata"])
        else:
            new = candidate
            if rdef.has_status:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            meta = dict(cand_meta)
            for fixed in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
                "generateName",
            ):
                if fixed in old["metadata"]:
                    meta[fixed] = old["metadata"][fixed]
                else:
                    meta.pop(fixed, None)
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        new["metadata"] = meta
        new["apiVersion"], new["kind"] = rdef.api_version, rdef.kind
        self._default(rdef, new, old)
        if admit is not None:
            new = admit(rdef, new, old)
            meta = new["metadata"]
        deleting = bool(meta.get("deletionTimestamp"))
        if deleting and set(meta.get("finalizers") or []) - set(old["metadata"].get("finalizers") or []):
            raise rdef.error(
                422,
                name,
                f'{rdef.kind} "{name}" is invalid: metadata.finalizers: Forbidden: '
                "no new finalizers can be added if the object is being deleted",
            )
        _check_immutable_data(rdef, name, old, new)
        if new == old:
            return old  # a no-op: no new resourceVersion, no event
        if _strip_for_generation(rdef, new) != _strip_for_generation(rdef, old):
            meta["generation"] = int(meta.get("generation") or 1) + 1
        if dry_run:
            return new
        meta["resourceVersion"] = self._next_rv()
        if deleting and not meta.get("finalizers"):
            self._commit(rdef, "DELETED", new, old)
            self._collect_garbage(meta["uid"])
            return new
        self._commit(rdef, "MODIFIED", new, old)
        return new

    # --- deleting --------------------------------------------------------------------------------

    def delete(
        self, rdef: ResourceDef, namespace: str | None, name: str, options: Obj | None = None, *, dry_run: bool = False
    ) -> tuple[Obj, bool]:
        """Delete (or mark for deletion if finalizers exist); returns (object, removed now)."""
        options = options or {}
        obj = self.get(rdef, namespace, name)
        preconditions = options.get("preconditions") or {}
        for key in ("uid", "resourceVersion"):
            if preconditions.get(key) and preconditions[key] != obj["metadata"].get(key):
                raise rdef.error(
                    409,
                    name,
                    f'Operation cannot be fulfilled on {rdef.group_resource} "{name}": '
                    f"Precondition failed: {key}: {preconditions[key]}, object: {obj['metadata'].get(key)}",
                    reason="Conflict",
                )
        if dry_run:
            return obj, not obj["metadata"].get("finalizers")
        if obj["metadata"].get("finalizers"):
            if obj["metadata"].get("deletionTimestamp"):
                return obj, False
            new = dict(obj)
            new["metadata"] = {
                **obj["metadata"],
                "deletionTimestamp": now_rfc3339(),
                "deletionGracePeriodSeconds": 0,
                "generation": int(obj["metadata"].get("generation") or 1) + 1,
                "resourceVersion": self._next_rv(),
            }
            self._commit(rdef, "MODIFIED", new, obj)
            return new, False
        removed = self._remove(rdef, obj, cascade=options.get("propagationPolicy") != "Orphan")
        return removed, True

    def _remove(self, rdef: ResourceDef, obj: Obj, *, cascade: bool) -> Obj:
        new = dict(obj)
        new["metadata"] = {**obj["metadata"], "resourceVersion": self._next_rv()}
        self._commit(rdef, "DELETED", new, obj)
        uid = new["metadata"].get("uid", "")
        if rdef.skey == ("", "namespaces"):
            self._purge_namespace(new["metadata"]["name"])
        if cascade:
            self._collect_garbage(uid)
        else:
            self._orphan(uid)
        return new

    def _dependents(self, uid: str) -> list[tuple[ResourceDef, Obj]]:
        found = []
        for skey, objects in self.objects.items():
            for obj in objects.values():
                refs = obj["metadata"].get("ownerReferences") or []
                if any(isinstance(ref, dict) and ref.get("uid") == uid for ref in refs):
                    rdef = self.storage_def(skey)
                    if rdef is not None:
                        found.append((rdef, obj))
        return found

    def _collect_garbage(self, uid: str) -> None:
        """Delete (background, cascading) every object all of whose owners are gone."""
        for rdef, obj in self._dependents(uid):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(isinstance(ref, dict) and ref.get("uid") in self.uids for ref in refs):
                continue  # another owner still exists
            meta = obj["metadata"]
            if self.find(rdef, meta.get("namespace"), meta["name"]) is obj:
                self.delete(rdef, meta.get("namespace"), meta["name"], {"propagationPolicy": "Background"})

    def _orphan(self, uid: str) -> None:
        for rdef, obj in self._dependents(uid):
            refs = [ref for ref in obj["metadata"].get("ownerReferences") or [] if ref.get("uid") != uid]
            meta = obj["metadata"]

            def drop_ref(current: Obj, refs: list[Any] = refs) -> Obj:
                current["metadata"]["ownerReferences"] = refs
                if not refs:
                    del current["metadata"]["ownerReferences"]
                return current

            self.update(rdef, meta.get("namespace"), meta["name"], drop_ref)

    def _purge_namespace(self, namespace: str) -> None:
        for skey, objects in list(self.objects.items()):
            rdef = self.storage_def(skey)
            if rdef is None or not rdef.namespaced:
                continue
            for (ns, name), obj in list(objects.items()):
                if ns == namespace and self.find(rdef, ns, name) is obj:
                    self.delete(rdef, ns, name)

    def delete_collection(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        options: Obj | None = None,
        *,
        dry_run: bool = False,
    ) -> list[Obj]:
        items, _ = self.list_items(rdef, namespace, label_selector, field_selector)
        result = []
        for obj in items:
            meta = obj["metadata"]
            if self.find(rdef, meta.get("namespace"), meta["name"]) is obj:
                result.append(self.delete(rdef, meta.get("namespace"), meta["name"], options, dry_run=dry_run)[0])
        return result

    # --- watching --------------------------------------------------------------------------------

    def watch(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        name: str | None,
        label_selector: str | None,
        field_selector: str | None,
        since: str | None,
    ) -> tuple[Watcher, list[tuple[str, Obj]]]:
        """
        Subscribe a watcher; return it with the events to send first.

        Without a resourceVersion (or with "0"), the current objects are replayed as ADDED.
        With one, every retained event after it is replayed; 410 Expired if some were evicted.
        """
        watcher = self._select(Watcher, rdef, namespace, name, label_selector, field_selector)
        initial: list[tuple[str, Obj]] = []
        if since in (None, "", "0"):
            items, _ = self.list_items(rdef, namespace, label_selector, field_selector)
            initial = [("ADDED", obj) for obj in items if watcher.matches(obj)]
        else:
            try:
                since_rv = int(since)
            except ValueError:
                raise ApiError(400, f"invalid resource version: {since!r}") from None
            if since_rv < self.evicted[rdef.skey]:
                raise ApiError(
                    410, f"too old resource version: {since_rv} ({self.evicted[rdef.skey] + 1})", reason="Expired"
                )
            for event in self.history[rdef.skey]:
                if event[0] > since_rv:
                    translated = watcher.translate(event)
                    if translated is not None:
                        initial.append(translated)
        self.watchers[rdef.skey].add(watcher)
        return watcher, initial

    def unwatch(self, watcher: Watcher) -> None:
        self.watchers[watcher.rdef.skey].discard(watcher)

    def close_watchers(self) -> None:
        for watchers in self.watchers.values():
            for watcher in list(watchers):
                watcher.close()


_IMMUTABLE_DATA = {("", "ConfigMap"): ("data", "binaryData"), ("", "Secret"): ("data", "type")}


def _check_immutable_data(rdef: ResourceDef, name: str, old: Obj, new: Obj) -> None:
    """ConfigMaps and Secrets created with ``immutable: true`` (GA in 1.21): kube-apiserver's
    ValidateConfigMapUpdate / ValidateSecretUpdate refuse any change of their data (and of a Secret's
    type) and turning ``immutable`` off again; only delete and create remain."""
    fields = _IMMUTABLE_DATA.get((rdef.group, rdef.kind))
    if fields is None or not old.get("immutable"):
        return
    problems = []
    if not new.get("immutable"):
        problems.append("immutable: Forbidden: field is immutable when `immutable` is set")
    data_fields = [f for f in fields if f != "type"]
    if any((new.get(f) or {}) != (old.get(f) or {}) for f in data_fields):
        problems.append("data: Forbidden: field is immutable when `immutable` is set")
    if "type" in fields and new.get("type") != old.get("type"):
        problems.append("type: Forbidden: field is immutable when `immutable` is set")
    if problems:
        raise rdef.error(422, name, f'{rdef.kind} "{name}" is invalid: ' + ", ".join(problems), reason="Invalid")
