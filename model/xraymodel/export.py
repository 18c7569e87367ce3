"""Export for TF Serving: BASE/<version>/ SavedModel with two signatures and a model card.

Layout (TF Serving loads the highest numeric folder under BASE by default):

    BASE/<version>/saved_model.pb
    BASE/<version>/variables/...
    BASE/<version>/assets.extra/tf_serving_warmup_requests   (one PredictRequest; TF Serving replays it at load)
    BASE/<version>/model_card.json                           (version, data fingerprint, metrics, created, ...)

Signatures (tensor names are the contract with TF Serving clients and the online evaluator):

    serving_default  inputs  image_bytes  DT_STRING [-1]            encoded PNG/JPEG, any size, grey or RGB
                     outputs probabilities DT_FLOAT [-1, k]          k = len(model_card["labels"])
    predict_float    inputs  images        DT_FLOAT [-1, S, S, 3]    RGB 0..255, already resized to S
                     outputs probabilities DT_FLOAT [-1, k]

Decode, resize and resnet50.preprocess_input run inside the graph (the same functions training
used). With a multilabel head and the run's per-finding Platt calibrator, ``probabilities`` are
the CALIBRATED probabilities sigmoid(slope * logits + intercept), computed in the graph from the
``logits`` layer: what TF Serving returns is what the model card's ECE, Brier score and operating
thresholds describe (the card's thresholds are mapped onto the calibrated scale; the calibrator is
monotone, so the decisions and AUROC are the same as on the uncalibrated scale). The version folder is written under a hidden temporary name, reloaded and checked against
the Keras model, and only then renamed into place: TF Serving never sees a partial version.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from xraymodel import model_card
from xraymodel.staging import OutputExistsError, staged_directory

MODEL_CARD_FILE = "model_card.json"
MODEL_CARD_SCHEMA = "xraymodel.model_card/v1"
SIGNATURE_BYTES = "serving_default"
SIGNATURE_FLOAT = "predict_float"
INPUT_BYTES = "image_bytes"
INPUT_FLOAT = "images"
OUTPUT_PROBABILITIES = "probabilities"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
RELOAD_TOLERANCE = 1e-4


def existing_versions(base: str | Path) -> list[int]:
    """Numeric version folders under BASE, ascending (hidden staging folders are not versions)."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name))


def next_version(base: str | Path) -> int:
    versions = existing_versions(base)
    return versions[-1] + 1 if versions else 1


# logit(1e-7): LogitCalibrator clips probabilities to [1e-7, 1 - 1e-7] before its logit; the graph
# clips the logits the same way, so served = calibrator(sigmoid(logits)) to float precision.
CALIBRATION_LOGIT_CLIP = float(np.log((1 - 1e-7) / 1e-7))


def calibration_vectors(calibration: dict | None, labels: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """(slopes, intercepts) in label order from a card's/record's ``calibration`` (None: uncalibrated)."""
    per_label = (calibration or {}).get("per_label")
    if not per_label:
        return None
    missing = [name for name in labels if name not in per_label]
    if missing:
        raise ValueError(f"calibration has no entry for {missing}")
    slopes = np.array([float(per_label[name]["slope"]) for name in labels], dtype=np.float32)
    intercepts = np.array([float(per_label[name]["intercept"]) for name in labels], dtype=np.float32)
    return slopes, intercepts


def calibrated_model(model, calibration: tuple[np.ndarray, np.ndarray] | None):
    """Callable images -> served probabilities: the model itself, or calibrated sigmoid of its logits."""
    if calibration is None:
        return model
    import keras
    import tensorflow as tf

    from xraymodel.network import LOGITS_LAYER

    logits_model = keras.Model(model.inputs, model.get_layer(LOGITS_LAYER).output, name="logits_of_classifier")
    slopes, intercepts = (tf.constant(v) for v in calibration)

    def served(images, training=False):
        logits = tf.cast(logits_model(images, training=training), tf.float32)
        logits = tf.clip_by_value(logits, -CALIBRATION_LOGIT_CLIP, CALIBRATION_LOGIT_CLIP)
        return tf.sigmoid(slopes * logits + intercepts)

    return served


def build_serving_module(model, input_size: int, calibration: tuple[np.ndarray, np.ndarray] | None = None):
    """tf.Module holding the model's variables (once) and the two signature functions."""
    import tensorflow as tf

    from xraymodel.pipeline import decode_and_resize, preprocess_pixels

    module = tf.Module()
    # Tracked once, in model.weights order: warm starts read them back with model.set_weights.
    module.model_variables = [weight.value for weight in model.weights]
    pixel_spec = tf.TensorSpec([input_size, input_size, 3], tf.float32)
    served = calibrated_model(model, calibration)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_BYTES)])
    def serve_image_bytes(image_bytes):
        pixels = tf.map_fn(
            lambda encoded: decode_and_resize(encoded, input_size),
            image_bytes,
            fn_output_signature=pixel_spec,
            parallel_iterations=8,
        )
        return {OUTPUT_PROBABILITIES: served(preprocess_pixels(pixels), training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None, input_size, input_size, 3], tf.float32, name=INPUT_FLOAT)])
    def predict_float(images):
        return {OUTPUT_PROBABILITIES: served(preprocess_pixels(images), training=False)}

    module.serve_image_bytes = serve_image_bytes
    module.predict_float = predict_float
    return module, {SIGNATURE_BYTES: serve_image_bytes, SIGNATURE_FLOAT: predict_float}


