"""The chart's alerts: promtool check rules, promtool unit tests of every alert, metric names, runbook.

The rules file promtool reads is extracted from the RENDERED PrometheusRule, so the unit tests in
tests/chart/promtool/alerts_test.yaml can never drift from what the chart installs.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

from chartlib import (
    ROOT,
    allowed_metric_names,
    deep_merge,
    find,
    metric_names,
    one,
    render,
    rules_file,
)

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
UNIT_TESTS = pathlib.Path(__file__).parent / "promtool" / "alerts_test.yaml"
RUNBOOK = ROOT / "docs" / "operations.md"
ENABLED = {"prometheusRule": {"enabled": True}}

pytestmark = pytest.mark.skipif(not pathlib.Path(PROMTOOL).exists(), reason="promtool not installed (make setup)")


def rendered_rules(values: dict | None = None) -> dict:
    return rules_file(render(deep_merge(ENABLED, values or {}), tests=False))


def alerts(rules: dict) -> dict[str, dict]:
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}


def run_promtool(tmp_path: pathlib.Path, rules: dict, *args: str, only_alert: str | None = None) -> subprocess.CompletedProcess:
    """promtool in a directory holding rules.yaml and the unit tests (only one alert's cases, if asked)."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    if only_alert:
        tests["tests"] = [case for case in tests["tests"]
                          if any(c["alertname"] == only_alert for c in case.get("alert_rule_test", []))]
    (tmp_path / UNIT_TESTS.name).write_text(yaml.safe_dump(tests, sort_keys=False))
    return subprocess.run([PROMTOOL, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("values", [{}, {"prometheusRule": {"alertLabels": {"team": "ml"}, "rules": {"rollback": {"window": "30m"}}}}],
                         ids=["defaults", "customised"])
def test_promtool_check_rules(tmp_path, values):
    proc = run_promtool(tmp_path, rendered_rules(values), "check", "rules", "rules.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alerts(rendered_rules(values)))} rules found" in proc.stdout


def test_promtool_unit_tests_pass(tmp_path):
    proc = run_promtool(tmp_path, rendered_rules(), "test", "rules", UNIT_TESTS.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("change, broken", [
    ({"modelAUROC": {"min": 0.6}}, "ModelDeployModelAUROCLow"),
    ({"rollback": {"window": "5m"}}, "ModelDeployRollbackHappened"),
    ({"canaryLatency": {"metricRegex": "nothing-matches"}}, "ModelDeployCanaryLatencyBreach"),
    ({"operatorDown": {"for": "30m"}}, "ModelDeployOperatorDown"),
], ids=["auroc-floor", "rollback-window", "latency-regex", "operator-down-for"])
def test_unit_tests_catch_a_changed_rule(tmp_path, change, broken):
    rules = rendered_rules({"prometheusRule": {"rules": change}})
    proc = run_promtool(tmp_path, rendered_rules(), "test", "rules", UNIT_TESTS.name, only_alert=broken)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # the same cases pass on the shipped rules
    proc = run_promtool(tmp_path, rules, "test", "rules", UNIT_TESTS.name, only_alert=broken)
    assert proc.returncode != 0, "the promtool tests should fail when an alert changes"
    assert f"alertname: {broken}" in proc.stdout + proc.stderr


def test_every_alert_has_a_firing_and_a_quiet_case():
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    fires, quiet = set(), set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(alerts(rendered_rules()))
    assert names - fires == set(), f"alerts without a test that fires: {sorted(names - fires)}"
    assert names - quiet == set(), f"alerts without a test where they stay quiet: {sorted(names - quiet)}"
    assert (fires | quiet) - names == set(), f"tests for alerts the chart does not ship: {sorted((fires | quiet) - names)}"


def test_required_alerts_are_shipped():
    names = set(alerts(rendered_rules()))
    required = {
        "ModelDeployRollbackHappened",  # rollback happened
        "ModelDeployRolloutStuck",  # rollout stuck past its deadline
        "ModelDeployAnalysisNoData",  # analysis without data
        "ModelDeployOperatorDown",  # operator down
        "ModelDeployCanaryLatencyBreach",  # canary latency breach
        "ModelDeployCanaryAUROCBreach",  # canary AUROC breach
        "ModelDeployPrometheusUnreachable",  # analysis without data because Prometheus is down
    }
    assert required <= names, sorted(required - names)
    for name, rule in alerts(rendered_rules()).items():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
        assert rule["annotations"]["runbook_url"].endswith("#" + name.lower()), name


def test_alerts_query_only_metrics_that_exist():
    allowed = allowed_metric_names()
    for name, rule in alerts(rendered_rules()).items():
        unknown = metric_names(rule["expr"]) - allowed
        assert not unknown, f"{name} queries metrics nobody exports: {sorted(unknown)}"


def test_metric_name_check_catches_a_typo():
    assert metric_names('sum(increase(modeldeploy_rolbacks_total{namespace="x"}[5m])) > 0') - allowed_metric_names() == {
        "modeldeploy_rolbacks_total"}


def test_operator_down_watches_the_job_the_servicemonitor_creates():
    objects = render(deep_merge(ENABLED, {"metrics": {"serviceMonitor": {"enabled": True}}}), tests=False)
    monitor = one(objects, "ServiceMonitor")
    assert "jobLabel" not in monitor["spec"], "job = the Service's name only without jobLabel"
    service = next(s for s in find(objects, "Service") if s["metadata"]["name"].endswith("-metrics"))
    expr = alerts(rules_file(objects))["ModelDeployOperatorDown"]["expr"]
    jobs = set(re.findall(r'job="([^"]+)"', expr))
    assert jobs == {service["metadata"]["name"]}
    assert set(re.findall(r'namespace="([^"]+)"', expr)) == {service["metadata"]["namespace"]}


def test_disabling_every_alert_is_refused():
    import helm_python

    from chartlib import chart

    every = list(alerts(rendered_rules()))
    with pytest.raises(helm_python.HelmRenderError, match="disables every alert"):
        chart().render(deep_merge(ENABLED, {"prometheusRule": {"disabledAlerts": every}}), name="md", namespace="ns")


def test_disabled_alerts_and_alert_labels():
    rules = rendered_rules({"prometheusRule": {"disabledAlerts": ["ModelDeployModelAUROCLow", "ModelDeployPredictionDrift"],
                                               "alertLabels": {"team": "ml-platform"}}})
    names = set(alerts(rules))
    assert "ModelDeployModelAUROCLow" not in names and "ModelDeployPredictionDrift" not in names
    assert "ModelDeployRollbackHappened" in names
    assert all(rule["labels"]["team"] == "ml-platform" for rule in alerts(rules).values())


def test_runbook_has_a_section_per_alert():
    text = RUNBOOK.read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    missing = [name for name in alerts(rendered_rules()) if name.lower() not in anchors]
    assert not missing, f"docs/operations.md lacks a '### <AlertName>' section for {missing}"
