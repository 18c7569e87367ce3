"""charts/modeldeploy renders, lints strict and validates, across a matrix of values.

- every value set in chartlib.MATRIX renders (helm-python-sdk, values.schema.json enforced) and
  passes `helm lint --strict`;
- every built-in object is valid for kubernetes-validate --strict at the chart's oldest and the newest
  supported Kubernetes version, with ZERO errors; custom resources validate against their CRDs
  (Prometheus Operator ServiceMonitor/PrometheusRule from tests/data/thirdparty-crds, kopf peering
  from the chart's own crds/);
- what the objects say is what the operator understands: the container args parse with the real
  `modeldeploy` CLI, the env gives the intended Settings, probes hit the kopf liveness endpoint;
- Pod Security "restricted", images by tag and digest, HA wiring, NetworkPolicy, NOTES.
"""

from __future__ import annotations

import filecmp
import json
import pathlib
import shutil
import subprocess
import urllib.parse

import helm_python
import kubernetes_validate
import pytest
import yaml

from chartlib import (
    ALL_FEATURES,
    CHART,
    DIGEST,
    K8S_VERSIONS,
    MATRIX,
    NAMESPACE,
    ROOT,
    SHARED_CRDS,
    THIRDPARTY_CRDS,
    chart,
    crd_schema,
    deep_merge,
    find,
    is_builtin,
    k8s_problems,
    notes,
    one,
    render,
    strip,
)
from modeldeploy.validation.openapi import schema_problems

CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "prometheus-operator-servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheus-operator-prometheusrules.yaml",
    ("kopf.dev/v1", "ClusterKopfPeering"): None,
    ("kopf.dev/v1", "KopfPeering"): None,
}


def container(objects: list[dict]) -> dict:
    deployment = one(objects, "Deployment")
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "operator")


def env_of(c: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in c["env"]}


# ---- render, lint, validate -----------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MATRIX))
def test_renders_with_consistent_metadata(name):
    objects = render(MATRIX[name])
    assert objects, name
    seen = set()
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        assert key not in seen, f"duplicate object {key}"
        seen.add(key)
        labels = obj["metadata"].get("labels") or {}
        if obj["kind"] != "Pod":
            assert labels.get("app.kubernetes.io/instance") == "modeldeploy", key
            assert labels.get("app.kubernetes.io/managed-by") == "Helm", key
    for kind in ("Deployment", "ServiceAccount", "Service", "ServiceMonitor", "PrometheusRule", "NetworkPolicy",
                 "PodDisruptionBudget"):
        for obj in find(objects, kind):
            assert obj["metadata"]["namespace"] == NAMESPACE, (kind, obj["metadata"])


@pytest.mark.parametrize("name", ["default", "all-features", "namespaced-ha", "minimal"])
def test_helm_lint_strict(name):
    for kube_version in ("v1.30.0", "v1.35.0"):
        report = helm_python.lint(str(CHART), MATRIX[name], strict=True, kube_version=kube_version)
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
        assert not problems, problems


@pytest.mark.skipif(not shutil.which("helm"), reason="no helm CLI on PATH (helm-python-sdk covers lint and render)")
def test_real_helm_cli_lints_and_templates(tmp_path):
    values = tmp_path / "all-features.yaml"
    values.write_text(yaml.safe_dump(ALL_FEATURES))
    lint = subprocess.run(["helm", "lint", "--strict", str(CHART), "-f", str(values)], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    template = subprocess.run(["helm", "template", "modeldeploy", str(CHART), "-n", NAMESPACE, "--include-crds", "-f", str(values)],
                              capture_output=True, text=True, timeout=60)
    assert template.returncode == 0, template.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(template.stdout) if d}
    assert {"CustomResourceDefinition", "Deployment", "PrometheusRule", "ServiceMonitor"} <= kinds


