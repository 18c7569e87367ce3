"""The model card served by TF Serving's ``model_card`` signature (issue 16 item 4), read by the evaluator.

Unit tables for `xraymodel.served_card` (what a card must be for the evaluator to use it), then the
simulated fleet: a version whose scenario entry has ``operatingThresholds`` serves them; one without
answers TF Serving's 400 "not found in signature def" (an older export) and the evaluator falls back,
saying why in its metrics; thresholds given in evaluator.yaml still win.
"""

from __future__ import annotations

import base64
import copy
import json

import pytest
import yaml

from evaluator_testkit import MODEL, SMALL_GOLDEN, parse_metrics, pick, value, write_config
from mdsandbox.fleet import SimulatedFleet
from mdsandbox.fleet.behaviour import VersionBehaviour
from mdsandbox.synthetic_golden import GoldenSet
from xraymodel.evaluator.client import PredictFailure, TFServingClient
from xraymodel.evaluator.exporter import EvaluatorMetrics
from xraymodel.evaluator.service import Evaluator
from xraymodel.findings import FINDINGS
from xraymodel.served_card import (
    NOT_FOUND,
    ServedCardError,
    canonical_sha256,
    is_signature_missing,
    parse_served_card,
    served_card_document,
    served_card_json,
)

CARD = {
    "schema": "xraymodel.model_card/v1",
    "model_name": MODEL,
    "version": 4,
    "labels": list(FINDINGS),
    "head": "multilabel",
    "operating_thresholds": {f: 0.3 for f in FINDINGS},
    "operating_thresholds_source": "Youden's J on the validation split",
    "operating_thresholds_scale": "calibrated",
    "operating_points_target_sensitivity": {**{f: None for f in FINDINGS},
                                            "Mass": {"target_sensitivity": 0.9, "threshold": 0.12, "sensitivity": 0.91}},
    "calibration": {"method": "Platt", "applied_in_serving_graph": True,
                    "per_label": {f: {"slope": 1.1, "intercept": -0.2, "ece_before": 0.1} for f in FINDINGS}},
    "metrics": {"mean_auroc": 0.8},
}  # fmt: skip


def _answer(document: dict | str) -> dict:
    text = document if isinstance(document, str) else json.dumps(document)
    return {"predictions": [text]}


def _resigned(mutate) -> dict:
    doc = served_card_document(CARD)
    mutate(doc)
    doc.pop("content_sha256")
    doc["content_sha256"] = canonical_sha256(doc)
    return doc


def test_the_served_card_is_the_cards_values_with_their_digest():
    doc = served_card_document(CARD)
    for key in ("model_name", "version", "labels", "head", "operating_thresholds", "operating_thresholds_scale",
                "operating_points_target_sensitivity"):  # fmt: skip
        assert doc[key] == CARD[key]
    assert doc["calibration"]["per_label"]["Mass"] == {"slope": 1.1, "intercept": -0.2}  # a summary
    assert "metrics" not in doc
    assert doc["content_sha256"] == canonical_sha256({k: v for k, v in doc.items() if k != "content_sha256"})
    assert json.loads(served_card_json(CARD)) == doc


@pytest.mark.parametrize("wrap", ["plain", "b64", "object-row"])
def test_the_target_sensitivity_point_wins_over_the_cards_youden_threshold(wrap):
    text = served_card_json(CARD)
    row = {"plain": text, "b64": {"b64": base64.b64encode(text.encode()).decode()},
           "object-row": {"model_card_json": text}}[wrap]  # fmt: skip
    card = parse_served_card({"predictions": [row]}, version=4, labels=FINDINGS)
    thresholds = card.operating_thresholds
    assert thresholds["Mass"] == 0.12 and dict(card.threshold_kinds)["Mass"] == "target sensitivity"
    assert thresholds["Effusion"] == 0.3 and dict(card.threshold_kinds)["Effusion"] == "operating threshold"
    assert len(thresholds) == 14 and card.content_sha256 == json.loads(text)["content_sha256"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": "boom"}, "error"),
        ([], "not an object"),
        ({"predictions": []}, "non-empty"),
        ({"predictions": [[0.5] * 14]}, "not a string"),
        (_answer("{not json"), "not JSON"),
        (_answer({**served_card_document(CARD), "schema": "other/v9"}), "schema"),
        (_answer({**served_card_document(CARD), "operating_thresholds": {f: 0.9 for f in FINDINGS}}), "does not match"),
        (_answer(_resigned(lambda d: d.update(version=3))), "version 3"),
        (_answer(_resigned(lambda d: d.update(labels=list(reversed(FINDINGS))))), "labels"),
        (_answer(_resigned(lambda d: d.update(labels=list(FINDINGS)[:13]))), "labels"),
        (_answer(_resigned(lambda d: d["operating_thresholds"].update(Mass=1.5))), "operating_thresholds.Mass"),
        (_answer(_resigned(lambda d: d["operating_thresholds"].update(Mass="low"))), "operating_thresholds.Mass"),
        (_answer(_resigned(lambda d: d["operating_thresholds"].update(Banana=0.2))), "unknown findings"),
        (_answer(_resigned(lambda d: d["operating_points_target_sensitivity"]["Mass"].update(threshold=-0.1))),
         "operating_points_target_sensitivity.Mass.threshold"),
        (_answer(_resigned(lambda d: d.update(operating_thresholds_scale="logits"))), "scale"),
    ],
)
def test_a_card_the_evaluator_must_not_use_is_refused_with_the_reason(body, message):
    with pytest.raises(ServedCardError, match=message) as refused:
        parse_served_card(body, version=4, labels=FINDINGS)
    assert refused.value.status == "invalid"


