"""Every malformed manifest of tests/data/invalid/ applied to a real operator: phase Invalid, a Warning
Event and a Ready=False/InvalidSpec condition naming the field — and not one child object created.

(The two files with a wrong apiVersion/kind cannot even be stored under the ModelDeployment resource,
and a real API server rejects an upper-case name itself, so those three are left to `validate`.)
"""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

from cluster import CM, DEPLOY, DR, MD, SVC, VS, Cluster

ROOT = pathlib.Path(__file__).resolve().parents[2]
FILES = [p for p in sorted((ROOT / "tests" / "data" / "invalid").glob("*.yaml"))
         if p.stem not in ("wrong-api-version", "wrong-kind", "name-uppercase")]


@pytest.fixture
def cluster(apiserver, tmp_path):
    c = Cluster(apiserver, tmp_path)
    yield c
    c.close()


def test_operator_rejects_every_invalid_manifest_and_touches_nothing(cluster):
    expected = {}
    for i, path in enumerate(FILES):
        doc = yaml.safe_load(path.read_text())
        field = re.search(r"^# expect: (\S+): (.*)$", path.read_text(), re.M).group(1)
        if not path.stem.startswith("name-"):
            doc["metadata"]["name"] = f"bad-{i:02d}"
        cluster.apply_md(doc)
        expected[doc["metadata"]["name"]] = (path.stem, field)
    cluster.operator.start()

    def all_invalid():
        items = cluster.list(MD)
        return len(items) == len(expected) and all((o.get("status") or {}).get("phase") == "Invalid" for o in items)

    cluster.wait(all_invalid, timeout=90, what=f"{len(expected)} ModelDeployments Invalid")
    # the status is written first, the Event right after it
    cluster.wait(lambda: len([e for e in cluster.events() if e["reason"] == "InvalidSpec"]) >= len(expected), timeout=20,
                 what="one InvalidSpec Event each")
    events = cluster.events()
    for md in cluster.list(MD):
        name = md["metadata"]["name"]
        stem, field = expected[name]
        ready = next(c for c in md["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec"), stem
        shown_field = field if field != "<root>" else "metadata.name"
        assert field in ready["message"] or shown_field in ready["message"], (stem, ready["message"])
        warnings = [e for e in events if e["involvedObject"]["name"] == name and e["reason"] == "InvalidSpec"]
        assert len(warnings) == 1 and warnings[0]["type"] == "Warning", stem
    for kind in (DEPLOY, CM, SVC, VS, DR):
        assert cluster.list(kind) == [], kind
    assert len(expected) >= 40
