"""The tamper-evident decision record (PURE): audit records, their hash chain, and its verification.

Every decision the operator records in status.history (promotion, rollback, abort, pause, resume,
retry, supersede, first deploy) and every manual action it handles is ALSO written as one record to
an append-only chain that lives outside the ModelDeployment (docs/security.md "Decision record"):

* one ConfigMap per record, ``<name>-audit-<seq:08d>`` in the ModelDeployment's namespace, created
  ``immutable: true`` (the API server refuses any later change of its data; only delete + create);
  NO ownerReference, so deleting the ModelDeployment (or kopf's cleanup of it) leaves the chain;
  labels ``modeldeploy.io/audit-of: <name>`` and ``modeldeploy.io/audit-seq: <seq>``;
* ``data["record.json"]`` is the record in canonical JSON (sorted keys, no spaces, UTF-8), and the
  record's hash is SHA-256 over exactly those bytes (also in the annotation ``modeldeploy.io/audit-hash``);
* each record carries ``seq`` (1, 2, 3, ...) and ``prev``, the hash of record ``seq - 1`` ("" for the
  first), so changing, deleting or reordering any record breaks every link after it;
* the newest ``(seq, head hash)`` is also kept in ``status.audit``; `verify` checks the chain ends
  there, so dropping the newest records is detected too (as long as the status is intact).

A record carries what an auditor needs to reconstruct the decision: the action and reason, the model
(name, base path, version and `spec.model.digest`), the golden-set fingerprint the evaluator
reported, the thresholds in force (every metric's bounds, non-inferiority margins), the gates'
answers (each metric's value and verdict, with the per-finding test figures) and the evaluation
figures, and who decided: the operator itself, or for a manual action the requester named by
``modeldeploy.io/action-by`` (docs/security.md: what makes that an authenticated identity).

One record is ~1-15 KB; a ConfigMap may hold 1 MiB, and one object per record keeps every write far
below etcd's request limit (~1.5 MiB) however long the chain grows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modeldeploy import names
from modeldeploy.spec import ModelDeploymentSpec

SCHEMA = "modeldeploy.io/audit/v1"
RECORD_KEY = "record.json"
LABEL_AUDIT_OF = "modeldeploy.io/audit-of"
LABEL_AUDIT_SEQ = "modeldeploy.io/audit-seq"
ANNOTATION_HASH = "modeldeploy.io/audit-hash"
OPERATOR_ACTOR = "modeldeploy-operator"
MANUAL_ACTIONS = {"pause": "paused", "resume": "resumed", "retry": "retried", "abort": "aborted"}


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a record is hashed and stored as: JSON, sorted keys, no whitespace, UTF-8."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def record_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def configmap_name(name: str, seq: int) -> str:
    return f"{name}-audit-{seq:08d}"


def selector(name: str) -> str:
    return f"{LABEL_AUDIT_OF}={name}"


# --------------------------------------------------------------------------------------------
# Building records
# --------------------------------------------------------------------------------------------


def thresholds(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    """The bounds in force: every metric's min/max, fail-fast bound and non-inferiority settings."""
    out = []
    for m in spec.analysis.metrics:
        entry: dict[str, Any] = (
            {"name": m.name, "builtin": m.builtin} if m.builtin else {"name": m.name, "query": m.query}
        )
        for key, value in (("min", m.min), ("max", m.max), ("quantile", m.quantile), ("window", m.window)):
            if value is not None:
                entry[key] = value
        if m.fail_fast is not None:
            entry["failFast"] = m.fail_fast.model_dump(exclude_none=True)
        if m.non_inferiority is not None:
            entry["nonInferiority"] = m.non_inferiority.model_dump(by_alias=True, exclude_none=True)
        if m.worst_subgroup is not None:
            entry["worstSubgroup"] = m.worst_subgroup.model_dump(by_alias=True, exclude_none=True)
        out.append(entry)
    return out


