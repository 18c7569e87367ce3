"""Every malformed manifest of tests/data/invalid/, applied as kubectl does (fieldValidation=Strict).

What the CRD's schema and CEL rules can say, the API server itself refuses (the emulator enforces
them like apiextensions-apiserver): the Status must name the field the file expects. The rest (rules
only the operator's semantic layer knows: templates, regexes, image/storage combinations...) is
stored, and the real operator must set phase Invalid, a Warning Event and a Ready=False/InvalidSpec
condition naming the field — and create not one child object.

(The two files with a wrong apiVersion/kind cannot even be stored under the ModelDeployment resource;
they are left to `validate`.)
"""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

from cluster import CM, DEPLOY, DR, MD, SVC, VS, Cluster
from kubeemu.process import ApiServerHTTPError

ROOT = pathlib.Path(__file__).resolve().parents[2]
FILES = [p for p in sorted((ROOT / "tests" / "data" / "invalid").glob("*.yaml"))
         if p.stem not in ("wrong-api-version", "wrong-kind")]


@pytest.fixture
def cluster(apiserver, tmp_path):
    c = Cluster(apiserver, tmp_path)
    yield c
    c.close()


def test_api_server_or_operator_rejects_every_invalid_manifest_and_nothing_is_created(cluster):
    expected, refused = {}, {}
    for i, path in enumerate(FILES):
        doc = yaml.safe_load(path.read_text())
        field = re.search(r"^# expect: (\S+): (.*)$", path.read_text(), re.M).group(1)
        if not path.stem.startswith("name-"):
            doc["metadata"]["name"] = f"bad-{i:02d}"
        doc["metadata"]["namespace"] = cluster.namespace
        try:
            cluster.api.request("POST", f"/apis/{MD[0]}/{MD[1]}/namespaces/{cluster.namespace}/{MD[2]}", doc,
                                params={"fieldValidation": "Strict"})
        except ApiServerHTTPError as e:
            assert e.code in (400, 422), (path.stem, e.body)
            shown = "metadata.name" if field == "<root>" else field
            named = [c.get("field", "") for c in (e.body.get("details") or {}).get("causes", [])]
            assert any(shown in f or f in shown for f in named if f) or shown in e.body["message"] \
                or (e.code == 400 and f'unknown field "{shown}.' in e.body["message"]), (path.stem, e.body)
            refused[path.stem] = e.code
            continue
        expected[doc["metadata"]["name"]] = (path.stem, field)
    # both layers matter: the CRD refuses most, the operator the rules a CRD cannot express
    assert len(refused) >= 40 and len(expected) >= 15, (sorted(refused), sorted(v[0] for v in expected.values()))
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
