"""Small synthetic interaction data with known structure, shared by the unit tests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from benchmark.data.interactions import InteractionMatrix
from benchmark.splits.split import Split


def random_matrix(
    n_users: int = 50,
    n_items: int = 40,
    density: float = 0.1,
    seed: int = 0,
    *,
    ratings: bool = False,
    timestamps: bool = False,
) -> InteractionMatrix:
    """A random matrix where every user and item has at least one interaction."""
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < density
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    dense[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    users, items = np.nonzero(dense)
    r = rng.integers(1, 6, len(users)).astype(np.float32) if ratings else None
    t = rng.integers(1_000_000, 2_000_000, len(users)) if timestamps else None
    return InteractionMatrix.from_indices(
        users, items, np.arange(n_users), np.arange(n_items), ratings=r, timestamps=t, name="random"
    )


def planted_blocks(n_blocks: int = 4, users_per_block: int = 6, items_per_block: int = 5) -> Split:
    """Block-diagonal data with one held-out item per user: the held-out item is the right top-1.

    Users of block b interacted with every item of block b except one held out for the test. The
    held-out item is rotated within the block, so every item of the block is a training item of
    most users of the block; any sensible collaborative model ranks the held-out item first among
    the user's unseen items (all other unseen items belong to other blocks, with no co-occurrence).
    """
    users: list[int] = []
    items: list[int] = []
    test_u: list[int] = []
    test_i: list[int] = []
    for b in range(n_blocks):
        for k in range(users_per_block):
            u = b * users_per_block + k
            held = b * items_per_block + (k % items_per_block)
            for j in range(items_per_block):
                i = b * items_per_block + j
                (test_u if i == held else users).append(u)
                (test_i if i == held else items).append(i)
    n_users, n_items = n_blocks * users_per_block, n_blocks * items_per_block
    uid, iid = np.arange(n_users), np.arange(n_items)
    train = InteractionMatrix.from_indices(np.array(users), np.array(items), uid, iid, name="planted/train")
    test = InteractionMatrix.from_indices(np.array(test_u), np.array(test_i), uid, iid, name="planted/test")
    return Split(train=train, test=test, params={"splitter": "planted"})


def dense(im: InteractionMatrix) -> np.ndarray:
    return np.asarray(sp.csr_matrix(im.matrix).toarray())
