"""The ChestX-ray14 label space: the 14 findings, in the order every model output uses.

This is the single source of truth for finding names. The model head, the data loaders, the
evaluation report, the model card and the online evaluator all index outputs by this order.
"No Finding" is not a class in multi-label mode: it is the all-zeros label vector.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

NO_FINDING = "No Finding"

# The separator ChestX-ray14's Data_Entry_2017.csv uses in its "Finding Labels" column.
LABEL_SEPARATOR = "|"


class UnknownFindingError(ValueError):
    """A label name that is not one of the 14 findings (nor "No Finding" where that is allowed)."""


def finding_index(name: str) -> int:
    """Position of a finding in FINDINGS (the model output index)."""
    try:
        return FINDINGS.index(name)
    except ValueError:
        raise UnknownFindingError(
            f"unknown finding {name!r}; known findings: {', '.join(FINDINGS)}"
        ) from None


def resolve_label_names(names: Iterable[str] | None, *, single_label: bool = False) -> tuple[str, ...]:
    """Validate a user-chosen label space (a subset of FINDINGS, in the given order).

    None means all 14 findings. In single-label (softmax) mode "No Finding" may be a class of its
    own; in multi-label mode it may not (it is the all-zeros vector).
    """
    if names is None:
        return FINDINGS
    resolved = tuple(name.strip() for name in names if name.strip())
    if not resolved:
        raise UnknownFindingError("empty label list")
    allowed = set(FINDINGS) | ({NO_FINDING} if single_label else set())
    for name in resolved:
        if name not in allowed:
            hint = " ('No Finding' is the all-zeros vector in multi-label mode)" if name == NO_FINDING else ""
            raise UnknownFindingError(
                f"unknown finding {name!r}{hint}; known findings: {', '.join(FINDINGS)}"
            )
    if len(set(resolved)) != len(resolved):
        raise UnknownFindingError(f"duplicate label in {list(resolved)}")
    return resolved


def parse_finding_labels(text: str, label_names: Sequence[str] = FINDINGS) -> list[str]:
    """Split a "Finding Labels" cell ("Effusion|Mass", "No Finding") into validated finding names.

    Every name must be a ChestX-ray14 finding or "No Finding" (which must then stand alone).
    Findings outside ``label_names`` but inside FINDINGS are valid and simply not modelled.
    """
    parts = [part.strip() for part in str(text).split(LABEL_SEPARATOR)]
    if any(not part for part in parts):
        raise UnknownFindingError(f"empty label in {text!r}")
    if NO_FINDING in parts:
        if len(parts) > 1:
            raise UnknownFindingError(f"'No Finding' combined with other labels in {text!r}")
        return [] if NO_FINDING not in label_names else [NO_FINDING]
    for part in parts:
        if part not in FINDINGS:
            raise UnknownFindingError(
                f"unknown finding {part!r} in {text!r}; known findings: {', '.join(FINDINGS)}"
            )
    return [part for part in parts if part in label_names]


def multi_hot(findings: Iterable[str], label_names: Sequence[str] = FINDINGS) -> list[float]:
    """Label vector (1.0 where the finding is present) in the order of ``label_names``."""
    present = set(findings)
    return [1.0 if name in present else 0.0 for name in label_names]
