"""The sandbox report's `operator` figures (mdsandbox.observe.operator_stats), read from the operator's /metrics
text: reconcile passes (count, mean, the smallest histogram bound holding them all), fail-fast checks and
notifications. The notification scenarios use them to show a hanging receiver never held up the loop."""

from __future__ import annotations

from mdsandbox.observe import operator_stats
from modeldeploy.metrics import OperatorMetrics


def test_figures_from_the_operators_real_metrics_text():
    from prometheus_client import generate_latest

    m = OperatorMetrics()
    for seconds in (0.003, 0.02, 0.04, 0.2):
        m.reconcile_seconds.observe(seconds)
    m.analyses.labels("radiology", "cxr", "failFast", "pass").inc(5)
    m.analyses.labels("radiology", "cxr", "failFast", "fail").inc()
    m.analyses.labels("radiology", "cxr", "interval", "pass").inc(2)
    m.notifications.labels("webhook", "RolledBack", "sent").inc(2)
    m.notifications.labels("slack", "RolledBack", "failed").inc()
    m.notifications_dropped.labels("queueFull").inc(3)
    stats = operator_stats(generate_latest(m.registry).decode())
    assert stats == {"reconcilePasses": 4, "reconcileMeanSeconds": 0.0658, "reconcileAllWithinSeconds": 0.25,
                     "failFastChecks": 6, "notifications": {"failed": 1, "sent": 2}, "notificationsDropped": 3}  # fmt: skip


def test_a_pass_beyond_the_largest_bucket_is_not_hidden():
    m = OperatorMetrics()
    m.reconcile_seconds.observe(30.0)
    from prometheus_client import generate_latest

    stats = operator_stats(generate_latest(m.registry).decode())
    assert stats["reconcilePasses"] == 1 and stats["reconcileAllWithinSeconds"] is None
