"""tf.data input pipeline and the pixel preprocessing shared with the exported serving graph.

    path -> read -> decode (per file: PNG 8/16 bit or JPEG in graph; DICOM via pydicom with
    windowing) -> resize ->
    cache -> [shuffle -> augment] -> preprocess_input -> batch -> prefetch

``decode_and_resize`` and ``preprocess_pixels`` are the single definition of "what the model sees":
training, evaluation, Grad-CAM, TFLite calibration and the exported ``serving_default`` signature
all call them, so train/serve skew cannot creep in through preprocessing.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras

from xraymodel.datasets import LabelledImages
from xraymodel.dicom_input import is_dicom_file, read_dicom_pixels

RESIZE_METHOD = "bilinear"
RESIZE_ANTIALIAS = True


JPEG_SCALE_RATIOS = (1, 2, 4, 8)


def _decode_jpeg_scaled(image_bytes: tf.Tensor, input_size: int) -> tf.Tensor:
    """JPEG decoded at 1/2, 1/4 or 1/8 scale by libjpeg's scaled IDCT when the image is large.

    The largest ratio that keeps the shorter side >= input_size is used, so a 1024 px radiograph
    served at 224 px is decoded at 256 px: the inverse DCT does the first downsampling almost for
    free, and the antialiased resize does the rest.
    """
    shape = tf.image.extract_jpeg_shape(image_bytes)
    shorter = tf.minimum(shape[0], shape[1])
    fits = tf.stack([shorter // ratio >= input_size for ratio in JPEG_SCALE_RATIOS])
    index = tf.reduce_sum(tf.cast(fits, tf.int32)) - 1  # ratios are ascending: count those that fit
    branches = [
        (lambda ratio=ratio: tf.io.decode_jpeg(image_bytes, channels=3, ratio=ratio)) for ratio in JPEG_SCALE_RATIOS
    ]
    return tf.switch_case(tf.maximum(index, 0), branches)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_BIT_DEPTH_OFFSET = 24  # IHDR: 8-byte signature, chunk length, "IHDR", width, height, then bit depth


def is_16_bit_png(image_bytes: tf.Tensor) -> tf.Tensor:
    """True for a PNG whose IHDR says 16 bits per sample (read from the bytes, not a file name)."""
    signature = tf.strings.substr(image_bytes, 0, len(PNG_SIGNATURE))
    depth = tf.strings.substr(image_bytes, PNG_BIT_DEPTH_OFFSET, 1)
    return tf.logical_and(tf.equal(signature, PNG_SIGNATURE), tf.equal(depth, b"\x10"))


def _decode_png_16_bit(image_bytes: tf.Tensor) -> tf.Tensor:
    """16-bit PNG -> float32 [H, W, 3] in 0..255, windowed to the stored range.

    A 16-bit PNG from a DICOM export usually holds 10-15-bit values (0..4095 for 12 bit): taking
    the top byte, as an 8-bit decode does, leaves an almost black image. Like a DICOM without a
    window, the stored range (min..max) is mapped linearly to 0..255.
    """
    values = tf.cast(tf.io.decode_png(image_bytes, channels=3, dtype=tf.uint16), tf.float32)
    low, high = tf.reduce_min(values), tf.reduce_max(values)
    return (values - low) * (255.0 / tf.maximum(high - low, 1.0))


def decode_pixels(image_bytes: tf.Tensor, input_size: int) -> tf.Tensor:
    """Encoded PNG/JPEG (grey or colour, 8 or 16 bit) -> RGB [H, W, 3] in 0..255 (uint8 or float32).

    The format is read from the bytes themselves: JPEG (scaled IDCT), 16-bit PNG (windowed),
    anything else through decode_image as 8 bit.
    """
    return tf.case(
        [
            (tf.io.is_jpeg(image_bytes), lambda: tf.cast(_decode_jpeg_scaled(image_bytes, input_size), tf.float32)),
            (is_16_bit_png(image_bytes), lambda: _decode_png_16_bit(image_bytes)),
        ],
        default=lambda: tf.cast(
            tf.io.decode_image(image_bytes, channels=3, expand_animations=False, dtype=tf.uint8), tf.float32
        ),
        exclusive=True,
    )


def decode_and_resize(image_bytes: tf.Tensor, input_size: int) -> tf.Tensor:
    """Encoded PNG/JPEG (any channels, 8 or 16 bit) -> float32 RGB [S, S, 3] in 0..255."""
    image = decode_pixels(image_bytes, input_size)
    image.set_shape([None, None, 3])
    return resize_pixels(image, input_size)


def resize_pixels(image: tf.Tensor, input_size: int) -> tf.Tensor:
    """uint8/float [H, W, 3] -> float32 [S, S, 3] (bilinear with antialiasing when shrinking)."""
    image = tf.image.resize(image, [input_size, input_size], method=RESIZE_METHOD, antialias=RESIZE_ANTIALIAS)
    return tf.cast(image, tf.float32)


def preprocess_pixels(pixels: tf.Tensor) -> tf.Tensor:
    """RGB 0..255 -> what ResNet-50 expects (keras.applications.resnet50.preprocess_input, 'caffe')."""
    return keras.applications.resnet50.preprocess_input(tf.cast(pixels, tf.float32))


def _read_dicom_as_rgb(path) -> np.ndarray:
    value = path.item() if isinstance(path, np.ndarray) else path  # numpy_function passes a 0-d array
    pixels = read_dicom_pixels(value.decode() if isinstance(value, bytes) else str(value))
    return np.repeat(pixels[:, :, None], 3, axis=2)


def load_pixels(path: tf.Tensor, input_size: int, dicom: tf.Tensor | bool) -> tf.Tensor:
    """One file -> float32 [S, S, 3] in 0..255; ``dicom`` is decided per file (see is_dicom_file)."""

    def from_dicom():
        image = tf.numpy_function(_read_dicom_as_rgb, [path], tf.uint8, stateful=False)
        image.set_shape([None, None, 3])
        return resize_pixels(image, input_size)

    def from_image_bytes():
        return decode_and_resize(tf.io.read_file(path), input_size)

    if isinstance(dicom, bool):
        return from_dicom() if dicom else from_image_bytes()
    return tf.cond(dicom, from_dicom, from_image_bytes)


def load_file_pixels(path: str, input_size: int) -> tf.Tensor:
    """One file by name -> float32 [S, S, 3] (format detected from the file itself)."""
    return load_pixels(tf.constant(str(path)), input_size, is_dicom_file(path))


def augment_pixels(pixels: tf.Tensor, input_size: int) -> tf.Tensor:
    """Mild radiograph-safe augmentation: zoom 0.9-1.0 with shift, brightness +-10%, contrast 0.9-1.1.

    No flips: left-right matters on a chest film (the heart is on the left).
    """
    scale = tf.random.uniform([], 0.9, 1.0)
    offset = tf.random.uniform([2], 0.0, 1.0) * (1.0 - scale)
    box = tf.concat([offset, offset + scale], axis=0)[None, :]
    pixels = tf.image.crop_and_resize(pixels[None], box, [0], [input_size, input_size])[0]
    pixels = pixels + tf.random.uniform([], -25.5, 25.5)
    mean = tf.reduce_mean(pixels)
    pixels = (pixels - mean) * tf.random.uniform([], 0.9, 1.1) + mean
    return tf.clip_by_value(pixels, 0.0, 255.0)


def build_dataset(
    data: LabelledImages,
    input_size: int,
    batch_size: int,
    *,
    training: bool = False,
    augment: bool = False,
    cache: str | None = "",
    seed: int = 0,
) -> tf.data.Dataset:
    """Batched (preprocessed images, labels); ``cache`` "" = memory, a path = file cache, None = off.

    Training datasets are shuffled each epoch (seeded) and, with ``augment``, augmented after the
    cache so every epoch sees new variants. Evaluation datasets keep manifest order.
    """
    paths = tf.constant(list(data.paths))
    dicom = tf.constant([is_dicom_file(path) for path in data.paths], dtype=tf.bool)  # per file, never per set
    labels = tf.constant(data.labels, dtype=tf.float32)
    dataset = tf.data.Dataset.from_tensor_slices((paths, dicom, labels))
    dataset = dataset.map(
        lambda path, is_dicom, label: (load_pixels(path, input_size, is_dicom), label),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if cache is not None:
        dataset = dataset.cache(cache)
    if training:
        dataset = dataset.shuffle(min(len(data), 10_000), seed=seed, reshuffle_each_iteration=True)
        if augment:
            dataset = dataset.map(
                lambda pixels, label: (augment_pixels(pixels, input_size), label),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
    dataset = dataset.map(lambda pixels, label: (preprocess_pixels(pixels), label), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
