"""The operator's own Prometheus metrics (prometheus-client), served on /metrics.

Names (all prefixed modeldeploy_): phase, canary weight, stable/canary version, per-metric analysis
value and verdict, promotions/rollbacks totals, reconcile and analysis durations, API calls, notifications
(sent/failed, dropped from the full queue, queue depth).
The Helm chart's alerts and Grafana dashboard use exactly these names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from modeldeploy.state import Phase

PHASES = tuple(p.value for p in Phase)  # one gauge series per phase, in the CRD's order
VERDICTS = ("pass", "fail", "noData")


class OperatorMetrics:
    """All operator metrics in one registry (a fresh registry per instance keeps tests independent)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        labels = ("namespace", "name")
        self.phase = Gauge(
            "modeldeploy_phase", "1 for the current phase of a ModelDeployment", labels + ("phase",), registry=r
        )
        self.canary_weight = Gauge(
            "modeldeploy_canary_weight", "Percent of live traffic routed to the canary", labels, registry=r
        )
        self.stable_version = Gauge(
            "modeldeploy_stable_version", "Model version serving live traffic", labels, registry=r
        )
        self.canary_version = Gauge(
            "modeldeploy_canary_version", "Model version being rolled out (0 = none)", labels, registry=r
        )
        self.failed_checks = Gauge(
            "modeldeploy_failed_checks", "Failed analysis checks of the current rollout", labels, registry=r
        )
        self.rollout_started = Gauge(
            "modeldeploy_rollout_start_timestamp_seconds",
            "When the current rollout started (0 = none)",
            labels,
            registry=r,
        )
        self.progress_deadline = Gauge(
            "modeldeploy_progress_deadline_seconds", "spec.analysis.progressDeadline", labels, registry=r
        )
        self.analysis_value = Gauge(
            "modeldeploy_analysis_value", "Last measured value of an analysis metric", labels + ("metric",), registry=r
        )
        self.analysis_verdict = Gauge(
            "modeldeploy_analysis_verdict",
            "1 for the last verdict of an analysis metric",
            labels + ("metric", "verdict"),
            registry=r,
        )
        self.analysis_threshold = Gauge(
            "modeldeploy_analysis_threshold", "Bound of an analysis metric", labels + ("metric", "bound"), registry=r
        )
        self.promotions = Counter("modeldeploy_promotions", "Versions promoted to stable", labels, registry=r)
        self.rollbacks = Counter(
            "modeldeploy_rollbacks", "Rollouts rolled back or aborted", labels + ("action",), registry=r
        )
        self.no_data = Counter("modeldeploy_analysis_no_data", "Analyses that lacked data", labels, registry=r)
        self.analyses = Counter("modeldeploy_analyses", "Analyses run", labels + ("kind", "verdict"), registry=r)
        self.reconcile_seconds = Histogram(
            "modeldeploy_reconcile_duration_seconds",
            "Duration of one reconcile pass",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.analysis_seconds = Histogram(
            "modeldeploy_analysis_duration_seconds",
            "Duration of one analysis (all Prometheus queries)",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.api_calls = Counter(
            "modeldeploy_kubernetes_api_calls", "Kubernetes API calls", ("verb", "kind"), registry=r
        )
        self.reconcile_errors = Counter(
            "modeldeploy_reconcile_errors", "Reconcile passes that failed", ("kind",), registry=r
        )
        self.prometheus_queries = Counter(
            "modeldeploy_prometheus_queries", "Queries sent to Prometheus", ("result",), registry=r
        )
        self.notifications = Counter(
            "modeldeploy_notifications",
            "Rollout notifications handled by the notifier (result sent or failed after its retries)",
            ("format", "event", "result"),
            registry=r,
        )
        self.notifications_dropped = Counter(
            "modeldeploy_notifications_dropped",
            "Rollout notifications dropped without a try (the notifier's bounded queue was full)",
            ("reason",),
            registry=r,
        )
        self.notifications_dropped.labels("queueFull")
        self.notification_queue = Gauge(
            "modeldeploy_notification_queue_depth", "Rollout notifications waiting for a notifier worker", registry=r
        )

    def serve(self, host: str, port: int) -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)

    def record_status(self, namespace: str, name: str, status: dict, spec=None) -> None:
        self.seen(namespace, name)
        for phase in PHASES:
            self.phase.labels(namespace, name, phase).set(1 if status.get("phase") == phase else 0)
        self.canary_weight.labels(namespace, name).set(status.get("canaryWeight") or 0)
        self.stable_version.labels(namespace, name).set(status.get("stableVersion") or 0)
        self.canary_version.labels(namespace, name).set(status.get("canaryVersion") or 0)
        self.failed_checks.labels(namespace, name).set(status.get("failedChecks") or 0)
        started = 0.0
        if status.get("canaryVersion") is not None:
            from modeldeploy.status import from_timestamp

            moment = from_timestamp((status.get("rollout") or {}).get("startedAt"))
            started = moment.timestamp() if moment else 0.0
        self.rollout_started.labels(namespace, name).set(started)
        if spec is not None:
            self.progress_deadline.labels(namespace, name).set(spec.analysis.progress_deadline_seconds)

    def record_analysis(self, namespace: str, name: str, result) -> None:
        self.analyses.labels(namespace, name, result.kind, result.verdict).inc()
        if result.verdict == "noData":
            self.no_data.labels(namespace, name).inc()
        for m in result.metrics:
            if m.value is not None:
                self.analysis_value.labels(namespace, name, m.name).set(m.value)
            for verdict in VERDICTS:
                self.analysis_verdict.labels(namespace, name, m.name, verdict).set(1 if m.outcome == verdict else 0)
            if m.min is not None:
                self.analysis_threshold.labels(namespace, name, m.name, "min").set(m.min)
            if m.max is not None:
                self.analysis_threshold.labels(namespace, name, m.name, "max").set(m.max)

    def forget(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted ModelDeployment (else its last phase would keep alerts firing)."""
        for family in (
            self.phase,
            self.canary_weight,
            self.stable_version,
            self.canary_version,
            self.failed_checks,
            self.rollout_started,
            self.progress_deadline,
            self.analysis_value,
            self.analysis_verdict,
            self.analysis_threshold,
            self.promotions,
            self.rollbacks,
            self.no_data,
            self.analyses,
        ):
            for sample_labels in list(family._metrics):  # prometheus-client keeps children by label tuple
                if sample_labels[:2] == (namespace, name):
                    family.remove(*sample_labels)

    def seen(self, namespace: str, name: str) -> None:
        """Create the counters of a ModelDeployment at 0, so increase() sees its first rollback."""
        self.promotions.labels(namespace, name)
        for action in ("RolledBack", "Aborted"):
            self.rollbacks.labels(namespace, name, action)
        self.no_data.labels(namespace, name)
