"""Input checks at the edge (issue 16 item 6): body part / view / modality from DICOM tags, inverted or
non-chest pixels, 16-bit input. Tag and measurement rules are table-tested as pure functions; the real
files are pydicom-data's RG1 (CR chest PA: accepted), RG3 (CR tibia: refused) and 693 (CT: refused).
No TensorFlow here.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from model_cli_runner import pydicom_data_file, run_model_cli

from xraymodel.input_checks import (
    ACCEPT,
    NOTE,
    REFUSE,
    REVIEW,
    check_dicom_tags,
    check_file,
    check_measurements,
    check_pixels,
    checked_png_bytes,
)

CHEST_PA = {"Modality": "CR", "BodyPartExamined": "CHEST", "ViewPosition": "PA", "PhotometricInterpretation": "MONOCHROME2",
            "SamplesPerPixel": 1, "BitsStored": 8}


def _with(**changes):
    tags = dict(CHEST_PA)
    for key, value in changes.items():
        if value is None:
            tags.pop(key, None)
        else:
            tags[key] = value
    return tags


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (CHEST_PA, set()),
        (_with(Modality="DX", BodyPartExamined="thorax"), set()),  # case-insensitive, THORAX is a chest
        (_with(Modality="CT"), {("modality", REFUSE)}),
        (_with(Modality="MG"), {("modality", REFUSE)}),  # a projection radiograph, but of the breast
        (_with(Modality=None), {("modality", REFUSE)}),
        (_with(BodyPartExamined="EXTREMITY"), {("body_part", REFUSE)}),
        (_with(BodyPartExamined="SKULL"), {("body_part", REFUSE)}),
        (_with(BodyPartExamined=None), {("body_part", REVIEW)}),
        (_with(BodyPartExamined=""), {("body_part", REVIEW)}),
        (_with(ViewPosition="LL"), {("view", REVIEW)}),
        (_with(ViewPosition="LATERAL"), {("view", REVIEW)}),
        (_with(ViewPosition="XYZ"), {("view", REVIEW)}),
        (_with(ViewPosition=None), {("view", REVIEW)}),
        (_with(ViewPosition="AP"), {("view", NOTE)}),
        (_with(PhotometricInterpretation="MONOCHROME1"), {("photometric", NOTE)}),
        (_with(PhotometricInterpretation="RGB", SamplesPerPixel=3), {("photometric", REFUSE)}),
        (_with(PhotometricInterpretation="YBR_FULL"), {("photometric", REFUSE)}),
        (_with(NumberOfFrames=4), {("frames", REFUSE)}),
        (_with(NumberOfFrames=1), set()),
        (_with(BitsStored=15), {("bit_depth", NOTE)}),
        (_with(Modality="US", BodyPartExamined="ABDOMEN", ViewPosition=None),
         {("modality", REFUSE), ("body_part", REFUSE), ("view", REVIEW)}),
    ],
)
def test_dicom_tag_rules(tags, expected):
    checks = check_dicom_tags(tags)
    assert {(c.code, c.verdict) for c in checks} == expected
    assert all(c.message for c in checks)


@pytest.mark.parametrize(
    ("measured", "expected"),
    [
        ({"contrast_right": 0.31, "contrast_left": 0.36, "dynamic_range": 176}, None),  # RG1
        ({"contrast_right": 0.13, "contrast_left": 0.05, "dynamic_range": 150}, None),  # one side barely darker
        ({"contrast_right": -0.31, "contrast_left": -0.36, "dynamic_range": 176}, "inverted"),
        ({"contrast_right": -0.05, "contrast_left": -0.15, "dynamic_range": 176}, "inverted"),
        ({"contrast_right": 0.04, "contrast_left": 0.01, "dynamic_range": 120}, "not_chest"),  # too flat
        ({"contrast_right": 0.40, "contrast_left": -0.02, "dynamic_range": 120}, "not_chest"),  # one side brighter
        ({"contrast_right": -0.30, "contrast_left": 0.02, "dynamic_range": 120}, "not_chest"),
        ({"contrast_right": 0.30, "contrast_left": 0.30, "dynamic_range": 10}, "uniform"),
    ],
)
def test_pixel_measurement_rules(measured, expected):
    checks = check_measurements(measured)
    assert [c.code for c in checks] == ([expected] if expected else [])
    assert all(c.verdict == REVIEW for c in checks)


def test_synthetic_chests_pass_and_their_negatives_are_flagged():
    from xraymodel.synthetic import generate_cases

    cases = generate_cases(120, 96, seed=11, prevalence=0.3)
    verdicts = [check_pixels(c.pixels)[0] for c in cases]
    assert all(v == [] for v in verdicts), [v for v in verdicts if v][:3]
    negatives = [check_pixels(255 - c.pixels)[0] for c in cases]
    assert all([c.code for c in v] == ["inverted"] for v in negatives)


def test_blank_and_noise_are_flagged():
    rng = np.random.default_rng(0)
    assert [c.code for c in check_pixels(np.full((80, 80), 128, np.uint8))[0]] == ["uniform"]
    assert [c.code for c in check_pixels(rng.integers(0, 256, (80, 80)).astype(np.uint8))[0]] == ["not_chest"]
    assert [c.code for c in check_pixels(np.rot90(_rg1_pixels()).copy())[0]] == ["not_chest"]  # a chest on its side


def _rg1_pixels():
    from xraymodel.dicom_input import read_dicom_pixels

    return read_dicom_pixels(pydicom_data_file("RG1_UNCI.dcm"))


def test_real_files_from_pydicom_data():
    rg1 = check_file(pydicom_data_file("RG1_UNCI.dcm"))
    assert rg1.verdict == ACCEPT
    assert {(c.code, c.verdict) for c in rg1.checks} == {("photometric", NOTE), ("bit_depth", NOTE)}  # MONOCHROME1, 15 bit
    assert rg1.measurements["contrast_right"] > 0.2 and rg1.measurements["contrast_left"] > 0.2

    rg3 = check_file(pydicom_data_file("RG3_UNCI.dcm"))  # CR, EXTREMITY, AP: a tibia
    assert rg3.verdict == REFUSE
    assert [c.message for c in rg3.checks if c.verdict == REFUSE] == [
        "BodyPartExamined EXTREMITY is not a chest (a chest model must not score it)"
    ]
    ct = check_file(pydicom_data_file("693_UNCI.dcm"))
    assert ct.verdict == REFUSE and any(c.code == "modality" and "CT" in c.message for c in ct.checks)


def test_the_tibia_passes_the_pixel_heuristic_so_the_tags_must_decide():
    """Documents the heuristic's limit (module docstring): RG3's pixels alone look chest-like enough."""
    from xraymodel.dicom_input import read_dicom_pixels

    checks, measured = check_pixels(read_dicom_pixels(pydicom_data_file("RG3_UNCI.dcm")))
    assert checks == [] and measured["contrast_left"] < 0.15  # a weak pass


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_inverted_and_16_bit_files(tmp_path):
    """A negative export (PNG, or a DICOM that says MONOCHROME2 over negative pixels) is flagged; a correct
    MONOCHROME1 DICOM is inverted on read and accepted; 16-bit PNGs are windowed like the serving graph."""
    from PIL import Image

    from xraymodel.dicom_input import write_dicom_radiograph

    small = np.asarray(Image.fromarray(_rg1_pixels()).resize((460, 489)))
    chest_tags = {"BodyPartExamined": "CHEST", "ViewPosition": "PA"}
    files = {
        "negative.png": lambda p: p.write_bytes(_png(255 - small)),
        "mislabelled.dcm": lambda p: write_dicom_radiograph(p, 255 - small, modality="DX", tags=chest_tags),
        "monochrome1.dcm": lambda p: write_dicom_radiograph(p, small, modality="DX", photometric="MONOCHROME1", tags=chest_tags),
        "chest12in16.png": lambda p: p.write_bytes(_png(small.astype(np.uint16) * 16)),
        "negative12in16.png": lambda p: p.write_bytes(_png((255 - small).astype(np.uint16) * 16)),
    }
    results = {}
    for name, write in files.items():
        write(tmp_path / name)
        results[name] = check_file(tmp_path / name)
    summary = {name: (r.verdict, sorted(c.code for c in r.checks)) for name, r in results.items()}
    assert summary == {
        "negative.png": (REVIEW, ["inverted"]),
        "mislabelled.dcm": (REVIEW, ["bit_depth", "inverted"]),
        "monochrome1.dcm": (ACCEPT, ["bit_depth", "photometric"]),
        "chest12in16.png": (ACCEPT, ["bit_depth"]),
        "negative12in16.png": (REVIEW, ["bit_depth", "inverted"]),
    }
    assert "12 bits used" in results["chest12in16.png"].checks[0].message


def test_gateway_refuses_before_sending_and_returns_png_with_flags(tmp_path):
    from xraymodel.errors import InputDataError

    png, result = checked_png_bytes(pydicom_data_file("RG1_UNCI.dcm"))
    assert png.startswith(b"\x89PNG") and result.verdict == ACCEPT
    with pytest.raises(InputDataError, match=r"RG3_UNCI.dcm: refused: BodyPartExamined EXTREMITY is not a chest"):
        checked_png_bytes(pydicom_data_file("RG3_UNCI.dcm"))
    with pytest.raises(InputDataError, match=r"693_UNCI.dcm: refused: Modality CT"):
        checked_png_bytes(pydicom_data_file("693_UNCI.dcm"))


def test_check_input_cli(tmp_path, capsys):
    from xraymodel.dicom_input import write_dicom_radiograph

    lateral = write_dicom_radiograph(
        tmp_path / "lateral.dcm", _rg1_pixels()[::4, ::4], tags={"BodyPartExamined": "CHEST", "ViewPosition": "LL"}
    )
    rg1, rg3 = pydicom_data_file("RG1_UNCI.dcm"), pydicom_data_file("RG3_UNCI.dcm")
    assert run_model_cli(["model", "check-input", rg1, str(lateral)]) == 0  # a review flag is not a refusal
    verdicts = [f["verdict"] for f in json.loads(capsys.readouterr().out)["files"]]
    assert verdicts == [ACCEPT, REVIEW]
    assert run_model_cli(["model", "check-input", "--strict", rg1, str(lateral)]) == 2
    assert "lateral.dcm: review: ViewPosition LL is not frontal" in capsys.readouterr().err
    assert run_model_cli(["model", "check-input", rg1, rg3]) == 2
    captured = capsys.readouterr()
    assert [f["verdict"] for f in json.loads(captured.out)["files"]] == [ACCEPT, REFUSE]
    assert "RG3_UNCI.dcm: refuse: BodyPartExamined EXTREMITY is not a chest" in captured.err
