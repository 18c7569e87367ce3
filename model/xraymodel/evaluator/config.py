"""evaluator.yaml -> EvaluatorConfig: which model, which golden set, which versions, how often.

The operator renders this file into the ConfigMap ``<name>-evaluator`` (modeldeploy.render.evaluator)
and updates it as versions come and go during a rollout; the evaluator re-reads it every round, so
no restart is needed. Fields (the operator writes all of the first group):

    namespace, modelDeployment, modelName, signatureName    identity (metric labels) and the signature
    endpoint            http://<name>.<ns>.svc.<cluster domain>:8501, the Service clients call (stable pods
                        only); used, with previewHeader, for a version listed without its own endpoint
    previewHeader       header naming the version for Istio's per-version route (x-modeldeploy-version)
    goldenSet           {uri, labels}: folder / pvc mount, http(s)://, s3://, gs:// (the sandbox passes a folder)
    interval            Go duration between evaluations of one version ("60s")
    timeoutSeconds      per predict request
    concurrency         predict requests in flight at once, over all versions
    operatingThreshold  probability threshold for sensitivity/specificity; null = Youden point per finding
    versions            [{version: 3, role: stable, endpoint: http://<name>-v3.<ns>.svc.<domain>:8501}, ...]:
                        each version's own Service (selects that version's pods only), called directly,
                        no preview header, no VirtualService involved: works with or without a sidecar.
                        Without `endpoint` (an operator before it rendered one) the version is reached
                        through `endpoint` + previewHeader, which needs the evaluator in the mesh.
                        A version may carry
                        operatingThresholds {finding: threshold} from its model card (chosen on the
                        validation split at training time), used before operatingThreshold and
                        instead of a Youden point fitted on the golden set itself

Optional extras (defaults in brackets): batchSize [16] images per request, retries [2] per request,
bootstrapResamples [200] for the CI of the mean AUROC (0 = off), eceBins [10].
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mdcommon.durations import parse_duration

ROLES = ("stable", "canary")
_MODEL_NAME = re.compile(r"^[a-zA-Z0-9_]+$")


class ConfigError(ValueError):
    """evaluator.yaml is missing, unreadable or names a bad field (the message names it)."""


@dataclass(frozen=True)
class VersionEntry:
    version: int
    role: str
    operating_thresholds: tuple[tuple[str, float], ...] = ()  # (finding, threshold) from the model card
    endpoint: str | None = None  # its own Service's TF Serving REST base URL; None: the shared endpoint + header

    @property
    def label(self) -> str:
        """The ``version`` label value: "v<N>", like the pods' label and Istio's destination_version."""
        return f"v{self.version}"


@dataclass(frozen=True)
class GoldenSetRef:
    uri: str
    labels: str = "labels.csv"


@dataclass(frozen=True)
class EvaluatorConfig:
    namespace: str
    model_deployment: str
    model_name: str
    endpoint: str
    golden_set: GoldenSetRef
    interval_seconds: float
    signature_name: str = "serving_default"
    preview_header: str = "x-modeldeploy-version"
    timeout_seconds: float = 10.0
    concurrency: int = 4
    operating_threshold: float | None = None
    versions: tuple[VersionEntry, ...] = ()
    batch_size: int = 16
    retries: int = 2
    bootstrap_resamples: int = 200
    ece_bins: int = 10
    interval: str = field(default="60s", compare=False)

    @property
    def stable(self) -> VersionEntry | None:
        return next((v for v in self.versions if v.role == "stable"), None)

    def with_endpoint(self, endpoint: str | None) -> "EvaluatorConfig":
        """Every version reached at `endpoint` instead (e.g. `kubectl port-forward`): the shared endpoint
        and each version's own are replaced; the preview header then names the version."""
        if not endpoint:
            return self
        from dataclasses import replace

        versions = tuple(replace(v, endpoint=None) for v in self.versions)
        return replace(self, endpoint=endpoint.rstrip("/"), versions=versions)


