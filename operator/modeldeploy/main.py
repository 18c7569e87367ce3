"""kopf handlers — thin: wire clients into memo, hand each ModelDeployment to the Reconciler.

Run it with `modeldeploy operator` (or `kopf run -m modeldeploy.main`). Handlers:
- startup/cleanup: one Settings, one Kubernetes client, one Prometheus client, the metrics server, the
  notifier (its own worker tasks);
- an index of the TF Serving Deployments we own, so readiness is known without API reads;
- one async daemon per ModelDeployment running the reconcile loop (create, update and resume
  all land there: the daemon starts for new and pre-existing objects and is woken on changes);
- event handlers that wake that daemon when the ModelDeployment or one of its Deployments changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any, cast

import kopf

from modeldeploy import GROUP, PLURAL, VERSION, names
from modeldeploy.analysis.prometheus import PrometheusClient
from modeldeploy.kube import Kube
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.notifier import Notifier
from modeldeploy.reconciler import Reconciler, deployment_summary, pod_health, warm_up
from modeldeploy.settings import Settings, replica_priority

OWNED = {names.LABEL_MANAGED_BY: names.MANAGED_BY}
_WAKE_HANDLERS = ("'modeldeployment_changed'", "'deployment_changed'", "'serving_pod_changed'")


class _QuietWakeups(logging.Filter):
    """Drop kopf's per-event 'Handler ... succeeded' lines of the wake-up handlers (pure noise)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith("Handler ")
            and message.endswith(" succeeded.")
            and any(h in message for h in _WAKE_HANDLERS)
        )


class StatuslessDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff-base, built without deep-copying the status first.

    kopf builds an object's "essence" on every event it processes: a deepcopy of the whole body, from
    which it then drops the status. Our status (conditions, history, audit, analysis) is most of the
    body, and every status write comes back as an event. Leaving the status out before the copy gives
    the same essence (kopf removes it anyway unless a handler asks for status fields: then this falls
    back to kopf's own build)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        if not extra_fields and "status" in body:
            body = kopf.Body(cast(kopf.RawBody, {k: v for k, v in body.items() if k != "status"}))
        return super().build(body=body, extra_fields=extra_fields)


# Every handler below is `async def`: kopf runs a plain `def` handler in a thread pool, one hand-off per
# event (the wake-ups and the two indexes: ~7% of the operator's CPU in a burst, py-spy). They never block.


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    try:
        config = Settings.from_env()
    except ValueError as exc:  # a bad MODELDEPLOY_* value: stop at start (kopf retries anything else forever)
        raise kopf.PermanentError(f"operator settings: {exc}") from None
    for name in ("kopf.objects", "kopf.activities"):
        logging.getLogger(name).addFilter(_QuietWakeups())
    # We post our own Events with distinct reasons; kopf's per-handler log Events would be noise
    # (and writes on every pass).
    settings.posting.enabled = False
    settings.persistence.finalizer = "modeldeploy.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="modeldeploy.io")
    settings.persistence.diffbase_storage = StatuslessDiffBaseStorage(
        prefix="modeldeploy.io", key="last-handled-configuration"
    )
    # Events of one object arriving within this window are handled together; kopf's default 0.1 s
    # adds that much latency to every reaction (readiness, manual actions).
    settings.batching.batch_window = 0.02
    # Server-side filtering: kopf would otherwise LIST and WATCH every Pod and Deployment of the cluster
    # (the handlers' labels= filters are client-side) and run a worker per foreign object's event.
    owned = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
    settings.watching.label_selectors["apps", "deployments"] = owned
    settings.watching.label_selectors["v1", "pods"] = owned
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    if config.peering:
        # HA: replicas share a peering; the highest priority acts, the others wait. Priorities must
        # differ (kopf pauses everyone on a tie), so each replica derives its own from its pod name.
        identity = os.environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}"
        settings.peering.name = config.peering
        settings.peering.mandatory = True
        settings.peering.priority = config.peering_priority or replica_priority(identity)
        settings.peering.lifetime = config.peering_lifetime
        logger.info("peering %r as %s with priority %d", config.peering, identity, settings.peering.priority)
    else:
        settings.peering.standalone = True
    warm_up()
    kube = Kube(workers=config.kube_workers)
    prometheus = (
        PrometheusClient(config.prometheus_url, timeout=config.prometheus_timeout) if config.prometheus_url else None
    )
    metrics = OperatorMetrics()
    metrics.serve(config.metrics_host, config.metrics_port)
    api_call_counters: dict[tuple[str, str], Any] = {}  # labels() validates and locks on every call: keep the children

    def count_api_call(verb: str, kind: str) -> None:
        counter = api_call_counters.get((verb, kind))
        if counter is None:
            counter = api_call_counters[(verb, kind)] = metrics.api_calls.labels(verb, kind)
        counter.inc()

    kube.on_call = count_api_call
    if prometheus is not None:
        prometheus.on_query = lambda failed: metrics.prometheus_queries.labels("error" if failed else "ok").inc()
    try:
        istio = await kube.detect_istio()
    except kopf.TemporaryError as exc:  # the API is not reachable yet: the reconciler asks again
        kube.istio_api_version = None
        logger.warning("cannot detect the served networking.istio.io version yet: %s", exc)
    else:
        logger.info("routing objects use %s", istio or "nothing: networking.istio.io is not served")
    memo.settings = config
    memo.kube = kube
    memo.prometheus = prometheus
    memo.metrics = metrics
    # Notifications go through a bounded queue into workers of their own: a slow receiver never slows a rollout.
    notifier = Notifier(
        kube,
        metrics,
        queue_size=config.notification_queue,
        timeout=config.notification_timeout,
        attempts=config.notification_attempts,
    )
    notifier.start()
    memo.notifier = notifier
    memo.reconciler = Reconciler(kube, prometheus, config, metrics, notifier)
    logger.info(
        "modeldeploy operator started (prometheus=%s, metrics=%s:%s)",
        config.prometheus_url or "none",
        config.metrics_host,
        config.metrics_port,
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if getattr(memo, "notifier", None) is not None:
        await memo.notifier.aclose()
    if getattr(memo, "prometheus", None) is not None:
        await memo.prometheus.aclose()
    if getattr(memo, "kube", None) is not None:
        await memo.kube.aclose()


@kopf.on.probe(id="reconciler")
def reconciler_alive(memo: kopf.Memo, **_: Any) -> bool:
    """Liveness detail for the kopf health endpoint (--liveness)."""
    return getattr(memo, "reconciler", None) is not None


@kopf.index("apps", "v1", "deployments", labels=OWNED)
async def serving_deployments(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict:
    """(namespace, ModelDeployment name) -> [(version, Deployment summary)]."""
    owner = labels.get(names.LABEL_OWNER)
    version = labels.get(names.LABEL_MODEL_VERSION)
    if not owner or not version or not str(version).isdigit() or namespace is None:
        return {}
    return {(namespace, owner): (int(version), deployment_summary(body))}


@kopf.index("", "v1", "pods", labels={**OWNED, names.LABEL_COMPONENT: "tfserving"})
async def serving_pods(
    namespace: str | None, labels: kopf.Labels, status: kopf.Status, meta: kopf.Meta, **_: Any
) -> dict:
    """(namespace, ModelDeployment name) -> [PodHealth]: why each pod does not serve, if it does not."""
    owner = labels.get(names.LABEL_OWNER)
    version = labels.get(names.LABEL_MODEL_VERSION)
    if not owner or not version or not str(version).isdigit() or namespace is None:
        return {}
    health = pod_health(int(version), dict(labels), dict(status), meta.get("creationTimestamp"), meta.get("name") or "")
    return {(namespace, owner): health}


@kopf.on.event("", "v1", "pods", labels={**OWNED, names.LABEL_COMPONENT: "tfserving"})
async def serving_pod_changed(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    """A TF Serving pod changed (crashed, restarted, got stuck): decide now, not at the next interval."""
    owner = labels.get(names.LABEL_OWNER)
    if owner and namespace is not None and getattr(memo, "reconciler", None) is not None:
        memo.reconciler.wake(namespace, owner)


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
async def deployment_changed(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    owner = labels.get(names.LABEL_OWNER)
    if owner and namespace is not None and getattr(memo, "reconciler", None) is not None:
        memo.reconciler.wake(namespace, owner)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def modeldeployment_changed(namespace: str | None, name: str, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    if namespace is not None and getattr(memo, "reconciler", None) is not None:
        memo.reconciler.wake(namespace, name, meta.get("resourceVersion"))


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0, initial_delay=0)
async def rollout(
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """The ModelDeployment's reconcile loop (runs for as long as the object exists)."""
    indexes = (kwargs["serving_deployments"], kwargs["serving_pods"])  # kopf passes each index by its name
    await memo.reconciler.run(body, stopped, indexes, logger)
    await asyncio.sleep(0)
