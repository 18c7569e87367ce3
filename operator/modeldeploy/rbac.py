"""The operator's Kubernetes permissions: a documented allowlist, the single source of its RBAC.

Every rule names who needs it (our code in kube.py / the kopf handlers in main.py, or kopf itself)
and why. Two tests keep this list honest (tests/chart/test_chart_rbac.py):

- the code is scanned (AST of kube.py's ``_call(verb, kind, ...)`` sites and their callers, the kopf
  handler decorators and the kopf settings in main.py) and the permissions it needs must EQUAL these
  rules: the code may not use anything missing here, and nothing here may go unused;
- the Helm chart's ClusterRole/Role rules, rendered in each mode, must EQUAL ``rules_for(mode)``.

Modes: the operator watches either the whole cluster (``--all-namespaces``: one ClusterRole holds
everything) or a list of namespaces (``--namespace X``: namespaced resources go into a Role per
watched namespace, cluster-scoped ones into a small ClusterRole); with more than one replica, kopf
peering (``MODELDEPLOY_PEERING``) adds the kopf.dev peering objects.

Secrets: only ``get``, only on the Secret names the chart lists in ``notifications.secretNames``
(``resourceNames``), and nothing at all while that list is empty (the default): the notifier reads a
receiver's webhook URL (a credential) at delivery time. No list/watch (that cannot be limited by name and
would expose every Secret); the model-store Secret is referenced by TF Serving pods by name and never read.

Not granted on purpose: update/put (all writes are JSON merge patches), deletecollection,
serviceaccounts, get on pods (only kopf's list/watch index of the TF Serving pods is needed).
"""

from __future__ import annotations

from dataclasses import dataclass

CORE = ""


