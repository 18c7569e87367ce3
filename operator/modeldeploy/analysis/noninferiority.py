"""The clinical non-inferiority gate (builtin `nonInferiority`), PURE: per-finding paired tests -> one verdict.

The online evaluator scores the SAME golden images with the stable and the new version and exports,
per finding, the paired AUROC difference delta = AUROC(new) - AUROC(stable) with DeLong's standard
error SE (and the same for sensitivity at the operating threshold). For a margin M the gate tests,
per gated finding, the non-inferiority hypothesis

    H0: delta <= -M   (the new version is worse by M or more)    against    H1: delta > -M

with the one-sided z test z = (delta + M) / SE, p = 1 - Phi(z); non-inferiority is shown when
p < alpha, i.e. when the one-sided (1 - alpha) lower confidence bound delta - z_(1-alpha) SE lies
above -M. Reported per finding: delta, SE, that lower bound, the two-sided (1 - 2 alpha) CI, p, and
the power.

Power. A non-inferiority test that cannot fail to reject is worthless when the golden set is small:
with 10 positives the lower bound is so low that an equal model "fails" and a worse one is never
shown worse. So before judging, each gated finding must reach the stated power: the probability that
a version exactly as good as the stable one (true delta 0) shows non-inferiority,
Phi(M / SE - z_(1-alpha)). `power` is stated for the WHOLE gate (every gated test passing), so each of
the k tests needs power^(1/k) (Sidak; for non-negatively correlated tests the joint power is then at
least `power`). SE is the DeLong estimate on this golden set (it shrinks like 1/sqrt(positives)), so
an under-powered finding also says about how many positives it would need at the same mix. A finding
with fewer than `minPositives` positives or negatives is under-powered whatever its SE (DeLong's
large-sample normal approximation, and an SE of 0 from perfectly separated classes, need cases).

Verdict of the gate (one MetricResult, `detail` listing every finding):
  fail    some powered finding does not show non-inferiority (p >= alpha), or some finding, powered or
          not, is shown INFERIOR (its upper bound delta + z_(1-alpha) SE is below -M);
  noData  otherwise, when a gated finding is under-powered or has no paired figures: the gate refuses
          to pass and says which finding needs how many positives;
  pass    every gated finding shows non-inferiority with the stated power.
The metric's value is the smallest lower confidence bound over the gated findings, and its `min` is
-M (what `kubectl modeldeploy status` shows against the bound).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

from modeldeploy.analysis.verdict import MetricResult
from modeldeploy.spec import MetricSpec, NonInferiority

_N = NormalDist()


@dataclass(frozen=True)
class PairedFigure:
    """One finding's paired difference (new minus stable) and its standard error."""

    delta: float
    se: float


@dataclass(frozen=True)
class FindingFigures:
    """What the evaluator exported for one finding."""

    positives: int | None  # in the golden set; None = unknown
    negatives: int | None
    auroc: PairedFigure | None
    sensitivity: PairedFigure | None = None


@dataclass(frozen=True)
class NITest:
    """One one-sided non-inferiority test (AUROC or sensitivity of one finding)."""

    delta: float
    se: float
    margin: float
    alpha: float
    required_power: float

    @property
    def z(self) -> float:
        return self.quantile(1 - self.alpha)

    @staticmethod
    def quantile(p: float) -> float:
        return _N.inv_cdf(p)

    @property
    def lower(self) -> float:
        return self.delta - self.z * self.se

    @property
    def upper(self) -> float:
        return self.delta + self.z * self.se

    @property
    def p_value(self) -> float:
        if self.se <= 0:
            return 0.0 if self.delta > -self.margin else 1.0
        return 1.0 - _N.cdf((self.delta + self.margin) / self.se)

    @property
    def power(self) -> float:
        """P(showing non-inferiority | true delta 0) at this SE."""
        if self.se <= 0:
            return 1.0
        return _N.cdf(self.margin / self.se - self.z)

    @property
    def required_se(self) -> float:
        return self.margin / (self.z + self.quantile(self.required_power))

    @property
    def powered(self) -> bool:
        return self.se <= self.required_se

    @property
    def non_inferior(self) -> bool:
        return self.p_value < self.alpha

    @property
    def inferior(self) -> bool:
        return self.upper < -self.margin

    def as_dict(self) -> dict:
        return {
            "delta": _r(self.delta),
            "se": _r(self.se),
            "lower": _r(self.lower),
            "ci": [_r(self.lower), _r(self.upper)],
            "pValue": float(f"{self.p_value:.3g}"),
            "margin": self.margin,
            "power": _r(self.power),
            "requiredPower": _r(self.required_power),
        }


def _r(x: float) -> float:
    return round(float(x), 4 if abs(x) >= 1e-3 else 6)


