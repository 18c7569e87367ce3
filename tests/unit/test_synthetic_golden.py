"""Tests of the sandbox's synthetic golden set (mdsandbox.synthetic_golden).

AUROC and PSI are computed here with small numpy implementations on purpose: the product's
metrics module (model/xraymodel) is written independently, and these tests pin what the sandbox
promises (configured accuracy = measured mean AUROC; outputShift = prediction drift).
"""

from __future__ import annotations

import base64
import csv
import io
import re

import numpy as np
import pytest

from mdsandbox.synthetic_golden import (
    FINDINGS,
    PREVALENCE,
    GoldenSet,
    InvalidImage,
    decode_png_first_row,
    empirical_auc,
    encode_png,
    finding_auc_targets,
)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Rank-based AUROC (Mann-Whitney U with mid-ranks for ties)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # mid-ranks for ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = labels == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def mean_auroc(preds: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean([auroc(preds[:, k], labels[:, k]) for k in range(labels.shape[1])]))


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index over `bins` quantile bins of the reference (eps-smoothed)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    ref = np.histogram(reference, edges)[0] / len(reference)
    cur = np.histogram(current, edges)[0] / len(current)
    ref, cur = np.clip(ref, 1e-4, None), np.clip(cur, 1e-4, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def mean_psi(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([psi(a[:, k], b[:, k]) for k in range(a.shape[1])]))


@pytest.fixture(scope="module")
def golden() -> GoldenSet:
    return GoldenSet(size=500, seed=0)


def test_rank_auroc_helper_is_right():
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert auroc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)


def test_labels_have_14_findings_with_realistic_enriched_prevalence(golden):
    assert golden.labels.shape == (500, 14) and golden.findings == FINDINGS
    positives = golden.labels.sum(axis=0)
    assert positives.min() >= golden.min_positives
    for k, finding in enumerate(FINDINGS):
        expected = max(golden.min_positives, round(PREVALENCE[finding] * 500))
        assert positives[k] == expected, finding
    assert PREVALENCE["Infiltration"] == pytest.approx(0.177, abs=0.001)
    assert PREVALENCE["Hernia"] == pytest.approx(0.002, abs=0.0005)
    # roughly half the images have no finding, as in ChestX-ray14 (53.8 %)
    assert 0.35 < (golden.labels.sum(axis=1) == 0).mean() < 0.65


@pytest.mark.parametrize("target", [0.70, 0.80, 0.90])
def test_mean_auroc_matches_configured_accuracy(golden, target):
    preds = golden.predictions("2", target)
    assert preds.shape == (500, 14) and preds.dtype == np.float32
    assert ((preds >= 0) & (preds <= 1)).all()
    assert mean_auroc(preds, golden.labels) == pytest.approx(target, abs=0.02)
    # per-finding AUROCs differ like a real model's (CheXNet-shaped), but average to the target
    per = [auroc(preds[:, k], golden.labels[:, k]) for k in range(14)]
    assert max(per) - min(per) > 0.05
    assert per == pytest.approx(list(finding_auc_targets(target)), abs=0.02)


@pytest.mark.parametrize("seed, version", [(1, "1"), (2, "7"), (3, "canary")])
def test_auroc_holds_for_other_seeds_and_versions(seed, version):
    g = GoldenSet(size=300, seed=seed)
    assert mean_auroc(g.predictions(version, 0.84), g.labels) == pytest.approx(0.84, abs=0.02)


def test_output_shift_drifts_distribution_but_not_ranking(golden):
    base = golden.predictions("3", 0.85)
    shifted = golden.predictions("3", 0.85, output_shift=0.15)
    assert np.allclose(shifted, np.clip(base + 0.15, 0, 1), atol=1e-6)
    assert mean_psi(base, shifted) > 0.2
    assert psi(base.ravel(), shifted.ravel()) > 0.2
    assert mean_auroc(shifted, golden.labels) == pytest.approx(mean_auroc(base, golden.labels), abs=0.005)


