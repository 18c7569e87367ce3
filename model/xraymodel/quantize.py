"""TFLite quantization: full INT8 (integer-only ops, calibrated) and dynamic-range INT8 weights.

Both are converted from the Keras model (a run, or one rebuilt from an exported version), never
from the tf.Module SavedModel: that path silently writes a ~0.2 MB model without its weights (see
the team's TensorFlow notes). Every written model is checked to hold its weights (file size at
least ~1 byte per parameter) and refused otherwise.

The TFLite models take raw RGB pixels at the model's input size (uint8 for full INT8, float32 for
dynamic range); resnet50.preprocess_input is inside them. They are cut at the ``logits`` layer
(CUT_FLOAT_LOGITS, the default): an int8 sigmoid output has a fixed 1/256 step, so a rare finding's
scores (p ~ 0.002) collapse onto one or two levels and tie. Int8 logits (CUT_LOGITS) are better but
share one per-tensor scale across all findings and still tie (53-84 distinct scores of 123 images on
the CI model against 16-55 for the sigmoid cut). So the int8 graph ends at the 256 fc256 features
and the logits Dense (256 x k, 1 kB of float32 weights in logits_layer.npz), the sigmoid and the
per-finding calibrator run in float32 in the server (xraymodel.tflite_server), exactly as in the
FP32 SavedModel's graph. Calibration images (the representative data set) come
from other patients than the evaluation images: asserted on patient IDs, recorded in the report.
Each variant is evaluated against the FP32 served (calibrated) output on the same images: AUROC
delta with a paired patient-level CI, distinct scores per finding (ties), latency at batch 1.

The output folder is a servable version folder for xraymodel.tflite_server (a TF Serving REST
compatible server): model_<mode>.tflite, model_card.json (the source card plus a ``variant``
entry), quantization_report.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np

from xraymodel import datasets, evaluation_report, metrics, model_card
from xraymodel.staging import staged_directory

MODE_INT8 = "int8"
MODE_DYNAMIC = "dynamic"
MODES = (MODE_INT8, MODE_DYNAMIC)
# Where the quantised graph ends (what is computed in float32 after it, in the server):
CUT_FLOAT_LOGITS = "float-logits"  # int8 up to fc256; the logits Dense, sigmoid and calibrator in float (served)
CUT_LOGITS = "logits"  # int8 logits (one per-tensor scale for all findings); sigmoid + calibrator in float
CUT_PROBABILITIES = "probabilities"  # the former cut: int8 sigmoid output (kept for the tie comparison)
CUTS = (CUT_FLOAT_LOGITS, CUT_LOGITS, CUT_PROBABILITIES)
LOGITS_LAYER_FILE = "logits_layer.npz"  # float32 kernel [256, k] and bias [k] for CUT_FLOAT_LOGITS
CARD_VARIANT_SCHEMA = "xraymodel.tflite_variant/v1"
# Bytes per parameter the weights must at least occupy (int8 weights: 1; we allow 10% slack).
MIN_BYTES_PER_PARAMETER = 0.9


class QuantizationError(RuntimeError):
    """A converted model failed its checks (missing weights, unusable output)."""


def _with_pixel_preprocessing(model, cut: str = CUT_FLOAT_LOGITS):
    """Keras model taking RGB 0..255, applying the ResNet preprocessing inside, ending at ``cut``."""
    import keras

    from xraymodel.network import LOGITS_LAYER
    from xraymodel.pipeline import preprocess_pixels

    if cut not in CUTS:
        raise ValueError(f"cut must be one of {CUTS}")
    end = {CUT_FLOAT_LOGITS: "fc256", CUT_LOGITS: LOGITS_LAYER}.get(cut)
    inner = model if end is None else keras.Model(model.inputs, model.get_layer(end).output)
    input_size = int(model.input_shape[1])
    pixels = keras.Input(shape=(input_size, input_size, 3), name="pixels")
    preprocessed = keras.layers.Lambda(preprocess_pixels, name="resnet_preprocess")(pixels)
    return keras.Model(pixels, inner(preprocessed), name="tflite_wrapper")


def logits_layer_weights(model) -> tuple[np.ndarray, np.ndarray]:
    from xraymodel.network import LOGITS_LAYER

    kernel, bias = model.get_layer(LOGITS_LAYER).get_weights()
    return np.asarray(kernel, np.float32), np.asarray(bias, np.float32)


def served_probabilities(
    outputs: np.ndarray, cut: str, head: str, calibration: tuple[np.ndarray, np.ndarray] | None,
    logits_layer: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """What the server returns for the TFLite outputs: the same function as the FP32 graph's (float32)."""
    from xraymodel.export import CALIBRATION_LOGIT_CLIP

    outputs = np.asarray(outputs, dtype=np.float32)
    if cut == CUT_FLOAT_LOGITS:
        if logits_layer is None:
            raise ValueError(f"cut {cut!r} needs the float logits layer ({LOGITS_LAYER_FILE})")
        kernel, bias = logits_layer
        outputs = outputs @ kernel + bias
        cut = CUT_LOGITS
    if cut == CUT_PROBABILITIES:
        if calibration is None:
            return outputs
        p = np.clip(outputs, 1e-7, 1 - 1e-7)
        logits = np.log(p / (1 - p))
    else:
        logits = outputs
        if head != "multilabel":
            shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
            return shifted / shifted.sum(axis=-1, keepdims=True)
    if calibration is not None:
        slopes, intercepts = calibration
        logits = slopes * np.clip(logits, -CALIBRATION_LOGIT_CLIP, CALIBRATION_LOGIT_CLIP) + intercepts
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def distinct_scores(probabilities: np.ndarray, label_names) -> dict[str, int]:
    """Distinct output values per finding (ties: fewer distinct values than images)."""
    return {name: int(np.unique(probabilities[:, c]).size) for c, name in enumerate(label_names)}


