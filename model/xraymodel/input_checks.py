"""Input checks at the edge: is this file a frontal chest radiograph the model may score?

A chest model scores whatever pixels it is given, a tibia or a CT slice included. Before a gateway sends a
file to ``serving_default`` it asks ``check_file``; each check returns a verdict:

    refuse   the file must not be scored (wrong modality, not a chest, colour, multi-frame, unreadable)
    review   it may be scored, but a person must look first (lateral view, body part not recorded,
             looks inverted or not like a chest)
    note     scored as is; the note says what was done (MONOCHROME1 inverted, 15-bit values windowed)

The overall verdict is the worst one: ``accept`` when there is neither a refusal nor a review flag.

Two kinds of evidence, two pure functions (table-tested):

* ``check_dicom_tags``: Modality, BodyPartExamined, ViewPosition, PhotometricInterpretation,
  SamplesPerPixel, NumberOfFrames, BitsStored (DICOM PS3.3; body parts per CID 4031 terms).
* ``check_pixels``: on the 8-bit grey image the model will see (after DICOM windowing or 16-bit PNG
  windowing): a frontal chest has two air-filled lung fields darker than the mediastinum between them.
  Both darker by a margin: chest-like. Both brighter: a negative (a MONOCHROME1 file read without its
  inversion, or an inverted export). Neither: not chest-like. A nearly uniform image is flagged too.
  This is a crude heuristic on purpose (a few means on a 64 x 64 thumbnail, no model): it catches
  negatives, blanks and noise; it cannot tell every non-chest from a chest (the pydicom-data tibia RG3
  passes it), so for DICOM the tags decide the body part.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REFUSE, REVIEW, NOTE, ACCEPT = "refuse", "review", "note", "accept"
_SEVERITY = {NOTE: 0, REVIEW: 1, REFUSE: 2}

CHEST_MODALITIES = ("CR", "DX", "RG")  # computed / digital / conventional radiography
CHEST_BODY_PARTS = ("CHEST", "THORAX", "LUNG", "CHEST_ABDOMEN")
FRONTAL_VIEWS = ("PA", "AP")
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "LPO", "RPO", "LAO", "RAO")

# check_pixels: thumbnail side, regions (rows/columns as fractions of the side) and margins in 0..1 units
THUMBNAIL = 64
LUNG_ROWS = (0.30, 0.70)
MEDIASTINUM_COLUMNS = (0.44, 0.56)
RIGHT_LUNG_COLUMNS = (0.20, 0.38)  # the patient's right is the image's left on a PA view
LEFT_LUNG_COLUMNS = (0.62, 0.80)
CHEST_CONTRAST = 0.08  # mean (mediastinum - lung) above this, each side above 0: chest-like
MIN_DYNAMIC_RANGE = 16  # grey levels between the 1st and 99th percentile


@dataclass(frozen=True)
class Check:
    code: str
    verdict: str
    message: str


@dataclass(frozen=True)
class InputCheck:
    source: str
    checks: tuple[Check, ...] = field(default_factory=tuple)
    measurements: Mapping[str, float] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        worst = max((_SEVERITY[c.verdict] for c in self.checks), default=0)
        return {0: ACCEPT, 1: REVIEW, 2: REFUSE}[worst]

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "verdict": self.verdict,
            "checks": [{"code": c.code, "verdict": c.verdict, "message": c.message} for c in self.checks],
            "measurements": dict(self.measurements),
        }


def _text(tags: Mapping[str, object], key: str) -> str:
    value = tags.get(key)
    return "" if value is None else str(value).strip().upper()


def check_dicom_tags(tags: Mapping[str, object]) -> list[Check]:
    """Checks from DICOM attributes (keyword -> value, e.g. a pydicom Dataset or a plain dict)."""
    checks: list[Check] = []
    modality = _text(tags, "Modality")
    if not modality:
        checks.append(Check("modality", REFUSE, "Modality is missing: cannot confirm a projection radiograph"))
    elif modality not in CHEST_MODALITIES:
        checks.append(Check(
            "modality", REFUSE,
            f"Modality {modality} is not a chest radiograph (expected {', '.join(CHEST_MODALITIES)})",
        ))
    samples = tags.get("SamplesPerPixel")
    photometric = _text(tags, "PhotometricInterpretation")
    if (samples is not None and int(samples) != 1) or (photometric and not photometric.startswith("MONOCHROME")):
        described = photometric or f"{samples} samples per pixel"
        checks.append(Check("photometric", REFUSE, f"colour image ({described}): a radiograph is greyscale"))
    elif photometric == "MONOCHROME1":
        checks.append(Check("photometric", NOTE, "MONOCHROME1 (white = low values): inverted on read so bone is bright"))
    frames = tags.get("NumberOfFrames")
    if frames not in (None, "") and int(frames) > 1:
        checks.append(Check("frames", REFUSE, f"{int(frames)} frames: expected a single radiograph"))
    body_part = _text(tags, "BodyPartExamined")
    if not body_part:
        checks.append(Check("body_part", REVIEW, "BodyPartExamined is not recorded: cannot confirm a chest"))
    elif body_part not in CHEST_BODY_PARTS:
        checks.append(Check("body_part", REFUSE, f"BodyPartExamined {body_part} is not a chest (a chest model must not score it)"))
    view = _text(tags, "ViewPosition")
    if not view:
        checks.append(Check("view", REVIEW, "ViewPosition is not recorded: the model is for frontal (PA/AP) views"))
    elif view in LATERAL_VIEWS:
        checks.append(Check("view", REVIEW, f"ViewPosition {view} is not frontal: the model was trained on PA/AP views"))
    elif view not in FRONTAL_VIEWS:
        checks.append(Check("view", REVIEW, f"ViewPosition {view} is unknown: the model is for frontal (PA/AP) views"))
    elif view == "AP":
        checks.append(Check("view", NOTE, "AP view (often portable or supine): the heart looks larger than on PA"))
    bits = tags.get("BitsStored")
    if bits not in (None, "") and int(bits) > 8:
        checks.append(Check("bit_depth", NOTE, f"{int(bits)}-bit stored values windowed to 8 bits"))
    return checks


def _region(unit: np.ndarray, rows: tuple[float, float], columns: tuple[float, float]) -> float:
    side = unit.shape[0]
    r0, r1 = (int(round(f * side)) for f in rows)
    c0, c1 = (int(round(f * side)) for f in columns)
    return float(unit[r0:r1, c0:c1].mean())


def pixel_measurements(pixels: np.ndarray) -> dict[str, float]:
    """Mediastinum-minus-lung contrast of each side (0..1 units, after a 1-99 % stretch) and the dynamic range."""
    from PIL import Image

    grey = np.asarray(pixels)
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    grey = grey.astype(np.float64)
    low, high = np.percentile(grey, [1, 99])
    scale = 255.0 / max(float(grey.max() - grey.min()), 1.0) if grey.max() > 255 else 1.0  # 16-bit input
    thumbnail = np.asarray(
        Image.fromarray(((grey - grey.min()) * scale).astype(np.float32)).resize((THUMBNAIL, THUMBNAIL), Image.BILINEAR),
        dtype=np.float64,
    )
    t_low, t_high = np.percentile(thumbnail, [1, 99])
    unit = np.clip((thumbnail - t_low) / max(t_high - t_low, 1e-6), 0.0, 1.0)
    mediastinum = _region(unit, LUNG_ROWS, MEDIASTINUM_COLUMNS)
    return {
        "contrast_right": round(mediastinum - _region(unit, LUNG_ROWS, RIGHT_LUNG_COLUMNS), 4),
        "contrast_left": round(mediastinum - _region(unit, LUNG_ROWS, LEFT_LUNG_COLUMNS), 4),
        "dynamic_range": round(float(high - low) * scale, 2),
    }


def check_measurements(measured: Mapping[str, float]) -> list[Check]:
    """Verdicts from ``pixel_measurements`` (pure: the table tests feed numbers)."""
    if measured["dynamic_range"] < MIN_DYNAMIC_RANGE:
        return [Check("uniform", REVIEW, f"nearly uniform image (1-99 % range {measured['dynamic_range']:.0f} grey levels)")]
    right, left = measured["contrast_right"], measured["contrast_left"]
    mean = (right + left) / 2.0
    if mean <= -CHEST_CONTRAST and max(right, left) < 0:
        return [Check(
            "inverted", REVIEW,
            f"looks inverted (a negative): both lung fields are brighter than the mediastinum "
            f"(contrast {right:+.2f} / {left:+.2f}); a MONOCHROME1 image read without inversion?",
        )]
    if mean < CHEST_CONTRAST or min(right, left) <= 0:
        return [Check(
            "not_chest", REVIEW,
            f"does not look like a frontal chest: no two lung fields darker than the mediastinum "
            f"(contrast {right:+.2f} / {left:+.2f}, need both > 0 and mean >= {CHEST_CONTRAST})",
        )]
    return []


def check_pixels(pixels: np.ndarray) -> tuple[list[Check], dict[str, float]]:
    measured = pixel_measurements(pixels)
    return check_measurements(measured), measured


def _png_or_jpeg_grey(data: bytes) -> tuple[np.ndarray, list[Check]]:
    """Grey pixels as the serving graph windows them (16-bit PNG: stored range to 0..255) and a note."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    if image.mode.startswith("I"):
        values = np.asarray(image, dtype=np.float64)
        low, high = values.min(), values.max()
        pixels = ((values - low) * (255.0 / max(high - low, 1.0)) + 0.5).astype(np.uint8)
        bits = int(np.ceil(np.log2(high + 1))) if high > 0 else 0
        return pixels, [Check("bit_depth", NOTE, f"16-bit PNG ({bits} bits used): stored range {low:.0f}..{high:.0f} windowed to 8 bits")]
    return np.asarray(image.convert("L")), []


