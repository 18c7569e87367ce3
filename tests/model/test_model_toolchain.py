"""End to end on synthetic but learnable X-rays: train (interrupted + resumed), evaluate, export,
serve (PredictRequest and REST bodies), warm-start retraining, quantize, Grad-CAM, bad input.

One CI-sized model (64 px, 600 images) is trained per session (conftest). TensorFlow is real:
nothing here is mocked.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from model_cli_runner import CI_IMAGES_PER_PATIENT, CI_INPUT_SIZE, CI_MIN_PREVALENCE, run_model_cli

pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow", reason="needs the 'ml' extra (TensorFlow)")


def test_interrupted_training_resumes_after_the_head_phase(trained_run):
    run_dir, facts = trained_run
    assert facts["state_after_interrupt"]["phases_done"] == ["head"]
    assert not facts["staging"].exists()  # renamed into place when finished
    record = json.loads((run_dir / "training_record.json").read_text())
    assert set(record["history"]) == {"head", "finetune"}
    assert record["history"]["head"] == facts["state_after_interrupt"]["history"]["head"]  # not re-run
    assert len(record["history"]["finetune"]["loss"]) == 1
    assert (run_dir / "model.keras").is_file()
    for phase in ("head", "finetune"):  # TensorBoard scalar events, readable without tensorboard
        tags = set()
        for event_file in (run_dir / "logs" / phase).iterdir():
            for raw_event in tf.data.TFRecordDataset(str(event_file)):
                tags |= {value.tag for value in tf.compat.v1.Event.FromString(raw_event.numpy()).summary.value}
        assert {"epoch_loss", "epoch_val_auc"} <= tags
    assert record["data"]["fingerprint"].startswith("sha256:")
    patients = {}
    for split in ("train", "val", "test"):
        with open(run_dir / "splits" / f"{split}.csv") as handle:
            patients[split] = {row["patient_id"] for row in csv.DictReader(handle)}
    assert not (patients["train"] & patients["test"]) and not (patients["val"] & patients["test"])


def test_ci_sized_training_reaches_mean_auroc_08_to_09_on_held_out_patients(test_evaluation, trained_run):
    out, report = test_evaluation
    run_dir, _ = trained_run
    record = json.loads((run_dir / "training_record.json").read_text())
    headline = report["headline"]
    print(f"CI fine-tune: test mean AUROC {headline['mean_auroc']:.4f} CI {headline['mean_auroc_ci']}")
    assert report["cases"] == record["data"]["images"]["test"] >= 100
    assert headline["labels_evaluated"] == 14
    # the synthetic task is made hard on purpose (subtle lesions, noise, label noise, real label statistics):
    # target 0.8-0.9, so a regression shows instead of hiding under a saturated 0.97 (test_controls.py: the
    # pixel logistic-regression baseline it must beat, and shuffled-label controls)
    assert 0.78 <= headline["mean_auroc"] <= 0.92
    assert headline["mean_auroc_ci"][0] <= headline["mean_auroc"] <= headline["mean_auroc_ci"][1]
    assert headline["threshold_source"].startswith("validation split")
    for name, entry in report["per_label"].items():
        assert entry["operating_point"]["threshold"] == pytest.approx(record["validation"]["youden_thresholds"][name])
    assert headline["mean_sensitivity"] > 0.6 and headline["mean_specificity"] > 0.6
    assert 0.0 <= headline["mean_ece"] < 0.3
    # subgroup AUROC (issue 16 item 5): every attribute of the label CSV, each subgroup with a patient-bootstrap CI
    subgroups = report["subgroups"]
    assert set(subgroups["attributes"]) == {"sex", "age_band", "view", "site"}
    for attribute in ("sex", "view"):
        entry = subgroups["attributes"][attribute]
        assert len(entry["subgroups"]) == 2 and entry["gap"] >= 0
        for group in entry["subgroups"].values():
            low, high = group["mean_auroc_ci"]
            assert low <= group["mean_auroc"] <= high and group["images"] >= 20
    worst = headline["worst_subgroup"]
    assert worst == subgroups["worst"] and worst["mean_auroc"] == min(
        g["mean_auroc"] for e in subgroups["attributes"].values() for g in e.get("subgroups", {}).values()
    )
    print(f"CI fine-tune: worst subgroup {worst['attribute']}={worst['value']} mean AUROC {worst['mean_auroc']} "
          f"{worst['mean_auroc_ci']} ({worst['images']} images; same findings overall {worst['overall_mean_auroc_same_findings']})")
    for png in ("roc_curves.png", "reliability.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG") and (out / png).stat().st_size > 10_000


def test_untrained_model_scores_chance_on_the_same_evaluation(trained_run):
    """Guards the 0.78 floor: the same evaluation of an untrained network is far below it."""
    from xraymodel import evaluation_report, network
    from xraymodel.datasets import read_manifest
    from xraymodel.evaluation import predict_with_keras

    run_dir, _ = trained_run
    record = json.loads((run_dir / "training_record.json").read_text())
    test = read_manifest(run_dir / "splits" / "test.csv", record["data"]["root"], record["labels"])
    untrained = network.build_classifier(14, CI_INPUT_SIZE)
    report = evaluation_report.build_report(test.labels, predict_with_keras(untrained, test), record["labels"], bootstrap_resamples=50)
    assert report["headline"]["mean_auroc"] < 0.65


def test_export_layout_model_card_and_immutability(exported_version, trained_run, test_evaluation):
    from xraymodel.export import MODEL_CARD_FILE, WARMUP_FILE

    run_dir, _ = trained_run
    _, report = test_evaluation
    assert exported_version.name == "1"
    assert {p.name for p in exported_version.iterdir()} >= {"saved_model.pb", "variables", "assets.extra", MODEL_CARD_FILE}
    assert (exported_version / WARMUP_FILE).stat().st_size > 0
    card = json.loads((exported_version / MODEL_CARD_FILE).read_text())
    record = json.loads((run_dir / "training_record.json").read_text())
    assert card["version"] == 1 and card["labels"] == record["labels"] and card["input_size"] == CI_INPUT_SIZE
    assert card["training"]["data_fingerprint"] == record["data"]["fingerprint"]
    assert card["metrics"]["mean_auroc"] == report["headline"]["mean_auroc"]
    assert card["subgroups"]["status"] == "computed"  # the card carries the subgroups and the worst one
    assert card["subgroups"]["worst"] == report["subgroups"]["worst"]
    assert set(card["subgroups"]["attributes"]) == {"sex", "age_band", "view", "site"}
    assert card["verification"]["reload_max_abs_diff"] <= 1e-4
    assert card["artifact_bytes"] >= 4 * card["parameters"]
    assert set(card["signatures"]) == {"serving_default", "predict_float"}
    assert (exported_version / "model_card.md").is_file()
    # versions are immutable: exporting onto version 1 is refused and leaves nothing behind
    base = exported_version.parent
    before = sorted(p.name for p in base.iterdir())
    assert run_model_cli(["model", "export", "--model", str(run_dir), "--base", str(base), "--version", "1"]) == 2
    assert sorted(p.name for p in base.iterdir()) == before == ["1"]


def test_model_card_of_the_ci_model(exported_version, trained_run, trained_model, test_evaluation):
    """Issue 16 item 8: JSON + Markdown card with provenance, preprocessing, metrics with CIs,
    subgroups, calibration, operating points, weight and code hashes, and the synthetic flag."""
    from xraymodel import model_card
    from xraymodel.export import load_keras_from_export

    card = json.loads((exported_version / "model_card.json").read_text())
    markdown = (exported_version / model_card.MODEL_CARD_MARKDOWN).read_text()
    _, report = test_evaluation
    provenance = card["data_provenance"]
    assert provenance["synthetic"] is True and provenance["split_unit"].startswith("patient")
    assert provenance["label_source"] == "real ChestX-ray14 label rows (text-mined), synthetic images"  # CI data
    assert card["synthetic_evaluation"] is True and "Synthetic evaluation" in markdown
    assert card["preprocessing"]["resize"] == {"size": [CI_INPUT_SIZE, CI_INPUT_SIZE], "method": "bilinear",
                                              "antialias": True, "aspect_ratio": "not preserved (stretched to square)"}
    assert card["metrics"]["mean_auroc_ci"] == report["headline"]["mean_auroc_ci"]
    assert card["metrics"]["ci_method"] == report["headline"]["ci_method"]
    assert card["metrics"]["mean_ece_calibrated"] == report["headline"]["mean_ece_calibrated"]
    assert card["subgroups"]["status"] in ("computed", "not computed")
    assert set(card["calibration"]["per_label"]) == set(card["labels"])
    assert set(card["operating_points_target_sensitivity"]) == set(card["labels"])
    # the weights hash identifies the exported weights: recomputed from the run and from the export itself
    assert card["hashes"]["weights_sha256"] == model_card.weights_sha256(trained_model)
    assert card["hashes"]["weights_sha256"] == model_card.weights_sha256(load_keras_from_export(exported_version)[0])
    assert card["hashes"]["code"]["xraymodel_sources_sha256"] == model_card.code_sha256()["xraymodel_sources_sha256"]
    # the Markdown is rendered from the same JSON
    assert f"Mean AUROC **{card['metrics']['mean_auroc']:.3f}**" in markdown
    assert card["hashes"]["weights_sha256"] in markdown
    for name in card["labels"]:
        assert f"| {name} |" in markdown
    print(markdown[:1500])


def test_model_card_provenance_and_rendering_without_metrics(tmp_path):
    from xraymodel import model_card

    record = {"data": {"root": str(tmp_path), "fingerprint": "f", "split": "stratified-patient",
                       "images": {"train": 3}, "patients": {"train": 2}}}
    provenance = model_card.data_provenance(record)
    assert provenance["synthetic"] is False and "text-mined" in provenance["labels"]
    (tmp_path / model_card.SYNTHETIC_MARKER).write_text("{}")
    assert model_card.data_provenance(record)["synthetic"] is True
    assert model_card.data_provenance(record)["labels"] == model_card.SYNTHETIC_LABELS
    # synthetic images drawn for real NIH label rows (what the CI data is): the card says the labels are real
    (tmp_path / model_card.SYNTHETIC_MARKER).write_text(json.dumps(
        {"labels": "real ChestX-ray14 patients (Data_Entry_2017_v2020.csv): per-image labels, follow-ups, age, sex, view",
         "provenance": "synthetic_provenance.json"}))
    real = model_card.data_provenance(record)
    assert real["synthetic"] is True and real["label_source"].startswith("real ChestX-ray14 label rows")
    assert "REAL ChestX-ray14 label rows" in real["labels"] and "synthetic_provenance.json" in real["labels"]
    assert "No patient images" in real["labels"]
    markdown = model_card.render_markdown({"model_name": "m", "labels": ["A"], "head": "multilabel", "input_size": 64,
                                           "data_provenance": provenance, "subgroups": model_card.subgroups_section(None)})
    assert "No evaluation was attached" in markdown and "text-mined" in markdown
    assert "filled in by `evaluate`" in markdown  # the subgroup placeholder says who fills it
    assert "Synthetic evaluation" not in markdown


def test_next_version_ignores_staging_and_non_numeric_folders(tmp_path):
    from xraymodel.export import existing_versions, next_version

    assert next_version(tmp_path / "absent") == 1
    for name in ("1", "3", ".4.tmp-abcd", "latest", "10"):
        (tmp_path / name).mkdir()
    (tmp_path / "11").write_text("a file, not a version")
    assert existing_versions(tmp_path) == [1, 3, 10]
    assert next_version(tmp_path) == 11


def _png_bytes(path) -> bytes:
    return Path(path).read_bytes()


@pytest.fixture(scope="module")
def serving_signatures(exported_version):
    """The exported version loaded once (as TF Serving would), keyed by signature name."""
    loaded = tf.saved_model.load(str(exported_version))
    return {"_loaded": loaded, **loaded.signatures}


@pytest.fixture(scope="module")
def trained_model(trained_run):
    from xraymodel.training import load_run

    return load_run(trained_run[0])[0]


def _keras_probabilities(model, paths):
    from xraymodel.pipeline import decode_and_resize, preprocess_pixels

    pixels = tf.stack([decode_and_resize(tf.constant(_png_bytes(p)), CI_INPUT_SIZE) for p in paths])
    return model(preprocess_pixels(pixels), training=False).numpy()


def _calibrated(probabilities, run_dir):
    """The run's per-finding Platt calibrator (metrics.LogitCalibrator, numpy) applied column by column."""
    from xraymodel.evaluation_report import calibrators_from_dict

    record = json.loads((run_dir / "training_record.json").read_text())
    calibrators = calibrators_from_dict(record["calibration"]["per_label"])
    return np.column_stack([calibrators[name].apply(probabilities[:, c]) for c, name in enumerate(record["labels"])])


