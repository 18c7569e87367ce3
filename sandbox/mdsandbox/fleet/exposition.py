"""The Prometheus text exposition format (0.0.4), written by hand for the simulated servers.

`CounterFamily` and `HistogramFamily` keep per-label-set values in plain dicts/NumPy arrays (a
histogram observes a whole batch of latencies at once) and render ``# HELP``/``# TYPE`` plus the
samples. Why not prometheus_client's collectors: they name every counter ``<name>_total`` and add
``_created`` series, but TF Serving's ``:tensorflow:serving:request_count`` is a counter WITHOUT
the suffix, and the fleet must expose exactly the series names the real servers expose.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def fmt_labels(names: Iterable[str], values: Iterable[str], extra: str = "") -> str:
    body = ",".join(f'{n}="{_escape(str(v))}"' for n, v in zip(names, values))
    if extra:
        body = f"{body},{extra}" if body else extra
    return "{" + body + "}" if body else ""


def fmt_number(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return format(x, ".10g")


class CounterFamily:
    """One counter family: label values -> running total."""

    def __init__(self, name: str, help_text: str, label_names: tuple[str, ...]) -> None:
        self.name, self.help, self.label_names = name, help_text, label_names
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        if amount:
            self.values[labels] = self.values.get(labels, 0.0) + amount

    def render(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {self.help}")
        out.append(f"# TYPE {self.name} counter")
        for labels, value in self.values.items():
            out.append(f"{self.name}{fmt_labels(self.label_names, labels)} {fmt_number(value)}")


class HistogramFamily:
    """One histogram family: label values -> (per-bucket counts, sum); rendered cumulative with +Inf."""

    def __init__(self, name: str, help_text: str, label_names: tuple[str, ...], buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.label_names = name, help_text, label_names
        self.buckets = np.array(buckets, dtype=float)
        self._le = [fmt_number(b) for b in buckets] + ["+Inf"]
        self.series: dict[tuple[str, ...], list[Any]] = {}  # labels -> [bucket counts (non-cumulative), sum]

    def observe_many(self, labels: tuple[str, ...], values: np.ndarray) -> None:
        if len(values) == 0:
            return
        entry = self.series.get(labels)
        if entry is None:
            entry = self.series[labels] = [np.zeros(len(self.buckets) + 1, dtype=np.int64), 0.0]
        idx = np.searchsorted(self.buckets, values, side="left")  # value <= le
        entry[0] += np.bincount(idx, minlength=len(self.buckets) + 1)
        entry[1] += float(values.sum())

    def count(self, labels: tuple[str, ...]) -> int:
        entry = self.series.get(labels)
        return int(entry[0].sum()) if entry is not None else 0

    def render(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {self.help}")
        out.append(f"# TYPE {self.name} histogram")
        for labels, (counts, total) in self.series.items():
            cumulative = np.cumsum(counts)
            for le, c in zip(self._le, cumulative):
                le_label = 'le="' + le + '"'
                out.append(f"{self.name}_bucket{fmt_labels(self.label_names, labels, le_label)} {int(c)}")
            out.append(f"{self.name}_sum{fmt_labels(self.label_names, labels)} {fmt_number(total)}")
            out.append(f"{self.name}_count{fmt_labels(self.label_names, labels)} {int(cumulative[-1])}")


__all__ = ["CounterFamily", "HistogramFamily", "fmt_labels", "fmt_number"]
