"""Semantic rules: what the CRD schema and its CEL rules cannot say (templates, durations, regexes...).

The third validation layer (see `modeldeploy.validation`): a typed spec in, every problem with its
field path out. The operator and `modeldeploy validate` both apply it through `validate_manifest`.
"""

from __future__ import annotations

import re

from mdcommon.durations import parse_duration
from modeldeploy import quantity
from modeldeploy.analysis.templates import TemplateProblem, check_query_template
from modeldeploy.spec import EVALUATOR_BUILTINS, ModelDeploymentSpec, Problem, camel

_QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_HEADER_NAME = re.compile(r"^[a-z0-9-]+$")


def semantic_problems(spec: ModelDeploymentSpec) -> list[Problem]:
    """Rules beyond the CRD schema and its CEL rules (the operator and `validate` both apply them)."""
    problems: list[Problem] = []
    analysis = spec.analysis
    for field in ("interval", "progress_deadline", "fail_fast_interval", "scrape_interval"):
        if parse_duration(getattr(analysis, field)) <= 0:
            problems.append(Problem(f"spec.analysis.{camel(field)}", "must be greater than 0"))
    if analysis.interval_seconds < 5:
        problems.append(Problem("spec.analysis.interval", "must be at least 5s"))
    if analysis.progress_deadline_seconds < analysis.interval_seconds:
        problems.append(Problem("spec.analysis.progressDeadline", "must be at least one analysis.interval"))
    if analysis.fail_fast_interval_seconds > analysis.interval_seconds:
        problems.append(Problem("spec.analysis.failFastInterval", "must not be longer than analysis.interval"))
    if spec.serving.min_ready_seconds and spec.serving.min_ready_seconds >= analysis.progress_deadline_seconds:
        problems.append(
            Problem(
                "spec.serving.minReadySeconds",
                "must be shorter than analysis.progressDeadline (pods would never count as available in time)",
            )
        )

    seen: set[str] = set()
    for i, metric in enumerate(analysis.metrics):
        path = f"spec.analysis.metrics[{i}]"
        if metric.name in seen:
            problems.append(Problem(f"{path}.name", f"duplicate metric name {metric.name!r}"))
        seen.add(metric.name)
        if metric.builtin == "nonInferiority":
            if metric.non_inferiority is None:
                problems.append(Problem(f"{path}.nonInferiority", "builtin nonInferiority needs nonInferiority.margin"))
            if metric.min is not None or metric.max is not None:
                problems.append(Problem(path, "nonInferiority is bounded by nonInferiority.margin, not min/max"))
            if metric.fail_fast is not None:
                problems.append(Problem(f"{path}.failFast", "nonInferiority has no fail-fast bound"))
            if metric.non_inferiority is not None and len(set(metric.non_inferiority.findings)) != len(
                metric.non_inferiority.findings
            ):
                problems.append(Problem(f"{path}.nonInferiority.findings", "lists a finding twice"))
        elif metric.builtin == "worstSubgroup":
            if metric.min is None or metric.max is not None:
                problems.append(
                    Problem(path, "builtin worstSubgroup needs min (the lowest subgroup mean AUROC allowed) and no max")
                )
            if metric.fail_fast is not None:
                problems.append(Problem(f"{path}.failFast", "worstSubgroup has no fail-fast bound"))
            ws = metric.worst_subgroup
            if ws is not None and len(set(ws.attributes)) != len(ws.attributes):
                problems.append(Problem(f"{path}.worstSubgroup.attributes", "lists an attribute twice"))
        elif metric.min is None and metric.max is None:
            problems.append(Problem(path, "a metric needs min or max (or both)"))
        if metric.worst_subgroup is not None and metric.builtin != "worstSubgroup":
            problems.append(Problem(f"{path}.worstSubgroup", "only for builtin worstSubgroup"))
        if metric.non_inferiority is not None and metric.builtin != "nonInferiority":
            problems.append(Problem(f"{path}.nonInferiority", "only for builtin nonInferiority"))
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
        problems.append(Problem("spec.strategy.abTest.match", "needs at least one match when strategy.type is ABTest"))
    if strategy.stickiness is not None and strategy.type != "Canary":
        problems.append(Problem("spec.strategy.stickiness", "applies to the Canary weighted split only"))
    if strategy.cohort is not None and not strategy.cohort.match:
        problems.append(Problem("spec.strategy.cohort.match", "needs at least one match"))
    matches = [("abTest", i, rule) for i, rule in enumerate(strategy.ab_test.match)]
    matches += [("cohort", i, rule) for i, rule in enumerate(strategy.cohort.match if strategy.cohort else ())]
    for where, i, rule in matches:
        if not rule.headers:
            problems.append(Problem(f"spec.strategy.{where}.match[{i}]", "needs at least one header condition"))
        for header, cond in rule.headers.items():
            hpath = f"spec.strategy.{where}.match[{i}].headers.{header}"
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
    for field_name in ("gateways", "hosts"):
        values = getattr(spec.traffic, field_name)
        for dup in sorted({v for v in values if values.count(v) > 1}):
            problems.append(Problem(f"spec.traffic.{field_name}", f"lists {dup!r} twice"))
    if parse_duration(strategy.blue_green.preview_deadline) < analysis.interval_seconds:
        problems.append(Problem("spec.strategy.blueGreen.previewDeadline", "must be at least one analysis.interval"))

    gpu = spec.serving.gpu
    if gpu.product is not None and gpu.count < 1:
        problems.append(
            Problem("spec.serving.gpu.product", "needs gpu.count >= 1 (a GPU model is only selected for GPU pods)")
        )
    if gpu.fallback_to_cpu and gpu.count < 1:
        problems.append(Problem("spec.serving.gpu.fallbackToCPU", "needs gpu.count >= 1"))
    for kind in ("requests", "limits"):
        for res, qty in getattr(spec.serving.resources, kind).items():
            if not _QUANTITY.match(str(qty)):
                problems.append(Problem(f"spec.serving.resources.{kind}.{res}", f"{qty!r} is not a quantity"))
    resources = spec.serving.resources
    for res in sorted(set(resources.requests) & set(resources.limits)):
        try:
            above = quantity.value(resources.requests[res]) > quantity.value(resources.limits[res])
        except ValueError:
            continue  # reported above
        if above:
            problems.append(
                Problem(
                    f"spec.serving.resources.requests.{res}",
                    f"{resources.requests[res]} is above its limit {resources.limits[res]} "
                    f"(spec.serving.resources.limits.{res}): Kubernetes refuses a request above its limit; "
                    "raise the limit or leave it out (a request above the default limit raises it)",
                )
            )
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
    problems.extend(_storage_problems(spec))
    problems.extend(_gpu_sharing_problems(spec))
    return problems


