"""Labelled image manifests: ChestX-ray14 CSV layout, folder-per-class layout, patient-level splits.

A manifest (LabelledImages) is file paths + label vectors + patient IDs; no pixels are read here.
Two layouts are understood:

* ChestX-ray14: ``Data_Entry_2017.csv`` (columns "Image Index", "Finding Labels", "Patient ID";
  labels split on "|", "No Finding" = all zeros) and the images anywhere below the root
  (``images/`` or the Kaggle ``images_001/images/`` folders).
* Folder per class: ``ROOT/<Finding>/<image>``; ``ROOT/No Finding/`` holds negatives. The patient
  ID comes from ``ROOT/patients.csv`` (columns "Image Index", "Patient ID") when present, else
  from the file name up to its first underscore (ChestX-ray14 naming, ``00000013_005.png``). A
  file name without an underscore and absent from patients.csv cannot name its patient: that is an
  error, never a silent one-image-per-patient split (``IM-0115-0001.jpeg`` would leak patients).

Splits are by patient: no patient has images in two splits. They are label-stratified at patient
level (rare findings get their share of positives in every split), or follow the official
ChestX-ray14 lists (``train_val_list.txt`` / ``test_list.txt`` in the root) when present. Every
problem is an InputDataError naming the CSV row or file.
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
PATIENTS_CSV = "patients.csv"
OFFICIAL_TRAIN_VAL_LIST = "train_val_list.txt"
OFFICIAL_TEST_LIST = "test_list.txt"
SPLIT_STRATIFIED = "label-stratified by patient"
SPLIT_OFFICIAL = "official ChestX-ray14 lists (test_list.txt; val stratified by patient from train_val_list.txt)"
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


def patient_id_from_filename(name: str) -> str | None:
    """ChestX-ray14 naming: '00000013_005.png' -> '00000013'; None when the name has no underscore."""
    stem = Path(name).stem
    return stem.split("_", 1)[0] if "_" in stem and stem.split("_", 1)[0] else None


def _read_patients_csv(root: Path) -> dict[str, str]:
    """File name -> patient ID from ROOT/patients.csv (empty when the file is absent)."""
    path = root / PATIENTS_CSV
    if not path.is_file():
        return {}
    table: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if "Image Index" not in columns or "Patient ID" not in columns:
            raise InputDataError(f"{path}: needs columns 'Image Index' and 'Patient ID'; found {columns}")
        for row_number, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if not row["Image Index"] or not row["Patient ID"]:
                raise InputDataError(f"{path} row {row_number}: empty 'Image Index' or 'Patient ID'")
            table[row["Image Index"]] = row["Patient ID"]
    return table


def load_class_folders(root: Path, label_names: Sequence[str] = FINDINGS, single_label: bool = False) -> LabelledImages:
    """Folder-per-class manifest: each sub-folder is a finding name (or "No Finding")."""
    root = Path(root).resolve()
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise InputDataError(f"{root}: no class folders (and no {CHESTXRAY14_CSV})")
    named = _read_patients_csv(root)
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
                patient = named.get(path.name) or patient_id_from_filename(path.name)
                if patient is None:
                    raise InputDataError(
                        f"{path}: cannot tell which patient this image belongs to (no '<patient>_' prefix in the "
                        f"file name). List every image in {root / PATIENTS_CSV} (columns 'Image Index', "
                        "'Patient ID'): a per-image split would put one patient's images in train and test"
                    )
                paths.append(str(path))
                labels.append(multi_hot(findings, label_names))
                patients.append(patient)
    if not paths:
        raise InputDataError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
    return LabelledImages(root, tuple(paths), np.asarray(labels, np.float32), tuple(patients), tuple(label_names))


def _patient_table(data: LabelledImages) -> tuple[list[str], dict[str, list[int]]]:
    by_patient: dict[str, list[int]] = {}
    for index, patient in enumerate(data.patient_ids):
        by_patient.setdefault(patient, []).append(index)
    return sorted(by_patient), by_patient


def _stratified_assignment(
    patients: list[str],
    by_patient: dict[str, list[int]],
    labels: np.ndarray,
    fractions: dict[str, float],
    rng: np.random.Generator,
) -> dict[str, list[int]]:
    """Iterative stratification (Sechidis et al. 2011) with patients as the unit.

    Patients are taken rarest finding first (shuffled with ``rng`` within equal rarity); each goes
    to the split whose quotas (its fraction of each finding's positives and of the images) are
    least met, summed over the patient's findings and its images, each weighted by its rarity
    (ties: the larger split). Patients without findings fill the splits' remaining image quotas.
    """
    names = list(fractions)
    positives = labels > 0.5
    counts = {p: positives[by_patient[p]].sum(axis=0) for p in patients}
    totals = positives.sum(axis=0).astype(np.float64)
    need_labels = {name: fractions[name] * totals for name in names}
    images = float(labels.shape[0])
    need_images = {name: fractions[name] * images for name in names}
    order = list(patients)
    rng.shuffle(order)

    def rarity(patient: str) -> float:
        present = counts[patient] > 0
        return float(totals[present].min()) if present.any() else np.inf

    order.sort(key=rarity)  # stable: the shuffle breaks ties
    assigned: dict[str, list[int]] = {name: [] for name in names}
    for patient in order:
        present = counts[patient] > 0
        rarest = float(totals[present].min()) if present.any() else images

        def unmet(name: str, present: np.ndarray = present, rarest: float = rarest) -> tuple[float, float]:
            # the part of this split's quota still unmet, for each of the patient's findings and its
            # images, weighted by rarity (the patient's rarest finding counts 1, a 10x commoner one 0.1)
            quota = max(fractions[name], 1e-12)
            share = need_labels[name][present] / (quota * totals[present])
            labels_unmet = float(np.sum(share * rarest / totals[present]))
            return labels_unmet + need_images[name] / (quota * images) * rarest / images, fractions[name]

        chosen = max(names, key=unmet)
        assigned[chosen].extend(by_patient[patient])
        need_labels[chosen] = need_labels[chosen] - counts[patient]
        need_images[chosen] -= len(by_patient[patient])
    return assigned


def split_by_patient(
    data: LabelledImages,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    stratify: bool = True,
) -> dict[str, LabelledImages]:
    """Train/val/test subsets with every patient's images in exactly one of them.

    ``stratify`` (default): label-stratified patient assignment (see _stratified_assignment), so a
    finding with 20 positives does not end up with 0 or 8 of them in test by chance. Otherwise
    patients are shuffled with ``seed`` and assigned in order until each split holds its share of
    images; train gets the rest. Deterministic for a given manifest and seed.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise InputDataError(f"bad split fractions val={val_fraction} test={test_fraction}")
    patients, by_patient = _patient_table(data)
    rng = np.random.default_rng(seed)
    if stratify:
        fractions = {"train": 1.0 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
        assigned = _stratified_assignment(patients, by_patient, data.labels, fractions, rng)
    else:
        rng.shuffle(patients)
        targets = {"test": test_fraction * len(data), "val": val_fraction * len(data)}
        assigned = {name: [] for name in SPLIT_NAMES}
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
    return {name: data.subset(sorted(assigned[name])) for name in SPLIT_NAMES}


def has_official_lists(root: str | Path) -> bool:
    root = Path(root)
    return (root / OFFICIAL_TRAIN_VAL_LIST).is_file() and (root / OFFICIAL_TEST_LIST).is_file()


def _read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def split_official_lists(data: LabelledImages, val_fraction: float = 0.1, seed: int = 0) -> dict[str, LabelledImages]:
    """The published ChestX-ray14 split: test = test_list.txt; val carved from train_val_list.txt.

    Val is a label-stratified patient split of the train_val images holding ``val_fraction`` of the
    whole manifest. Every image must be in exactly one list and no patient in both (the published
    lists are patient-disjoint); an image in a list but not in the manifest is ignored (a partial
    download).
    """
    root = Path(data.root)
    train_val, test = _read_list(root / OFFICIAL_TRAIN_VAL_LIST), _read_list(root / OFFICIAL_TEST_LIST)
    both = train_val & test
    if both:
        raise InputDataError(f"{root}: {len(both)} image(s) in both official lists, e.g. {sorted(both)[0]}")
    names = [Path(path).name for path in data.paths]
    unlisted = [name for name in names if name not in train_val and name not in test]
    if unlisted:
        raise InputDataError(
            f"{root}: {len(unlisted)} image(s) in neither {OFFICIAL_TRAIN_VAL_LIST} nor {OFFICIAL_TEST_LIST}, "
            f"e.g. {unlisted[0]}"
        )
    test_index = [i for i, name in enumerate(names) if name in test]
    rest_index = [i for i, name in enumerate(names) if name not in test]
    shared = {data.patient_ids[i] for i in test_index} & {data.patient_ids[i] for i in rest_index}
    if shared:
        raise InputDataError(f"{root}: patient {sorted(shared)[0]} has images in both official lists")
    if not rest_index:
        raise InputDataError(f"{root}: no image of the manifest is in {OFFICIAL_TRAIN_VAL_LIST}")
    rest = data.subset(rest_index)
    share = min(val_fraction * len(data) / len(rest), 0.9)
    patients, by_patient = _patient_table(rest)
    assigned = _stratified_assignment(
        patients, by_patient, rest.labels, {"train": 1.0 - share, "val": share}, np.random.default_rng(seed)
    )
    return {
        "train": rest.subset(sorted(assigned["train"])),
        "val": rest.subset(sorted(assigned["val"])),
        "test": data.subset(test_index),
    }


def split_data(
    data: LabelledImages, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> tuple[dict[str, LabelledImages], str]:
    """The official lists when the root holds them, else the label-stratified patient split; and which."""
    if has_official_lists(data.root):
        return split_official_lists(data, val_fraction, seed), SPLIT_OFFICIAL
    return split_by_patient(data, val_fraction, test_fraction, seed), SPLIT_STRATIFIED


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
