"""A real chest radiograph through the whole served path: DICOM -> windowing -> PNG -> serving_default -> Grad-CAM.

The image is pydicom-data's RG1_UNCI.dcm (MIT; the root `test` extra installs pydicom-data, which registers
itself as a pydicom data source, so ``pydicom.data.get_testdata_file`` finds it offline): a real CR chest PA,
1955 x 1841 (not square), MONOCHROME1, 15 bits stored, WindowCenter/Width 15000/30000. It is one image, so
it proves the I/O path on real anatomy and real DICOM encoding, not any accuracy. The model is the session's
CI model (tests/model/conftest.py); nothing is trained here.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from model_cli_runner import CI_INPUT_SIZE, pydicom_data_file, run_model_cli

pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow", reason="needs the 'ml' extra (TensorFlow)")


@pytest.fixture(scope="module")
def rg1():
    return pydicom_data_file("RG1_UNCI.dcm")


def test_real_cr_chest_is_windowed_and_inverted_as_a_chest(rg1):
    """Pixel statistics of the project's rendering of RG1 (a regression guard on windowing and MONOCHROME1)."""
    import pydicom

    from xraymodel.dicom_input import read_dicom_pixels

    dataset = pydicom.dcmread(rg1, stop_before_pixels=True)
    assert (dataset.Modality, dataset.BodyPartExamined, dataset.ViewPosition) == ("CR", "CHEST", "PA")
    assert (dataset.PhotometricInterpretation, int(dataset.BitsStored)) == ("MONOCHROME1", 15)
    pixels = read_dicom_pixels(rg1)
    assert pixels.shape == (1955, 1841) and pixels.dtype == np.uint8
    p1, p50, p99 = np.percentile(pixels, [1, 50, 99])
    print(f"RG1: p1/p50/p99 = {p1:.0f}/{p50:.0f}/{p99:.0f}")
    assert abs(p1 - 61) <= 3 and abs(p50 - 207) <= 3 and abs(p99 - 237) <= 3
    rows, cols = pixels.shape
    band = slice(rows // 3, 2 * rows // 3)
    mediastinum = pixels[band, cols * 9 // 20 : cols * 11 // 20].mean()
    right_lung, left_lung = pixels[band, cols // 5 : cols * 2 // 5].mean(), pixels[band, cols * 3 // 5 : cols * 4 // 5].mean()
    # MONOCHROME1 inverted: the mediastinum and spine are brighter than both air-filled lungs (224 vs 174 / 165)
    assert mediastinum > right_lung + 25 and mediastinum > left_lung + 25
    # without the inversion the same file would show dark bone
    raw = pydicom.dcmread(rg1).pixel_array
    assert raw[band, cols * 9 // 20 : cols * 11 // 20].mean() < raw[band, cols // 5 : cols * 2 // 5].mean()


@pytest.fixture(scope="module")
def loaded_export(exported_version):
    return tf.saved_model.load(str(exported_version))


def test_real_dicom_through_the_serving_signature_matches_training_decode(rg1, loaded_export, exported_version, trained_run):
    """The PNG a DICOM gateway would send (dicom_to_png_bytes) scores in serving_default exactly as the
    training pipeline scores the .dcm file itself: one windowing, one resize, no skew on a real chest."""
    from xraymodel.dicom_input import dicom_to_png_bytes
    from xraymodel.pipeline import load_file_pixels, preprocess_pixels
    from xraymodel.serving_rest import (
        decode_rest_instances,
        parse_rest_predictions,
        rest_request_body,
        rest_response_body,
    )
    from xraymodel.training import load_run

    png = dicom_to_png_bytes(rg1)
    assert png.startswith(b"\x89PNG")
    body = json.loads(json.dumps(rest_request_body([png])))  # the REST body a client would post
    assert base64.b64decode(body["instances"][0]["b64"]) == png
    signature = loaded_export.signatures[body["signature_name"]]
    served = signature(image_bytes=tf.constant(decode_rest_instances(body)))["probabilities"].numpy()
    predictions = np.array(parse_rest_predictions(rest_response_body(served)))
    card = json.loads((exported_version / "model_card.json").read_text())
    assert predictions.shape == (1, len(card["labels"])) and np.isfinite(predictions).all()
    assert ((predictions >= 0) & (predictions <= 1)).all()

    model = load_run(trained_run[0])[0]
    pixels = load_file_pixels(rg1, CI_INPUT_SIZE)  # the training/evaluation path: pydicom inside tf.data
    assert pixels.shape == (CI_INPUT_SIZE, CI_INPUT_SIZE, 3)
    keras_probabilities = model(preprocess_pixels(pixels[None]), training=False).numpy()
    # the export serves calibrated probabilities: the card's per-finding Platt calibrator on the Keras output
    from xraymodel.evaluation_report import calibrators_from_dict

    calibrators = calibrators_from_dict(card["calibration"]["per_label"])
    keras_probabilities = np.column_stack(
        [calibrators[name].apply(keras_probabilities[:, c]) for c, name in enumerate(card["labels"])]
    )
    np.testing.assert_allclose(predictions, keras_probabilities, atol=1e-4)
    print("RG1 served probabilities:", dict(zip(card["labels"], np.round(predictions[0], 3).tolist())))


def test_gradcam_renders_on_the_real_dicom(rg1, exported_version, tmp_path):
    """Grad-CAM of the exported version on the .dcm itself: the display image is the windowed chest."""
    from PIL import Image

    from xraymodel.export import load_keras_from_export
    from xraymodel.gradcam import gradcam_heatmap, model_input_pixels, read_display_image

    out = tmp_path / "rg1-cam.png"
    assert run_model_cli(
        ["model", "gradcam", "--model", str(exported_version), "--image", str(rg1), "--finding", "Nodule", "--out", str(out)]
    ) == 0
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 20_000
    assert Image.open(out).size[0] > 600
    display = read_display_image(rg1)
    assert max(display.shape) == 1024 and display.shape[0] > display.shape[1]  # aspect kept for display
    model, card = load_keras_from_export(exported_version)
    heatmap, probability = gradcam_heatmap(model, model_input_pixels(rg1, CI_INPUT_SIZE), card["labels"].index("Nodule"))
    assert heatmap.shape == (2, 2) and heatmap.min() >= 0 and 0.0 <= probability <= 1.0
    assert np.isfinite(heatmap).all()
