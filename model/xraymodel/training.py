"""Training: manifest -> patient split -> checks -> head phase -> fine-tune phase -> run directory.

Schedule (the usual transfer-learning one):

1. head phase: backbone frozen (BatchNormalization in inference mode), so its pooled features are
   a fixed function of the image; they are computed once and the head (Dense 256 + output) is
   trained on them for ``head_epochs`` (cheap: no backbone passes per epoch, no augmentation).
2. fine-tune phase: the top ``unfreeze_stages`` ResNet stages (conv5_, then conv4_, ...) are
   unfrozen and trained end to end on augmented images at a lower learning rate, with
   checkpoints of the best validation AUROC, early stopping, TensorBoard logs and a backup that
   ``resume`` continues from.

The backbone starts from nothing (weights "none"), ImageNet, a local weights file, or a previous
exported version (continuous retraining: ``warm_start``). The run is built in ``RUN.incomplete/``
and renamed to ``RUN/`` when it finishes; ``resume`` continues an interrupted ``RUN.incomplete``.

Run directory:
    model.keras              the trained classifier (best validation AUROC)
    training_record.json     config, data fingerprint, splits, loss weights, history, validation metrics
    splits/{train,val,test}.csv   the patient-level split (evaluate uses test.csv by default)
    logs/{head,finetune}/    TensorBoard event files
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from xraymodel import datasets, evaluation_report
from xraymodel.errors import InputDataError
from xraymodel.findings import FINDINGS, resolve_label_names

RECORD_SCHEMA = "xraymodel.training/v1"
RECORD_FILE = "training_record.json"
MODEL_FILE = "model.keras"
STATE_FILE = "state.json"
INCOMPLETE_SUFFIX = ".incomplete"


@dataclass
class TrainingConfig:
    """Everything that determines a training run (recorded verbatim in training_record.json)."""

    data_dir: str
    out_dir: str
    layout: str = "auto"
    labels: list[str] = field(default_factory=lambda: list(FINDINGS))
    head: str = "multilabel"
    input_size: int = 224
    batch_size: int = 16
    backbone_weights: str = "none"
    warm_start: str | None = None
    head_epochs: int = 100
    head_learning_rate: float = 1e-3
    finetune_epochs: int = 5
    finetune_learning_rate: float = 1e-5
    unfreeze_stages: int = 1
    steps_per_epoch: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    class_weighting: bool = True
    augment: bool = True
    cache: str = "memory"
    early_stopping_patience: int = 5
    target_sensitivity: float = 0.9  # operating points recorded per finding (validation split)
    seed: int = 0
    verbose: int = 1


def incomplete_dir(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + INCOMPLETE_SUFFIX)


def _write_json(path: Path, payload: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(temporary, path)


def prepare_data(config: TrainingConfig) -> tuple[dict[str, datasets.LabelledImages], str]:
    """Manifest, patient split and the data fingerprint; raises InputDataError before any write."""
    label_names = resolve_label_names(config.labels, single_label=config.head == "softmax")
    data = datasets.load_dataset(
        config.data_dir, label_names, layout=config.layout, single_label=config.head == "softmax"
    )
    splits, _ = datasets.split_data(data, config.val_fraction, config.test_fraction, config.seed)
    for name in ("train", "val"):
        if len(splits[name]) == 0:
            raise InputDataError(f"{config.data_dir}: the {name} split is empty (too few patients)")
    split_of = {path: name for name, subset in splits.items() for path in subset.paths}
    fingerprint = datasets.fingerprint_and_check(data, split_of)
    return splits, fingerprint


def train(config: TrainingConfig, resume: bool = False, finetune_callbacks: list | None = None) -> Path:
    """Run the whole schedule; returns the finished run directory.

    ``finetune_callbacks`` are extra Keras callbacks for the fine-tune phase (progress reporting;
    tests use one to interrupt a run and resume it).
    """
    from xraymodel import keras_runtime

    out_dir = Path(config.out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; runs are immutable (choose another --out)")
    staging = incomplete_dir(out_dir)
    if staging.exists() and not resume:
        raise FileExistsError(f"{staging} holds an interrupted run: pass --resume to continue it, or delete it")
    if resume and not (staging / STATE_FILE).is_file():
        raise FileNotFoundError(f"nothing to resume: {staging / STATE_FILE} not found")
    splits, fingerprint = prepare_data(config)

    keras_runtime.configure(seed=config.seed)
    import keras

    from xraymodel import losses, network, pipeline
    from xraymodel.tensorboard_log import ScalarEventLog

    if resume:
        state = json.loads((staging / STATE_FILE).read_text())
        if state["data_fingerprint"] != fingerprint:
            raise InputDataError(f"{config.data_dir}: data changed since the interrupted run (fingerprint differs)")
        if state["config"] != _comparable(config):
            raise ValueError(f"{staging}: configuration differs from the interrupted run; start a new run")
    else:
        staging.mkdir(parents=True)
        (staging / "splits").mkdir()
        for name, subset in splits.items():
            datasets.write_manifest(subset, staging / "splits" / f"{name}.csv")
        state = {"data_fingerprint": fingerprint, "config": _comparable(config), "phases_done": [], "history": {}}
        _write_json(staging / STATE_FILE, state)

    label_names = splits["train"].label_names
    warm_start_card = None
    if config.warm_start:
        from xraymodel.export import load_keras_from_export

        model, warm_start_card = load_keras_from_export(config.warm_start)
        if tuple(warm_start_card["labels"]) != tuple(label_names) or warm_start_card["head"] != config.head:
            raise ValueError(
                f"{config.warm_start}: its labels/head {warm_start_card['labels']}/{warm_start_card['head']} "
                f"differ from this run's {list(label_names)}/{config.head}"
            )
        if int(warm_start_card["input_size"]) != config.input_size:
            rebuilt = network.build_classifier(len(label_names), config.input_size, config.head)
            rebuilt.set_weights(model.get_weights())
            model = rebuilt
    else:
        model = network.build_classifier(len(label_names), config.input_size, config.head, config.backbone_weights)

    train_labels = splits["train"].labels
    if config.head == network.HEAD_MULTILABEL:
        loss_weights = losses.positive_weights(train_labels, config.class_weighting)
        loss = losses.WeightedBinaryCrossentropy(loss_weights)
    else:
        loss_weights = losses.class_weights(train_labels, config.class_weighting)
        loss = losses.WeightedCategoricalCrossentropy(loss_weights)

    def auc_metric():
        return keras.metrics.AUC(multi_label=True, num_labels=len(label_names), name="auc")

    cache = "" if config.cache == "memory" else (None if config.cache == "none" else config.cache)
    checkpoints = staging / "checkpoints"
    checkpoints.mkdir(exist_ok=True)
    head_weights = checkpoints / "after_head.weights.h5"
    started = time.time()

    # Phase 1: head on cached backbone features.
    if "head" in state["phases_done"]:
        model.load_weights(head_weights)
    elif config.head_epochs > 0:
        network.set_trainable_stages(model, 0)
        feature_model = keras.Model(model.input, model.get_layer("avg_pool").output)
        features = {}
        for name in ("train", "val"):
            ds = pipeline.build_dataset(splits[name], config.input_size, config.batch_size, cache=None)
            features[name] = feature_model.predict(ds, verbose=0)
        head_model = network.head_on_features(model, features["train"].shape[1])
        head_model.compile(
            keras.optimizers.Adam(config.head_learning_rate, clipnorm=1.0),
            loss=loss,
            metrics=[auc_metric()],
            steps_per_execution=32,  # the head is tiny: run many steps per graph call
        )
        history = head_model.fit(
            features["train"],
            splits["train"].labels,
            batch_size=max(config.batch_size, 32),
            epochs=config.head_epochs,
            validation_data=(features["val"], splits["val"].labels),
            shuffle=True,
            verbose=2 if config.verbose else 0,
            callbacks=[
                keras.callbacks.EarlyStopping(
                    monitor="val_auc", mode="max", patience=max(config.early_stopping_patience, 20),
                    restore_best_weights=True,
                ),
                ScalarEventLog(str(staging / "logs" / "head")),
            ],
        )
        model.save_weights(head_weights)
        state["phases_done"].append("head")
        state["history"]["head"] = _plain_history(history.history)
        state["head_best_val_auc"] = float(max(history.history["val_auc"]))
        state.setdefault("phase_seconds", {})["head"] = round(time.time() - started, 1)
        _write_json(staging / STATE_FILE, state)

    # Phase 2: unfreeze the top stages, train end to end on augmented images.
    if config.finetune_epochs > 0 and "finetune" not in state["phases_done"]:
        finetune_started = time.time()
        network.set_trainable_stages(model, config.unfreeze_stages)
        model.compile(
            keras.optimizers.Adam(config.finetune_learning_rate), loss=loss, metrics=[auc_metric()], jit_compile=False
        )
        train_ds = pipeline.build_dataset(
            splits["train"], config.input_size, config.batch_size,
            training=True, augment=config.augment, cache=cache, seed=config.seed,
        )
        if config.steps_per_epoch:
            train_ds = train_ds.repeat()
        val_ds = pipeline.build_dataset(splits["val"], config.input_size, config.batch_size, cache=cache)
        best = checkpoints / "best.weights.h5"
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.finetune_epochs,
            steps_per_epoch=config.steps_per_epoch,
            verbose=config.verbose,
            callbacks=[
                keras.callbacks.BackupAndRestore(str(staging / "backup")),
                # Only weights that beat the head phase on validation are kept: fine-tuning
                # can never leave the run worse than its head-only model.
                keras.callbacks.ModelCheckpoint(
                    str(best), monitor="val_auc", mode="max", save_best_only=True, save_weights_only=True,
                    initial_value_threshold=state.get("head_best_val_auc"),
                ),
                keras.callbacks.EarlyStopping(
                    monitor="val_auc", mode="max", patience=config.early_stopping_patience
                ),
                ScalarEventLog(str(staging / "logs" / "finetune")),
                *(finetune_callbacks or []),
            ],
        )
        state["finetune_improved_on_head"] = best.is_file()
        state.setdefault("phase_seconds", {})["finetune"] = round(time.time() - finetune_started, 1)
        if best.is_file():
            model.load_weights(best)
        elif head_weights.is_file():
            model.load_weights(head_weights)
        state["phases_done"].append("finetune")
        state["history"]["finetune"] = _plain_history(history.history)
        _write_json(staging / STATE_FILE, state)

    # Validation report: thresholds chosen here are out-of-sample for the test split.
    val_probabilities = model.predict(
        pipeline.build_dataset(splits["val"], config.input_size, config.batch_size, cache=None), verbose=0
    )
    validation = evaluation_report.build_report(
        splits["val"].labels, val_probabilities, label_names, bootstrap_resamples=200, seed=config.seed,
        groups=splits["val"].patient_ids,
    )
    thresholds = {name: validation["per_label"][name]["operating_point"]["threshold"] for name in label_names}
    # Calibration: per-finding Platt scaling fitted on val (class weights inflate the probabilities);
    # its ECE/Brier effect out of sample shows in `evaluate` on the test split.
    calibrators = evaluation_report.fit_calibration(splits["val"].labels, val_probabilities, label_names)
    target_points = evaluation_report.target_sensitivity_points(
        splits["val"].labels, val_probabilities, label_names, config.target_sensitivity,
        groups=splits["val"].patient_ids, seed=config.seed,
    )
    model.save(staging / MODEL_FILE)
    record = {
        "schema": RECORD_SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "labels": list(label_names),
        "head": config.head,
        "input_size": config.input_size,
        "backbone_weights": config.backbone_weights,
        "warm_start": None
        if warm_start_card is None
        else {
            "path": str(Path(config.warm_start).resolve()),
            "version": warm_start_card.get("version"),
            "data_fingerprint": warm_start_card.get("training", {}).get("data_fingerprint"),
        },
        "data": {
            "root": str(Path(config.data_dir).resolve()),
            "fingerprint": fingerprint,
            "split": datasets.SPLIT_OFFICIAL
            if datasets.has_official_lists(config.data_dir)
            else datasets.SPLIT_STRATIFIED,
            "images": {name: len(subset) for name, subset in splits.items()},
            "patients": {name: len(set(subset.patient_ids)) for name, subset in splits.items()},
            "positives": {name: subset.positives_per_label() for name, subset in splits.items()},
        },
        "loss": {"type": type(loss).__name__, "weights": dict(zip(label_names, loss_weights))},
        "history": state["history"],
        "finetune_improved_on_head": state.get("finetune_improved_on_head"),
        "validation": {
            "mean_auroc": validation["headline"]["mean_auroc"],
            "per_label_auroc": {
                name: (entry["auroc"] or {}).get("estimate") for name, entry in validation["per_label"].items()
            },
            "youden_thresholds": thresholds,
            "target_sensitivity_points": target_points,
        },
        "calibration": {
            "method": "per-finding Platt scaling of the logit, fitted on the validation split",
            "per_label": {name: calibrator.as_dict() for name, calibrator in calibrators.items()},
        },
        "config": asdict(config),
        "training_seconds": round(time.time() - started, 1),
        "phase_seconds": state.get("phase_seconds", {}),
        "software": _software_versions(),
    }
    _write_json(staging / RECORD_FILE, record)
    (staging / STATE_FILE).unlink()
    shutil.rmtree(staging / "backup", ignore_errors=True)
    os.rename(staging, out_dir)
    return out_dir


def _comparable(config: TrainingConfig) -> dict:
    settings = asdict(config)
    settings.pop("verbose", None)
    return json.loads(json.dumps(settings))


def _plain_history(history: dict) -> dict:
    return {key: [float(v) for v in values] for key, values in history.items()}


def _software_versions() -> dict:
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version()}


def load_run(run_dir: str | Path):
    """(Keras model, training record) of a finished run directory."""
    from xraymodel import keras_runtime

    keras_runtime.configure()
    import keras

    from xraymodel import losses  # noqa: F401  (registers the custom losses for deserialisation)

    run_dir = Path(run_dir)
    record_path = run_dir / RECORD_FILE
    if not record_path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a training run ({RECORD_FILE} missing)")
    record = json.loads(record_path.read_text())
    model = keras.saving.load_model(run_dir / MODEL_FILE, compile=False)
    return model, record
