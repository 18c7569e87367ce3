"""The sandbox's built-in synthetic golden set (``sandbox://golden``) and its simulated model outputs.

A golden set is N chest X-ray "images" with labels for the 14 ChestX-ray14 findings. Here the
images are tiny valid PNGs (16x16, 8-bit grey) whose first pixel row spells ``MDGS`` followed by
the image id, the golden-set seed and size: the simulated TF Serving fleet decodes that row to know
which golden image it was sent, so whatever the online evaluator does with the bytes (b64, files,
batches) it sees exactly the configured behaviour. Any other decodable image (JPEG/PNG/GIF/BMP
magic) maps to a deterministic "virtual" image from the SHA-256 of its bytes; anything else is not
an image (`InvalidImage`, which the fleet turns into TF Serving's 400).

Labels: each finding has exactly ``max(min_positives, round(prevalence * N))`` positives, chosen by
a seeded permutation. Prevalences are the NIH ChestX-ray14 ones (112,120 images; Hernia 0.2 %,
Infiltration 17.7 %); ``min_positives`` (default 10) enriches the rare findings so that every
per-finding AUROC is defined and stable — the sandbox golden set is deliberately enriched, as
real golden sets for rare findings are.

Predictions (binormal model): for a version with mean AUROC ``accuracy``, finding k gets a target
AUROC ``a_k = accuracy + f * offset_k`` (offsets follow CheXNet's relative per-finding difficulty,
zero mean, scaled down near 0.5/1 so every a_k stays inside (0.5, 0.995)), and an image's latent
score is ``z = mu_k * label + noise`` with ``mu_k`` chosen so the class-conditional normals have
AUROC a_k (``mu = sqrt(2) * Phi^-1(a)``). The noise is STRATIFIED: within each class the noise
values are exactly the normal quantiles ``Phi^-1((i + 0.5) / n)``, dealt to images by a
version-seeded ranking (correlated across versions, ``correlation`` = 0.6, like real models of the
same family), and ``mu_k`` is calibrated by bisection on that grid so the EMPIRICAL AUROC on the
golden set equals a_k up to grid resolution. So the measured mean AUROC matches ``accuracy`` to
about 1e-3 rather than the ±0.015 that random noise would give with 10 positives.
``finding_accuracy`` pins chosen findings' a_k instead (the others move so the mean stays ``accuracy``):
a version whose mean AUROC holds while one finding collapses.
``subgroup_accuracy`` ({"view": {"AP": 0.72}}, one subgroup) makes ONE demographic subgroup worse
(or better) while every finding's AUROC over all images, hence the mean, stays at its target: within
the subgroup, finding k's separation is calibrated (bisection on the empirical AUROC of the
subgroup's own images) to ``a_k + (subgroup target - accuracy)``; the other images' separation is then
calibrated so the finding's AUROC over ALL images is still a_k. A version whose mean AUROC holds
while it reads AP films badly.
Probability = sigmoid(logit(prevalence_k) + z) + ``output_shift``, clipped to [0, 1] and rounded to
float32 (TF Serving's output dtype). The shift moves the whole prediction distribution (PSI rises)
while ranks, hence AUROC, stay put except where clipping creates ties.

Demographics: every image also has a sex, an age, an AP/PA view and a site (exact shares per golden
set, dealt by a seeded permutation independent of the labels: DEMOGRAPHICS), written to labels.csv as
ChestX-ray14's "Patient Gender", "Patient Age", "View Position" and a "Site" column, so the online
evaluator can score subgroups (its ``subgroup_auroc_mean``).

Everything is deterministic per (seed, version, image id); ``version`` is any string ("3").
``GoldenSet.from_uri("sandbox://golden")`` is the default set (500 images, seed 0);
``sandbox://golden?size=200&seed=3`` picks another — fleet and evaluator must use the same uri.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from xraymodel.findings import FINDINGS  # the one list of findings, in model output order

URI = "sandbox://golden"
# Image counts per finding in the NIH ChestX-ray14 release (Data_Entry_2017, 112,120 images).
_NIH_COUNTS = (11559, 2776, 13317, 19894, 5782, 6331, 1431, 5302, 4667, 2303, 2516, 1686, 3385, 227)
_NIH_TOTAL = 112120
PREVALENCE: dict[str, float] = {f: c / _NIH_TOTAL for f, c in zip(FINDINGS, _NIH_COUNTS)}
# CheXNet's per-finding AUROCs (Rajpurkar et al. 2017), used only for the RELATIVE difficulty.
_CHEXNET_AUROC = (
    0.8094,
    0.9248,
    0.8638,
    0.7345,
    0.8676,
    0.7802,
    0.7680,
    0.8887,
    0.7901,
    0.8878,
    0.9371,
    0.8047,
    0.8062,
    0.9164,
)
_OFFSETS = np.array(_CHEXNET_AUROC) - np.mean(_CHEXNET_AUROC)
AUC_CEILING = 0.995

# Exact shares of each attribute's values (ChestX-ray14: 56 % male, ~40 % AP films; age bands as in
# xraymodel.subgroups.AGE_BANDS, each value followed by the age range drawn from).
DEMOGRAPHICS: dict[str, tuple[tuple[str, float], ...]] = {
    "Patient Gender": (("M", 0.56), ("F", 0.44)),
    "Patient Age": (("0-17", 0.10), ("18-39", 0.27), ("40-59", 0.36), ("60+", 0.27)),
    "View Position": (("PA", 0.60), ("AP", 0.40)),
    "Site": (("SITE-A", 0.50), ("SITE-B", 0.30), ("SITE-C", 0.20)),
}
_AGE_RANGES = {"0-17": (2, 17), "18-39": (18, 39), "40-59": (40, 59), "60+": (60, 89)}
IMAGE_SIZE = 16
_MAGIC = b"MDGS"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ND = NormalDist()


class InvalidImage(ValueError):
    """The bytes are not an image TF Serving's decode_image would accept."""


