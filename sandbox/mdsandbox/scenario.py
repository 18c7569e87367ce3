"""Sandbox scenario files (../shared/design/scenario-format.md is the contract): parsing and validation.

`load_scenario(path)` returns a `Scenario` or raises `ScenarioError` naming the bad field
(`versions["2"].latencyMs.p95: ...`), which `modeldeploy sandbox run` turns into exit code 2.
Unknown keys are errors too: a typo in a rehearsal of a production rollout policy must not pass
silently. The embedded ModelDeployment is validated exactly like the operator validates it.
"""

from __future__ import annotations

import pathlib
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modeldeploy.validation import validate_manifest


class ScenarioError(ValueError):
    """A scenario file that cannot run; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LatencyMs(_Strict):
    p50: Annotated[float, Field(gt=0)]
    p95: Annotated[float, Field(gt=0)]

    @model_validator(mode="after")
    def _ordered(self) -> LatencyMs:
        if self.p95 < self.p50:
            raise ValueError("p95 must be >= p50")
        return self


FindingAccuracy = dict[str, Annotated[float, Field(gt=0.5, lt=1)]]  # extra: {finding: AUROC}
# extra: {attribute: {subgroup: mean AUROC}}, ONE subgroup ({view: {AP: 0.72}}); the mean stays `accuracy`
SubgroupAccuracy = dict[Literal["sex", "age_band", "view", "site"], dict[str, Annotated[float, Field(gt=0.5, lt=1)]]]


def _check_subgroup(pins: dict | None) -> None:
    from mdsandbox.synthetic_golden import subgroup_pin

    subgroup_pin(pins)


def _check_findings(pins: dict[str, float] | None) -> None:
    from xraymodel.findings import FINDINGS

    for finding in pins or {}:
        if finding not in FINDINGS:
            raise ValueError(f"findingAccuracy: unknown finding {finding!r} (one of {', '.join(FINDINGS)})")


class Change(_Strict):
    after: Annotated[float, Field(ge=0)]
    latencyMs: LatencyMs | None = None
    errorRate: Annotated[float, Field(ge=0, le=1)] | None = None
    accuracy: Annotated[float, Field(ge=0.5, le=1)] | None = None
    findingAccuracy: FindingAccuracy | None = None
    subgroupAccuracy: SubgroupAccuracy | None = None
    outputShift: Annotated[float, Field(ge=-1, le=1)] | None = None
    ready: bool | None = None
    # extra: TF Serving's state of the version from then on (END: it was unloaded or failed after loading)
    modelState: Literal["START", "LOADING", "AVAILABLE", "UNLOADING", "END"] | None = None

    @model_validator(mode="after")
    def _findings(self) -> Change:
        _check_findings(self.findingAccuracy)
        _check_subgroup(self.subgroupAccuracy)
        return self


class Crash(_Strict):
    """(extra) The version's TF Serving container crashes `after` seconds after its pods became ready."""

    after: Annotated[float, Field(ge=0)]
    reason: Literal["OOMKilled", "Error"] = "OOMKilled"


class VersionBehaviour(_Strict):
    latencyMs: LatencyMs = LatencyMs(p50=25, p95=40)
    crash: Crash | None = None  # extra
    errorRate: Annotated[float, Field(ge=0, le=1)] = 0.001
    accuracy: Annotated[float, Field(ge=0.5, le=1)] = 0.84
    findingAccuracy: FindingAccuracy | None = None  # extra: these findings' AUROCs; the mean stays `accuracy`
    subgroupAccuracy: SubgroupAccuracy | None = None  # extra: one subgroup's mean AUROC; the mean stays `accuracy`
    outputShift: Annotated[float, Field(ge=-1, le=1)] = 0.0
    ready: bool = True
    # extra: the version's model card thresholds, served by its model_card signature; absent = an export without it
    operatingThresholds: dict[str, Annotated[float, Field(ge=0, le=1)]] | None = None
    changes: list[Change] = []

    @model_validator(mode="after")
    def _findings(self) -> VersionBehaviour:
        _check_findings(self.findingAccuracy)
        _check_subgroup(self.subgroupAccuracy)
        for finding in self.operatingThresholds or {}:
            _check_findings({finding: 0.0})
        return self


class HeaderShare(_Strict):
    share: Annotated[float, Field(ge=0, le=1)]
    set: dict[str, str]


class StudySites(_Strict):
    header: Annotated[str, Field(pattern=r"^[a-z0-9-]+$")]
    values: Annotated[list[str], Field(min_length=1)]


