"""Kubernetes resource quantities: parse, compare, and write them the way the API server stores them.

kube-apiserver keeps every quantity of a Pod template in canonical form (k8s.io/apimachinery
resource.Quantity): ``"0.5"`` is stored as ``"500m"``, ``"1024Mi"`` as ``"1Gi"``, ``"1.5Gi"`` as
``"1536Mi"``, ``2000m`` as ``"2"``. The operator renders canonical quantities, so what it reads back
equals what it wrote and an unchanged ModelDeployment makes no write (a literal ``"0.5"`` would be
"different" from the live ``"500m"`` on every resync). Comparisons are exact (fractions).

(The API emulator in the sandbox distribution has its own copy of this algorithm, which plays the
server; tests/unit/test_render_admitted.py checks the two agree.)
"""

from __future__ import annotations

import re
from fractions import Fraction

_PATTERN = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_SUFFIX = {exponent: suffix for suffix, exponent in _DECIMAL.items()}
_BINARY_SUFFIX = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
_NANO = 10**9


def parse(text: str | int | float) -> tuple[Fraction, str]:
    """(exact value, format: "DecimalSI" | "BinarySI" | "DecimalExponent"); ValueError if not a quantity."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a quantity")
    raw = repr(text) if isinstance(text, float) else str(text)
    m = _PATTERN.match(raw.strip())
    if not m:
        raise ValueError(f"{text!r} is not a quantity")
    number, suffix = m.group(1), m.group(2)
    digits = number.lstrip("+-")
    if digits.count(".") > 1 or not any(c.isdigit() for c in digits):
        raise ValueError(f"{text!r} is not a quantity")
    whole, _, frac = digits.partition(".")
    value = Fraction(int(whole or "0")) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
    if suffix in _DECIMAL:
        fmt, value = "DecimalSI", value * Fraction(10) ** _DECIMAL[suffix]
    elif suffix in _BINARY:
        fmt, value = "BinarySI", value * 2 ** _BINARY[suffix]
    elif re.fullmatch(r"[eE][-+]?[0-9]+", suffix):
        fmt, value = "DecimalExponent", value * Fraction(10) ** int(suffix[1:])
    else:
        raise ValueError(f"{text!r} is not a quantity")
    if number.startswith("-"):
        value = -value
    scaled = value * _NANO  # the server keeps nano precision, rounding up (away from zero)
    if scaled.denominator != 1:
        magnitude = -(-abs(scaled.numerator) // scaled.denominator)
        value = Fraction(magnitude * (1 if value > 0 else -1), _NANO)
    return value, fmt


def value(text: str | int | float) -> Fraction:
    """The exact amount of a quantity (``"1Gi"`` == ``"1073741824"``)."""
    return parse(text)[0]


def canonical(text: str | int | float) -> str:
    """The form the API server stores (resource.Quantity.String())."""
    amount, fmt = parse(text)
    if amount == 0:
        return "0"
    if fmt == "BinarySI" and (-1024 < amount < 1024 or amount.denominator != 1):
        fmt = "DecimalSI"
    if fmt == "BinarySI":
        mantissa, exponent = int(amount), 0
        while exponent < len(_BINARY_SUFFIX) - 1 and mantissa % 1024 == 0:
            mantissa //= 1024
            exponent += 1
        return f"{mantissa}{_BINARY_SUFFIX[exponent]}"
    exponent, scaled = 0, amount
    while scaled.denominator != 1:
        scaled *= 10
        exponent -= 1
    mantissa = int(scaled)
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    remainder = exponent % 3
    mantissa *= 10**remainder
    exponent -= remainder
    if fmt == "DecimalSI" and exponent in _DECIMAL_SUFFIX:
        return f"{mantissa}{_DECIMAL_SUFFIX[exponent]}"
    return f"{mantissa}e{exponent}" if exponent else str(mantissa)
