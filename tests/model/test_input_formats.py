"""Per-file format handling in the shared decode path: mixed PNG+DICOM data sets and 16-bit PNGs.

Both were real bugs (shared/notes/model-review.md §1.4, §1.8): the DICOM decision was taken once
for the whole data set, so a folder holding a PNG and a DICOM crashed inside tf.data; and
``decode_image(dtype=uint8)`` kept only the top byte of a 16-bit PNG, so a 12-bit radiograph
stored in 16 bits came out nearly black. TensorFlow is real here.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow", reason="needs the 'ml' extra (TensorFlow)")


def _png16(values: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.uint16)).save(buffer, format="PNG")
    data = buffer.getvalue()
    assert data[24] == 16  # IHDR bit depth: really a 16-bit PNG
    return data


def _case(size: int = 96, seed: int = 3) -> np.ndarray:
    from xraymodel.synthetic import generate_cases

    return generate_cases(1, size, seed=seed)[0].pixels


def _stretched(pixels: np.ndarray) -> np.ndarray:
    low, high = float(pixels.min()), float(pixels.max())
    return (pixels.astype(np.float64) - low) / (high - low) * 255.0


def test_12_bit_radiograph_in_a_16_bit_png_keeps_its_contrast():
    from xraymodel.pipeline import decode_and_resize

    pixels = _case()
    twelve_bit = pixels.astype(np.uint16) * 16  # 0..4080, what many DICOM -> PNG exporters write
    decoded = decode_and_resize(tf.constant(_png16(twelve_bit)), 96).numpy()[..., 0]
    print(f"16-bit PNG: source mean {pixels.mean():.1f}, decoded mean {decoded.mean():.1f}, max {decoded.max():.1f}")
    # windowed to the stored range like a DICOM without a window: the grey levels survive
    np.testing.assert_allclose(decoded, _stretched(pixels), atol=1.0)
    assert decoded.max() > 250


def test_8_bit_png_unchanged_by_the_16_bit_path():
    from xraymodel.pipeline import decode_and_resize
    from xraymodel.synthetic import encode_png

    pixels = _case()
    decoded = decode_and_resize(tf.constant(encode_png(pixels)), 96).numpy()
    np.testing.assert_allclose(decoded[..., 0], pixels, atol=1e-3)  # no stretching of 8-bit files


def test_16_bit_png_passes_the_data_check_and_trains_like_its_8_bit_twin(tmp_path):
    from xraymodel import datasets
    from xraymodel.pipeline import build_dataset

    pixels = _case(64)
    (tmp_path / "Mass").mkdir()
    (tmp_path / "Mass" / "p1_000.png").write_bytes(_png16(pixels.astype(np.uint16) * 16))
    data = datasets.load_dataset(tmp_path, ["Mass"])
    assert datasets.fingerprint_and_check(data).startswith("sha256:")
    batch, _ = next(iter(build_dataset(data, 64, 1, cache=None)))
    bgr_mean = np.array([103.939, 116.779, 123.68])
    restored = batch.numpy()[0][..., 2] + bgr_mean[2]  # undo 'caffe' preprocessing (R channel)
    np.testing.assert_allclose(restored, _stretched(pixels), atol=1.0)


@pytest.fixture
def mixed_folder(tmp_path):
    """One PNG and one DICOM in the same class folder (a PACS export next to a PNG archive)."""
    from xraymodel.dicom_input import write_dicom_radiograph
    from xraymodel.synthetic import encode_png

    folder = tmp_path / "Effusion"
    folder.mkdir()
    png_pixels, dicom_pixels = _case(64, seed=1), _case(64, seed=2)
    (folder / "p1_000.png").write_bytes(encode_png(png_pixels))
    write_dicom_radiograph(folder / "p2_000.dcm", dicom_pixels)
    return tmp_path, {"p1_000.png": png_pixels, "p2_000.dcm": dicom_pixels}


def test_mixed_png_and_dicom_data_set_goes_through_tf_data(mixed_folder):
    from xraymodel import datasets
    from xraymodel.pipeline import build_dataset

    root, expected = mixed_folder
    data = datasets.load_dataset(root, ["Effusion"])
    datasets.fingerprint_and_check(data)  # the per-file check always passed
    images = np.concatenate([images.numpy() for images, _ in build_dataset(data, 64, 2, cache=None)])
    assert images.shape == (2, 64, 64, 3)
    bgr_mean = np.array([103.939, 116.779, 123.68])
    for path, image in zip(data.paths, images):
        restored = image[..., 2] + bgr_mean[2]
        assert np.abs(restored - expected[path.rsplit("/", 1)[1]]).max() <= 1.5, path


def test_mixed_png_and_dicom_calibration_pixels(mixed_folder):
    from xraymodel import datasets
    from xraymodel.quantize import load_pixels_array

    root, expected = mixed_folder
    data = datasets.load_dataset(root, ["Effusion"])
    pixels = load_pixels_array(data, 64)
    for path, image in zip(data.paths, pixels):
        assert np.abs(image[..., 0] - expected[path.rsplit("/", 1)[1]]).max() <= 1.5, path
