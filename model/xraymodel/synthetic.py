"""Synthetic chest-X-ray-like images for tests and demos, with real ChestX-ray14 label structure.

Each image is a grey frontal "chest": a bright thorax, two darker lung fields, a heart shadow, rib
stripes and noise. Each of the 14 findings plants its own pattern at its own place (a small disc for
Nodule, a larger one for Mass, a dark apex for Pneumothorax, a wider heart for Cardiomegaly, ...). The
patterns are caricatures, not radiology, and they are deliberately subtle (low contrast, variable size
and strength, under noise), so a model does not saturate near AUROC 1.

What makes the data behave like a real collection:

* Patients, not images. ``PatientAnatomy`` is drawn once per patient: position, lung and thorax size,
  heart size, rib pattern, exposure, and where and how strongly each finding shows. Every follow-up image
  of the patient reuses it (with small per-image jitter), so images of one patient look alike and carry
  the same lesions, as in a hospital archive. An image-level split therefore leaks: a test image has
  near-twins in train (``tests/model/test_synthetic_realism.py`` measures it).
* Real label statistics (``source=`` the rows of the real ChestX-ray14 label file, see ``nih_labels``):
  whole real patients are sampled with their real per-image finding labels, follow-ups, age, sex and
  view, so prevalences, co-occurrences and the persistence of findings across follow-ups are the real
  ones. ``min_prevalence`` enriches rare findings at small scale (a 600-image CI set would hold one
  Hernia otherwise) by adding whole real patients who have them; the enrichment is recorded in
  ``synthetic_provenance.json``.
* View: AP magnifies the heart (about 1.2x, the heart is far from the detector) and adds scapular
  shadows; AP images are noisier (portable units). Sex: breast shadows over the lower lung fields
  (F). Age: fainter ribs in older patients.
* Site: a synthetic column (``Site``: A, B or C, per patient; NOT in the real file) with its own
  exposure, gamma and noise, so subgroup analyses have a site axis.
* Label noise, as in text-mined labels: a labelled finding is sometimes not drawn, and an unlabelled one
  is sometimes drawn (``LABEL_MISS``, ``LABEL_SPURIOUS``).

``write_chestxray14_layout`` writes the files in the real ChestX-ray14 layout (images/ plus
Data_Entry_2017.csv with its real column names and a synthetic Site column), so the loaders are
exercised end to end. Without ``source`` the findings are independent Bernoulli draws (demos, tests that
need no label file).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
SITE_COLUMN = "Site"  # synthetic: not a column of the real file
PROVENANCE_FILE = "synthetic_provenance.json"

# Difficulty: how visible the findings are, how noisy the images, how wrong the labels.
LESION_SCALE = 0.9  # finding amplitudes relative to the old caricatures; with the variable strength, noise and
# label noise the CI model scores mean AUROC ~0.87 (0.38: ~0.61, 0.75: ~0.83; the old generator ~0.97)
NOISE = 0.045  # per-pixel Gaussian noise (0..1 units), scaled per site and view
LABEL_MISS = 0.10  # P(a labelled finding is not drawn)
LABEL_SPURIOUS = 0.004  # P(an unlabelled finding is drawn), per finding and image
AP_HEART_MAGNIFICATION = 1.2
SITES = {  # synthetic acquisition sites: exposure, gamma, noise factor
    "A": (1.00, 1.00, 1.00),
    "B": (1.07, 0.85, 1.25),
    "C": (0.93, 1.15, 0.85),
}


@dataclass(frozen=True)
class SyntheticCase:
    """One generated image with its ground truth."""

    pixels: np.ndarray  # uint8 [size, size]
    findings: tuple[str, ...]


@dataclass(frozen=True)
class PatientAnatomy:
    """Everything that stays the same across one patient's images."""

    dy: float
    dx: float
    lung_scale: float
    lung_aspect: float
    thorax_width: float
    heart_width: float
    rib_phase: float
    rib_frequency: float
    exposure: float
    sex: str = "M"
    age: int = 50
    site: str = "A"
    lesion_offsets: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    lesion_strength: Mapping[str, float] = field(default_factory=dict)


