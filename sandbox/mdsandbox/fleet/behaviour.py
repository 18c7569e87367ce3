"""How one simulated version behaves: the scenario's ``versions.<v>`` entry, parsed and validated.

`VersionBehaviour` holds latency (a lognormal fitted to p50/p95), errorRate (share of 500
answers), accuracy (mean AUROC on the golden set), findingAccuracy (per-finding AUROCs pinned, the
mean held), subgroupAccuracy (one demographic subgroup's mean AUROC pinned, the mean held), outputShift, ready, modelState (TF Serving's state of the loaded version: AVAILABLE, or
e.g. END once a change unloads it) and operatingThresholds (the model card's thresholds its
``model_card`` signature serves; none: an export without that signature), plus ``changes: [{after:
s, ...}]`` applied ``after`` seconds after the version FIRST receives live or mirrored traffic
(`effective`). Errors name the bad field (``versions["2"].changes[0].errorRate: ...``). Pure: no
clock, no I/O; the fleet decides what "elapsed" is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

Z95 = 1.6448536269514722
_SCENARIO_KEYS = {
    "latencyMs",
    "errorRate",
    "accuracy",
    "findingAccuracy",
    "subgroupAccuracy",
    "outputShift",
    "ready",
    "modelState",
    "changes",
    "replicas",
    "operatingThresholds",
}
_SNAKE_TO_SCENARIO = {
    "latency_ms": "latencyMs",
    "error_rate": "errorRate",
    "output_shift": "outputShift",
    "finding_accuracy": "findingAccuracy",
    "subgroup_accuracy": "subgroupAccuracy",
    "operating_thresholds": "operatingThresholds",
    "model_state": "modelState",
}
# TF Serving's ManagerState of a version it knows (GetModelStatus answers each; only AVAILABLE serves)
MODEL_STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")


@dataclass(frozen=True)
class BehaviourChange:
    """``{after: seconds, ...overrides}`` from a scenario's ``changes`` list."""

    after: float
    overrides: Mapping[str, Any]


