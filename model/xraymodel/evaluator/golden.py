"""Golden-set loading: labelled chest X-ray images as bytes (never decoded here) plus 14-finding labels.

Where a golden set can live (spec.evaluation.goldenSet {uri, labels}):

* a folder: an absolute path or ``file:///path`` (the operator mounts ``pvc://CLAIM/PATH`` at
  ``/golden/PATH`` and passes that path) — the primary, recommended way;
* ``http(s)://host/prefix/``: the labels file and every image it names are fetched over HTTPS
  (anonymous GET: a web server, a public bucket, a bucket website);
* ``s3://bucket/prefix`` and ``gs://bucket/prefix``: mapped to the stores' public HTTPS endpoints
  (``https://bucket.s3.amazonaws.com/prefix``, or ``$AWS_ENDPOINT_URL_S3``/``$AWS_ENDPOINT_URL``
  path-style; ``https://storage.googleapis.com/bucket/prefix``) and fetched ANONYMOUSLY. Private
  buckets need signed requests (boto3 / google-auth are not in the evaluator image): sync the golden
  set to a PVC and use ``pvc://`` instead;
* not ``sandbox://golden``: the sandbox writes its synthetic set to a folder and gives the evaluator
  that path (mdsandbox.synthetic_golden.materialize, like a kubelet mounting a volume), so this
  production service never imports the sandbox.

The labels file (``labels``: a name relative to the golden set, or an absolute path/URL) is a CSV in
either of two layouts:

* ChestX-ray14: columns "Image Index" and "Finding Labels" ("Effusion|Mass"; "No Finding" = all
  zeros), parsed by xraymodel.findings like the training data;
* wide: an image column ("Image Index", "image", "path", "filename" or "file") and one 0/1 column
  per finding, named exactly as xraymodel.findings.FINDINGS (the layout GoldenSet.write produces).

Optional demographic columns, in either layout, make the golden set gateable BY SUBGROUP online
(builtin ``worstSubgroup``): ChestX-ray14's own "Patient Gender" (M/F), "Patient Age" (years, "58"
or the old release's "058Y"; grouped in xraymodel.subgroups.AGE_BANDS) and "View Position" (AP/PA/LL),
plus "Site" (a label-safe name: letters, digits, ``_.-``). An empty cell is "unknown" (not in any
subgroup); anything else unparseable is an error naming the row and column. Per attribute, the
subgroups with at least MIN_SUBGROUP_IMAGES images are scored on the SAME findings, those with
positives and negatives in each of them (``GoldenData.subgroups``), as the offline report does.

Image names are paths relative to the golden set; a bare file name is also looked up below it
(e.g. in ``images/``). Images must be PNG, JPEG, GIF or BMP (what TF Serving's decode_image takes);
they are sent as base64 without decoding, so the evaluator needs no imaging library.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from xraymodel.findings import FINDINGS, UnknownFindingError, multi_hot, parse_finding_labels
from xraymodel.subgroups import AGE_BANDS, COLUMNS as ATTRIBUTE_COLUMNS, MIN_IMAGES as MIN_SUBGROUP_IMAGES, UNKNOWN

IMAGE_COLUMNS = ("Image Index", "image", "path", "filename", "file")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
MAX_IMAGE_BYTES = 32 * 1024 * 1024
FETCH_CONCURRENCY = 8
ATTRIBUTES = tuple(ATTRIBUTE_COLUMNS)  # sex, age_band, view, site (the offline report's names)
SEXES = {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}
VIEWS = ("AP", "PA", "LL")
MAX_AGE = 120
_SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_AGE = re.compile(r"^(\d+(?:\.\d*)?)\s*[Yy]?$")


class GoldenSetError(ValueError):
    """The golden set cannot be loaded; the message names the file, row or URL."""


@dataclass(frozen=True)
class GoldenData:
    """N labelled images: names, encoded bytes (and their base64), labels [N, 14] in FINDINGS order."""

    source: str
    names: tuple[str, ...]
    images: tuple[bytes, ...]
    labels: np.ndarray  # int8 [N, len(findings)]
    findings: tuple[str, ...] = FINDINGS
    # attribute (ATTRIBUTES) -> one value per image ("M", "60+", "AP", "SITE-A"; UNKNOWN when empty);
    # only the attributes whose column the labels file has
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.names) != len(self.images) or self.labels.shape != (len(self.names), len(self.findings)):
            raise GoldenSetError(f"{self.source}: {len(self.names)} names, {len(self.images)} images, labels {self.labels.shape}")
        if not self.names:
            raise GoldenSetError(f"{self.source}: the golden set is empty")
        for attribute, values in self.attributes.items():
            if attribute not in ATTRIBUTES or len(values) != len(self.names):
                raise GoldenSetError(f"{self.source}: attribute {attribute!r} with {len(values)} values for {len(self.names)} images")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def b64(self) -> tuple[str, ...]:
        cached = self.__dict__.get("_b64")
        if cached is None:
            cached = tuple(base64.b64encode(image).decode("ascii") for image in self.images)
            object.__setattr__(self, "_b64", cached)
        return cached

    @property
    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) over names, image bytes and labels: which golden set this was."""
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            digest = hashlib.sha256()
            for name, image in zip(self.names, self.images):
                digest.update(name.encode())
                digest.update(hashlib.sha256(image).digest())
            digest.update(np.ascontiguousarray(self.labels, dtype=np.int8).tobytes())
            for attribute in sorted(self.attributes):  # none: the same fingerprint as before they existed
                digest.update(("\x1f".join([attribute, *self.attributes[attribute]])).encode())
            cached = digest.hexdigest()[:16]
            object.__setattr__(self, "_fingerprint", cached)
        return cached

    def positives(self) -> dict[str, int]:
        return {f: int(self.labels[:, k].sum()) for k, f in enumerate(self.findings)}

    @property
    def subgroups(self) -> tuple[Subgroup, ...]:
        """The golden set's subgroups per attribute (module docstring), cached; () without demographics."""
        cached = self.__dict__.get("_subgroups")
        if cached is None:
            cached = subgroup_layout(self.labels, self.attributes)
            object.__setattr__(self, "_subgroups", cached)
        return cached


