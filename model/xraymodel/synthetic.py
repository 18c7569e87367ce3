"""Synthetic, learnable chest-X-ray-like images for tests and demos (no real radiographs needed).

Each image is a grey frontal "chest": a bright thorax, two darker lung fields, a heart shadow, rib
stripes, noise and random patient-level jitter. Each of the 14 findings plants its own pattern at
its own place (a small bright disc for Nodule, a large one for Mass, a dark apex for Pneumothorax,
an enlarged heart for Cardiomegaly, ...), so a classifier that really trains can learn every label
and one that does not cannot. The patterns are caricatures, not radiology.

``write_chestxray14_layout`` writes the files in the real ChestX-ray14 layout (images/ plus
Data_Entry_2017.csv with its real column names), so the loaders are exercised end to end.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xraymodel.findings import FINDINGS, LABEL_SEPARATOR, NO_FINDING

# Column names of ChestX-ray14's Data_Entry_2017.csv, as published (including the odd brackets).
CHESTXRAY14_COLUMNS = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
)


@dataclass(frozen=True)
class SyntheticCase:
    """One generated image with its ground truth."""

    pixels: np.ndarray  # uint8 [size, size]
    findings: tuple[str, ...]


def _disc(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """Soft-edged filled ellipse mask (1 inside, 0 outside) in normalised coordinates."""
    distance = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    return np.clip((1.0 - distance) * 4.0, 0.0, 1.0)


def render_case(findings: Sequence[str], size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one synthetic radiograph (uint8 [size, size]) showing the given findings."""
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    # Patient-level jitter: position, lung size, exposure.
    dy, dx = rng.uniform(-0.03, 0.03, size=2)
    yy, xx = yy - dy, xx - dx
    lung_scale = rng.uniform(0.92, 1.05)
    present = set(findings)
    if "Emphysema" in present:
        lung_scale *= 1.12

    image = np.full((size, size), 0.06, dtype=np.float32)
    image += 0.50 * _disc(yy, xx, 0.55, 0.50, 0.48, 0.42)  # thorax
    right_lung = _disc(yy, xx, 0.50, 0.31, 0.30 * lung_scale, 0.13 * lung_scale)
    left_lung = _disc(yy, xx, 0.50, 0.69, 0.30 * lung_scale, 0.13 * lung_scale)
    lungs = np.maximum(right_lung, left_lung)
    lung_darkening = 0.40 if "Emphysema" in present else 0.30
    image -= lung_darkening * lungs
    ribs = 0.05 * (np.sin(yy * 2 * np.pi * 9.0 + 1.3 * np.abs(xx - 0.5) * 8) > 0.4)
    image += ribs * lungs
    heart_width = 0.17 if "Cardiomegaly" in present else 0.10
    image += 0.32 * _disc(yy, xx, 0.62, 0.53, 0.14, heart_width)

    def jitter() -> float:
        return float(rng.uniform(-0.015, 0.015))

    if "Atelectasis" in present:  # plate-like band, right lower lung
        band = (np.abs(yy - (0.66 + jitter())) < 0.035) & (np.abs(xx - 0.31) < 0.11)
        image += 0.50 * band
    if "Effusion" in present:  # fluid at both lung bases
        image += 0.50 * lungs * (yy > 0.66 + jitter())
    if "Infiltration" in present:  # patchy texture, left mid lung
        patches = rng.random((size // 8 + 1, size // 8 + 1)) > 0.5
        texture = np.kron(patches, np.ones((8, 8)))[:size, :size]
        image += 0.50 * texture * _disc(yy, xx, 0.50 + jitter(), 0.70, 0.12, 0.09)
    if "Mass" in present:  # large disc, left upper lung
        image += 0.45 * _disc(yy, xx, 0.36 + jitter(), 0.69 + jitter(), 0.075, 0.075)
    if "Nodule" in present:  # small disc, right upper lung
        image += 0.55 * _disc(yy, xx, 0.34 + jitter(), 0.29 + jitter(), 0.035, 0.035)
    if "Pneumonia" in present:  # diffuse cloud, right mid lung
        cloud = np.exp(-(((yy - 0.50 - jitter()) / 0.09) ** 2 + ((xx - 0.31) / 0.08) ** 2))
        image += 0.50 * cloud
    if "Pneumothorax" in present:  # black apex without lung markings, left
        apex = _disc(yy, xx, 0.30 + jitter(), 0.72, 0.09, 0.08)
        image = image * (1 - apex) + 0.0 * apex
    if "Consolidation" in present:  # dense opacity, left lower lung
        image += 0.40 * _disc(yy, xx, 0.66 + jitter(), 0.70, 0.06, 0.08)
    if "Edema" in present:  # bilateral perihilar "butterfly"
        image += 0.40 * _disc(yy, xx, 0.47, 0.40, 0.07, 0.06) + 0.40 * _disc(yy, xx, 0.47, 0.60, 0.07, 0.06)
    if "Fibrosis" in present:  # reticular grid in both upper zones
        grid_lines = ((np.sin(yy * 2 * np.pi * 14) > 0.6) | (np.sin(xx * 2 * np.pi * 14) > 0.6)).astype(np.float32)
        image += 0.45 * grid_lines * lungs * (yy < 0.42)
    if "Pleural_Thickening" in present:  # bright rim on the lateral borders
        rim = (np.abs(xx - 0.5) > 0.40 - 0.05) & (np.abs(xx - 0.5) < 0.44) & (np.abs(yy - 0.5) < 0.25)
        image += 0.40 * rim
    if "Hernia" in present:  # round opacity below the heart
        image += 0.40 * _disc(yy, xx, 0.84 + jitter(), 0.50, 0.05, 0.07)

    image *= rng.uniform(0.9, 1.1)  # exposure
    image += rng.normal(0.0, 0.03, size=image.shape).astype(np.float32)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def sample_findings(
    rng: np.random.Generator, label_names: Sequence[str] = FINDINGS, prevalence: float = 0.2
) -> tuple[str, ...]:
    """Independent Bernoulli draw of each finding (so labels co-occur as in ChestX-ray14)."""
    return tuple(name for name in label_names if rng.random() < prevalence)


def generate_cases(
    count: int,
    size: int = 128,
    seed: int = 0,
    label_names: Sequence[str] = FINDINGS,
    prevalence: float = 0.2,
) -> list[SyntheticCase]:
    """``count`` synthetic radiographs with independently drawn findings."""
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        findings = sample_findings(rng, label_names, prevalence)
        cases.append(SyntheticCase(render_case(findings, size, rng), findings))
    return cases


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 greyscale image."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def write_chestxray14_layout(
    root: Path,
    count: int,
    size: int = 128,
    seed: int = 0,
    label_names: Sequence[str] = FINDINGS,
    prevalence: float = 0.2,
    images_per_patient: int = 3,
) -> Path:
    """Write ``count`` synthetic images as ChestX-ray14 (images/NNNNNNNN_NNN.png + Data_Entry_2017.csv).

    Patients get up to ``images_per_patient`` follow-up images each, so a patient-level split is
    meaningful. Returns ``root``.
    """
    root = Path(root)
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    patient, follow_up = 1, 0
    for _ in range(count):
        findings = sample_findings(rng, label_names, prevalence)
        pixels = render_case(findings, size, rng)
        name = f"{patient:08d}_{follow_up:03d}.png"
        (images_dir / name).write_bytes(encode_png(pixels))
        rows.append(
            {
                "Image Index": name,
                "Finding Labels": LABEL_SEPARATOR.join(findings) if findings else NO_FINDING,
                "Follow-up #": follow_up,
                "Patient ID": patient,
                "Patient Age": int(rng.integers(18, 90)),
                "Patient Gender": "M" if rng.random() < 0.5 else "F",
                "View Position": "PA",
                "OriginalImage[Width": size,
                "Height]": size,
                "OriginalImagePixelSpacing[x": 0.143,
                "y]": 0.143,
            }
        )
        follow_up += 1
        if follow_up >= rng.integers(1, images_per_patient + 1):
            patient, follow_up = patient + 1, 0
    with open(root / "Data_Entry_2017.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CHESTXRAY14_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    _write_synthetic_marker(root, {"generator": "xraymodel.synthetic.write_chestxray14_layout", "images": count, "seed": seed})
    return root


def _write_synthetic_marker(root: Path, facts: dict) -> None:
    """The marker the model card reads to flag a synthetic training or evaluation set."""
    import json

    from xraymodel.model_card import SYNTHETIC_MARKER

    (Path(root) / SYNTHETIC_MARKER).write_text(json.dumps(facts) + "\n")
