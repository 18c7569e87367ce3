"""Labelled image manifests: ChestX-ray14 CSV layout, folder-per-class layout, patient-level splits.

A manifest (LabelledImages) is file paths + label vectors + patient IDs; no pixels are read here.
Two layouts are understood:

* ChestX-ray14: ``Data_Entry_2017.csv`` (columns "Image Index", "Finding Labels", "Patient ID";
  labels split on "|", "No Finding" = all zeros) and the images anywhere below the root
  (``images/`` or the Kaggle ``images_001/images/`` folders).
* Folder per class: ``ROOT/<Finding>/<image>``; ``ROOT/No Finding/`` holds negatives. The patient
  ID is the file name up to its first underscore (ChestX-ray14 naming, ``00000013_005.png``), or
  the whole stem when there is none.

Splits are by patient: no patient has images in two splits. Every problem is an InputDataError
naming the CSV row or file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xraymodel.errors import InputDataError
from xraymodel.findings import FINDINGS, NO_FINDING, UnknownFindingError, multi_hot, parse_finding_labels

CHESTXRAY14_CSV = "Data_Entry_2017.csv"
REQUIRED_CSV_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
LAYOUT_CHESTXRAY14 = "chestxray14"
LAYOUT_FOLDERS = "folders"
LAYOUTS = (LAYOUT_CHESTXRAY14, LAYOUT_FOLDERS)
SPLIT_NAMES = ("train", "val", "test")
MANIFEST_COLUMNS = ("path", "patient_id", "labels")


@dataclass(frozen=True)
class LabelledImages:
    """Image files with their label vectors (float32 [n, k] in ``label_names`` order)."""

    root: Path
    paths: tuple[str, ...]  # absolute paths
    labels: np.ndarray
    patient_ids: tuple[str, ...]
    label_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Sequence[int]) -> LabelledImages:
        index = list(indices)
        return LabelledImages(
            self.root,
            tuple(self.paths[i] for i in index),
            self.labels[index] if index else self.labels[:0],
            tuple(self.patient_ids[i] for i in index),
            self.label_names,
        )

    def relative_paths(self) -> list[str]:
        return [os.path.relpath(path, self.root) for path in self.paths]

    def positives_per_label(self) -> dict[str, int]:
        return {name: int(self.labels[:, i].sum()) for i, name in enumerate(self.label_names)}


def detect_layout(root: Path) -> str:
    """ChestX-ray14 when the root holds Data_Entry_2017.csv, else folder per class."""
    return LAYOUT_CHESTXRAY14 if (Path(root) / CHESTXRAY14_CSV).is_file() else LAYOUT_FOLDERS


def load_dataset(
    root: str | Path,
    label_names: Sequence[str] = FINDINGS,
    layout: str = "auto",
    single_label: bool = False,
) -> LabelledImages:
    """Read a manifest in either layout (``layout="auto"`` detects it)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise InputDataError(f"{root}: data directory not found")
    chosen = detect_layout(root) if layout == "auto" else layout
    if chosen == LAYOUT_CHESTXRAY14:
        return load_chestxray14(root, label_names, single_label=single_label)
    if chosen == LAYOUT_FOLDERS:
        return load_class_folders(root, label_names, single_label=single_label)
    raise InputDataError(f"unknown data layout {layout!r}; expected auto or one of {LAYOUTS}")


def _index_images(root: Path) -> dict[str, str]:
    """File name -> absolute path for every image file below root (names must be unique)."""
    index: dict[str, str] = {}
    for directory, _, files in os.walk(root):
        for name in files:
            if name.lower().endswith(IMAGE_SUFFIXES):
                if name in index:
                    raise InputDataError(f"{root}: image name {name} occurs twice ({index[name]}, {directory})")
                index[name] = os.path.join(directory, name)
    return index


def load_chestxray14(
    root: Path, label_names: Sequence[str] = FINDINGS, csv_name: str = CHESTXRAY14_CSV, single_label: bool = False
) -> LabelledImages:
    """ChestX-ray14 manifest from its CSV; errors name the CSV row (1 = header)."""
    root = Path(root).resolve()
    csv_path = root / csv_name
    if not csv_path.is_file():
        raise InputDataError(f"{csv_path}: label CSV not found")
    image_index = _index_images(root)
    paths, labels, patients = [], [], []
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_CSV_COLUMNS if c not in columns]
        if missing:
            raise InputDataError(f"{csv_path}: missing column(s) {missing}; found {columns}")
        for row_number, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            where = f"{csv_path} row {row_number}"
            name, patient = row["Image Index"], row["Patient ID"]
            if not name or not patient:
                raise InputDataError(f"{where}: empty 'Image Index' or 'Patient ID'")
            try:
                findings = parse_finding_labels(row["Finding Labels"], label_names)
            except UnknownFindingError as exc:
                raise InputDataError(f"{where} ({name}): {exc}") from None
            if single_label and len(findings) != 1:
                raise InputDataError(
                    f"{where} ({name}): single-label mode needs exactly one of {list(label_names)}, got {findings}"
                )
            if name not in image_index:
                raise InputDataError(f"{where}: image file {name} not found below {root}")
            paths.append(image_index[name])
            labels.append(multi_hot(findings, label_names))
            patients.append(patient)
    if not paths:
        raise InputDataError(f"{csv_path}: no rows")
    return LabelledImages(root, tuple(paths), np.asarray(labels, np.float32), tuple(patients), tuple(label_names))