@dataclass(frozen=True)
class Subgroup:
    """One subgroup of one attribute (``view`` = ``AP``) of the golden set and what it can be scored on.

    ``findings``: indices of the findings its mean AUROC averages (the attribute's common findings;
    empty when the subgroup has fewer than MIN_SUBGROUP_IMAGES images, or the attribute fewer than two
    such subgroups). ``positives``/``negatives``: the FEWEST positive/negative images of any of those
    findings within the subgroup (what limits its AUROC; 0 when it is not scored)."""

    attribute: str
    value: str
    mask: np.ndarray  # bool [N]
    findings: tuple[int, ...]
    positives: int
    negatives: int

    @property
    def images(self) -> int:
        return int(self.mask.sum())


def subgroup_layout(labels: np.ndarray, attributes: Mapping[str, tuple[str, ...]]) -> tuple[Subgroup, ...]:
    """Per attribute: its known subgroups, the common findings of the scored ones, the limiting counts."""
    y = np.asarray(labels).astype(bool)
    out: list[Subgroup] = []
    for attribute in ATTRIBUTES:
        if attribute not in attributes:
            continue
        values = np.asarray(attributes[attribute])
        masks = {str(v): values == v for v in sorted(set(values.tolist())) if v != UNKNOWN}
        scored = {v: m for v, m in masks.items() if m.sum() >= MIN_SUBGROUP_IMAGES}
        common: tuple[int, ...] = ()
        if len(scored) >= 2:
            common = tuple(
                k for k in range(y.shape[1]) if all(0 < y[m, k].sum() < m.sum() for m in scored.values())
            )
        for value, mask in masks.items():
            findings = common if value in scored else ()
            pos = [int(y[mask, k].sum()) for k in findings]
            neg = [int(mask.sum()) - p for p in pos]
            out.append(Subgroup(attribute, value, mask, findings, min(pos, default=0), min(neg, default=0)))
    return tuple(out)


def parse_attribute(attribute: str, cell: str) -> str:
    """One demographic cell as its subgroup value (UNKNOWN when empty); ValueError says what is accepted."""
    cell = cell.strip()
    if not cell:
        return UNKNOWN
    if attribute == "sex":
        if cell.upper() not in SEXES:
            raise ValueError(f"must be M or F (empty = unknown), got {cell!r}")
        return SEXES[cell.upper()]
    if attribute == "age_band":
        match = _AGE.match(cell)
        if match is None or not 0 <= float(match.group(1)) <= MAX_AGE:
            raise ValueError(f"must be an age in years 0..{MAX_AGE} ('58' or '058Y'; empty = unknown), got {cell!r}")
        years = float(match.group(1))
        return next(name for low, high, name in AGE_BANDS if low <= years < high)
    if attribute == "view":
        if cell.upper() not in VIEWS:
            raise ValueError(f"must be one of {', '.join(VIEWS)} (empty = unknown), got {cell!r}")
        return cell.upper()
    if not _SITE.match(cell):
        raise ValueError(f"must be a name of letters, digits, '_', '.', '-' (at most 63; empty = unknown), got {cell!r}")
    return cell.upper()