def _served(signature, paths, batch=32):
    outputs = [
        signature(image_bytes=tf.constant([_png_bytes(p) for p in paths[i : i + batch]]))["probabilities"].numpy()
        for i in range(0, len(paths), batch)
    ]
    return np.concatenate(outputs)


def _test_images(run_dir, count):
    with open(run_dir / "splits" / "test.csv") as handle:
        rows = list(csv.DictReader(handle))[:count]
    record = json.loads((run_dir / "training_record.json").read_text())
    return [Path(record["data"]["root"]) / row["path"] for row in rows]


def test_predict_request_round_trip(serving_signatures, trained_run, trained_model):
    from tensorflow_serving.apis import model_pb2, predict_pb2

    run_dir, _ = trained_run
    paths = _test_images(run_dir, 3)
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="chestxray", signature_name="serving_default"))
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([_png_bytes(p) for p in paths], dtype=tf.string))
    wire = request.SerializeToString()

    received = predict_pb2.PredictRequest.FromString(wire)  # what the server parses
    signature = serving_signatures[received.model_spec.signature_name]
    assert set(signature.structured_input_signature[1]) == {"image_bytes"}
    inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in received.inputs.items()}
    outputs = signature(**inputs)
    response = predict_pb2.PredictResponse()
    response.outputs["probabilities"].CopyFrom(tf.make_tensor_proto(outputs["probabilities"]))

    probabilities = tf.make_ndarray(predict_pb2.PredictResponse.FromString(response.SerializeToString()).outputs["probabilities"])
    assert probabilities.shape == (3, 14)
    np.testing.assert_allclose(probabilities, _calibrated(_keras_probabilities(trained_model, paths), run_dir), atol=1e-4)