@dataclass(frozen=True)
class Actor:
    """Who decided: the operator, or the requester of a manual action."""

    name: str
    source: str  # "operator" | "annotation modeldeploy.io/action-by"
    bound_by: str | None = None  # the admission policy binding the annotation to the authenticated user
    via: str | None = None  # a trusted proxy (the dashboard) that asked on the actor's behalf

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "source": self.source}
        if self.source != "operator":
            out["verified"] = self.bound_by is not None
            if self.bound_by:
                out["boundBy"] = self.bound_by
            if self.via:
                out["via"] = self.via  # verified: the proxy's own identity; the name: as the proxy asserts it
        return out


def actor_for(
    history_action: str | None,
    manual_action: str | None,
    action_by: str | None,
    bound_by: str | None,
    via: str | None = None,
) -> Actor:
    """The operator decides everything except what a handled manual action caused."""
    if manual_action and (history_action in (None, "manualAction") or _caused_by(manual_action, history_action)):
        return Actor(action_by or "unknown", "annotation modeldeploy.io/action-by", bound_by, via)
    return Actor(OPERATOR_ACTOR, "operator")


def _caused_by(manual_action: str, history_action: str) -> bool:
    if manual_action in ("promote", "promote-full"):
        return history_action == "promoted"
    return MANUAL_ACTIONS.get(manual_action) == history_action


def decision_record(
    *,
    entry: Mapping[str, Any],
    namespace: str,
    name: str,
    uid: str | None,
    generation: int | None,
    spec: ModelDeploymentSpec,
    actor: Actor,
    golden_set: Mapping[str, Any] | None,
    digests: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An audit record (without seq/prev) for one status.history entry, or a manual-action entry.
    `digests` is status.modelDigests: the artifact digest of the version acted on."""
    model = spec.model
    version = entry.get("version")
    digest = (digests or {}).get(str(version))
    if digest is None and version == model.version:
        digest = model.digest
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "modelDeployment": {"namespace": namespace, "name": name, "uid": uid or "", "generation": generation},
        "at": entry.get("at"),
        "action": entry.get("action"),
        "version": entry.get("version"),
        "reason": entry.get("reason", ""),
        "actor": actor.as_dict(),
        "model": {
            "name": model.name,
            "basePath": model.base_path,
            "specVersion": model.version,
            "digest": digest,
        },  # fmt: skip
        "goldenSet": dict(golden_set) if golden_set else None,
        "thresholds": thresholds(spec),
        "metrics": list(entry.get("metrics") or []),
    }
    for key in ("fromVersion", "strategy", "evaluation", "outcome", "gate"):
        if entry.get(key) is not None:
            record[key] = entry[key]
    return record


def new_history_entries(old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Entries of `new` (status.history after a decision) that were not in `old`, in order."""
    seen = {canonical(e) for e in old}
    return [dict(e) for e in new if canonical(e) not in seen]


def chain(pending: dict[str, Any], seq: int, prev: str) -> tuple[dict[str, Any], bytes, str]:
    """Record number `seq` linked to `prev`: (record, its canonical bytes, its hash)."""
    record = {**pending, "seq": seq, "prev": prev}
    data = canonical(record)
    return record, data, record_hash(data)


def configmap(namespace: str, name: str, seq: int, data: bytes, digest: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(name, seq),
            "namespace": namespace,
            "labels": {
                names.LABEL_MANAGED_BY: names.MANAGED_BY,
                names.LABEL_COMPONENT: "audit",
                LABEL_AUDIT_OF: name,
                LABEL_AUDIT_SEQ: str(seq),
            },
            "annotations": {ANNOTATION_HASH: digest},
        },
        "immutable": True,
        "data": {RECORD_KEY: data.decode()},
    }


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    ok: bool
    records: int
    head: str  # hash of the last good record ("" when none)
    broken_at: int | None = None  # seq of the first bad record
    object_name: str | None = None
    problem: str = ""

    def text(self, name: str) -> str:
        if self.ok:
            return f"OK: {name}: {self.records} record(s), chain intact, head {self.head}"
        where = f"record {self.broken_at}" + (f" ({self.object_name})" if self.object_name else "")
        return f"BROKEN: {name}: {where}: {self.problem} ({self.records} record(s) before it verified)"