def add_model_card_signature(module, signatures: dict, card_fields: dict) -> None:
    """Third signature ``model_card`` (xraymodel.served_card): the card's operating points and calibrator,
    served by TF Serving itself, so the online evaluator reads them from the version it evaluates."""
    import tensorflow as tf

    from xraymodel.served_card import INPUT_CARD, OUTPUT_CARD, SIGNATURE_CARD, served_card_json

    text = served_card_json(card_fields)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_CARD)])
    def serve_model_card(request):
        return {OUTPUT_CARD: tf.fill(tf.shape(request), tf.constant(text))}

    module.serve_model_card = serve_model_card
    signatures[SIGNATURE_CARD] = serve_model_card


def _warmup_image_png(input_size: int) -> bytes:
    from xraymodel.synthetic import encode_png, render_case

    return encode_png(render_case((), max(input_size, 64), np.random.default_rng(0)))


def _write_warmup_requests(version_dir: Path, model_name: str, image_png: bytes) -> bool:
    """TF Serving replays these PredictRequests at load, so the first real request is not slow."""
    try:
        import tensorflow as tf
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError:
        return False
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE_BYTES)
    )
    request.inputs[INPUT_BYTES].CopyFrom(tf.make_tensor_proto([image_png], dtype=tf.string))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    path = version_dir / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(log.SerializeToString())
    return True


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def export_saved_model(
    model,
    base: str | Path,
    *,
    labels: list[str],
    head: str,
    version: int | None = None,
    model_name: str = "chestxray",
    training_record: dict | None = None,
    evaluation: dict | None = None,
) -> Path:
    """Write BASE/<version>/ (SavedModel + warmup + model card); returns the version folder."""
    import keras
    import tensorflow as tf

    input_size = int(model.input_shape[1])
    base = Path(base)
    version = next_version(base) if version is None else int(version)
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    final = base / str(version)
    if final.exists():
        raise OutputExistsError(f"{final} already exists: versions are immutable, export a new one")
    sample_png = _warmup_image_png(input_size)
    vectors = served_calibration(training_record, labels, head)
    with staged_directory(final) as staging:
        module, signatures = build_serving_module(model, input_size, vectors)
        add_model_card_signature(module, signatures, {"model_name": model_name, "version": version, "labels": list(labels),
                                                      "head": head, **served_scale_fields(training_record, vectors)})  # fmt: skip
        tf.saved_model.save(module, str(staging), signatures=signatures)
        warmup = _write_warmup_requests(staging, model_name, sample_png)
        verification = verify_export(staging, calibrated_model(model, vectors), sample_png, input_size)
        card = {
            "schema": MODEL_CARD_SCHEMA,
            "model_name": model_name,
            "version": version,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "architecture": "ResNet-50 (Keras, include_top=False) + GAP + Dense(256, relu) + "
            + ("sigmoid" if head == "multilabel" else "softmax"),
            "labels": list(labels),
            "head": head,
            "input_size": input_size,
            "parameters": int(model.count_params()),
            "signatures": {
                SIGNATURE_BYTES: {
                    "inputs": {INPUT_BYTES: {"dtype": "DT_STRING", "shape": [-1], "content": "PNG or JPEG bytes"}},
                    "outputs": {OUTPUT_PROBABILITIES: {"dtype": "DT_FLOAT", "shape": [-1, len(labels)]}},
                },
                SIGNATURE_FLOAT: {
                    "inputs": {
                        INPUT_FLOAT: {
                            "dtype": "DT_FLOAT",
                            "shape": [-1, input_size, input_size, 3],
                            "content": "RGB 0..255, resized",
                        }
                    },
                    "outputs": {OUTPUT_PROBABILITIES: {"dtype": "DT_FLOAT", "shape": [-1, len(labels)]}},
                },
            },
            **served_scale_fields(training_record, vectors),
            "training": None
            if training_record is None
            else {
                "data_fingerprint": training_record["data"]["fingerprint"],
                "images": training_record["data"]["images"],
                "patients": training_record["data"]["patients"],
                "backbone_weights": training_record.get("backbone_weights"),
                "warm_start": training_record.get("warm_start"),
                "seed": training_record["config"]["seed"],
                "created": training_record["created"],
                "validation_mean_auroc": training_record["validation"]["mean_auroc"],
            },
            "data_provenance": model_card.data_provenance(training_record),
            "preprocessing": model_card.preprocessing_spec(input_size),
            "metrics": None if evaluation is None else _metrics_summary(evaluation),
            "synthetic_evaluation": None if evaluation is None else (evaluation.get("dataset") or {}).get("synthetic"),
            "subgroups": model_card.subgroups_section(evaluation),
            "hashes": {"weights_sha256": model_card.weights_sha256(model), "code": model_card.code_sha256()},
            "verification": {**verification, "warmup_requests": warmup},
            "software": {"tensorflow": tf.__version__, "keras": keras.__version__},
            "intended_use": "Research and rollout testing of a chest X-ray finding classifier; "
            "not a medical device. Decisions need the per-finding AUROC CIs and operating points below.",
        }
        card["artifact_bytes"] = directory_size(staging)  # SavedModel + warm-up (the card files come after)
        model_card.write_card(staging, card)
    return final


