"""Golden-set loading: folder (both CSV layouts), HTTP (a real local web server), the sandbox's folder, errors that name the row."""

from __future__ import annotations

import numpy as np
import pytest
from aiohttp import web

from mdsandbox.synthetic_golden import GoldenSet, materialize
from xraymodel.evaluator.golden import GoldenSetError, https_base, load_folder, load_golden_set, parse_labels_csv
from xraymodel.findings import FINDINGS

SMALL = "sandbox://golden?size=40&seed=5&min_positives=2"


@pytest.fixture(scope="module")
def small_golden() -> GoldenSet:
    return GoldenSet.from_uri(SMALL)


@pytest.fixture
def golden_folder(tmp_path, small_golden):
    """The sandbox's layout: images/<file>.png and a wide labels.csv (one 0/1 column per finding)."""
    return small_golden.write(tmp_path / "golden")


async def test_the_sandboxs_folder_gives_the_images_the_fleet_recognises(small_golden, tmp_path):
    folder = materialize(SMALL, tmp_path)
    assert materialize(SMALL, tmp_path) == folder  # written once per uri
    data = await load_golden_set(str(folder))
    assert len(data) == 40 and data.findings == FINDINGS
    assert all(small_golden.image_id(image) == i for i, image in enumerate(data.images))
    np.testing.assert_array_equal(data.labels, small_golden.labels)
    assert data.b64[0] and len(data.fingerprint) == 16


async def test_folder_with_a_wide_labels_csv(golden_folder, small_golden, tmp_path):
    data = await load_golden_set(str(golden_folder))
    assert data.names[0] == "golden_00000.png"  # listed by bare name, found in images/
    assert data.images[3] == small_golden.image_bytes(3)
    np.testing.assert_array_equal(data.labels, small_golden.labels)
    same = await load_golden_set(f"file://{golden_folder}", str(golden_folder / "labels.csv"))
    assert same.fingerprint == data.fingerprint == (await load_golden_set(str(materialize(SMALL, tmp_path)))).fingerprint


async def test_the_evaluator_does_not_know_the_sandbox_scheme():
    """The production evaluator never imports the sandbox: sandbox:// is refused with the way out."""
    with pytest.raises(GoldenSetError, match="writes it to a folder"):
        await load_golden_set(SMALL)


def test_folder_with_a_chestxray14_labels_csv(tmp_path, small_golden):
    root = tmp_path / "cxr14"
    (root / "images").mkdir(parents=True)
    rows = ["Image Index,Finding Labels,Follow-up #"]
    for i, labels in enumerate([["Effusion", "Mass"], [], ["Hernia"]]):
        name = f"0000000{i}_000.png"
        (root / "images" / name).write_bytes(small_golden.image_bytes(i))
        rows.append(f"images/{name},{'|'.join(labels) or 'No Finding'},0")
    (root / "golden.csv").write_text("\n".join(rows) + "\n")
    data = load_folder(root, "golden.csv")
    assert data.names == ("images/00000000_000.png", "images/00000001_000.png", "images/00000002_000.png")
    assert data.positives()["Effusion"] == 1 and data.positives()["Hernia"] == 1
    assert data.labels[1].sum() == 0  # "No Finding" = all zeros
    assert data.labels[0, FINDINGS.index("Mass")] == 1


@pytest.mark.parametrize(
    "csv_text, message",
    [
        ("name,Effusion\nx.png,1\n", "no image column"),
        ("image,Effusion\nx.png,1\n", "missing ['Atelectasis'"),
        ("Image Index,Finding Labels\na.png,Effusion|Flu\n", "row 2 (a.png): unknown finding 'Flu'"),
        ("Image Index,Finding Labels\na.png,No Finding|Mass\n", "row 2 (a.png): 'No Finding' combined"),
        ("Image Index,Finding Labels\na.png,Mass\na.png,Edema\n", "row 3: image a.png listed twice"),
        ("Image Index,Finding Labels\n,Mass\n", "row 2: empty"),
        ("image," + ",".join(FINDINGS) + "\na.png," + ",".join(["0"] * 13) + ",2\n", "row 2 (a.png): Hernia must be 0 or 1"),
        ("Image Index,Finding Labels\n", "no rows"),
    ],
)
def test_bad_labels_name_the_row(csv_text, message):
    with pytest.raises(GoldenSetError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)").replace("|", r"\|")):
        parse_labels_csv(csv_text, "labels.csv")


def test_missing_or_bad_images(golden_folder):
    (golden_folder / "images" / "golden_00007.png").unlink()
    with pytest.raises(GoldenSetError, match="golden_00007.png not found"):
        load_folder(golden_folder)
    (golden_folder / "images" / "golden_00007.png").write_bytes(b"DICM not an image TF Serving decodes")
    with pytest.raises(GoldenSetError, match="not a PNG, JPEG"):
        load_folder(golden_folder)
    with pytest.raises(GoldenSetError, match="folder not found"):
        load_folder(golden_folder / "nope")


@pytest.mark.parametrize(
    "uri, env, base",
    [
        ("s3://bucket/golden/v1/", {}, "https://bucket.s3.amazonaws.com/golden/v1/"),
        ("s3://bucket", {}, "https://bucket.s3.amazonaws.com/"),
        ("s3://bucket/golden", {"AWS_ENDPOINT_URL": "http://minio:9000/"}, "http://minio:9000/bucket/golden/"),
        ("gs://bucket/golden", {}, "https://storage.googleapis.com/bucket/golden/"),
        ("https://example.org/sets/cxr", {}, "https://example.org/sets/cxr/"),
    ],
)
def test_object_store_uris_map_to_anonymous_https(uri, env, base, monkeypatch):
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert https_base(uri) == base


async def test_http_golden_set_from_a_real_web_server(golden_folder, small_golden):
    """The labels file and every image fetched over HTTP from a local server (bare names found in images/)."""
    requests: list[str] = []

    @web.middleware
    async def record(request, handler):
        requests.append(request.path)
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.router.add_static("/sets/cxr/", golden_folder)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        data = await load_golden_set(f"http://127.0.0.1:{port}/sets/cxr")
        assert len(data) == 40 and data.images[5] == small_golden.image_bytes(5)
        np.testing.assert_array_equal(data.labels, small_golden.labels)
        assert "/sets/cxr/labels.csv" in requests and "/sets/cxr/images/golden_00039.png" in requests
        with pytest.raises(GoldenSetError, match="HTTP 404"):
            await load_golden_set(f"http://127.0.0.1:{port}/sets/other")
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("uri", ["pvc://claim/golden", "ftp://host/x", "relative/folder"])
async def test_unsupported_locations(uri):
    with pytest.raises(GoldenSetError):
        await load_golden_set(uri)