def head_of(configmaps: Iterable[Mapping[str, Any]]) -> tuple[int, str, str]:
    """(seq, hash, record id) of the newest record among `configmaps` ((0, "", "") when none); the hash
    is recomputed from the stored bytes."""
    best: tuple[int, str, str] = (0, "", "")
    for cm in configmaps:
        seq = _seq(cm)
        text = (cm.get("data") or {}).get(RECORD_KEY) or ""
        if seq is not None and seq > best[0]:
            try:
                record_id = str(json.loads(text).get("id", ""))
            except (ValueError, AttributeError):
                record_id = ""
            best = (seq, record_hash(text.encode()), record_id)
    return best


def _seq(cm: Mapping[str, Any]) -> int | None:
    raw = ((cm.get("metadata") or {}).get("labels") or {}).get(LABEL_AUDIT_SEQ, "")
    return int(raw) if str(raw).isdigit() else None


def verify(configmaps: Iterable[Mapping[str, Any]], head: Mapping[str, Any] | None = None) -> Verdict:
    """Check the chain: every record's bytes hash to its annotation, `prev` links, seq 1..N without
    gaps, record content matches its labels, and (with `head` = status.audit) that it ends at the head."""
    by_seq: dict[int, Mapping[str, Any]] = {}
    for cm in configmaps:
        seq = _seq(cm)
        name = (cm.get("metadata") or {}).get("name")
        if seq is None:
            return Verdict(False, 0, "", None, name, "no valid modeldeploy.io/audit-seq label")
        if seq in by_seq:
            return Verdict(False, 0, "", seq, name, "two records claim this seq")
        by_seq[seq] = cm
    prev, good = "", 0
    for expected in range(1, max(by_seq, default=0) + 1):
        record = by_seq.get(expected)
        if record is None:
            return Verdict(False, good, prev, expected, None, "missing (deleted?): the chain has a gap")
        cm = record
        name = cm["metadata"].get("name")
        text = (cm.get("data") or {}).get(RECORD_KEY)
        if text is None:
            return Verdict(False, good, prev, expected, name, f"no {RECORD_KEY}")
        data = text.encode()
        digest = record_hash(data)
        stated = ((cm.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_HASH)
        try:
            record = json.loads(text)
        except ValueError:
            return Verdict(False, good, prev, expected, name, "record is not JSON")
        if canonical(record) != data:
            return Verdict(False, good, prev, expected, name, "record is not in canonical form (edited by hand?)")
        if stated != digest:
            return Verdict(
                False, good, prev, expected, name, f"content hash {digest[:16]}... != recorded {str(stated)[:16]}..."
            )
        if record.get("seq") != expected:
            return Verdict(False, good, prev, expected, name, f"record says seq {record.get('seq')}")
        if record.get("prev") != prev:
            return Verdict(False, good, prev, expected, name,
                           f"prev {str(record.get('prev'))[:16]}... does not match record {expected - 1}'s hash {prev[:16]}...")  # fmt: skip
        if not cm.get("immutable"):
            return Verdict(False, good, prev, expected, name, "the ConfigMap is not immutable (recreated by hand?)")
        prev, good = digest, expected
    if head:
        want_seq, want_hash = int(head.get("seq") or 0), str(head.get("head") or "")
        if good < want_seq:
            return Verdict(False, good, prev, good + 1, None,
                           f"status.audit says the chain has {want_seq} record(s); {want_seq - good} newest missing")  # fmt: skip
        if good >= want_seq and want_seq and (by_seq.get(want_seq) is None or _hash_of(by_seq[want_seq]) != want_hash):
            return Verdict(False, good, prev, want_seq, None, "record does not match the head hash in status.audit")
    return Verdict(True, good, prev)


def _hash_of(cm: Mapping[str, Any]) -> str:
    return record_hash(((cm.get("data") or {}).get(RECORD_KEY) or "").encode())
