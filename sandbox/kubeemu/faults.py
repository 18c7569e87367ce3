"""
Request statistics and fault injection of the API server emulator.

:class:`RequestStats` counts every resource request by namespace, verb (get, list, watch, create,
update, patch, delete, deletecollection), resource (``plural`` or ``plural/subresource``) and HTTP
status, and summarises them on demand (optionally for one namespace).

:class:`FaultInjector` holds a :class:`FaultConfig` (settable in-process or as JSON through
``POST /_emulator/faults``) and decides per matching request an added latency and, at the
configured rate, an HTTP error status to answer instead of executing the request. The JSON keys
are camelCase: ``{"errorRate": 0.2, "statuses": [409, 500, 429], "latencyMs": [0, 200],
"verbs": ["patch"], "resources": ["deployments"], "namespaces": ["ns1"], "seed": 1,
"retryAfterSeconds": 1, "userAgents": ["kopf", "modeldeploy-operator"]}``; ``{}`` disables faults.
``userAgents`` (substrings of the User-Agent header) aims the faults at one client, e.g. only the
operator (kopf and the kubernetes client) and not the sandbox that observes it.
"""

import collections
import random
import threading
from dataclasses import dataclass, field
from typing import Any

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


class RequestStats:
    """Counters of resource requests, thread-safe (read from other threads by tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[tuple[str, str, str, int, bool, str]] = collections.Counter()

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def record(
        self, *, namespace: str | None, verb: str, resource: str, status: int, injected: bool = False, user: str = ""
    ) -> None:
        with self._lock:
            self._counts[(namespace or "", verb, resource, status, injected, user)] += 1

    def snapshot(self, namespace: str | None = None) -> dict[str, Any]:
        """
        Summarise the counters (for one namespace if given).

        ``requests``/``requests_by_verb`` count every request; ``write_requests`` every write
        attempt; ``writes``/``writes_by_*`` only the writes answered 2xx (i.e. applied, no-ops
        included); ``faults_injected`` the answers replaced by injected errors. ``requests_by_user`` and
        ``writes_by_user`` map each authenticated user to {namespace: count} ("" = cluster-scoped), and
        ``forbidden_by_user`` counts the 403 answers per user: who touched what (e.g. each operator
        shard only its own namespaces).
        """
        with self._lock:
            items = list(self._counts.items())
        result: dict[str, Any] = {
            "namespace": namespace,
            "requests": 0,
            "write_requests": 0,
            "writes": 0,
            "faults_injected": 0,
            "requests_by_verb": collections.Counter(),
            "writes_by_verb": collections.Counter(),
            "writes_by_resource": collections.Counter(),
            "writes_by_namespace": collections.Counter(),
            "writes_by_verb_resource": collections.Counter(),
            "responses_by_status": collections.Counter(),
            "faults_by_status": collections.Counter(),
            "forbidden_by_user": collections.Counter(),
        }
        by_user: dict[str, collections.Counter[str]] = {}
        writes_by_user: dict[str, collections.Counter[str]] = {}
        for (ns, verb, resource, status, injected, user), count in items:
            if namespace is not None and ns != namespace:
                continue
            by_user.setdefault(user, collections.Counter())[ns] += count
            if status == 403:
                result["forbidden_by_user"][user] += count
            if verb in WRITE_VERBS and 200 <= status < 300:
                writes_by_user.setdefault(user, collections.Counter())[ns] += count
            result["requests"] += count
            result["requests_by_verb"][verb] += count
            result["responses_by_status"][str(status)] += count
            if injected:
                result["faults_injected"] += count
                result["faults_by_status"][str(status)] += count
            if verb in WRITE_VERBS:
                result["write_requests"] += count
                if 200 <= status < 300:
                    result["writes"] += count
                    result["writes_by_verb"][verb] += count
                    result["writes_by_resource"][resource] += count
                    result["writes_by_namespace"][ns] += count
                    result["writes_by_verb_resource"][f"{verb} {resource}"] += count
        out = {key: dict(value) if isinstance(value, collections.Counter) else value for key, value in result.items()}
        out["requests_by_user"] = {user: dict(c) for user, c in by_user.items()}
        out["writes_by_user"] = {user: dict(c) for user, c in writes_by_user.items()}
        return out


@dataclass
class FaultConfig:
    """What to inject, and into which requests (None = all verbs/resources/namespaces)."""

    error_rate: float = 0.0
    statuses: list[int] = field(default_factory=lambda: [500])
    latency_ms: tuple[float, float] = (0.0, 0.0)
    verbs: set[str] | None = None
    resources: set[str] | None = None
    namespaces: set[str] | None = None
    seed: int | None = None
    retry_after_seconds: int = 1
    user_agents: set[str] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FaultConfig":
        latency = data.get("latencyMs") or [0, 0]
        if isinstance(latency, (int, float)):
            latency = [latency, latency]
        rate = float(data.get("errorRate", 0.0))
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"errorRate must be within [0, 1], got {rate}")
        statuses = [int(status) for status in data.get("statuses") or [500]]
        if any(not 400 <= status < 600 for status in statuses):
            raise ValueError(f"statuses must be HTTP error codes, got {statuses}")
        return cls(
            error_rate=rate,
            statuses=statuses,
            latency_ms=(float(latency[0]), float(latency[-1])),
            verbs=set(data["verbs"]) if data.get("verbs") else None,
            resources=set(data["resources"]) if data.get("resources") else None,
            namespaces=set(data["namespaces"]) if data.get("namespaces") else None,
            seed=data.get("seed"),
            retry_after_seconds=int(data.get("retryAfterSeconds", 1)),
            user_agents=set(data["userAgents"]) if data.get("userAgents") else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "errorRate": self.error_rate,
            "statuses": list(self.statuses),
            "latencyMs": list(self.latency_ms),
            "verbs": sorted(self.verbs) if self.verbs else None,
            "resources": sorted(self.resources) if self.resources else None,
            "namespaces": sorted(self.namespaces) if self.namespaces else None,
            "seed": self.seed,
            "retryAfterSeconds": self.retry_after_seconds,
            "userAgents": sorted(self.user_agents) if self.user_agents else None,
        }

    @property
    def active(self) -> bool:
        return self.error_rate > 0 or self.latency_ms[1] > 0

    def matches(self, verb: str, resource: str, namespace: str | None, user_agent: str = "") -> bool:
        if self.user_agents is not None and not any(ua in user_agent for ua in self.user_agents):
            return False
        if self.verbs is not None and verb not in self.verbs:
            return False
        if (
            self.resources is not None
            and resource not in self.resources
            and resource.split("/")[0] not in self.resources
        ):
            return False
        if self.namespaces is not None and namespace not in self.namespaces:
            return False
        return True


class FaultInjector:
    """Decides the latency and the injected error (if any) for each request."""

    def __init__(self) -> None:
        self.config = FaultConfig()
        self._rng = random.Random()

    def configure(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)

    def decide(self, verb: str, resource: str, namespace: str | None, user_agent: str = "") -> tuple[float, int | None]:
        """Return (latency in seconds, injected status or None) for this request."""
        config = self.config
        if not config.active or not config.matches(verb, resource, namespace, user_agent):
            return 0.0, None
        low, high = config.latency_ms
        latency = self._rng.uniform(low, high) / 1000.0 if high > 0 else 0.0
        status = None
        if config.error_rate > 0 and self._rng.random() < config.error_rate:
            status = self._rng.choice(config.statuses)
        return latency, status
