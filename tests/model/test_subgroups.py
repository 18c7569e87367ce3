"""Subgroup AUROC (issue 16 item 5): pure-NumPy cases with a known answer, and the attribute reader.

The CI model's own subgroup report, its model-card field and the evaluate gate are tested in
tests/model/test_model_toolchain.py (they need the session's trained model).
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from xraymodel.subgroups import (
    MIN_IMAGES,
    UNKNOWN,
    age_band,
    check_worst_subgroup,
    image_attributes,
    subgroup_report,
)


def _clustered_case(rng, patients=80, per_patient=4, findings=3, signal=None):
    """Labels and scores with patient clusters: every image of a patient shares labels and a score offset."""
    signal = signal if signal is not None else np.full(patients, 2.0)
    y = rng.random((patients, findings)) < 0.4
    offset = rng.normal(0, 1.0, (patients, findings))
    labels = np.repeat(y, per_patient, axis=0).astype(float)
    scores = np.repeat(signal[:, None] * y + offset, per_patient, axis=0) + rng.normal(0, 0.3, labels.shape)
    groups = np.repeat(np.arange(patients), per_patient).astype(str)
    return labels, scores, groups


def test_the_subgroup_the_model_fails_is_the_worst():
    rng = np.random.default_rng(0)
    sex = np.array(["F", "M"] * 40)  # per patient
    signal = np.where(sex == "F", 0.2, 2.5)  # the model barely separates the women's findings
    labels, scores, groups = _clustered_case(rng, signal=signal)
    attributes = {"sex": np.repeat(sex, 4).tolist(), "view": (["AP"] * 160 + ["PA"] * 160)}
    report = subgroup_report(labels, scores, ["A", "B", "C"], attributes, groups, resamples=300)
    sexes = report["attributes"]["sex"]["subgroups"]
    assert sexes["F"]["mean_auroc"] < 0.65 < 0.85 < sexes["M"]["mean_auroc"]
    assert sexes["F"]["images"] == 160 and sexes["F"]["patients"] == 40
    assert report["worst"]["attribute"] == "sex" and report["worst"]["value"] == "F"
    assert report["worst"]["gap_to_overall"] > 0.1
    low, high = report["worst"]["mean_auroc_ci"]
    assert low < report["worst"]["mean_auroc"] < high
    assert report["attributes"]["sex"]["gap"] == pytest.approx(sexes["M"]["mean_auroc"] - sexes["F"]["mean_auroc"], abs=1e-4)
    assert check_worst_subgroup({"subgroups": report}, 0.8).startswith("worst subgroup sex=F: mean AUROC 0.")
    assert check_worst_subgroup({"subgroups": report}, 0.3) is None


def test_subgroup_cis_resample_patients():
    """Four images per patient: the patient bootstrap CI is wider than one that treats images as independent."""
    rng = np.random.default_rng(1)
    labels, scores, groups = _clustered_case(rng, signal=np.full(80, 1.0))
    attributes = {"site": ["A"] * 160 + ["B"] * 160}
    clustered = subgroup_report(labels, scores, ["A", "B", "C"], attributes, groups, resamples=400)
    independent = subgroup_report(labels, scores, ["A", "B", "C"], attributes, np.arange(320).astype(str), resamples=400)

    def width(report):
        low, high = report["attributes"]["site"]["subgroups"]["A"]["mean_auroc_ci"]
        return high - low

    print(f"site A mean AUROC CI width: patient bootstrap {width(clustered):.3f}, image bootstrap {width(independent):.3f}")
    assert width(clustered) > 1.4 * width(independent)


def test_small_subgroups_are_listed_not_scored_and_findings_are_common():
    rng = np.random.default_rng(2)
    labels, scores, groups = _clustered_case(rng)
    labels[:160, 2] = 0  # finding C has no positive among the first half (view AP)
    view = ["AP"] * 160 + ["PA"] * 150 + ["LL"] * 10
    report = subgroup_report(labels, scores, ["A", "B", "C"], {"view": view, "age_band": [UNKNOWN] * 320}, groups)
    entry = report["attributes"]["view"]
    assert entry["too_small"] == ["LL"] and set(entry["subgroups"]) == {"AP", "PA"}
    assert entry["findings"] == ["A", "B"]  # C is not scorable in AP: left out of every view subgroup
    assert "skipped" in report["attributes"]["age_band"]


@pytest.mark.parametrize(("age", "band"), [("0", "0-17"), ("17", "0-17"), ("18", "18-39"), ("59", "40-59"), ("60", "60+"), ("", UNKNOWN), ("x", UNKNOWN)])
def test_age_bands(age, band):
    assert age_band(age) == band


def test_attributes_come_from_the_label_csv(tmp_path):
    rows = [
        {"Image Index": "a.png", "Patient Gender": "F", "Patient Age": "71", "View Position": "AP", "Site": "B"},
        {"Image Index": "b.png", "Patient Gender": "m", "Patient Age": "30", "View Position": "PA", "Site": "A"},
    ]
    with open(tmp_path / "Data_Entry_2017.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    attributes = image_attributes(tmp_path, [str(tmp_path / "images" / "b.png"), str(tmp_path / "a.png"), "/x/c.png"])
    assert attributes == {
        "sex": ["M", "F", UNKNOWN], "age_band": ["18-39", "60+", UNKNOWN], "view": ["PA", "AP", UNKNOWN], "site": ["A", "B", UNKNOWN],
    }
    assert image_attributes(tmp_path / "nothing-here", ["a.png"]) == {}
    assert MIN_IMAGES == 20
