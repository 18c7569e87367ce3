"""docs/api-reference.md is generated from crds/ by scripts/gen_api_reference.py, complete and current."""

from __future__ import annotations

import copy
import importlib.util
import json
import re

import pytest
import yaml

from chartlib import ROOT

CRD_PATH = ROOT / "crds" / "modeldeployment.yaml"
DOC_PATH = ROOT / "docs" / "api-reference.md"


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_api_reference", ROOT / "scripts" / "gen_api_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def crd() -> dict:
    return yaml.safe_load(CRD_PATH.read_text())


def test_api_reference_is_up_to_date(gen, crd):
    expected = gen.generate(crd, "crds/modeldeployment.yaml")
    assert DOC_PATH.read_text() == expected, "docs/api-reference.md is stale: run `make docs`"


def test_check_mode_fails_on_a_stale_file(gen, tmp_path):
    stale = tmp_path / "api.md"
    stale.write_text(DOC_PATH.read_text().replace("| `paused` |", "| `pawsed` |"))
    assert gen.main(["--output", str(stale), "--check"]) == 1
    assert gen.main(["--output", str(stale)]) == 0
    assert gen.main(["--output", str(stale), "--check"]) == 0


def _fields(node: dict, path: str = ""):
    for key, sub in (node.get("properties") or {}).items():
        here = f"{path}.{key}" if path else key
        yield here, key, sub
        yield from _fields(sub, here)
        if isinstance(sub.get("items"), dict):
            yield from _fields(sub["items"], here + "[]")
        if isinstance(sub.get("additionalProperties"), dict):
            yield from _fields(sub["additionalProperties"], here + ".*")


def _section(doc: str, title: str) -> str:
    match = re.search(rf"^### `{re.escape(title)}`\n(.*?)(?=^### |\Z)", doc, flags=re.S | re.M)
    assert match, f"no section for {title}"
    return match.group(1)


def test_every_field_type_default_and_rule_is_documented(gen, crd):
    doc = DOC_PATH.read_text()
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    kind = crd["spec"]["names"]["kind"]
    count = 0
    for path, key, sub in _fields(schema):
        if path == "metadata" or path.startswith("metadata."):
            continue
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        if not parent:
            continue  # spec and status themselves are sections
        section = _section(doc, f"{kind}.{parent}")
        row = next((line for line in section.splitlines() if re.match(rf"\| (\[)?`{re.escape(key)}`", line)), None)
        assert row, f"{path} has no row in the {parent} section"
        count += 1
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        assert cells[1] == gen._cell(gen.type_of(sub)), (path, cells[1])
        if "default" in sub:
            assert json.dumps(sub["default"], separators=(", ", ": ")) in cells[3].replace("\\|", "|") or str(sub["default"]) in cells[3], path
        for value in sub.get("enum") or []:
            assert f"`{value}`" in cells[4], (path, value)
        for rule in sub.get("x-kubernetes-validations") or []:
            assert rule["message"] in cells[4] and rule["message"] in doc, (path, rule["message"])
        if sub.get("description"):
            assert cells[5] == gen._cell(sub["description"]), path
    assert count > 80, f"only {count} fields documented?"
    for column in version.get("additionalPrinterColumns") or []:
        assert f"`{column['jsonPath']}`" in doc


def test_a_new_crd_field_shows_up(gen, crd):
    changed = copy.deepcopy(crd)
    serving = changed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["serving"]
    serving["properties"]["priorityClassName"] = {"type": "string", "maxLength": 253, "default": "model-serving",
                                                  "description": "PriorityClass of the serving pods."}
    text = gen.generate(changed, "crds/modeldeployment.yaml")
    assert text != DOC_PATH.read_text()
    assert "| `priorityClassName` | string |  | `model-serving` | length <= 253 | PriorityClass of the serving pods. |" in text
