"""Synthetic interaction data with power-law user activity and item popularity (for benchmarks).

Real implicit-feedback data has a long tail on both sides: a few users and items account for much of
the data. :func:`power_law_matrix` samples (user, item) pairs from the product of two Zipf-like
distributions, vectorised in numpy, so ML-20M-sized data (138,493 x 26,744, 20M pairs) takes
seconds.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError


def _zipf_weights(n: int, exponent: float, cap: float, rng: np.random.Generator) -> np.ndarray:
    """Weights ``(rank + 1) ** -exponent`` in a random order, each at most ``cap`` of the total."""
    w = (np.arange(1, n + 1, dtype=np.float64)) ** (-exponent)
    w /= w.sum()
    for _ in range(50):  # capping redistributes mass; a few rounds reach a fixed point
        over = w > cap
        if not over.any():
            break
        w[over] = cap
        w /= w.sum()
    return rng.permutation(w)


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort + mask: np.unique is far slower on large int arrays here)."""
    a = np.sort(a)
    if len(a) < 2:
        return a
    keep = np.empty(len(a), dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def power_law_matrix(
    n_users: int,
    n_items: int,
    n_interactions: int,
    *,
    seed: int,
    exponent: float = 0.8,
    name: str = "synthetic",
) -> InteractionMatrix:
    """Sample ``n_interactions`` distinct (user, item) pairs with power-law marginals.

    User activity and item popularity are Zipf-like with the same ``exponent`` (ranks shuffled so
    that id order carries no signal). A user's expected degree is capped at a quarter of the items
    (and an item's at a quarter of the users) so that the requested number of distinct pairs can be
    reached; duplicates are removed and the deficit re-sampled until the count is met, then a
    uniformly random subset of exactly ``n_interactions`` pairs is kept. Users or items that get no
    interaction stay in the id space (shape is always ``n_users x n_items``).

    Args:
        n_users: number of users (ids ``0..n_users-1``).
        n_items: number of items.
        n_interactions: number of distinct pairs, at most ``n_users * n_items / 2``.
        seed: random seed (derive it with :func:`benchmark.seeds.derive_seed`).
        exponent: Zipf exponent (0 = uniform; ML-20M's item popularity is steeper than 1).
        name: name of the returned matrix.

    Returns:
        An :class:`InteractionMatrix` with exactly ``n_interactions`` entries.
    """
    if n_users <= 0 or n_items <= 0 or n_interactions < 0:
        raise ConfigError("n_users and n_items must be positive, n_interactions non-negative")
    if n_interactions > n_users * n_items // 2:
        raise ConfigError(
            f"n_interactions={n_interactions} is more than half of the {n_users} x {n_items} matrix"
        )
    rng = np.random.default_rng(seed)
    pu = _zipf_weights(n_users, exponent, 0.25 * n_items / max(n_interactions, 1), rng)
    pi = _zipf_weights(n_items, exponent, 0.25 * n_users / max(n_interactions, 1), rng)
    codes = np.zeros(0, dtype=np.int64)
    need = n_interactions
    yield_rate = 0.9  # fraction of samples that turn out new; re-estimated after every round
    for _ in range(100):
        if need <= 0:
            break
        m = int(need / yield_rate * 1.05) + 16
        # i.i.d. pairs from pu x pi without a per-sample search: multinomial counts per user (users in
        # order) paired with a shuffled multiset of items drawn the same way.
        users = np.repeat(np.arange(n_users, dtype=np.int64), rng.multinomial(m, pu))
        items = np.repeat(np.arange(n_items, dtype=np.int64), rng.multinomial(m, pi))
        rng.shuffle(items)
        new = _sorted_unique(users * n_items + items)
        if len(codes):
            pos = np.searchsorted(codes, new).clip(max=len(codes) - 1)
            new = new[codes[pos] != new]
            # Merging two sorted runs: the stable sort (timsort/radix) is linear here.
            codes = np.sort(np.concatenate((codes, new)), kind="stable")
        else:
            codes = new
        yield_rate = max(len(new) / m, 0.01)
        need = n_interactions - len(codes)
    if need > 0:  # pragma: no cover - only for pathological, near-saturated requests
        raise ConfigError("could not sample enough distinct pairs; lower n_interactions or exponent")
    if len(codes) > n_interactions:
        drop = rng.choice(len(codes), size=len(codes) - n_interactions, replace=False)
        keep = np.ones(len(codes), dtype=bool)
        keep[drop] = False
        codes = codes[keep]  # still sorted: CSR order
    users = codes // n_items
    cols = (codes % n_items).astype(np.int32)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    csr = sp.csr_matrix((np.ones(len(codes), dtype=np.float32), cols, indptr), shape=(n_users, n_items))
    return InteractionMatrix(
        csr, np.arange(n_users, dtype=np.int64), np.arange(n_items, dtype=np.int64), name=name
    )
