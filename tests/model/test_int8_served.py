"""Served INT8 (issue 16 item 7): the quantised variant cut at the logits, calibrated on other patients
than it is evaluated on, served over TF Serving's REST API by xraymodel.tflite_server.

One full-INT8 conversion of the session's CI model (the module fixture; it replaces the former
test_quantize_full_int8) plus one conversion cut at the sigmoid for the tie comparison. Nothing
is trained here.
"""

from __future__ import annotations

import base64
import csv
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from model_cli_runner import CI_INPUT_SIZE, run_model_cli

pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow", reason="needs the 'ml' extra (TensorFlow)")


@pytest.fixture(scope="module")
def int8_version(trained_run, tmp_path_factory):
    """BASE_INT8/1: `modeldeploy model quantize --mode int8` of the CI run (train-split calibration)."""
    run_dir, _ = trained_run
    out = tmp_path_factory.mktemp("int8") / "chestxray-int8" / "1"
    assert run_model_cli(
        ["model", "quantize", "--model", str(run_dir), "--out", str(out), "--mode", "int8", "--calibration-images", "16"]
    ) == 0
    return out


def _report(version_dir: Path) -> dict:
    return json.loads((version_dir / "quantization_report.json").read_text())


def _patients(manifest: Path) -> set[str]:
    with open(manifest) as handle:
        return {row["patient_id"] for row in csv.DictReader(handle)}


def test_int8_is_written_as_a_servable_version_with_weights_and_card(int8_version, trained_run):
    report = _report(int8_version)
    variant = report["variants"]["int8"]
    size = (int8_version / "model_int8.tflite").stat().st_size
    assert size == variant["bytes"] and 0.9 * report["parameters"] <= size <= 1.5 * report["parameters"]
    assert variant["input_dtype"] == "uint8" and variant["output"] == "float-logits" == report["cut"]
    assert sorted(p.name for p in int8_version.iterdir()) == [
        "logits_layer.npz", "model_card.json", "model_card.md", "model_int8.tflite", "quantization_report.json"]
    card = json.loads((int8_version / "model_card.json").read_text())
    record = json.loads((trained_run[0] / "training_record.json").read_text())
    assert card["labels"] == record["labels"] and card["calibration"]["applied_in_serving_graph"] is True
    assert card["variant"]["cut"] == "float-logits" and card["variant"]["file"] == "model_int8.tflite"
    assert card["operating_thresholds_scale"] == "calibrated"
    assert card["synthetic_evaluation"] is True and card["variant"]["quantization"]["shared_patients"] == 0
    assert card["hashes"]["tflite_sha256"].startswith("sha256:") and card["hashes"]["source_weights_sha256"].startswith("sha256:")
    markdown = (int8_version / "model_card.md").read_text()
    assert "## Quantisation" in markdown and "0 shared" in markdown and "Synthetic evaluation" in markdown


def test_calibration_patients_are_not_evaluated_and_the_delta_has_a_paired_patient_ci(int8_version, trained_run):
    run_dir, _ = trained_run
    report = _report(int8_version)
    assert report["shared_patients"] == 0 and report["calibration_patients"] > 0
    assert report["calibration_set"].startswith("train split")
    # independently of the report: the run's train and test manifests share no patient
    assert not _patients(run_dir / "splits" / "train.csv") & _patients(run_dir / "splits" / "test.csv")
    variant = report["variants"]["int8"]
    low, high = variant["mean_auroc_delta_vs_fp32_ci"]
    assert low <= variant["mean_auroc_delta_vs_fp32"] <= high and high - low < 0.1
    assert "paired patient" in variant["delta_ci_method"]
    assert abs(variant["mean_auroc_delta_vs_fp32"]) < 0.05
    print(f"INT8 (float-logits cut) AUROC delta {variant['mean_auroc_delta_vs_fp32']:+.4f} [{low:+.4f}, {high:+.4f}] "
          f"on {report['images']} images / {report['evaluation_patients']} patients; calibrated on "
          f"{report['calibration_images']} images of {report['calibration_patients']} other patients")