# --------------------------------------------------------------------------- labels CSV
def parse_labels_csv(text: str, where: str = "labels.csv") -> list[tuple[str, list[float]]]:
    """(image name, 14 labels) per row of a ChestX-ray14-style or wide labels CSV (see module doc)."""
    return parse_labels(text, where)[0]


def parse_labels(text: str, where: str = "labels.csv") -> tuple[list[tuple[str, list[float]]], dict[str, tuple[str, ...]]]:
    """The rows (image name, 14 labels) and the demographic attributes (one value per row) of a labels
    CSV; only the attributes whose column is present (see module doc)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    columns = [(c or "").strip() for c in (reader.fieldnames or [])]
    image_column = next((c for c in IMAGE_COLUMNS if c in columns), None)
    if image_column is None:
        raise GoldenSetError(f"{where}: no image column (one of {list(IMAGE_COLUMNS)}); found {columns}")
    chestxray14 = "Finding Labels" in columns
    if not chestxray14:
        missing = [f for f in FINDINGS if f not in columns]
        if missing:
            raise GoldenSetError(
                f"{where}: needs a 'Finding Labels' column or one 0/1 column per finding; missing {missing}"
            )
    present = {a: c for a, c in ATTRIBUTE_COLUMNS.items() if c in columns}
    attributes: dict[str, list[str]] = {a: [] for a in present}
    rows: list[tuple[str, list[float]]] = []
    seen: set[str] = set()
    for row_number, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(row.values()):
            continue
        here = f"{where} row {row_number}"
        name = row.get(image_column, "")
        if not name:
            raise GoldenSetError(f"{here}: empty {image_column!r}")
        if name in seen:
            raise GoldenSetError(f"{here}: image {name} listed twice")
        seen.add(name)
        if chestxray14:
            try:
                vector = multi_hot(parse_finding_labels(row.get("Finding Labels", "")), FINDINGS)
            except UnknownFindingError as exc:
                raise GoldenSetError(f"{here} ({name}): {exc}") from None
        else:
            vector = []
            for finding in FINDINGS:
                cell = row.get(finding, "")
                try:
                    value = float(cell)
                except ValueError:
                    value = -1.0
                if value not in (0.0, 1.0):
                    raise GoldenSetError(f"{here} ({name}): {finding} must be 0 or 1, got {cell!r}")
                vector.append(value)
        for attribute, column in present.items():
            try:
                attributes[attribute].append(parse_attribute(attribute, row.get(column, "")))
            except ValueError as exc:
                raise GoldenSetError(f"{here} ({name}): {column} {exc}") from None
        rows.append((name, vector))
    if not rows:
        raise GoldenSetError(f"{where}: no rows")
    return rows, {a: tuple(v) for a, v in attributes.items()}


def check_image(data: bytes, where: str) -> bytes:
    if data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"\xff\xd8\xff") or data.startswith((b"GIF87a", b"GIF89a")) \
            or (data.startswith(b"BM") and len(data) > 26):  # fmt: skip
        if len(data) > MAX_IMAGE_BYTES:
            raise GoldenSetError(f"{where}: {len(data)} bytes is larger than {MAX_IMAGE_BYTES}")
        return data
    raise GoldenSetError(f"{where}: not a PNG, JPEG, GIF or BMP image (TF Serving's decode_image would reject it)")


def _assemble(
    source: str, rows: list[tuple[str, list[float]]], images: list[bytes], attributes: Mapping[str, tuple[str, ...]] | None = None
) -> GoldenData:
    labels = np.asarray([vector for _, vector in rows], dtype=np.int8).reshape(len(rows), len(FINDINGS))
    return GoldenData(source, tuple(name for name, _ in rows), tuple(images), labels, attributes=dict(attributes or {}))


# --------------------------------------------------------------------------- folder
def load_folder(root: str | Path, labels: str = "labels.csv") -> GoldenData:
    """A golden set in a local folder (or a mounted PVC)."""
    root = Path(root)
    if not root.is_dir():
        raise GoldenSetError(f"{root}: golden-set folder not found")
    labels_path = Path(labels) if os.path.isabs(labels) else root / labels
    try:
        text = labels_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GoldenSetError(f"{labels_path}: cannot read the labels file: {exc}") from None
    rows, attributes = parse_labels(text, str(labels_path))
    by_basename: dict[str, Path] | None = None
    images = []
    for name, _ in rows:
        path = root / name
        if not path.is_file():
            if by_basename is None:
                by_basename = {}
                for p in root.rglob("*"):
                    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                        by_basename.setdefault(p.name, p)
            path = by_basename.get(Path(name).name)
            if path is None:
                raise GoldenSetError(f"{labels_path}: image {name} not found below {root}")
        images.append(check_image(path.read_bytes(), str(path)))
    return _assemble(str(root), rows, images, attributes)


# --------------------------------------------------------------------------- object stores over HTTPS
def https_base(uri: str) -> str:
    """The anonymous HTTPS base URL of an http(s)://, s3:// or gs:// golden-set URI (ends with '/')."""
    parts = urlsplit(uri)
    prefix = parts.path.strip("/")
    if parts.scheme in ("http", "https"):
        base = f"{parts.scheme}://{parts.netloc}/{prefix}" if prefix else f"{parts.scheme}://{parts.netloc}"
    elif parts.scheme == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            base = f"{endpoint.rstrip('/')}/{parts.netloc}/{prefix}".rstrip("/")
        else:
            base = f"https://{parts.netloc}.s3.amazonaws.com/{prefix}".rstrip("/")
    elif parts.scheme == "gs":
        base = f"https://storage.googleapis.com/{parts.netloc}/{prefix}".rstrip("/")
    else:
        raise GoldenSetError(f"{uri}: unsupported golden-set URI scheme {parts.scheme!r}")
    if not parts.netloc:
        raise GoldenSetError(f"{uri}: no host or bucket")
    return base + "/"


