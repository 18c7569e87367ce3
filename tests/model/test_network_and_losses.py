"""Architecture facts, trainable-stage selection, weights files, losses (small sizes, real Keras)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow", reason="needs the 'ml' extra (TensorFlow)")


@pytest.fixture(scope="module")
def keras():
    from xraymodel import keras_runtime

    keras_runtime.configure(seed=0)
    import keras

    return keras


def test_architecture_as_the_design_record_specifies(keras):
    from xraymodel.network import build_classifier, set_trainable_stages

    model = build_classifier(14, 64)
    names = [layer.name for layer in model.layers]
    assert names[-4:] == ["avg_pool", "fc256", "logits", "probabilities"]
    assert model.get_layer("fc256").units == 256 and model.get_layer("fc256").activation.__name__ == "relu"
    assert model.get_layer("conv5_block3_out") is not None
    out = model(np.zeros((2, 64, 64, 3), np.float32)).numpy()
    assert out.shape == (2, 14) and ((out > 0) & (out < 1)).all()
    assert set_trainable_stages(model, 0) == 2  # fc256 + logits
    trainable_conv = {layer.name.split("_")[0] for layer in model.layers if layer.trainable and layer.weights and layer.name.startswith("conv")}
    assert trainable_conv == set()
    set_trainable_stages(model, 1)
    trainable_conv = {layer.name.split("_")[0] for layer in model.layers if layer.trainable and layer.weights and layer.name.startswith("conv")}
    assert trainable_conv == {"conv5"}
    assert not any(layer.trainable for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))


def test_softmax_head_sums_to_one(keras):
    from xraymodel.network import build_classifier

    out = build_classifier(3, 32, head="softmax")(np.random.rand(4, 32, 32, 3).astype(np.float32) * 255).numpy()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_backbone_from_a_local_weights_file(keras, tmp_path):
    from xraymodel.network import BackboneWeightsError, build_classifier

    donor = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "resnet50_notop.weights.h5"
    donor.save_weights(path)
    model = build_classifier(14, 32, backbone_weights=path)
    np.testing.assert_array_equal(model.get_layer("conv1_conv").get_weights()[0], donor.get_layer("conv1_conv").get_weights()[0])
    with pytest.raises(BackboneWeightsError, match="not found"):
        build_classifier(14, 32, backbone_weights=tmp_path / "missing.h5")


@pytest.mark.parametrize(
    ("y", "p", "w"),
    [
        ([[1.0, 0.0]], [[0.8, 0.3]], [1.0, 1.0]),
        ([[1.0, 0.0]], [[0.8, 0.3]], [5.0, 2.0]),
        ([[0.0, 1.0], [1.0, 1.0]], [[0.1, 0.6], [0.9, 0.2]], [3.0, 10.0]),
    ],
)
def test_weighted_binary_crossentropy_formula(keras, y, p, w):
    from xraymodel.losses import WeightedBinaryCrossentropy

    y, p, w = np.array(y), np.array(p), np.array(w)
    expected = np.mean(-(w * y * np.log(p) + (1 - y) * np.log(1 - p)), axis=-1).mean()
    got = float(WeightedBinaryCrossentropy(list(w))(y, p.astype(np.float32)))
    assert got == pytest.approx(expected, rel=1e-4)


def test_weighted_categorical_crossentropy_formula(keras):
    from xraymodel.losses import WeightedCategoricalCrossentropy

    y = np.array([[0, 1, 0], [1, 0, 0]], np.float32)
    p = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]], np.float32)
    w = [2.0, 0.5, 1.0]
    expected = np.mean([-0.5 * np.log(0.7), -2.0 * np.log(0.5)])
    assert float(WeightedCategoricalCrossentropy(w)(y, p)) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ([[1, 0], [0, 0], [0, 0], [0, 1]], [3.0, 3.0]),
        ([[1, 1], [1, 0]], [1.0, 1.0]),  # never below 1
        ([[0, 1]] + [[0, 0]] * 199, [50.0, 50.0]),  # no positives / very rare: capped
    ],
)
def test_positive_weights(labels, expected):
    from xraymodel.losses import positive_weights

    assert positive_weights(np.array(labels)) == expected
    assert positive_weights(np.array(labels), enabled=False) == [1.0, 1.0]


def test_pipeline_decodes_png_and_dicom_alike(keras, tmp_path):
    from xraymodel.datasets import LabelledImages
    from xraymodel.dicom_input import write_dicom_radiograph
    from xraymodel.pipeline import build_dataset, load_pixels
    from xraymodel.synthetic import encode_png, generate_cases

    pixels = generate_cases(1, 96, seed=2)[0].pixels
    (tmp_path / "a.png").write_bytes(encode_png(pixels))
    write_dicom_radiograph(tmp_path / "a.dcm", pixels)
    from_png = load_pixels(tf.constant(str(tmp_path / "a.png")), 48, dicom=False).numpy()
    from_dicom = load_pixels(tf.constant(str(tmp_path / "a.dcm")), 48, dicom=True).numpy()
    assert from_png.shape == from_dicom.shape == (48, 48, 3)
    assert np.abs(from_png - from_dicom).max() <= 1.5
    data = LabelledImages(tmp_path, (str(tmp_path / "a.dcm"),) * 4, np.eye(4, 2, dtype=np.float32), ("p",) * 4, ("Mass", "Nodule"))
    images, labels = next(iter(build_dataset(data, 48, 4, training=True, augment=True)))
    assert images.shape == (4, 48, 48, 3) and labels.shape == (4, 2)
