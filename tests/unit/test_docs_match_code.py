"""Statements in docs/ that the code can contradict, checked against the code (feature review: doc drift).

- docs/operations.md's RBAC table lists exactly the permissions of operator/modeldeploy/rbac.py;
- docs/evaluator.md's golden-set table says which URIs a ModelDeployment accepts, and the CRD agrees
  (the evaluator run by hand reads more schemes than spec.evaluation.goldenSet.uri allows);
- docs/evaluator.md does not call a limitation open that the built-in queries have fixed.
"""

from __future__ import annotations

import pathlib
import re

import pytest

from modeldeploy import rbac
from modeldeploy.analysis import builtins
from modeldeploy.validation import validate_spec

ROOT = pathlib.Path(__file__).resolve().parents[2]
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
EVALUATOR = (ROOT / "docs" / "evaluator.md").read_text()


def _table_after(text: str, heading: str) -> list[list[str]]:
    """Rows (cells stripped) of the first Markdown table after `heading`."""
    rest = text[text.index(heading) :]
    rows, started = [], False
    for line in rest.splitlines()[1:]:
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif started:
            break
    return rows[1:]  # without the header


def _documented_rbac() -> set[tuple[str, str, str]]:
    triples = set()
    for group, resources, verbs, *_ in _table_after(OPERATIONS, "## RBAC"):
        group = "" if group.strip('"') == "" else group
        for resource in re.split(r",\s*| or ", resources):
            resource = re.sub(r"\s*\(.*?\)", "", resource).strip()
            for verb in verbs.split(","):
                triples.add((group, resource, verb.strip()))
    return triples


def test_the_rbac_table_lists_exactly_the_operators_permissions():
    in_code = {(r.api_group, r.resource, verb) for r in rbac.RULES for verb in r.verbs}
    documented = _documented_rbac()
    assert documented == in_code, {"documented, not granted": documented - in_code, "granted, not documented": in_code - documented}
    assert "rbac.PLANNED" not in OPERATIONS or rbac.PLANNED, "docs point at planned permissions that do not exist"


def _golden_rows() -> list[tuple[str, bool]]:
    rows = _table_after(EVALUATOR, "Where it can live")
    out = []
    for cells in rows:
        uris = re.findall(r"`([^`]+)`", cells[0])
        accepted = cells[1].lower().startswith("yes")
        out.extend((uri, accepted) for uri in uris)
    return out


def test_the_golden_set_table_says_which_uris_a_modeldeployment_accepts():
    rows = _golden_rows()
    assert len(rows) >= 5 and any(not ok for _, ok in rows) and any(ok for _, ok in rows)
    for uri, documented_ok in rows:
        concrete = uri.replace("CLAIM", "golden").replace("PATH", "cxr14").replace("[?size=&seed=]", "")
        spec = {"model": {"name": "m", "basePath": "s3://b/m", "version": 1}, "evaluation": {"goldenSet": {"uri": concrete}}}
        result = validate_spec(spec)
        assert result.ok == documented_ok, (uri, [str(p) for p in result.problems])


def test_no_stale_limitation_about_evaluator_traffic_in_the_builtin_queries():
    ctx = builtins.QueryContext(namespace="ns", name="md", model_name="m", stable_version=1, canary_version=2)
    excluded = 'source_workload!="md-evaluator"'
    for query in (builtins.latency_query(ctx, "1m", 0.99), builtins.error_rate_query(ctx, "1m"), builtins.requests_query(ctx, "1m")):
        assert excluded in query
    assert "do not exclude them yet" not in EVALUATOR


@pytest.mark.parametrize("doc", ["evaluator.md", "operations.md", "scenarios.md", "security.md"])
def test_docs_name_only_builtins_the_crd_knows(doc):
    from modeldeploy.spec import Builtin

    known = set(Builtin.__args__)
    text = (ROOT / "docs" / doc).read_text()
    named = set(re.findall(r"builtin: ([A-Za-z]+)", text))
    assert named <= known, named - known