@dataclass(frozen=True)
class VersionBehaviour:
    """How one version's pods behave. Scenario keys: latencyMs {p50, p95}, errorRate (0..1),
    accuracy (mean AUROC on the golden set), findingAccuracy ({finding: AUROC}: those findings pinned,
    the mean still `accuracy`), outputShift, ready, changes."""

    latency_p50_ms: float = 25.0
    latency_p95_ms: float = 40.0
    error_rate: float = 0.0
    accuracy: float = 0.85
    finding_accuracy: tuple[tuple[str, float], ...] = ()  # sorted (finding, AUROC) pairs
    subgroup_accuracy: tuple[str, str, float] | None = None  # (attribute, subgroup, mean AUROC) on the golden set
    output_shift: float = 0.0
    ready: bool = True
    model_state: str = "AVAILABLE"  # extra: TF Serving's state of the loaded version (END: unloaded/failed)
    operating_thresholds: tuple[tuple[str, float], ...] = ()  # sorted (finding, threshold) of its model card
    changes: tuple[BehaviourChange, ...] = ()

    def __post_init__(self) -> None:
        if not self.latency_p50_ms > 0:
            raise ValueError(f"latencyMs.p50 must be > 0, got {self.latency_p50_ms}")
        if self.latency_p95_ms < self.latency_p50_ms:
            raise ValueError(f"latencyMs.p95 ({self.latency_p95_ms}) must be >= p50 ({self.latency_p50_ms})")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"errorRate must be within 0..1, got {self.error_rate}")
        if not 0.0 < self.accuracy < 1.0:
            raise ValueError(f"accuracy (mean AUROC) must be inside (0, 1), got {self.accuracy}")
        if not -1.0 <= self.output_shift <= 1.0:
            raise ValueError(f"outputShift must be within -1..1, got {self.output_shift}")
        if self.finding_accuracy:
            from mdsandbox.synthetic_golden import finding_auc_targets

            finding_auc_targets(self.accuracy, finding_accuracy=dict(self.finding_accuracy))  # names, ranges
        if self.operating_thresholds:
            from xraymodel.findings import FINDINGS

            for finding, threshold in self.operating_thresholds:
                if finding not in FINDINGS:
                    raise ValueError(f"operatingThresholds: unknown finding {finding!r}")
                if not 0.0 <= threshold <= 1.0:
                    raise ValueError(f"operatingThresholds.{finding} must be within 0..1, got {threshold}")

    # lognormal latency fitted to the two quantiles
    @property
    def log_mu(self) -> float:
        return math.log(self.latency_p50_ms)

    @property
    def log_sigma(self) -> float:
        return math.log(self.latency_p95_ms / self.latency_p50_ms) / Z95

    def sample_latency_ms(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.log_sigma == 0:
            return np.full(n, self.latency_p50_ms)
        return rng.lognormal(self.log_mu, self.log_sigma, n)

    def latency_quantile_ms(self, q: float) -> float:
        from statistics import NormalDist

        return math.exp(self.log_mu + self.log_sigma * NormalDist().inv_cdf(q))

    def latency_cdf(self, x_ms: float) -> float:
        if x_ms <= 0:
            return 0.0
        if self.log_sigma == 0:
            return 1.0 if x_ms >= self.latency_p50_ms else 0.0
        return 0.5 * (1 + math.erf((math.log(x_ms) - self.log_mu) / (self.log_sigma * math.sqrt(2))))

    @classmethod
    def from_scenario(cls, raw: Mapping[str, Any] | None, where: str = "version") -> VersionBehaviour:
        """Parse a scenario ``versions`` entry; errors name the bad field (``where``.field)."""
        raw = dict(raw or {})
        unknown = set(raw) - _SCENARIO_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)} (known: {sorted(_SCENARIO_KEYS)})")
        base = cls()._apply(raw, where)
        changes = []
        for i, ch in enumerate(raw.get("changes") or []):
            if not isinstance(ch, Mapping) or "after" not in ch:
                raise ValueError(f"{where}.changes[{i}]: needs `after` (seconds)")
            after = float(ch["after"])
            if after < 0:
                raise ValueError(f"{where}.changes[{i}].after must be >= 0")
            overrides = {k: v for k, v in ch.items() if k != "after"}
            bad = set(overrides) - (_SCENARIO_KEYS - {"changes", "replicas", "operatingThresholds"})
            if bad:
                raise ValueError(f"{where}.changes[{i}]: unknown field(s) {sorted(bad)}")
            base._apply(overrides, f"{where}.changes[{i}]")  # validate now, not when it fires
            changes.append(BehaviourChange(after, overrides))
        return replace(base, changes=tuple(sorted(changes, key=lambda c: c.after)))

    def _apply(self, overrides: Mapping[str, Any], where: str) -> VersionBehaviour:
        kw: dict[str, Any] = {}
        try:
            if "latencyMs" in overrides:
                lat = overrides["latencyMs"]
                if not isinstance(lat, Mapping) or not {"p50", "p95"} >= set(lat) or not lat:
                    raise ValueError("latencyMs needs {p50, p95}")
                p50 = float(lat.get("p50", self.latency_p50_ms))
                p95 = float(lat.get("p95", max(p50, self.latency_p95_ms * p50 / self.latency_p50_ms)))
                kw.update(latency_p50_ms=p50, latency_p95_ms=p95)
            if "errorRate" in overrides:
                kw["error_rate"] = float(overrides["errorRate"])
            if "accuracy" in overrides:
                kw["accuracy"] = float(overrides["accuracy"])
            if "findingAccuracy" in overrides:
                pins = overrides["findingAccuracy"] or {}
                if not isinstance(pins, Mapping):
                    raise ValueError("findingAccuracy must map findings to AUROCs")
                kw["finding_accuracy"] = tuple(sorted((str(f), float(a)) for f, a in pins.items()))
            if "subgroupAccuracy" in overrides:
                from mdsandbox.synthetic_golden import subgroup_pin

                kw["subgroup_accuracy"] = subgroup_pin(overrides["subgroupAccuracy"])
            if "outputShift" in overrides:
                kw["output_shift"] = float(overrides["outputShift"] or 0.0)
            if "operatingThresholds" in overrides:
                table = overrides["operatingThresholds"] or {}
                if not isinstance(table, Mapping):
                    raise ValueError("operatingThresholds must map findings to thresholds")
                kw["operating_thresholds"] = tuple(sorted((str(f), float(t)) for f, t in table.items()))
            if "ready" in overrides:
                if not isinstance(overrides["ready"], bool):
                    raise ValueError("ready must be true or false")
                kw["ready"] = overrides["ready"]
            if "modelState" in overrides:
                if overrides["modelState"] not in MODEL_STATES:
                    raise ValueError(f"modelState must be one of {list(MODEL_STATES)}")
                kw["model_state"] = overrides["modelState"]
            return replace(self, **kw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None

    def with_overrides(self, overrides: Mapping[str, Any]) -> VersionBehaviour:
        """Apply scenario-style (latencyMs, errorRate...) or snake_case (error_rate...) overrides."""
        norm = {_SNAKE_TO_SCENARIO.get(k, k): v for k, v in overrides.items()}
        if "changes" in norm:
            fresh = VersionBehaviour.from_scenario({"changes": norm.pop("changes")}, "changes")
            return replace(self._apply(norm, "behaviour"), changes=fresh.changes)
        return self._apply(norm, "behaviour")

    @property
    def subgroup_accuracy_map(self) -> dict[str, dict[str, float]] | None:
        """`subgroup_accuracy` in the golden set's argument form ({"view": {"AP": 0.72}})."""
        if self.subgroup_accuracy is None:
            return None
        attribute, value, auc = self.subgroup_accuracy
        return {attribute: {value: auc}}

    def effective(self, elapsed: float | None) -> tuple[VersionBehaviour, list[BehaviourChange]]:
        """Behaviour `elapsed` seconds after first traffic (None: no traffic yet) and the changes applied."""
        current, applied = self, []
        if elapsed is not None:
            for ch in self.changes:
                if elapsed >= ch.after:
                    current = current._apply(ch.overrides, "change")
                    applied.append(ch)
        return replace(current, changes=()), applied


__all__ = ["BehaviourChange", "VersionBehaviour"]
