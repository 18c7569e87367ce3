"""Nothing half-written: outputs are built in a hidden sibling directory and renamed into place.

``staged_directory(final)`` yields a temporary directory next to ``final``; when the block ends
without an exception the directory is renamed to ``final`` in one step (TF Serving, which scans
BASE for numeric version folders, never sees a partial version: ``.3.tmp-...`` is not a number).
On any exception the temporary directory is removed and ``final`` is untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path


class OutputExistsError(FileExistsError):
    """The destination already exists (versions and runs are immutable)."""


def _remove_quietly(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def staged_directory(final: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name, rename it to ``final`` on success."""
    final = Path(final)
    if final.exists() and not replace:
        raise OutputExistsError(f"{final} already exists; refusing to overwrite it")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        _remove_quietly(staging)
        raise
    publish_directory(staging, final, replace=replace)


def publish_directory(staging: Path, final: Path, *, replace: bool = False) -> None:
    """Rename a finished staging directory to ``final`` (moving an old one aside first if replacing)."""
    if final.exists():
        if not replace:
            _remove_quietly(staging)
            raise OutputExistsError(f"{final} already exists; refusing to overwrite it")
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
        os.rename(staging, final)
        _remove_quietly(old)
    else:
        os.rename(staging, final)


def write_bytes_atomically(path: str | Path, content: bytes) -> Path:
    """Write a file via a temporary file in the same directory and os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path
