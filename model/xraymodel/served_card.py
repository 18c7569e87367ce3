"""The model card as TF Serving serves it: the ``model_card`` signature (issue 16 item 4). Stdlib only.

The operating points a version was exported with (chosen on its validation split, on the scale its
signatures serve) travel inside the artifact: the SavedModel has a third signature that returns
them, so the online evaluator reads them from the version it evaluates, through TF Serving's
REST API, without any access to the model store.

    model_card   inputs  request          DT_STRING [-1]  ignored (TF Serving's REST API refuses a
                                                          signature without inputs: "Failed to get
                                                          input map for signature")
                 outputs model_card_json  DT_STRING [-1]  the served card (below) as JSON, one copy
                                                          per instance

Request ``{"signature_name": "model_card", "instances": [""]}``; TF Serving answers
``{"predictions": ["{...}"]}``: a single-output signature's rows are the values themselves, and
a DT_STRING output whose name does not end in ``_bytes`` is written as a plain JSON string (with
``_bytes`` it would be ``{"b64": ...}``; both are accepted here). A version exported before this
signature answers 400 ``Serving signature name: "model_card" not found in signature def``.

The served card is a subset of model_card.json, the same values: schema, model_name, version,
labels, head, operating_thresholds (+ _source, _scale), operating_points_target_sensitivity and a
calibrator summary, plus ``content_sha256``: the SHA-256 of the canonical JSON (sorted keys, no
spaces) of everything else, which the evaluator checks and reports (metric label, log).
Thresholds the evaluator uses, per finding: the target-sensitivity operating point's threshold,
else the card's operating threshold (Youden's J on the validation split), else none (the
evaluator's own fallback).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SIGNATURE_CARD = "model_card"
INPUT_CARD = "request"
OUTPUT_CARD = "model_card_json"
SERVED_SCHEMA = "xraymodel.served_model_card/v1"
SCALES = ("calibrated", "model output")
# Keys copied from model_card.json as they are there.
CARD_KEYS = (
    "model_name",
    "version",
    "labels",
    "head",
    "operating_thresholds",
    "operating_thresholds_source",
    "operating_thresholds_scale",
    "operating_points_target_sensitivity",
)
NOT_FOUND = f'Serving signature name: "{SIGNATURE_CARD}" not found in signature def'

# Outcome of asking a version for its card (the evaluator's metric label `status`).
STATUSES = ("served", "config", "no_signature", "no_thresholds", "invalid", "unavailable")


class ServedCardError(ValueError):
    """A served card the evaluator must not use; `status` is "invalid" (or "no_signature")."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def canonical_sha256(document: Mapping[str, Any]) -> str:
    payload = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


def calibration_summary(calibration: Mapping[str, Any] | None) -> dict | None:
    """The calibrator as served: method, whether the graph applies it, per-finding slope/intercept."""
    if not calibration:
        return None
    per_label = calibration.get("per_label") or {}
    return {
        "method": calibration.get("method"),
        "applied_in_serving_graph": calibration.get("applied_in_serving_graph"),
        "per_label": {
            name: {"slope": entry.get("slope"), "intercept": entry.get("intercept")}
            for name, entry in per_label.items()
            if isinstance(entry, Mapping)
        },
    }


def served_card_document(card: Mapping[str, Any]) -> dict:
    """The served card of a model card (or of the card's fields known before the SavedModel is saved)."""
    document = {"schema": SERVED_SCHEMA, **{key: card.get(key) for key in CARD_KEYS}}
    document["calibration"] = calibration_summary(card.get("calibration"))
    document = json.loads(json.dumps(document))  # plain JSON types only (tuples -> lists)
    document["content_sha256"] = canonical_sha256(document)
    return document


def served_card_json(card: Mapping[str, Any]) -> str:
    return json.dumps(served_card_document(card), sort_keys=True, separators=(",", ":"))


def rest_request_body() -> dict:
    return {"signature_name": SIGNATURE_CARD, "instances": [""]}


def is_signature_missing(status: int, text: str) -> bool:
    """TF Serving's answer for a signature the SavedModel does not have (400 INVALID_ARGUMENT)."""
    return status == 400 and "not found in signature def" in text


@dataclass(frozen=True)
class ServedCard:
    version: int
    content_sha256: str
    thresholds: tuple[tuple[str, float], ...]  # (finding, threshold) the evaluator uses, label order
    threshold_kinds: tuple[tuple[str, str], ...]  # (finding, "target sensitivity" | "operating threshold")
    scale: str
    document: Mapping[str, Any]

    @property
    def operating_thresholds(self) -> dict[str, float]:
        return dict(self.thresholds)