def _metrics_summary(evaluation: dict) -> dict:
    return {
        "evaluation_set": evaluation.get("dataset"),
        "cases": evaluation["cases"],
        "mean_auroc": evaluation["headline"]["mean_auroc"],
        "mean_auroc_ci": evaluation["headline"]["mean_auroc_ci"],
        "ci_method": evaluation["headline"].get("ci_method"),
        "mean_ece": evaluation["headline"]["mean_ece"],
        "mean_ece_calibrated": evaluation["headline"].get("mean_ece_calibrated"),
        "mean_brier": evaluation["headline"].get("mean_brier"),
        "mean_brier_calibrated": evaluation["headline"].get("mean_brier_calibrated"),
        "threshold_source": evaluation["headline"]["threshold_source"],
        "per_label": {
            name: {
                "auroc": entry["auroc"],
                "sensitivity": entry["operating_point"]["sensitivity"],
                "specificity": entry["operating_point"]["specificity"],
                "threshold": entry["operating_point"]["threshold"],
                "ece": entry["ece"],
            }
            for name, entry in evaluation["per_label"].items()
        },
    }


def served_calibration(training_record: dict | None, labels: list[str], head: str):
    """Calibration vectors the serving graph applies (multilabel head with a fitted calibrator), else None."""
    if head != "multilabel":
        return None
    return calibration_vectors((training_record or {}).get("calibration"), list(labels))