def test_rest_instances_b64_format(serving_signatures, trained_run, trained_model):
    from xraymodel.serving_rest import decode_rest_instances, parse_rest_predictions, rest_request_body, rest_response_body

    run_dir, _ = trained_run
    paths = _test_images(run_dir, 2)
    body_text = json.dumps(rest_request_body([_png_bytes(p) for p in paths]))
    assert json.loads(body_text)["instances"][0]["b64"] == base64.b64encode(_png_bytes(paths[0])).decode()
    # server side: what TF Serving does with a single-input DT_STRING signature
    body = json.loads(body_text)
    signature = serving_signatures[body["signature_name"]]
    outputs = signature(image_bytes=tf.constant(decode_rest_instances(body)))
    response_text = json.dumps(rest_response_body(outputs["probabilities"].numpy()))
    predictions = np.array(parse_rest_predictions(json.loads(response_text)))
    np.testing.assert_allclose(predictions, _calibrated(_keras_probabilities(trained_model, paths), run_dir), atol=1e-4)


def test_served_outputs_are_the_calibrated_probabilities(serving_signatures, exported_version, trained_run, trained_model, test_evaluation):
    """TF Serving returns calibrator(logits), not the class-weight-inflated sigmoid: its ECE on the
    held-out test patients is the calibrated ECE of the evaluation, and the card's thresholds sit on
    the served scale (the same decisions as the raw thresholds on the raw output)."""
    from xraymodel import datasets, metrics

    run_dir, _ = trained_run
    _, report = test_evaluation
    record = json.loads((run_dir / "training_record.json").read_text())
    test = datasets.read_manifest(run_dir / "splits" / "test.csv", record["data"]["root"], record["labels"])
    served = _served(serving_signatures["serving_default"], test.paths)
    raw = _keras_probabilities(trained_model, test.paths)
    np.testing.assert_allclose(served, _calibrated(raw, run_dir), atol=2e-5)
    assert np.max(np.abs(served - raw)) > 0.05  # the calibrator does change the output
    served_ece = {
        name: metrics.expected_calibration_error(test.labels[:, c], served[:, c])
        for c, name in enumerate(record["labels"]) if "calibrated" in report["per_label"][name]
    }
    for name, ece in served_ece.items():
        assert ece == pytest.approx(report["per_label"][name]["calibrated"]["ece"], abs=2e-3), name
    mean_served = float(np.mean(list(served_ece.values())))
    assert mean_served == pytest.approx(report["headline"]["mean_ece_calibrated"], abs=2e-3)
    assert mean_served < report["headline"]["mean_ece"]  # the uncalibrated sigmoid's ECE on the same images
    print(f"served ECE {mean_served:.4f} (calibrated {report['headline']['mean_ece_calibrated']:.4f}), "
          f"uncalibrated sigmoid {report['headline']['mean_ece']:.4f}")
    card = json.loads((exported_version / "model_card.json").read_text())
    assert card["calibration"]["applied_in_serving_graph"] is True and card["operating_thresholds_scale"] == "calibrated"
    for c, name in enumerate(record["labels"]):
        raw_t, served_t = card["operating_thresholds_uncalibrated"][name], card["operating_thresholds"][name]
        assert np.array_equal(raw[:, c] >= raw_t, served[:, c] >= served_t) or np.mean(
            (raw[:, c] >= raw_t) != (served[:, c] >= served_t)) <= 0.01, name  # float ties at the threshold only


