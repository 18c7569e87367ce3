"""Runs one analysis: every configured metric queried from Prometheus, judged, data sufficiency applied.

- Traffic metrics (latency, errorRate, custom queries) need at least `minRequests` requests to the
  new version in the window; fewer is NO DATA.
- Evaluator metrics (accuracy, accuracyDrift, predictionPSI, nonInferiority, worstSubgroup) need a
  golden-set evaluation of the new (and, for the paired ones, the stable) version within the window;
  otherwise NO DATA. nonInferiority reads the evaluator's per-finding paired figures and is judged by
  `analysis.noninferiority` (per-finding DeLong tests, power check); worstSubgroup reads the canary's
  per-subgroup mean AUROC and the golden set's subgroup counts, judged by `analysis.subgroups`.
- Prometheus unreachable or a bad query: NO DATA with the reason (never a pass).
- Fail-fast checks use only metrics with `failFast` bounds, a short window and a data floor scaled
  to that window (at least 10 requests), so one slow request cannot roll a version back.
"""

from __future__ import annotations

import asyncio
import datetime
import math
from typing import Literal, cast

from mdcommon.durations import format_duration
from modeldeploy.analysis import builtins
from modeldeploy.analysis.noninferiority import FindingFigures, PairedFigure, judge_non_inferiority
from modeldeploy.analysis.prometheus import PrometheusClient, QueryResult
from modeldeploy.analysis.subgroups import SubgroupFigure, judge_worst_subgroup
from modeldeploy.analysis.templates import TemplateProblem, render_query
from modeldeploy.analysis.verdict import AnalysisResult, MetricResult, judge, no_data
from modeldeploy.spec import EVALUATOR_BUILTINS, PAIRED_BUILTINS, MetricSpec, ModelDeploymentSpec

FAIL_FAST_MIN_REQUESTS = 10


def fail_fast_window_seconds(spec: ModelDeploymentSpec) -> float:
    a = spec.analysis
    return max(4 * a.scrape_interval_seconds, 2 * a.fail_fast_interval_seconds)


def fail_fast_min_requests(spec: ModelDeploymentSpec) -> int:
    a = spec.analysis
    scaled = a.min_requests * fail_fast_window_seconds(spec) / a.interval_seconds
    return max(FAIL_FAST_MIN_REQUESTS, math.ceil(scaled))


def evaluation_window_seconds(spec: ModelDeploymentSpec, window: float) -> float:
    interval = 60.0 if spec.evaluation is None else spec.evaluation_interval_seconds
    return max(window, 2.5 * interval)


async def analyse(
    spec: ModelDeploymentSpec,
    ctx: builtins.QueryContext,
    client: PrometheusClient | None,
    now: datetime.datetime,
    *,
    kind: Literal["interval", "failFast"] = "interval",
) -> AnalysisResult:
    """Query, judge and summarise the metrics of one analysis (`kind` interval or failFast)."""
    metrics = spec.analysis.metrics if kind == "interval" else spec.analysis.fail_fast_metrics
    if client is None:
        unmeasured = tuple(
            no_data(m.name, "no Prometheus configured for the operator", min=m.min, max=m.max) for m in metrics
        )
        return AnalysisResult(at=now, metrics=unmeasured, kind=kind)

    if kind == "interval":
        windows = {m.name: spec.analysis.window_seconds(m) for m in metrics}
        min_requests = spec.analysis.min_requests
    else:
        w = fail_fast_window_seconds(spec)
        windows = {m.name: w for m in metrics}
        min_requests = fail_fast_min_requests(spec)

    traffic = [m for m in metrics if m.builtin not in EVALUATOR_BUILTINS]
    evaluator = [m for m in metrics if m.builtin in EVALUATOR_BUILTINS]

    # Data sufficiency first: one request-count query per distinct window.
    request_windows = sorted({windows[m.name] for m in traffic})
    eval_window = evaluation_window_seconds(spec, max(windows.values(), default=0.0))
    needs_stable_eval = any(m.builtin in PAIRED_BUILTINS for m in evaluator)
    count_queries = [client.query(builtins.requests_query(ctx, format_duration(w))) for w in request_windows]
    if evaluator:
        count_queries.append(client.query(builtins.evaluation_samples_query(ctx, format_duration(eval_window))))
        if needs_stable_eval:
            count_queries.append(
                client.query(builtins.evaluation_samples_query(ctx, format_duration(eval_window), ctx.stable_version))
            )
    metric_queries = [metric_query(m, spec, ctx, windows[m.name]) for m in metrics]
    answers = await asyncio.gather(*count_queries, *[_ask(client, ctx, q) for q in metric_queries])
    # the request/sample counts are plain queries (QueryResult); only the metric answers may be paired figures
    counts = cast(list[QueryResult], answers[: len(count_queries)])
    values = answers[len(count_queries) :]

    requests_by_window = dict(zip(request_windows, counts[: len(request_windows)]))
    canary_samples = counts[len(request_windows)] if evaluator else None
    stable_samples = counts[len(request_windows) + 1] if evaluator and needs_stable_eval else None

    results: list[MetricResult] = []
    for metric, answer in zip(metrics, values):
        if kind == "interval" or metric.fail_fast is None:
            lo, hi = metric.min, metric.max
        else:  # fail_fast_metrics: the metrics with a failFast bound
            lo, hi = metric.fail_fast.min, metric.fail_fast.max
        if metric.builtin == "nonInferiority":
            lo = -metric.non_inferiority.margin if metric.non_inferiority is not None else None
        if answer.error:
            results.append(no_data(metric.name, answer.error, min=lo, max=hi))
            continue
        shortfall = None
        if metric.builtin in EVALUATOR_BUILTINS:
            shortfall = _evaluation_shortfall(metric, canary_samples, stable_samples, ctx, eval_window)
        else:
            shortfall = _request_shortfall(requests_by_window[windows[metric.name]], min_requests, windows[metric.name])
        if isinstance(answer, (_PairedFigures, _SubgroupFigures)):  # judged on their figures, not one value
            if shortfall:
                results.append(no_data(metric.name, shortfall, min=lo, max=hi))
            elif isinstance(answer, _PairedFigures):
                results.append(judge_non_inferiority(metric, answer.figures))
            else:
                results.append(judge_worst_subgroup(metric, answer.figures))
            continue
        results.append(judge(metric.name, answer.value, min=lo, max=hi, data_shortfall=shortfall))

    canary_requests = None
    if request_windows:
        first = requests_by_window[request_windows[-1]]
        canary_requests = first.value if first.ok else 0.0
    evaluation = {}
    if evaluator and kind == "interval":
        evaluation = await _evaluation_figures(client, ctx)
    return AnalysisResult(at=now, metrics=tuple(results), requests=canary_requests, kind=kind, evaluation=evaluation)


