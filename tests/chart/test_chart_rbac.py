"""Least-privilege RBAC: the code's API calls == operator/modeldeploy/rbac.py == the chart's (Cluster)Roles.

Three views of the operator's permissions must agree exactly, in every mode (cluster-wide or a
namespace list, with or without kopf peering):
- derived from the code (tests/chart/rbac_scan.py reads kube.py, main.py and their callers);
- the documented allowlist, rbac.RULES;
- the rules the chart renders for the operator's ServiceAccount.
The mutation tests show each check fails when the code starts using something new.
"""

from __future__ import annotations

import pytest

import rbac_scan
from chartlib import MATRIX, NAMESPACE, deep_merge, find, render
from modeldeploy import rbac

MODE_IDS = ["clusterwide", "namespaced", "clusterwide-peering", "namespaced-peering"]
WATCHED = ["radiology", "pathology"]


def mode_values(mode: dict) -> dict:
    values: dict = {}
    if not mode["clusterwide"]:
        values["watchNamespaces"] = WATCHED
    if mode["peering"]:
        values["replicaCount"] = 2
    return values


def _fmt(triples) -> str:
    return "\n  ".join(f"{g or 'core'}/{r}: {v}" for g, r, v in sorted(triples)) or "(none)"


@pytest.mark.parametrize("mode", rbac_scan.MODES, ids=MODE_IDS)
def test_code_needs_exactly_the_allowlist(mode):
    derived = rbac_scan.derived_triples(**mode)
    allowed = rbac.all_triples(**mode)
    missing = derived - allowed
    unused = allowed - derived
    assert not missing, f"the code uses permissions rbac.RULES lacks (add them, with why):\n  {_fmt(missing)}"
    assert not unused, f"rbac.RULES grants permissions the code does not use (remove them):\n  {_fmt(unused)}"


def test_planned_rules_are_not_used_yet():
    """PLANNED rules are documented but not granted; once the code uses one, move it to RULES."""
    derived = set().union(*(rbac_scan.derived_triples(**m) for m in rbac_scan.MODES))
    for rule in rbac.PLANNED:
        used = {(g, r, v) for g, r, v in derived if (g, r) == (rule.api_group, rule.resource)}
        assert not used, f"{rule.resource} is used now ({_fmt(used)}): move it from rbac.PLANNED to rbac.RULES"


def test_every_rule_is_documented_and_scoped_right():
    for rule in rbac.RULES + rbac.PLANNED:
        assert rule.why, rule
        assert rule.cluster_scoped == (rule.resource in rbac_scan.CLUSTER_SCOPED), rule
        assert "*" not in rule.verbs and rule.resource != "*" and rule.api_group != "*", rule
        # update only on a finalizers subresource: that is how Kubernetes spells "may block this owner's
        # deletion" (OwnerReferencesPermissionEnforcement); the operator itself never PUTs anything
        forbidden = {"deletecollection", "escalate", "bind", "impersonate"}
        if not rule.resource.endswith("/finalizers"):
            forbidden.add("update")
        assert not forbidden & set(rule.verbs), rule
    secrets = [r for r in rbac.RULES if r.resource == "secrets"]
    assert all(r.verbs == ("get",) and r.resource_names for r in secrets), "Secrets: get by listed name only, never list/watch"
    assert all(r.resource_names is None for r in rbac.RULES if r.resource != "secrets")


def test_kopf_handlers_found_by_the_ast_match_kopfs_registry():
    """The AST view of main.py's decorators agrees with the handlers kopf actually registered."""
    import modeldeploy.main  # noqa: F401  (registers the handlers)
    from kopf._core.intents import registries

    registry = registries.get_default_registry()
    live = set()
    for sub in (registry._indexing, registry._watching, registry._spawning, registry._changing):
        for handler in sub.get_all_handlers():
            selector = handler.selector
            plural = selector.plural or selector.any_name
            live.add((selector.group or "", plural, bool(getattr(handler, "requires_finalizer", False))))
    facts = rbac_scan.kopf_facts()
    from_ast = {(g, p) for _, g, p, _ in facts.handlers}
    assert {(g, p) for g, p, _ in live} == from_ast
    patched = {(g, p) for _, g, p, needs_patch in facts.handlers if needs_patch}
    for group, plural, finalizer in live:
        if finalizer:
            assert (group, plural) in patched, f"kopf puts a finalizer (patch) on {plural}; the scanner missed it"


# ---- the scanner really sees changes in the code --------------------------------------------------

def _with_source(module: str, old: str, new: str) -> rbac_scan.Sources:
    sources = rbac_scan.Sources()
    text = sources.text(module)
    assert old in text, f"mutation anchor {old!r} not found in {module}"
    return rbac_scan.Sources(overrides={module: text.replace(old, new, 1)})