def test_serving_graph_rejects_non_image_bytes(serving_signatures):
    signature = serving_signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError):
        signature(image_bytes=tf.constant([b"definitely not an image"]))


@pytest.fixture(scope="module")
def fresh_synthetic(tmp_path_factory, nih_label_rows):
    """New patients from the same generator (different seed): a second batch of data."""
    from xraymodel.synthetic import write_chestxray14_layout

    return write_chestxray14_layout(
        tmp_path_factory.mktemp("fresh") / "data", 160, size=96, seed=1234, source=nih_label_rows,
        min_prevalence=CI_MIN_PREVALENCE, images_per_patient=CI_IMAGES_PER_PATIENT,
    )


def test_evaluating_the_export_through_the_bytes_signature(exported_version, fresh_synthetic, tmp_path, capsys):
    # an exported version is immutable: evaluate never writes into it by default
    assert run_model_cli(["model", "evaluate", "--model", str(exported_version), "--data", str(fresh_synthetic)]) == 2
    out = tmp_path / "eval-export"
    # the subgroup gate: an unreachable floor fails (exit 1) after the report is written, naming the subgroup
    assert run_model_cli(
        ["model", "evaluate", "--model", str(exported_version), "--data", str(fresh_synthetic), "--out", str(out), "--bootstrap", "200",
         "--min-subgroup-auroc", "0.99"]
    ) == 1
    assert re.search(r"gate failed: worst subgroup \w+=\S+: mean AUROC 0\.\d+ .* < 0\.99", capsys.readouterr().err)
    report = json.loads((out / "metrics.json").read_text())
    from xraymodel.subgroups import check_worst_subgroup

    assert check_worst_subgroup(report, 0.5) is None  # ... and a floor it clears passes
    assert report["model"]["kind"] == "export" and report["cases"] == 160
    assert report["headline"]["mean_auroc"] >= 0.75  # generalises to new patients (160 images: a wide CI)
    assert report["headline"]["threshold_source"].startswith("validation split")  # from the model card


