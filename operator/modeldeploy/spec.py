"""Typed ModelDeployment spec (pydantic v2) and the semantic rules the CRD schema cannot express.

`parse_spec(spec_dict)` takes a spec that already has the CRD defaults applied (see
`modeldeploy.validation.apply_defaults`) and returns a frozen `ModelDeploymentSpec`, or raises
`SpecError` with one `Problem` per broken rule, each naming the field path (``spec.analysis...``).
The operator and ``modeldeploy validate`` share this code, so both say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdcommon.durations import parse_duration

EVALUATOR_BUILTINS = frozenset({"accuracy", "accuracyDrift", "predictionPSI", "nonInferiority", "worstSubgroup"})
PAIRED_BUILTINS = frozenset({"accuracyDrift", "predictionPSI", "nonInferiority"})  # need the stable's evaluation too
DEFAULT_LATENCY_QUANTILE = 0.99
# rclone: one static binary for S3 (AWS, MinIO and other S3-compatible stores) and GCS, with the AWS SDK's
# and Google's default credential chains (IRSA, Workload Identity); pinned, bump deliberately.
DEFAULT_SYNC_IMAGE = "rclone/rclone:1.74.2"


@dataclass(frozen=True)
class Problem:
    """One validation finding: the field path and what is wrong with it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(ValueError):
    """The spec breaks one or more rules; `problems` lists them all."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=camel, populate_by_name=True, frozen=True, extra="forbid")


Duration = Annotated[str, Field(pattern=r"^(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+$")]


class S3Settings(_Model):
    endpoint: str | None = None
    region: str | None = None
    use_https: bool = True
    verify_ssl: bool = True


SyncMode = Literal["Auto", "InitContainer", "Direct"]


class SyncSpec(_Model):
    """How a version reaches the serving pods from an object store (see `ModelSpec.syncs`)."""

    mode: SyncMode = "Auto"
    image: Annotated[str, Field(min_length=1)] = DEFAULT_SYNC_IMAGE
    size_limit: int | str | None = None


class ModelSpec(_Model):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_]+$", min_length=1, max_length=128)]
    base_path: str
    version: Annotated[int, Field(ge=1)]
    signature_name: str = "serving_default"
    credentials_secret: str | None = None
    s3: S3Settings | None = None
    sync: SyncSpec = SyncSpec()
    digest: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")] | None = None  # `modeldeploy model digest`

    @property
    def storage_scheme(self) -> str:
        """s3, gs, pvc or local (absolute path inside the image)."""
        for scheme in ("s3", "gs", "pvc"):
            if self.base_path.startswith(f"{scheme}://"):
                return scheme
        return "local"

    @property
    def syncs(self) -> bool:
        """Whether an init container copies the version into an emptyDir before TF Serving starts.

        Auto: for s3:// — stock tensorflow/serving >= 2.7 has no S3 filesystem (it moved to
        tensorflow-io), while GCS is still compiled into TensorFlow — and for gs:// with a pinned
        `digest` (what is checked must be what TF Serving reads). InitContainer: for s3:// and gs://.
        Direct: never (TF Serving reads basePath itself)."""
        if self.storage_scheme not in ("s3", "gs"):
            return False
        if self.sync.mode == "InitContainer":
            return True
        # With a pinned digest, Auto copies gs:// too: only a local copy can be checked before TF Serving reads it.
        return self.sync.mode == "Auto" and (self.storage_scheme == "s3" or self.digest is not None)

    @property
    def pvc_claim_and_path(self) -> tuple[str, str]:
        """(claim, path inside the claim) of a pvc://CLAIM/PATH base path."""
        rest = self.base_path[len("pvc://") :]
        claim, _, path = rest.partition("/")
        return claim, path