def served_scale_fields(training_record: dict | None, vectors) -> dict:
    """Model card fields that depend on the served scale: thresholds, operating points, calibration."""
    calibration = (training_record or {}).get("calibration")
    validation = (training_record or {}).get("validation", {})
    return {
        # On the scale the signatures serve (calibrated when the calibrator is in the graph).
        "operating_thresholds": _served_thresholds(validation.get("youden_thresholds"), calibration, vectors),
        "operating_thresholds_source": "Youden's J on the validation split" if training_record else None,
        "operating_thresholds_scale": "calibrated" if vectors is not None else "model output",
        "operating_thresholds_uncalibrated": validation.get("youden_thresholds") if vectors is not None else None,
        "operating_points_target_sensitivity": _served_points(validation.get("target_sensitivity_points"), calibration, vectors),
        "calibration": None
        if calibration is None
        else {
            **calibration,
            "applied_in_serving_graph": vectors is not None,
            "served_output": "sigmoid(slope * clip(logits, +-16.12) + intercept) per finding"
            if vectors is not None
            else "uncalibrated model output",
        },
    }


def _calibrate_threshold(threshold, entry) -> float | None:
    from xraymodel.metrics import LogitCalibrator

    if threshold is None:
        return None
    calibrator = LogitCalibrator(float(entry["slope"]), float(entry["intercept"]))
    return float(calibrator.apply([float(threshold)])[0])


def _served_thresholds(thresholds: dict | None, calibration: dict | None, vectors) -> dict | None:
    """Thresholds on the served scale: calibrator(t) (monotone: the same decisions as t on the raw output)."""
    if thresholds is None or vectors is None:
        return thresholds
    per_label = calibration["per_label"]
    return {name: _calibrate_threshold(t, per_label[name]) for name, t in thresholds.items()}


def _served_points(points: dict | None, calibration: dict | None, vectors) -> dict | None:
    if points is None or vectors is None:
        return points
    per_label = calibration["per_label"]
    return {
        name: None
        if point is None
        else {**point, "threshold": _calibrate_threshold(point["threshold"], per_label[name]), "threshold_uncalibrated": point["threshold"]}
        for name, point in points.items()
    }


def verify_export(version_dir: Path, served, sample_png: bytes, input_size: int) -> dict:
    """Reload the SavedModel and compare both signatures with ``served`` (the Keras model, calibrated) on one image."""
    import tensorflow as tf

    from xraymodel.pipeline import decode_and_resize, preprocess_pixels

    loaded = tf.saved_model.load(str(version_dir))
    missing = {SIGNATURE_BYTES, SIGNATURE_FLOAT} - set(loaded.signatures)
    if missing:
        raise RuntimeError(f"{version_dir}: signatures {sorted(missing)} missing after reload")
    pixels = decode_and_resize(tf.constant(sample_png), input_size)[None]
    expected = np.asarray(served(preprocess_pixels(pixels), training=False))
    from_bytes = loaded.signatures[SIGNATURE_BYTES](**{INPUT_BYTES: tf.constant([sample_png])})[OUTPUT_PROBABILITIES]
    from_float = loaded.signatures[SIGNATURE_FLOAT](**{INPUT_FLOAT: pixels})[OUTPUT_PROBABILITIES]
    difference = float(
        max(np.max(np.abs(from_bytes.numpy() - expected)), np.max(np.abs(from_float.numpy() - expected)))
    )
    if not difference <= RELOAD_TOLERANCE:
        raise RuntimeError(f"{version_dir}: reloaded model differs from Keras by {difference:.3g}")
    return {"reload_max_abs_diff": difference, "tolerance": RELOAD_TOLERANCE}


def read_model_card(version_dir: str | Path) -> dict:
    path = Path(version_dir) / MODEL_CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{version_dir}: no {MODEL_CARD_FILE} (not an exported version)")
    return json.loads(path.read_text())


def load_keras_from_export(version_dir: str | Path):
    """Rebuild the Keras classifier from an exported version (for warm starts); returns (model, card)."""
    import tensorflow as tf

    from xraymodel import keras_runtime

    keras_runtime.configure()
    from xraymodel.network import build_classifier

    card = read_model_card(version_dir)
    model = build_classifier(len(card["labels"]), int(card["input_size"]), card["head"])
    loaded = tf.saved_model.load(str(version_dir))
    values = [variable.numpy() for variable in loaded.model_variables]
    expected = [tuple(w.shape) for w in model.weights]
    if [tuple(v.shape) for v in values] != expected:
        raise ValueError(f"{version_dir}: stored variables do not match the architecture in its model card")
    model.set_weights(values)
    return model, card
