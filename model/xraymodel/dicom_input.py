"""DICOM radiographs in: pydicom reads them, the modality LUT and a VOI window make 8-bit pixels.

Only single-frame greyscale projection radiographs are accepted (modalities CR, DX, and DX-like
RG/MG/IO/PX); CT, MR, colour or multi-frame objects are refused with a message naming the file,
because a window that suits a radiograph makes nonsense of them. Windowing follows DICOM PS3.3
C.11.2.1.2 (linear): explicit centre/width, else the file's own WindowCenter/WindowWidth, else the
full range of the stored values. MONOCHROME1 (white = low values) is inverted so bone is bright.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from xraymodel.errors import InputDataError

RADIOGRAPH_MODALITIES = ("CR", "DX", "RG", "MG", "IO", "PX")
DICOM_SUFFIXES = (".dcm", ".dicom")


def is_dicom_file(path: str | Path) -> bool:
    """True when the file has a DICOM suffix or the 'DICM' magic at byte 128."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM linear VOI window to [0, 1]: (x - (c - 0.5)) / (w - 1) + 0.5, clipped."""
    if width < 1:
        raise ValueError(f"window width must be >= 1, got {width}")
    scaled = (np.asarray(values, dtype=np.float64) - (center - 0.5)) / (width - 1.0) + 0.5
    return np.clip(scaled, 0.0, 1.0)


def _first_value(value) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, (str, bytes)) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def read_dicom_pixels(
    source: str | Path | bytes,
    window_center: float | None = None,
    window_width: float | None = None,
    allow_any_modality: bool = False,
) -> np.ndarray:
    """Windowed 8-bit greyscale pixels [rows, columns] of a single-frame DICOM radiograph."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else source
        dataset = pydicom.dcmread(handle)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise InputDataError(f"{name}: not a readable DICOM file ({exc})") from exc
    modality = str(dataset.get("Modality", "")).upper()
    if not allow_any_modality and modality not in RADIOGRAPH_MODALITIES:
        raise InputDataError(
            f"{name}: DICOM modality {modality or 'missing'!r} is not a projection radiograph "
            f"(expected one of {', '.join(RADIOGRAPH_MODALITIES)})"
        )
    if "PixelData" not in dataset:
        raise InputDataError(f"{name}: DICOM file has no pixel data")
    photometric = str(dataset.get("PhotometricInterpretation", "")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputDataError(f"{name}: DICOM photometric interpretation {photometric!r} is not greyscale")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise InputDataError(f"{name}: DICOM has {frames} frames; expected a single radiograph")
    try:
        stored = dataset.pixel_array
    except Exception as exc:  # missing decoder plugin, truncated pixel data, ...
        raise InputDataError(f"{name}: DICOM pixel data cannot be decoded ({exc})") from exc
    if stored.ndim != 2:
        raise InputDataError(f"{name}: DICOM pixel array has shape {stored.shape}; expected 2-D")
    values = apply_modality_lut(stored, dataset).astype(np.float64)
    center = window_center if window_center is not None else _first_value(dataset.get("WindowCenter"))
    width = window_width if window_width is not None else _first_value(dataset.get("WindowWidth"))
    if center is None or width is None or width < 1:
        low, high = float(values.min()), float(values.max())
        center, width = (low + high) / 2.0 + 0.5, max(high - low + 1.0, 1.0)
    unit = linear_window(values, center, width)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return (unit * 255.0 + 0.5).astype(np.uint8)


def dicom_to_png_bytes(source: str | Path | bytes, **window) -> bytes:
    """PNG bytes of a windowed DICOM radiograph, ready for the ``serving_default`` signature."""
    from PIL import Image

    pixels = read_dicom_pixels(source, **window)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def write_dicom_radiograph(
    path: str | Path,
    pixels: np.ndarray,
    modality: str = "DX",
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    window: tuple[float, float] | None = None,
    patient_id: str = "SYNTHETIC",
    tags: dict[str, object] | None = None,
) -> Path:
    """Write 8-bit pixels as a minimal single-frame DICOM radiograph (scaled to ``bits_stored``).

    Used by tests and demos to make DICOMs with chosen tags. The one real chest radiograph the tests use is
    pydicom-data's RG1 (tests/model/test_real_dicom.py); pydicom's own bundled test files are CT/MR only.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    scale = (2**bits_stored - 1) / 255.0
    stored = np.asarray(pixels, dtype=np.float64) * scale
    if photometric == "MONOCHROME1":
        stored = (2**bits_stored - 1) - stored
    stored = np.round(stored).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = pydicom.Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.PatientID = patient_id
    dataset.Modality = modality
    dataset.Rows, dataset.Columns = stored.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = 16
    dataset.BitsStored = bits_stored
    dataset.HighBit = bits_stored - 1
    dataset.PixelRepresentation = 0
    dataset.RescaleSlope = 1
    dataset.RescaleIntercept = 0
    if window is not None:
        dataset.WindowCenter, dataset.WindowWidth = window
    for keyword, value in (tags or {}).items():  # e.g. BodyPartExamined, ViewPosition
        setattr(dataset, keyword, value)
    dataset.PixelData = stored.tobytes()
    path = Path(path)
    dataset.save_as(path, enforce_file_format=True)
    return path