class GpuSpec(_Model):
    count: Annotated[int, Field(ge=0, le=8)] = 1
    product: str | None = None
    memory_fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    fallback_to_cpu: bool = Field(False, alias="fallbackToCPU")
    fallback_after: Duration = "5m"

    @property
    def effective_product(self) -> str | None:
        """The nvidia.com/gpu.product node label to select, only when asked for: the label exists only
        where NVIDIA GPU feature discovery runs (GKE, EKS and AKS label GPU nodes differently)."""
        if self.count < 1:
            return None
        return self.product or None

    @property
    def shared(self) -> bool:
        """A time-sliced GPU: feature discovery appends -SHARED to the product (renameByDefault: false)."""
        return bool(self.product and self.product.endswith("-SHARED"))


class Toleration(_Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Resources(_Model):
    requests: dict[str, int | str] = {}
    limits: dict[str, int | str] = {}


class Batching(_Model):
    max_batch_size: Annotated[int, Field(ge=1)] = 32
    batch_timeout_micros: Annotated[int, Field(ge=0)] = 2000
    num_batch_threads: Annotated[int, Field(ge=1)] = 4
    max_enqueued_batches: Annotated[int, Field(ge=1)] = 4


class ServingSpec(_Model):
    image: str = "tensorflow/serving:2.21.0-gpu"
    cpu_image: str = "tensorflow/serving:2.21.0"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    replicas: Annotated[int, Field(ge=0, le=100)] = 1
    min_ready_seconds: Annotated[int, Field(ge=0, le=3600)] = 0  # Deployment spec.minReadySeconds
    gpu: GpuSpec = GpuSpec()
    node_selector: dict[str, str] = {}
    tolerations: tuple[Toleration, ...] = ()
    resources: Resources = Resources()
    batching: Batching | None = None
    service_account_name: str | None = None
    pod_labels: dict[str, str] = {}
    pod_annotations: dict[str, str] = {}


class HeaderMatch(_Model):
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


class MatchRule(_Model):
    headers: dict[str, HeaderMatch] = {}


class CanarySpec(_Model):
    steps: tuple[Annotated[int, Field(ge=1, le=100)], ...] = (10, 25, 50, 100)


class ABTestSpec(_Model):
    match: tuple[MatchRule, ...] = ()
    iterations: Annotated[int, Field(ge=1)] = 10


class BlueGreenSpec(_Model):
    iterations: Annotated[int, Field(ge=1)] = 5
    preview_deadline: Duration = "30m"  # no analysis with data this long after ready: the rollout fails


class ShadowSpec(_Model):
    mirror_percent: Annotated[int, Field(ge=1, le=100)] = 50
    iterations: Annotated[int, Field(ge=1)] = 5


StrategyType = Literal["Canary", "ABTest", "BlueGreen", "Shadow"]


class StickinessSpec(_Model):
    """Study-level stickiness of the Canary split (render/stickiness.py)."""

    header: Annotated[str, Field(pattern=r"^[a-z0-9-]+$", max_length=128)]
    alphabet: Literal["digits", "hex", "alnum"] = "digits"


class CohortSpec(_Model):
    """Only requests matching one of these can reach the new version."""

    match: tuple[MatchRule, ...]


class StrategySpec(_Model):
    type: StrategyType = "Canary"
    canary: CanarySpec = CanarySpec()
    ab_test: ABTestSpec = ABTestSpec()
    blue_green: BlueGreenSpec = BlueGreenSpec()
    shadow: ShadowSpec = ShadowSpec()
    scale_down_delay: Duration = "30s"
    stickiness: StickinessSpec | None = None
    cohort: CohortSpec | None = None


class Bounds(_Model):
    min: float | None = None
    max: float | None = None

    def breached_by(self, value: float) -> bool:
        return (self.min is not None and value < self.min) or (self.max is not None and value > self.max)


Builtin = Literal[
    "latency", "errorRate", "accuracy", "accuracyDrift", "predictionPSI", "nonInferiority", "worstSubgroup"
]
# The evaluator's subgroup attributes (its `attribute` label; the offline report's names, xraymodel.subgroups)
SubgroupAttribute = Literal["sex", "age_band", "view", "site"]


class NonInferiority(_Model):
    """builtin nonInferiority: per finding, the new version's AUROC is at most `margin` below the stable's
    (paired DeLong test on the golden set), with the stated power (analysis/noninferiority.py)."""

    margin: Annotated[float, Field(ge=0, lt=1)]
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.025
    power: Annotated[float, Field(gt=0, lt=1)] = 0.8
    findings: tuple[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=63)], ...] = ()
    sensitivity_margin: Annotated[float, Field(ge=0, lt=1)] | None = None
    min_positives: Annotated[int, Field(ge=2)] = 10


