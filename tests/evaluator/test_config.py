"""evaluator.yaml as the operator renders it parses; every bad field is named."""

from __future__ import annotations

import copy

import pytest
import yaml

from modeldeploy.plans import Target, VersionPlan
from modeldeploy.render import evaluator as render_evaluator
from modeldeploy.spec import parse_spec
from xraymodel.evaluator.config import ConfigError, parse_config, parse_config_text

SPEC = {
    "model": {"name": "resnet50_chest_xray", "basePath": "pvc://models/resnet50", "version": 4},
    "evaluation": {"goldenSet": {"uri": "pvc://golden-claim/cxr/v1", "labels": "labels.csv"}, "interval": "30s",
                   "timeoutSeconds": 5, "concurrency": 3, "operatingThreshold": 0.4},
}  # fmt: skip


def _rendered(plans: list[VersionPlan]) -> str:
    target = Target(name="resnet50", namespace="radiology", spec=parse_spec(copy.deepcopy(SPEC)), uid="u-1")
    cm = render_evaluator.configmap(target, plans)
    return cm["data"][render_evaluator.CONFIG_FILE]


def test_the_operators_rendered_config_parses():
    text = _rendered([VersionPlan(3, "stable", 2), VersionPlan(4, "canary", 1), VersionPlan(2, "stable", 0)])
    cfg = parse_config_text(text)
    assert (cfg.namespace, cfg.model_deployment, cfg.model_name) == ("radiology", "resnet50", "resnet50_chest_xray")
    assert cfg.endpoint == "http://resnet50.radiology.svc.cluster.local:8501"
    assert cfg.preview_header == "x-modeldeploy-version" and cfg.signature_name == "serving_default"
    assert cfg.golden_set.uri == "/golden/cxr/v1" and cfg.golden_set.labels == "labels.csv"  # the pvc mount path
    assert (cfg.interval_seconds, cfg.timeout_seconds, cfg.concurrency, cfg.operating_threshold) == (30.0, 5.0, 3, 0.4)
    assert [(v.version, v.role, v.label) for v in cfg.versions] == [(3, "stable", "v3"), (4, "canary", "v4")]  # scaled-to-0 left out
    assert cfg.stable.version == 3
    assert (cfg.batch_size, cfg.retries, cfg.bootstrap_resamples) == (16, 2, 200)  # defaults of the optional extras
    assert cfg.with_endpoint("http://127.0.0.1:9/").endpoint == "http://127.0.0.1:9"


GOOD = yaml.safe_load(_rendered([VersionPlan(1, "stable", 1)]))


@pytest.mark.parametrize(
    "change, field",
    [
        ({"modelName": None}, "modelName"),
        ({"modelName": "bad-name"}, "modelName"),
        ({"endpoint": "tcp://x"}, "endpoint"),
        ({"goldenSet": {"labels": "x.csv"}}, "goldenSet.uri"),
        ({"goldenSet": "s3://x"}, "goldenSet"),
        ({"interval": "soon"}, "interval"),
        ({"interval": "100ms"}, "interval"),
        ({"timeoutSeconds": 0}, "timeoutSeconds"),
        ({"timeoutSeconds": "ten"}, "timeoutSeconds"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"operatingThreshold": 1.5}, "operatingThreshold"),
        ({"versions": {"version": 1}}, "versions"),
        ({"versions": [{"version": 0, "role": "stable"}]}, "versions[0].version"),
        ({"versions": [{"version": True, "role": "stable"}]}, "versions[0].version"),
        ({"versions": [{"version": 1, "role": "preview"}]}, "versions[0].role"),
        ({"versions": [{"version": 1, "role": "stable"}, {"version": 1, "role": "canary"}]}, "versions[1].version"),
        ({"versions": [{"version": 1, "operatingThresholds": [0.5]}]}, "versions[0].operatingThresholds"),
        ({"versions": [{"version": 1, "operatingThresholds": {"Mass": 1.5}}]}, "versions[0].operatingThresholds.Mass"),
        ({"versions": [{"version": 1, "operatingThresholds": {"Mass": "low"}}]}, "versions[0].operatingThresholds.Mass"),
        ({"batchSize": 0}, "batchSize"),
        ({"retries": -1}, "retries"),
    ],
)
def test_bad_fields_are_named(change, field):
    raw = {**GOOD, **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert str(err.value).startswith(field), str(err.value)


@pytest.mark.parametrize("text", ["", "- a list\n", "key: [unclosed\n"])
def test_not_a_config(text):
    with pytest.raises(ConfigError):
        parse_config_text(text)


def test_a_version_carries_its_model_cards_operating_thresholds():
    raw = {**GOOD, "versions": [{"version": 1, "role": "stable", "operatingThresholds": {"Mass": 0.3, "Effusion": 0.12}}]}
    entry = parse_config(raw).versions[0]
    assert entry.operating_thresholds == (("Effusion", 0.12), ("Mass", 0.3))
    assert parse_config(GOOD).versions[0].operating_thresholds == ()