class Studies(_Strict):
    """(extra) Clients that send the images of a study under one key (mdsandbox.studies)."""

    share: Annotated[float, Field(ge=0, le=1)] = 1.0
    header: Annotated[str, Field(pattern=r"^[a-z0-9-]+$")] = "x-study-instance-uid"
    imagesPerStudy: Annotated[int, Field(ge=1, le=1000)] = 4
    pin: bool = False  # pin an open study to the version named by the x-modeldeploy-served-by response header
    sites: StudySites | None = None


class GatewayClients(_Strict):
    """(extra) A share of the requests enters through an Istio ingress gateway."""

    share: Annotated[float, Field(gt=0, le=1)]
    name: Annotated[str, Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    host: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]  # the Host header they send


class NonMeshClients(_Strict):
    """(extra) A share of the requests comes from clients without a sidecar (kube-proxy)."""

    share: Annotated[float, Field(gt=0, le=1)]


class Traffic(_Strict):
    rps: Annotated[float, Field(ge=0)] = 40
    headers: HeaderShare | dict = {}
    studies: Studies | None = None  # extra
    gateway: GatewayClients | None = None  # extra
    nonMesh: NonMeshClients | None = None  # extra

    @model_validator(mode="after")
    def _headers(self) -> Traffic:
        if isinstance(self.headers, dict) and self.headers:
            self.headers = HeaderShare.model_validate(self.headers)
        shares = (self.gateway.share if self.gateway else 0.0) + (self.nonMesh.share if self.nonMesh else 0.0)
        if shares > 1.0:
            raise ValueError(f"gateway.share + nonMesh.share is {shares:g}: at most 1 (the rest are mesh clients)")
        return self


