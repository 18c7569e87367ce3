"""Grad-CAM: where in the image the model looked for one finding, as a heatmap overlay PNG.

Gradients of the chosen finding's logit (before the sigmoid, so a confident output does not
saturate them) with respect to a convolutional layer's activations are averaged per channel;
the channel-weighted activation map, rectified and normalised to 0..1, is the heatmap
(Selvaraju et al., 2017). ``conv5_block3_out`` is 1/32 of the input size; ``conv4_block6_out``
(1/16) gives a finer map at small input sizes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xraymodel.network import LAST_CONV_LAYER, LOGITS_LAYER
from xraymodel.staging import write_bytes_atomically


def gradcam_heatmap(model, pixels: np.ndarray, class_index: int, layer: str = LAST_CONV_LAYER) -> tuple[np.ndarray, float]:
    """(heatmap [h, w] in 0..1 at the layer's resolution, probability of the class) for RGB 0..255 pixels."""
    import keras
    import tensorflow as tf

    from xraymodel.pipeline import preprocess_pixels

    grad_model = keras.Model(
        model.input, [model.get_layer(layer).output, model.get_layer(LOGITS_LAYER).output, model.output]
    )
    inputs = preprocess_pixels(tf.convert_to_tensor(pixels[None], tf.float32))
    with tf.GradientTape() as tape:
        activations, logits, probabilities = grad_model(inputs, training=False)
        score = logits[:, class_index]
    gradients = tape.gradient(score, activations)
    channel_weights = tf.reduce_mean(gradients, axis=(1, 2))
    cam = tf.nn.relu(tf.reduce_sum(activations * channel_weights[:, None, None, :], axis=-1))[0].numpy()
    peak = cam.max()
    heatmap = cam / peak if peak > 0 else cam
    return heatmap.astype(np.float32), float(probabilities[0, class_index])


def upsample(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a heatmap to an image size (PIL, float mode)."""
    from PIL import Image

    return np.asarray(Image.fromarray(heatmap.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))


def overlay(grey: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8: the greyscale image blended with the 'jet' colour map of the heatmap."""
    import matplotlib

    colour = matplotlib.colormaps["jet"](np.clip(upsample(heatmap, *grey.shape), 0, 1))[..., :3]
    base = np.repeat((grey.astype(np.float32) / 255.0)[..., None], 3, axis=2)
    return (np.clip((1 - alpha) * base + alpha * colour, 0, 1) * 255 + 0.5).astype(np.uint8)


def read_display_image(path: str | Path, max_side: int = 1024) -> np.ndarray:
    """Greyscale uint8 pixels of a PNG/JPEG/DICOM for display (longest side capped)."""
    from PIL import Image

    from xraymodel.dicom_input import is_dicom_file, read_dicom_pixels

    if is_dicom_file(path):
        image = Image.fromarray(read_dicom_pixels(path))
    else:
        image = Image.open(path)
        if image.mode.startswith("I"):  # 16-bit grey: window the stored range, as the model's decode does
            values = np.asarray(image, dtype=np.float64)
            low, high = values.min(), values.max()
            image = Image.fromarray(((values - low) * (255.0 / max(high - low, 1.0)) + 0.5).astype(np.uint8))
        image = image.convert("L")
    image.thumbnail((max_side, max_side))
    return np.asarray(image)


def model_input_pixels(path: str | Path, input_size: int) -> np.ndarray:
    """RGB 0..255 float pixels exactly as training and serving decode and resize the file."""
    from xraymodel.pipeline import load_file_pixels

    return load_file_pixels(path, input_size).numpy()


def render_gradcam_png(grey: np.ndarray, heatmap: np.ndarray, title: str) -> bytes:
    """Side-by-side PNG: the image, and the image with the heatmap overlaid, under a title."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 4.8))
    axes[0].imshow(grey, cmap="gray")
    axes[0].set_title("image", fontsize=9)
    axes[1].imshow(overlay(grey, heatmap))
    axes[1].set_title("Grad-CAM", fontsize=9)
    for axis in axes:
        axis.axis("off")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def gradcam(model_path: str | Path, image_path: str | Path, finding: str, out_png: str | Path, layer: str = LAST_CONV_LAYER) -> dict:
    """Heatmap overlay PNG for one image and one finding of a run or exported version."""
    from xraymodel import keras_runtime
    from xraymodel.errors import InputDataError
    from xraymodel.evaluation import is_export_dir

    keras_runtime.configure()
    if is_export_dir(model_path):
        from xraymodel.export import load_keras_from_export

        model, card = load_keras_from_export(model_path)
        labels = card["labels"]
    else:
        from xraymodel.training import load_run

        model, record = load_run(model_path)
        labels = record["labels"]
    if finding not in labels:
        raise InputDataError(f"finding {finding!r} is not an output of this model; outputs: {', '.join(labels)}")
    try:
        grey = read_display_image(image_path)
        pixels = model_input_pixels(image_path, int(model.input_shape[1]))
    except InputDataError:
        raise
    except Exception as exc:  # PIL/TF decode errors
        raise InputDataError(f"{image_path}: not a readable PNG/JPEG/DICOM image ({exc})") from exc
    heatmap, probability = gradcam_heatmap(model, pixels, labels.index(finding), layer)
    png = render_gradcam_png(grey, heatmap, f"{finding}: p = {probability:.3f}  ({Path(image_path).name}, layer {layer})")
    write_bytes_atomically(out_png, png)
    return {"finding": finding, "probability": probability, "layer": layer, "heatmap_shape": list(heatmap.shape), "out": str(out_png)}
