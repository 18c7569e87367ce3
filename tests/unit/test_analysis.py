"""Pure analysis pieces: verdict table, built-in PromQL, the jinja2 sandbox for user templates."""

from __future__ import annotations

import json
import math

import pytest

from modeldeploy.analysis import builtins
from modeldeploy.analysis.templates import TemplateProblem, check_query_template, render_query
from modeldeploy.analysis.verdict import AnalysisResult, judge, no_data
from modeldeploy.status import finite, now_utc


@pytest.mark.parametrize(
    "value, lo, hi, shortfall, outcome, reason_part",
    [
        (50.0, None, 100.0, None, "pass", "<= 100"),
        (100.0, None, 100.0, None, "pass", "<= 100"),
        (100.1, None, 100.0, None, "fail", "> max 100"),
        (0.79, 0.8, None, None, "fail", "< min 0.8"),
        (0.85, 0.8, 0.9, None, "pass", ">= 0.8 and <= 0.9"),
        (None, None, 1.0, None, "noData", "query returned no data"),
        (math.nan, None, 1.0, None, "noData", "NaN"),
        (math.inf, None, 1.0, None, "fail", "+Inf"),  # x/0, histogram_quantile in the +Inf bucket
        (math.inf, 0.5, None, None, "fail", "+Inf"),  # a min-only metric would have passed with +Inf
        (-math.inf, None, 1.0, None, "fail", "-Inf"),  # a max-only metric would have passed with -Inf
        (math.inf, None, 1.0, "3 requests in 60s < minRequests 100", "noData", "minRequests"),
        (0.0, None, 1.0, "3 requests in 60s < minRequests 100", "noData", "minRequests"),
        (999.0, None, 1.0, "3 requests in 60s < minRequests 100", "noData", "minRequests"),  # too little data: never a fail
    ],
)
def test_judge(value, lo, hi, shortfall, outcome, reason_part):
    result = judge("m", value, min=lo, max=hi, data_shortfall=shortfall)
    assert result.outcome == outcome
    assert reason_part in result.reason
    assert result.to_status()["passed"] is (outcome == "pass")
    # never a non-finite number in what is written to the API (a real server answers 400 to Infinity)
    json.dumps(result.to_status(), allow_nan=False)


def test_finite_scrubs_every_non_finite_number_before_the_api():
    status = {"lastAnalysis": {"requests": math.inf, "metrics": [{"value": -math.inf}, {"value": 0.5}],
                               "evaluation": {"auroc": math.nan}}, "phase": "Progressing", "step": 1}
    assert finite(status) == {"lastAnalysis": {"requests": None, "metrics": [{"value": None}, {"value": 0.5}],
                                               "evaluation": {"auroc": None}}, "phase": "Progressing", "step": 1}


@pytest.mark.parametrize(
    "outcomes, verdict",
    [(("pass", "pass"), "pass"), (("pass", "noData"), "noData"), (("fail", "noData"), "fail"), ((), "noData")],
)
def test_verdict_combines_metrics(outcomes, verdict):
    metrics = []
    for i, o in enumerate(outcomes):
        if o == "pass":
            metrics.append(judge(f"m{i}", 1.0, min=None, max=2.0))
        elif o == "fail":
            metrics.append(judge(f"m{i}", 3.0, min=None, max=2.0))
        else:
            metrics.append(no_data(f"m{i}", "empty"))
    assert AnalysisResult(at=now_utc(), metrics=tuple(metrics)).verdict == verdict


CTX = builtins.QueryContext(namespace="radiology", name="resnet50", model_name="resnet50_chest_xray", stable_version=2, canary_version=3)


def test_builtin_queries_select_the_canary_pods_only():
    q = builtins.latency_query(CTX, "1m", 0.95)
    assert q.startswith("histogram_quantile(0.95, sum by (le) (rate(istio_request_duration_milliseconds_bucket{")
    for label in ('reporter="destination"', 'destination_workload_namespace="radiology"',
                  'destination_app="resnet50"', 'destination_version="v3"'):
        assert label in q
    e = builtins.error_rate_query(CTX, "1m")
    assert 'response_code=~"5.."' in e and "or vector(0)" in e  # no 5xx series is 0%, no traffic is no data
    assert 'destination_version="v2"' not in e


def test_evaluator_queries():
    assert builtins.accuracy_query(CTX) == 'max(modeldeploy_evaluator_auroc_mean{namespace="radiology",modeldeployment="resnet50",version="v3"})'
    drift = builtins.accuracy_drift_query(CTX)
    assert drift.index('version="v2"') < drift.index('version="v3"')  # stable minus canary
    assert 'baseline_version="v2"' in builtins.prediction_psi_query(CTX)


def test_template_renders_documented_variables():
    q = render_query('sum(rate(x{namespace="{{ namespace }}",v="{{ canaryVersion }}"}[{{ interval }}]))',
                     {"namespace": "ns", "canaryVersion": "3", "interval": "1m"})
    assert q == 'sum(rate(x{namespace="ns",v="3"}[1m]))'


@pytest.mark.parametrize(
    "template, message",
    [
        ("{{ nope }}", "undefined variable"),
        ("{{ namespace.__class__ }}", "not allowed by the sandbox"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "not allowed by the sandbox"),
        ("{{ namespace.__init__.__globals__ }}", "not allowed by the sandbox"),
        ("{{ lipsum.__globals__['os'].popen('id').read() }}", "undefined variable"),
        ("{{ range(10**9)|list }}", "undefined variable"),
        ("{% for x in namespace %}", "syntax error"),
        ("   ", "empty query"),
    ],
)
def test_template_sandbox_blocks_escapes(template, message):
    with pytest.raises(TemplateProblem, match=message):
        check_query_template(template)