class WorstSubgroup(_Model):
    """builtin worstSubgroup: the canary's LOWEST mean AUROC over the golden set's demographic subgroups
    must be at least the metric's `min`; a subgroup with fewer than `min_positives` positives (of the
    scarcest finding in its mean) is NO DATA, never a pass (analysis/subgroups.py)."""

    attributes: tuple[SubgroupAttribute, ...] = ()  # empty: every attribute the golden set has
    min_positives: Annotated[int, Field(ge=1)] = 10


class MetricSpec(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$", max_length=63)]
    builtin: Builtin | None = None
    quantile: float | None = None
    query: str | None = None
    min: float | None = None
    max: float | None = None
    fail_fast: Bounds | None = None
    window: Duration | None = None
    non_inferiority: NonInferiority | None = None
    worst_subgroup: WorstSubgroup | None = None

    @property
    def bounds(self) -> Bounds:
        return Bounds(min=self.min, max=self.max)

    @property
    def effective_quantile(self) -> float:
        return self.quantile if self.quantile is not None else DEFAULT_LATENCY_QUANTILE


DEFAULT_METRICS = (
    MetricSpec(name="error-rate", builtin="errorRate", max=1),
    MetricSpec(name="latency-p99", builtin="latency", quantile=0.99, max=1000),
)


class AnalysisSpec(_Model):
    interval: Duration = "30s"
    failure_threshold: Annotated[int, Field(ge=1)] = 2
    progress_deadline: Duration = "10m"
    min_requests: Annotated[int, Field(ge=0)] = 100
    on_no_data: Literal["hold", "fail", "rollback"] = "hold"
    fail_fast_interval: Duration = "2s"
    scrape_interval: Duration = "15s"
    metrics: tuple[MetricSpec, ...] = DEFAULT_METRICS

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    @property
    def progress_deadline_seconds(self) -> float:
        return parse_duration(self.progress_deadline)

    @property
    def fail_fast_interval_seconds(self) -> float:
        return parse_duration(self.fail_fast_interval)

    @property
    def scrape_interval_seconds(self) -> float:
        return parse_duration(self.scrape_interval)

    @property
    def fail_fast_metrics(self) -> tuple[MetricSpec, ...]:
        """The metrics with a failFast bound (checked every failFastInterval while a canary is live)."""
        return tuple(m for m in self.metrics if m.fail_fast is not None)

    def window_seconds(self, metric: MetricSpec) -> float:
        """Query window: the metric's own, else max(interval, 4 scrapes) so rate() has >= 4 samples."""
        if metric.window:
            return parse_duration(metric.window)
        return max(self.interval_seconds, 4 * self.scrape_interval_seconds)


class GoldenSet(_Model):
    uri: str
    labels: str = "labels.csv"


class EvaluationSpec(_Model):
    golden_set: GoldenSet
    interval: Duration = "60s"
    image: str | None = None  # None: the operator's evaluator image (render.evaluator.evaluator_image)
    operating_threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 10
    concurrency: Annotated[int, Field(ge=1)] = 4


class RollbackSpec(_Model):
    automatic: bool = True
    on_pod_failure: bool = True  # CrashLoopBackOff / OOMKilled / maxRestarts of new-version pods after ready
    max_restarts: Annotated[int, Field(ge=1, le=100)] = 2


NotificationEvent = Literal["RolloutStarted", "Promoted", "RolledBack", "Failed"]
NOTIFICATION_EVENTS: tuple[NotificationEvent, ...] = ("RolloutStarted", "Promoted", "RolledBack", "Failed")


class SecretKeyRef(_Model):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    key: Annotated[str, Field(min_length=1, max_length=253)]


class UrlFrom(_Model):
    secret_key_ref: SecretKeyRef


class NotificationTarget(_Model):
    """Where to post rollout events: a generic JSON webhook, Slack or Microsoft Teams (modeldeploy.notifications).
    The URL is a credential (whoever has it can post), so it only comes from a Secret in the ModelDeployment's
    namespace."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
    format: Literal["webhook", "slack", "teams"] = "webhook"
    events: tuple[NotificationEvent, ...] = NOTIFICATION_EVENTS
    url_from: UrlFrom


GateType = Literal["preRollout", "confirmPromotion", "rollback"]
# failurePolicy when unset: a gate that cannot answer blocks (Fail) a rollout or a promotion, but never
# triggers a rollback by itself (a rollback gate's error is Ignored)
DEFAULT_FAILURE_POLICY = {"preRollout": "Fail", "confirmPromotion": "Fail", "rollback": "Ignore"}


class GateSpec(_Model):
    """A webhook gate like Flagger's (modeldeploy.gates): the operator POSTs and the answer decides.
    2xx = yes, 202 = not decided yet (asked again every analysis interval), 403 = no; a timeout, a connection
    error or any other status is an error, handled by failure_policy."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
    type: GateType
    url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    url_from: UrlFrom | None = None
    timeout: Duration = "10s"
    deadline: Duration | None = None  # undecided (202) this long after the first ask = an error (failure_policy)
    failure_policy: Literal["Fail", "Ignore"] | None = None
    metadata: dict[str, str] = {}

    @property
    def policy(self) -> str:
        return self.failure_policy or DEFAULT_FAILURE_POLICY[self.type]

    @property
    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout)

    @property
    def deadline_seconds(self) -> float | None:
        return parse_duration(self.deadline) if self.deadline else None