def test_equal_versions_have_no_drift(golden):
    a = golden.predictions("1", 0.84)
    b = golden.predictions("2", 0.84)
    assert not np.allclose(a, b)  # different versions disagree image by image...
    assert 0.5 < np.corrcoef(a.ravel(), b.ravel())[0, 1] < 0.99  # ...but are correlated, like real models
    assert mean_psi(a, b) < 0.1  # ...and their output distributions match
    assert psi(a.ravel(), b.ravel()) < 0.1


def test_predictions_are_deterministic_per_version_image_and_seed(golden):
    again = GoldenSet(size=500, seed=0)
    assert np.array_equal(golden.predictions("5", 0.8), again.predictions("5", 0.8))
    assert np.array_equal(golden.predict("5", 42, 0.8), again.predictions("5", 0.8)[42])
    other_seed = GoldenSet(size=500, seed=1)
    assert not np.array_equal(golden.labels, other_seed.labels)


def test_image_bytes_round_trip_to_the_same_predictions(golden):
    for image_id in (0, 1, 250, 499):
        data = golden.image_bytes(image_id)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert golden.image_id(data) == image_id
        assert golden.image_id(base64.b64decode(base64.b64encode(data))) == image_id
        assert np.array_equal(golden.predict_image("2", data, 0.9, 0.05), golden.predictions("2", 0.9, 0.05)[image_id])


def test_foreign_images_are_deterministic_and_garbage_is_rejected(golden):
    foreign = encode_png(np.full((8, 8), 77, dtype=np.uint8))
    assert golden.image_id(foreign) is None
    p1 = golden.predict_image("2", foreign, 0.8)
    assert p1.shape == (14,) and np.array_equal(p1, golden.predict_image("2", foreign, 0.8))
    jpeg_like = b"\xff\xd8\xff\xe0" + b"\x00" * 64
    assert golden.predict_image("2", jpeg_like, 0.8).shape == (14,)
    # a golden image of ANOTHER golden set is foreign here
    assert golden.image_id(GoldenSet(size=500, seed=9).image_bytes(3)) is None
    for garbage in (b"", b"hello", b"\x00\x01\x02" * 10):
        with pytest.raises(InvalidImage, match="Unknown image file format"):
            golden.predict_image("2", garbage, 0.8)
    with pytest.raises(InvalidImage):
        golden.image_id(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR")


def test_png_first_row_decoder_handles_filters():
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert decode_png_first_row(encode_png(pixels)) == bytes(range(8))


def test_write_layout(tmp_path):
    g = GoldenSet(size=40, seed=4, min_positives=2)
    root = g.write(tmp_path / "golden")
    rows = list(csv.DictReader(io.StringIO((root / "labels.csv").read_text())))
    demographics = ["Patient Gender", "Patient Age", "View Position", "Site"]  # ChestX-ray14's names + Site
    assert len(rows) == 40 and list(rows[0]) == ["image", *FINDINGS, *demographics]
    assert [rows[3][c] for c in demographics] == [g.demographics[c][3] for c in demographics]
    data = (root / "images" / rows[3]["image"]).read_bytes()
    assert g.image_id(data) == 3
    assert [int(rows[3][f]) for f in FINDINGS] == list(g.labels[3])


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.2, -0.1])
def test_invalid_accuracy_rejected(golden, bad):
    with pytest.raises(ValueError):
        golden.predictions("1", bad)


@pytest.mark.parametrize(
    "uri, size, seed",
    [("sandbox://golden", 500, 0), ("sandbox://golden?size=200&seed=3", 200, 3), ("sandbox://golden?seed=7", 500, 7)],
)
def test_from_uri(uri, size, seed):
    g = GoldenSet.from_uri(uri)
    assert (g.size, g.seed) == (size, seed)


