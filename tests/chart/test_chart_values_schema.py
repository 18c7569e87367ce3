"""values.schema.json: it catches mistakes at `helm install` time, with the path of the bad value.

Each bad value below is rejected by Helm itself (helm-python-sdk enforces the schema on every
render) with a message naming the JSON path and the reason; the defaults and every matrix entry
pass; values.yaml and the schema describe the same keys.
"""

from __future__ import annotations

import json

import helm_python
import jsonschema
import pytest

from chartlib import CHART, MATRIX, NAMESPACE, chart, default_values, deep_merge

SCHEMA = json.loads((CHART / "values.schema.json").read_text())

BAD_VALUES = [
    ("replicas zero", {"replicaCount": 0}, "/replicaCount", "minimum"),
    ("dashboard actions without identity", {"webDashboard": {"enabled": True, "allowActions": True}}, "/webDashboard/identityHeader", "minLength"),
    ("dashboard identity header with a colon", {"webDashboard": {"enabled": True, "identityHeader": "X-User: alice"}}, "/webDashboard/identityHeader", "does not match pattern"),
    ("replicas as text", {"replicaCount": "2"}, "/replicaCount", "got string, want integer"),
    ("typo in a key", {"metrics": {"serviceMonitr": {"enabled": True}}}, "/metrics", "additional properties 'serviceMonitr' not allowed"),
    ("unknown top-level key", {"replicas": 2}, "", "additional properties 'replicas' not allowed"),
    ("short digest", {"image": {"digest": "sha256:abc"}}, "/image/digest", "does not match pattern"),
    ("digest without algorithm", {"image": {"digest": "ab" * 32}}, "/image/digest", "does not match pattern"),
    ("tag with a colon", {"image": {"tag": "v1:latest"}}, "/image/tag", "does not match pattern"),
    ("repository with a tag", {"image": {"repository": "ghcr.io/x/operator:1.0"}}, "/image/repository", "does not match pattern"),
    ("pull policy", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", "value must be one of"),
    ("namespace name", {"watchNamespaces": ["Radiology"]}, "/watchNamespaces/0", "does not match pattern"),
    ("duplicate namespace", {"watchNamespaces": ["a", "a"]}, "/watchNamespaces", "items at 0 and 1 are equal"),
    ("prometheus url scheme", {"prometheus": {"url": "prometheus:9090"}}, "/prometheus/url", "does not match pattern"),
    ("prometheus timeout", {"prometheus": {"timeoutSeconds": 0}}, "/prometheus/timeoutSeconds", "exclusiveMinimum"),
    ("resync too fast", {"resyncSeconds": 1}, "/resyncSeconds", "minimum"),
    ("cluster domain with a dot first", {"clusterDomain": ".cluster.local"}, "/clusterDomain", "does not match pattern"),
    ("cluster domain in upper case", {"clusterDomain": "Cluster.Local"}, "/clusterDomain", "does not match pattern"),
    ("port out of range", {"metrics": {"port": 70000}}, "/metrics/port", "maximum"),
    ("scrape interval", {"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}, "/metrics/serviceMonitor/interval", "does not match pattern"),
    ("alert duration", {"prometheusRule": {"rules": {"operatorDown": {"for": "five minutes"}}}}, "/prometheusRule/rules/operatorDown/for", "does not match pattern"),
    ("unknown alert", {"prometheusRule": {"disabledAlerts": ["ModelDeployDown"]}}, "/prometheusRule/disabledAlerts/0", "value must be one of"),
    ("AUROC above 1", {"prometheusRule": {"rules": {"modelAUROC": {"min": 80}}}}, "/prometheusRule/rules/modelAUROC/min", "maximum"),
    ("memory quantity", {"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory", "anyOf"),
    ("cidr", {"networkPolicy": {"egress": {"apiServer": {"cidrs": ["10.0.0.1"]}}}}, "/networkPolicy/egress/apiServer/cidrs/0", "does not match pattern"),
    ("seccomp", {"podSecurityContext": {"seccompProfile": {"type": "Default"}}}, "/podSecurityContext/seccompProfile/type", "value must be one of"),
    ("label value type", {"commonLabels": {"tier": 1}}, "/commonLabels/tier", "got number, want string"),
    ("env without name", {"extraEnv": [{"value": "1"}]}, "/extraEnv/0", "missing property 'name'"),
    ("feature flag as text", {"networkPolicy": {"enabled": "yes"}}, "/networkPolicy/enabled", "got string, want boolean"),
]


@pytest.mark.parametrize("case, values, path, reason", BAD_VALUES, ids=[c[0] for c in BAD_VALUES])
def test_bad_values_are_rejected_with_a_clear_message(case, values, path, reason):
    with pytest.raises(helm_python.HelmValuesError) as info:
        chart().render(values, name="modeldeploy", namespace=NAMESPACE)
    message = str(info.value)
    assert f"at '{path}'" in message, message
    assert reason in message, message


@pytest.mark.parametrize("name", list(MATRIX))
def test_matrix_values_are_valid(name):
    merged = deep_merge(default_values(), MATRIX[name])
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(merged))
    assert not errors, [e.message for e in errors]


def test_schema_is_valid_draft7_and_strict_everywhere():
    jsonschema.Draft7Validator.check_schema(SCHEMA)

    def walk(node, path):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False or path in {
                "podSecurityContext", "securityContext"}, f"{path or '<root>'}: set additionalProperties: false to catch typos"
            for key, sub in node["properties"].items():
                walk(sub, f"{path}.{key}" if path else key)

    walk(SCHEMA, "")


# Schema keys that are legitimately absent from values.yaml (optional Kubernetes fields, Helm's global).
OPTIONAL_KEYS = {
    "global", "resources.claims", "tests.resources.claims", "webDashboard.resources.claims",
    "securityContext.runAsUser", "securityContext.privileged", "securityContext.capabilities.add",
    "securityContext.seccompProfile.localhostProfile", "podSecurityContext.seccompProfile.localhostProfile",
}
# values.yaml maps whose keys are free-form (labels, resource names): their entries are not schema keys.
FREE_FORM = ("dashboard.labels", "resources.requests", "resources.limits", "tests.resources.requests",
             "tests.resources.limits", "webDashboard.resources.requests", "webDashboard.resources.limits")


def test_values_yaml_and_schema_describe_the_same_keys():
    def value_keys(node, path=""):
        out = set()
        for key, sub in node.items():
            here = f"{path}.{key}" if path else key
            out.add(here)
            if isinstance(sub, dict) and here not in FREE_FORM:
                out |= value_keys(sub, here)
        return out

    def schema_keys(node, path=""):
        out = set()
        for key, sub in (node.get("properties") or {}).items():
            here = f"{path}.{key}" if path else key
            out.add(here)
            out |= schema_keys(sub, here)
        return out

    in_values, in_schema = value_keys(default_values()), schema_keys(SCHEMA)
    assert in_values - in_schema == set(), f"values.yaml keys the schema does not know: {sorted(in_values - in_schema)}"
    assert in_schema - in_values - OPTIONAL_KEYS == set(), \
        f"schema keys without a documented default in values.yaml: {sorted(in_schema - in_values - OPTIONAL_KEYS)}"
