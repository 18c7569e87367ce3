"""Study-level stickiness as Istio header matches (pure): which keys a canary weight sends to the canary.

Istio's consistentHash (DestinationRule trafficPolicy.loadBalancer.consistentHash.httpHeaderName)
picks an ENDPOINT inside a subset, after the VirtualService has already chosen the subset by weight;
it cannot keep a study on one VERSION. So the split itself is made a deterministic function of the
study key, expressed as regex header matches the VirtualService evaluates (Envoy safe_regex, RE2):

* a key's bucket is the value of its last two characters from the key alphabet (other characters
  are skipped: a DICOM UID "1.2.840....1029.320" has bucket "2","0" = 20 of 100), so every key maps
  to one of N = len(alphabet)^2 buckets, and a key with fewer than two alphabet characters to none
  (it always reaches the stable version);
* at canary weight w the canary gets the buckets [0, round(N * w / 100)); growing weights only ADD
  buckets, so a study on the canary stays there through every step, and a study moves at most once
  (stable -> canary, at the step that adds its bucket) — and back only on a rollback;
* `bucket_regex(k)` is a regex matching exactly the keys whose bucket is < k, for the route
  "keyed and bucket < k -> canary"; keyed requests that do not match go to the stable version.

`bucket_of` is the reference the sandbox's fleet and the tests use; the regex is tested against it.
Keys are assumed to end in uniformly distributed characters (UIDs ending in counters or random
digits, hashed patient IDs); the realised canary share is the share of keys in the buckets.
"""

from __future__ import annotations

import re

ALPHABETS = {
    "digits": "0123456789",
    "hex": "0123456789abcdef",
    "alnum": "0123456789abcdefghijklmnopqrstuvwxyz",
}
KEY_CHARS = 2  # buckets = len(alphabet) ** KEY_CHARS (100 for digits: 1 % steps)


def bucket_count(alphabet: str) -> int:
    return len(ALPHABETS[alphabet]) ** KEY_CHARS


def canary_buckets(weight: int, alphabet: str) -> int:
    """How many of the buckets (from 0) the canary gets at `weight` percent (monotonic in weight)."""
    w = max(0, min(100, int(weight)))
    return int(bucket_count(alphabet) * w / 100 + 0.5)


def bucket_of(key: str, alphabet: str) -> int | None:
    """The bucket of a study key, or None when it has fewer than two alphabet characters."""
    chars = ALPHABETS[alphabet]
    picked = [c for c in key.lower() if c in chars][-KEY_CHARS:]
    if len(picked) < KEY_CHARS:
        return None
    value = 0
    for c in picked:
        value = value * len(chars) + chars.index(c)
    return value


def _class(chars: str) -> str:
    """A regex character class for `chars` (letters in both cases), with ranges where contiguous."""
    letters = sorted(set(chars) | {c.upper() for c in chars if c.isalpha()})
    parts: list[str] = []
    i = 0
    while i < len(letters):
        j = i
        while j + 1 < len(letters) and ord(letters[j + 1]) == ord(letters[j]) + 1:
            j += 1
        parts.append(re.escape(letters[i]) if i == j else f"{re.escape(letters[i])}-{re.escape(letters[j])}")
        i = j + 1
    return "[" + "".join(parts) + "]"


def bucket_regex(buckets: int, alphabet: str) -> str | None:
    """A regex (RE2) matching exactly the keys whose bucket is < `buckets`; None when none can match."""
    chars = ALPHABETS[alphabet]
    base = len(chars)
    k = max(0, min(bucket_count(alphabet), int(buckets)))
    if k == 0:
        return None
    other = "[^" + _class(chars)[1:]  # anything that is not an alphabet character
    tail = f"{other}*"
    quotient, remainder = divmod(k, base)
    alternatives = []
    if quotient > 0:
        alternatives.append(f"{_class(chars[:quotient])}{tail}{_class(chars)}")
    if remainder > 0:
        alternatives.append(f"{_class(chars[quotient])}{tail}{_class(chars[:remainder])}")
    body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
    return f"^.*{body}{tail}$"