def check_file(path: str | Path) -> InputCheck:
    """All checks of one PNG/JPEG/DICOM file (a DICOM is refused on its tags before its pixels are read)."""
    import pydicom

    from xraymodel.dicom_input import is_dicom_file, read_dicom_pixels
    from xraymodel.errors import InputDataError

    path = Path(path)
    if is_dicom_file(path):
        try:
            tags = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:
            return InputCheck(str(path), (Check("unreadable", REFUSE, f"not a readable DICOM file ({exc})"),))
        checks = check_dicom_tags(tags)
        if any(c.verdict == REFUSE for c in checks):
            return InputCheck(str(path), tuple(checks))
        try:
            pixels = read_dicom_pixels(path)
        except InputDataError as exc:
            return InputCheck(str(path), tuple(checks) + (Check("unreadable", REFUSE, str(exc)),))
    else:
        try:
            pixels, checks = _png_or_jpeg_grey(path.read_bytes())
        except Exception as exc:
            return InputCheck(str(path), (Check("unreadable", REFUSE, f"not a readable PNG/JPEG image ({exc})"),))
    pixel_checks, measured = check_pixels(pixels)
    return InputCheck(str(path), tuple(checks) + tuple(pixel_checks), measured)


def checked_png_bytes(path: str | Path) -> tuple[bytes, InputCheck]:
    """What a gateway sends to ``serving_default`` (PNG bytes of the windowed image) and the checks.

    A refused file raises InputDataError naming the file and every refusal; review flags and notes are
    returned for the caller to route (a review queue) or log.
    """
    from xraymodel.dicom_input import dicom_to_png_bytes, is_dicom_file
    from xraymodel.errors import InputDataError

    result = check_file(path)
    if result.verdict == REFUSE:
        reasons = "; ".join(c.message for c in result.checks if c.verdict == REFUSE)
        raise InputDataError(f"{path}: refused: {reasons}")
    return (dicom_to_png_bytes(path) if is_dicom_file(path) else Path(path).read_bytes()), result