@pytest.mark.parametrize("uri", ["s3://bucket/golden/", "sandbox://golden?colour=red", "sandbox://other"])
def test_from_uri_rejects_others(uri):
    with pytest.raises(ValueError):
        GoldenSet.from_uri(uri)


def test_finding_accuracy_pins_one_finding_and_holds_the_mean(golden):
    """A version whose mean AUROC is unchanged while one finding collapses (scenario findingAccuracy)."""
    targets = finding_auc_targets(0.85, finding_accuracy={"Pneumothorax": 0.72})
    assert targets[FINDINGS.index("Pneumothorax")] == pytest.approx(0.72)
    assert targets.mean() == pytest.approx(0.85, abs=1e-9)
    preds = golden.predictions("2", 0.85, finding_accuracy={"Pneumothorax": 0.72})
    k = FINDINGS.index("Pneumothorax")
    assert auroc(preds[:, k], golden.labels[:, k]) == pytest.approx(0.72, abs=0.01)
    assert mean_auroc(preds, golden.labels) == pytest.approx(0.85, abs=0.005)
    plain = golden.predictions("2", 0.85)
    assert auroc(plain[:, k], golden.labels[:, k]) > 0.84  # the pin is part of the cache key
    with pytest.raises(ValueError, match="unknown finding 'Pneumonitis'"):
        finding_auc_targets(0.85, finding_accuracy={"Pneumonitis": 0.7})


def _subgroup_means(g: GoldenSet, p: np.ndarray, attribute: str) -> dict[str, float]:
    from xraymodel.evaluator.compute import subgroup_aurocs
    from xraymodel.evaluator.golden import subgroup_layout
    from xraymodel.subgroups import COLUMNS, age_band

    cells = g.demographics[COLUMNS[attribute]]
    values = tuple(age_band(c) if attribute == "age_band" else c.upper() for c in cells)
    return {s.value: s.auroc_mean for s in subgroup_aurocs(g.labels, p, subgroup_layout(g.labels, {attribute: values}))}


@pytest.mark.parametrize("attribute, value, auc", [("view", "AP", 0.72), ("age_band", "60+", 0.74), ("sex", "F", 0.92)])
def test_one_subgroup_pinned_while_every_findings_auroc_holds(attribute, value, auc):
    """subgroupAccuracy: the evaluator's mean AUROC within the subgroup is the target, and each
    finding's AUROC over all images (so the mean the accuracy gates read) stays put."""
    g = GoldenSet(size=600, seed=0, min_positives=100)
    plain = g.predictions("2", 0.85)
    pinned = g.predictions("2", 0.85, subgroup_accuracy={attribute: {value: auc}})
    means = _subgroup_means(g, pinned, attribute)
    assert means[value] == pytest.approx(auc, abs=0.01)
    assert abs(_subgroup_means(g, plain, attribute)[value] - 0.85) < 0.03  # unpinned: every subgroup near the mean
    overall = [empirical_auc(pinned[g.labels[:, k] == 1, k], pinned[g.labels[:, k] == 0, k]) for k in range(14)]
    assert np.mean(overall) == pytest.approx(0.85, abs=0.006)
    # only the subgroup's images move relative to each other: the golden set itself is the same
    np.testing.assert_array_equal(g.labels, GoldenSet(size=600, seed=0, min_positives=100).labels)


@pytest.mark.parametrize("pins, message", [
    ({"view": {"AP": 0.7}, "sex": {"F": 0.7}}, "exactly one subgroup per version, got 2"),
    ({"ethnicity": {"X": 0.7}}, "unknown attribute 'ethnicity'"),
    ({"view": {"AP": 0.4}}, "must be inside (0.5, 1)"),
    ({"view": {"LL": 0.7}}, "no image in subgroup view=LL"),
])  # fmt: skip
def test_bad_subgroup_pins_are_refused(golden, pins, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        golden.predictions("2", 0.85, subgroup_accuracy=pins)
