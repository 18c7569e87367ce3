"""The chart's optional web dashboard (webDashboard.*): off by default, read-only RBAC unless actions are on.

- nothing of it renders by default;
- enabled, it renders a Deployment + Service + ServiceAccount + (Cluster)Role and binding, in every
  mode (cluster-wide: one ClusterRole; watchNamespaces: a Role per namespace and `--namespace` per
  namespace), and its container command parses with the real `modeldeploy dashboard` CLI;
- its RBAC is exactly what the dashboard's code calls (derived from mddashboard's source): list+watch
  of modeldeployments, plus patch only with allowActions; never anything else, never Secrets;
- allowActions without identityHeader is refused by the schema (and by the CLI itself);
- the Service reaches the pod's port, the probes hit the server's /healthz and /readyz.
"""

from __future__ import annotations

import argparse
import ast
import pathlib

import pytest

from chartlib import NAMESPACE, ROOT, render

READ_ONLY = {"webDashboard": {"enabled": True}}
ACTIONS = {"webDashboard": {"enabled": True, "allowActions": True, "identityHeader": "X-Forwarded-User"}}
DASHBOARD_CODE = ROOT / "dashboard" / "mddashboard"


def dashboard_objects(values: dict) -> list[dict]:
    return [o for o in render(values) if o["_template"].endswith("web-dashboard.yaml")]


def rules_by_subject(objects: list[dict]) -> dict[str, set[tuple[str, str, str]]]:
    """{namespace or '*': {(group, resource, verb)}} granted to the dashboard's ServiceAccount."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects if o["kind"] in ("Role", "ClusterRole")}
    out: dict[str, set] = {}
    for b in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        role_kind = b["roleRef"]["kind"]
        role = roles[(role_kind, b["metadata"].get("namespace") if role_kind == "Role" else None, b["roleRef"]["name"])]
        where = b["metadata"].get("namespace") or "*"
        for rule in role["rules"]:
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    out.setdefault(where, set()).update((g, r, v) for v in rule["verbs"])
    return out


def code_permissions() -> set[tuple[str, str, str]]:
    """What mddashboard calls on the Kubernetes API, read from its source (AST)."""
    needed = set()
    for path in DASHBOARD_CODE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("list_cluster_custom_object", "list_namespaced_custom_object"):
                needed.add(("modeldeploy.io", "modeldeployments", "list"))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "stream":
                needed.add(("modeldeploy.io", "modeldeployments", "watch"))  # kubernetes.watch.Watch().stream(list_...)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) \
                    and (node.func.value.id, node.func.attr) == ("actions", "request"):
                needed.add(("modeldeploy.io", "modeldeployments", "patch"))  # modeldeploy.actions.request: one merge patch
            if isinstance(node, ast.Attribute) and node.attr.startswith(("create_", "delete_", "replace_", "read_", "patch_")) \
                    and "custom_object" in node.attr:
                raise AssertionError(f"{path.name}:{node.lineno}: new API call {node.attr}: add it to the chart's rules and here")
    return needed


def test_off_by_default():
    assert dashboard_objects({}) == []


@pytest.mark.parametrize("namespaces", [[], ["radiology", "pathology"]], ids=["clusterwide", "namespaced"])
@pytest.mark.parametrize("values", [READ_ONLY, ACTIONS], ids=["read-only", "actions"])
def test_rbac_is_exactly_what_the_code_calls(values, namespaces):
    objects = dashboard_objects(dict(values, watchNamespaces=namespaces))
    granted = rules_by_subject(objects)
    wanted = code_permissions()
    if not values["webDashboard"].get("allowActions"):
        wanted.discard(("modeldeploy.io", "modeldeployments", "patch"))
    assert set(granted) == ({"*"} if not namespaces else set(namespaces))
    for where, triples in granted.items():
        assert triples == wanted, (where, triples ^ wanted)
    subjects = {(s["name"], s["namespace"]) for o in objects if o["kind"].endswith("Binding") for s in o["subjects"]}
    assert subjects == {("modeldeploy-dashboard", NAMESPACE)}


def test_the_code_scan_sees_the_dashboards_calls():
    assert code_permissions() == {("modeldeploy.io", "modeldeployments", v) for v in ("list", "watch", "patch")}


def container(values: dict) -> dict:
    (dep,) = [o for o in dashboard_objects(values) if o["kind"] == "Deployment"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


def parse(c: dict) -> argparse.Namespace:
    from mddashboard.cli import register

    parser = argparse.ArgumentParser(prog="modeldeploy")
    register(parser.add_subparsers(dest="command"))
    assert c["command"] == ["modeldeploy"]
    return parser.parse_args(c["args"])


def test_container_command_parses_with_the_real_cli():
    args = parse(container(dict(ACTIONS, watchNamespaces=["radiology", "pathology"])))
    assert (args.command, args.host, args.port) == ("dashboard", "0.0.0.0", 8765)
    assert args.allow_actions and args.identity_header == "X-Forwarded-User"
    assert args.namespaces == ["radiology", "pathology"]
    assert args.prometheus_url == "http://prometheus-operated.monitoring.svc:9090"
    read_only = parse(container(READ_ONLY))
    assert not read_only.allow_actions and read_only.identity_header is None and read_only.namespaces is None
    from mddashboard.server import Settings, check_settings

    check_settings(Settings(host=args.host, allow_actions=True, identity_header=args.identity_header))  # would start


def test_actions_need_an_identity_header():
    with pytest.raises(Exception, match="identityHeader"):
        render({"webDashboard": {"enabled": True, "allowActions": True}})


def test_service_and_probes_reach_the_server():
    objects = dashboard_objects(READ_ONLY)
    (svc,) = [o for o in objects if o["kind"] == "Service"]
    (dep,) = [o for o in objects if o["kind"] == "Deployment"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "dashboard"
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert svc["spec"]["ports"][0]["targetPort"] == c["ports"][0]["name"] == "http"
    assert c["ports"][0]["containerPort"] == 8765
    assert (c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"]) == ("/healthz", "/readyz")
    from mddashboard.server import Dashboard, Settings

    routes = {r.resource.canonical for r in Dashboard(Settings(host="0.0.0.0")).app().router.routes()}
    assert {"/healthz", "/readyz"} <= routes
    # the operator's selector must not pick the dashboard's pods (and the other way round)
    operator = next(o for o in render(READ_ONLY) if o["kind"] == "Deployment" and o["_template"].endswith("/deployment.yaml"))
    op_selector = operator["spec"]["selector"]["matchLabels"]
    assert not all(pod_labels.get(k) == v for k, v in op_selector.items())


def test_image_defaults_to_the_app_version_and_takes_a_digest():
    assert container(READ_ONLY)["image"].startswith("ghcr.io/modeldeploy/dashboard:")
    digest = "sha256:" + "cd" * 32
    c = container({"webDashboard": {"enabled": True, "image": {"repository": "r.example/md", "tag": "1.2.3", "digest": digest}}})
    assert c["image"] == f"r.example/md:1.2.3@{digest}"


def test_dashboard_image_source_exists():
    assert (ROOT / "dashboard" / "Dockerfile").is_file()
    assert pathlib.Path(ROOT / "dashboard" / "frontend" / "package-lock.json").is_file()
