"""Manifests (ChestX-ray14 CSV, folder per class), patient-level splits, fingerprints, DICOM input."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from xraymodel import datasets
from xraymodel.dicom_input import dicom_to_png_bytes, linear_window, read_dicom_pixels, write_dicom_radiograph
from xraymodel.errors import InputDataError
from xraymodel.findings import FINDINGS
from xraymodel.synthetic import encode_png, generate_cases, write_chestxray14_layout


@pytest.fixture
def small_cxr14(tmp_path):
    return write_chestxray14_layout(tmp_path / "cxr", 40, size=32, seed=1)


def _rewrite_csv(root, edit):
    path = root / datasets.CHESTXRAY14_CSV
    rows = list(csv.reader(open(path)))
    rows = edit(rows)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_chestxray14_manifest(small_cxr14):
    data = datasets.load_dataset(small_cxr14)
    assert len(data) == 40 and data.labels.shape == (40, 14)
    assert data.label_names == FINDINGS
    rows = list(csv.DictReader(open(small_cxr14 / datasets.CHESTXRAY14_CSV)))
    for path, vector, row in zip(data.paths, data.labels, rows):
        assert path.endswith(row["Image Index"])
        names = [n for n, v in zip(FINDINGS, vector) if v]
        assert "|".join(names) == row["Finding Labels"] or (not names and row["Finding Labels"] == "No Finding")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda rows: [[c for c in r if c != r[rows[0].index("Patient ID")]] for r in rows], "missing column"),
        (lambda rows: rows[:3] + [[rows[3][0], "Effusion|Pneumonitis", *rows[3][2:]]] + rows[4:], "row 4 .*Pneumonitis"),
        (lambda rows: rows[:2] + [["99999999_000.png", *rows[2][1:]]] + rows[3:], "row 3: image file 99999999_000.png not found"),
        (lambda rows: rows[:1], "no rows"),
    ],
)
def test_chestxray14_errors_name_the_row(small_cxr14, edit, message):
    _rewrite_csv(small_cxr14, edit)
    with pytest.raises(InputDataError, match=message):
        datasets.load_dataset(small_cxr14)


def test_folder_layout(tmp_path):
    for name, count in [("Effusion", 3), ("No Finding", 2), ("Mass", 1)]:
        (tmp_path / name).mkdir()
        for i, case in enumerate(generate_cases(count, size=32, seed=count)):
            (tmp_path / name / f"{i:05d}_{name[:2]}.png").write_bytes(encode_png(case.pixels))
    data = datasets.load_dataset(tmp_path, ["Effusion", "Mass"])
    assert data.labels.sum(axis=0).tolist() == [3.0, 1.0]
    assert len(data) == 6
    (tmp_path / "Tumour").mkdir()
    with pytest.raises(InputDataError, match="Tumour.*not a finding"):
        datasets.load_dataset(tmp_path)


def test_patient_split_is_disjoint_and_deterministic(small_cxr14):
    data = datasets.load_dataset(small_cxr14)
    splits = datasets.split_by_patient(data, 0.2, 0.2, seed=4)
    assert sum(len(s) for s in splits.values()) == len(data)
    patients = {name: set(s.patient_ids) for name, s in splits.items()}
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"] or patients["val"] & patients["test"])
    again = datasets.split_by_patient(data, 0.2, 0.2, seed=4)
    assert all(splits[n].paths == again[n].paths for n in splits)
    assert len(splits["test"]) >= 8


def _table(root, patients=300, rare_patients=10, seed=0):
    """A manifest with no files: 1-3 images per patient, one finding on only ``rare_patients`` patients."""
    rng = np.random.default_rng(seed)
    paths, labels, ids = [], [], []
    rare = set(rng.choice(patients, rare_patients, replace=False).tolist())
    for patient in range(patients):
        for image in range(int(rng.integers(1, 4))):
            paths.append(str(root / f"{patient:08d}_{image:03d}.png"))
            labels.append([float(patient in rare), float(rng.random() < 0.3)])
            ids.append(f"{patient:08d}")
    return datasets.LabelledImages(root, tuple(paths), np.asarray(labels, np.float32), tuple(ids), ("Hernia", "Effusion"))


def test_stratified_patient_split_gives_every_split_its_share_of_a_rare_finding(tmp_path):
    data = _table(tmp_path)
    rare_total = data.labels[:, 0].sum()
    worst = {True: 0.0, False: 0.0}
    for seed in range(6):
        for stratify in (True, False):
            splits = datasets.split_by_patient(data, 0.15, 0.2, seed=seed, stratify=stratify)
            patients = [set(s.patient_ids) for s in splits.values()]
            assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
            assert sum(len(s) for s in splits.values()) == len(data)
            for name, fraction in (("val", 0.15), ("test", 0.2)):
                expected = fraction * rare_total
                worst[stratify] = max(worst[stratify], abs(splits[name].labels[:, 0].sum() - expected))
                if stratify:
                    assert abs(len(splits[name]) - fraction * len(data)) <= 0.05 * len(data)
    assert worst[True] < 2  # less than one patient (1-3 images) off the expected count, every seed
    assert worst[False] > worst[True]  # the unstratified split misses it by chance


def test_official_chestxray14_lists_are_followed(tmp_path):
    data = _table(tmp_path, patients=60, rare_patients=6)
    names = [p.rsplit("/", 1)[1] for p in data.paths]
    test_names = [n for n in names if int(n[:8]) % 5 == 0]
    (tmp_path / datasets.OFFICIAL_TEST_LIST).write_text("\n".join(test_names) + "\n")
    (tmp_path / datasets.OFFICIAL_TRAIN_VAL_LIST).write_text(
        "\n".join(n for n in names if n not in test_names) + "\n99999999_000.png\n"  # not downloaded: ignored
    )
    splits, method = datasets.split_data(data, 0.1, 0.2, seed=1)
    assert method == datasets.SPLIT_OFFICIAL
    assert sorted(p.rsplit("/", 1)[1] for p in splits["test"].paths) == sorted(test_names)
    assert set(splits["val"].patient_ids).isdisjoint(splits["train"].patient_ids)
    assert len(splits["val"]) > 0 and sum(len(s) for s in splits.values()) == len(data)
    (tmp_path / datasets.OFFICIAL_TRAIN_VAL_LIST).write_text("\n".join(names[1:]) + "\n")
    with pytest.raises(InputDataError, match="in both official lists"):
        datasets.split_data(data)
    train_val = [n for n in names if n not in test_names]
    (tmp_path / datasets.OFFICIAL_TRAIN_VAL_LIST).write_text("\n".join(train_val[1:]))
    with pytest.raises(InputDataError, match=f"1 image.* in neither .*e.g. {train_val[0]}"):
        datasets.split_data(data)
    moved = next(n for n in test_names if sum(m[:8] == n[:8] for m in test_names) > 1)
    (tmp_path / datasets.OFFICIAL_TEST_LIST).write_text("\n".join(n for n in test_names if n != moved))
    (tmp_path / datasets.OFFICIAL_TRAIN_VAL_LIST).write_text("\n".join(train_val + [moved]))
    with pytest.raises(InputDataError, match=f"patient {moved[:8]} has images in both"):
        datasets.split_data(data)
    for name in (datasets.OFFICIAL_TEST_LIST, datasets.OFFICIAL_TRAIN_VAL_LIST):
        (tmp_path / name).unlink()
    assert datasets.split_data(data)[1] == datasets.SPLIT_STRATIFIED


def test_folder_layout_that_cannot_name_patients_is_refused(tmp_path):
    (tmp_path / "Pneumonia").mkdir()
    (tmp_path / "No Finding").mkdir()
    cases = generate_cases(3, size=32, seed=2)
    for name, case in zip(["Pneumonia/IM-0115-0001.jpeg", "No Finding/IM-0115-0002.png", "No Finding/IM-0117-0001.png"], cases):
        (tmp_path / name).write_bytes(encode_png(case.pixels))
    with pytest.raises(InputDataError, match=r"IM-0115-0002.png: cannot tell which patient.*patients.csv"):
        datasets.load_dataset(tmp_path, ["Pneumonia"])
    (tmp_path / datasets.PATIENTS_CSV).write_text(
        "Image Index,Patient ID\nIM-0115-0001.jpeg,0115\nIM-0115-0002.png,0115\nIM-0117-0001.png,0117\n"
    )
    data = datasets.load_dataset(tmp_path, ["Pneumonia"])
    assert sorted(data.patient_ids) == ["0115", "0115", "0117"]


def test_manifest_round_trip(small_cxr14, tmp_path):
    data = datasets.load_dataset(small_cxr14)
    datasets.write_manifest(data, tmp_path / "m.csv")
    back = datasets.read_manifest(tmp_path / "m.csv", small_cxr14, FINDINGS)
    assert back.paths == data.paths and np.array_equal(back.labels, data.labels)


def test_fingerprint_changes_with_bytes_and_labels(small_cxr14, tmp_path):
    data = datasets.load_dataset(small_cxr14)
    first = datasets.fingerprint_and_check(data)
    assert first == datasets.fingerprint_and_check(datasets.load_dataset(small_cxr14))
    copy = shutil.copytree(small_cxr14, tmp_path / "copy")
    image = sorted((copy / "images").iterdir())[0]
    image.write_bytes(encode_png(generate_cases(1, 32, seed=99)[0].pixels))
    assert datasets.fingerprint_and_check(datasets.load_dataset(copy)) != first


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not an image", "not a valid PNG/JPEG"),
        (b"", "empty file"),
        ("truncated", "not a valid PNG/JPEG"),
    ],
)
def test_fingerprint_names_the_corrupt_file(small_cxr14, content, message):
    data = datasets.load_dataset(small_cxr14)
    victim = data.paths[5]
    original = open(victim, "rb").read()
    open(victim, "wb").write(original[: len(original) // 2] if content == "truncated" else content)
    with pytest.raises(InputDataError, match=f"{victim}: {message}"):
        datasets.fingerprint_and_check(data)


@pytest.mark.parametrize(
    ("values", "center", "width", "expected"),
    [
        ([0, 1000, 2000, 4095], 2048, 4096, [0.0, 1000 / 4095, 2000 / 4095, 1.0]),
        ([-1000, 40, 1000], 40, 400, [0.0, 0.5 + 0.5 / 399, 1.0]),
    ],
)
def test_linear_window_follows_dicom_formula(values, center, width, expected):
    np.testing.assert_allclose(linear_window(np.array(values), center, width), np.clip(expected, 0, 1), atol=1e-9)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_dicom_radiograph_round_trip(tmp_path, photometric):
    pixels = generate_cases(1, 64, seed=3)[0].pixels
    path = write_dicom_radiograph(tmp_path / "x.dcm", pixels, photometric=photometric)
    restored = read_dicom_pixels(path)
    assert restored.shape == pixels.shape
    assert np.abs(restored.astype(int) - pixels.astype(int)).max() <= 1  # MONOCHROME1 inverted back
    windowed = read_dicom_pixels(path, window_center=2048, window_width=200)
    assert set(np.unique(windowed)) - set(range(256)) == set() and (windowed == 0).mean() > 0.3
    assert dicom_to_png_bytes(path).startswith(b"\x89PNG")


def test_wrong_dicom_is_refused_with_its_name(tmp_path):
    pydicom_data = pytest.importorskip("pydicom.data")
    ct = pydicom_data.get_testdata_file("CT_small.dcm")
    with pytest.raises(InputDataError, match=r"CT_small.dcm: DICOM modality 'CT' is not a projection radiograph"):
        read_dicom_pixels(ct)
    fake = tmp_path / "fake.dcm"
    fake.write_bytes(b"\x00" * 200)
    with pytest.raises(InputDataError, match="fake.dcm: not a readable DICOM"):
        read_dicom_pixels(fake)


def test_dicom_in_a_data_set_is_checked(small_cxr14):
    pydicom_data = pytest.importorskip("pydicom.data")
    images = small_cxr14 / "images"
    name = sorted(images.iterdir())[0].name
    (images / name).unlink()
    shutil.copy(pydicom_data.get_testdata_file("MR_small.dcm"), images / name.replace(".png", ".dcm"))
    _rewrite_csv(small_cxr14, lambda rows: [rows[0]] + [[r[0].replace(".png", ".dcm") if r[0] == name else r[0], *r[1:]] for r in rows[1:]])
    data = datasets.load_dataset(small_cxr14)
    with pytest.raises(InputDataError, match="MR.*not a projection radiograph"):
        datasets.fingerprint_and_check(data)