def load_pixels_array(data: datasets.LabelledImages, input_size: int) -> np.ndarray:
    """float32 [n, S, S, 3] raw pixels through the training pipeline's decode and resize (per-file format)."""
    from xraymodel.pipeline import load_file_pixels

    return np.stack([load_file_pixels(path, input_size).numpy() for path in data.paths])


def convert(
    model, mode: str, calibration_pixels: np.ndarray | None = None, cut: str = CUT_FLOAT_LOGITS, *,
    float_input: bool = False, per_tensor: bool = False,
) -> bytes:
    """TFLite flatbuffer for ``mode``; raises QuantizationError when the weights are missing.

    ``float_input`` (full INT8): float32 pixels in, quantised by the model's first op instead of by
    the caller; ``per_tensor``: one weight scale per tensor instead of per output channel (bench only).
    """
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    wrapper = _with_pixel_preprocessing(model, cut)
    converter = tf.lite.TFLiteConverter.from_keras_model(wrapper)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == MODE_INT8:
        if calibration_pixels is None or len(calibration_pixels) == 0:
            raise QuantizationError("full INT8 needs calibration images")

        def representative_dataset():
            for pixels in calibration_pixels:
                yield [pixels[None].astype(np.float32)]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32 if float_input else tf.uint8
        converter.inference_output_type = tf.float32
        if per_tensor:
            converter._experimental_disable_per_channel = True
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints every captured variable while exporting
        flatbuffer = converter.convert()
    check_has_weights(flatbuffer, model.count_params())
    return flatbuffer


def check_has_weights(flatbuffer: bytes, parameters: int) -> None:
    """Refuse a model smaller than its int8 weights would be (the 0.2 MB weightless trap)."""
    minimum = int(parameters * MIN_BYTES_PER_PARAMETER)
    if len(flatbuffer) < minimum:
        raise QuantizationError(
            f"converted model is {len(flatbuffer):,} bytes but {parameters:,} parameters need at least "
            f"{minimum:,}: its weights are missing; refusing to write it"
        )