class TrafficSpec(_Model):
    """Who the VirtualService routes besides the sidecars: Istio Gateways it also binds, their hosts."""

    gateways: tuple[str, ...] = ()  # <namespace>/<name> or a bare name (this namespace); 'mesh' is always bound
    hosts: tuple[str, ...] = ()  # external hosts those gateways serve this model under


class ModelDeploymentSpec(_Model):
    model: ModelSpec
    serving: ServingSpec = ServingSpec()
    strategy: StrategySpec = StrategySpec()
    traffic: TrafficSpec = TrafficSpec()
    analysis: AnalysisSpec = AnalysisSpec()
    evaluation: EvaluationSpec | None = None
    rollback: RollbackSpec = RollbackSpec()
    notifications: tuple[NotificationTarget, ...] | None = None  # None: the operator's default targets
    gates: tuple[GateSpec, ...] = ()
    paused: bool = False

    @property
    def evaluation_interval_seconds(self) -> float:
        return parse_duration(self.evaluation.interval) if self.evaluation else 60.0


# --------------------------------------------------------------------------------------------
# Parsing and semantic rules
# --------------------------------------------------------------------------------------------


def _loc_to_path(loc: tuple[object, ...]) -> str:
    path = "spec"
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}"
    return path


def parse_spec(spec: dict) -> ModelDeploymentSpec:
    """Typed spec from a (defaulted) spec dict; SpecError lists every problem with its field path."""
    try:
        parsed = ModelDeploymentSpec.model_validate(spec or {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            elif err["type"] == "missing":
                msg = "required field is missing"
            problems.append(Problem(_loc_to_path(loc), msg))
        raise SpecError(problems) from None
    return parsed
