"""The ChestX-ray14 label space and the "Finding Labels" cell parser (table-driven)."""

from __future__ import annotations

import pytest

from xraymodel.findings import (
    FINDINGS,
    NO_FINDING,
    UnknownFindingError,
    finding_index,
    multi_hot,
    parse_finding_labels,
    resolve_label_names,
)


def test_fourteen_findings_in_chestxray14_order():
    assert len(FINDINGS) == 14 and len(set(FINDINGS)) == 14
    assert FINDINGS[0] == "Atelectasis" and FINDINGS[-1] == "Hernia"
    assert finding_index("Pleural_Thickening") == 12


@pytest.mark.parametrize(
    ("cell", "label_names", "expected"),
    [
        ("No Finding", FINDINGS, []),
        ("Effusion", FINDINGS, ["Effusion"]),
        ("Cardiomegaly|Effusion", FINDINGS, ["Cardiomegaly", "Effusion"]),
        (" Mass | Nodule ", FINDINGS, ["Mass", "Nodule"]),
        ("Mass|Nodule", ("Nodule",), ["Nodule"]),  # a real finding outside the modelled subset
        ("No Finding", ("Effusion", NO_FINDING), [NO_FINDING]),  # single-label class
    ],
)
def test_parse_finding_labels(cell, label_names, expected):
    assert parse_finding_labels(cell, label_names) == expected


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("Pneumonitis", "unknown finding 'Pneumonitis'"),
        ("Effusion|", "empty label"),
        ("No Finding|Mass", "combined"),
        ("effusion", "unknown finding"),  # case matters: the CSV spells them exactly
    ],
)
def test_parse_finding_labels_rejects(cell, message):
    with pytest.raises(UnknownFindingError, match=message):
        parse_finding_labels(cell)


def test_multi_hot_follows_label_order():
    assert multi_hot(["Hernia", "Atelectasis"]) == [1.0] + [0.0] * 12 + [1.0]
    assert multi_hot([], ("Mass", "Nodule")) == [0.0, 0.0]


@pytest.mark.parametrize(
    ("names", "single_label", "expected"),
    [
        (None, False, FINDINGS),
        (["Mass", "Nodule"], False, ("Mass", "Nodule")),
        (["Effusion", NO_FINDING], True, ("Effusion", NO_FINDING)),
    ],
)
def test_resolve_label_names(names, single_label, expected):
    assert resolve_label_names(names, single_label=single_label) == expected


@pytest.mark.parametrize(
    ("names", "message"),
    [(["Mass", "Tumour"], "Tumour"), ([NO_FINDING], "all-zeros"), (["Mass", "Mass"], "duplicate"), ([], "empty")],
)
def test_resolve_label_names_rejects(names, message):
    with pytest.raises(UnknownFindingError, match=message):
        resolve_label_names(names)
