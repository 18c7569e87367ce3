"""``modeldeploy model ...``: train, evaluate, export, quantize, gradcam, check-input, digest (and synth for demo data).

Registered by modeldeploy.cli through ``register(subparsers)``. This module must stay cheap to
import: TensorFlow, Keras, pydicom and matplotlib are imported inside the handlers only, so
``modeldeploy validate`` and the operator never load them. Every handler returns an exit code:
0 success, 2 bad input or refused output (message on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from xraymodel.errors import InputDataError
from xraymodel.findings import FINDINGS
from xraymodel.staging import OutputExistsError

EXIT_OK = 0
EXIT_GATE_FAILED = 1  # evaluate: the report was written, and a quality gate (--min-subgroup-auroc) failed
EXIT_BAD_INPUT = 2


def _report_errors(command: str, handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn expected failures into one clear stderr line and exit code 2 (MODELDEPLOY_DEBUG=1 re-raises)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (InputDataError, OutputExistsError, FileExistsError, FileNotFoundError, ValueError, RuntimeError) as exc:
            if os.environ.get("MODELDEPLOY_DEBUG"):
                raise
            print(f"modeldeploy model {command}: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT

    return run


def _digest(args: argparse.Namespace) -> int:
    from xraymodel.digest import listing, model_digest

    if args.list:
        sys.stdout.write(listing(args.path))
    print(model_digest(args.path))
    return EXIT_OK


def _label_list(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _print_json(payload: dict) -> None:
    print(json.dumps(payload, indent=2))


def _train(args: argparse.Namespace) -> int:
    from xraymodel.training import TrainingConfig, train

    config = TrainingConfig(
        data_dir=args.data,
        out_dir=args.out,
        layout=args.layout,
        labels=args.labels,
        head=args.head,
        input_size=args.input_size,
        batch_size=args.batch_size,
        backbone_weights=args.weights,
        warm_start=args.warm_start,
        head_epochs=args.head_epochs,
        head_learning_rate=args.head_lr,
        finetune_epochs=args.finetune_epochs,
        finetune_learning_rate=args.finetune_lr,
        unfreeze_stages=args.unfreeze_stages,
        steps_per_epoch=args.steps_per_epoch,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        class_weighting=not args.no_class_weights,
        augment=not args.no_augment,
        cache=args.cache,
        early_stopping_patience=args.patience,
        seed=args.seed,
        verbose=0 if args.quiet else 1,
    )
    run_dir = train(config, resume=args.resume)
    record = json.loads((run_dir / "training_record.json").read_text())
    _print_json(
        {
            "run": str(run_dir),
            "validation_mean_auroc": record["validation"]["mean_auroc"],
            "data_fingerprint": record["data"]["fingerprint"],
            "images": record["data"]["images"],
            "training_seconds": record["training_seconds"],
        }
    )
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xraymodel.evaluation import evaluate, is_export_dir

    if not args.out and is_export_dir(args.model):
        raise ValueError(f"{args.model} is an exported version (immutable): pass --out for the evaluation")
    out = args.out or str(Path(args.model) / f"evaluation-{args.split if not args.data else 'data'}")
    report = evaluate(
        args.model, out, data_dir=args.data, split=args.split, threshold=args.threshold,
        bootstrap_resamples=args.bootstrap, seed=args.seed,
    )
    headline = report["headline"]
    _print_json(
        {
            "out": out,
            "cases": report["cases"],
            "mean_auroc": headline["mean_auroc"],
            "mean_auroc_ci": headline["mean_auroc_ci"],
            "mean_sensitivity": headline["mean_sensitivity"],
            "mean_specificity": headline["mean_specificity"],
            "mean_ece": headline["mean_ece"],
            "threshold_source": headline["threshold_source"],
            "worst_subgroup": headline.get("worst_subgroup"),
        }
    )
    if args.min_subgroup_auroc is not None:
        from xraymodel.subgroups import check_worst_subgroup

        failure = check_worst_subgroup(report, args.min_subgroup_auroc)
        if failure:
            print(f"modeldeploy model evaluate: gate failed: {failure}", file=sys.stderr)
            return EXIT_GATE_FAILED
    return EXIT_OK


def _load_evaluation(path: str | None) -> dict | None:
    from pathlib import Path

    if not path:
        return None
    candidate = Path(path)
    if candidate.is_dir():
        candidate = candidate / "metrics.json"
    if not candidate.is_file():
        raise FileNotFoundError(f"{path}: evaluation metrics.json not found")
    return json.loads(candidate.read_text())


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xraymodel.export import export_saved_model
    from xraymodel.training import load_run

    model, record = load_run(args.model)
    evaluation = _load_evaluation(args.metrics)
    if evaluation is None:
        default = Path(args.model) / "evaluation-test" / "metrics.json"
        evaluation = _load_evaluation(str(default)) if default.is_file() else None
    version_dir = export_saved_model(
        model, args.base, labels=record["labels"], head=record["head"], version=args.version,
        model_name=args.name, training_record=record, evaluation=evaluation,
    )
    card = json.loads((version_dir / "model_card.json").read_text())
    _print_json(
        {
            "version_dir": str(version_dir),
            "version": card["version"],
            "bytes": card["artifact_bytes"],
            "test_mean_auroc": (card["metrics"] or {}).get("mean_auroc"),
            "verification": card["verification"],
        }
    )
    if evaluation is None:
        print("warning: exported without test metrics (run `modeldeploy model evaluate` first)", file=sys.stderr)
    return EXIT_OK


def _quantize(args: argparse.Namespace) -> int:
    from xraymodel.quantize import MODES, quantize

    modes = MODES if args.mode == "both" else (args.mode,)
    report = quantize(
        args.model, args.out, modes=modes, data_dir=args.data, calibration_data_dir=args.calibration_data,
        calibration_images=args.calibration_images, cut=args.cut,
    )
    _print_json(
        {
            "out": args.out,
            "fp32_mean_auroc": report["fp32"]["mean_auroc"],
            "variants": {
                mode: {
                    key: variant[key]
                    for key in (
                        "bytes", "mean_auroc", "mean_auroc_delta_vs_fp32", "mean_auroc_delta_vs_fp32_ci", "batch1_latency_ms"
                    )
                }
                | {
                    "min_distinct_scores": min(variant["distinct_scores_per_label"].values()),
                    "fp32_min_distinct_scores": min(report["fp32"]["distinct_scores_per_label"].values()),
                }
                for mode, variant in report["variants"].items()
            },
        }
    )
    return EXIT_OK


def _gradcam(args: argparse.Namespace) -> int:
    from xraymodel.gradcam import gradcam

    _print_json(gradcam(args.model, args.image, args.finding, args.out, args.layer))
    return EXIT_OK


def _check_input(args: argparse.Namespace) -> int:
    from xraymodel.input_checks import REFUSE, REVIEW, check_file

    results = [check_file(path) for path in args.files]
    _print_json({"files": [r.as_dict() for r in results]})
    failing = {REFUSE, REVIEW} if args.strict else {REFUSE}
    bad = [r for r in results if r.verdict in failing]
    for result in bad:
        reasons = "; ".join(c.message for c in result.checks if c.verdict in failing)
        print(f"modeldeploy model check-input: {result.source}: {result.verdict}: {reasons}", file=sys.stderr)
    return EXIT_BAD_INPUT if bad else EXIT_OK


def _synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xraymodel.staging import staged_directory
    from xraymodel.synthetic import write_chestxray14_layout

    with staged_directory(Path(args.out)) as staging:
        write_chestxray14_layout(staging, args.count, args.size, args.seed, prevalence=args.prevalence)
    _print_json({"out": args.out, "images": args.count, "layout": "chestxray14"})
    return EXIT_OK


def register(subparsers) -> None:
    """Add the ``model`` command group to modeldeploy's sub-command parser."""
    group = subparsers.add_parser(
        "model", help="ML tool chain: train / evaluate / export / quantize / gradcam the chest X-ray model",
        description="ResNet-50 chest X-ray classifier tool chain (needs the 'ml' extra: TensorFlow).",
    )
    commands = group.add_subparsers(dest="model_command", metavar="MODEL_COMMAND", required=True)

    train = commands.add_parser("train", help="train or fine-tune into a new run directory")
    train.add_argument("--data", required=True, help="ChestX-ray14 root (Data_Entry_2017.csv) or folder-per-class root")
    train.add_argument("--out", required=True, help="run directory to create (must not exist)")
    train.add_argument("--layout", default="auto", choices=("auto", "chestxray14", "folders"))
    train.add_argument("--labels", type=_label_list, default=list(FINDINGS), help="comma-separated findings (default: all 14)")
    train.add_argument("--head", default="multilabel", choices=("multilabel", "softmax"))
    train.add_argument("--input-size", type=int, default=224)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--weights", default="none", help="backbone init: none, imagenet, or a local .h5 weights file")
    train.add_argument("--warm-start", help="exported version folder BASE/<version> to continue from")
    train.add_argument("--head-epochs", type=int, default=100)
    train.add_argument("--head-lr", type=float, default=1e-3)
    train.add_argument("--finetune-epochs", type=int, default=5)
    train.add_argument("--finetune-lr", type=float, default=1e-5)
    train.add_argument("--unfreeze-stages", type=int, default=1, help="top ResNet stages to fine-tune (4 = all)")
    train.add_argument("--steps-per-epoch", type=int, help="cap fine-tune steps per epoch (default: one pass)")
    train.add_argument("--val-fraction", type=float, default=0.1)
    train.add_argument("--test-fraction", type=float, default=0.1)
    train.add_argument("--no-class-weights", action="store_true", help="plain (unweighted) loss")
    train.add_argument("--no-augment", action="store_true")
    train.add_argument("--cache", default="memory", help="decoded-image cache: memory, none, or a file path")
    train.add_argument("--patience", type=int, default=5, help="early-stopping patience in epochs")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue the interrupted run OUT.incomplete")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_report_errors("train", _train))

    evaluate = commands.add_parser("evaluate", help="AUROC with CIs, sensitivity/specificity, calibration; JSON + PNGs")
    evaluate.add_argument("--model", required=True, help="run directory or exported version BASE/<version>")
    evaluate.add_argument("--data", help="evaluate every labelled image here (default: the run's recorded split)")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--threshold", default="auto", help="auto (validation Youden), youden (this set), or a number")
    evaluate.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    evaluate.add_argument("--out", help="output folder (default: RUN/evaluation-<split>)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument(
        "--min-subgroup-auroc", type=float,
        help="gate: exit 1 when the worst subgroup's (sex, age band, view, site) mean AUROC is below this",
    )
    evaluate.set_defaults(func=_report_errors("evaluate", _evaluate))

    export = commands.add_parser("export", help="SavedModel for TF Serving at BASE/<version>/ with a model card")
    export.add_argument("--model", required=True, help="run directory")
    export.add_argument("--base", required=True, help="TF Serving model base path")
    export.add_argument("--version", type=int, help="version number (default: highest existing + 1)")
    export.add_argument("--name", default="chestxray", help="model name (TF Serving model_config name)")
    export.add_argument("--metrics", help="evaluation metrics.json (or its folder); default RUN/evaluation-test")
    export.set_defaults(func=_report_errors("export", _export))

    quantize = commands.add_parser("quantize", help="INT8 / dynamic-range TFLite with size and AUROC delta vs FP32")
    quantize.add_argument("--model", required=True, help="run directory or exported version")
    quantize.add_argument("--out", required=True, help="output folder (must not exist)")
    quantize.add_argument("--mode", default="both", choices=("int8", "dynamic", "both"))
    quantize.add_argument("--data", help="calibration + evaluation images (default: the run's train/test splits)")
    quantize.add_argument("--calibration-images", type=int, default=100)
    quantize.add_argument(
        "--calibration-data",
        help="calibration images from this folder (patients must differ from the evaluated ones); default: the run's "
        "train split, or patients of --data set aside",
    )
    quantize.add_argument(
        "--cut", default="float-logits", choices=("float-logits", "logits", "probabilities"),
        help="end of the int8 graph: float-logits (int8 up to fc256; logits, sigmoid and calibrator in float in the "
        "server), logits (int8 logits), probabilities (int8 sigmoid: ties rare findings)",
    )
    quantize.set_defaults(func=_report_errors("quantize", _quantize))

    gradcam = commands.add_parser("gradcam", help="Grad-CAM heatmap overlay PNG for one image and finding")
    gradcam.add_argument("--model", required=True, help="run directory or exported version")
    gradcam.add_argument("--image", required=True, help="PNG, JPEG or DICOM")
    gradcam.add_argument("--finding", required=True, choices=FINDINGS + ("No Finding",), metavar="FINDING")
    gradcam.add_argument("--out", required=True, help="PNG to write")
    gradcam.add_argument("--layer", default="conv5_block3_out", help="convolutional layer (conv4_block6_out is finer)")
    gradcam.set_defaults(func=_report_errors("gradcam", _gradcam))

    check = commands.add_parser(
        "check-input", help="is each file a frontal chest radiograph? (DICOM tags + pixel checks; JSON verdicts)"
    )
    check.add_argument("files", nargs="+", help="PNG, JPEG or DICOM files")
    check.add_argument("--strict", action="store_true", help="exit 2 on a review flag too (default: only on a refusal)")
    check.set_defaults(func=_report_errors("check-input", _check_input))

    digest = commands.add_parser("digest", help="the artifact digest of a version folder, for spec.model.digest")
    digest.add_argument("path", help="the SavedModel version folder (BASE/<version>)")
    digest.add_argument("--list", action="store_true", help="also print the listing the digest is taken over")
    digest.set_defaults(func=_report_errors("digest", _digest))

    synth = commands.add_parser("synth", help="write a synthetic, learnable ChestX-ray14-layout data set (demo/tests)")
    synth.add_argument("--out", required=True)
    synth.add_argument("--count", type=int, default=400)
    synth.add_argument("--size", type=int, default=128)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--prevalence", type=float, default=0.2)
    synth.set_defaults(func=_report_errors("synth", _synth))