@dataclass(frozen=True)
class Rule:
    """Permission for one resource (``plural`` or ``plural/subresource``) of one API group."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]
    cluster_scoped: bool = False  # the resource itself is cluster-scoped (never in a Role)
    only: str | None = None  # None = every mode; "clusterwide" | "namespaced": one watch mode only
    peering: bool = False  # only with kopf peering (replicas > 1)
    resource_names: str | None = None  # granted only for the names in this Helm value (none listed: not at all)
    why: str = ""


RULES: tuple[Rule, ...] = (
    # ---- ModelDeployments ------------------------------------------------------------------
    Rule(
        "modeldeploy.io",
        "modeldeployments",
        ("get", "list", "watch", "patch"),
        why="kopf lists/watches them (daemon, event handler) and patches its finalizer; "
        "Kube.get_modeldeployment re-reads one after our own write; Kube.patch_modeldeployment "
        "removes a handled modeldeploy.io/action annotation",
    ),
    Rule(
        "modeldeploy.io",
        "modeldeployments/status",
        ("patch",),
        why="Kube.patch_status: the status subresource is the operator's only state store",
    ),
    Rule(
        "modeldeploy.io",
        "modeldeployments/finalizers",
        ("update",),
        why="every child's ownerReference sets blockOwnerDeletion: true; with the "
        "OwnerReferencesPermissionEnforcement admission plugin (OpenShift's default) that needs update on "
        "the owner's finalizers subresource, or every create is refused (403)",
    ),
    # ---- TF Serving children ---------------------------------------------------------------
    Rule(
        "apps",
        "deployments",
        ("get", "list", "watch", "create", "patch", "delete"),
        why="kopf index + event handler on our Deployments (list/watch); Kube.apply of one "
        "Deployment per model version (get/create/patch); stale versions deleted",
    ),
    Rule(
        CORE,
        "configmaps",
        ("get", "list", "create", "patch", "delete"),
        why="Kube.apply of the per-version TF Serving config; deleted with its version; the decision "
        "record: one immutable ConfigMap per record (create) and the chain's head found by label (list)",
    ),
    Rule(
        CORE,
        "services",
        ("get", "create", "patch", "delete"),
        why="Kube.apply of the Service clients call (stable pods only) and of one Service per model "
        "version (the VirtualService's destinations); deleted with its version",
    ),
    Rule(
        CORE,
        "events",
        ("create",),
        why="Kube.emit_event: Events with distinct reasons (kopf's own event posting is disabled)",
    ),
    Rule(
        CORE,
        "pods",
        ("list", "watch"),
        why="kopf index of the TF Serving pods' scheduling state: GPU pods unschedulable for "
        "spec.serving.gpu.fallbackAfter start CPU replicas (spec.serving.gpu.fallbackToCPU)",
    ),
    Rule(
        CORE,
        "secrets",
        ("get",),
        resource_names="notifications.secretNames",
        why="modeldeploy.notifier reads a receiver's webhook URL (spec.notifications[].urlFrom.secretKeyRef, a "
        "credential) when it posts; only the Secret names listed in the Helm value notifications.secretNames "
        "(resourceNames), get only; none listed (the default) = no access to Secrets at all",
    ),
    # ---- Istio routing ---------------------------------------------------------------------
    Rule(
        "networking.istio.io",
        "destinationrules",
        ("delete",),
        why="the DestinationRule of earlier releases (subsets of the model's Service) is deleted once "
        "per operator start; routing goes to per-version Services now",
    ),
    Rule(
        "networking.istio.io",
        "virtualservices",
        ("get", "create", "patch"),
        why="Kube.apply of the VirtualService (weights, A/B matches, mirroring)",
    ),
    # ---- kopf itself -----------------------------------------------------------------------
    Rule(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        ("list", "watch"),
        cluster_scoped=True,
        why="kopf's resource observer notices CRDs appearing/disappearing at runtime "
        "(kopf/_core/reactor/observation.py; only a warning without it)",
    ),
    Rule(
        CORE,
        "namespaces",
        ("list", "watch"),
        cluster_scoped=True,
        only="namespaced",
        why="kopf's namespace observer, only when watching a list of namespaces (not cluster-wide)",
    ),
    Rule(
        "kopf.dev",
        "clusterkopfpeerings",
        ("list", "watch", "patch"),
        cluster_scoped=True,
        only="clusterwide",
        peering=True,
        why="kopf peering, cluster-wide: watch the peers and patch our keep-alive into status",
    ),
    Rule(
        "kopf.dev",
        "kopfpeerings",
        ("list", "watch", "patch"),
        only="namespaced",
        peering=True,
        why="kopf peering, per watched namespace: watch the peers and patch our keep-alive",
    ),
)

# Permissions a feature being built will need. NOT granted: least privilege means granting them in
# the same change that starts using them (the RBAC test fails then, naming the rule to move).
PLANNED: tuple[Rule, ...] = ()

# Permission triples: (api_group, resource, verb).
Triple = tuple[str, str, str]


def applies(rule: Rule, *, clusterwide: bool, peering: bool) -> bool:
    if rule.peering and not peering:
        return False
    if rule.only == "clusterwide" and not clusterwide:
        return False
    if rule.only == "namespaced" and clusterwide:
        return False
    return True


def rules_for(*, clusterwide: bool, peering: bool, named: bool = False) -> dict[str, set[Triple]]:
    """Where each permission goes in a mode: {"cluster": ClusterRole, "namespace": each Role}. Rules limited
    to `resource_names` only with `named` (the chart lists names for them)."""
    out: dict[str, set[Triple]] = {"cluster": set(), "namespace": set()}
    for rule in RULES:
        if not applies(rule, clusterwide=clusterwide, peering=peering):
            continue
        if rule.resource_names and not named:
            continue
        where = "cluster" if (clusterwide or rule.cluster_scoped) else "namespace"
        out[where].update((rule.api_group, rule.resource, verb) for verb in rule.verbs)
    return out


def all_triples(*, clusterwide: bool, peering: bool) -> set[Triple]:
    """Every permission the code may use in a mode (name-limited rules included)."""
    placed = rules_for(clusterwide=clusterwide, peering=peering, named=True)
    return placed["cluster"] | placed["namespace"]