NON_INFERIORITY = object()  # metric_query's marker: read the paired per-finding figures
WORST_SUBGROUP = object()  # metric_query's marker: read the canary's per-subgroup figures


async def _ask(
    client: PrometheusClient, ctx: builtins.QueryContext, query: object
) -> QueryResult | _PairedFigures | _SubgroupFigures:
    if isinstance(query, str):
        return await client.query(query)
    if query is NON_INFERIORITY:
        return await _paired_figures(client, ctx)
    if query is WORST_SUBGROUP:
        return await _subgroup_figures(client, ctx)
    assert isinstance(query, QueryResult)
    return query  # a problem found before asking (template error)


def metric_query(
    metric: MetricSpec, spec: ModelDeploymentSpec, ctx: builtins.QueryContext, window: float
) -> str | QueryResult | object:
    """The PromQL of one metric over `window` seconds (builtin or the user's template), the template's
    problem (a QueryResult), NON_INFERIORITY (per-finding paired figures, no single query) or
    WORST_SUBGROUP (per-subgroup figures).

    Public: the dashboard draws the same queries over time (Prometheus range queries)."""
    w = format_duration(window)
    if metric.builtin == "nonInferiority":
        return NON_INFERIORITY
    if metric.builtin == "worstSubgroup":
        return WORST_SUBGROUP
    if metric.builtin:
        return builtins.builtin_query(metric.builtin, ctx, w, metric.effective_quantile)
    try:
        return render_query(
            metric.query or "",
            {
                "namespace": ctx.namespace,
                "name": ctx.name,
                "modelName": ctx.model_name,
                "stableVersion": str(ctx.stable_version),
                "canaryVersion": str(ctx.canary_version),
                "interval": w,
                "service": ctx.service,
            },
        )
    except TemplateProblem as exc:
        return QueryResult(error=f"query template: {exc}")


def _request_shortfall(count: QueryResult, min_requests: int, window: float) -> str | None:
    if count.error:
        return count.error
    served = count.value if count.ok and count.value is not None else 0.0
    if min_requests > 0 and served < min_requests:
        return f"{served:.0f} requests in {format_duration(window)} < minRequests {min_requests}"
    return None


def _evaluation_shortfall(
    metric: MetricSpec,
    canary: QueryResult | None,
    stable: QueryResult | None,
    ctx: builtins.QueryContext,
    window: float,
) -> str | None:
    for version, count in ((ctx.canary_version, canary), (ctx.stable_version, stable)):
        if count is None:
            continue
        if count.error:
            return count.error
        if not count.ok or count.value is None or count.value <= 0:
            return f"no golden-set evaluation of version {version} in the last {format_duration(window)}"
        if metric.builtin in ("accuracy", "worstSubgroup"):
            break  # they need only the canary's evaluation
    return None