def test_split_by_patient_and_the_overlap_refusal():
    from xraymodel.datasets import LabelledImages
    from xraymodel.quantize import QuantizationError, check_disjoint_patients, split_by_patient

    patients = tuple(f"p{i // 3}" for i in range(60))  # 20 patients, 3 images each
    data = LabelledImages(Path("/"), tuple(f"/{i}.png" for i in range(60)), np.zeros((60, 2), np.float32), patients, ("a", "b"))
    calibration, evaluation = split_by_patient(data, 10)
    assert not set(calibration.patient_ids) & set(evaluation.patient_ids)
    assert 10 <= len(calibration) <= 12 and len(calibration) + len(evaluation) == 60
    assert check_disjoint_patients(calibration, evaluation)["shared_patients"] == 0
    with pytest.raises(QuantizationError, match="in both the calibration and the evaluation"):
        check_disjoint_patients(data.subset(range(0, 30)), data.subset(range(27, 60)))  # p9 in both


def _evaluation_pixels(run_dir: Path):
    from xraymodel import datasets
    from xraymodel.quantize import load_pixels_array

    record = json.loads((run_dir / "training_record.json").read_text())
    test = datasets.read_manifest(run_dir / "splits" / "test.csv", record["data"]["root"], record["labels"])
    train = datasets.read_manifest(run_dir / "splits" / "train.csv", record["data"]["root"], record["labels"])
    chosen = np.random.default_rng(0).permutation(len(train))[:16]
    return record, test, load_pixels_array(test, CI_INPUT_SIZE), load_pixels_array(train.subset(sorted(chosen)), CI_INPUT_SIZE)


