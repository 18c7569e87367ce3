"""ResNet-50 (224 px) inference on this machine, every figure as a ratio to the matmul peak measured
in the same run. Not a test: run it with `make bench` or `.venv/bin/python bench/model_inference.py`.

Measures, after checking the CPU is idle:
  * float32 matmul peak (GFLOP/s) and the bf16 one (for context); ResNet-50 costs ~8.2 GFLOP/image,
    so the float32 bound is peak / 8.2 images/s;
  * the exported SavedModel's `predict_float` signature at batch 1/8/32, without and with XLA;
  * the `serving_default` (bytes) signature with 1024 px JPEGs: overhead over float at batch 1 and 32;
  * a mixed_bfloat16 Keras model at batch 8/32;
  * full-INT8 TFLite at batch 1 vs TF float32 at batch 1.
Reports median and p90 of repeated timings (the machine is shared and noisy) and writes JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "model")]
os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="bench-keras-"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

RESNET50_GFLOP_PER_IMAGE = 8.2  # multiply-add = 2 FLOP, 224 x 224 input
INPUT_SIZE = 224


def cpu_busy_fraction(seconds: float = 2.0) -> float:
    """Share of all cores busy (user+system+...) over ``seconds``, from /proc/stat."""

    def sample():
        fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def timings(function, *, min_runs: int, min_seconds: float, warmup: int = 2) -> dict:
    for _ in range(warmup):
        function()
    samples = []
    started = time.perf_counter()
    while len(samples) < min_runs or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        function()
        samples.append(time.perf_counter() - t0)
    return {
        "min_s": min(samples),
        "median_s": statistics.median(samples),
        "p90_s": float(np.quantile(samples, 0.9)),
        "runs": len(samples),
    }


def interleaved_timings(first, second, *, min_runs: int, min_seconds: float) -> tuple[dict, dict]:
    """Timings of two functions run alternately (A B A B ...), after one warm-up call each."""
    first(), second()
    samples: tuple[list[float], list[float]] = ([], [])
    started = time.perf_counter()
    while len(samples[0]) < min_runs or time.perf_counter() - started < 2 * min_seconds:
        for function, bucket in ((first, samples[0]), (second, samples[1])):
            t0 = time.perf_counter()
            function()
            bucket.append(time.perf_counter() - t0)
    return tuple(
        {"min_s": min(b), "median_s": statistics.median(b), "p90_s": float(np.quantile(b, 0.9)), "runs": len(b)}
        for b in samples
    )


def matmul_peak(tf, dtype, size: int = 2048, repeats: int = 8) -> dict:
    a = tf.cast(tf.random.normal((size, size)), dtype)
    b = tf.cast(tf.random.normal((size, size)) / size**0.5, dtype)  # keeps the chain's scale bounded

    @tf.function
    def chain(a, b):
        c = a
        for _ in range(repeats):  # each product depends on the previous: nothing can be merged or skipped
            c = tf.matmul(c, b)
        return tf.reduce_sum(tf.cast(c[:1, :1], tf.float32))

    stats = timings(lambda: chain(a, b).numpy(), min_runs=5, min_seconds=3)
    flop = 2 * size**3 * repeats
    return {
        **stats,
        "gflops_median": flop / stats["median_s"] / 1e9,
        "gflops_best": flop / stats["min_s"] / 1e9,
        "gflops_p90_time": flop / stats["p90_s"] / 1e9,
    }


def jpeg_1024(rng) -> bytes:
    from PIL import Image

    from xraymodel.synthetic import render_case

    buffer = io.BytesIO()
    Image.fromarray(render_case(("Effusion",), 1024, rng), mode="L").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def add_ratios(node, bound: float) -> None:
    """Every timing figure gets ratio_to_fp32_bound = images/s / (fp32 peak / 8.2 GFLOP)."""
    if isinstance(node, dict):
        if "images_per_s" in node:
            node["ratio_to_fp32_bound"] = node["images_per_s"] / bound
            node["ratio_to_fp32_bound_p90"] = node["images_per_s_p90"] / bound
        for value in node.values():
            add_ratios(value, bound)


def print_summary(result: dict) -> None:
    f = result["float_signature"]
    b = result["bytes_signature_1024px_jpeg"]
    parts = [
        f"peak {result['float32_peak_gflops']:.0f} GFLOP/s -> bound {result['float32_bound_images_per_s']:.1f} img/s",
        *(f"float b{n} {f[f'b{n}']['no_xla']['ratio_to_fp32_bound']:.2f}/{f[f'b{n}']['xla']['ratio_to_fp32_bound']:.2f}(XLA)" for n in (1, 8, 32)),
        f"bytes overhead b32 {b['b32']['overhead_fraction']:+.1%}",
        *(f"bf16 b{n} {result['bf16'][f'b{n}']['ratio_to_fp32_bound']:.2f}" for n in (8, 32)),
    ]
    if "tflite_int8_b1" in result:
        parts.append(f"INT8 b1 {result['tflite_int8_b1']['speedup_vs_tf_fp32_b1']:.1f}x TF fp32")
    print("SUMMARY model_inference: " + "; ".join(parts))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "out" / "bench" / "model_inference.json"))
    parser.add_argument("--seconds", type=float, default=6.0, help="minimum timing time per figure")
    parser.add_argument("--skip-tflite", action="store_true")
    args = parser.parse_args(argv)

    busy = cpu_busy_fraction()
    load1 = float(open("/proc/loadavg").read().split()[0])
    print(f"CPU busy before start: {busy:.0%} of {os.cpu_count()} cores, load {load1}", flush=True)
    import tensorflow as tf
    import keras

    from xraymodel import keras_runtime

    keras_runtime.configure(seed=0)
    from xraymodel.export import export_saved_model
    from xraymodel.findings import FINDINGS
    from xraymodel.network import build_classifier
    from xraymodel.pipeline import decode_and_resize, preprocess_pixels

    result: dict = {
        "machine": {
            "cores": os.cpu_count(),
            "cpu_busy_fraction_before": busy,
            "load1_before": load1,
            "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
            "tensorflow": tf.__version__,
        },
        "resnet50_gflop_per_image": RESNET50_GFLOP_PER_IMAGE,
    }
    # The peak is the best sustained matmul rate; it is measured before and after the model timings
    # and the higher is used, so a noisy neighbour during one of them does not inflate the ratios.
    peak32 = matmul_peak(tf, tf.float32)
    peak16 = matmul_peak(tf, tf.bfloat16)
    bound = peak32["gflops_best"] / RESNET50_GFLOP_PER_IMAGE
    result["matmul_peak"] = {"float32_before": peak32, "bfloat16": peak16}
    print(f"matmul peak fp32 {peak32['gflops_best']:.0f} GFLOP/s (median {peak32['gflops_median']:.0f}), "
          f"bf16 {peak16['gflops_best']:.0f}", flush=True)

    def figure(stats: dict, batch: int) -> dict:
        images_per_s = batch / stats["median_s"]
        return {**stats, "batch": batch, "images_per_s": images_per_s, "images_per_s_p90": batch / stats["p90_s"]}

    model = build_classifier(len(FINDINGS), INPUT_SIZE)
    workdir = Path(tempfile.mkdtemp(prefix="bench-export-"))
    t0 = time.perf_counter()
    version_dir = export_saved_model(model, workdir / "chestxray", labels=list(FINDINGS), head="multilabel")
    result["export_seconds"] = time.perf_counter() - t0
    loaded = tf.saved_model.load(str(version_dir))
    predict_float = loaded.signatures["predict_float"]
    serve_bytes = loaded.signatures["serving_default"]

    @tf.function(jit_compile=True)
    def keras_xla(images):
        return model(preprocess_pixels(images), training=False)

    rng = np.random.default_rng(0)
    result["float_signature"] = {}
    for batch in (1, 8, 32):
        pixels = tf.constant(rng.uniform(0, 255, (batch, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32))
        plain = figure(timings(lambda: predict_float(images=pixels)["probabilities"].numpy(), min_runs=5, min_seconds=args.seconds), batch)
        xla = figure(timings(lambda: keras_xla(pixels).numpy(), min_runs=5, min_seconds=args.seconds), batch)
        result["float_signature"][f"b{batch}"] = {"no_xla": plain, "xla": xla}
        print(f"float b{batch}: {plain['images_per_s']:.1f} img/s, XLA {xla['images_per_s']:.1f} img/s", flush=True)

    jpegs = [jpeg_1024(rng) for _ in range(32)]
    result["bytes_signature_1024px_jpeg"] = {"jpeg_bytes_mean": float(np.mean([len(j) for j in jpegs]))}
    for batch in (1, 32):
        encoded = tf.constant(jpegs[:batch])
        decoded = tf.stack([decode_and_resize(tf.constant(j), INPUT_SIZE) for j in jpegs[:batch]])
        # interleaved, so a neighbour's load drifting during the run hits both sides alike
        bytes_stats, float_stats = interleaved_timings(
            lambda: serve_bytes(image_bytes=encoded)["probabilities"].numpy(),
            lambda: predict_float(images=decoded)["probabilities"].numpy(),
            min_runs=5,
            min_seconds=args.seconds,
        )
        with_bytes, float_only = figure(bytes_stats, batch), figure(float_stats, batch)
        overhead = with_bytes["median_s"] / float_only["median_s"] - 1.0
        result["bytes_signature_1024px_jpeg"][f"b{batch}"] = {"bytes": with_bytes, "float": float_only, "overhead_fraction": overhead}
        print(f"bytes b{batch}: overhead {overhead:+.1%} over float ({with_bytes['images_per_s']:.1f} vs {float_only['images_per_s']:.1f} img/s)", flush=True)

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    bf16_model = build_classifier(len(FINDINGS), INPUT_SIZE)
    keras.mixed_precision.set_global_policy("float32")
    bf16_model.set_weights(model.get_weights())
    bf16_call = tf.function(lambda images: bf16_model(preprocess_pixels(images), training=False))
    result["bf16"] = {}
    for batch in (8, 32):
        pixels = tf.constant(rng.uniform(0, 255, (batch, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32))
        stats = figure(timings(lambda: bf16_call(pixels).numpy(), min_runs=3, min_seconds=args.seconds), batch)
        result["bf16"][f"b{batch}"] = stats
        print(f"bf16 b{batch}: {stats['images_per_s']:.1f} img/s", flush=True)

    if not args.skip_tflite:
        from xraymodel.quantize import TFLiteRunner, convert

        calibration = np.stack([decode_and_resize(tf.constant(j), INPUT_SIZE).numpy() for j in jpegs[:8]])
        t0 = time.perf_counter()
        flatbuffer = convert(model, "int8", calibration)
        conversion = time.perf_counter() - t0
        runner = TFLiteRunner(flatbuffer, threads=os.cpu_count() or 2)
        one = calibration[0]
        int8 = figure(timings(lambda: runner.predict_one(one), min_runs=10, min_seconds=args.seconds), 1)
        fp32_b1 = result["float_signature"]["b1"]
        result["tflite_int8_b1"] = {
            **int8,
            "bytes": len(flatbuffer),
            "conversion_seconds": conversion,
            "speedup_vs_tf_fp32_b1": fp32_b1["no_xla"]["median_s"] / int8["median_s"],
            "speedup_vs_tf_fp32_xla_b1": fp32_b1["xla"]["median_s"] / int8["median_s"],
        }
        print(f"TFLite INT8 b1: {1000 * int8['median_s']:.1f} ms, {result['tflite_int8_b1']['speedup_vs_tf_fp32_b1']:.1f}x TF fp32 b1", flush=True)

    peak32_after = matmul_peak(tf, tf.float32)
    result["matmul_peak"]["float32_after"] = peak32_after
    peak = max(peak32["gflops_best"], peak32_after["gflops_best"])
    bound = peak / RESNET50_GFLOP_PER_IMAGE
    result["float32_peak_gflops"] = peak
    result["float32_bound_images_per_s"] = bound
    add_ratios(result, bound)
    result["cpu_busy_fraction_after"] = cpu_busy_fraction(1.0)
    print_summary(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