class Event(_Strict):
    at: Annotated[float, Field(ge=0)]
    setVersion: Annotated[int, Field(ge=1)] | None = None
    annotate: dict[str, str] | None = None
    prometheus: Literal["down", "up"] | None = None
    operator: Literal["restart", "kill", "start"] | None = None
    patch: dict[str, Any] | None = None  # extra: a merge patch of the ModelDeployment's spec
    apiFaults: dict[str, Any] | None = None  # extra: API emulator faults aimed at the operator ({} = off)
    gpuCapacity: Annotated[int, Field(ge=0)] | None = None  # extra: GPUs in the simulated cluster from now on

    @model_validator(mode="after")
    def _one_action(self) -> Event:
        actions = [
            k
            for k in ("setVersion", "annotate", "prometheus", "operator", "patch", "apiFaults", "gpuCapacity")
            if getattr(self, k) is not None
        ]
        if len(actions) != 1:
            raise ValueError(
                f"an event needs exactly one of setVersion, annotate, prometheus, operator, patch, apiFaults, gpuCapacity (got {actions or 'none'})"
            )
        if self.apiFaults:
            from kubeemu.faults import FaultConfig

            FaultConfig.from_json(self.apiFaults)
        if self.annotate is not None:
            for key, value in self.annotate.items():
                if key == "modeldeploy.io/action" and value not in (
                    "promote",
                    "promote-full",
                    "abort",
                    "pause",
                    "resume",
                    "retry",
                ):
                    raise ValueError(f"annotate: unknown action {value!r}")
        return self

    @property
    def kind(self) -> str:
        for k in ("setVersion", "annotate", "prometheus", "operator", "patch", "apiFaults", "gpuCapacity"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError


class Expect(_Strict):
    outcome: Literal["promoted", "rolledBack", "progressing", "failed", "stable"] | None = None
    stableVersion: Annotated[int, Field(ge=1)] | None = None
    rollbackWithinSeconds: Annotated[float, Field(gt=0)] | None = None
    promotionWithinSeconds: Annotated[float, Field(gt=0)] | None = None  # extra
    neverWeightAbove: Annotated[int, Field(ge=0, le=100)] | None = None
    neverPromoted: bool | None = None  # extra: no promotion at all during the run
    historyActions: list[str] | None = None  # extra: status.history actions, in order (after the first deploy)
    weightNeverBackwards: bool | None = None  # extra: within one rollout, routed weight only grows (until it ends)
    eventReasons: list[str] | None = (
        None  # extra: these Event reasons were emitted (in this order, others may interleave)
    )
    historyReasonContains: list[str] | None = None  # extra: each text appears in some history record's reason
    maxStudiesOnTwoVersions: Annotated[int, Field(ge=0)] | None = None  # extra: studies answered by 2+ versions
    sitesOnlyOnStable: list[str] | None = None  # extra: studies of these sites never reached another version
    minStudies: Annotated[int, Field(ge=0)] | None = None  # extra: at least this many studies were completed
    # extra: these client classes got answers, none from a version that had not been stable by then
    neverServedUnvetted: list[Literal["mesh", "gateway", "nonMesh"]] | None = None
    # extra: {receiver: [events]}: each receiver got exactly these notification events, in the order they first
    # arrived (a retry repeats one)
    notificationsReceived: dict[str, list[str]] | None = None


class WebhookAnswer(_Strict):
    from_: Annotated[float, Field(ge=0, alias="from")] = 0.0  # scenario seconds from which this answer holds
    status: Annotated[int, Field(ge=100, le=599)] = 200
    body: dict[str, Any] = {}


class Webhook(_Strict):
    """(extra) One HTTP receiver the sandbox serves on 127.0.0.1 (mdsandbox.webhooks)."""

    hangSeconds: Annotated[float, Field(ge=0, le=300)] = 0.0
    answers: list[WebhookAnswer] = []

    @model_validator(mode="after")
    def _ordered(self) -> Webhook:
        froms = [a.from_ for a in self.answers]
        if froms != sorted(froms):
            raise ValueError("answers: `from` must not decrease")
        return self


_DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class Cluster(_Strict):
    """(extra) The simulated cluster's capacity."""

    gpuCapacity: Annotated[int, Field(ge=0)] | None = None  # nvidia.com/gpu in total; None = unlimited
    # kubelet's --cluster-domain: the simulated mesh resolves <svc>.<ns>.svc.<domain> only, and the
    # operator runs with MODELDEPLOY_CLUSTER_DOMAIN set to it (as the Helm value clusterDomain does)
    domain: Annotated[str, Field(pattern=_DNS_NAME)] = "cluster.local"


class Scenario(_Strict):
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    modelDeployment: dict[str, Any]
    traffic: Traffic = Traffic()
    versions: dict[str, VersionBehaviour]
    events: list[Event] = []
    until: Annotated[float, Field(gt=0)]
    expect: Expect = Expect()
    scrapeInterval: Annotated[float, Field(gt=0, le=15)] = 1.0  # extra: Prometheus scrape interval, seconds
    evaluator: bool | None = None  # extra: run the online evaluator (default: when spec.evaluation is set)
    cluster: Cluster = Cluster()  # extra: simulated cluster capacity
    webhooks: dict[str, Webhook] = {}  # extra: HTTP receivers on 127.0.0.1 (notifications, gates): mdsandbox.webhooks

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        for key in self.versions:
            if not key.isdigit() or int(key) < 1:
                raise ValueError(f"versions: keys must be model versions (integers >= 1), not {key!r}")
        for i, event in enumerate(self.events):
            if event.at > self.until:
                raise ValueError(f"events[{i}].at: {event.at} is after until ({self.until})")
        return self

    @property
    def namespace(self) -> str:
        return (self.modelDeployment.get("metadata") or {}).get("namespace") or "default"

    @property
    def md_name(self) -> str:
        return self.modelDeployment["metadata"]["name"]

    @property
    def initial_version(self) -> int:
        return int(self.modelDeployment["spec"]["model"]["version"])

    def behaviour_dict(self) -> dict[str, dict]:
        """The versions in the fleet's input format (plain dicts, contract field names)."""
        # crash is the pods' business (mdsandbox.controllers), not the fleet's
        return {k: v.model_dump(exclude_none=True, exclude={"crash"}) for k, v in self.versions.items()}


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out in ("versions",) or (out.startswith("versions") and out.count(".") == 0 and not out.endswith("]")):
            out += f'["{part}"]'
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_scenario(raw: Any, base_dir: pathlib.Path | None = None) -> Scenario:
    if not isinstance(raw, dict):
        raise ScenarioError("scenario: must be a YAML mapping")
    raw = dict(raw)
    md = raw.get("modelDeployment")
    if isinstance(md, dict) and set(md) == {"file"}:
        path = pathlib.Path(md["file"])
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            raw["modelDeployment"] = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ScenarioError(f"modelDeployment.file: cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ScenarioError(f"modelDeployment.file: {path} is not YAML: {exc}") from None
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(
            p
            for p in err["loc"]
            if not (isinstance(p, str) and (p.startswith("function-") or p in ("HeaderShare", "dict[any,any]")))
        )
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise ScenarioError(f"{_path(loc) or 'scenario'}: {message}{more}") from None
    result = validate_manifest(scenario.modelDeployment)
    if not result.ok:
        first = result.problems[0]
        raise ScenarioError(f"modelDeployment.{first.path}: {first.message}")
    if str(scenario.initial_version) not in scenario.versions:
        raise ScenarioError(f"versions: no behaviour for the initial version {scenario.initial_version}")
    for i, event in enumerate(scenario.events):
        if event.setVersion is not None and str(event.setVersion) not in scenario.versions:
            raise ScenarioError(f"events[{i}].setVersion: no behaviour for version {event.setVersion} under versions")
    return scenario


def load_scenario(path: str | pathlib.Path) -> Scenario:
    path = pathlib.Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not YAML: {exc}") from None
    return parse_scenario(raw, path.parent)