def test_a_card_without_thresholds_parses_with_none():
    bare = {**CARD, "operating_thresholds": None, "operating_points_target_sensitivity": None, "calibration": None}
    card = parse_served_card(_answer(served_card_document(bare)), version=4, labels=FINDINGS)
    assert card.thresholds == () and card.document["calibration"] is None


@pytest.mark.parametrize(
    ("status", "text", "missing"),
    [(400, json.dumps({"error": NOT_FOUND}), True), (400, '{"error": "Failed to process element: 0"}', False),
     (404, '{"error": "Servable not found for request: Specific(m, 4)"}', False)],
)  # fmt: skip
def test_tf_servings_answer_for_a_missing_signature_is_recognised(status, text, missing):
    assert is_signature_missing(status, text) is missing


def test_the_scenario_field_is_validated():
    beh = VersionBehaviour.from_scenario({"operatingThresholds": {"Mass": 0.2}}, 'versions["2"]')
    assert beh.operating_thresholds == (("Mass", 0.2),)
    for bad, message in [({"Banana": 0.2}, "unknown finding"), ({"Mass": 2}, "within 0..1"), ([0.2], "map findings")]:
        with pytest.raises(ValueError, match=message):
            VersionBehaviour.from_scenario({"operatingThresholds": bad}, 'versions["2"]')
    with pytest.raises(ValueError, match="unknown field"):
        VersionBehaviour.from_scenario({"changes": [{"after": 1, "operatingThresholds": {"Mass": 0.2}}]}, "v")


# ------------------------------------------------------------------------------ the simulated fleet
V2_THRESHOLDS = {"Mass": 0.2, "Effusion": 0.35, "Atelectasis": 0.5}


@pytest.fixture
async def card_fleet():
    """v1 exported before the model_card signature; v2 with a card (3 findings' thresholds)."""
    f = SimulatedFleet("radiology", "resnet50", MODEL, golden=GoldenSet.from_uri(SMALL_GOLDEN), versions={
        "1": {"accuracy": 0.85, "latencyMs": {"p50": 2, "p95": 3}, "replicas": 1},
        "2": {"accuracy": 0.85, "latencyMs": {"p50": 2, "p95": 3}, "replicas": 1, "operatingThresholds": V2_THRESHOLDS},
    }, seed=3)  # fmt: skip
    await f.start()
    try:
        yield f
    finally:
        await f.stop()


async def test_the_fleet_answers_the_signature_like_tf_serving(card_fleet):
    async with TFServingClient(card_fleet.url, MODEL, retries=0) as client:
        body = await client.model_card(2)
        with pytest.raises(PredictFailure) as old:
            await client.model_card(1)
        with pytest.raises(PredictFailure) as unknown:
            await client.model_card(7)
    card = parse_served_card(body, version=2, labels=FINDINGS)
    assert card.operating_thresholds == V2_THRESHOLDS and card.scale == "calibrated"
    assert old.value.status == 400 and json.loads(old.value.message.split(": ", 1)[1]) == {"error": NOT_FOUND}
    assert unknown.value.status == 404 and "Servable not found" in unknown.value.message
    import aiohttp

    async with aiohttp.ClientSession() as http:  # the metadata lists the signature only where the export has it
        listed = {}
        for v in ("1", "2"):
            async with http.get(f"{card_fleet.url}/v1/models/{MODEL}/versions/{v}/metadata") as resp:
                listed[v] = set((await resp.json())["metadata"]["signature_def"]["signature_def"])
    assert listed == {"1": {"serving_default", "predict_float"}, "2": {"serving_default", "predict_float", "model_card"}}