# The official image repository; other images (your own builds) are trusted to carry what they need.
_STOCK_TF_SERVING = re.compile(
    r"^(?:(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)/)?tensorflow/serving(?P<rest>[:@].*)?$"
)
_VERSION_TAG = re.compile(r"^:(?P<major>[0-9]+)\.(?P<minor>[0-9]+)(?:\.[0-9]+)?(?:-.*)?$")


def stock_image_lacks_s3(image: str) -> bool:
    """True for a stock tensorflow/serving image of 2.7 or later (also latest, nightly, digests), which
    has no s3:// filesystem: TensorFlow moved S3 support to tensorflow-io (TF 2.6 release notes;
    tensorflow/serving#1963: "File system scheme 's3' not implemented" since 2.7). GCS stays in core."""
    match = _STOCK_TF_SERVING.match(image.strip())
    if match is None:
        return False
    version = _VERSION_TAG.match(match.group("rest") or "")
    if version is None:  # latest, latest-gpu, nightly, a digest: all current builds
        return True
    return (int(version.group("major")), int(version.group("minor"))) >= (2, 7)


def _serving_images(spec: ModelDeploymentSpec) -> list[tuple[str, str]]:
    """(field path, image) of every image that may serve this model (GPU pods, CPU pods, CPU fallback)."""
    serving = spec.serving
    images = []
    if serving.gpu.count >= 1:
        images.append(("spec.serving.image", serving.image))
    if serving.gpu.count == 0 or serving.gpu.fallback_to_cpu:
        images.append(("spec.serving.cpuImage", serving.cpu_image))
    return images


def _storage_problems(spec: ModelDeploymentSpec) -> list[Problem]:
    model = spec.model
    problems: list[Problem] = []
    scheme = model.storage_scheme
    if model.sync.mode == "InitContainer" and scheme not in ("s3", "gs"):
        problems.append(
            Problem("spec.model.sync.mode", f"InitContainer copies from s3:// or gs:// only, not {model.base_path!r}")
        )
    if model.digest is not None and scheme in ("s3", "gs") and not model.syncs:
        problems.append(
            Problem(
                "spec.model.digest",
                "a pinned digest is checked on the init container's copy of the version; with sync.mode Direct "
                "TF Serving reads the store itself, unchecked: use sync.mode Auto or InitContainer",
            )
        )
    if model.sync.size_limit is not None and not _QUANTITY.match(str(model.sync.size_limit)):
        problems.append(Problem("spec.model.sync.sizeLimit", f"{model.sync.size_limit!r} is not a quantity"))
    if scheme == "s3" and not model.syncs:
        for path, image in _serving_images(spec):
            if stock_image_lacks_s3(image):
                problems.append(
                    Problem(
                        path,
                        f"{image} cannot read s3:// model stores (TF Serving >= 2.7 has no S3 filesystem: "
                        "\"File system scheme 's3' not implemented\", the version never loads); with "
                        "spec.model.sync.mode Direct use an image built with the S3 filesystem plugin, or set "
                        "spec.model.sync.mode to Auto so an init container copies the version",
                    )
                )
    return problems


def _gpu_sharing_problems(spec: ModelDeploymentSpec) -> list[Problem]:
    gpu = spec.serving.gpu
    if gpu.count >= 1 and gpu.shared and gpu.memory_fraction is None:
        return [
            Problem(
                "spec.serving.gpu.memoryFraction",
                f"required with a time-sliced GPU ({gpu.product}): TF Serving otherwise claims nearly all of the "
                "GPU's memory and the next pod sharing it runs out of memory (e.g. 0.45 for 2 pods per GPU)",
            )
        ]
    if gpu.memory_fraction is not None and gpu.count < 1:
        return [Problem("spec.serving.gpu.memoryFraction", "needs gpu.count >= 1")]
    return []
