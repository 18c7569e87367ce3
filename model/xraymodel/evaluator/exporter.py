"""Prometheus exposition of the evaluator (its own registry) and the /metrics + /healthz HTTP server.

Every series carries ``namespace``, ``modeldeployment`` and ``model`` (the TF Serving model name);
per-version series add ``version`` ("v<N>"). Names (docs/evaluator.md has the full table):

  gauges, present only while the version's LAST evaluation succeeded:
    modeldeploy_evaluator_auroc_mean{version}                  mean AUROC over findings (gate: accuracy, accuracyDrift)
    modeldeploy_evaluator_auroc_mean_ci{version, bound}        bootstrap 95 % CI of the mean (bound lower|upper)
    modeldeploy_evaluator_auroc{version, finding}
    modeldeploy_evaluator_sensitivity{version, finding}        at the operating threshold
    modeldeploy_evaluator_specificity{version, finding}
    modeldeploy_evaluator_threshold{version, finding}          the threshold used (model card, configured or Youden)
    modeldeploy_evaluator_threshold_source_info{version, source}  1; source "model card (served)" | "model card"
                                                               (evaluator.yaml) | "configured" | "youden"
    modeldeploy_evaluator_ece{version, finding}, modeldeploy_evaluator_ece_mean{version}
    modeldeploy_evaluator_prediction_mean{version, finding}
    modeldeploy_evaluator_prediction_quantile{version, finding, quantile}
    modeldeploy_evaluator_subgroup_auroc_mean{version, attribute, subgroup}  mean AUROC within one demographic
                                                               subgroup (attribute sex|age_band|view|site, subgroup
                                                               M, 60+, AP, ...) over the attribute's common findings;
                                                               only scored subgroups (gate: worstSubgroup)
  gauges, present only while BOTH versions' last evaluations succeeded (version = new, baseline = stable):
    modeldeploy_evaluator_psi{version, baseline_version, finding}        (gate: predictionPSI = max over findings)
    modeldeploy_evaluator_ks{version, baseline_version, finding}
    modeldeploy_evaluator_psi_max{version, baseline_version}
    modeldeploy_evaluator_auroc_delta{version, baseline_version, finding}      AUROC version - baseline, paired
    modeldeploy_evaluator_auroc_delta_se{version, baseline_version, finding}   its DeLong standard error
    modeldeploy_evaluator_sensitivity_delta{version, baseline_version, finding}     at the operating thresholds
    modeldeploy_evaluator_sensitivity_delta_se{version, baseline_version, finding}  paired standard error
      (gate: nonInferiority, with golden_set_positives and golden_set_images)
  counters and bookkeeping, per listed version:
    modeldeploy_evaluator_samples_total{version}               golden images scored in SUCCESSFUL evaluations
    modeldeploy_evaluator_evaluations_total{version, outcome}  outcome success|failure
    modeldeploy_evaluator_request_errors_total{version, reason} timeout|connect|http_4xx|http_5xx|garbage (per attempt)
    modeldeploy_evaluator_last_success_timestamp_seconds{version}
    modeldeploy_evaluator_last_evaluation_ok{version}          1 or 0
    modeldeploy_evaluator_evaluation_duration_seconds{version} of the last attempt
    modeldeploy_evaluator_model_card_info{version, status, sha256}  1; what the last round's model_card call
      gave: served | config (evaluator.yaml's thresholds win, not asked) | no_signature (older export) |
      no_thresholds | invalid | unavailable; sha256 = the served card's content_sha256 ("" without one)
  evaluator-wide:
    modeldeploy_evaluator_golden_set_images, modeldeploy_evaluator_golden_set_positives{finding},
    modeldeploy_evaluator_golden_set_info{source, fingerprint} (1), modeldeploy_evaluator_golden_set_errors_total,
    modeldeploy_evaluator_golden_set_subgroup_images{attribute, subgroup}     images in the subgroup
    modeldeploy_evaluator_golden_set_subgroup_positives{attribute, subgroup}  fewest positives of any finding in
                                                               its mean (0 = not scored: too few images)
    modeldeploy_evaluator_golden_set_subgroup_findings{attribute, subgroup}   findings its mean averages
    modeldeploy_evaluator_config_errors_total, modeldeploy_evaluator_versions (listed in the config)

Withdrawing a version (failed evaluation) deletes its quality gauges at once, so Prometheus marks
the series stale on the next scrape and the operator's queries return nothing (NO DATA). Counters
of a listed version exist from the moment it is listed (at 0), so the first successful evaluation is
an increase Prometheus can see; a version that leaves the config loses all its series.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from xraymodel.evaluator.client import REASONS
from xraymodel.evaluator.compute import QUANTILES, DriftResult, VersionEvaluation
from xraymodel.evaluator.golden import GoldenData

PREFIX = "modeldeploy_evaluator_"
BASE_LABELS = ("namespace", "modeldeployment", "model")
OUTCOMES = ("success", "failure")
log = logging.getLogger(__name__)


@dataclass
class _VersionSeries:
    listed_at: float  # time.monotonic() when the version was first listed
    evaluation: VersionEvaluation | None = None
    drift: dict[str, DriftResult] = field(default_factory=dict)  # baseline label -> drift of this version
    samples: float = 0.0
    outcomes: dict[str, float] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0.0))
    request_errors: dict[str, float] = field(default_factory=lambda: dict.fromkeys(REASONS, 0.0))
    last_success: float | None = None
    last_ok: bool | None = None
    last_duration: float | None = None
    card: tuple[str, str] | None = None  # (status, sha256) of the last model_card round


class EvaluatorMetrics:
    """Thread-safe state behind /metrics (the asyncio loop writes, the HTTP thread reads)."""

    def __init__(self, namespace: str = "", modeldeployment: str = "", model: str = "") -> None:
        self._lock = threading.Lock()
        self.identity = (namespace, modeldeployment, model)
        self._versions: dict[str, _VersionSeries] = {}
        self._golden: GoldenData | None = None
        self._golden_errors = 0.0
        self._config_errors = 0.0
        self.last_scrape: float | None = None  # time.monotonic() of the last /metrics answer
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # ------------------------------------------------------------------ writes
    def set_identity(self, namespace: str, modeldeployment: str, model: str) -> None:
        with self._lock:
            if (namespace, modeldeployment, model) != self.identity:
                self.identity = (namespace, modeldeployment, model)
                self._versions.clear()

    def track_versions(self, labels: list[str]) -> list[str]:
        """Make `labels` the listed versions: new ones get zeroed counters, others lose all series."""
        with self._lock:
            new = [label for label in labels if label not in self._versions]
            for label in list(self._versions):
                if label not in labels:
                    del self._versions[label]
            for series in self._versions.values():
                for baseline in [b for b in series.drift if b not in labels]:
                    del series.drift[baseline]
            now = time.monotonic()
            for label in new:
                self._versions[label] = _VersionSeries(listed_at=now)
            return new

    def listed_at(self, label: str) -> float | None:
        with self._lock:
            series = self._versions.get(label)
            return None if series is None else series.listed_at

    def publish(self, label: str, evaluation: VersionEvaluation, duration: float) -> None:
        with self._lock:
            series = self._versions.get(label)
            if series is None:  # left the config while it was being evaluated
                return
            series.evaluation = evaluation
            series.samples += evaluation.samples
            series.outcomes["success"] += 1
            series.last_success = time.time()
            series.last_ok = True
            series.last_duration = duration

    def withdraw(self, label: str, duration: float | None = None, *, failed: bool = True) -> None:
        """The version's figures disappear now (its last evaluation failed, or they no longer apply)."""
        with self._lock:
            series = self._versions.get(label)
            if series is None:
                return
            series.evaluation = None
            series.drift.clear()
            for other in self._versions.values():
                other.drift.pop(label, None)
            if failed:
                series.outcomes["failure"] += 1
                series.last_ok = False
                series.last_duration = duration

    def set_drift(self, label: str, baseline: str, result: DriftResult | None) -> None:
        with self._lock:
            series = self._versions.get(label)
            if series is None:
                return
            if result is None:
                series.drift.pop(baseline, None)
            else:
                series.drift[baseline] = result

    def clear_drift_except(self, label: str, keep: str | None) -> None:
        with self._lock:
            series = self._versions.get(label)
            if series is not None:
                for baseline in [b for b in series.drift if b != keep]:
                    del series.drift[baseline]

    def request_error(self, label: str, reason: str) -> None:
        with self._lock:
            series = self._versions.get(label)
            if series is not None:
                series.request_errors[reason] = series.request_errors.get(reason, 0.0) + 1

    def set_model_card(self, label: str, status: str, sha256: str | None) -> None:
        with self._lock:
            series = self._versions.get(label)
            if series is not None:
                series.card = (status, sha256 or "")

    def set_golden(self, golden: GoldenData | None) -> None:
        with self._lock:
            self._golden = golden

    def golden_error(self) -> None:
        with self._lock:
            self._golden_errors += 1

    def config_error(self) -> None:
        with self._lock:
            self._config_errors += 1

    def has_figures(self, label: str) -> bool:
        with self._lock:
            series = self._versions.get(label)
            return series is not None and series.evaluation is not None

    # ------------------------------------------------------------------ scrape-awareness
    async def wait_scraped_since(self, since: float, timeout: float) -> bool:
        """Until /metrics was served after `since` (monotonic), at most `timeout` seconds."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            scraped = self.last_scrape
            if scraped is not None and scraped > since:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ collection
    def collect(self):
        with self._lock:
            base = list(self.identity)
            versions = {k: v for k, v in self._versions.items()}
            golden, golden_errors, config_errors = self._golden, self._golden_errors, self._config_errors

            def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
                return GaugeMetricFamily(PREFIX + name, doc, labels=[*BASE_LABELS, *extra])

            def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> CounterMetricFamily:
                return CounterMetricFamily(PREFIX + name, doc, labels=[*BASE_LABELS, *extra])

            auroc_mean = gauge("auroc_mean", "Mean AUROC over findings on the golden set (last successful evaluation).", ("version",))
            auroc_ci = gauge("auroc_mean_ci", "Bootstrap 95% CI of the mean AUROC.", ("version", "bound"))
            auroc = gauge("auroc", "AUROC per finding on the golden set.", ("version", "finding"))
            sens = gauge("sensitivity", "Sensitivity per finding at the operating threshold.", ("version", "finding"))
            spec = gauge("specificity", "Specificity per finding at the operating threshold.", ("version", "finding"))
            thr = gauge("threshold", "Operating threshold per finding (configured, or the Youden point).", ("version", "finding"))
            ece = gauge("ece", "Expected calibration error per finding (10 equal-width bins).", ("version", "finding"))
            ece_mean = gauge("ece_mean", "Mean expected calibration error over findings.", ("version",))
            pmean = gauge("prediction_mean", "Mean predicted probability per finding.", ("version", "finding"))
            pq = gauge("prediction_quantile", "Quantiles of the predicted probability per finding.", ("version", "finding", "quantile"))
            psi = gauge("psi", "Population stability index of the version's predictions vs the baseline (stable) version.",
                        ("version", "baseline_version", "finding"))  # fmt: skip
            ks = gauge("ks", "Two-sample Kolmogorov-Smirnov statistic vs the baseline (stable) version.",
                       ("version", "baseline_version", "finding"))  # fmt: skip
            psi_max = gauge("psi_max", "Largest PSI over findings vs the baseline (stable) version.", ("version", "baseline_version"))
            pair = ("version", "baseline_version", "finding")
            auroc_delta = gauge("auroc_delta", "AUROC of the version minus the baseline's, same golden images.", pair)
            auroc_delta_se = gauge("auroc_delta_se", "DeLong standard error of auroc_delta (paired).", pair)
            sens_delta = gauge("sensitivity_delta", "Sensitivity minus the baseline's, each at its operating threshold.", pair)
            sens_delta_se = gauge("sensitivity_delta_se", "Paired standard error of sensitivity_delta.", pair)
            samples = counter("samples", "Golden-set images scored in successful evaluations.", ("version",))
            outcomes = counter("evaluations", "Evaluations of a version by outcome.", ("version", "outcome"))
            errors = counter("request_errors", "Failed predict requests (each attempt) by reason.", ("version", "reason"))
            last_success = gauge("last_success_timestamp_seconds", "Unix time of the last successful evaluation.", ("version",))
            last_ok = gauge("last_evaluation_ok", "1 if the last evaluation of the version succeeded, else 0.", ("version",))
            duration = gauge("evaluation_duration_seconds", "Duration of the last evaluation attempt.", ("version",))
            card_info = gauge("model_card_info", "What the version's model_card signature gave in the last round (1).",
                              ("version", "status", "sha256"))  # fmt: skip
            source_info = gauge("threshold_source_info", "Where the operating thresholds came from (1).", ("version", "source"))
            sub = ("attribute", "subgroup")
            sub_auroc = gauge("subgroup_auroc_mean", "Mean AUROC within a demographic subgroup of the golden set.", ("version", *sub))

            for label, s in sorted(versions.items()):
                vl = [*base, label]
                samples.add_metric(vl, s.samples)
                for outcome, n in s.outcomes.items():
                    outcomes.add_metric([*vl, outcome], n)
                for reason, n in s.request_errors.items():
                    errors.add_metric([*vl, reason], n)
                if s.last_success is not None:
                    last_success.add_metric(vl, s.last_success)
                if s.last_ok is not None:
                    last_ok.add_metric(vl, 1.0 if s.last_ok else 0.0)
                if s.last_duration is not None:
                    duration.add_metric(vl, s.last_duration)
                if s.card is not None:
                    card_info.add_metric([*vl, *s.card], 1)
                ev = s.evaluation
                if ev is not None:
                    source_info.add_metric([*vl, ev.threshold_source], 1)
                    if ev.auroc_mean is not None:
                        auroc_mean.add_metric(vl, ev.auroc_mean)
                    if ev.auroc_mean_ci is not None:
                        auroc_ci.add_metric([*vl, "lower"], ev.auroc_mean_ci[0])
                        auroc_ci.add_metric([*vl, "upper"], ev.auroc_mean_ci[1])
                    ece_mean.add_metric(vl, ev.ece_mean)
                    for f in ev.findings:
                        fl = [*vl, f.finding]
                        if f.auroc is not None:
                            auroc.add_metric(fl, f.auroc)
                        if f.sensitivity is not None:
                            sens.add_metric(fl, f.sensitivity)
                        if f.specificity is not None:
                            spec.add_metric(fl, f.specificity)
                        if f.threshold is not None:
                            thr.add_metric(fl, f.threshold)
                        ece.add_metric(fl, f.ece)
                        pmean.add_metric(fl, f.prediction_mean)
                        for q, value in zip(QUANTILES, f.prediction_quantiles):
                            pq.add_metric([*fl, f"{q:g}"], value)
                    for g in ev.subgroups:
                        if g.auroc_mean is not None:
                            sub_auroc.add_metric([*vl, g.attribute, g.value], g.auroc_mean)
                for baseline, d in sorted(s.drift.items()):
                    for finding, value in d.psi.items():
                        psi.add_metric([*vl, baseline, finding], value)
                    for finding, value in d.ks.items():
                        ks.add_metric([*vl, baseline, finding], value)
                    if d.psi:
                        psi_max.add_metric([*vl, baseline], d.psi_max)
                    for finding, cmp in d.comparison.items():
                        labels = [*vl, baseline, finding]
                        auroc_delta.add_metric(labels, cmp.auroc_delta)
                        auroc_delta_se.add_metric(labels, cmp.auroc_delta_se)
                        if cmp.sensitivity_delta is not None and cmp.sensitivity_delta_se is not None:
                            sens_delta.add_metric(labels, cmp.sensitivity_delta)
                            sens_delta_se.add_metric(labels, cmp.sensitivity_delta_se)

            golden_images = gauge("golden_set_images", "Images in the loaded golden set.")
            golden_pos = gauge("golden_set_positives", "Positive cases per finding in the golden set.", ("finding",))
            golden_info = gauge("golden_set_info", "The loaded golden set (1).", ("source", "fingerprint"))
            if golden is not None:
                golden_images.add_metric(base, len(golden))
                for finding, n in golden.positives().items():
                    golden_pos.add_metric([*base, finding], n)
                golden_info.add_metric([*base, golden.source, golden.fingerprint], 1)
            sub_images = gauge("golden_set_subgroup_images", "Images in a demographic subgroup of the golden set.", sub)
            sub_pos = gauge("golden_set_subgroup_positives",
                            "Fewest positives of any finding in the subgroup's mean AUROC (0 = not scored).", sub)  # fmt: skip
            sub_findings = gauge("golden_set_subgroup_findings", "Findings the subgroup's mean AUROC averages.", sub)
            for g in golden.subgroups if golden is not None else ():
                gl = [*base, g.attribute, g.value]
                sub_images.add_metric(gl, g.images)
                sub_pos.add_metric(gl, g.positives)
                sub_findings.add_metric(gl, len(g.findings))
            golden_err = counter("golden_set_errors", "Failed golden-set loads.")
            golden_err.add_metric(base, golden_errors)
            config_err = counter("config_errors", "Unreadable or invalid evaluator.yaml reads.")
            config_err.add_metric(base, config_errors)
            listed = gauge("versions", "Model versions listed in the config.")
            listed.add_metric(base, len(versions))
        return [auroc_mean, auroc_ci, auroc, sens, spec, thr, ece, ece_mean, pmean, pq, psi, ks, psi_max, auroc_delta,
                auroc_delta_se, sens_delta, sens_delta_se, samples, outcomes,
                errors, last_success, last_ok, duration, card_info, source_info, golden_images, golden_pos, golden_info,
                sub_auroc, sub_images, sub_pos, sub_findings, golden_err, config_err, listed]

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """/metrics (Prometheus text format) and /healthz (JSON; 503 when `health()` says not ok)."""

    def __init__(self, metrics: EvaluatorMetrics, host: str, port: int, health: Callable[[], tuple[bool, dict]]) -> None:
        self.metrics = metrics
        self.health = health
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body = owner.metrics.render()
                    owner.metrics.last_scrape = time.monotonic()
                    self._send(200, body, CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, detail = owner.health()
                    self._send(200 if ok else 503, json.dumps(detail).encode(), "application/json")
                else:
                    self._send(404, b"not found: /metrics or /healthz\n", "text/plain")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: object) -> None:  # keep the log for evaluations
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> "MetricsServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="evaluator-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