def test_warm_start_from_exported_version(exported_version, fresh_synthetic, tmp_path):
    """Continuous retraining: the new run starts from version 1's weights and records its lineage."""
    out = tmp_path / "run2"
    assert run_model_cli(
        [
            "model", "train", "--data", str(fresh_synthetic), "--out", str(out), "--warm-start", str(exported_version),
            "--input-size", str(CI_INPUT_SIZE), "--head-epochs", "5", "--finetune-epochs", "0", "--quiet",
            "--val-fraction", "0.2", "--test-fraction", "0.2",
        ]
    ) == 0
    record = json.loads((out / "training_record.json").read_text())
    card = json.loads((exported_version / "model_card.json").read_text())
    assert record["warm_start"]["version"] == 1
    assert record["warm_start"]["data_fingerprint"] == card["training"]["data_fingerprint"]
    assert record["data"]["fingerprint"] != card["training"]["data_fingerprint"]
    assert record["validation"]["mean_auroc"] >= 0.7  # 32 validation images: a loose floor


def _check_quantized(out, mode):
    report = json.loads((out / "quantization_report.json").read_text())
    parameters = report["parameters"]
    variant = report["variants"][mode]
    size = (out / variant["file"]).stat().st_size
    assert size == variant["bytes"] and 0.9 * parameters <= size <= 1.5 * parameters  # int8 weights present
    assert abs(variant["mean_auroc_delta_vs_fp32"]) < 0.05
    print(f"{mode}: {size / 1e6:.1f} MB, AUROC delta {variant['mean_auroc_delta_vs_fp32']:+.4f}, "
          f"b1 {variant['batch1_latency_ms']['median']:.1f} ms")
    return variant


