"""
Kubernetes resource quantities as kube-apiserver parses, compares and serialises them.

A port of k8s.io/apimachinery/pkg/api/resource (quantity.go, suffix.go, amount.go): a quantity is
an exact number with a format (DecimalSI: ``m``/``k``/``M``...; BinarySI: ``Ki``/``Mi``...;
DecimalExponent: ``e3``), rounded up to nano precision. The server stores every quantity of a
typed object in canonical form, so what a client reads back may differ from what it wrote:
``0.5`` -> ``500m``, ``1024Mi`` -> ``1Gi``, ``1.5Gi`` -> ``1536Mi``, ``0.5Ki`` -> ``512``,
``2000m`` -> ``2``, ``1e3`` stays ``1e3``, ``17179869184`` stays as it is (DecimalSI).
"""

import re
from fractions import Fraction

__all__ = ["QuantityError", "parse", "canonical", "canonicalize", "REGEX"]

REGEX = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_PATTERN = re.compile(REGEX)
_ERROR = f"quantities must match the regular expression '{REGEX}'"

_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_SUFFIX = {exponent: suffix for suffix, exponent in _DECIMAL.items()}
_BINARY_SUFFIX = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
_NANO = 10**9

DECIMAL_SI, BINARY_SI, DECIMAL_EXPONENT = "DecimalSI", "BinarySI", "DecimalExponent"


class QuantityError(ValueError):
    """Not a quantity (the message is the real server's)."""


def parse(text: str | int | float) -> tuple[Fraction, str]:
    """(exact value, format) of a quantity; JSON numbers are read from their text, as Go does."""
    if isinstance(text, bool):
        raise QuantityError(_ERROR)
    if isinstance(text, int):
        text = str(text)
    elif isinstance(text, float):
        text = repr(text)
    text = text.strip()
    m = _PATTERN.match(text)
    if not m or not text:
        raise QuantityError(_ERROR)
    number, suffix = m.group(1), m.group(2)
    sign = -1 if number.startswith("-") else 1
    digits = number.lstrip("+-")
    if digits.count(".") > 1 or not any(c.isdigit() for c in digits):
        raise QuantityError(_ERROR)
    whole, _, frac = digits.partition(".")
    value = Fraction(int(whole or "0")) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
    if suffix in _DECIMAL:
        fmt, value = DECIMAL_SI, value * Fraction(10) ** _DECIMAL[suffix]
    elif suffix in _BINARY:
        fmt, value = BINARY_SI, value * 2 ** _BINARY[suffix]
    elif re.fullmatch(r"[eE][-+]?[0-9]+", suffix):
        fmt, value = DECIMAL_EXPONENT, value * Fraction(10) ** int(suffix[1:])
    else:
        raise QuantityError(_ERROR)
    value *= sign
    # The highest precision the server keeps is nano; anything finer is rounded up (away from zero).
    scaled = value * _NANO
    if scaled.denominator != 1:
        magnitude = -(-abs(scaled.numerator) // scaled.denominator)
        value = Fraction(magnitude * (1 if value > 0 else -1), _NANO)
    return value, fmt


def canonical(value: Fraction, fmt: str) -> str:
    """The server's serialisation of a quantity (Quantity.String / CanonicalizeBytes)."""
    if value == 0:
        return "0"
    if fmt == BINARY_SI and (-1024 < value < 1024 or value.denominator != 1):
        fmt = DECIMAL_SI  # small or fractional binary quantities are shown in decimal, never rounded
    if fmt == BINARY_SI:
        mantissa, exponent = int(value), 0
        while exponent < len(_BINARY_SUFFIX) - 1 and mantissa % 1024 == 0:
            mantissa //= 1024
            exponent += 1
        return f"{mantissa}{_BINARY_SUFFIX[exponent]}"
    exponent, scaled = 0, value
    while scaled.denominator != 1:
        scaled *= 10
        exponent -= 1
    mantissa = int(scaled)
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    remainder = exponent % 3  # the exponent goes down to a multiple of 3
    mantissa *= 10**remainder
    exponent -= remainder
    if fmt == DECIMAL_SI and exponent in _DECIMAL_SUFFIX:
        return f"{mantissa}{_DECIMAL_SUFFIX[exponent]}"
    return f"{mantissa}e{exponent}" if exponent else str(mantissa)


def canonicalize(text: str | int | float) -> str:
    """``canonical(*parse(text))``: the string the server stores for what a client wrote."""
    return canonical(*parse(text))