def _stable_int(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _quantiles(n: int) -> np.ndarray:
    return np.array([_ND.inv_cdf((i + 0.5) / n) for i in range(n)]) if n else np.zeros(0)


def empirical_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score_pos > score_neg) + 0.5 P(tie), exactly (Mann-Whitney)."""
    neg_sorted = np.sort(neg)
    below = np.searchsorted(neg_sorted, pos, side="left")
    at_or_below = np.searchsorted(neg_sorted, pos, side="right")
    return float((below + 0.5 * (at_or_below - below)).sum() / (len(pos) * len(neg)))


def finding_auc_targets(
    accuracy: float, spread: float = 1.0, finding_accuracy: Mapping[str, float] | None = None
) -> np.ndarray:
    """Per-finding AUROC targets whose mean is `accuracy` (exactly, unless clipped at the extremes).

    `finding_accuracy` pins some findings' AUROCs ({"Pneumothorax": 0.70}); the other findings move by
    the same amount so that the MEAN stays `accuracy` (a version whose mean AUROC holds while one
    finding collapses), as far as the ceiling allows."""
    if not 0.0 < accuracy < 1.0:
        raise ValueError(f"accuracy (mean AUROC) must be inside (0, 1), got {accuracy}")
    if accuracy <= 0.5 or spread <= 0:
        targets = np.full(len(FINDINGS), accuracy)
    else:
        room_down = (accuracy - 0.5) * 0.9 / -_OFFSETS.min()
        room_up = max(0.0, AUC_CEILING - accuracy) / _OFFSETS.max()
        f = max(0.0, min(spread, room_down, room_up))
        targets = np.clip(accuracy + f * _OFFSETS, 1e-3, AUC_CEILING)
    if not finding_accuracy:
        return targets
    pinned = np.zeros(len(FINDINGS), dtype=bool)
    for finding, auc in finding_accuracy.items():
        if finding not in FINDINGS:
            raise ValueError(f"findingAccuracy: unknown finding {finding!r} (one of {', '.join(FINDINGS)})")
        if not 0.0 < float(auc) < 1.0:
            raise ValueError(f"findingAccuracy.{finding} must be inside (0, 1), got {auc}")
        k = FINDINGS.index(finding)
        targets[k], pinned[k] = min(float(auc), AUC_CEILING), True
    free = ~pinned
    for _ in range(len(FINDINGS)):  # spread the pinned findings' difference over the free ones (clipped)
        missing = accuracy * len(FINDINGS) - targets.sum()
        movable = free & ((targets < AUC_CEILING) if missing > 0 else (targets > 0.5))
        if abs(missing) < 1e-12 or not movable.any():
            break
        targets[movable] = np.clip(targets[movable] + missing / movable.sum(), 0.5, AUC_CEILING)
    return targets


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _bisect(auc_of, target: float, lo: float = -12.0, hi: float = 12.0) -> float:
    """The separation at which the (non-decreasing) `auc_of` reaches `target` (clamped to [lo, hi])."""
    for _ in range(50):
        mid = (lo + hi) / 2
        if auc_of(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _subgroup_separation(z: np.ndarray, pos: np.ndarray, mask: np.ndarray, inside: float, overall: float,
                         fallback: float) -> np.ndarray:  # fmt: skip
    """One finding's separation per image: AUROC `inside` among the subgroup's (`mask`) own images,
    `overall` over all images (the rest calibrated given the subgroup's); `fallback` inside the
    subgroup when it lacks a class."""
    if (mask & pos).any() and (mask & ~pos).any():
        mu_in = _bisect(lambda m: empirical_auc(z[mask & pos] + m, z[mask & ~pos]), inside)
    else:
        mu_in = fallback

    def all_images(m: float) -> float:
        score = z + pos * np.where(mask, mu_in, m)
        return empirical_auc(score[pos], score[~pos])

    return pos * np.where(mask, mu_in, _bisect(all_images, overall))


SUBGROUP_ATTRIBUTES = ("sex", "age_band", "view", "site")  # the evaluator's names (xraymodel.subgroups)


def subgroup_pin(subgroup_accuracy: Mapping[str, Mapping[str, float]] | None) -> tuple[str, str, float] | None:
    """``{"view": {"AP": 0.72}}`` -> ("view", "AP", 0.72); None for none; ValueError unless ONE subgroup
    of a known attribute with an AUROC inside (0.5, 1)."""
    if not subgroup_accuracy:
        return None
    if not isinstance(subgroup_accuracy, Mapping):
        raise ValueError("subgroupAccuracy must map an attribute to {subgroup: AUROC}, e.g. {view: {AP: 0.72}}")
    pins = []
    for attribute, groups in subgroup_accuracy.items():
        if attribute not in SUBGROUP_ATTRIBUTES:
            raise ValueError(
                f"subgroupAccuracy: unknown attribute {attribute!r} (one of {', '.join(SUBGROUP_ATTRIBUTES)})"
            )
        if not isinstance(groups, Mapping):
            raise ValueError(f"subgroupAccuracy.{attribute} must map subgroups to AUROCs, e.g. {{AP: 0.72}}")
        for value, auc in groups.items():
            if not 0.5 < float(auc) < 1.0:
                raise ValueError(f"subgroupAccuracy.{attribute}.{value} must be inside (0.5, 1), got {auc}")
            pins.append((str(attribute), str(value).upper(), round(float(auc), 9)))
    if len(pins) != 1:
        raise ValueError(f"subgroupAccuracy: exactly one subgroup per version, got {len(pins)}")
    return pins[0]


# --------------------------------------------------------------------------- PNG encode / decode
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray) -> bytes:
    """8-bit greyscale PNG from a (h, w) uint8 array (filter type 0 rows)."""
    h, w = pixels.shape
    raw = b"".join(b"\x00" + pixels[r].astype(np.uint8).tobytes() for r in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw, 9))
        + _png_chunk(b"IEND", b"")
    )


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png_first_row(data: bytes) -> bytes | None:
    """First pixel row of an 8-bit greyscale, non-interlaced PNG; None for other PNG flavours."""
    pos = len(_PNG_SIGNATURE)
    idat = []
    width = height = None
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise InvalidImage("Invalid PNG data: truncated chunk")
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _comp, _filt, interlace = struct.unpack(">IIBBBBB", body)
            if (depth, colour, interlace) != (8, 0, 0):
                return None
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if width is None or not idat:
        raise InvalidImage("Invalid PNG data: no IHDR/IDAT")
    try:
        raw = zlib.decompressobj().decompress(b"".join(idat), width + 1)
    except zlib.error as exc:
        raise InvalidImage(f"Invalid PNG data: {exc}") from exc
    if len(raw) < width + 1:
        raise InvalidImage("Invalid PNG data: short image data")
    filt, row = raw[0], bytearray(raw[1 : width + 1])
    # First row: the "previous row" is all zeros.
    for i in range(width):
        left = row[i - 1] if i else 0
        if filt == 1:
            row[i] = (row[i] + left) & 0xFF
        elif filt == 3:
            row[i] = (row[i] + left // 2) & 0xFF
        elif filt == 4:
            row[i] = (row[i] + _paeth(left, 0, 0)) & 0xFF
        elif filt not in (0, 2):
            raise InvalidImage(f"Invalid PNG data: filter type {filt}")
    return bytes(row)


def image_kind(data: bytes) -> str:
    """'png' | 'jpeg' | 'gif' | 'bmp', else InvalidImage (TF's decode_image message)."""
    if data.startswith(_PNG_SIGNATURE):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data.startswith(b"BM") and len(data) > 26:
        return "bmp"
    raise InvalidImage("Unknown image file format. One of JPEG, PNG, GIF, BMP required.")


@dataclass(frozen=True)
class GoldenImage:
    image_id: int
    filename: str
    data: bytes
    labels: np.ndarray  # (14,) int8


class GoldenSet:
    """N labelled synthetic images plus the simulated predictions of any model version on them."""

    uri = URI

    def __init__(self, size: int = 500, seed: int = 0, min_positives: int = 10, correlation: float = 0.6) -> None:
        if size < 2 * min_positives or size < 20:
            raise ValueError(f"golden set too small: {size}")
        if not 0.0 <= correlation < 1.0:
            raise ValueError("correlation must be in [0, 1)")
        self.size = int(size)
        self.seed = int(seed)
        self.min_positives = int(min_positives)
        self.correlation = float(correlation)
        self.findings = FINDINGS
        rng = np.random.default_rng([self.seed, 0x60_1D])
        labels = np.zeros((self.size, len(FINDINGS)), dtype=np.int8)
        for k, finding in enumerate(FINDINGS):
            n_pos = min(self.size - min_positives, max(min_positives, round(PREVALENCE[finding] * self.size)))
            labels[rng.permutation(self.size)[:n_pos], k] = 1
        self.labels = labels
        self.demographics = self._deal_demographics()
        self._bias = np.array([_logit(PREVALENCE[f]) for f in FINDINGS])
        self._shared_noise = np.random.default_rng([self.seed, 0x5A]).standard_normal((self.size, len(FINDINGS)))
        self._noise_cache: dict[str, np.ndarray] = {}
        self._mu_cache: dict[tuple[int, float], float] = {}
        self._pred_cache: dict[tuple, np.ndarray] = {}

    @classmethod
    def from_uri(cls, uri: str = URI) -> GoldenSet:
        """``sandbox://golden`` (500 images, seed 0) or ``sandbox://golden?size=N&seed=S&min_positives=M``.

        The fleet and the evaluator must build the golden set from the SAME uri: images of another
        golden set are foreign to the fleet (predicted, but not against these labels)."""
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(uri)
        if f"{parts.scheme}://{parts.netloc}{parts.path}" != URI:
            raise ValueError(f"not a sandbox golden set uri: {uri!r} (expected {URI}[?size=&seed=])")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"size", "seed", "min_positives"}
        if unknown:
            raise ValueError(f"{uri}: unknown parameter(s) {sorted(unknown)}")
        return cls(**{k: int(v) for k, v in query.items()})

    def _deal_demographics(self) -> dict[str, tuple[str, ...]]:
        """Column -> one cell per image (module docstring); a separate seeded stream, labels untouched."""
        rng = np.random.default_rng([self.seed, 0xDE40])
        out: dict[str, tuple[str, ...]] = {}
        for column, shares in DEMOGRAPHICS.items():
            counts = [round(share * self.size) for _, share in shares]
            counts[0] += self.size - sum(counts)
            cells = np.empty(self.size, dtype=object)
            order, start = rng.permutation(self.size), 0
            for (value, _), n in zip(shares, counts):
                cells[order[start : start + n]] = value
                start += n
            if column == "Patient Age":
                ages = [int(rng.integers(_AGE_RANGES[v][0], _AGE_RANGES[v][1] + 1)) for v in cells]
                cells = np.array([str(a) for a in ages], dtype=object)
            out[column] = tuple(str(c) for c in cells)
        return out

    def subgroup_mask(self, attribute: str, value: str) -> np.ndarray:
        """Images of one subgroup, named as the evaluator names them (``view``/``AP``, ``age_band``/``60+``)."""
        from xraymodel.subgroups import COLUMNS, age_band

        if attribute not in COLUMNS:
            raise ValueError(f"unknown subgroup attribute {attribute!r} (one of {', '.join(COLUMNS)})")
        cells = self.demographics[COLUMNS[attribute]]
        values = [age_band(c) if attribute == "age_band" else c.upper() for c in cells]
        mask = np.array([v == str(value).upper() for v in values])
        if not mask.any():
            raise ValueError(f"no image in subgroup {attribute}={value} (values: {', '.join(sorted(set(values)))})")
        return mask

    # ------------------------------------------------------------------ images
    def filename(self, image_id: int) -> str:
        return f"golden_{image_id:05d}.png"

    def image_bytes(self, image_id: int) -> bytes:
        if not 0 <= image_id < self.size:
            raise IndexError(image_id)
        y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
        # a dark "thorax" with brighter lungs, varied per image, under an id-encoding first row
        texture = np.random.default_rng([self.seed, image_id]).integers(0, 24, (IMAGE_SIZE, IMAGE_SIZE))
        lungs = 120 - 6 * np.abs(x - IMAGE_SIZE / 2) + 4 * np.abs(y - IMAGE_SIZE / 2)
        pixels = np.clip(lungs + texture, 0, 255).astype(np.uint8)
        header = _MAGIC + struct.pack(">III", image_id, self.seed & 0xFFFFFFFF, self.size)
        pixels[0, : len(header)] = np.frombuffer(header, dtype=np.uint8)
        return encode_png(pixels)

    def images(self) -> Iterator[GoldenImage]:
        for i in range(self.size):
            yield GoldenImage(i, self.filename(i), self.image_bytes(i), self.labels[i])

    def image_id(self, data: bytes) -> int | None:
        """Golden id encoded in `data`; None for a valid image that is not one of ours."""
        if image_kind(data) != "png":
            return None
        row = decode_png_first_row(data)
        if row is None or not row.startswith(_MAGIC) or len(row) < 16:
            return None
        image_id, seed, size = struct.unpack(">III", row[4:16])
        if seed != (self.seed & 0xFFFFFFFF) or size != self.size or image_id >= self.size:
            return None  # a golden image of ANOTHER golden set: treat as foreign
        return image_id

    def labels_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        columns = list(self.demographics)
        writer.writerow(["image", *FINDINGS, *columns])
        for i in range(self.size):
            writer.writerow([self.filename(i), *map(int, self.labels[i]), *(self.demographics[c][i] for c in columns)])
        return out.getvalue()

    def write(self, directory: str | Path) -> Path:
        """Write images/<file>.png and labels.csv (the goldenSet {uri, labels} layout)."""
        root = Path(directory)
        (root / "images").mkdir(parents=True, exist_ok=True)
        for img in self.images():
            (root / "images" / img.filename).write_bytes(img.data)
        (root / "labels.csv").write_text(self.labels_csv())
        return root

    @property
    def prevalence(self) -> dict[str, float]:
        """Observed (enriched) prevalence of each finding in this golden set."""
        return {f: float(self.labels[:, k].mean()) for k, f in enumerate(FINDINGS)}

    # ------------------------------------------------------------------ predictions
    def _noise(self, version: str) -> np.ndarray:
        """(N, 14) stratified noise: per class exactly the normal quantiles, dealt per version."""
        cached = self._noise_cache.get(version)
        if cached is not None:
            return cached
        own = np.random.default_rng([self.seed, _stable_int("version", version) & 0xFFFFFFFF]).standard_normal(
            (self.size, len(FINDINGS))
        )
        mixed = math.sqrt(self.correlation) * self._shared_noise + math.sqrt(1 - self.correlation) * own
        noise = np.empty_like(mixed)
        for k in range(len(FINDINGS)):
            for cls in (0, 1):
                idx = np.flatnonzero(self.labels[:, k] == cls)
                ranks = np.argsort(np.argsort(mixed[idx, k], kind="stable"), kind="stable")
                noise[idx, k] = _quantiles(len(idx))[ranks]
        self._noise_cache[version] = noise
        return noise

    def _mu(self, k: int, auc: float) -> float:
        """Separation giving empirical AUROC `auc` on this golden set's stratified grid for finding k."""
        key = (k, round(auc, 9))
        if key in self._mu_cache:
            return self._mu_cache[key]
        n_pos = int(self.labels[:, k].sum())
        q_pos, q_neg = _quantiles(n_pos), _quantiles(self.size - n_pos)
        lo, hi = -12.0, 12.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if empirical_auc(q_pos + mid, q_neg) < auc:
                lo = mid
            else:
                hi = mid
        mu = (lo + hi) / 2
        self._mu_cache[key] = mu
        return mu

    def predictions(
        self,
        version: str,
        accuracy: float,
        output_shift: float = 0.0,
        spread: float = 1.0,
        finding_accuracy: Mapping[str, float] | None = None,
        subgroup_accuracy: Mapping[str, Mapping[str, float]] | None = None,
    ) -> np.ndarray:
        """(N, 14) float32 probabilities of `version` on the golden set (`finding_accuracy`: see
        `finding_auc_targets`; `subgroup_accuracy`: module docstring)."""
        version = str(version)
        pins = tuple(sorted((f, round(float(a), 9)) for f, a in (finding_accuracy or {}).items()))
        subgroup = subgroup_pin(subgroup_accuracy)
        key = (version, round(float(accuracy), 9), round(float(spread), 9), pins, subgroup)
        base = self._pred_cache.get(key)
        if base is None:
            targets = finding_auc_targets(accuracy, spread, dict(pins))
            if subgroup is None:
                mu = np.array([self._mu(k, targets[k]) for k in range(len(FINDINGS))]) * self.labels
            else:
                mu = self._subgroup_mu(version, targets, accuracy, *subgroup)
            latent = self._bias + mu + self._noise(version)
            base = 1.0 / (1.0 + np.exp(-latent))
            self._pred_cache[key] = base
        return np.clip(base + output_shift, 0.0, 1.0).astype(np.float32)

    def _subgroup_mu(self, version: str, targets: np.ndarray, accuracy: float, attribute: str, value: str,
                     auc: float) -> np.ndarray:  # fmt: skip
        """(N, 14) separation per image: the subgroup's calibrated to its target, the rest to hold a_k."""
        mask = self.subgroup_mask(attribute, value)
        noise = self._noise(version)
        out = np.zeros((self.size, len(FINDINGS)))
        for k in range(len(FINDINGS)):
            inside = float(np.clip(targets[k] + auc - accuracy, 0.5 + 1e-3, AUC_CEILING))
            pos = self.labels[:, k] == 1
            out[:, k] = _subgroup_separation(noise[:, k], pos, mask, inside, float(targets[k]), self._mu(k, targets[k]))
        return out

    def predict(
        self,
        version: str,
        image_id: int,
        accuracy: float,
        output_shift: float = 0.0,
        finding_accuracy: Mapping[str, float] | None = None,
        subgroup_accuracy: Mapping[str, Mapping[str, float]] | None = None,
    ) -> np.ndarray:
        """(14,) probabilities for golden image `image_id`."""
        return self.predictions(version, accuracy, output_shift, finding_accuracy=finding_accuracy,
                                subgroup_accuracy=subgroup_accuracy)[image_id]  # fmt: skip

    def predict_virtual(
        self,
        version: str,
        key: int,
        accuracy: float,
        output_shift: float = 0.0,
        finding_accuracy: Mapping[str, float] | None = None,
    ) -> np.ndarray:
        """(14,) probabilities for a non-golden image identified by a stable integer `key`."""
        rng_img = np.random.default_rng([self.seed, key & 0xFFFFFFFF, key >> 32, 1])
        prev = np.array([PREVALENCE[f] for f in FINDINGS])
        labels = (rng_img.random(len(FINDINGS)) < prev).astype(float)
        shared = rng_img.standard_normal(len(FINDINGS))
        own = np.random.default_rng(
            [self.seed, key & 0xFFFFFFFF, key >> 32, _stable_int("version", version) & 0xFFFFFFFF]
        ).standard_normal(len(FINDINGS))
        noise = math.sqrt(self.correlation) * shared + math.sqrt(1 - self.correlation) * own
        targets = finding_auc_targets(accuracy, finding_accuracy=finding_accuracy)
        mu = np.array([math.sqrt(2) * _ND.inv_cdf(a) for a in targets])
        p = 1.0 / (1.0 + np.exp(-(self._bias + mu * labels + noise)))
        return np.clip(p + output_shift, 0.0, 1.0).astype(np.float32)

    def predict_image(
        self,
        version: str,
        data: bytes,
        accuracy: float,
        output_shift: float = 0.0,
        finding_accuracy: Mapping[str, float] | None = None,
        subgroup_accuracy: Mapping[str, Mapping[str, float]] | None = None,
    ) -> np.ndarray:
        """(14,) probabilities for raw image bytes; raises InvalidImage for non-images. A non-golden
        image has no demographics: `subgroup_accuracy` applies to the golden set only."""
        image_id = self.image_id(data)
        if image_id is not None:
            return self.predict(version, image_id, accuracy, output_shift, finding_accuracy, subgroup_accuracy)
        return self.predict_virtual(
            version, _stable_int("image", hashlib.sha256(data).hexdigest()), accuracy, output_shift, finding_accuracy
        )


__all__ = [
    "FINDINGS",
    "PREVALENCE",
    "URI",
    "GoldenImage",
    "GoldenSet",
    "InvalidImage",
    "decode_png_first_row",
    "empirical_auc",
    "encode_png",
    "finding_auc_targets",
    "image_kind",
    "materialize",
    "subgroup_pin",
]


def materialize(uri: str, root: str | Path) -> Path:
    """The folder holding the golden set `uri` (``sandbox://golden?...``), written below `root` once.

    What the sandbox does instead of a volume mount: the evaluator knows no ``sandbox://`` scheme,
    it loads a plain folder (images/ + labels.csv), so the sandbox writes its synthetic set there
    and hands the evaluator that path. One folder per uri; written to a temporary name and renamed,
    so a reader never sees half a set."""
    golden = GoldenSet.from_uri(uri)
    folder = Path(root) / f"golden-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"
    if (folder / "labels.csv").exists():
        return folder
    Path(root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".golden-", dir=root))
    golden.write(tmp)
    try:
        os.replace(tmp, folder)
    except OSError:  # another writer won the race: its folder holds the same set
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