def test_scanner_sees_a_new_verb_in_a_caller():
    sources = _with_source(
        "modeldeploy.reconciler",
        "await self.kube.delete(CONFIGMAP,",
        "await self.kube.list(KINDS[(\"v1\", \"Service\")], target.namespace)\n            await self.kube.delete(CONFIGMAP,",
    )
    derived = rbac_scan.derived_triples(clusterwide=True, peering=False, sources=sources)
    assert ("", "services", "list") in derived
    assert ("", "services", "list") not in rbac.all_triples(clusterwide=True, peering=False)


def test_scanner_sees_a_new_literal_call_in_kube():
    sources = _with_source(
        "modeldeploy.kube",
        "    async def get_modeldeployment(",
        "    async def read_secret(self, namespace: str, name: str) -> dict:\n"
        "        return await self._call(\"get\", \"Secret\", KINDS[(\"v1\", \"Secret\")], namespace, name)\n\n"
        "    async def scale(self, namespace: str, name: str) -> dict:\n"
        "        return await self._call(\"patch\", \"Deployment/scale\", KINDS[(\"apps/v1\", \"Deployment\")],"
        " namespace, name, subresource=\"scale\", body={})\n\n"
        "    async def get_modeldeployment(",
    )
    sources.overrides["modeldeploy.reconciler"] = rbac_scan.Sources().text("modeldeploy.reconciler").replace(
        "fresh = await self.kube.get_modeldeployment(", "await self.kube.read_secret('ns', 'x')\n        "
        "await self.kube.scale('ns', 'x')\n        fresh = await self.kube.get_modeldeployment(", 1)
    derived = rbac_scan.derived_triples(clusterwide=True, peering=False, sources=sources)
    assert ("", "secrets", "get") in derived
    assert ("apps", "deployments/scale", "patch") in derived
    assert ("apps", "deployments/scale", "patch") not in rbac.all_triples(clusterwide=True, peering=False)


def test_scanner_sees_owner_references_that_block_owner_deletion():
    """blockOwnerDeletion: true needs update on <owner>/finalizers (OwnerReferencesPermissionEnforcement,
    on by default in OpenShift); without blockOwnerDeletion the permission is not needed."""
    need = ("modeldeploy.io", "modeldeployments/finalizers", "update")
    assert need in rbac_scan.derived_triples(clusterwide=True, peering=False)
    sources = _with_source("modeldeploy.plans", '"blockOwnerDeletion": True', '"blockOwnerDeletion": False')
    assert need not in rbac_scan.derived_triples(clusterwide=True, peering=False, sources=sources)


def test_scanner_sees_a_new_kopf_handler():
    sources = _with_source(
        "modeldeploy.main",
        "@kopf.on.event(GROUP, VERSION, PLURAL)",
        "@kopf.timer(\"\", \"v1\", \"pods\", interval=10)\nasync def pods_tick(**_):\n    pass\n\n\n@kopf.on.event(GROUP, VERSION, PLURAL)",
    )
    derived = rbac_scan.derived_triples(clusterwide=True, peering=False, sources=sources)
    assert {("", "pods", "list"), ("", "pods", "watch"), ("", "pods", "patch")} <= derived


def test_scanner_sees_kopf_settings():
    sources = _with_source("modeldeploy.main", "settings.posting.enabled = False", "settings.posting.enabled = True")
    assert ("", "events", "create") in rbac_scan.kopf_triples(rbac_scan.kopf_facts(sources), clusterwide=True, peering=False)
    sources = _with_source("modeldeploy.main", "settings.posting.enabled = False",
                           "settings.posting.enabled = False\n    settings.scanning.disabled = True")
    triples = rbac_scan.kopf_triples(rbac_scan.kopf_facts(sources), clusterwide=False, peering=False)
    assert not any(r in ("customresourcedefinitions", "namespaces") for _, r, _ in triples)


def test_scanner_refuses_direct_api_use_outside_kube():
    sources = _with_source("modeldeploy.reconciler", "import kopf\n",
                           "import kopf\nimport kubernetes\n_API = kubernetes.client.CoreV1Api\n")
    with pytest.raises(rbac_scan.ScanError, match="only kube.py"):
        rbac_scan.code_triples(sources)


# ---- the chart renders exactly the allowlist ---------------------------------------------------

