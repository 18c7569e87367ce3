"""
What happens to a write between decoding the request and storing the object: kube-apiserver's
decode -> default -> admission -> validate chain, as far as the emulator plays it.

- Built-in kinds (:mod:`kubeemu.builtin_types`, :mod:`kubeemu.builtin_rules`): decoded against the
  pinned release's OpenAPI schema (400 on a wrong type, unknown fields dropped or refused per
  ``fieldValidation``, quantities canonical, empty optional fields not stored), then validated (422).
- Custom resources (:mod:`kubeemu.crd_schema`): metadata decoded like any object's, then pruned,
  defaulted and validated (OpenAPI + CEL) against their CRD version's schema (422).
- Every object's metadata is validated (labels, annotations, owner references), custom resources too.
- Optional admission plugins: OwnerReferencesPermissionEnforcement (what OpenShift enables by default).

One :class:`WriteRequest` describes the request being admitted (operation, subresource, field
validation mode); warnings collected in it become ``Warning`` response headers.
"""

from dataclasses import dataclass, field
from typing import Any

from kubeemu import authz, builtin_rules, crd_schema, fielderrors
from kubeemu.builtin_types import DecodeError, schemas
from kubeemu.store import ApiError, ResourceDef, Store

Obj = dict[str, Any]
FIELD_VALIDATION = ("Strict", "Warn", "Ignore")
OWNER_REFERENCES_PERMISSION = "OwnerReferencesPermissionEnforcement"
PLUGINS = (OWNER_REFERENCES_PERMISSION,)
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@dataclass
class WriteRequest:
    """The request a write comes from."""

    operation: str = "create"  # create | update (PUT and PATCH)
    subresource: str | None = None
    field_validation: str = "Warn"  # kube-apiserver's default since 1.27; kubectl sends Strict
    warnings: list[str] = field(default_factory=list)
    user: authz.UserInfo = authz.ADMIN

    @classmethod
    def from_params(
        cls, operation: str, subresource: str | None, params: Any, user: authz.UserInfo = authz.ADMIN
    ) -> "WriteRequest":
        mode = (params.get("fieldValidation") or "Warn") if params is not None else "Warn"
        if mode not in FIELD_VALIDATION:
            raise ApiError(
                400,
                f'fieldValidation parameter unsupported: "{mode}". Supported values: "Ignore", "Strict", "Warn"',
            )
        return cls(operation=operation, subresource=subresource, field_validation=mode, user=user)


