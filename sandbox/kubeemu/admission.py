"""
What happens to a write between decoding the request and storing the object: kube-apiserver's
decode -> default -> admission -> validate chain, as far as the emulator plays it.

- Built-in kinds (:mod:`kubeemu.builtin_types`, :mod:`kubeemu.builtin_rules`): decoded against the
  pinned release's OpenAPI schema (400 on a wrong type, unknown fields dropped or refused per
  ``fieldValidation``, quantities canonical, empty optional fields not stored), then validated (422).
- Custom resources (:mod:`kubeemu.crd_schema`): metadata decoded like any object's, then pruned,
  defaulted and validated (OpenAPI + CEL) against their CRD version's schema (422).
- Every object's metadata is validated (labels, annotations, owner references), custom resources too.

One :class:`WriteRequest` describes the request being admitted (operation, subresource, field
validation mode); warnings collected in it become ``Warning`` response headers.
"""

from dataclasses import dataclass, field
from typing import Any

from kubeemu import builtin_rules, crd_schema, fielderrors
from kubeemu.builtin_types import DecodeError, schemas
from kubeemu.store import ApiError, ResourceDef

Obj = dict[str, Any]
FIELD_VALIDATION = ("Strict", "Warn", "Ignore")
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@dataclass
class WriteRequest:
    """The request a write comes from."""

    operation: str = "create"  # create | update (PUT and PATCH)
    subresource: str | None = None
    field_validation: str = "Warn"  # kube-apiserver's default since 1.27; kubectl sends Strict
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_params(cls, operation: str, subresource: str | None, params: Any) -> "WriteRequest":
        mode = (params.get("fieldValidation") or "Warn") if params is not None else "Warn"
        if mode not in FIELD_VALIDATION:
            raise ApiError(
                400,
                f'fieldValidation parameter unsupported: "{mode}". Supported values: "Ignore", "Strict", "Warn"',
            )
        return cls(operation=operation, subresource=subresource, field_validation=mode)


@dataclass
class Admission:
    """The emulator's admission chain; ``validate=False`` gives the old lenient behaviour."""

    kubernetes_version: str = "1.36"
    validate: bool = True

    def admit(self, rdef: ResourceDef, new: Obj, old: Obj | None, request: WriteRequest) -> Obj:
        if not self.validate:
            return new
        if rdef.custom:
            return self._admit_custom(rdef, new, old, request)
        return self._admit_builtin(rdef, new, old, request)

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
