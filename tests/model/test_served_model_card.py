"""The CI model's export serves its model card through the ``model_card`` signature (issue 16 item 4),
and the online evaluator evaluates it at the card's operating points, not at thresholds fitted on
the golden set.

Uses the session's exported CI model (tests/model/conftest.py: trained once per session; nothing is
trained here). The REST endpoint is the SavedModel's signatures behind TF Serving's JSON rules
(xraymodel.serving_rest: row format in, a DT_STRING output as a plain JSON string out, 400 for an
unknown signature), as tensorflow_model_server answers them.
"""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
import yaml
from aiohttp import web

pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow", reason="needs the 'ml' extra (TensorFlow)")

GOLDEN = "sandbox://golden?size=48&seed=4&min_positives=2"


@pytest.fixture
async def rest_server(exported_version):
    from savedmodel_rest import SavedModelREST, serve

    async with serve(SavedModelREST(exported_version)) as server:
        yield server


def _card(version_dir) -> dict:
    return json.loads((version_dir / "model_card.json").read_text())


def _expected_thresholds(card: dict) -> dict[str, float]:
    """What the evaluator must use: the target-sensitivity point, else the card's operating threshold."""
    out = {}
    for finding in card["labels"]:
        point = (card.get("operating_points_target_sensitivity") or {}).get(finding)
        youden = (card.get("operating_thresholds") or {}).get(finding)
        if point is not None and point.get("threshold") is not None:
            out[finding] = point["threshold"]
        elif youden is not None:
            out[finding] = youden
    return out


def test_the_export_has_a_model_card_signature_with_the_cards_values(exported_version):
    from xraymodel.findings import FINDINGS
    from xraymodel.served_card import CARD_KEYS, parse_served_card

    card = _card(exported_version)
    loaded = tf.saved_model.load(str(exported_version))
    assert {"serving_default", "predict_float", "model_card"} <= set(loaded.signatures)
    out = loaded.signatures["model_card"](request=tf.constant(["", "x"]))
    assert list(out) == ["model_card_json"] and out["model_card_json"].shape == (2,)  # one per instance
    document = json.loads(out["model_card_json"].numpy()[0].decode())
    for key in CARD_KEYS:
        assert document[key] == card[key], key  # the very values of model_card.json
    slopes = {f: e["slope"] for f, e in card["calibration"]["per_label"].items()}
    assert {f: e["slope"] for f, e in document["calibration"]["per_label"].items()} == slopes
    served = parse_served_card({"predictions": [out["model_card_json"].numpy()[0].decode()]}, version=1,
                               labels=FINDINGS)  # fmt: skip
    assert served.operating_thresholds == pytest.approx(_expected_thresholds(card))
    assert served.scale == card["operating_thresholds_scale"] == "calibrated"
    kinds = dict(served.threshold_kinds)
    print(f"served card {served.content_sha256[:12]}: {sum(k == 'target sensitivity' for k in kinds.values())} "
          f"target-sensitivity points, {sum(k == 'operating threshold' for k in kinds.values())} Youden thresholds "
          f"of {len(card['labels'])} findings")  # fmt: skip
    assert served.thresholds, "the CI model's card has operating points"


async def test_the_evaluator_uses_the_served_cards_thresholds_not_the_golden_sets(
    exported_version, rest_server, tmp_path
):
    from mdsandbox.synthetic_golden import materialize
    from xraymodel.evaluator.exporter import EvaluatorMetrics
    from xraymodel.evaluator.service import Evaluator

    card = _card(exported_version)
    config = {
        "namespace": "radiology", "modelDeployment": "cxr", "modelName": card["model_name"],
        "endpoint": "http://unused:8501", "interval": "60s", "timeoutSeconds": 30, "batchSize": 16,
        "goldenSet": {"uri": str(materialize(GOLDEN, tmp_path / "golden")), "labels": "labels.csv"},
        "versions": [{"version": 1, "role": "stable"}],
    }  # fmt: skip
    path = tmp_path / "evaluator.yaml"
    path.write_text(yaml.safe_dump(config))
    ev = Evaluator(path, EvaluatorMetrics(), endpoint_override=rest_server.url, first_publish_wait=0)
    try:
        outcome = (await ev.evaluate_all())["v1"]
        health = ev.health()[1]["versions"]["v1"]
    finally:
        await ev.close()
    assert outcome.ok, outcome.error
    evaluation = outcome.evaluation
    used = {f.finding: f.threshold for f in evaluation.findings}
    expected = _expected_thresholds(card)
    print(
        f"threshold source {evaluation.threshold_source}; card thresholds used for {len(expected)} findings, "
        f"e.g. {sorted(expected.items())[:2]}; model_card calls {rest_server.calls.get('model_card')}"
    )
    assert evaluation.threshold_source == "model card (served)" and health["modelCard"] == "served"
    for finding, threshold in expected.items():
        assert used[finding] == pytest.approx(threshold, abs=1e-12), finding
    assert rest_server.calls["model_card"] == 1  # once per round, not per batch


async def test_the_int8_runtime_answers_the_same_signature_from_its_card(exported_version):
    """xraymodel.tflite_server (the served INT8 variant) answers model_card from the variant's model_card.json,
    as the version it serves (a variant's card keeps its FP32 source's `version`); the interpreter is not
    involved in this signature, so the real server runs here with the CI card and no .tflite."""
    import threading

    from xraymodel.evaluator.client import PredictFailure, TFServingClient
    from xraymodel.findings import FINDINGS
    from xraymodel.served_card import parse_served_card
    from xraymodel.tflite_server import LoadedVariant, VariantServer

    card = {**_card(exported_version), "variant": {"cut": "float-logits", "source_version": 1}}
    variant = LoadedVariant(name=card["model_name"], version=2, card=card, labels=list(card["labels"]),
                            input_size=int(card["input_size"]), cut="float-logits", head=card["head"], calibration=None,
                            logits_layer=None, interpreter=None, lock=threading.Lock())  # fmt: skip
    server = VariantServer(("127.0.0.1", 0), {2: variant}, {})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        async with TFServingClient(
            f"http://127.0.0.1:{server.server_address[1]}", card["model_name"], retries=0
        ) as client:
            body = await client.model_card(2)
            with pytest.raises(PredictFailure) as unknown:
                await client.model_card(1)
    finally:
        server.shutdown()
        server.server_close()
    served = parse_served_card(body, version=2, labels=FINDINGS)
    assert served.operating_thresholds == pytest.approx(_expected_thresholds(card))
    assert served.document["version"] == 2 and unknown.value.status == 404