def test_logit_cut_stops_the_int8_sigmoid_ties(int8_version, trained_run):
    """The former cut (int8 sigmoid output, 1/256 steps) ties the scores of rare findings; the served
    cut (int8 up to fc256, logits in float) keeps about as many distinct scores as FP32 on the same
    held-out images. (An int8-logits cut, measured once: 53-84 distinct of 123, still ties.)"""
    from xraymodel.export import calibration_vectors
    from xraymodel.quantize import CUT_PROBABILITIES, TFLiteRunner, convert, distinct_scores, served_probabilities
    from xraymodel.training import load_run

    run_dir, _ = trained_run
    model, record = load_run(run_dir)
    record, test, pixels, calibration_pixels = _evaluation_pixels(run_dir)
    vectors = calibration_vectors(record["calibration"], record["labels"])
    sigmoid_cut = TFLiteRunner(convert(model, "int8", calibration_pixels, cut=CUT_PROBABILITIES))
    outputs, _ = sigmoid_cut.predict(pixels)
    old = distinct_scores(served_probabilities(outputs, CUT_PROBABILITIES, "multilabel", vectors), record["labels"])
    report = _report(int8_version)
    new, fp32 = report["variants"]["int8"]["distinct_scores_per_label"], report["fp32"]["distinct_scores_per_label"]
    n = len(test)
    prevalence = test.labels.mean(axis=0)
    rare = [name for c, name in enumerate(record["labels"]) if prevalence[c] <= np.quantile(prevalence, 0.5)]
    print("distinct scores of", n, "images (sigmoid cut / logit cut / fp32):",
          {name: (old[name], new[name], fp32[name]) for name in record["labels"]})
    tied_old, tied_new = sum(n - old[name] for name in rare), sum(n - new[name] for name in rare)
    print(f"rare findings {rare}: tied images sigmoid cut {tied_old}, float-logits cut {tied_new}, fp32 "
          f"{sum(n - fp32[name] for name in rare)}")
    assert tied_new * 4 <= tied_old  # the served cut removes at least 3/4 of the ties on the rarer half
    assert min(new[name] for name in rare) >= 2 * min(old[name] for name in rare)
    assert sum(new.values()) >= 0.9 * sum(fp32.values())


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def int8_server(int8_version, tmp_path_factory):
    """xraymodel.tflite_server on 127.0.0.1 (a free port), started from a model config like the operator's."""
    from xraymodel.tflite_server import build_server, parse_model_config

    config = (
        'model_config_list {\n  config {\n    name: "chestxray"\n    base_path: "%s"\n    model_platform: "tensorflow"\n'
        "    model_version_policy {\n      specific {\n        versions: 1\n      }\n    }\n"
        '    version_labels {\n      key: "canary"\n      value: 1\n    }\n  }\n}\n' % int8_version.parent
    )
    name, base, versions, labels = parse_model_config(config)
    server = build_server(base, name, "127.0.0.1", 0, versions=versions, labels=labels)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_int8_served_over_tf_serving_rest_returns_calibrated_probabilities(int8_server, int8_version, exported_version, trained_run):
    from xraymodel.export import calibration_vectors
    from xraymodel.quantize import TFLiteRunner, served_probabilities
    from xraymodel.serving_rest import parse_rest_predictions, rest_request_body

    run_dir, _ = trained_run
    record = json.loads((run_dir / "training_record.json").read_text())
    with open(run_dir / "splits" / "test.csv") as handle:
        paths = [Path(record["data"]["root"]) / row["path"] for row in list(csv.DictReader(handle))[:6]]
    images = [p.read_bytes() for p in paths]

    # the operator's readiness probe and TF Serving's status body
    status, body = _get(f"{int8_server}/v1/models/chestxray/versions/1")
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
    assert _get(f"{int8_server}/v1/models/chestxray/versions/2")[0] == 404
    assert _get(f"{int8_server}/v1/models/chestxray/metadata")[1]["metadata"]["signature_def"]["signature_def"]["serving_default"]

    status, body = _post(f"{int8_server}/v1/models/chestxray/labels/canary:predict", rest_request_body(images))
    assert status == 200
    served = np.array(parse_rest_predictions(body))
    assert served.shape == (6, len(record["labels"]))

    # oracle 1: the int8 logits of the same flatbuffer, sigmoid + the card's calibrator in float
    from xraymodel.pipeline import decode_and_resize

    pixels = np.stack([decode_and_resize(tf.constant(image), CI_INPUT_SIZE).numpy() for image in images])
    runner = TFLiteRunner((int8_version / "model_int8.tflite").read_bytes())
    features, _ = runner.predict(pixels)
    vectors = calibration_vectors(record["calibration"], record["labels"])
    with np.load(int8_version / "logits_layer.npz") as stored:
        kernel, bias = stored["kernel"], stored["bias"]
    np.testing.assert_allclose(served, served_probabilities(features, "float-logits", "multilabel", vectors, (kernel, bias)), atol=1e-6)
    # oracle 2: TF Serving's FP32 SavedModel (calibrated in its graph) on the same bytes
    fp32 = tf.saved_model.load(str(exported_version)).signatures["serving_default"](image_bytes=tf.constant(images))
    difference = np.abs(served - fp32["probabilities"].numpy())
    print(f"INT8 served vs FP32 served: max |dp| {difference.max():.4f}, mean {difference.mean():.4f}")
    assert difference.max() < 0.3 and difference.mean() < 0.03

    # predict_float over REST equals the bytes path on the decoded pixels
    status, body = _post(f"{int8_server}/v1/models/chestxray:predict",
                         {"signature_name": "predict_float", "instances": pixels[:2].tolist()})
    assert status == 200
    np.testing.assert_allclose(np.array(body["predictions"]), served[:2], atol=1e-6)

    # errors as TF Serving gives them: 400 with an error body, 404 for another model
    status, body = _post(f"{int8_server}/v1/models/chestxray:predict", {"instances": [{"b64": base64.b64encode(b"not an image").decode()}]})
    assert status == 400 and "error" in body
    assert _post(f"{int8_server}/v1/models/other:predict", rest_request_body(images[:1]))[0] == 404
