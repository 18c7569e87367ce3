"""PromQL of the built-in metrics, per model version (pure).

Traffic metrics come from Istio's standard metrics as reported by the destination sidecar
(reporter="destination"), selected by the pods' `app` and `version` labels (Istio's destination_app
and destination_version) and namespace — so they measure exactly the canary's pods (Argo #1700:
analysis measuring the wrong pods). Mirrored (shadow) requests are reported there too. Not by
destination_service_name: a server sidecar reports the OLDEST Service selecting its pod there
(istio/istio#33940), which for a version is `<name>-v<N>` or `<name>`, depending on its history.

Accuracy metrics come from the online golden-set evaluator (`modeldeploy evaluator run`):
  modeldeploy_evaluator_auroc_mean{namespace, modeldeployment, version}         mean AUROC over findings
  modeldeploy_evaluator_auroc{namespace, modeldeployment, version, finding}     AUROC per finding
  modeldeploy_evaluator_psi{namespace, modeldeployment, version, baseline_version, finding}
  modeldeploy_evaluator_ks{namespace, modeldeployment, version, baseline_version, finding}
  modeldeploy_evaluator_samples_total{namespace, modeldeployment, version}     evaluated images (counter)
`version` values are "v<N>", like Istio's destination_version.

Alternative latency source (documented, for meshes without Istio telemetry): TF Serving's own
histogram, which has no version label, selected by pod name instead:
  histogram_quantile(0.99, sum by (le) (rate(:tensorflow:serving:request_latency_bucket{namespace="NS",pod=~"NAME-vN-.*"}[1m]))) / 1000
(microseconds -> ms) as a custom `query`.
"""

from __future__ import annotations

from dataclasses import dataclass

from modeldeploy import names

EVALUATOR_METRIC_PREFIX = "modeldeploy_evaluator_"


@dataclass(frozen=True)
class QueryContext:
    """Where a version's metrics live."""

    namespace: str
    name: str  # ModelDeployment name (= Service name)
    model_name: str
    stable_version: int
    canary_version: int

    @property
    def service(self) -> str:
        return names.service_name(self.name)


def _istio_selector(ctx: QueryContext, version: int, extra: str = "") -> str:
    # The online evaluator's golden-set probes are not user traffic: they must neither count toward
    # minRequests nor weigh on latency and error rate.
    labels = (
        f'reporter="destination",destination_workload_namespace="{ctx.namespace}",'
        f'destination_app="{ctx.name}",destination_version="{names.version_label(version)}",'
        f'source_workload!="{names.evaluator_name(ctx.name)}"'
    )
    return "{" + labels + (("," + extra) if extra else "") + "}"


def requests_query(ctx: QueryContext, window: str, version: int | None = None) -> str:
    """Requests the version served in the window (for minRequests)."""
    v = ctx.canary_version if version is None else version
    return f"sum(increase(istio_requests_total{_istio_selector(ctx, v)}[{window}]))"


def error_rate_query(ctx: QueryContext, window: str) -> str:
    """Percent of 5xx answers; empty (no data) when the version served nothing."""
    sel = _istio_selector(ctx, ctx.canary_version)
    sel_5xx = _istio_selector(ctx, ctx.canary_version, 'response_code=~"5.."')
    return (
        f"100 * (sum(rate(istio_requests_total{sel_5xx}[{window}])) or vector(0))"
        f" / sum(rate(istio_requests_total{sel}[{window}]))"
    )


def latency_query(ctx: QueryContext, window: str, quantile: float) -> str:
    """Request latency quantile in milliseconds."""
    sel = _istio_selector(ctx, ctx.canary_version)
    return f"histogram_quantile({quantile:g}, sum by (le) (rate(istio_request_duration_milliseconds_bucket{sel}[{window}])))"


def evaluator_selector(ctx: QueryContext, version: int, extra: str = "") -> str:
    labels = f'namespace="{ctx.namespace}",modeldeployment="{ctx.name}",version="{names.version_label(version)}"'
    return "{" + labels + (("," + extra) if extra else "") + "}"


def accuracy_query(ctx: QueryContext) -> str:
    """Mean AUROC of the canary on the golden set."""
    return f"max({EVALUATOR_METRIC_PREFIX}auroc_mean{evaluator_selector(ctx, ctx.canary_version)})"


def accuracy_drift_query(ctx: QueryContext) -> str:
    """Stable minus canary mean AUROC (positive = the canary reads X-rays worse)."""
    return (
        f"max({EVALUATOR_METRIC_PREFIX}auroc_mean{evaluator_selector(ctx, ctx.stable_version)})"
        f" - max({EVALUATOR_METRIC_PREFIX}auroc_mean{evaluator_selector(ctx, ctx.canary_version)})"
    )


def prediction_psi_query(ctx: QueryContext) -> str:
    """Largest PSI over findings between the canary's and the stable's predicted probabilities."""
    extra = f'baseline_version="{names.version_label(ctx.stable_version)}"'
    return f"max({EVALUATOR_METRIC_PREFIX}psi{evaluator_selector(ctx, ctx.canary_version, extra)})"


def evaluation_samples_query(ctx: QueryContext, window: str, version: int | None = None) -> str:
    """Golden-set images the evaluator scored for the version within the window (freshness)."""
    v = ctx.canary_version if version is None else version
    return f"sum(increase({EVALUATOR_METRIC_PREFIX}samples_total{evaluator_selector(ctx, v)}[{window}]))"


def builtin_query(builtin: str, ctx: QueryContext, window: str, quantile: float | None = None) -> str:
    if builtin == "latency":
        return latency_query(ctx, window, quantile if quantile is not None else 0.99)
    if builtin == "errorRate":
        return error_rate_query(ctx, window)
    if builtin == "accuracy":
        return accuracy_query(ctx)
    if builtin == "accuracyDrift":
        return accuracy_drift_query(ctx)
    if builtin == "predictionPSI":
        return prediction_psi_query(ctx)
    raise ValueError(f"unknown builtin {builtin!r}")