def judge_non_inferiority(metric: MetricSpec, figures: Mapping[str, FindingFigures]) -> MetricResult:
    """The gate's verdict from the evaluator's per-finding figures (module docstring)."""
    ni = metric.non_inferiority or NonInferiority(margin=0.0)
    gated = list(ni.findings) or sorted(figures)
    margin = ni.margin
    if not gated:
        return _result(metric, None, "noData", "no finding with paired figures from the evaluator yet", [])
    tests_per_finding = 2 if ni.sensitivity_margin is not None else 1
    required_power = ni.power ** (1.0 / (len(gated) * tests_per_finding))
    rows: list[dict] = []
    failed: list[str] = []
    unpowered: list[str] = []
    lowers: list[float] = []
    for finding in gated:
        fig = figures.get(finding)
        row: dict = {"finding": finding}
        rows.append(row)
        if fig is None or fig.auroc is None:
            row["verdict"] = "noData"
            row["reason"] = "no paired AUROC from the evaluator (finding unknown to the model, or one class only)"
            unpowered.append(f"{finding}: no paired AUROC on the golden set")
            continue
        row["positives"], row["negatives"] = fig.positives, fig.negatives
        tests = {"auroc": NITest(fig.auroc.delta, fig.auroc.se, margin, ni.alpha, required_power)}
        if ni.sensitivity_margin is not None:
            if fig.sensitivity is None:
                row["verdict"] = "noData"
                row["reason"] = "no paired sensitivity from the evaluator (no operating threshold)"
                row["auroc"] = tests["auroc"].as_dict()
                unpowered.append(f"{finding}: no paired sensitivity")
                continue
            tests["sensitivity"] = NITest(
                fig.sensitivity.delta, fig.sensitivity.se, ni.sensitivity_margin, ni.alpha, required_power
            )
        elif fig.sensitivity is not None:
            row["sensitivityDelta"] = _r(fig.sensitivity.delta)  # reported, not gated
        for name, test in tests.items():
            row[name] = test.as_dict()
        lowers.append(tests["auroc"].lower)
        few = [
            f"{n} {what}"
            for n, what in ((fig.positives, "positives"), (fig.negatives, "negatives"))
            if n is not None and n < ni.min_positives
        ]
        shown_inferior = [name for name, t in tests.items() if t.inferior]
        weak = [name for name, t in tests.items() if not t.powered]
        if shown_inferior:
            row["verdict"] = "inferior"
            failed.append(_describe(finding, shown_inferior[0], tests[shown_inferior[0]], "inferior"))
        elif few or weak:
            row["verdict"] = "underpowered"
            if few:
                why = f"{' and '.join(few)} < minPositives {ni.min_positives}"
            else:
                t = tests[weak[0]]
                needed = _positives_needed(fig.positives, t)
                why = (
                    f"{weak[0]} power {t.power:.2f} < {required_power:.3f} needed for margin {t.margin:g} "
                    f"(SE {t.se:.4f} > {t.required_se:.4f})"
                    + (f"; needs about {needed} positives, has {fig.positives}" if needed else "")
                )
            row["reason"] = why
            unpowered.append(f"{finding}: {why}")
        elif all(t.non_inferior for t in tests.values()):
            row["verdict"] = "nonInferior"
        else:
            name = next(n for n, t in tests.items() if not t.non_inferior)
            row["verdict"] = "notShown"
            failed.append(_describe(finding, name, tests[name], "not shown non-inferior"))
    value = min(lowers) if lowers else None
    if failed:
        return _result(metric, value, "fail", "; ".join(failed), rows, required_power)
    if unpowered:
        return _result(metric, value, "noData", "golden set too small to judge: " + "; ".join(unpowered), rows,
                       required_power)  # fmt: skip
    worst = min(rows, key=lambda r: r["auroc"]["lower"])
    reason = (
        f"{len(rows)} finding(s) non-inferior at margin {margin:g} (alpha {ni.alpha:g}); closest "
        f"{worst['finding']}: ΔAUROC {worst['auroc']['delta']:+.4f}, lower bound {worst['auroc']['lower']:+.4f}, "
        f"p={_p(worst['auroc']['pValue'])}"
    )
    return _result(metric, value, "pass", reason, rows, required_power)


def _describe(finding: str, name: str, t: NITest, what: str) -> str:
    label = "ΔAUROC" if name == "auroc" else "Δsensitivity"
    return (
        f"{finding} {what}: {label} {t.delta:+.4f} (SE {t.se:.4f}, {100 * (1 - t.alpha):g}% lower bound "
        f"{t.lower:+.4f} < -{t.margin:g}, p={_p(t.p_value)} for margin {t.margin:g})"
    )


def _p(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _positives_needed(positives: int | None, t: NITest) -> int | None:
    """Positives at the same case mix for the SE to reach the required one (SE ~ 1 / sqrt(n))."""
    if not positives or t.required_se <= 0:
        return None
    return math.ceil(positives * (t.se / t.required_se) ** 2)


def _result(
    metric: MetricSpec, value: float | None, outcome: str, reason: str, rows: list[dict], power: float | None = None
) -> MetricResult:
    ni = metric.non_inferiority
    detail: dict = {"test": "DeLong paired, one-sided non-inferiority", "findings": rows}
    if ni is not None:
        detail.update(margin=ni.margin, alpha=ni.alpha, power=ni.power)
        if ni.sensitivity_margin is not None:
            detail["sensitivityMargin"] = ni.sensitivity_margin
    if power is not None:
        detail["powerPerTest"] = _r(power)
    lo = -ni.margin if ni is not None else None
    return MetricResult(metric.name, value, outcome, reason, lo, None, detail=detail)  # type: ignore[arg-type]
