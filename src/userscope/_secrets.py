"""One judgement of shared secrets (JWT HMAC keys, the events stream-key secret).

A secret that is short or obviously guessable lets anyone sign tokens for any user or
compute another user's stream key; every place that takes one asks this module.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Final

__all__ = ["MIN_SECRET_BYTES", "weakness"]

MIN_SECRET_BYTES: Final = 32
"""Shortest accepted secret, in bytes."""

_MIN_ESTIMATED_BITS: Final = 80
_MIN_DISTINCT_BYTES: Final = 8


def weakness(raw: bytes) -> str | None:
    """Say what is wrong with a secret, or ``None`` when nothing obvious is.

    "Obviously weak" means: shorter than 32 bytes, fewer than 8 distinct bytes, one
    short unit repeated over the whole secret, or under ~80 bits by a letter-frequency
    estimate (a random 32-byte secret scores about 150). It cannot prove a secret
    random; it catches ``"k" * 32``, 32 spaces and ``"secret" * 6``. The answer never
    contains the secret.

    Example:
        >>> from userscope._secrets import weakness
        >>> import secrets
        >>> weakness(secrets.token_urlsafe(32).encode()) is None
        True
        >>> weakness(b" " * 32)
        'it uses only 1 distinct characters'
    """
    length = len(raw)
    if length < MIN_SECRET_BYTES:
        return f"it is {length} bytes long; at least {MIN_SECRET_BYTES} are needed"
    counts = Counter(raw)
    if len(counts) < _MIN_DISTINCT_BYTES:
        return f"it uses only {len(counts)} distinct characters"
    for unit in range(1, length // 2 + 1):
        if length % unit == 0 and raw == raw[:unit] * (length // unit):
            return f"it repeats a {unit}-character unit"
    bits = -sum(n * math.log2(n / length) for n in counts.values())
    if bits < _MIN_ESTIMATED_BITS:
        return (
            f"it carries about {bits:.0f} bits of entropy; "
            f"at least {_MIN_ESTIMATED_BITS} are needed"
        )
    return None
