"""Typed ModelDeployment spec (pydantic v2) and the semantic rules the CRD schema cannot express.

`parse_spec(spec_dict)` takes a spec that already has the CRD defaults applied (see
`modeldeploy.validation.apply_defaults`) and returns a frozen `ModelDeploymentSpec`, or raises
`SpecError` with one `Problem` per broken rule, each naming the field path (``spec.analysis...``).
The operator and ``modeldeploy validate`` share this code, so both say the same thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modeldeploy.durations import parse_duration

EVALUATOR_BUILTINS = frozenset({"accuracy", "accuracyDrift", "predictionPSI"})
DEFAULT_GPU_PRODUCT = "Tesla-T4"
DEFAULT_LATENCY_QUANTILE = 0.99


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


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


Duration = Annotated[str, Field(pattern=r"^(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+$")]


class S3Settings(_Model):
    endpoint: str | None = None
    region: str | None = None
    use_https: bool = True
    verify_ssl: bool = True


class ModelSpec(_Model):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_]+$", min_length=1, max_length=128)]
    base_path: str
    version: Annotated[int, Field(ge=1)]
    signature_name: str = "serving_default"
    credentials_secret: str | None = None
    s3: S3Settings | None = None

    @property
    def storage_scheme(self) -> str:
        """s3, gs, pvc or local (absolute path inside the image)."""
        for scheme in ("s3", "gs", "pvc"):
            if self.base_path.startswith(f"{scheme}://"):
                return scheme
        return "local"

    @property
    def pvc_claim_and_path(self) -> tuple[str, str]:
        """(claim, path inside the claim) of a pvc://CLAIM/PATH base path."""
        rest = self.base_path[len("pvc://"):]
        claim, _, path = rest.partition("/")
        return claim, path


class GpuSpec(_Model):
    count: Annotated[int, Field(ge=0, le=8)] = 1
    product: str | None = None
    fallback_to_cpu: bool = Field(False, alias="fallbackToCPU")
    fallback_after: Duration = "5m"

    @property
    def effective_product(self) -> str | None:
        if self.count < 1:
            return None
        return self.product or DEFAULT_GPU_PRODUCT


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


class ShadowSpec(_Model):
    mirror_percent: Annotated[int, Field(ge=1, le=100)] = 50
    iterations: Annotated[int, Field(ge=1)] = 5


StrategyType = Literal["Canary", "ABTest", "BlueGreen", "Shadow"]


class StrategySpec(_Model):
    type: StrategyType = "Canary"
    canary: CanarySpec = CanarySpec()
    ab_test: ABTestSpec = ABTestSpec()
    blue_green: BlueGreenSpec = BlueGreenSpec()
    shadow: ShadowSpec = ShadowSpec()
    scale_down_delay: Duration = "30s"


class Bounds(_Model):
    min: float | None = None
    max: float | None = None

    def breached_by(self, value: float) -> bool:
        return (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        )


Builtin = Literal["latency", "errorRate", "accuracy", "accuracyDrift", "predictionPSI"]