@dataclass
class Admission:
    """The emulator's admission chain; ``validate=False`` gives the old lenient behaviour.

    ``plugins`` are optional admission plugins by their kube-apiserver names
    (``--enable-admission-plugins``); they need the ``store`` to look at RBAC and other objects.
    """

    kubernetes_version: str = "1.36"
    validate: bool = True
    plugins: frozenset[str] = frozenset()
    store: Store | None = None

    def admit(self, rdef: ResourceDef, new: Obj, old: Obj | None, request: WriteRequest) -> Obj:
        if OWNER_REFERENCES_PERMISSION in self.plugins:
            self._owner_references_permission(rdef, new, old, request)
        if not self.validate:
            return new
        if rdef.custom:
            return self._admit_custom(rdef, new, old, request)
        return self._admit_builtin(rdef, new, old, request)

    # --- OwnerReferencesPermissionEnforcement (plugin/pkg/admission/gc/gc_admission.go) ------------------

    def _owner_references_permission(self, rdef: ResourceDef, new: Obj, old: Obj | None, request: WriteRequest) -> None:
        """Changing ownerReferences needs delete on the object (not on create); setting blockOwnerDeletion
        needs update on the owner's finalizers subresource. pods/status is exempt."""
        user = request.user
        if user.is_master or self.store is None or (rdef.skey == ("", "pods") and request.subresource == "status"):
            return
        meta = new.get("metadata") or {}
        refs = [r for r in meta.get("ownerReferences") or [] if isinstance(r, dict)]
        old_refs = [r for r in ((old or {}).get("metadata") or {}).get("ownerReferences") or [] if isinstance(r, dict)]
        if (old is None and not refs) or (old is not None and refs == old_refs):
            return
        name, namespace = meta.get("name", ""), meta.get("namespace") if rdef.namespaced else None

        def refuse(reason: str) -> ApiError:
            qualified = f"{rdef.plural}.{rdef.group}" if rdef.group else rdef.plural
            return ApiError(
                403,
                f'{qualified} "{name}" is forbidden: {reason}',
                reason="Forbidden",
                details={"name": name, "group": rdef.group, "kind": rdef.plural},
            )

        if request.operation != "create":
            ask = authz.Request("delete", rdef.group, rdef.plural, request.subresource, namespace, name)
            if not authz.authorize(self.store, user, ask):
                raise refuse("cannot set an ownerRef on a resource you can't delete: , <nil>")
        was_blocking = {r.get("uid") for r in old_refs if r.get("blockOwnerDeletion") is True}
        for ref in refs:
            if ref.get("blockOwnerDeletion") is not True or ref.get("uid") in was_blocking:
                continue
            group, _, version = str(ref.get("apiVersion") or "").rpartition("/")
            owners = {
                (d.plural, d.namespaced)
                for d in self.store.defs.values()
                if d.group == group and d.kind == ref.get("kind")
            }
            if not owners:
                raise refuse(
                    f"cannot set blockOwnerDeletion in this case because cannot find RESTMapping for APIVersion "
                    f'{ref.get("apiVersion")} Kind {ref.get("kind")}: no matches for kind "{ref.get("kind")}" '
                    f'in version "{ref.get("apiVersion")}"'
                )
            for plural, namespaced in sorted(owners):
                ask = authz.Request(
                    "update", group, plural, "finalizers", namespace if namespaced else None, ref.get("name")
                )
                if not authz.authorize(self.store, user, ask):
                    raise refuse(
                        "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set "
                        "finalizers on: , <nil>"
                    )

    # --- built-in kinds ----------------------------------------------------------------------------

    def _admit_builtin(self, rdef: ResourceDef, new: Obj, old: Obj | None, request: WriteRequest) -> Obj:
        types = schemas(self.kubernetes_version)
        definition = types.root(rdef.group, rdef.version, rdef.kind)
        if definition is None:
            return new  # a kind the pinned release does not describe: stored as sent
        name = (new.get("metadata") or {}).get("name", "")
        try:
            decoded = types.decode(definition, new)
        except DecodeError as e:
            raise ApiError(
                400, f'{rdef.kind} in version "{rdef.version}" cannot be handled as a {rdef.kind}: {e}'
            ) from None
        self._unknown_fields(rdef, decoded.unknown, request)
        errors = builtin_rules.validate(rdef.group, rdef.kind, decoded)
        if errors:
            raise fielderrors.invalid_status(rdef.kind, rdef.group, name, errors)
        obj = decoded.obj
        obj["apiVersion"], obj["kind"] = new.get("apiVersion"), new.get("kind")
        return obj

    def _unknown_fields(self, rdef: ResourceDef, unknown: list[str], request: WriteRequest) -> None:
        if not unknown or request.field_validation == "Ignore":
            return
        texts = [f'unknown field "{path}"' for path in unknown]
        if request.field_validation == "Strict":
            raise ApiError(
                400,
                f'{rdef.kind} in version "{rdef.version}" cannot be handled as a {rdef.kind}: '
                "strict decoding error: " + ", ".join(texts),
            )
        request.warnings.extend(texts)

    # --- custom resources --------------------------------------------------------------------------

    def _admit_custom(self, rdef: ResourceDef, new: Obj, old: Obj | None, request: WriteRequest) -> Obj:
        name = (new.get("metadata") or {}).get("name", "")
        try:
            meta = schemas(self.kubernetes_version).decode(_OBJECT_META, new.get("metadata") or {})
        except DecodeError as e:
            raise ApiError(
                400, f'{rdef.kind} in version "{rdef.version}" cannot be handled as a {rdef.kind}: {e}'
            ) from None
        unknown = ["metadata." + path for path in meta.unknown]
        obj = {**new, "metadata": meta.obj}
        if rdef.schema is not None:
            obj = crd_schema.prune(rdef.schema, obj, unknown=unknown)
        self._unknown_fields(rdef, unknown, request)
        errors = builtin_rules.validate_object_meta(
            obj["metadata"], "metadata", name_rule=fielderrors.dns1123_subdomain
        )
        if rdef.schema is not None:
            obj = crd_schema.apply_defaults(rdef.schema, obj)
            errors += crd_schema.validate(rdef.schema, obj, old=old if old is not None else crd_schema.MISSING)
        if errors:
            raise fielderrors.invalid_status(rdef.kind, rdef.group, name, errors)
        return obj