class TFLiteRunner:
    """Batch-1 TFLite inference on raw pixels, handling input quantization."""

    def __init__(self, flatbuffer: bytes, threads: int = 2):
        import tensorflow as tf

        self.interpreter = tf.lite.Interpreter(model_content=flatbuffer, num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def predict_one(self, pixels: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if dtype == np.float32:
            value = pixels[None].astype(np.float32)
        else:
            scale, zero_point = self.input["quantization"]
            info = np.iinfo(dtype)
            value = np.clip(np.round(pixels / scale + zero_point), info.min, info.max).astype(dtype)[None]
        self.interpreter.set_tensor(self.input["index"], value)
        self.interpreter.invoke()
        output = self.interpreter.get_tensor(self.output["index"])[0]
        if self.output["dtype"] != np.float32:
            scale, zero_point = self.output["quantization"]
            output = (output.astype(np.float32) - zero_point) * scale
        return output

    def predict(self, pixels: np.ndarray) -> tuple[np.ndarray, list[float]]:
        outputs, seconds = [], []
        for image in pixels:
            started = time.perf_counter()
            outputs.append(self.predict_one(image))
            seconds.append(time.perf_counter() - started)
        return np.stack(outputs), seconds


def split_by_patient(data: datasets.LabelledImages, calibration_images: int, seed: int = 0):
    """(calibration, evaluation) subsets of one folder with no patient in both.

    Whole patients, in a seeded random order, go to calibration until ``calibration_images`` images
    (at most half of the images); every other patient is evaluated.
    """
    patients = sorted(set(data.patient_ids))
    if len(patients) < 2:
        raise QuantizationError("calibration and evaluation need different patients: the data has fewer than 2")
    order = np.random.default_rng(seed).permutation(len(patients))
    budget = min(calibration_images, len(data) // 2)
    images_of: dict[str, list[int]] = {}
    for index, patient in enumerate(data.patient_ids):
        images_of.setdefault(patient, []).append(index)
    chosen: set[str] = set()
    count = 0
    for position in order:
        if count >= budget or len(chosen) >= len(patients) - 1:
            break
        chosen.add(patients[position])
        count += len(images_of[patients[position]])
    calibration = [i for i, patient in enumerate(data.patient_ids) if patient in chosen]
    evaluation = [i for i, patient in enumerate(data.patient_ids) if patient not in chosen]
    return data.subset(calibration), data.subset(evaluation)


def check_disjoint_patients(calibration: datasets.LabelledImages, evaluation: datasets.LabelledImages) -> dict:
    """Refuse calibration images of evaluated patients; the facts for the report."""
    shared = set(calibration.patient_ids) & set(evaluation.patient_ids)
    if shared:
        raise QuantizationError(
            f"{len(shared)} patient(s) are in both the calibration and the evaluation images "
            f"(e.g. {sorted(shared)[:3]}): the INT8 delta would be measured on its own calibration data"
        )
    return {
        "calibration_patients": len(set(calibration.patient_ids)),
        "evaluation_patients": len(set(evaluation.patient_ids)),
        "shared_patients": 0,
    }


def quantize(
    model_path: str | Path,
    out_dir: str | Path,
    *,
    modes: tuple[str, ...] = MODES,
    data_dir: str | None = None,
    calibration_data_dir: str | None = None,
    calibration_images: int = 100,
    bootstrap_resamples: int = 200,
    cut: str = CUT_FLOAT_LOGITS,
) -> dict:
    """Convert, check, evaluate against FP32 and write ``out_dir`` (models + card + report) atomically."""
    from xraymodel import keras_runtime
    from xraymodel.evaluation import is_export_dir, resolve_evaluation_data
    from xraymodel.export import calibration_vectors, served_calibration, served_scale_fields

    keras_runtime.configure()
    model_path = Path(model_path)
    if is_export_dir(model_path):
        from xraymodel.export import load_keras_from_export

        model, card = load_keras_from_export(model_path)
        labels, head = card["labels"], card["head"]
        calibration = (card.get("calibration") or {})
        vectors = calibration_vectors(calibration, labels) if calibration.get("applied_in_serving_graph") else None
        if not data_dir:
            raise ValueError(f"{model_path} is an exported version: pass --data (calibration and evaluation images)")
        source_card = card
    else:
        from xraymodel.training import load_run

        model, record = load_run(model_path)
        labels, head = record["labels"], record["head"]
        vectors = served_calibration(record, labels, head)
        source_card = {
            "schema": "xraymodel.model_card/v1",
            "model_name": "chestxray",
            "labels": list(labels),
            "head": head,
            "input_size": int(record["input_size"]),
            "parameters": int(model.count_params()),
            **served_scale_fields(record, vectors),
            "training": {"run": str(model_path.resolve()), "data_fingerprint": record["data"]["fingerprint"]},
            "data_provenance": model_card.data_provenance(record),
            "preprocessing": model_card.preprocessing_spec(int(record["input_size"])),
            "subgroups": model_card.subgroups_section(None),
            "intended_use": "Research and rollout testing of a chest X-ray finding classifier; not a medical device.",
        }
    if calibration_data_dir:
        calibration_data = datasets.load_dataset(calibration_data_dir, labels)
        evaluation_data, description = resolve_evaluation_data(model_path, data_dir, "test", labels)
        calibration_description = f"{Path(calibration_data_dir).resolve()} (all images)"
    elif data_dir:
        everything, where = resolve_evaluation_data(model_path, data_dir, "test", labels)
        calibration_data, evaluation_data = split_by_patient(everything, calibration_images)
        description = f"{where}: patients not used for calibration"
        calibration_description = f"{where}: {len(set(calibration_data.patient_ids))} patients set aside"
    else:
        evaluation_data, description = resolve_evaluation_data(model_path, None, "test", labels)
        calibration_data = datasets.read_manifest(model_path / "splits" / "train.csv", record["data"]["root"], labels)
        calibration_description = f"train split of {model_path.name}"
    disjoint = check_disjoint_patients(calibration_data, evaluation_data)
    input_size = int(model.input_shape[1])
    rng = np.random.default_rng(0)
    chosen = rng.permutation(len(calibration_data))[:calibration_images]
    calibration_pixels = load_pixels_array(calibration_data.subset(sorted(chosen)), input_size)
    evaluation_pixels = load_pixels_array(evaluation_data, input_size)

    from xraymodel.pipeline import preprocess_pixels

    raw = model.predict(preprocess_pixels(evaluation_pixels).numpy(), batch_size=32, verbose=0)
    # FP32 as TF Serving serves it (calibrated in the graph): the reference of every delta
    reference = served_probabilities(raw, CUT_PROBABILITIES, head, vectors)
    reference_report = evaluation_report.build_report(
        evaluation_data.labels, reference, labels, bootstrap_resamples=bootstrap_resamples,
        groups=evaluation_data.patient_ids,
    )
    fp32_mean = reference_report["headline"]["mean_auroc"]
    report = {
        "schema": "xraymodel.quantization/v2",
        "model": str(model_path.resolve()),
        "evaluation_set": description,
        "calibration_set": calibration_description,
        "images": len(evaluation_data),
        "calibration_images": len(chosen),
        **disjoint,
        "cut": cut,
        "served_output": "calibrated probabilities" if vectors is not None else "probabilities",
        "parameters": int(model.count_params()),
        "fp32": {
            "mean_auroc": fp32_mean,
            "bytes_float32_weights": int(model.count_params()) * 4,
            "distinct_scores_per_label": distinct_scores(reference, labels),
        },
        "variants": {},
    }
    logits_layer = logits_layer_weights(model) if cut == CUT_FLOAT_LOGITS else None
    with staged_directory(out_dir) as staging:
        if logits_layer is not None:
            np.savez(staging / LOGITS_LAYER_FILE, kernel=logits_layer[0], bias=logits_layer[1])
        for mode in modes:
            flatbuffer = convert(model, mode, calibration_pixels if mode == MODE_INT8 else None, cut=cut)
            runner = TFLiteRunner(flatbuffer)
            outputs, seconds = runner.predict(evaluation_pixels)
            probabilities = served_probabilities(outputs, cut, head, vectors, logits_layer)
            variant_report = evaluation_report.build_report(
                evaluation_data.labels, probabilities, labels, bootstrap_resamples=bootstrap_resamples,
                groups=evaluation_data.patient_ids,
            )
            _, delta_ci = metrics.bootstrap_auroc_difference(
                evaluation_data.labels, reference, probabilities, resamples=bootstrap_resamples,
                groups=evaluation_data.patient_ids,
            )
            file_name = f"model_{mode}.tflite"
            (staging / file_name).write_bytes(flatbuffer)
            mean = variant_report["headline"]["mean_auroc"]
            report["variants"][mode] = {
                "file": file_name,
                "bytes": len(flatbuffer),
                "size_ratio_to_fp32": len(flatbuffer) / (int(model.count_params()) * 4),
                "input_dtype": np.dtype(runner.input["dtype"]).name,
                "output": cut,
                "mean_auroc": mean,
                "mean_auroc_delta_vs_fp32": None if mean is None or fp32_mean is None else mean - fp32_mean,
                "mean_auroc_delta_vs_fp32_ci": None if delta_ci is None else [delta_ci.lower, delta_ci.upper],
                "delta_ci_method": "paired patient cluster bootstrap (same resamples for FP32 and the variant)",
                "per_label_auroc_delta": {
                    name: _delta(variant_report, reference_report, name) for name in labels
                },
                "distinct_scores_per_label": distinct_scores(probabilities, labels),
                "mean_ece": variant_report["headline"]["mean_ece"],
                "fp32_mean_ece": reference_report["headline"]["mean_ece"],
                "max_abs_probability_difference": float(np.max(np.abs(probabilities - reference))),
                "batch1_latency_ms": {
                    "median": 1000 * statistics.median(seconds),
                    "p90": 1000 * float(np.quantile(seconds, 0.9)),
                },
            }
        (staging / "quantization_report.json").write_text(json.dumps(report, indent=2) + "\n")
        served_mode = MODE_INT8 if MODE_INT8 in modes else modes[0]
        card = {
            **source_card,
            "variant": {
                "schema": CARD_VARIANT_SCHEMA,
                "runtime": "tflite (xraymodel.tflite_server: TF Serving REST :predict compatible)",
                "mode": served_mode,
                "file": f"model_{served_mode}.tflite",
                "cut": cut,
                "logits_layer_file": LOGITS_LAYER_FILE if logits_layer is not None else None,
                "served_output": report["served_output"],
                "source": str(model_path.resolve()),
                "source_version": source_card.get("version"),
                "quantization": {k: report[k] for k in ("evaluation_set", "calibration_set", "images", "calibration_images",
                                                        "calibration_patients", "evaluation_patients", "shared_patients")}
                | {"fp32_mean_auroc": fp32_mean, **{k: report["variants"][served_mode][k] for k in (
                    "mean_auroc", "mean_auroc_delta_vs_fp32", "mean_auroc_delta_vs_fp32_ci", "delta_ci_method", "bytes")}},
            },
        }
        card["variant"]["quantization"]["synthetic"] = model_card.is_synthetic_root(evaluation_data.root)
        if "version" not in source_card:  # a run's variant: its only metrics are the quantisation's
            card["synthetic_evaluation"] = card["variant"]["quantization"]["synthetic"]
        card["hashes"] = {**(source_card.get("hashes") or {}), "source_weights_sha256": model_card.weights_sha256(model),
                          "tflite_sha256": "sha256:" + hashlib.sha256((staging / card["variant"]["file"]).read_bytes()).hexdigest(),
                          "code": model_card.code_sha256()}
        model_card.write_card(staging, card)
    return report


def _delta(variant: dict, reference: dict, name: str) -> float | None:
    a, b = variant["per_label"][name]["auroc"], reference["per_label"][name]["auroc"]
    return None if a is None or b is None else a["estimate"] - b["estimate"]
