"""Study traffic for the simulated fleet: clients that send the images of one study under one key.

A radiology client (a DICOM router, a viewer) sends every image of a study with the same study key in
a header (``x-study-instance-uid``); a study must be read by ONE model version. `StudyTraffic` plays
such clients: a ``share`` of the fleet's live requests belong to studies of ``imagesPerStudy`` images
each, sent one after the other as the traffic generator produces requests; each study has a DICOM-like
UID (random trailing digits) and optionally a site (a cohort header, e.g. ``x-site``).

With ``pin: true`` a client that got an answer pins the rest of the study to that version: it sends
the preview header ``x-modeldeploy-version`` with the value of the response header
``x-modeldeploy-served-by`` the VirtualService sets per destination when stickiness is on (what a
real client would do; the sandbox reads the header off the routing result).

Each request is routed individually through the current VirtualService (`mesh_routing`), so the
fleet knows which version answered which study: `stats()` counts studies answered by more than one
version (the stickiness scenarios expect 0) and the versions each site reached (cohort targeting).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modeldeploy import names

KNOWN_KEYS = {"share", "header", "imagesPerStudy", "pin", "sites"}


@dataclass
class Study:
    key: str
    site: str | None
    remaining: int
    versions: set[str] = field(default_factory=set)
    pinned: str | None = None


@dataclass
class StudyTraffic:
    header: str = "x-study-instance-uid"
    share: float = 1.0
    images_per_study: int = 4
    pin: bool = False
    site_header: str | None = None
    sites: tuple[str, ...] = ()
    open: list[Study] = field(default_factory=list)
    done: int = 0
    multi_version: int = 0
    multi_version_keys: list[str] = field(default_factory=list)
    answered: int = 0
    by_site: dict[str, Counter] = field(default_factory=dict)
    _serial: int = 0

    @classmethod
    def from_scenario(cls, raw: Mapping[str, Any] | None) -> StudyTraffic | None:
        if not raw:
            return None
        unknown = set(raw) - KNOWN_KEYS
        if unknown:
            raise ValueError(f"traffic.studies: unknown field(s) {sorted(unknown)}")
        sites = raw.get("sites") or {}
        if sites and set(sites) - {"header", "values"}:
            raise ValueError("traffic.studies.sites needs {header, values}")
        share = float(raw.get("share", 1.0))
        images = int(raw.get("imagesPerStudy", 4))
        if not 0.0 <= share <= 1.0 or images < 1:
            raise ValueError("traffic.studies: share must be within 0..1 and imagesPerStudy >= 1")
        return cls(header=str(raw.get("header", "x-study-instance-uid")).lower(), share=share, images_per_study=images,
                   pin=bool(raw.get("pin", False)),
                   site_header=str(sites["header"]).lower() if sites else None,
                   sites=tuple(str(v) for v in (sites.get("values") or ())) if sites else ())  # fmt: skip

    def next_requests(self, n: int, rng: np.random.Generator) -> list[tuple[Study, dict[str, str], bool]]:
        """`n` keyed requests, each the next image of an open study (new studies opened as needed), with
        whether it is the study's last image."""
        out = []
        for _ in range(n):
            if not self.open or len(self.open) < 3 and rng.random() < 0.5:
                self._serial += 1
                uid = f"1.2.826.0.1.3680043.{self._serial}.{int(rng.integers(10**6, 10**7))}"
                site = str(rng.choice(self.sites)) if self.sites else None
                self.open.append(Study(uid, site, self.images_per_study))
            study = self.open[int(rng.integers(len(self.open)))]
            headers = {self.header: study.key}
            if study.site is not None and self.site_header:
                headers[self.site_header] = study.site
            if self.pin and study.pinned:
                headers[names.PREVIEW_HEADER] = study.pinned
            study.remaining -= 1
            out.append((study, headers, study.remaining <= 0))
            if study.remaining <= 0:
                self.open.remove(study)
        return out

    def answered_by(
        self, study: Study, last: bool, version_label: str | None, response_headers: Mapping[str, str]
    ) -> None:
        if version_label is not None:
            self._answer(study, version_label, response_headers)
        if last:
            self.done += 1
            if len(study.versions) > 1:
                self.multi_version += 1
                self.multi_version_keys.append(study.key)

    def _answer(self, study: Study, version_label: str, response_headers: Mapping[str, str]) -> None:
        self.answered += 1
        study.versions.add(version_label)
        if self.pin and study.pinned is None:
            study.pinned = response_headers.get(names.SERVED_BY_HEADER)
        if study.site is not None:
            self.by_site.setdefault(study.site, Counter())[version_label] += 1

    def stats(self) -> dict[str, Any]:
        still_open = [s for s in self.open if len(s.versions) > 1]
        return {
            "studies": self.done,
            "keyedRequests": self.answered,
            "answeredByTwoVersions": self.multi_version + len(still_open),
            "examples": (self.multi_version_keys + [s.key for s in still_open])[:5],
            "versionsBySite": {site: dict(c) for site, c in sorted(self.by_site.items())},
            "pin": self.pin,
        }


def split_keyed(n: int, share: float, rng: np.random.Generator) -> tuple[int, int]:
    """(keyed, other) out of `n` requests."""
    keyed = int(rng.binomial(n, share)) if 0.0 < share < 1.0 else (n if share >= 1.0 else 0)
    return keyed, n - keyed


def versions_reached(by_site: Mapping[str, Mapping[str, int]], sites: Sequence[str]) -> set[str]:
    return {v for s in sites for v in by_site.get(s, {})}