class MetricSpec(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$", max_length=63)]
    builtin: Builtin | None = None
    quantile: float | None = None
    query: str | None = None
    min: float | None = None
    max: float | None = None
    fail_fast: Bounds | None = None
    window: Duration | None = None

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
    image: str = "ghcr.io/modeldeploy/evaluator:0.1.0"
    operating_threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 10
    concurrency: Annotated[int, Field(ge=1)] = 4


class RollbackSpec(_Model):
    automatic: bool = True


class ModelDeploymentSpec(_Model):
    model: ModelSpec
    serving: ServingSpec = ServingSpec()
    strategy: StrategySpec = StrategySpec()
    analysis: AnalysisSpec = AnalysisSpec()
    evaluation: EvaluationSpec | None = None
    rollback: RollbackSpec = RollbackSpec()
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


_QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_HEADER_NAME = re.compile(r"^[a-z0-9-]+$")


def semantic_problems(spec: ModelDeploymentSpec) -> list[Problem]:
    """Rules beyond the CRD schema and its CEL rules (the operator and `validate` both apply them)."""
    from modeldeploy.analysis.templates import TemplateProblem, check_query_template

    problems: list[Problem] = []
    analysis = spec.analysis
    for field in ("interval", "progress_deadline", "fail_fast_interval", "scrape_interval"):
        if parse_duration(getattr(analysis, field)) <= 0:
            problems.append(Problem(f"spec.analysis.{_camel(field)}", "must be greater than 0"))
    if analysis.interval_seconds < 5:
        problems.append(Problem("spec.analysis.interval", "must be at least 5s"))
    if analysis.progress_deadline_seconds < analysis.interval_seconds:
        problems.append(
            Problem("spec.analysis.progressDeadline", "must be at least one analysis.interval")
        )
    if analysis.fail_fast_interval_seconds > analysis.interval_seconds:
        problems.append(
            Problem("spec.analysis.failFastInterval", "must not be longer than analysis.interval")
        )

    seen: set[str] = set()
    for i, metric in enumerate(analysis.metrics):
        path = f"spec.analysis.metrics[{i}]"
        if metric.name in seen:
            problems.append(Problem(f"{path}.name", f"duplicate metric name {metric.name!r}"))
        seen.add(metric.name)
        if metric.min is None and metric.max is None:
            problems.append(Problem(path, "a metric needs min or max (or both)"))
        if (metric.builtin is None) == (metric.query is None):
            problems.append(Problem(path, "a metric needs exactly one of builtin or query"))
        if metric.quantile is not None:
            if metric.builtin != "latency":
                problems.append(Problem(f"{path}.quantile", "quantile is only for the latency builtin"))
            elif not 0 < metric.quantile < 1:
                problems.append(Problem(f"{path}.quantile", "must be between 0 and 1 (exclusive)"))
        if metric.min is not None and metric.max is not None and metric.min > metric.max:
            problems.append(Problem(path, "min must not be greater than max"))
        if metric.builtin in EVALUATOR_BUILTINS and spec.evaluation is None:
            problems.append(
                Problem(f"{path}.builtin", f"{metric.builtin} needs spec.evaluation (the online golden-set evaluator)")
            )
        if metric.fail_fast is not None:
            ff = metric.fail_fast
            if ff.min is None and ff.max is None:
                problems.append(Problem(f"{path}.failFast", "failFast needs min or max"))
            if ff.max is not None and metric.max is not None and ff.max < metric.max:
                problems.append(
                    Problem(f"{path}.failFast.max", "must be at least the metric's max (fail-fast is the hard limit)")
                )
            if ff.min is not None and metric.min is not None and ff.min > metric.min:
                problems.append(
                    Problem(f"{path}.failFast.min", "must be at most the metric's min (fail-fast is the hard limit)")
                )
        if metric.window is not None and parse_duration(metric.window) < analysis.scrape_interval_seconds * 2:
            problems.append(
                Problem(f"{path}.window", "must cover at least 2 scrapes (analysis.scrapeInterval) for rate()")
            )
        if metric.query is not None:
            try:
                check_query_template(metric.query)
            except TemplateProblem as exc:
                problems.append(Problem(f"{path}.query", str(exc)))

    strategy = spec.strategy
    steps = strategy.canary.steps
    if any(b <= a for a, b in zip(steps, steps[1:])):
        problems.append(Problem("spec.strategy.canary.steps", "must be strictly increasing"))
    if strategy.type == "ABTest" and not strategy.ab_test.match:
        problems.append(
            Problem("spec.strategy.abTest.match", "needs at least one match when strategy.type is ABTest")
        )
    for i, rule in enumerate(strategy.ab_test.match):
        if not rule.headers:
            problems.append(Problem(f"spec.strategy.abTest.match[{i}]", "needs at least one header condition"))
        for header, cond in rule.headers.items():
            hpath = f"spec.strategy.abTest.match[{i}].headers.{header}"
            if not _HEADER_NAME.match(header):
                problems.append(Problem(hpath, "header names must be lower case (Istio matches them lower-cased)"))
            set_fields = [f for f in ("exact", "prefix", "regex") if getattr(cond, f) is not None]
            if len(set_fields) != 1:
                problems.append(Problem(hpath, "a header match needs exactly one of exact, prefix or regex"))
            if cond.regex is not None:
                try:
                    re.compile(cond.regex)
                except re.error as exc:
                    problems.append(Problem(f"{hpath}.regex", f"not a valid regular expression: {exc}"))
    parse_duration(strategy.scale_down_delay)

    gpu = spec.serving.gpu
    if gpu.product is not None and gpu.count < 1:
        problems.append(Problem("spec.serving.gpu.product", "needs gpu.count >= 1 (a GPU model is only selected for GPU pods)"))
    if gpu.fallback_to_cpu and gpu.count < 1:
        problems.append(Problem("spec.serving.gpu.fallbackToCPU", "needs gpu.count >= 1"))
    for kind in ("requests", "limits"):
        for res, qty in getattr(spec.serving.resources, kind).items():
            if not _QUANTITY.match(str(qty)):
                problems.append(Problem(f"spec.serving.resources.{kind}.{res}", f"{qty!r} is not a quantity"))
    if spec.model.storage_scheme == "pvc":
        claim, _ = spec.model.pvc_claim_and_path
        if not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", claim or ""):
            problems.append(Problem("spec.model.basePath", "pvc:// needs a claim name: pvc://CLAIM/PATH"))
    if spec.model.storage_scheme in ("s3", "gs"):
        bucket = spec.model.base_path.split("://", 1)[1].split("/", 1)[0]
        if not bucket:
            problems.append(Problem("spec.model.basePath", "needs a bucket: s3://BUCKET/PATH"))
    if spec.model.s3 is not None and spec.model.storage_scheme != "s3":
        problems.append(Problem("spec.model.s3", "only applies to s3:// base paths"))
    return problems


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
    problems = semantic_problems(parsed)
    if problems:
        raise SpecError(problems)
    return parsed