async def _evaluation_figures(client: PrometheusClient, ctx: builtins.QueryContext) -> dict:
    """AUROC per finding of both versions and the drift figures, for the audit trail."""
    figures: dict = {}
    for role, version in (("canary", ctx.canary_version), ("stable", ctx.stable_version)):
        sel = builtins.evaluator_selector(ctx, version)
        per_finding = await client.query_vector(f"{builtins.EVALUATOR_METRIC_PREFIX}auroc{sel}")
        mean = await client.query_vector(f"{builtins.EVALUATOR_METRIC_PREFIX}auroc_mean{sel}")
        entry: dict = {"version": version}
        if mean:
            entry["aurocMean"] = round(mean[0][1], 4)
        if per_finding:
            entry["aurocPerFinding"] = {
                labels.get("finding", "?"): round(v, 4)
                for labels, v in sorted(per_finding, key=lambda x: x[0].get("finding", ""))
            }
        figures[role] = entry
    psi = await client.query_vector(
        f"{builtins.EVALUATOR_METRIC_PREFIX}psi"
        + builtins.evaluator_selector(ctx, ctx.canary_version, f'baseline_version="v{ctx.stable_version}"')
    )
    if psi:
        figures["psiPerFinding"] = {labels.get("finding", "?"): round(v, 4) for labels, v in psi}
    golden = "{" + f'namespace="{ctx.namespace}",modeldeployment="{ctx.name}"' + "}"
    info = await client.query_vector(f"{builtins.EVALUATOR_METRIC_PREFIX}golden_set_info{golden}")
    if info:
        labels = info[0][0]
        figures["goldenSet"] = {"fingerprint": labels.get("fingerprint", ""), "source": labels.get("source", "")}
    return figures


class _PairedFigures:
    """The evaluator's per-finding paired figures of canary vs stable (or why they could not be read)."""

    def __init__(self, figures: dict[str, FindingFigures] | None = None, error: str | None = None) -> None:
        self.figures = figures or {}
        self.error = error


async def _paired_figures(client: PrometheusClient, ctx: builtins.QueryContext) -> _PairedFigures:
    pair = f'baseline_version="v{ctx.stable_version}"'
    canary = builtins.evaluator_selector(ctx, ctx.canary_version, pair)
    golden = "{" + f'namespace="{ctx.namespace}",modeldeployment="{ctx.name}"' + "}"
    prefix = builtins.EVALUATOR_METRIC_PREFIX
    names = ("auroc_delta", "auroc_delta_se", "sensitivity_delta", "sensitivity_delta_se")
    answers = await asyncio.gather(
        *(client.query_series(f"{prefix}{n}{canary}") for n in names),
        client.query_series(f"{prefix}golden_set_positives{golden}"),
        client.query_series(f"max({prefix}golden_set_images{golden})"),
    )
    for answer in answers:
        if answer.error:
            return _PairedFigures(error=answer.error)
    by_finding = [{labels.get("finding", ""): value for labels, value in a.series} for a in answers[:5]]
    auroc, auroc_se, sens, sens_se, positives = by_finding
    images = answers[5].series[0][1] if answers[5].series else None
    figures = {}
    for finding in sorted(set(auroc) & set(auroc_se)):
        pos = positives.get(finding)
        figures[finding] = FindingFigures(
            positives=None if pos is None else int(pos),
            negatives=None if pos is None or images is None else int(images - pos),
            auroc=PairedFigure(auroc[finding], auroc_se[finding]),
            sensitivity=PairedFigure(sens[finding], sens_se[finding])
            if finding in sens and finding in sens_se
            else None,
        )
    return _PairedFigures(figures)


class _SubgroupFigures:
    """The canary's per-subgroup mean AUROC with the golden set's subgroup counts (or why not read)."""

    def __init__(self, figures: list[SubgroupFigure] | None = None, error: str | None = None) -> None:
        self.figures = figures or []
        self.error = error


async def _subgroup_figures(client: PrometheusClient, ctx: builtins.QueryContext) -> _SubgroupFigures:
    canary = builtins.evaluator_selector(ctx, ctx.canary_version)
    golden = "{" + f'namespace="{ctx.namespace}",modeldeployment="{ctx.name}"' + "}"
    prefix = builtins.EVALUATOR_METRIC_PREFIX
    answers = await asyncio.gather(
        client.query_series(f"{prefix}subgroup_auroc_mean{canary}"),
        client.query_series(f"{prefix}golden_set_subgroup_images{golden}"),
        client.query_series(f"{prefix}golden_set_subgroup_positives{golden}"),
    )
    for answer in answers:
        if answer.error:
            return _SubgroupFigures(error=answer.error)
    auroc, images, positives = (
        {(labels.get("attribute", ""), labels.get("subgroup", "")): value for labels, value in a.series}
        for a in answers
    )
    figures = [
        SubgroupFigure(
            attribute=attribute,
            subgroup=subgroup,
            auroc_mean=auroc.get((attribute, subgroup)),
            images=None if (attribute, subgroup) not in images else int(images[attribute, subgroup]),
            positives=None if (attribute, subgroup) not in positives else int(positives[attribute, subgroup]),
        )  # fmt: skip
        for attribute, subgroup in sorted(set(auroc) | set(images))
    ]
    return _SubgroupFigures(figures)
