"""The Grafana dashboard (charts/modeldeploy/dashboards/modeldeploy.json): structure and queries.

Grafana is not packaged for this platform, so the JSON is checked structurally: panels laid out on
the 24-column grid without overlaps, every panel bound to the ${datasource} variable, every variable
defined, every query valid PromQL (promtool parses it), and every metric a query selects exported by
us (operator, evaluator) or by the documented third parties (Istio, TF Serving, DCGM) -- with label
names those metrics really have.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from chartlib import CHART, THIRD_PARTY_METRICS, allowed_metric_names, evaluator_metric_names, metric_names

DASHBOARD = CHART / "dashboards" / "modeldeploy.json"
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__range_s", "__interval_ms"}
TARGET_LABELS = {"job", "instance", "pod", "namespace", "container", "service", "endpoint"}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels") or [])
    return out


def queries(dash: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels(dash) if p["type"] != "row" for t in p["targets"]]


def grid_overlaps(items: list[dict]) -> list[tuple[str, str]]:
    boxes = [(p["title"], p["gridPos"]) for p in items]
    found = []
    for i, (a, ga) in enumerate(boxes):
        for b, gb in boxes[i + 1:]:
            if ga["x"] < gb["x"] + gb["w"] and gb["x"] < ga["x"] + ga["w"] and ga["y"] < gb["y"] + gb["h"] and gb["y"] < ga["y"] + ga["h"]:
                found.append((a, b))
    return found


def test_dashboard_identity(dashboard):
    assert dashboard["uid"] == "modeldeploy-rollouts" and len(dashboard["uid"]) <= 40
    assert dashboard["title"] and dashboard["schemaVersion"] >= 36
    assert "id" not in dashboard or dashboard["id"] is None, "a provisioned dashboard must not carry a database id"


def test_panels_are_laid_out_on_the_grid(dashboard):
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels(dashboard):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
    assert not grid_overlaps(panels(dashboard))


def test_overlap_check_works():
    a = {"title": "a", "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8}}
    b = {"title": "b", "gridPos": {"x": 6, "y": 4, "w": 12, "h": 8}}
    c = {"title": "c", "gridPos": {"x": 12, "y": 0, "w": 12, "h": 6}}
    d = {"title": "d", "gridPos": {"x": 0, "y": 12, "w": 24, "h": 1}}
    assert grid_overlaps([a, b, c, d]) == [("a", "b"), ("b", "c")]


def test_every_panel_queries_the_datasource_variable(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for p in panels(dashboard):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        assert p.get("description"), f"{p['title']}: say what the panel shows"
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] == "${datasource}", p["title"]


def test_every_variable_used_is_defined(dashboard):
    defined = {v["name"] for v in dashboard["templating"]["list"]} | GRAFANA_BUILTINS
    texts = [e for _, e in queries(dashboard)] + [json.dumps(v.get("query")) for v in dashboard["templating"]["list"]]
    used = {m for text in texts for m in re.findall(r"\$\{?(\w+)", text)}
    assert used - defined == set(), sorted(used - defined)


def test_every_query_uses_metrics_we_export(dashboard):
    allowed = allowed_metric_names()
    var_queries = [(v["name"], v["query"]["query"]) for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]
    for title, expr in queries(dashboard) + var_queries:
        expr = re.sub(r"label_values\(([^,]*),\s*\w+\)", r"\1", expr)
        names = metric_names(expr)
        assert names, f"{title}: no metric found in {expr}"
        assert names <= allowed, f"{title}: {sorted(names - allowed)} is exported by nobody"


def _label_names() -> dict[str, set[str]]:
    """Sample name -> label names, for the operator's registry."""
    from prometheus_client import metrics as pm

    from modeldeploy.metrics import OperatorMetrics

    out: dict[str, set[str]] = {}
    for metric in vars(OperatorMetrics()).values():
        if not isinstance(metric, pm.MetricWrapperBase):
            continue
        labels = set(metric._labelnames)
        if isinstance(metric, pm.Counter):
            out[metric._name + "_total"] = labels
        elif isinstance(metric, pm.Histogram):
            for suffix in ("_bucket", "_count", "_sum"):
                out[metric._name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
        else:
            out[metric._name] = labels
    return out


def test_operator_queries_use_labels_the_metrics_have(dashboard):
    have = _label_names()
    for title, expr in queries(dashboard):
        for name, selector in re.findall(r"\b(modeldeploy_(?!evaluator_)\w+)\{([^}]*)\}", expr):
            labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
            assert labels <= have[name] | TARGET_LABELS, f"{title}: {name} has no label(s) {sorted(labels - have[name])}"
        for labels in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            for label in (x.strip() for x in labels.split(",")):
                assert re.fullmatch(r"[a-zA-Z_]\w*", label), (title, label)


def test_istio_and_evaluator_selectors_match_the_analysis_queries(dashboard):
    """The dashboard slices per version exactly like the operator's analysis (analysis/builtins.py)."""
    from modeldeploy.analysis import builtins

    ctx = builtins.QueryContext(namespace="NS", name="MD", model_name="m", stable_version=1, canary_version=2)
    istio_labels = set(re.findall(r"(\w+)=", builtins.latency_query(ctx, "1m", 0.95))) - {"destination_version"}
    evaluator_labels = set(re.findall(r"(\w+)=", builtins.accuracy_query(ctx))) - {"version"}
    exprs = [e for _, e in queries(dashboard)]
    istio = [e for e in exprs if "istio_" in e]
    evaluator = [e for e in exprs if "modeldeploy_evaluator_" in e]
    assert istio and evaluator
    for expr in istio:
        for selector in re.findall(r"istio_\w+\{([^}]*)\}", expr):
            assert istio_labels <= set(re.findall(r"(\w+)\s*=", selector)), expr
    for expr in evaluator:
        for selector in re.findall(r"modeldeploy_evaluator_\w+\{([^}]*)\}", expr):
            assert evaluator_labels <= set(re.findall(r"(\w+)\s*=", selector)), expr
    assert {"modeldeploy_evaluator_auroc_mean", "modeldeploy_evaluator_psi"} <= evaluator_metric_names()


def test_required_views_are_there(dashboard):
    exprs = [e for _, e in queries(dashboard)]
    joined = "\n".join(exprs)
    for q in ("0.5", "0.95", "0.99"):
        assert any(f"histogram_quantile({q}," in e and "istio_request_duration_milliseconds_bucket" in e
                   and "destination_version" in e for e in exprs), f"latency p{q} per version"
    assert any("rate(istio_requests_total" in e and "by (destination_version)" in e and "response_code" not in e for e in exprs), "throughput"
    assert any('response_code=~"5.."' in e and "by (destination_version)" in e for e in exprs), "error rate per version"
    for metric in ("modeldeploy_canary_weight", "modeldeploy_phase", "modeldeploy_evaluator_auroc_mean",
                   "modeldeploy_evaluator_psi", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"):
        assert metric in joined, metric
    assert set(THIRD_PARTY_METRICS) - {"up"} <= {n for e in exprs for n in metric_names(e)}, "every documented source is shown"


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed (make setup)")
def test_every_query_is_valid_promql(dashboard, tmp_path):
    substitutions = {"$__rate_interval": "2m", "$__interval": "1m", "$__range": "6h", "$namespace": "radiology",
                     "$modeldeployment": "resnet50-cxr"}
    rules = []
    for i, (title, expr) in enumerate(queries(dashboard)):
        for var, value in substitutions.items():
            expr = expr.replace(var, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr, "labels": {"panel": title[:60]}})
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run(["promtool", "check", "rules", "queries.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout
