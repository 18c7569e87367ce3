"""Model artifact pinning: the digest definition, `modeldeploy model digest`, the init containers that
check it, and the per-version memory that keeps the stable's pods unchanged when a canary is pinned.

The shell check the init container runs (`serving.digest_script`) is executed here for real with
/bin/sh on real folders, and must agree with the Python definition (`xraymodel.digest`) and with a
third computation, the plain coreutils pipeline `find | sort | sha256sum`.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

from modeldeploy import rollout
from modeldeploy.plans import VersionPlan
from modeldeploy.render import serving
from modeldeploy.validation import validate_manifest
from test_render import ROOT, load_target
from xraymodel.digest import DigestError, listing, model_digest

DIGEST = "sha256:" + "ab" * 32


def savedmodel(root: pathlib.Path) -> pathlib.Path:
    """A folder shaped like an exported version (names with spaces and unicode, nested variables)."""
    (root / "variables").mkdir(parents=True)
    (root / "assets").mkdir()
    (root / "saved_model.pb").write_bytes(b"\x08\x01graph" * 100)
    (root / "variables" / "variables.index").write_bytes(b"index")
    (root / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(4096))
    (root / "assets" / "labels ä.txt").write_text("Atelectasis\nCardiomegaly\n")
    (root / "model_card.json").write_text("{}")
    return root


def shell_digest(folder: pathlib.Path) -> str:
    """The coreutils pipeline the docs give, run by bash."""
    script = "cd \"$1\" && find . -type f | sed 's|^\\./||' | LC_ALL=C sort | while IFS= read -r f; do sha256sum \"$f\"; done | sha256sum | cut -d ' ' -f 1"
    out = subprocess.run(["bash", "-c", script, "_", str(folder)], capture_output=True, text=True, check=True).stdout
    return "sha256:" + out.strip()


def run_check(folder: str, expected: str, tmp_path: pathlib.Path) -> tuple[int, str, str]:
    log = tmp_path / "termination-log"
    proc = subprocess.run(["/bin/sh", "-c", serving.digest_script(folder, expected)], capture_output=True, text=True,
                          env={**os.environ, "TERMINATION_LOG": str(log)})  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr, log.read_text() if log.exists() else ""


def test_the_digest_is_the_sorted_sha256_listing(tmp_path):
    folder = savedmodel(tmp_path / "3")
    lines = listing(folder).splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == sorted(
        [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()], key=str.encode)
    assert lines[0].split("  ")[0] == hashlib.sha256((folder / lines[0].split("  ", 1)[1]).read_bytes()).hexdigest()
    assert model_digest(folder) == "sha256:" + hashlib.sha256(listing(folder).encode()).hexdigest()
    assert model_digest(folder) == shell_digest(folder)  # coreutils agree


def test_what_changes_the_digest_and_what_does_not(tmp_path):
    folder = savedmodel(tmp_path / "3")
    before = model_digest(folder)
    os.utime(folder / "saved_model.pb", (1, 1))
    (folder / "model_card.json").chmod(0o600)
    assert model_digest(folder) == before  # timestamps and permissions do not count
    (folder / "variables" / "variables.index").write_bytes(b"indeX")
    assert model_digest(folder) != before
    (folder / "variables" / "variables.index").write_bytes(b"index")
    assert model_digest(folder) == before
    (folder / "variables" / "variables.index").rename(folder / "variables" / "variables.idx")
    assert model_digest(folder) != before


@pytest.mark.parametrize("make, message", [
    (lambda f: (f / "link").symlink_to(f / "saved_model.pb"), "symbolic link"),
    (lambda f: (f / "bad\\name").write_text("x"), "backslash"),
])  # fmt: skip
def test_folders_without_a_well_defined_digest_are_refused(tmp_path, make, message):
    folder = savedmodel(tmp_path / "3")
    make(folder)
    with pytest.raises(DigestError, match=message):
        model_digest(folder)
    with pytest.raises(DigestError, match="no files"):
        model_digest((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_the_cli_prints_the_digest(tmp_path):
    folder = savedmodel(tmp_path / "3")
    proc = subprocess.run([sys.executable, "-m", "modeldeploy.cli", "model", "digest", str(folder)],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == model_digest(folder)
    (folder / "link").symlink_to(folder / "saved_model.pb")
    bad = subprocess.run([sys.executable, "-m", "modeldeploy.cli", "model", "digest", str(folder)],
                         capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert bad.returncode == 2 and "symbolic link" in bad.stderr


def test_the_init_container_script_passes_the_pinned_version_and_fails_an_overwritten_one(tmp_path):
    folder = savedmodel(tmp_path / "models" / "3")
    pinned = model_digest(folder)
    rc, out, log = run_check(str(folder), pinned, tmp_path)
    assert rc == 0 and f"model digest ok: {folder} is {pinned}" in out and log == ""
    (folder / "saved_model.pb").write_bytes(b"a different graph, same version number")
    rc, out, log = run_check(str(folder), pinned, tmp_path)
    assert rc == 1
    assert log.startswith(f"ModelDigestMismatch: model version folder {folder} has digest sha256:")
    assert f"spec.model.digest pins {pinned}" in log and "overwritten" in log
    rc, _, log = run_check(str(tmp_path / "models" / "4"), pinned, tmp_path)
    assert rc == 1 and "version folder" in log and "is missing" in log


def test_a_pvc_version_is_checked_in_the_tf_serving_image_before_it_starts():
    target = load_target(model__basePath="pvc://model-store/resnet50", model__credentialsSecret=None, model__s3=None,
                         serving__gpu={"count": 0}, serving__batching=None)  # fmt: skip
    pod = serving.deployment(target, VersionPlan(3, "canary", 1, digest=DIGEST))["spec"]["template"]
    (init,) = pod["spec"]["initContainers"]
    main = pod["spec"]["containers"][0]
    assert init["name"] == "model-digest" and init["image"] == main["image"] == target.spec.serving.cpu_image
    assert init["command"][:2] == ["/bin/sh", "-c"] and "dir=/models/resnet50/3" in init["command"][2]
    assert f"expected={DIGEST}" in init["command"][2]
    assert {"name": "model-store", "mountPath": "/models", "readOnly": True} in init["volumeMounts"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["metadata"]["annotations"]["modeldeploy.io/model-digest"] == DIGEST
    # without a pinned digest: no init container at all
    assert "initContainers" not in serving.deployment(target, VersionPlan(3, "canary", 1))["spec"]["template"]["spec"]


def test_a_copied_version_is_checked_by_the_same_init_container_after_the_copy():
    target = load_target(model__digest=DIGEST)  # s3://: copied by rclone
    (init,) = serving.deployment(target, VersionPlan(3, "canary", 2, digest=DIGEST))["spec"]["template"]["spec"]["initContainers"]
    assert init["name"] == "model-sync" and init["image"].startswith("rclone/rclone:")
    script = init["command"][2]
    assert init["command"][:2] == ["/bin/sh", "-c"] and "args" not in init
    assert script.startswith("rclone copy :s3:models/resnet50/3") and "dir=/models/3" in script
    assert script.index("rclone copy") < script.index("sha256sum")
    # gs:// with a digest is copied too (Auto): only a local copy can be checked before TF Serving reads it
    gs = load_target(model__basePath="gs://bucket/resnet50", model__s3=None, model__digest=DIGEST)
    assert gs.spec.model.syncs
    (gs_init,) = serving.deployment(gs, VersionPlan(3, "canary", 1, digest=DIGEST))["spec"]["template"]["spec"]["initContainers"]
    assert gs_init["name"] == "model-sync" and ":gcs:bucket/resnet50/3" in gs_init["command"][2]


def test_a_digest_on_a_store_read_directly_is_refused():
    doc = {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "m", "namespace": "ns"},
           "spec": {"model": {"name": "m", "basePath": "gs://bucket/m", "version": 2, "digest": DIGEST,
                              "sync": {"mode": "Direct"}}}}  # fmt: skip
    result = validate_manifest(doc)
    assert not result.ok and any(p.path == "spec.model.digest" and "Direct" in p.message for p in result.problems)
    doc["spec"]["model"]["digest"] = "md5:abc"
    assert any(p.path == "spec.model.digest" for p in validate_manifest(doc).problems)


def test_each_version_keeps_its_own_digest_through_a_rollout():
    """The stable's pods must not change when the spec pins the NEXT version's digest."""
    v2 = load_target(model__version=2, model__digest=DIGEST).spec
    st = {"stableVersion": 2}
    st["modelDigests"] = rollout.pinned_digests(v2, st)
    assert st["modelDigests"] == {"2": DIGEST}
    other = "sha256:" + "cd" * 32
    v3 = load_target(model__version=3, model__digest=other).spec
    st.update(canaryVersion=3)
    st["modelDigests"] = rollout.pinned_digests(v3, st)
    versions, _ = rollout.plans(v3, st)
    assert {p.version: p.digest for p in versions} == {2: DIGEST, 3: other}
    # v3 promoted, v2 drained and gone: only v3's digest is remembered
    st = {"stableVersion": 3, "modelDigests": st["modelDigests"]}
    assert rollout.pinned_digests(v3, st) == {"3": other}
