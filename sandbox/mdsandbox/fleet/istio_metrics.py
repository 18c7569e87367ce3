"""Istio's standard request metrics as both sidecars of a request report them.

`IstioTelemetry` keeps ``istio_requests_total`` and ``istio_request_duration_milliseconds`` with
Istio's full standard label set (`ISTIO_LABELS`) and default duration buckets, for the workloads
of ONE Service (namespace, name). A request is recorded once per reporting proxy:

* ``reporter="destination"``: the server sidecar of the pod that served it (mirrored copies are
  counted only here, with their own latency and errors, as Istio does);
* ``reporter="source"``: the client sidecar; for requests the client sidecar answers itself (404
  ``NR`` route miss, 503 ``NC`` undefined subset, 503 ``UH`` no healthy upstream) the destination
  workload and version are ``unknown`` (`local_reply`), so per-version destination queries see no
  data for a version that is not ready.

The source labels come from the client's workload name (``None``: ``unknown``), which the fleet
takes from its traffic generator or from the `SOURCE_HEADER` request header (a sandbox convention:
a mesh derives it from the calling pod's identity). A client without a sidecar (kube-proxy) sends no
peer metadata and no client certificate: only ``reporter="destination"`` counts it, with ``unknown``
source labels and ``connection_security_policy="none"``.

``destination_service_name`` is what Istio's stats filter reports: the client sidecar names the
Service of the cluster it routed to; the server sidecar names the FIRST Service (oldest
creationTimestamp) that selects its pod on that port (istio/proxy istio_stats.cc reads
``services[0]`` of the inbound cluster's metadata; istio/istio#33940). The fleet passes both
(`record(service=...)`); without them it is the Service this telemetry was made for.
"""

from __future__ import annotations

import numpy as np

from mdsandbox.fleet.exposition import CounterFamily, HistogramFamily

ISTIO_DURATION_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)  # fmt: skip
ISTIO_LABELS: tuple[str, ...] = (
    "reporter",
    "source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
    "source_canonical_service", "source_canonical_revision", "source_cluster",
    "destination_workload", "destination_workload_namespace", "destination_principal", "destination_app",
    "destination_version", "destination_service", "destination_service_name", "destination_service_namespace",
    "destination_canonical_service", "destination_canonical_revision", "destination_cluster",
    "request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy",
)  # fmt: skip
UNKNOWN = "unknown"
SOURCE_HEADER = "x-source-workload"
SIDECAR_HEADER = "x-sandbox-sidecar"  # "false": the caller has no sidecar (kube-proxy balances its requests)
LOCAL_REPLY_LATENCY_MS = 0.2  # what a client sidecar's own 404/503 answer costs


def service_host(namespace: str, service: str, cluster_domain: str = "cluster.local") -> str:
    """The Service's cluster-local FQDN (what the VirtualService's hosts resolve to)."""
    return f"{service}.{namespace}.svc.{cluster_domain}"


def workload_name(service: str, version: str) -> str:
    """The Deployment (workload) name of a version: ``<service>-v<version>``."""
    return f"{service}-v{version}"


class IstioTelemetry:
    """The two Istio request metric families for the workloads behind one Service."""

    def __init__(self, namespace: str, service: str, cluster_domain: str = "cluster.local") -> None:
        self.namespace = namespace
        self.service = service
        self.cluster_domain = cluster_domain
        self.service_host = service_host(namespace, service, cluster_domain)
        self.requests_total = CounterFamily(
            "istio_requests_total", "Total requests handled by an Istio proxy.", ISTIO_LABELS
        )
        self.request_duration = HistogramFamily(
            "istio_request_duration_milliseconds",
            "Duration of requests handled by an Istio proxy, in milliseconds.",
            ISTIO_LABELS,
            ISTIO_DURATION_BUCKETS_MS,
        )

    def _source_labels(self, source: str | None, source_namespace: str | None = None) -> list[str]:
        if source is None:
            return [UNKNOWN] * 8
        ns = source_namespace or self.namespace
        return [
            source,
            ns,
            f"spiffe://cluster.local/ns/{ns}/sa/{source}",
            source,
            UNKNOWN,
            source,
            "latest",
            "Kubernetes",
        ]

    def labels(self, reporter: str, source: str | None, version: str | None, code: int, flags: str,
               service: str | None = None, source_namespace: str | None = None,
               mtls: bool = True) -> tuple[str, ...]:  # fmt: skip
        """The full `ISTIO_LABELS` values of one request (version None: the client sidecar replied itself).

        `service`: destination_service_name (default: this telemetry's Service); `mtls` False: the
        client had no sidecar (plain text)."""
        ns, app = self.namespace, self.service
        svc = service or self.service
        host = service_host(ns, svc, self.cluster_domain)
        if version is None:
            dest = [UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, host, svc, ns, UNKNOWN, UNKNOWN, UNKNOWN]
        else:
            dest = [workload_name(app, version), ns, f"spiffe://cluster.local/ns/{ns}/sa/default", app,
                    f"v{version}", host, svc, ns, app, f"v{version}", "Kubernetes"]  # fmt: skip
        if reporter == "destination":
            security = "mutual_tls" if mtls else "none"
        else:
            security = UNKNOWN
        return (reporter, *self._source_labels(source, source_namespace), *dest, "http", str(code), "", flags, security)

    def record(self, reporter: str, source: str | None, version: str | None, code: int, flags: str,
               latencies_ms: np.ndarray, *, service: str | None = None, source_namespace: str | None = None,
               mtls: bool = True) -> None:  # fmt: skip
        """Count `len(latencies_ms)` requests with one label set and observe their durations."""
        labels = self.labels(reporter, source, version, code, flags, service, source_namespace, mtls)
        self.requests_total.inc(labels, len(latencies_ms))
        self.request_duration.observe_many(labels, latencies_ms)

    def local_reply(self, n: int, code: int, flags: str, source: str | None, *, service: str | None = None,
                    source_namespace: str | None = None) -> None:  # fmt: skip
        """`n` requests the client sidecar answered itself (no upstream: reporter="source" only)."""
        if n > 0:
            self.record("source", source, None, code, flags, np.full(n, LOCAL_REPLY_LATENCY_MS), service=service,
                        source_namespace=source_namespace)  # fmt: skip

    def render(self) -> str:
        out: list[str] = []
        self.requests_total.render(out)
        self.request_duration.render(out)
        return "\n".join(out) + "\n"


__all__ = [
    "ISTIO_DURATION_BUCKETS_MS",
    "ISTIO_LABELS",
    "IstioTelemetry",
    "SIDECAR_HEADER",
    "SOURCE_HEADER",
    "UNKNOWN",
    "service_host",
    "workload_name",
]