def _require(raw: dict, key: str, kind: type | tuple[type, ...]) -> object:
    if key not in raw or raw[key] is None:
        raise ConfigError(f"{key}: required")
    value = raw[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _number(raw: dict, key: str, default: float, *, minimum: float, integer: bool = False, strict_min: bool = False) -> float:
    value = raw.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise ConfigError(f"{key}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    if value < minimum or (strict_min and value == minimum):
        raise ConfigError(f"{key}: must be {'>' if strict_min else '>='} {minimum}, got {value!r}")
    return int(value) if integer else float(value)


def parse_config(raw: object) -> EvaluatorConfig:
    """Validate a parsed evaluator.yaml; ConfigError names the first bad field."""
    if not isinstance(raw, dict):
        raise ConfigError("evaluator.yaml: expected a mapping at the top level")
    model_name = str(_require(raw, "modelName", str))
    if not _MODEL_NAME.match(model_name):
        raise ConfigError(f"modelName: {model_name!r} is not a TF Serving model name (^[a-zA-Z0-9_]+$)")
    endpoint = str(_require(raw, "endpoint", str)).rstrip("/")
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"endpoint: expected an http(s) URL, got {endpoint!r}")
    golden = _require(raw, "goldenSet", dict)
    uri = golden.get("uri")
    if not isinstance(uri, str) or not uri:
        raise ConfigError("goldenSet.uri: required")
    labels = golden.get("labels") or "labels.csv"
    if not isinstance(labels, str):
        raise ConfigError(f"goldenSet.labels: expected a file name, got {labels!r}")
    interval = raw.get("interval", "60s")
    try:
        interval_seconds = parse_duration(str(interval))
    except ValueError as exc:
        raise ConfigError(f"interval: {exc}") from None
    if interval_seconds < 1:
        raise ConfigError(f"interval: must be at least 1s, got {interval!r}")
    threshold = raw.get("operatingThreshold")
    if threshold is not None:
        threshold = _number(raw, "operatingThreshold", 0.5, minimum=0.0)
        if threshold > 1:
            raise ConfigError(f"operatingThreshold: must be within 0..1, got {threshold!r}")
    versions_raw = raw.get("versions") or []
    if not isinstance(versions_raw, list):
        raise ConfigError("versions: expected a list of {version, role}")
    versions: list[VersionEntry] = []
    for i, entry in enumerate(versions_raw):
        if not isinstance(entry, dict):
            raise ConfigError(f"versions[{i}]: expected {{version, role}}, got {entry!r}")
        number = entry.get("version")
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ConfigError(f"versions[{i}].version: expected an integer >= 1, got {number!r}")
        role = entry.get("role", "canary")
        if role not in ROLES:
            raise ConfigError(f"versions[{i}].role: expected one of {ROLES}, got {role!r}")
        if any(v.version == number for v in versions):
            raise ConfigError(f"versions[{i}].version: {number} listed twice")
        thresholds_raw = entry.get("operatingThresholds") or {}
        if not isinstance(thresholds_raw, dict):
            raise ConfigError(f"versions[{i}].operatingThresholds: expected {{finding: threshold}}, got {thresholds_raw!r}")
        thresholds = []
        for finding, value in sorted(thresholds_raw.items()):
            where = f"versions[{i}].operatingThresholds.{finding}"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"{where}: expected a number within 0..1, got {value!r}")
            thresholds.append((str(finding), float(value)))
        own = entry.get("endpoint")
        if own is not None and (not isinstance(own, str) or not own.startswith(("http://", "https://"))):
            raise ConfigError(f"versions[{i}].endpoint: expected an http(s) URL, got {own!r}")
        versions.append(VersionEntry(int(number), str(role), tuple(thresholds), own.rstrip("/") if own else None))
    return EvaluatorConfig(
        namespace=str(raw.get("namespace") or "default"),
        model_deployment=str(raw.get("modelDeployment") or model_name),
        model_name=model_name,
        endpoint=endpoint,
        golden_set=GoldenSetRef(uri, labels),
        interval_seconds=interval_seconds,
        interval=str(interval),
        signature_name=str(raw.get("signatureName") or "serving_default"),
        preview_header=str(raw.get("previewHeader") or "x-modeldeploy-version"),
        timeout_seconds=_number(raw, "timeoutSeconds", 10.0, minimum=0.0, strict_min=True),
        concurrency=int(_number(raw, "concurrency", 4, minimum=1, integer=True)),
        operating_threshold=threshold,
        versions=tuple(versions),
        batch_size=int(_number(raw, "batchSize", 16, minimum=1, integer=True)),
        retries=int(_number(raw, "retries", 2, minimum=0, integer=True)),
        bootstrap_resamples=int(_number(raw, "bootstrapResamples", 200, minimum=0, integer=True)),
        ece_bins=int(_number(raw, "eceBins", 10, minimum=1, integer=True)),
    )


def read_config_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (yet)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_config_text(text: str) -> EvaluatorConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"evaluator.yaml: not YAML: {exc}") from None
    return parse_config(raw)


def load_config(path: str | Path) -> EvaluatorConfig:
    return parse_config_text(read_config_text(path))
