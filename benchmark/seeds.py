"""Seeds derived from names.

Every random stream in reprorec comes from :func:`derive_seed` applied to the names of what it is
for (dataset, splitter, fold, model, trial, ...), so two different purposes never share a stream by
accident and the same purpose always gets the same one, in any process.
"""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(*parts: object) -> int:
    """Return a 63-bit seed derived from ``parts``.

    The parts are converted with ``str`` and joined with a separator that cannot occur in a
    ``repr`` of a number, so ``derive_seed("a", 1)`` differs from ``derive_seed("a1")``.

    Args:
        *parts: names and numbers identifying the purpose of the random stream.

    Returns:
        A non-negative integer below 2**63, stable across processes and platforms.
    """
    text = "\x1f".join(str(p) for p in parts)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def derive_rng(*parts: object) -> np.random.Generator:
    """Return a numpy ``Generator`` seeded with :func:`derive_seed` of ``parts``."""
    return np.random.default_rng(derive_seed(*parts))
