"""The evaluator loop: re-read the config, score each listed version on its own schedule, publish or withdraw.

Every `poll_seconds` (0.5 s) the loop re-reads evaluator.yaml (a mounted ConfigMap is updated in
place), so a version the operator adds during a rollout is evaluated at once and one it removes
loses its series at once. Each listed version then has its own schedule:

* due now when it first appears; after a success, due `interval` after that evaluation started;
  after a failure, due again after min(interval, max(1 s, interval / 4)) (a canary that was not
  ready yet is picked up soon after it is);
* one evaluation per version at a time, with a deadline of 0.9 x interval, so a hanging version
  neither piles up work nor delays the others (versions run concurrently; the client bounds the
  requests in flight over all of them);
* success: its figures replace the previous ones and samples_total grows by the golden-set size;
  then the drift (PSI, KS) and the paired comparison (AUROC difference with DeLong's standard
  error, sensitivity difference) of every non-stable version against the stable one is recomputed
  from both versions' latest predictions on the same golden images. Failure (timeout, HTTP error after retries, garbage): its
  figures and every drift figure involving it are withdrawn and samples_total does not move.

The first success of a newly listed version is published only after its zeroed counter has been
scraped once (bounded wait, min(interval / 2, 15 s)), so Prometheus' increase() sees that first
evaluation instead of starting the counter at 500.

Nothing a version does (timeouts, garbage, connection refused) and nothing the config or golden
set does (missing, invalid, unreachable) ends the loop; they are logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xraymodel.evaluator import compute
from xraymodel.evaluator.client import PredictFailure, TFServingClient
from xraymodel.evaluator.config import ConfigError, EvaluatorConfig, VersionEntry, parse_config_text, read_config_text
from xraymodel.evaluator.exporter import EvaluatorMetrics
from xraymodel.evaluator.golden import GoldenData, GoldenSetError, load_golden_set
from xraymodel.served_card import ServedCard, ServedCardError, is_signature_missing, parse_served_card

log = logging.getLogger("xraymodel.evaluator")
POLL_SECONDS = 0.5
DEADLINE_FRACTION = 0.9


@dataclass
class VersionState:
    entry: VersionEntry
    next_due: float
    task: asyncio.Task | None = None
    predictions: np.ndarray | None = None  # of the last evaluation, None unless it succeeded
    evaluation: compute.VersionEvaluation | None = None
    last_error: str | None = None
    evaluations: int = 0
    published_once: bool = False
    card: ServedCard | None = None  # the last valid card the version served
    card_status: str | None = None  # xraymodel.served_card.STATUSES, of the last round
    card_reason: str | None = None
    card_logged: tuple[str, str | None] | None = None


@dataclass
class Outcome:
    """What one evaluation of one version produced (returned by `evaluate_all`)."""

    version: int
    ok: bool
    seconds: float
    evaluation: compute.VersionEvaluation | None = None
    error: str | None = None
    reason: str | None = None
    drift: dict[str, compute.DriftResult] = field(default_factory=dict)


class Evaluator:
    """Owns the config, the golden set, the TF Serving client and the per-version schedule."""

    def __init__(
        self,
        config_path: str | Path,
        metrics: EvaluatorMetrics | None = None,
        *,
        endpoint_override: str | None = None,
        poll_seconds: float = POLL_SECONDS,
        first_publish_wait: float | None = None,
        golden_loader: Callable[[str, str], Awaitable[GoldenData]] = load_golden_set,
        extra_headers: dict[str, str] | None = None,
        connect_to: str | None = None,
    ) -> None:
        self.config_path = Path(config_path)
        self.connect_to = connect_to  # every request to this address, the URL's host in Host (the sandbox)
        self.metrics = metrics or EvaluatorMetrics()
        self.endpoint_override = endpoint_override
        self.poll_seconds = float(poll_seconds)
        self.first_publish_wait = first_publish_wait
        self.golden_loader = golden_loader
        self.extra_headers = dict(extra_headers or {})
        self.config: EvaluatorConfig | None = None
        self.config_error: str | None = None
        self._config_text: str | None = None
        self.golden: GoldenData | None = None
        self.golden_error: str | None = None
        self._golden_key: tuple[str, str] | None = None
        self._golden_retry_at = 0.0
        self.client: TFServingClient | None = None
        self._client_key: tuple | None = None
        self._retired: list[TFServingClient] = []
        self._cards: dict[tuple[int, str], ServedCard] = {}  # (version, SHA-256 of the answer) -> validated card
        self.states: dict[str, VersionState] = {}
        self.heartbeat = time.monotonic()
        self.started = time.monotonic()
        self.loading_golden = False

    # ------------------------------------------------------------------ config, golden set, client
    def reload_config(self) -> bool:
        """Re-read evaluator.yaml; True when a (new) valid config is in effect. Bad files keep the old one."""
        try:
            text = read_config_text(self.config_path)
        except ConfigError as exc:
            if self.config is None:
                self.config_error = str(exc)  # not mounted yet: wait quietly
            return False
        if text == self._config_text:
            return False
        self._config_text = text
        try:
            config = parse_config_text(text).with_endpoint(self.endpoint_override)
        except ConfigError as exc:
            self.config_error = str(exc)
            self.metrics.config_error()
            log.error("config %s: %s (keeping the previous config)", self.config_path, exc)
            return False
        previous = self.config
        self.config, self.config_error = config, None
        self.metrics.set_identity(config.namespace, config.model_deployment, config.model_name)
        self._sync_versions(config)
        self._sync_client(config)
        if previous is None or [(v.version, v.role) for v in previous.versions] != [(v.version, v.role) for v in config.versions]:
            log.info("config: versions %s", ", ".join(f"{v.label} ({v.role})" for v in config.versions) or "none")
        return True

    def _sync_versions(self, config: EvaluatorConfig) -> None:
        labels = [v.label for v in config.versions]
        for label in [label for label in self.states if label not in labels]:
            state = self.states.pop(label)
            if state.task is not None:
                state.task.cancel()
        self.metrics.track_versions(labels)
        now = time.monotonic()
        for entry in config.versions:
            state = self.states.get(entry.label)
            if state is None:
                self.states[entry.label] = VersionState(entry, next_due=now)
            else:
                state.entry = entry
        self._refresh_drift()  # roles may have changed (promotion): recompute against the new stable

    def _sync_client(self, config: EvaluatorConfig) -> None:
        key = (config.endpoint, config.model_name, config.signature_name, config.preview_header,
               config.timeout_seconds, config.retries, config.concurrency)  # fmt: skip
        if key == self._client_key:
            return
        if self.client is not None:
            self._retired.append(self.client)
        self._client_key = key
        self.client = TFServingClient(
            config.endpoint, config.model_name, signature_name=config.signature_name,
            preview_header=config.preview_header, timeout_seconds=config.timeout_seconds,
            retries=config.retries, concurrency=config.concurrency, extra_headers=self.extra_headers,
            connect_to=self.connect_to,
            on_request_error=lambda version, reason: self.metrics.request_error(f"v{version}", reason),
        )  # fmt: skip

    async def ensure_golden(self) -> bool:
        config = self.config
        if config is None:
            return False
        key = (config.golden_set.uri, config.golden_set.labels)
        if key == self._golden_key and self.golden is not None:
            return True
        if key == self._golden_key and time.monotonic() < self._golden_retry_at:
            return False
        self._golden_key = key
        if self.golden is not None:  # another golden set: the old figures are not comparable
            self.golden = None
            self.metrics.set_golden(None)
            for label, state in self.states.items():
                state.predictions = state.evaluation = None
                self.metrics.withdraw(label, failed=False)
        self.loading_golden = True  # a long download is progress, not a stalled loop (/healthz)
        try:
            golden = await self.golden_loader(*key)
        except (GoldenSetError, OSError) as exc:
            self.golden_error = str(exc)
            self._golden_retry_at = time.monotonic() + min(config.interval_seconds, 30.0)
            self.metrics.golden_error()
            log.error("golden set %s: %s", key[0], exc)
            return False
        finally:
            self.loading_golden = False
            self.heartbeat = time.monotonic()
        self.golden, self.golden_error = golden, None
        self.metrics.set_golden(golden)
        log.info("golden set %s: %d images, fingerprint %s, positives %s", golden.source, len(golden),
                 golden.fingerprint, golden.positives())  # fmt: skip
        return True

    # ------------------------------------------------------------------ one evaluation
    async def evaluate_version(self, state: VersionState) -> Outcome:
        """Score the golden set on one version; publish or withdraw (module docstring)."""
        config, golden, client = self.config, self.golden, self.client
        assert config is not None and golden is not None and client is not None
        entry = state.entry
        started = time.monotonic()
        state.evaluations += 1
        deadline = DEADLINE_FRACTION * config.interval_seconds
        try:
            async with asyncio.timeout(deadline):
                thresholds, source = dict(entry.operating_thresholds), "model card"
                if not thresholds:  # evaluator.yaml gives none: the version's own card, through TF Serving
                    card = await self._served_card(state, client, golden)
                    if card is not None:
                        thresholds, source = card.operating_thresholds, "model card (served)"
                else:
                    self._card_outcome(state, "config", None, "operatingThresholds given in evaluator.yaml")
                predictions = await client.predict_golden(entry.version, golden, config.batch_size, entry.endpoint)
            evaluation = await asyncio.to_thread(
                compute.evaluate_version, golden.labels, predictions, golden.findings,
                operating_threshold=config.operating_threshold,
                operating_thresholds=thresholds or None, operating_thresholds_source=source,
                bootstrap_resamples=config.bootstrap_resamples,
                ece_bins=config.ece_bins, subgroups=golden.subgroups,
            )  # fmt: skip
        except (PredictFailure, TimeoutError, compute.GarbagePredictions) as exc:
            if isinstance(exc, PredictFailure):
                reason, message = exc.reason, exc.message
            elif isinstance(exc, TimeoutError):
                reason, message = "timeout", f"evaluation did not finish within its deadline ({deadline:.1f}s)"
            else:
                reason, message = "garbage", str(exc)
            seconds = time.monotonic() - started
            self._fail(state, config, started, f"{reason}: {message}")
            self.metrics.withdraw(entry.label, seconds)
            log.warning("%s (%s): evaluation FAILED after %.2fs: %s: %s; figures withdrawn", entry.label, entry.role,
                        seconds, reason, message)  # fmt: skip
            return Outcome(entry.version, False, seconds, error=message, reason=reason)
        if not state.published_once:
            listed_at = self.metrics.listed_at(entry.label)
            wait = self.first_publish_wait
            if wait is None:
                wait = min(config.interval_seconds / 2, 15.0)
            if listed_at is not None:
                await self.metrics.wait_scraped_since(listed_at, wait)
        if self.states.get(entry.label) is not state:  # removed from the config meanwhile
            return Outcome(entry.version, False, time.monotonic() - started, error="no longer listed", reason="removed")
        seconds = time.monotonic() - started
        state.predictions, state.evaluation, state.last_error = predictions, evaluation, None
        state.next_due = started + config.interval_seconds
        state.published_once = True
        self.metrics.publish(entry.label, evaluation, seconds)
        drift = self._refresh_drift()
        mine = drift.get(entry.label, {})
        ci = evaluation.auroc_mean_ci
        log.info("%s (%s): mean AUROC %s%s, ECE %.4f, %d images in %.2fs%s", entry.label, entry.role,
                 "n/a" if evaluation.auroc_mean is None else f"{evaluation.auroc_mean:.4f}",
                 "" if ci is None else f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})", evaluation.ece_mean, evaluation.samples,
                 seconds, "".join(f"; PSI max {d.psi_max:.3f} vs {b}" for b, d in mine.items()))  # fmt: skip
        return Outcome(entry.version, True, seconds, evaluation=evaluation, drift=mine)

    async def _served_card(self, state: VersionState, client: TFServingClient, golden: GoldenData) -> ServedCard | None:
        """The version's card from its ``model_card`` signature (validated, cached per version and
        answer digest), or None with the reason in the card status: no such signature (an older
        export), invalid, no thresholds in it, or unavailable (then the version's last valid card)."""
        import hashlib
        import json

        entry = state.entry
        try:
            body = await client.model_card(entry.version, entry.endpoint)
        except PredictFailure as exc:
            if exc.status is not None and is_signature_missing(exc.status, exc.message):
                self._card_outcome(state, "no_signature", None, f"exported without the model_card signature ({exc.message[:160]})")
            elif exc.reason == "garbage":
                self._card_outcome(state, "invalid", None, exc.message)
            elif state.card is not None and state.card.version == entry.version:
                self._card_outcome(state, "served", state.card.content_sha256, f"card unavailable ({exc}); using the one served before")
                return state.card
            else:
                self._card_outcome(state, "unavailable", None, str(exc))
            return None
        key = (entry.version, hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest())
        card = self._cards.get(key)
        if card is None:
            try:
                card = parse_served_card(body, version=entry.version, labels=golden.findings)
            except ServedCardError as exc:
                self._card_outcome(state, exc.status, None, str(exc))
                return None
            if len(self._cards) > 64:
                self._cards.clear()
            self._cards[key] = card
        if not card.thresholds:
            self._card_outcome(state, "no_thresholds", card.content_sha256, "the served card has no operating thresholds")
            return None
        state.card = card
        kinds = dict(card.threshold_kinds)
        self._card_outcome(state, "served", card.content_sha256,
                           f"{sum(k == 'target sensitivity' for k in kinds.values())} target-sensitivity points, "
                           f"{sum(k == 'operating threshold' for k in kinds.values())} operating thresholds, "
                           f"scale {card.scale}")  # fmt: skip
        return card

    def _card_outcome(self, state: VersionState, status: str, sha256: str | None, reason: str) -> None:
        """Record (metric, health) what the version's card round gave; log it when it changed."""
        label = state.entry.label
        if status not in ("served", "unavailable"):
            state.card = None
        changed = (status, sha256) != state.card_logged
        state.card_status, state.card_reason, state.card_logged = status, reason, (status, sha256)
        self.metrics.set_model_card(label, status, sha256)
        if changed:
            level = logging.INFO if status in ("served", "config") else logging.WARNING
            log.log(level, "%s: model card %s%s: %s%s", label, status, "" if sha256 is None else f" sha256 {sha256[:12]}",
                    reason, "" if status in ("served", "config") else "; thresholds fall back (operatingThreshold, "
                    "else the Youden point on the golden set)")  # fmt: skip

    def _fail(self, state: VersionState, config: EvaluatorConfig, started: float, error: str) -> None:
        state.predictions = state.evaluation = None
        state.last_error = error
        state.next_due = started + min(config.interval_seconds, max(1.0, config.interval_seconds / 4))

    def _refresh_drift(self) -> dict[str, dict[str, compute.DriftResult]]:
        """Drift of every non-stable version with current predictions against the stable one."""
        out: dict[str, dict[str, compute.DriftResult]] = {}
        config = self.config
        stable = config.stable if config is not None else None
        stable_state = self.states.get(stable.label) if stable is not None else None
        for label, state in self.states.items():
            keep = None
            if stable is not None and label != stable.label:
                keep = stable.label
                if (
                    stable_state is not None
                    and stable_state.predictions is not None
                    and state.predictions is not None
                    and self.golden is not None
                ):
                    result = compute.compare(self.golden.labels, stable_state.predictions, state.predictions,
                                             stable_state.evaluation, state.evaluation, self.golden.findings)  # fmt: skip
                    self.metrics.set_drift(label, stable.label, result)
                    out[label] = {stable.label: result}
                else:
                    self.metrics.set_drift(label, stable.label, None)
            self.metrics.clear_drift_except(label, keep)
        return out

    # ------------------------------------------------------------------ the loop
    def _start_due(self) -> None:
        now = time.monotonic()
        for state in self.states.values():
            if state.task is None and now >= state.next_due:
                state.task = asyncio.create_task(self._run_one(state), name=f"evaluate-{state.entry.label}")

    async def _run_one(self, state: VersionState) -> None:
        try:
            await self.evaluate_version(state)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in one evaluation must not end the service
            log.exception("%s: unexpected error", state.entry.label)
            if self.config is not None:
                self._fail(state, self.config, time.monotonic(), f"internal: {exc}")
            self.metrics.withdraw(state.entry.label)
        finally:
            state.task = None

    async def step(self) -> None:
        """One pass of the loop: config, golden set, due evaluations, retired clients."""
        self.heartbeat = time.monotonic()
        self.reload_config()
        if self.config is not None and await self.ensure_golden():
            self._start_due()
        if self._retired and all(s.task is None for s in self.states.values()):
            retired, self._retired = self._retired, []
            for client in retired:
                await client.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("evaluator: config %s%s", self.config_path,
                 (f", endpoint override {self.endpoint_override}" if self.endpoint_override else "")
                 + (f", connecting to {self.connect_to}" if self.connect_to else ""))  # fmt: skip
        try:
            while not stop.is_set():
                await self.step()
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.poll_seconds)
                except TimeoutError:
                    pass
        finally:
            await self.close()

    async def evaluate_all(self) -> dict[str, Outcome]:
        """Evaluate every listed version now, concurrently, and wait (tests and `--once`)."""
        self.reload_config()
        if self.config is None:
            raise ConfigError(self.config_error or f"{self.config_path}: no config")
        if not await self.ensure_golden():
            raise GoldenSetError(self.golden_error or "golden set not loaded")
        states = list(self.states.values())
        for state in states:
            if state.task is not None:
                await asyncio.gather(state.task, return_exceptions=True)
        # The stable version first: the others' drift (PSI, KS) is measured against its predictions.
        stable = [s for s in states if s.entry.role == "stable"]
        others = [s for s in states if s.entry.role != "stable"]
        outcomes = list(await asyncio.gather(*(self.evaluate_version(s) for s in stable)))
        outcomes += await asyncio.gather(*(self.evaluate_version(s) for s in others))
        return {s.entry.label: o for s, o in zip(stable + others, outcomes)}

    async def close(self) -> None:
        tasks = [s.task for s in self.states.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in [*self._retired, *([self.client] if self.client else [])]:
            await client.aclose()
        self._retired, self.client, self._client_key = [], None, None

    # ------------------------------------------------------------------ health
    def health(self) -> tuple[bool, dict]:
        """Alive when the loop ticked recently (or is loading the golden set); the detail says what it is doing."""
        age = time.monotonic() - self.heartbeat
        ok = self.loading_golden or age < max(10.0, 20 * self.poll_seconds)
        config = self.config
        return ok, {
            "status": "ok" if ok else "stalled",
            "loopAgeSeconds": round(age, 2),
            "loadingGoldenSet": self.loading_golden,
            "config": str(self.config_path),
            "configLoaded": config is not None,
            "configError": self.config_error,
            "goldenSet": None if self.golden is None else {"source": self.golden.source, "images": len(self.golden),
                                                           "fingerprint": self.golden.fingerprint},  # fmt: skip
            "goldenSetError": self.golden_error,
            "versions": {
                label: {"role": s.entry.role, "evaluations": s.evaluations, "ok": s.evaluation is not None,
                        "aurocMean": None if s.evaluation is None else s.evaluation.auroc_mean, "error": s.last_error,
                        "modelCard": s.card_status, "modelCardReason": s.card_reason,
                        "thresholdSource": None if s.evaluation is None else s.evaluation.threshold_source}
                for label, s in self.states.items()
            },  # fmt: skip
        }