def _card_text(body: Any) -> str:
    """The JSON text of the first instance of a REST predict answer of the model_card signature."""
    if not isinstance(body, dict):
        raise ServedCardError("invalid", f"answer is a JSON {type(body).__name__}, not an object")
    if "error" in body:
        raise ServedCardError("invalid", f"answer carries an error: {str(body['error'])[:200]}")
    rows = body.get("predictions", body.get("outputs"))
    if not isinstance(rows, list) or not rows:
        raise ServedCardError("invalid", "answer has no non-empty 'predictions' list")
    value = rows[0]
    if isinstance(value, dict) and OUTPUT_CARD in value:  # rows as objects (several outputs)
        value = value[OUTPUT_CARD]
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            raise ServedCardError("invalid", f"card is not base64 UTF-8: {exc}") from None
    if not isinstance(value, str):
        raise ServedCardError("invalid", f"card is a JSON {type(value).__name__}, not a string")
    return value


def _threshold(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ServedCardError("invalid", f"{where}: not a number ({value!r})")
    if not 0.0 <= float(value) <= 1.0:
        raise ServedCardError("invalid", f"{where}: {value} is outside 0..1")
    return float(value)


def parse_served_card(body: Any, *, version: int, labels: Sequence[str]) -> ServedCard:
    """Validate a REST answer of the model_card signature for `version` whose outputs are `labels`.

    Raises ServedCardError("invalid", ...) for anything the evaluator must not trust: not JSON, another
    schema, a content_sha256 that does not match, another version's card, other labels or another
    label order than the golden set's, thresholds outside 0..1 or for unknown findings, an unknown scale."""
    text = _card_text(body)
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ServedCardError("invalid", f"card is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ServedCardError("invalid", f"card is a JSON {type(document).__name__}, not an object")
    if document.get("schema") != SERVED_SCHEMA:
        raise ServedCardError("invalid", f"schema {document.get('schema')!r}, expected {SERVED_SCHEMA!r}")
    claimed = document.get("content_sha256")
    actual = canonical_sha256({k: v for k, v in document.items() if k != "content_sha256"})
    if claimed != actual:
        raise ServedCardError("invalid", f"content_sha256 {str(claimed)[:16]}... does not match the content ({actual[:16]}...)")
    if document.get("version") != int(version):
        raise ServedCardError("invalid", f"card of version {document.get('version')!r} answered for version {version}")
    if list(document.get("labels") or []) != list(labels):
        raise ServedCardError("invalid", f"card labels {document.get('labels')!r} are not the golden set's findings in order")
    scale = document.get("operating_thresholds_scale")
    if scale not in SCALES:
        raise ServedCardError("invalid", f"operating_thresholds_scale {scale!r} (expected one of {SCALES})")
    youden = document.get("operating_thresholds") or {}
    points = document.get("operating_points_target_sensitivity") or {}
    for where, table in (("operating_thresholds", youden), ("operating_points_target_sensitivity", points)):
        if not isinstance(table, dict):
            raise ServedCardError("invalid", f"{where}: expected {{finding: ...}}, got {type(table).__name__}")
        unknown = sorted(set(table) - set(labels))
        if unknown:
            raise ServedCardError("invalid", f"{where}: unknown findings {unknown}")
    chosen, kinds = [], []
    for finding in labels:
        point = points.get(finding)
        if point is not None and not isinstance(point, dict):
            raise ServedCardError("invalid", f"operating_points_target_sensitivity.{finding}: not an object")
        target = _threshold(None if point is None else point.get("threshold"),
                            f"operating_points_target_sensitivity.{finding}.threshold")  # fmt: skip
        fallback = _threshold(youden.get(finding), f"operating_thresholds.{finding}")
        if target is not None:
            chosen.append((finding, target))
            kinds.append((finding, "target sensitivity"))
        elif fallback is not None:
            chosen.append((finding, fallback))
            kinds.append((finding, "operating threshold"))
    return ServedCard(version=int(version), content_sha256=actual, thresholds=tuple(chosen),
                      threshold_kinds=tuple(kinds), scale=scale, document=document)  # fmt: skip


__all__ = [
    "CARD_KEYS", "INPUT_CARD", "NOT_FOUND", "OUTPUT_CARD", "SERVED_SCHEMA", "SIGNATURE_CARD", "STATUSES",
    "ServedCard", "ServedCardError", "calibration_summary", "canonical_sha256", "is_signature_missing",
    "parse_served_card", "rest_request_body", "served_card_document", "served_card_json",
]  # fmt: skip