def draw_anatomy(rng: np.random.Generator, sex: str = "M", age: int = 50, site: str = "A") -> PatientAnatomy:
    return PatientAnatomy(
        dy=float(rng.uniform(-0.04, 0.04)),
        dx=float(rng.uniform(-0.04, 0.04)),
        lung_scale=float(rng.uniform(0.88, 1.08)),
        lung_aspect=float(rng.uniform(0.9, 1.1)),
        thorax_width=float(rng.uniform(0.38, 0.46)),
        heart_width=float(rng.uniform(0.09, 0.115)),
        rib_phase=float(rng.uniform(0, 2 * np.pi)),
        rib_frequency=float(rng.uniform(8.0, 10.0)),
        exposure=float(rng.uniform(0.88, 1.12)),
        sex=sex,
        age=int(age),
        site=site,
        lesion_offsets={name: (float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.04, 0.04))) for name in FINDINGS},
        lesion_strength={name: float(rng.uniform(0.6, 1.4)) for name in FINDINGS},
    )


def _disc(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """Soft-edged filled ellipse mask (1 inside, 0 outside) in normalised coordinates."""
    distance = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    return np.clip((1.0 - distance) * 4.0, 0.0, 1.0)


def render_case(
    findings: Sequence[str],
    size: int,
    rng: np.random.Generator,
    anatomy: PatientAnatomy | None = None,
    view: str = "PA",
) -> np.ndarray:
    """Render one synthetic radiograph (uint8 [size, size]) showing the given findings.

    ``findings`` are what is drawn (label noise is applied by the caller, ``drawn_findings``).
    Without ``anatomy`` a new patient is drawn from ``rng``.
    """
    anatomy = anatomy or draw_anatomy(rng)
    exposure_site, gamma, noise_site = SITES.get(anatomy.site, SITES["A"])
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    jy, jx = rng.uniform(-0.01, 0.01, size=2)  # positioning differs a little between follow-ups
    yy, xx = yy - anatomy.dy - jy, xx - anatomy.dx - jx
    present = set(findings)
    lung_scale = anatomy.lung_scale * (1.08 if "Emphysema" in present else 1.0)
    ap = view.upper() == "AP"

    def amplitude(name: str, base: float) -> float:
        return base * LESION_SCALE * anatomy.lesion_strength.get(name, 1.0)

    def where(name: str) -> tuple[float, float]:
        oy, ox = anatomy.lesion_offsets.get(name, (0.0, 0.0))
        return oy + float(rng.uniform(-0.008, 0.008)), ox + float(rng.uniform(-0.008, 0.008))

    image = np.full((size, size), 0.06, dtype=np.float32)
    image += 0.50 * _disc(yy, xx, 0.55, 0.50, 0.48, anatomy.thorax_width)  # thorax
    ry, rx = 0.30 * lung_scale * anatomy.lung_aspect, 0.13 * lung_scale
    right_lung = _disc(yy, xx, 0.50, 0.31, ry, rx)
    left_lung = _disc(yy, xx, 0.50, 0.69, ry, rx)
    lungs = np.maximum(right_lung, left_lung)
    image -= (0.30 + amplitude("Emphysema", 0.25)) * lungs if "Emphysema" in present else 0.30 * lungs
    rib_strength = 0.05 * float(np.clip(1.25 - anatomy.age / 120.0, 0.5, 1.2))
    ribs = rib_strength * (np.sin(yy * 2 * np.pi * anatomy.rib_frequency + anatomy.rib_phase + 1.3 * np.abs(xx - 0.5) * 8) > 0.4)
    image += ribs * lungs
    heart_width = anatomy.heart_width * (AP_HEART_MAGNIFICATION if ap else 1.0)
    if "Cardiomegaly" in present:
        heart_width *= 1.0 + 0.7 * LESION_SCALE * anatomy.lesion_strength["Cardiomegaly"]
    image += 0.32 * _disc(yy, xx, 0.62, 0.53, 0.14, heart_width)
    if anatomy.sex.upper().startswith("F"):  # breast shadows over the lower lung fields
        image += 0.07 * (_disc(yy, xx, 0.74, 0.27, 0.10, 0.13) + _disc(yy, xx, 0.74, 0.73, 0.10, 0.13))
    if ap:  # scapulae projected over the upper lateral lung fields
        image += 0.06 * (_disc(yy, xx, 0.30, 0.17, 0.12, 0.06) + _disc(yy, xx, 0.30, 0.83, 0.12, 0.06))

    if "Atelectasis" in present:  # plate-like band, right lower lung
        oy, ox = where("Atelectasis")
        band = (np.abs(yy - (0.66 + oy)) < 0.035) & (np.abs(xx - (0.31 + ox)) < 0.11)
        image += amplitude("Atelectasis", 0.50) * band
    if "Effusion" in present:  # fluid at both lung bases
        oy, _ = where("Effusion")
        image += amplitude("Effusion", 0.50) * lungs * (yy > 0.68 + oy)
    if "Infiltration" in present:  # patchy texture, left mid lung
        oy, ox = where("Infiltration")
        patches = rng.random((size // 8 + 1, size // 8 + 1)) > 0.5
        texture = np.kron(patches, np.ones((8, 8)))[:size, :size]
        image += amplitude("Infiltration", 0.50) * texture * _disc(yy, xx, 0.50 + oy, 0.70 + ox, 0.12, 0.09)
    if "Mass" in present:  # larger disc, left upper lung
        oy, ox = where("Mass")
        image += amplitude("Mass", 0.50) * _disc(yy, xx, 0.36 + oy, 0.69 + ox, 0.075, 0.075)
    if "Nodule" in present:  # small disc, right upper lung
        oy, ox = where("Nodule")
        image += amplitude("Nodule", 0.60) * _disc(yy, xx, 0.34 + oy, 0.29 + ox, 0.04, 0.04)
    if "Pneumonia" in present:  # diffuse cloud, right mid lung
        oy, ox = where("Pneumonia")
        cloud = np.exp(-(((yy - 0.50 - oy) / 0.09) ** 2 + ((xx - 0.31 - ox) / 0.08) ** 2))
        image += amplitude("Pneumonia", 0.50) * cloud
    if "Pneumothorax" in present:  # darker apex without lung markings, left
        oy, ox = where("Pneumothorax")
        apex = _disc(yy, xx, 0.30 + oy, 0.72 + ox, 0.09, 0.08)
        image -= amplitude("Pneumothorax", 0.8) * apex * image
    if "Consolidation" in present:  # dense opacity, left lower lung
        oy, ox = where("Consolidation")
        image += amplitude("Consolidation", 0.45) * _disc(yy, xx, 0.66 + oy, 0.70 + ox, 0.06, 0.08)
    if "Edema" in present:  # bilateral perihilar "butterfly"
        oy, _ = where("Edema")
        image += amplitude("Edema", 0.40) * (_disc(yy, xx, 0.47 + oy, 0.40, 0.07, 0.06) + _disc(yy, xx, 0.47 + oy, 0.60, 0.07, 0.06))
    if "Fibrosis" in present:  # reticular grid in both upper zones
        grid_lines = ((np.sin(yy * 2 * np.pi * 14) > 0.6) | (np.sin(xx * 2 * np.pi * 14) > 0.6)).astype(np.float32)
        image += amplitude("Fibrosis", 0.45) * grid_lines * lungs * (yy < 0.42)
    if "Pleural_Thickening" in present:  # bright rim on the lateral borders
        rim = (np.abs(xx - 0.5) > 0.35) & (np.abs(xx - 0.5) < 0.44) & (np.abs(yy - 0.5) < 0.25)
        image += amplitude("Pleural_Thickening", 0.45) * rim
    if "Hernia" in present:  # round opacity below the heart
        oy, ox = where("Hernia")
        image += amplitude("Hernia", 0.50) * _disc(yy, xx, 0.84 + oy, 0.50 + ox, 0.05, 0.07)

    image *= anatomy.exposure * exposure_site * float(rng.uniform(0.97, 1.03))
    image = np.clip(image, 0.0, 1.0) ** gamma
    noise = NOISE * noise_site * (1.2 if ap else 1.0)
    image += rng.normal(0.0, noise, size=image.shape).astype(np.float32)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def drawn_findings(labelled: Sequence[str], rng: np.random.Generator, label_names: Sequence[str] = FINDINGS) -> tuple[str, ...]:
    """What the image shows, given its labels: text-mined labels miss and invent findings."""
    shown = [name for name in labelled if rng.random() >= LABEL_MISS]
    shown += [name for name in label_names if name not in labelled and rng.random() < LABEL_SPURIOUS]
    return tuple(shown)


def sample_findings(
    rng: np.random.Generator, label_names: Sequence[str] = FINDINGS, prevalence: float = 0.2
) -> tuple[str, ...]:
    """Independent Bernoulli draw of each finding."""
    return tuple(name for name in label_names if rng.random() < prevalence)


def generate_cases(
    count: int,
    size: int = 128,
    seed: int = 0,
    label_names: Sequence[str] = FINDINGS,
    prevalence: float = 0.2,
) -> list[SyntheticCase]:
    """``count`` synthetic radiographs of ``count`` patients with independently drawn findings (no label noise)."""
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


# ------------------------------------------------------------------ real label statistics
def _labels_of(row: Mapping[str, str], label_names: Sequence[str]) -> tuple[str, ...]:
    return tuple(name for name in row["Finding Labels"].split(LABEL_SEPARATOR) if name in label_names)


def group_patients(rows: Sequence[Mapping[str, str]]) -> list[list[Mapping[str, str]]]:
    """Rows of the real label file grouped by patient, each patient's images in follow-up order."""
    patients: dict[str, list[Mapping[str, str]]] = {}
    for row in rows:
        patients.setdefault(row["Patient ID"], []).append(row)
    return [sorted(images, key=lambda r: int(r["Follow-up #"] or 0)) for images in patients.values()]


def label_statistics(
    patients: Sequence[Sequence[Mapping[str, str]]], label_names: Sequence[str] = FINDINGS
) -> dict:
    """Prevalences, follow-ups, view, sex and age of a set of real (or sampled) patients."""
    images = [row for patient in patients for row in patient]
    n = max(len(images), 1)
    counts = {name: 0 for name in label_names}
    for row in images:
        for name in _labels_of(row, label_names):
            counts[name] += 1
    persistent, pairs = 0, 0  # P(finding on the next follow-up | finding on this one)
    for patient in patients:
        for before, after in zip(patient, patient[1:]):
            labels_after = set(_labels_of(after, label_names))
            for name in _labels_of(before, label_names):
                pairs += 1
                persistent += name in labels_after
    ages = np.array([float(row["Patient Age"] or 0) for row in images]) if images else np.zeros(1)
    return {
        "images": len(images),
        "patients": len(patients),
        "images_per_patient": round(len(images) / max(len(patients), 1), 3),
        "prevalence": {name: round(counts[name] / n, 5) for name in label_names},
        "no_finding": round(sum(not _labels_of(r, label_names) for r in images) / n, 4),
        "ap_fraction": round(sum(r["View Position"] == "AP" for r in images) / n, 4),
        "female_fraction": round(sum(r["Patient Gender"] == "F" for r in images) / n, 4),
        "age_median": float(np.median(ages)),
        "finding_persistence": round(persistent / max(pairs, 1), 4),
    }


def _window(patient: Sequence[Mapping[str, str]], start: int, length: int) -> list[Mapping[str, str]]:
    start = max(0, min(start, len(patient) - length))
    return list(patient[start : start + length])


def sample_real_patients(
    patients: Sequence[Sequence[Mapping[str, str]]],
    count: int,
    rng: np.random.Generator,
    label_names: Sequence[str] = FINDINGS,
    max_images_per_patient: int = 4,
    min_prevalence: float = 0.0,
) -> list[list[Mapping[str, str]]]:
    """Whole real patients (at most ``max_images_per_patient`` consecutive follow-ups each) until ``count`` images.

    With ``min_prevalence`` > 0, patients who have a finding are added first, rarest finding first, until
    each finding is on at least that share of the ``count`` images (as far as ``count`` allows: the findings
    enriched last may fall a little short); the rest are drawn at random, so the common findings keep
    their real co-occurrence.
    """
    chosen: list[list[Mapping[str, str]]] = []
    used: set[int] = set()
    total = 0
    counts = {name: 0 for name in label_names}

    def add(index: int, window: list[Mapping[str, str]]) -> None:
        nonlocal total
        window = window[: count - total]
        used.add(index)
        chosen.append(window)
        total += len(window)
        for row in window:
            for name in _labels_of(row, label_names):
                counts[name] += 1

    if min_prevalence > 0:
        having: dict[str, list[int]] = {name: [] for name in label_names}
        for index, patient in enumerate(patients):
            for name in {n for row in patient for n in _labels_of(row, label_names)}:
                having[name].append(index)
        for name in sorted(label_names, key=lambda n: len(having[n])):
            candidates = list(rng.permutation(having[name])) if having[name] else []
            while counts[name] < min_prevalence * count and candidates and total < count:
                index = int(candidates.pop())
                if index in used:
                    continue
                patient = patients[index]
                first = next(i for i, row in enumerate(patient) if name in _labels_of(row, label_names))
                add(index, _window(patient, first - int(rng.integers(0, max_images_per_patient)), max_images_per_patient))
    for index in rng.permutation(len(patients)):
        if total >= count:
            break
        if int(index) in used:
            continue
        patient = patients[int(index)]
        length = min(len(patient), max_images_per_patient)
        add(int(index), _window(patient, int(rng.integers(0, len(patient))), length))
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]


def write_chestxray14_layout(
    root: Path,
    count: int,
    size: int = 128,
    seed: int = 0,
    label_names: Sequence[str] = FINDINGS,
    prevalence: float = 0.2,
    images_per_patient: int = 3,
    source: Sequence[Mapping[str, str]] | None = None,
    min_prevalence: float = 0.0,
) -> Path:
    """Write ``count`` synthetic images as ChestX-ray14 (images/NNNNNNNN_NNN.png + Data_Entry_2017.csv).

    ``source``: rows of the real label file (``nih_labels.read_label_rows()``): real patients are sampled
    (``sample_real_patients``, up to ``images_per_patient`` follow-ups each, rare findings enriched to
    ``min_prevalence``) and rendered with persistent anatomy and label noise. Without it, findings are
    independent Bernoulli(``prevalence``) draws and demographics random. Writes ``synthetic_provenance.json``
    (the generator's settings, the real and the sampled label statistics). Returns ``root``.
    """
    root = Path(root)
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    provenance: dict = {
        "generator": "xraymodel.synthetic",
        "synthetic": True,
        "seed": seed,
        "size": size,
        "difficulty": {"lesion_scale": LESION_SCALE, "noise": NOISE, "label_miss": LABEL_MISS, "label_spurious": LABEL_SPURIOUS},
        "site_column": f"{SITE_COLUMN!r} is synthetic (not in the real file): {sorted(SITES)} assigned per patient",
    }
    if source is not None:
        from xraymodel.nih_labels import ATTRIBUTION

        real = group_patients(source)
        plan = sample_real_patients(real, count, rng, label_names, images_per_patient, min_prevalence)
        provenance.update(
            labels="real ChestX-ray14 patients (Data_Entry_2017_v2020.csv): per-image labels, follow-ups, age, sex, view",
            attribution=ATTRIBUTION,
            min_prevalence=min_prevalence,
            real_statistics=label_statistics(real, label_names),
        )
    else:
        plan = []
        while sum(map(len, plan)) < count:
            age, sex = int(rng.integers(18, 90)), "M" if rng.random() < 0.5 else "F"
            length = int(rng.integers(1, images_per_patient + 1))
            plan.append([
                {"Finding Labels": LABEL_SEPARATOR.join(sample_findings(rng, label_names, prevalence)) or NO_FINDING,
                 "Patient Age": str(age), "Patient Gender": sex, "View Position": "AP" if rng.random() < 0.4 else "PA"}
                for _ in range(length)
            ])
        plan[-1] = plan[-1][: len(plan[-1]) - (sum(map(len, plan)) - count)]
        provenance["labels"] = f"independent Bernoulli({prevalence}) per finding; random age, sex and view"
    provenance["sampled_statistics"] = label_statistics(plan, label_names)
    rows = []
    site_names = sorted(SITES)
    for number, patient in enumerate(plan, start=1):
        first = patient[0]
        anatomy = draw_anatomy(
            rng, sex=first["Patient Gender"], age=int(float(first["Patient Age"] or 50)), site=site_names[int(rng.integers(0, len(site_names)))]
        )
        for follow_up, source_row in enumerate(patient):
            labelled = _labels_of(source_row, label_names)
            view = source_row["View Position"] or "PA"
            pixels = render_case(drawn_findings(labelled, rng, label_names), size, rng, anatomy, view)
            name = f"{number:08d}_{follow_up:03d}.png"
            (images_dir / name).write_bytes(encode_png(pixels))
            rows.append(
                {
                    "Image Index": name,
                    "Finding Labels": LABEL_SEPARATOR.join(labelled) if labelled else NO_FINDING,
                    "Follow-up #": follow_up,
                    "Patient ID": number,
                    "Patient Age": source_row["Patient Age"],
                    "Patient Gender": source_row["Patient Gender"],
                    "View Position": view,
                    "OriginalImage[Width": size,
                    "Height]": size,
                    "OriginalImagePixelSpacing[x": 0.143,
                    "y]": 0.143,
                    SITE_COLUMN: anatomy.site,
                }
            )
    with open(root / "Data_Entry_2017.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CHESTXRAY14_COLUMNS + (SITE_COLUMN,))
        writer.writeheader()
        writer.writerows(rows)
    (root / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    _write_synthetic_marker(
        root,
        {"generator": "xraymodel.synthetic.write_chestxray14_layout", "images": count, "seed": seed,
         "labels": provenance["labels"], "provenance": PROVENANCE_FILE},
    )
    return root


def _write_synthetic_marker(root: Path, facts: dict) -> None:
    """The marker the model card reads to flag a synthetic training or evaluation set."""
    from xraymodel.model_card import SYNTHETIC_MARKER

    (Path(root) / SYNTHETIC_MARKER).write_text(json.dumps(facts) + "\n")
