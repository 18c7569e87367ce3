"""Evaluate a trained run (Keras) or an exported version (through its serving_default signature).

Evaluating the export runs the exact graph TF Serving will run (decode + resize + preprocess in
the graph), so the numbers promote what is served. Output folder (written whole or not at all):

    metrics.json        evaluation_report.build_report() plus what was evaluated on which data
    roc_curves.png      one ROC panel per finding with AUROC [95% CI] and the operating point
    reliability.png     calibration (pooled over findings) with the ECE
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from xraymodel import datasets, evaluation_report, subgroups
from xraymodel.staging import staged_directory

PREDICT_BATCH = 32


def predict_with_keras(model, data: datasets.LabelledImages, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    from xraymodel import pipeline

    input_size = int(model.input_shape[1])
    return model.predict(pipeline.build_dataset(data, input_size, batch_size, cache=None), verbose=0)


def encoded_image_bytes(path: str) -> bytes:
    """File bytes for the bytes signature (a DICOM is windowed and re-encoded as PNG)."""
    from xraymodel.dicom_input import dicom_to_png_bytes, is_dicom_file

    return dicom_to_png_bytes(path) if is_dicom_file(path) else Path(path).read_bytes()


def predict_with_export(version_dir: str | Path, data: datasets.LabelledImages, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    import tensorflow as tf

    from xraymodel.export import INPUT_BYTES, OUTPUT_PROBABILITIES, SIGNATURE_BYTES

    signature = tf.saved_model.load(str(version_dir)).signatures[SIGNATURE_BYTES]
    outputs = []
    for start in range(0, len(data), batch_size):
        batch = [encoded_image_bytes(path) for path in data.paths[start : start + batch_size]]
        outputs.append(signature(**{INPUT_BYTES: tf.constant(batch)})[OUTPUT_PROBABILITIES].numpy())
    return np.concatenate(outputs)


def is_export_dir(path: str | Path) -> bool:
    return (Path(path) / "saved_model.pb").is_file()


def resolve_evaluation_data(model_path: Path, data_dir: str | None, split: str, labels: list[str], layout: str = "auto"):
    """The evaluation set: every labelled image of ``data_dir``, or the run's recorded split."""
    if data_dir:
        return datasets.load_dataset(data_dir, labels, layout=layout), f"{Path(data_dir).resolve()} (all images)"
    manifest = model_path / "splits" / f"{split}.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{model_path}: no {split} split recorded; pass --data")
    record = json.loads((model_path / "training_record.json").read_text())
    root = record["data"]["root"]
    return datasets.read_manifest(manifest, root, labels), f"{root} ({split} split of {model_path.name})"


def evaluate(
    model_path: str | Path,
    out_dir: str | Path,
    *,
    data_dir: str | None = None,
    split: str = "test",
    threshold: str = "auto",
    bootstrap_resamples: int = 1000,
    seed: int = 0,
    layout: str = "auto",
) -> dict:
    """Predict, build the report, write metrics.json + PNGs into ``out_dir``; returns the report."""
    from xraymodel import keras_runtime, report_plots

    keras_runtime.configure()
    model_path = Path(model_path)
    if is_export_dir(model_path):
        from xraymodel.export import read_model_card

        card = read_model_card(model_path)
        labels, source_thresholds, kind = card["labels"], card.get("operating_thresholds"), "export"
        calibration = (card.get("calibration") or {}).get("per_label")
        if (card.get("calibration") or {}).get("applied_in_serving_graph"):
            calibration = None  # the signature already serves calibrated probabilities: never calibrate twice
        if not data_dir:
            raise ValueError(f"{model_path} is an exported version: pass --data with the evaluation images")
    else:
        from xraymodel.training import load_run

        model, record = load_run(model_path)
        labels, source_thresholds, kind = record["labels"], record["validation"]["youden_thresholds"], "run"
        calibration = (record.get("calibration") or {}).get("per_label")
    data, description = resolve_evaluation_data(model_path, data_dir, split, labels, layout)
    fingerprint = datasets.fingerprint_and_check(data)
    if threshold == "auto":
        policy = source_thresholds if source_thresholds else evaluation_report.THRESHOLD_YOUDEN
    elif threshold == evaluation_report.THRESHOLD_YOUDEN:
        policy = threshold
    else:
        policy = float(threshold)
    probabilities = predict_with_export(model_path, data) if kind == "export" else predict_with_keras(model, data)
    report = evaluation_report.build_report(
        data.labels, probabilities, labels, threshold_policy=policy, bootstrap_resamples=bootstrap_resamples, seed=seed,
        groups=data.patient_ids, calibrators=evaluation_report.calibrators_from_dict(calibration),
    )
    attributes = subgroups.image_attributes(data.root, data.paths)
    if attributes:  # sex, age band, view, site: each subgroup's mean AUROC with a patient-bootstrap CI
        report["subgroups"] = subgroups.subgroup_report(
            data.labels, probabilities, labels, attributes, data.patient_ids,
            resamples=min(bootstrap_resamples, 500), seed=seed,
        )
        report["headline"]["worst_subgroup"] = report["subgroups"]["worst"]
    if isinstance(policy, dict):
        report["headline"]["threshold_source"] = "validation split (Youden's J at training time)"
    report["model"] = {"path": str(model_path.resolve()), "kind": kind}
    from xraymodel.model_card import is_synthetic_root

    report["dataset"] = {
        "description": description, "fingerprint": fingerprint, "images": len(data),
        "synthetic": is_synthetic_root(data.root),
    }
    with staged_directory(out_dir) as staging:
        (staging / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        report_plots.plot_roc_curves(data.labels, probabilities, labels, report, staging / "roc_curves.png")
        report_plots.plot_reliability(data.labels, probabilities, report, staging / "reliability.png")
        np.savez_compressed(staging / "predictions.npz", labels=data.labels, probabilities=probabilities)
    return report