async def test_the_evaluator_uses_the_served_thresholds_and_says_why_not_when_it_cannot(tmp_path, card_fleet):
    cfg = write_config(tmp_path / "evaluator.yaml", [(1, "stable"), (2, "canary")], golden=SMALL_GOLDEN)
    ev = Evaluator(cfg, EvaluatorMetrics(), endpoint_override=card_fleet.url, first_publish_wait=0)
    try:
        outcomes = await ev.evaluate_all()
        again = await ev.evaluate_all()  # a second round: the same card, from the cache
        health = ev.health()[1]["versions"]
    finally:
        await ev.close()
    assert all(o.ok for o in outcomes.values()) and all(o.ok for o in again.values())
    v1, v2 = outcomes["v1"].evaluation, outcomes["v2"].evaluation
    assert v2.threshold_source == "model card (served)"
    used = {f.finding: f.threshold for f in v2.findings}
    for finding, threshold in V2_THRESHOLDS.items():
        assert used[finding] == pytest.approx(threshold)
    assert v1.threshold_source == "youden"
    assert health["v1"]["modelCard"] == "no_signature" and "model_card signature" in health["v1"]["modelCardReason"]
    assert health["v2"]["modelCard"] == "served" and health["v2"]["thresholdSource"] == "model card (served)"
    samples = parse_metrics(ev.metrics.render().decode())
    sha = parse_served_card(await _card_body(card_fleet, 2), version=2, labels=FINDINGS).content_sha256
    assert value(samples, "modeldeploy_evaluator_model_card_info", version="v2", status="served", sha256=sha) == 1
    assert value(samples, "modeldeploy_evaluator_model_card_info", version="v1", status="no_signature", sha256="") == 1
    assert value(samples, "modeldeploy_evaluator_threshold_source_info", version="v2", source="model card (served)") == 1
    assert value(samples, "modeldeploy_evaluator_threshold_source_info", version="v1", source="youden") == 1
    assert value(samples, "modeldeploy_evaluator_threshold", version="v2", finding="Mass") == pytest.approx(0.2)
    # the card calls are not request errors of the version
    assert sum(pick(samples, "modeldeploy_evaluator_request_errors_total", version="v1").values()) == 0


async def test_thresholds_in_the_config_still_win_over_the_served_card(tmp_path, card_fleet):
    cfg = write_config(tmp_path / "evaluator.yaml", [(2, "stable")], golden=SMALL_GOLDEN)
    raw = yaml.safe_load(cfg.read_text())
    raw["versions"][0]["operatingThresholds"] = {"Mass": 0.6}
    cfg.write_text(yaml.safe_dump(raw))
    ev = Evaluator(cfg, EvaluatorMetrics(), endpoint_override=card_fleet.url, first_publish_wait=0)
    try:
        outcome = (await ev.evaluate_all())["v2"]
        health = ev.health()[1]["versions"]["v2"]
    finally:
        await ev.close()
    used = {f.finding: f.threshold for f in outcome.evaluation.findings}
    assert outcome.evaluation.threshold_source == "model card" and used["Mass"] == 0.6
    assert used["Effusion"] != pytest.approx(0.35)  # the served card is not merged in
    assert health["modelCard"] == "config"


async def test_a_broken_card_falls_back_and_says_invalid(tmp_path, card_fleet, monkeypatch):
    from mdsandbox.fleet import tfserving_api

    real = tfserving_api.served_card_json
    monkeypatch.setattr(tfserving_api, "served_card_json", lambda card: real(card).replace('"version":2', '"version":3'))
    cfg = write_config(tmp_path / "evaluator.yaml", [(2, "stable")], golden=SMALL_GOLDEN)
    ev = Evaluator(cfg, EvaluatorMetrics(), endpoint_override=card_fleet.url, first_publish_wait=0)
    try:
        outcome = (await ev.evaluate_all())["v2"]
        health = ev.health()[1]["versions"]["v2"]
    finally:
        await ev.close()
    assert outcome.ok and outcome.evaluation.threshold_source == "youden"
    assert health["modelCard"] == "invalid" and "does not match" in health["modelCardReason"]


async def _card_body(fleet, version: int) -> dict:
    async with TFServingClient(fleet.url, MODEL, retries=0) as client:
        return copy.deepcopy(await client.model_card(version))
