"""TFLite quantization: full INT8 (integer-only ops, calibrated) and dynamic-range INT8 weights.

Both are converted from the Keras model (a run, or one rebuilt from an exported version), never
from the tf.Module SavedModel: that path silently writes a ~0.2 MB model without its weights (see
the team's TensorFlow notes). Every written model is checked to hold its weights (file size at
least ~1 byte per parameter) and refused otherwise.

The TFLite models take raw RGB pixels at the model's input size (uint8 for full INT8, float32 for
dynamic range); resnet50.preprocess_input is inside them. Each is evaluated against FP32 on the
same images: AUROC delta and latency at batch 1 go into quantization_report.json.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np

from xraymodel import datasets, evaluation_report, metrics
from xraymodel.staging import staged_directory

MODE_INT8 = "int8"
MODE_DYNAMIC = "dynamic"
MODES = (MODE_INT8, MODE_DYNAMIC)
# Bytes per parameter the weights must at least occupy (int8 weights: 1; we allow 10% slack).
MIN_BYTES_PER_PARAMETER = 0.9


class QuantizationError(RuntimeError):
    """A converted model failed its checks (missing weights, unusable output)."""


def _with_pixel_preprocessing(model):
    """Keras model taking RGB 0..255 and applying the ResNet preprocessing inside (for TFLite)."""
    import keras

    from xraymodel.pipeline import preprocess_pixels

    input_size = int(model.input_shape[1])
    pixels = keras.Input(shape=(input_size, input_size, 3), name="pixels")
    preprocessed = keras.layers.Lambda(preprocess_pixels, name="resnet_preprocess")(pixels)
    return keras.Model(pixels, model(preprocessed), name="tflite_wrapper")


def load_pixels_array(data: datasets.LabelledImages, input_size: int) -> np.ndarray:
    """float32 [n, S, S, 3] raw pixels through the training pipeline's decode and resize (per-file format)."""
    from xraymodel.pipeline import load_file_pixels

    return np.stack([load_file_pixels(path, input_size).numpy() for path in data.paths])


def convert(model, mode: str, calibration_pixels: np.ndarray | None = None) -> bytes:
    """TFLite flatbuffer for ``mode``; raises QuantizationError when the weights are missing."""
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    wrapper = _with_pixel_preprocessing(model)
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
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32
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


def quantize(
    model_path: str | Path,
    out_dir: str | Path,
    *,
    modes: tuple[str, ...] = MODES,
    data_dir: str | None = None,
    calibration_images: int = 100,
    bootstrap_resamples: int = 200,
) -> dict:
    """Convert, check, evaluate against FP32 and write ``out_dir`` (models + report) atomically."""
    from xraymodel import keras_runtime
    from xraymodel.evaluation import is_export_dir, resolve_evaluation_data

    keras_runtime.configure()
    model_path = Path(model_path)
    if is_export_dir(model_path):
        from xraymodel.export import load_keras_from_export

        model, card = load_keras_from_export(model_path)
        labels = card["labels"]
        if not data_dir:
            raise ValueError(f"{model_path} is an exported version: pass --data (calibration and evaluation images)")
        evaluation_data, description = resolve_evaluation_data(model_path, data_dir, "test", labels)
        calibration_data = evaluation_data
    else:
        from xraymodel.training import load_run

        model, record = load_run(model_path)
        labels = record["labels"]
        evaluation_data, description = resolve_evaluation_data(model_path, data_dir, "test", labels)
        calibration_data = (
            evaluation_data if data_dir else datasets.read_manifest(model_path / "splits" / "train.csv", record["data"]["root"], labels)
        )
    input_size = int(model.input_shape[1])
    rng = np.random.default_rng(0)
    chosen = rng.permutation(len(calibration_data))[:calibration_images]
    calibration_pixels = load_pixels_array(calibration_data.subset(sorted(chosen)), input_size)
    evaluation_pixels = load_pixels_array(evaluation_data, input_size)

    from xraymodel.pipeline import preprocess_pixels

    reference = model.predict(preprocess_pixels(evaluation_pixels).numpy(), batch_size=32, verbose=0)
    reference_report = evaluation_report.build_report(
        evaluation_data.labels, reference, labels, bootstrap_resamples=bootstrap_resamples,
        groups=evaluation_data.patient_ids,
    )
    fp32_mean = reference_report["headline"]["mean_auroc"]
    report = {
        "schema": "xraymodel.quantization/v1",
        "model": str(model_path.resolve()),
        "evaluation_set": description,
        "images": len(evaluation_data),
        "calibration_images": len(chosen),
        "parameters": int(model.count_params()),
        "fp32": {"mean_auroc": fp32_mean, "bytes_float32_weights": int(model.count_params()) * 4},
        "variants": {},
    }
    with staged_directory(out_dir) as staging:
        for mode in modes:
            flatbuffer = convert(model, mode, calibration_pixels if mode == MODE_INT8 else None)
            runner = TFLiteRunner(flatbuffer)
            probabilities, seconds = runner.predict(evaluation_pixels)
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
                "mean_auroc": mean,
                "mean_auroc_delta_vs_fp32": None if mean is None or fp32_mean is None else mean - fp32_mean,
                "mean_auroc_delta_vs_fp32_ci": None if delta_ci is None else [delta_ci.lower, delta_ci.upper],
                "delta_ci_method": "paired patient cluster bootstrap (same resamples for FP32 and the variant)",
                "per_label_auroc_delta": {
                    name: _delta(variant_report, reference_report, name) for name in labels
                },
                "max_abs_probability_difference": float(np.max(np.abs(probabilities - reference))),
                "batch1_latency_ms": {
                    "median": 1000 * statistics.median(seconds),
                    "p90": 1000 * float(np.quantile(seconds, 0.9)),
                },
            }
        (staging / "quantization_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _delta(variant: dict, reference: dict, name: str) -> float | None:
    a, b = variant["per_label"][name]["auroc"], reference["per_label"][name]["auroc"]
    return None if a is None or b is None else a["estimate"] - b["estimate"]
