"""
Who is asking, and may they: bearer-token authentication and the RBAC authorizer of the emulator.

- **Authentication**: a request's ``Authorization: Bearer <token>`` names a user registered with
  :meth:`Authenticator.add` (``/_emulator/users``, or ``--user TOKEN=NAME[:GROUP,...]``); the
  emulator's own kubeconfig token and requests without a token (the test harness) are
  ``system:admin`` in ``system:masters``. An unknown token is 401, as on a real server.
- **Authorization** (``--authorization-mode RBAC``): every request of a user outside
  ``system:masters`` is checked against the stored Roles, ClusterRoles, RoleBindings and
  ClusterRoleBindings (k8s.io/kubernetes plugin/pkg/auth/authorizer/rbac): subjects by User, Group or
  ServiceAccount (``system:serviceaccount:<ns>:<name>``), rules by apiGroups, resources
  (``plural``, ``plural/subresource``, ``*``, ``*/subresource``), verbs and resourceNames.
  A refusal is 403 with kube-apiserver's wording. Discovery and other non-resource paths are open.

The same :func:`authorize` serves admission plugins that ask about other objects
(OwnerReferencesPermissionEnforcement, :mod:`kubeemu.admission`).
"""

from dataclasses import dataclass, field
from typing import Any

from kubeemu.store import ApiError, Store

Obj = dict[str, Any]
MASTERS = "system:masters"
_RBAC = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()

    @property
    def is_master(self) -> bool:
        return MASTERS in self.groups


ADMIN = UserInfo("system:admin", (MASTERS, "system:authenticated"))
HARNESS_TOKEN = "emulator-token"  # the token of the kubeconfig the emulator writes


@dataclass
class Authenticator:
    tokens: dict[str, UserInfo] = field(default_factory=lambda: {HARNESS_TOKEN: ADMIN})

    def add(self, token: str, name: str, groups: list[str] | tuple[str, ...] = ()) -> UserInfo:
        user = UserInfo(name, tuple(dict.fromkeys([*groups, "system:authenticated"])))
        self.tokens[token] = user
        return user

    def user(self, authorization: str | None) -> UserInfo:
        """The user of a request's Authorization header (no header: the harness, system:admin)."""
        if not authorization:
            return ADMIN
        scheme, _, token = authorization.partition(" ")
        user = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise ApiError(401, "Unauthorized", reason="Unauthorized")
        return user


@dataclass(frozen=True)
class Request:
    """The attributes RBAC decides on (authorizer.Attributes)."""

    verb: str
    group: str
    resource: str
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None


def _items(store: Store, plural: str, namespace: str | None = None) -> list[Obj]:
    return [
        obj for (ns, _), obj in store.objects.get((_RBAC, plural), {}).items() if namespace is None or ns == namespace
    ]


def _subject_matches(subject: Obj, user: UserInfo, binding_namespace: str | None) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


def _rule_matches(rule: Obj, request: Request) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and request.verb not in verbs:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and request.group not in groups:
        return False
    resources = rule.get("resources") or []
    wanted = f"{request.resource}/{request.subresource}" if request.subresource else request.resource
    star = f"*/{request.subresource}" if request.subresource else "*"
    if "*" not in resources and wanted not in resources and star not in resources:
        return False
    names = rule.get("resourceNames") or []
    return not names or (request.name is not None and request.name in names)


def _role_rules(store: Store, ref: Obj, namespace: str | None) -> list[Obj]:
    if ref.get("kind") == "ClusterRole":
        role = store.objects.get((_RBAC, "clusterroles"), {}).get((None, ref.get("name")))
    else:
        role = store.objects.get((_RBAC, "roles"), {}).get((namespace, ref.get("name")))
    return list((role or {}).get("rules") or [])


def authorize(store: Store, user: UserInfo, request: Request) -> bool:
    """Does RBAC allow ``user`` this request? (system:masters: always)"""
    if user.is_master:
        return True
    for binding in _items(store, "clusterrolebindings"):
        if any(_subject_matches(s, user, None) for s in binding.get("subjects") or []):
            if any(_rule_matches(r, request) for r in _role_rules(store, binding.get("roleRef") or {}, None)):
                return True
    if request.namespace:
        for binding in _items(store, "rolebindings", request.namespace):
            if any(_subject_matches(s, user, request.namespace) for s in binding.get("subjects") or []):
                rules = _role_rules(store, binding.get("roleRef") or {}, request.namespace)
                if any(_rule_matches(r, request) for r in rules):
                    return True
    return False


def forbidden(user: UserInfo, request: Request, kind_plural: str) -> ApiError:
    """kube-apiserver's 403 for an RBAC refusal (responsewriters.ForbiddenStatusError)."""
    resource = f"{request.resource}/{request.subresource}" if request.subresource else request.resource
    qualified = f"{kind_plural}.{request.group}" if request.group else kind_plural
    what = f'{qualified} "{request.name}"' if request.name else qualified
    scope = f' in the namespace "{request.namespace}"' if request.namespace else " at the cluster scope"
    message = (
        f'{what} is forbidden: User "{user.name}" cannot {request.verb} resource "{resource}" '
        f'in API group "{request.group}"{scope}'
    )
    return ApiError(
        403,
        message,
        reason="Forbidden",
        details={"name": request.name or "", "group": request.group, "kind": kind_plural},
    )