def patient_id_from_filename(name: str) -> str:
    """ChestX-ray14 naming: '00000013_005.png' -> '00000013'; no underscore -> the stem."""
    stem = Path(name).stem
    return stem.split("_", 1)[0] if "_" in stem else stem


def load_class_folders(root: Path, label_names: Sequence[str] = FINDINGS, single_label: bool = False) -> LabelledImages:
    """Folder-per-class manifest: each sub-folder is a finding name (or "No Finding")."""
    root = Path(root).resolve()
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise InputDataError(f"{root}: no class folders (and no {CHESTXRAY14_CSV})")
    paths, labels, patients = [], [], []
    for class_dir in class_dirs:
        try:
            findings = parse_finding_labels(class_dir.name, label_names)
        except UnknownFindingError as exc:
            raise InputDataError(f"{class_dir}: folder name is not a finding: {exc}") from None
        if single_label and len(findings) != 1:
            raise InputDataError(f"{class_dir}: not one of the single-label classes {list(label_names)}")
        for path in sorted(class_dir.rglob("*")):
            if path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES):
                paths.append(str(path))
                labels.append(multi_hot(findings, label_names))
                patients.append(patient_id_from_filename(path.name))
    if not paths:
        raise InputDataError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
    return LabelledImages(root, tuple(paths), np.asarray(labels, np.float32), tuple(patients), tuple(label_names))


def split_by_patient(
    data: LabelledImages, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> dict[str, LabelledImages]:
    """Train/val/test subsets with every patient's images in exactly one of them.

    Patients are shuffled with ``seed`` and assigned in order until each split holds its share of
    images; train gets the rest. Deterministic for a given manifest and seed.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise InputDataError(f"bad split fractions val={val_fraction} test={test_fraction}")
    patients = sorted(set(data.patient_ids))
    rng = np.random.default_rng(seed)
    rng.shuffle(patients)
    by_patient: dict[str, list[int]] = {}
    for index, patient in enumerate(data.patient_ids):
        by_patient.setdefault(patient, []).append(index)
    targets = {"test": test_fraction * len(data), "val": val_fraction * len(data)}
    assigned: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    order = iter(patients)
    for split in ("test", "val"):
        while len(assigned[split]) < targets[split] - 1e-9:
            patient = next(order, None)
            if patient is None:
                break
            assigned[split].extend(by_patient[patient])
    for patient in order:
        assigned["train"].extend(by_patient[patient])
    if not assigned["train"]:
        raise InputDataError(f"{data.root}: too few patients ({len(patients)}) for a train split")
    return {name: data.subset(sorted(indices)) for name, indices in assigned.items()}


def write_manifest(data: LabelledImages, path: Path) -> None:
    """CSV of (path relative to the data root, patient ID, '|'-joined labels) for one split."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_COLUMNS)
        for relative, patient, vector in zip(data.relative_paths(), data.patient_ids, data.labels):
            names = [name for name, value in zip(data.label_names, vector) if value > 0.5]
            writer.writerow([relative, patient, "|".join(names) if names else NO_FINDING])


def read_manifest(path: Path, root: Path, label_names: Sequence[str]) -> LabelledImages:
    """Inverse of write_manifest (paths resolved against ``root``)."""
    root = Path(root).resolve()
    paths, labels, patients = [], [], []
    with open(path, newline="") as handle:
        for row_number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                findings = parse_finding_labels(row["labels"], label_names)
            except (UnknownFindingError, KeyError) as exc:
                raise InputDataError(f"{path} row {row_number}: {exc}") from None
            full = root / row["path"]
            if not full.is_file():
                raise InputDataError(f"{path} row {row_number}: image {full} not found")
            paths.append(str(full))
            labels.append(multi_hot(findings, label_names))
            patients.append(row["patient_id"])
    if not paths:
        raise InputDataError(f"{path}: empty manifest")
    return LabelledImages(root, tuple(paths), np.asarray(labels, np.float32), tuple(patients), tuple(label_names))


def fingerprint_and_check(data: LabelledImages, split_of: dict[str, str] | None = None) -> str:
    """SHA-256 over every image's bytes, relative path, labels (and split): the data fingerprint.

    Each file is also checked to be a decodable image (PNG/JPEG header and checksums via Pillow,
    DICOM via pydicom) so a corrupt file fails here, by name, before anything is written.
    """
    from PIL import Image, UnidentifiedImageError

    from xraymodel.dicom_input import is_dicom_file, read_dicom_pixels

    digest = hashlib.sha256()
    digest.update("|".join(data.label_names).encode())
    for relative, path, vector in sorted(zip(data.relative_paths(), data.paths, data.labels.tolist())):
        try:
            content = Path(path).read_bytes()
        except OSError as exc:
            raise InputDataError(f"{path}: cannot read ({exc})") from exc
        if not content:
            raise InputDataError(f"{path}: empty file")
        if is_dicom_file(path):
            try:
                read_dicom_pixels(content)
            except InputDataError as exc:
                raise InputDataError(str(exc).replace("<bytes>", str(path), 1)) from None
        else:
            try:
                with Image.open(io.BytesIO(content)) as image:
                    if image.format not in ("PNG", "JPEG"):
                        raise InputDataError(f"{path}: {image.format} image; expected PNG or JPEG")
                    image.verify()
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                raise InputDataError(f"{path}: not a valid PNG/JPEG image ({exc})") from exc
        digest.update(relative.encode())
        digest.update(hashlib.sha256(content).digest())
        digest.update(np.asarray(vector, np.float32).tobytes())
        if split_of is not None:
            digest.update(split_of.get(path, "").encode())
    return "sha256:" + digest.hexdigest()