def operator_rules(objects: list[dict], sa_name: str, sa_namespace: str = NAMESPACE, names: dict | None = None) -> dict[str, dict[str, set]]:
    """{"cluster": {"": triples}, "namespace": {ns: triples}} bound to the operator's ServiceAccount; the
    resourceNames of a name-limited rule go into `names` ({(where, ns, resource): [names]})."""
    roles = {("ClusterRole", None, o["metadata"]["name"]): o for o in find(objects, "ClusterRole")}
    roles |= {("Role", o["metadata"]["namespace"], o["metadata"]["name"]): o for o in find(objects, "Role")}
    out: dict[str, dict[str, set]] = {"cluster": {}, "namespace": {}}
    for binding in find(objects, "ClusterRoleBinding") + find(objects, "RoleBinding"):
        subjects = binding.get("subjects") or []
        if not any(s["kind"] == "ServiceAccount" and s["name"] == sa_name and s["namespace"] == sa_namespace for s in subjects):
            continue
        ref = binding["roleRef"]
        ns = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        role = roles[(ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"])]
        where = "cluster" if binding["kind"] == "ClusterRoleBinding" else "namespace"
        triples = out[where].setdefault(ns or "", set())
        for rule in role["rules"]:
            assert not rule.get("nonResourceURLs"), rule
            if rule.get("resourceNames"):  # only the notifier's Secrets, get only
                assert rule["resources"] == ["secrets"] and rule["verbs"] == ["get"], rule
                if names is not None:
                    names[(where, ns or "", "secrets")] = rule["resourceNames"]
            else:
                assert "secrets" not in rule["resources"], f"Secrets without resourceNames: {rule}"
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert "*" not in (group, resource, verb), f"wildcard in {role['metadata']['name']}: {rule}"
                        triples.add((group, resource, verb))
    return out


@pytest.mark.parametrize("mode", rbac_scan.MODES, ids=MODE_IDS)
def test_chart_rbac_equals_the_allowlist(mode):
    objects = render(mode_values(mode), tests=False)
    bound = operator_rules(objects, "modeldeploy")
    expected = rbac.rules_for(**mode)
    assert bound["cluster"].get("", set()) == expected["cluster"], (
        f"ClusterRole differs from rbac.rules_for({mode})\n extra:\n  {_fmt(bound['cluster'].get('', set()) - expected['cluster'])}"
        f"\n missing:\n  {_fmt(expected['cluster'] - bound['cluster'].get('', set()))}")
    if mode["clusterwide"]:
        assert not bound["namespace"], "cluster-wide mode must not create Roles"
    else:
        assert set(bound["namespace"]) == set(WATCHED), "one Role per watched namespace"
        for ns, triples in bound["namespace"].items():
            assert triples == expected["namespace"], (
                f"Role in {ns} differs\n extra:\n  {_fmt(triples - expected['namespace'])}"
                f"\n missing:\n  {_fmt(expected['namespace'] - triples)}")


def test_chart_rbac_comparison_catches_an_extra_verb():
    objects = render(mode_values(rbac_scan.MODES[0]), tests=False)
    role = find(objects, "ClusterRole", "modeldeploy")[0]
    role["rules"].append({"apiGroups": [""], "resources": ["services"], "verbs": ["update"]})
    bound = operator_rules(objects, "modeldeploy")
    assert bound["cluster"][""] != rbac.rules_for(clusterwide=True, peering=False)["cluster"]
    role["rules"][-1] = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}  # not limited by name
    with pytest.raises(AssertionError, match="Secrets without resourceNames"):
        operator_rules(objects, "modeldeploy")


def test_rbac_disabled_renders_no_roles_and_uses_the_given_account():
    objects = render(MATRIX["minimal"], tests=False)
    assert not any(o["kind"] in ("ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding", "ServiceAccount") for o in objects)
    deployment = find(objects, "Deployment")[0]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "preexisting"


def test_user_facing_roles_aggregate_and_never_bind_the_operator():
    objects = render({}, tests=False)
    view = find(objects, "ClusterRole", "modeldeploy-view")[0]
    edit = find(objects, "ClusterRole", "modeldeploy-edit")[0]
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"], "view must stay read-only"
    for binding in find(objects, "ClusterRoleBinding"):
        assert binding["roleRef"]["name"] == "modeldeploy"
    off = render(deep_merge({}, {"rbac": {"create": True, "aggregateToDefaultRoles": False}}), tests=False)
    assert not find(off, "ClusterRole", "modeldeploy-view")


@pytest.mark.parametrize("mode", rbac_scan.MODES[:2], ids=MODE_IDS[:2])
def test_secrets_only_by_the_listed_names_and_only_when_listed(mode):
    """notifications.secretNames (plus the Secrets of notifications.defaults) become get with resourceNames, in
    the ClusterRole or in each watched namespace's Role; nothing listed: no Secret access at all."""
    values = deep_merge(mode_values(mode), {"notifications": {
        "secretNames": ["modeldeploy-notifications"],
        "defaults": [{"name": "ops", "format": "teams", "urlFrom": {"secretKeyRef": {"name": "ops-teams", "key": "url"}}}]}})  # fmt: skip
    names: dict = {}
    bound = operator_rules(render(values, tests=False), "modeldeploy", names=names)
    expected = rbac.rules_for(**mode, named=True)
    where = "cluster" if mode["clusterwide"] else "namespace"
    for ns, triples in bound[where].items():
        assert triples == expected[where], ns
    want = {(where, ns, "secrets"): ["modeldeploy-notifications", "ops-teams"] for ns in ([""] if mode["clusterwide"] else WATCHED)}
    assert names == want
    plain: dict = {}
    operator_rules(render(mode_values(mode), tests=False), "modeldeploy", names=plain)
    assert plain == {}