async def load_http(uri: str, labels: str = "labels.csv", *, timeout: float = 30.0) -> GoldenData:
    """Fetch the labels file and every image it names with anonymous HTTPS GETs."""
    import httpx

    base = https_base(uri)
    labels_url = labels if labels.startswith(("http://", "https://")) else base + labels.lstrip("/")
    sem = asyncio.Semaphore(FETCH_CONCURRENCY)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client:

        async def get(url: str) -> bytes | None:
            async with sem:
                try:
                    resp = await client.get(url)
                except httpx.HTTPError as exc:
                    raise GoldenSetError(f"{url}: {type(exc).__name__}: {exc}") from None
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                hint = " (private bucket? sync the golden set to a PVC: pvc://)" if resp.status_code in (401, 403) else ""
                raise GoldenSetError(f"{url}: HTTP {resp.status_code}{hint}")
            return resp.content

        text = await get(labels_url)
        if text is None:
            raise GoldenSetError(f"{labels_url}: HTTP 404 (labels file)")
        rows, attributes = parse_labels(text.decode("utf-8"), labels_url)

        async def image(name: str) -> bytes:
            candidates = [base + name.lstrip("/")]
            if "/" not in name:
                candidates.append(base + "images/" + name)
            for url in candidates:
                data = await get(url)
                if data is not None:
                    return check_image(data, url)
            raise GoldenSetError(f"{labels_url}: image {name} not found ({candidates[0]}: HTTP 404)")

        images = await asyncio.gather(*(image(name) for name, _ in rows))
    return _assemble(base, rows, list(images), attributes)


# --------------------------------------------------------------------------- dispatch
async def load_golden_set(uri: str, labels: str = "labels.csv") -> GoldenData:
    """Load from any supported location (module docstring); GoldenSetError names what is wrong."""
    if uri.startswith("sandbox://"):
        raise GoldenSetError(f"{uri}: the sandbox's synthetic set is not built into the evaluator; the sandbox "
                             "writes it to a folder and passes that path (mdsandbox.synthetic_golden.materialize)")
    if uri.startswith("file://"):
        return await asyncio.to_thread(load_folder, urlsplit(uri).path, labels)
    if uri.startswith("/"):
        return await asyncio.to_thread(load_folder, uri, labels)
    if uri.startswith(("http://", "https://", "s3://", "gs://")):
        return await load_http(uri, labels)
    if uri.startswith("pvc://"):
        raise GoldenSetError(f"{uri}: pvc:// is mounted by the operator; the evaluator expects the mounted path")
    raise GoldenSetError(f"{uri}: unsupported golden-set location (folder path, file://, http(s)://, s3://, gs://)")