def test_helm_lint_reports_a_broken_value():
    report = helm_python.lint(str(CHART), {"replicaCount": "two"}, strict=True)
    assert any(m["severity"] >= 2 for m in report["messages"]) or report.get("errors")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", list(MATRIX))
def test_builtin_objects_validate_strict(name, version):
    problems = {}
    for obj in render(MATRIX[name]):
        if is_builtin(obj):
            found = k8s_problems(obj, version)
            if found:
                problems[f"{obj['kind']}/{obj['metadata']['name']}"] = found
            elif name in ("default", "all-features"):  # the library's own entry point agrees (slower: raises on the first error)
                kubernetes_validate.validate(strip(obj), version, strict=True)
        else:
            assert (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS, f"unvalidated kind {obj['apiVersion']}/{obj['kind']}"
    assert not problems, json.dumps(problems, indent=1)


def test_strict_validation_catches_an_unknown_field():
    deployment = strip(one(render({}), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    deployment["spec"]["replicas"] = "one"
    problems = k8s_problems(deployment, K8S_VERSIONS[0])
    assert len(problems) >= 2, problems


@pytest.mark.parametrize("name", list(MATRIX))
def test_custom_resources_validate_against_their_crds(name):
    peering_crds = {d["spec"]["names"]["kind"]: d for d in yaml.safe_load_all((CHART / "crds" / "kopf-peering.yaml").read_text())}
    for obj in render(MATRIX[name]):
        key = (obj["apiVersion"], obj["kind"])
        if key not in CUSTOM_KINDS:
            continue
        if CUSTOM_KINDS[key]:
            schema = crd_schema(CUSTOM_KINDS[key])
        else:
            schema = peering_crds[obj["kind"]]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        problems = schema_problems(schema, strip(obj))
        assert not problems, (obj["kind"], [str(p) for p in problems])


def test_crd_validation_catches_a_bad_servicemonitor():
    monitor = strip(one(render(ALL_FEATURES), "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    monitor["spec"]["endpoints"][0]["scheme"] = "gopher"
    problems = [str(p) for p in schema_problems(crd_schema(CUSTOM_KINDS[("monitoring.coreos.com/v1", "ServiceMonitor")]), monitor)]
    assert any("intervall" in p for p in problems) and any("gopher" in p for p in problems), problems


def test_every_feature_is_on_in_the_all_features_render():
    kinds = {o["kind"] for o in render(ALL_FEATURES)}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "ServiceMonitor",
            "PrometheusRule", "ConfigMap", "NetworkPolicy", "PodDisruptionBudget", "ClusterKopfPeering", "Pod"} <= kinds


def test_vendored_thirdparty_crds_match_the_shared_copies():
    if not SHARED_CRDS.is_dir():
        pytest.skip("../shared/data/crds not present")
    for path in SHARED_CRDS.glob("*.yaml"):
        assert filecmp.cmp(path, THIRDPARTY_CRDS / path.name, shallow=False), path.name


# ---- CRDs ---------------------------------------------------------------------------------------------

def test_chart_crds():
    assert {pathlib.Path(c["name"]).name for c in chart().crds} == {"modeldeployment.yaml", "kopf-peering.yaml"}
    assert (CHART / "crds" / "modeldeployment.yaml").read_bytes() == (ROOT / "crds" / "modeldeployment.yaml").read_bytes(), \
        "charts/modeldeploy/crds/modeldeployment.yaml differs from crds/modeldeployment.yaml: run `make sync-crds`"
    for path in (CHART / "crds").glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            for version in K8S_VERSIONS:
                assert not k8s_problems(crd, version), (path.name, k8s_problems(crd, version))


def test_peering_crds_are_the_ones_kopf_looks_for():
    from kopf._cogs.structs import references

    crds = {d["spec"]["names"]["plural"]: d for d in yaml.safe_load_all((CHART / "crds" / "kopf-peering.yaml").read_text())}
    for selector, scope in ((references.CLUSTER_PEERINGS_K, "Cluster"), (references.NAMESPACED_PEERINGS_K, "Namespaced")):
        plural = selector.plural or selector.any_name
        crd = crds[plural]
        assert crd["metadata"]["name"] == f"{plural}.{selector.group}"
        assert (crd["spec"]["group"], crd["spec"]["versions"][0]["name"]) == (selector.group, selector.version)
        assert crd["spec"]["scope"] == scope


# ---- the operator container: what the operator code understands ------------------------------------

@pytest.mark.parametrize("name", ["default", "namespaced", "all-features", "minimal"])
def test_container_command_parses_with_the_real_cli(name):
    from modeldeploy.cli import build_parser

    values = deep_merge(yaml.safe_load((CHART / "values.yaml").read_text()), MATRIX[name])
    c = container(render(MATRIX[name]))
    assert c["command"] == ["modeldeploy"]
    args = build_parser().parse_args(c["args"])
    assert args.command == "operator"
    assert args.namespace == values["watchNamespaces"]
    assert args.all_namespaces == (not values["watchNamespaces"])
    liveness = urllib.parse.urlsplit(args.liveness)
    assert (liveness.hostname, liveness.port, liveness.path) == ("0.0.0.0", values["health"]["port"], "/healthz")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["path"] == "/healthz"
        port = c[probe]["httpGet"]["port"]
        assert next(p["containerPort"] for p in c["ports"] if p["name"] == port) == values["health"]["port"]
    assert args.verbose == values["verbose"]


@pytest.mark.parametrize("name", ["default", "all-features", "no-prometheus", "clusterwide-ha"])
def test_container_env_gives_the_intended_settings(name, monkeypatch):
    from modeldeploy.settings import Settings

    values = deep_merge(yaml.safe_load((CHART / "values.yaml").read_text()), MATRIX[name])
    c = container(render(MATRIX[name]))
    env = env_of(c)
    for key in [k for k in list(__import__("os").environ) if k.startswith("MODELDEPLOY_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if value is not None:
            monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    assert settings.prometheus_url == (values["prometheus"]["url"] or None)
    assert settings.metrics_host == "0.0.0.0"
    assert settings.metrics_port == values["metrics"]["port"]
    assert next(p["containerPort"] for p in c["ports"] if p["name"] == "metrics") == settings.metrics_port
    assert settings.resync_seconds == values["resyncSeconds"]
    assert settings.cluster_domain == values["clusterDomain"]  # corp.example in all-features
    assert settings.prometheus_timeout == values["prometheus"]["timeoutSeconds"]
    assert settings.evaluator_image and settings.evaluator_image.startswith(values["evaluator"]["image"]["repository"])
    assert (settings.peering is not None) == (values["replicaCount"] > 1)
    assert next(e for e in c["env"] if e["name"] == "POD_ID")["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_replicas_strategy_and_peering():
    single = render({})
    assert one(single, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert not find(single, "PodDisruptionBudget") and not find(single, "ClusterKopfPeering")
    assert "MODELDEPLOY_PEERING" not in env_of(container(single))

    ha = render(MATRIX["clusterwide-ha"])
    deployment = one(ha, "Deployment")
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    peering = one(ha, "ClusterKopfPeering")
    assert env_of(container(ha))["MODELDEPLOY_PEERING"] == peering["metadata"]["name"] == "modeldeploy"
    assert one(ha, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    assert "distinct" in notes(MATRIX["clusterwide-ha"])

    namespaced = render(MATRIX["namespaced-ha"])
    peerings = find(namespaced, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["pathology", "radiology"]
    assert not find(namespaced, "ClusterKopfPeering")
    assert {p["metadata"]["name"] for p in peerings} == {env_of(container(namespaced))["MODELDEPLOY_PEERING"]}


@pytest.mark.parametrize("image, expected", [
    ({}, "ghcr.io/modeldeploy/operator:0.1.0"),
    ({"tag": "1.2.3"}, "ghcr.io/modeldeploy/operator:1.2.3"),
    ({"tag": "1.2.3", "digest": DIGEST}, f"ghcr.io/modeldeploy/operator:1.2.3@{DIGEST}"),
    ({"repository": "registry.local:5000/md/operator", "digest": DIGEST}, f"registry.local:5000/md/operator:0.1.0@{DIGEST}"),
])
def test_image_by_tag_and_optional_digest(image, expected):
    values = {"image": deep_merge({"repository": "ghcr.io/modeldeploy/operator"}, image)}
    objects = render(values)
    assert container(objects)["image"] == expected
    assert one(objects, "Pod")["spec"]["containers"][0]["image"] == expected, "the helm test runs the same image"


def test_evaluator_image_reaches_the_operator():
    c = container(render(ALL_FEATURES))
    assert env_of(c)["MODELDEPLOY_EVALUATOR_IMAGE"] == f"registry.example.com/ml/modeldeploy-evaluator:0.1.0@{DIGEST}"


@pytest.mark.parametrize("spec_image, expected", [
    (None, f"registry.example.com/ml/modeldeploy-evaluator:0.1.0@{DIGEST}"),  # unset: the chart's image
    ("registry.hospital.example/radiology/evaluator:2.0", "registry.hospital.example/radiology/evaluator:2.0"),
])
def test_spec_evaluation_image_wins_over_the_charts_default(monkeypatch, spec_image, expected):
    """Under Helm the operator always has MODELDEPLOY_EVALUATOR_IMAGE; an explicit spec.evaluation.image
    (documented as settable in the CRD) must still be the image the evaluator Deployment runs."""
    from modeldeploy.plans import Target, VersionPlan
    from modeldeploy.render import evaluator as render_evaluator
    from modeldeploy.settings import Settings
    from modeldeploy.validation import validate_spec

    for key, value in env_of(container(render(ALL_FEATURES))).items():
        if value is not None:
            monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    evaluation = {"goldenSet": {"uri": "pvc://golden/cxr14"}}
    if spec_image is not None:
        evaluation["image"] = spec_image
    result = validate_spec({"model": {"name": "m", "basePath": "s3://b/m", "version": 1}, "evaluation": evaluation})
    assert result.ok, result.problems
    target = Target(name="md", namespace="radiology", spec=result.spec, uid="u")
    deployment = render_evaluator.deployment(target, settings.evaluator_image)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == expected


# ---- Pod Security "restricted" ---------------------------------------------------------------------

ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


def restricted_violations(pod_spec: dict) -> list[str]:
    """Pod Security Standards 'restricted' (Kubernetes 1.29+ policy), as the admission controller checks it."""
    out = []
    psc = pod_spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(flag):
            out.append(f"{flag} is set")
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            out.append(f"volume {volume['name']} uses {kinds - ALLOWED_VOLUMES}")
    if (psc.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        pod_seccomp_ok = False
    else:
        pod_seccomp_ok = True
    if psc.get("runAsUser") == 0:
        out.append("pod runAsUser is 0")
    for c in (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or []):
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds capabilities {caps.get('add')}")
        if not (sc.get("runAsNonRoot") is True or (psc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is not False)):
            out.append(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is None and not pod_seccomp_ok or seccomp not in (None, "RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"{name}: hostPort")
    return out


@pytest.mark.parametrize("name", list(MATRIX))
def test_pods_meet_pod_security_restricted(name):
    objects = render(MATRIX[name])
    specs = [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in find(objects, "Deployment")]
    specs += [(p["metadata"]["name"], p["spec"]) for p in find(objects, "Pod")]
    for who, spec in specs:
        assert not restricted_violations(spec), (who, restricted_violations(spec))
        for c in spec["containers"]:
            assert c["securityContext"].get("readOnlyRootFilesystem") is True, who
            assert c.get("resources", {}).get("requests"), f"{who}: set resource requests"
            assert c["resources"].get("limits", {}).get("memory"), f"{who}: set a memory limit"


def test_restricted_check_catches_privilege_escalation():
    values = {"securityContext": {"allowPrivilegeEscalation": True, "capabilities": {"drop": ["NET_RAW"]}},
              "podSecurityContext": {"runAsUser": 0}}
    spec = one(render(values), "Deployment")["spec"]["template"]["spec"]
    problems = restricted_violations(spec)
    assert any("allowPrivilegeEscalation" in p for p in problems)
    assert any("drop ALL" in p for p in problems)
    assert any("runAsUser is 0" in p for p in problems)


def test_image_user_matches_the_pod_security_context():
    dockerfile = (ROOT / "operator" / "Dockerfile").read_text()
    user = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")][-1]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert user.split(":")[0] == str(values["podSecurityContext"]["runAsUser"])


# ---- Service, ServiceMonitor, NetworkPolicy, helm test ------------------------------------------------

def test_service_and_servicemonitor_reach_the_operator():
    objects = render(ALL_FEATURES)
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    c = container(objects)
    service = one(objects, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    port_names = {p["name"] for p in c["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    monitor = one(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True, "the operator's own `namespace` label must survive scraping"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_servicemonitor_without_service_is_refused():
    with pytest.raises(helm_python.HelmRenderError, match="metrics.service.enabled"):
        chart().render({"metrics": {"port": 8080, "service": {"enabled": False}, "serviceMonitor": {"enabled": True}},
                        "tests": {"enabled": False}}, name="modeldeploy", namespace=NAMESPACE)


def test_network_policy_allows_exactly_what_the_operator_needs():
    objects = render(ALL_FEATURES)
    policy = one(objects, "NetworkPolicy")
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    port_names = {p["name"] for p in container(objects)["ports"]}
    ingress_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ingress_ports == port_names == {"metrics", "health"}
    test_pod = one(objects, "Pod")
    test_rule = next(r for r in policy["spec"]["ingress"] if any("podSelector" in f for f in r["from"]))
    assert test_rule["from"][0]["podSelector"]["matchLabels"].items() <= test_pod["metadata"]["labels"].items()
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    prometheus_port = urllib.parse.urlsplit(ALL_FEATURES["prometheus"]["url"]).port
    assert {53, 443, 6443, prometheus_port} == egress_ports


def test_helm_test_pod_checks_the_operator():
    objects = render({})
    pod = one(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["args"][0]
    service = one(objects, "Service")
    assert f"http://{service['metadata']['name']}.{NAMESPACE}.svc" in script
    for port in service["spec"]["ports"]:
        assert f":{port['port']}/" in script
    assert "modeldeploy_reconcile_duration_seconds" in script
    from chartlib import operator_metric_names

    assert "modeldeploy_reconcile_duration_seconds_bucket" in operator_metric_names()
    compile(script, "helm-test", "exec")
    assert not find(render({"tests": {"enabled": False}}), "Pod")


def test_dashboard_configmap_carries_the_sidecar_label_and_the_json():
    objects = render(ALL_FEATURES)
    cm = next(c for c in find(objects, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["annotations"]["grafana_folder"] == "ModelDeploy"
    assert json.loads(cm["data"]["modeldeploy.json"]) == json.loads((CHART / "dashboards" / "modeldeploy.json").read_text())
    assert not [c for c in find(render({}), "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]


def test_notes_guide_the_installer():
    text = notes({})
    assert "kubectl -n modeldeploy-system rollout status deployment/modeldeploy" in text
    assert "kubectl modeldeploy promote" in text and "helm test modeldeploy" in text
    assert "WARNING: prometheus.url is empty" in notes(MATRIX["no-prometheus"])
    assert "WARNING" not in text
    assert "radiology, pathology" in notes(MATRIX["namespaced"])
