"""The one full-size (224 px) export of the session: layout, size, and serving graph vs Keras.

The weights are untrained (weights=None): what is checked is the serving graph at production
size: 1024 px JPEG and PNG bytes in, decode + resize + preprocess in the graph, outputs equal to
Keras on the same decoded pixels, and the file size of a ResNet-50 with all its weights.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow", reason="needs the 'ml' extra (TensorFlow)")


def _encoded(pixels: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format=fmt, quality=90)
    return buffer.getvalue()


def test_224_export_serves_full_size_jpeg_and_png(tmp_path):
    from xraymodel import keras_runtime

    keras_runtime.configure(seed=0)
    from xraymodel.export import export_saved_model, read_model_card
    from xraymodel.findings import FINDINGS
    from xraymodel.network import build_classifier
    from xraymodel.pipeline import decode_and_resize, preprocess_pixels
    from xraymodel.synthetic import render_case

    model = build_classifier(len(FINDINGS), 224)
    version_dir = export_saved_model(model, tmp_path / "chestxray", labels=list(FINDINGS), head="multilabel")
    card = read_model_card(version_dir)
    assert version_dir.name == "1" and card["input_size"] == 224
    assert card["parameters"] > 23_000_000
    # every float32 weight is stored once: ~4 bytes per parameter, not twice that
    assert 4.0 * card["parameters"] <= card["artifact_bytes"] <= 4.6 * card["parameters"]
    print(f"224 px export: {card['artifact_bytes'] / 1e6:.1f} MB")

    rng = np.random.default_rng(0)
    images = [_encoded(render_case(("Effusion",), 1024, rng), "JPEG"), _encoded(render_case((), 1024, rng), "PNG")]
    loaded = tf.saved_model.load(str(version_dir))
    served = loaded.signatures["serving_default"](image_bytes=tf.constant(images))["probabilities"].numpy()
    pixels = tf.stack([decode_and_resize(tf.constant(b), 224) for b in images])
    expected = model(preprocess_pixels(pixels), training=False).numpy()
    assert served.shape == (2, 14)
    np.testing.assert_allclose(served, expected, atol=1e-5)
    floats = loaded.signatures["predict_float"](images=pixels)["probabilities"].numpy()
    np.testing.assert_allclose(floats, expected, atol=1e-5)
    spec = loaded.signatures["predict_float"].structured_input_signature[1]["images"]
    assert spec.shape.as_list() == [None, 224, 224, 3] and spec.dtype == tf.float32
    assert json.loads((version_dir / "model_card.json").read_text())["signatures"]["serving_default"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
