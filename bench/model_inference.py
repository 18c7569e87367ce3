"""ResNet-50 (224 px) inference on this machine, every figure as a ratio to the matmul peak measured
in the same run. Not a test: run it with `make bench` or `.venv/bin/python bench/model_inference.py`.

Measures, after checking the CPU is idle:
  * float32 matmul peak (GFLOP/s) and the bf16 one (for context); ResNet-50 costs ~8.2 GFLOP/image,
    so the float32 bound is peak / 8.2 images/s;
  * the exported SavedModel's `predict_float` signature at batch 1/8/32, without and with XLA;
  * the `serving_default` (bytes) signature with 1024 px JPEGs: overhead over float at batch 1 and 32;
  * a mixed_bfloat16 Keras model at batch 8/32;
  * full-INT8 TFLite at batch 1, each variant timed INTERLEAVED with TF float32 at batch 1 (A B A B,
    so load drift hits both): the served variant (int8 up to fc256, uint8 input, XNNPACK on all
    cores), 1 thread, the former int8-sigmoid cut, float32 input, per-tensor weights, without the
    XNNPACK delegate (TFLite's own kernels), and LiteRT's ai_edge_litert interpreter if installed.
Prints the CPU model, the ISA flags that matter (AVX2/FMA, AVX-512, VNNI, bf16, AMX) and the load
average; reports median and p90 of repeated timings (the machine is shared and noisy) and writes JSON.
`--int8-only` skips the float b8/b32, bytes and bf16 sections.
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


ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
             "amx_tile", "amx_int8", "amx_bf16")


def cpu_flags() -> list[str]:
    """The ISA flags of ISA_FLAGS this CPU reports in /proc/cpuinfo (first processor)."""
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            return [flag for flag in ISA_FLAGS if flag in present]
    return []


def load_average() -> list[float]:
    return [float(v) for v in open("/proc/loadavg").read().split()[:3]]


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
    cpu: tuple[list[float], list[float]] = ([], [])
    started = time.perf_counter()
    while len(samples[0]) < min_runs or time.perf_counter() - started < 2 * min_seconds:
        for function, bucket, cpu_bucket in ((first, samples[0], cpu[0]), (second, samples[1], cpu[1])):
            c0, t0 = time.process_time(), time.perf_counter()
            function()
            bucket.append(time.perf_counter() - t0)
            cpu_bucket.append(time.process_time() - c0)
    # cpu_*: CPU seconds of this process (all its threads) per call: what the work costs when the
    # machine is shared (descheduled time does not count; spinning thread pools do)
    return tuple(
        {"min_s": min(b), "median_s": statistics.median(b), "p90_s": float(np.quantile(b, 0.9)), "runs": len(b),
         "cpu_median_s": statistics.median(c), "cpu_p90_s": float(np.quantile(c, 0.9))}
        for b, c in zip(samples, cpu)
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
    parts = [
        f"flags {','.join(result['machine']['cpu_flags'])}; load {result['machine']['loadavg_before'][0]}",
        f"peak {result['float32_peak_gflops']:.0f} GFLOP/s -> bound {result['float32_bound_images_per_s']:.1f} img/s",
        *(f"float b{n} {f[f'b{n}']['no_xla']['ratio_to_fp32_bound']:.2f}/{f[f'b{n}']['xla']['ratio_to_fp32_bound']:.2f}(XLA)"
          for n in (1, 8, 32) if f"b{n}" in f),
    ]
    if "bytes_signature_1024px_jpeg" in result:
        parts.append(f"bytes overhead b32 {result['bytes_signature_1024px_jpeg']['b32']['overhead_fraction']:+.1%}")
    if "bf16" in result:
        parts += [f"bf16 b{n} {result['bf16'][f'b{n}']['ratio_to_fp32_bound']:.2f}" for n in (8, 32)]
    if "int8_gemm_vs_fp32" in result:
        gemm = result["int8_gemm_vs_fp32"]
        parts.append(f"INT8/FP32 GEMM {gemm['int8_over_fp32_median']:.1f}x median ({gemm['int8_over_fp32_cpu_time']:.1f}x CPU time)")
    for name, variant in result.get("tflite_int8_b1", {}).items():
        parts.append(f"INT8 {name} b1 {1000 * variant['median_s']:.1f} ms {variant['speedup_vs_tf_fp32_b1']:.1f}x TF fp32")
    print("SUMMARY model_inference: " + "; ".join(parts))


def int8_gemm_peak_vs_fp32(tf, threads: int, seconds: float, rows: int = 256, size: int = 1024, layers: int = 8) -> dict:
    """INT8 GEMM rate of TFLite/XNNPACK (a chain of int8 FullyConnected layers, full-integer quantised)
    timed interleaved with the same chain in TF float32: the hardware ceiling of the INT8/FP32 ratio."""
    import contextlib
    import io as _io

    import keras

    inputs = keras.Input(shape=(rows, size), batch_size=1)
    x = inputs
    for _ in range(layers):
        x = keras.layers.Dense(size, use_bias=False)(x)
    chain = keras.Model(inputs, x)
    rng = np.random.default_rng(0)
    sample = rng.normal(size=(1, rows, size)).astype(np.float32)

    def representative():
        for _ in range(4):
            yield [rng.normal(size=(1, rows, size)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(chain)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with contextlib.redirect_stdout(_io.StringIO()):
        flatbuffer = converter.convert()
    interpreter = tf.lite.Interpreter(model_content=flatbuffer, num_threads=threads)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    interpreter.set_tensor(index, rng.integers(-128, 127, size=(1, rows, size), dtype=np.int8))
    fp32_call = tf.function(lambda v: chain(v, training=False))
    value = tf.constant(sample)
    int8_stats, fp32_stats = interleaved_timings(
        interpreter.invoke, lambda: fp32_call(value).numpy(), min_runs=10, min_seconds=seconds
    )
    ops = 2 * rows * size * size * layers
    return {
        "shape": {"rows": rows, "size": size, "layers": layers},
        "int8": {**int8_stats, "gops_median": ops / int8_stats["median_s"] / 1e9, "gops_best": ops / int8_stats["min_s"] / 1e9},
        "fp32_tf": {**fp32_stats, "gflops_median": ops / fp32_stats["median_s"] / 1e9, "gflops_best": ops / fp32_stats["min_s"] / 1e9},
        "int8_over_fp32_median": fp32_stats["median_s"] / int8_stats["median_s"],
        "int8_over_fp32_best": fp32_stats["min_s"] / int8_stats["min_s"],
        "int8_over_fp32_cpu_time": fp32_stats["cpu_median_s"] / int8_stats["cpu_median_s"],
    }


def int8_variants(tf, model, calibration, threads: int, wanted: str = "all") -> dict:
    """name -> (description, callable running one batch-1 inference, model bytes)."""
    chosen = None if wanted == "all" else set(wanted.split(","))
    from xraymodel.quantize import CUT_PROBABILITIES, TFLiteRunner, convert

    one = calibration[0]
    variants = {}

    def add(name, description, flatbuffer, runner):
        variants[name] = (description, (lambda: runner.predict_one(one)), len(flatbuffer))

    def want(name):
        return chosen is None or name in chosen

    t0 = time.perf_counter()
    served = convert(model, "int8", calibration)
    print(f"INT8 conversion {time.perf_counter() - t0:.0f} s", flush=True)
    add("served", f"float-logits cut, uint8 input, per-channel, XNNPACK {threads} threads", served, TFLiteRunner(served, threads))
    if threads != 1:
        add("threads1", "as served, 1 thread", served, TFLiteRunner(served, 1))
    no_xnnpack = TFLiteRunner(served, threads)
    no_xnnpack.interpreter = tf.lite.Interpreter(
        model_content=served, num_threads=threads,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    no_xnnpack.interpreter.allocate_tensors()
    add("no_xnnpack", "as served, TFLite builtin kernels (no XNNPACK delegate)", served, no_xnnpack)
    try:
        from ai_edge_litert.interpreter import Interpreter as LiteRT
    except ImportError:
        LiteRT = None
    if LiteRT is not None:
        litert = TFLiteRunner(served, threads)
        litert.interpreter = LiteRT(model_content=served, num_threads=threads)
        litert.interpreter.allocate_tensors()
        add("litert", f"as served, ai_edge_litert interpreter, {threads} threads", served, litert)
    if want("sigmoid_cut"):
        sigmoid = convert(model, "int8", calibration, cut=CUT_PROBABILITIES)
        add("sigmoid_cut", "former cut: int8 sigmoid output", sigmoid, TFLiteRunner(sigmoid, threads))
    if want("float_input"):
        float_in = convert(model, "int8", calibration, float_input=True)
        add("float_input", "float32 input (quantised inside the model)", float_in, TFLiteRunner(float_in, threads))
    if want("per_tensor"):
        per_tensor = convert(model, "int8", calibration, per_tensor=True)
        add("per_tensor", "per-tensor weight scales", per_tensor, TFLiteRunner(per_tensor, threads))
    for name in list(variants):
        if not want(name) and name != "served":
            del variants[name]
    return variants


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "out" / "bench" / "model_inference.json"))
    parser.add_argument("--seconds", type=float, default=6.0, help="minimum timing time per figure")
    parser.add_argument("--skip-tflite", action="store_true")
    parser.add_argument("--int8-only", action="store_true", help="only the float b1 baseline and the INT8 variants")
    parser.add_argument("--gemm-only", action="store_true", help="only the INT8 vs FP32 GEMM chain (seconds)")
    parser.add_argument("--threads", type=int, help="TF intra-op and TFLite threads (default: all cores)")
    parser.add_argument("--int8-variants", default="all", help="comma-separated subset of the INT8 variants, or all")
    args = parser.parse_args(argv)

    flags = cpu_flags()
    loadavg = load_average()
    busy = cpu_busy_fraction()
    load1 = loadavg[0]
    print(f"CPU flags: {' '.join(flags)}", flush=True)
    print(f"CPU busy before start: {busy:.0%} of {os.cpu_count()} cores, load average {loadavg}", flush=True)
    import tensorflow as tf
    import keras

    from xraymodel import keras_runtime

    keras_runtime.configure(seed=0)
    threads = args.threads or os.cpu_count() or 2
    if args.threads:  # before any TF op: TF's pools and the TFLite interpreters get the same thread count
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    if args.gemm_only:
        gemm = int8_gemm_peak_vs_fp32(tf, threads, args.seconds)
        print(json.dumps({"cpu_flags": flags, "loadavg_before": loadavg, "loadavg_after": load_average(), **gemm}, indent=2))
        return 0
    from xraymodel.export import export_saved_model
    from xraymodel.findings import FINDINGS
    from xraymodel.network import build_classifier
    from xraymodel.pipeline import decode_and_resize, preprocess_pixels

    result: dict = {
        "machine": {
            "cores": os.cpu_count(),
            "cpu_busy_fraction_before": busy,
            "load1_before": load1,
            "loadavg_before": loadavg,
            "cpu_flags": flags,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
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
    print(f"CPU model: {result['machine']['cpu_model']}", flush=True)
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
    for batch in (1,) if args.int8_only else (1, 8, 32):
        pixels = tf.constant(rng.uniform(0, 255, (batch, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32))
        plain = figure(timings(lambda: predict_float(images=pixels)["probabilities"].numpy(), min_runs=5, min_seconds=args.seconds), batch)
        xla = figure(timings(lambda: keras_xla(pixels).numpy(), min_runs=5, min_seconds=args.seconds), batch)
        result["float_signature"][f"b{batch}"] = {"no_xla": plain, "xla": xla}
        print(f"float b{batch}: {plain['images_per_s']:.1f} img/s, XLA {xla['images_per_s']:.1f} img/s", flush=True)

    jpegs = [jpeg_1024(rng) for _ in range(32)]
    if not args.int8_only:
        result["bytes_signature_1024px_jpeg"] = {"jpeg_bytes_mean": float(np.mean([len(j) for j in jpegs]))}
    for batch in () if args.int8_only else (1, 32):
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
    if not args.int8_only:
        result["bf16"] = {}
    for batch in () if args.int8_only else (8, 32):
        pixels = tf.constant(rng.uniform(0, 255, (batch, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32))
        stats = figure(timings(lambda: bf16_call(pixels).numpy(), min_runs=3, min_seconds=args.seconds), batch)
        result["bf16"][f"b{batch}"] = stats
        print(f"bf16 b{batch}: {stats['images_per_s']:.1f} img/s", flush=True)

    if not args.skip_tflite:
        gemm = int8_gemm_peak_vs_fp32(tf, threads, args.seconds)
        result["int8_gemm_vs_fp32"] = gemm
        print(f"GEMM chain: INT8 TFLite {gemm['int8']['gops_best']:.0f} GOP/s best ({gemm['int8']['gops_median']:.0f} median) vs "
              f"TF fp32 {gemm['fp32_tf']['gflops_best']:.0f} GFLOP/s -> INT8/FP32 {gemm['int8_over_fp32_best']:.1f}x best, "
              f"{gemm['int8_over_fp32_median']:.1f}x median", flush=True)
        calibration = np.stack([decode_and_resize(tf.constant(j), INPUT_SIZE).numpy() for j in jpegs[:8]])
        b1_pixels = tf.constant(calibration[:1])
        result["tflite_int8_b1"] = {}
        for name, (description, run, size) in int8_variants(tf, model, calibration, threads, args.int8_variants).items():
            int8_stats, fp32_stats = interleaved_timings(
                run, lambda: predict_float(images=b1_pixels)["probabilities"].numpy(),
                min_runs=10, min_seconds=args.seconds,
            )
            int8, fp32_b1 = figure(int8_stats, 1), figure(fp32_stats, 1)
            result["tflite_int8_b1"][name] = {
                **int8,
                "description": description,
                "bytes": size,
                "tf_fp32_b1_interleaved": fp32_b1,
                "speedup_vs_tf_fp32_b1": fp32_b1["median_s"] / int8["median_s"],
                "speedup_vs_tf_fp32_b1_p90": fp32_b1["p90_s"] / int8["p90_s"],
                "speedup_vs_tf_fp32_b1_cpu_time": fp32_stats["cpu_median_s"] / int8_stats["cpu_median_s"],
                "loadavg": load_average(),
            }
            print(f"TFLite INT8 {name} ({description}): {1000 * int8['median_s']:.1f} ms (p90 {1000 * int8['p90_s']:.1f}) "
                  f"vs TF fp32 b1 {1000 * fp32_b1['median_s']:.1f} ms -> {fp32_b1['median_s'] / int8['median_s']:.1f}x "
                  f"(CPU time {fp32_stats['cpu_median_s'] / int8_stats['cpu_median_s']:.1f}x); "
                  f"load {load_average()[0]}", flush=True)

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
