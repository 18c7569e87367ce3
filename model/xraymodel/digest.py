"""The model artifact digest that `spec.model.digest` pins (stdlib only): `modeldeploy model digest PATH`.

Definition, for a SavedModel version folder (``BASE/<version>/``: saved_model.pb, variables/, assets/,
the model card...):

    listing = for every regular file below the folder, sorted by its path relative to the folder
              (POSIX separators, compared as UTF-8 bytes), the line
              "<lower-case hex SHA-256 of the file's bytes>  <relative path>\\n"   (two spaces)
    digest  = "sha256:" + lower-case hex SHA-256 of the listing's UTF-8 bytes

which is exactly what ``cd FOLDER && find . -type f | sed 's|^\\./||' | LC_ALL=C sort | while IFS= read -r f;
do sha256sum "$f"; done | sha256sum`` prints, so the init container that checks a version before TF
Serving starts needs nothing but a POSIX shell and coreutils/BusyBox
(operator/modeldeploy/render/serving.py `digest_script`). File names, contents and the folder structure
count; timestamps, permissions and owners do not, so a copy (rclone, gsutil, a PVC restore) of an
unchanged version keeps its digest, and any changed, added, removed or renamed file changes it.
Symbolic links are refused (what they point at could change under the pin), and so are names that
`sha256sum` would escape (a newline or a backslash), an empty folder and a folder that is not one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1 << 20


class DigestError(ValueError):
    """A folder that has no well-defined digest."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def listing(folder: str | os.PathLike[str]) -> str:
    """The sorted "<sha256>  <path>" lines the digest is taken over (module docstring)."""
    root = Path(folder)
    if not root.is_dir():
        raise DigestError(f"{root} is not a folder")
    entries: list[tuple[bytes, str]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                raise DigestError(f"{root}: {rel} is a symbolic link (not allowed in a pinned version)")
            if "\n" in rel or "\\" in rel:
                raise DigestError(f"{root}: {rel!r} has a newline or backslash in its name")
        for name in filenames:
            full = Path(dirpath) / name
            if full.is_file():
                rel = full.relative_to(root).as_posix()
                entries.append((rel.encode(), f"{file_sha256(full)}  {rel}\n"))
    if not entries:
        raise DigestError(f"{root} has no files")
    return "".join(line for _, line in sorted(entries))


def model_digest(folder: str | os.PathLike[str]) -> str:
    """``sha256:<hex>`` of a model version folder (module docstring)."""
    return "sha256:" + hashlib.sha256(listing(folder).encode()).hexdigest()
