"""The evaluator's REST request/response handling against a REAL exported SavedModel, through TensorFlow.

A small (32 px, untrained) ResNet-50 classifier is exported by xraymodel.export exactly as for TF
Serving; a minimal local REST endpoint serves its ``serving_default`` signature with TF Serving's
row-format contract ({"signature_name", "instances": [{"b64": ...}]} -> {"predictions": [[...]]};
a TensorFlow error -> 400 {"error": ...}). The evaluator's bytes must reach the graph's
decode_image intact and its parsing must return exactly what the signature computed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile

import numpy as np
import pytest
from aiohttp import web

from evaluator_testkit import write_config
from xraymodel.evaluator.client import PredictFailure, TFServingClient
from xraymodel.evaluator.exporter import EvaluatorMetrics
from xraymodel.evaluator.service import Evaluator

pytestmark = pytest.mark.tf
os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="keras-home-"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow", reason="needs the 'ml' extra (TensorFlow)")

from savedmodel_rest import SavedModelREST, serve  # noqa: E402  (imports TensorFlow)

GOLDEN = "sandbox://golden?size=40&seed=2&min_positives=2"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from xraymodel import keras_runtime

    keras_runtime.configure(seed=0)
    from xraymodel.export import export_saved_model
    from xraymodel.findings import FINDINGS
    from xraymodel.network import build_classifier

    model = build_classifier(len(FINDINGS), 32)
    return export_saved_model(model, tmp_path_factory.mktemp("models") / "resnet50_chest_xray", labels=list(FINDINGS),
                              head="multilabel", model_name="resnet50_chest_xray")  # fmt: skip


class TFServingREST(SavedModelREST):
    """The export over TF Serving's REST API (tests/savedmodel_rest.py), plus the signature called in-process."""

    def direct(self, images: list[bytes]) -> np.ndarray:
        return self.loaded.signatures["serving_default"](image_bytes=tf.constant(images))["probabilities"].numpy()


@pytest.fixture(scope="module")
def export_dir_without_card(tmp_path_factory):
    """The same kind of export as an older `modeldeploy model export` wrote it: no model_card signature."""
    from xraymodel import export, keras_runtime

    keras_runtime.configure(seed=0)
    from xraymodel.findings import FINDINGS
    from xraymodel.network import build_classifier

    real = export.add_model_card_signature
    export.add_model_card_signature = lambda module, signatures, card_fields: None
    try:
        return export.export_saved_model(build_classifier(len(FINDINGS), 32), tmp_path_factory.mktemp("old") / "m",
                                         labels=list(FINDINGS), head="multilabel", model_name="resnet50_chest_xray")  # fmt: skip
    finally:
        export.add_model_card_signature = real


@pytest.fixture
async def tf_server(export_dir):
    async with serve(TFServingREST(export_dir)) as server:
        yield server


@pytest.mark.parametrize("which", ["current export (no training record)", "older export (no signature)"])
async def test_a_version_without_served_thresholds_falls_back_and_says_why(
    tmp_path, which, export_dir, export_dir_without_card
):
    served = export_dir if which.startswith("current") else export_dir_without_card
    async with serve(TFServingREST(served)) as server:
        outcome, health = await _evaluate_once(tmp_path, server)
    assert outcome.ok, outcome.error
    assert outcome.evaluation.threshold_source == "youden"
    if which.startswith("current"):  # the card is served, but the run had no operating points
        assert health["modelCard"] == "no_thresholds"
    else:  # TF Serving's 400 for the signature the SavedModel lacks
        assert health["modelCard"] == "no_signature" and "not found in signature def" in health["modelCardReason"]


async def _evaluate_once(tmp_path, server):
    cfg = write_config(tmp_path / "evaluator.yaml", [(1, "stable")], golden=GOLDEN, batchSize=20)
    ev = Evaluator(cfg, EvaluatorMetrics(), endpoint_override=server.url, first_publish_wait=0)
    try:
        return (await ev.evaluate_all())["v1"], ev.health()[1]["versions"]["v1"]
    finally:
        await ev.close()


async def test_evaluator_round_trip_through_the_exported_savedmodel(tmp_path, tf_server):
    cfg = write_config(tmp_path / "evaluator.yaml", [(1, "stable")], golden=GOLDEN, batchSize=8)
    ev = Evaluator(cfg, EvaluatorMetrics(), endpoint_override=tf_server.url, first_publish_wait=0)
    try:
        outcome = (await ev.evaluate_all())["v1"]
        served = ev.states["v1"].predictions
    finally:
        await ev.close()
    assert outcome.ok, outcome.error
    assert served.shape == (40, 14)
    # exactly what the signature computes on the same bytes, in the same order, across 5 batches
    np.testing.assert_allclose(served, tf_server.direct(list(ev.golden.images)), rtol=0, atol=1e-6)
    assert 0.0 <= outcome.evaluation.auroc_mean <= 1.0 and outcome.evaluation.samples == 40


async def test_tensorflow_rejecting_an_image_fails_the_version_cleanly(tf_server, export_dir):
    good = (await asyncio.to_thread(_golden_images))[:2]
    corrupt = good[0][:40] + b"\x00" * 64  # PNG signature and header, then nonsense: decode_image fails in the graph
    async with TFServingClient(tf_server.url, "resnet50_chest_xray", retries=2) as client:
        ok = await client.predict_batch(1, [base64.b64encode(g).decode() for g in good])
        assert ok.shape == (2, 14)
        with pytest.raises(PredictFailure) as failure:
            await client.predict_batch(1, [base64.b64encode(g).decode() for g in [good[0], corrupt]])
        assert failure.value.reason == "http_4xx" and "400" in failure.value.message  # TF's error, not retried
        with pytest.raises(PredictFailure) as missing:
            await client.predict_batch(7, [base64.b64encode(good[0]).decode()])
        assert missing.value.reason == "http_4xx" and "404" in missing.value.message


def _golden_images() -> list[bytes]:
    from mdsandbox.synthetic_golden import GoldenSet

    g = GoldenSet.from_uri(GOLDEN)
    return [g.image_bytes(i) for i in range(g.size)]