# Full INT8 (logit cut, calibration patients disjoint, served over REST): tests/model/test_int8_served.py


@pytest.mark.skipif(not os.environ.get("XRAYMODEL_FULL_TESTS"), reason="a second ~30 s conversion; set XRAYMODEL_FULL_TESTS=1")
def test_quantize_dynamic_range(trained_run, tmp_path):
    run_dir, _ = trained_run
    out = tmp_path / "tflite"
    assert run_model_cli(["model", "quantize", "--model", str(run_dir), "--out", str(out), "--mode", "dynamic"]) == 0
    assert _check_quantized(out, "dynamic")["input_dtype"] == "float32"


def test_quantize_refuses_a_model_without_weights():
    """A flatbuffer smaller than its int8 weights (the weightless-export trap) is never written."""
    from xraymodel.quantize import QuantizationError, check_has_weights

    with pytest.raises(QuantizationError, match="weights are missing; refusing to write"):
        check_has_weights(b"\x00" * 200_000, 23_616_590)
    check_has_weights(b"\x00" * 24_000_000, 23_616_590)  # int8 weights present: accepted


def test_gradcam_overlay_and_heatmap(trained_run, trained_model, tmp_path):
    from xraymodel.gradcam import gradcam_heatmap, model_input_pixels
    from xraymodel.synthetic import encode_png, render_case
    run_dir, _ = trained_run
    image = tmp_path / "mass.png"
    image.write_bytes(encode_png(render_case(("Mass",), 96, np.random.default_rng(5))))
    out = tmp_path / "cam.png"
    assert run_model_cli(["model", "gradcam", "--model", str(run_dir), "--image", str(image), "--finding", "Mass", "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    heatmap, probability = gradcam_heatmap(trained_model, model_input_pixels(image, CI_INPUT_SIZE), 4, "conv4_block6_out")
    assert heatmap.shape == (4, 4) and heatmap.min() >= 0 and heatmap.max() == pytest.approx(1.0)
    assert probability > 0.5
    # No localisation claim on this model: the CI-sized model is a head trained on a frozen, randomly initialised
    # backbone, whose conv4 maps carry no anatomy. The quadrant check this test used to make passed by luck: after
    # the patient-level split (29d07f5) changed the CI model, the planted Mass's quadrant got less Grad-CAM weight
    # than the opposite one summed over 9 cases (6.1 vs 10.4). Localisation belongs to a constructed model with
    # known geometry (follow-up); here: the CLI, the map's shape and normalisation, and the Mass probability.


def _copy_data(source, tmp_path):
    return shutil.copytree(source, tmp_path / "data")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("corrupt_image", r"images/\d+_\d+\.png: not a valid PNG/JPEG image"),
        ("unknown_label", r"Data_Entry_2017.csv row 5 .*unknown finding 'Pneumonitis'"),
        ("missing_column", r"missing column\(s\) \['Finding Labels'\]"),
    ],
)
def test_bad_training_input_fails_clearly_and_writes_nothing(synthetic_root, tmp_path, capsys, damage, message):
    data = _copy_data(synthetic_root, tmp_path)
    csv_path = data / "Data_Entry_2017.csv"
    rows = list(csv.reader(open(csv_path)))
    if damage == "corrupt_image":
        (data / "images" / rows[7][0]).write_bytes(b"<html>not an x-ray</html>")
    elif damage == "unknown_label":
        rows[4][1] = "Effusion|Pneumonitis"
    else:
        rows = [[c for i, c in enumerate(r) if i != 1] for r in rows]
    if damage != "corrupt_image":
        with open(csv_path, "w", newline="") as handle:
            csv.writer(handle).writerows(rows)
    out = tmp_path / "run"
    assert run_model_cli(["model", "train", "--data", str(data), "--out", str(out), "--input-size", "32", "--quiet"]) == 2
    assert __import__("re").search(message, capsys.readouterr().err)
    assert not out.exists() and not out.with_name("run.incomplete").exists()


def test_gradcam_on_non_image_fails_clearly(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    bogus = tmp_path / "scan.png"
    bogus.write_bytes(b"GIF89a-but-not-really")
    out = tmp_path / "cam.png"
    assert run_model_cli(["model", "gradcam", "--model", str(run_dir), "--image", str(bogus), "--finding", "Mass", "--out", str(out)]) == 2
    assert "scan.png" in capsys.readouterr().err and not out.exists()
