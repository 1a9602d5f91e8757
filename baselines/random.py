"""Random scores: the floor every recommender must clear."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from benchmark.data.interactions import InteractionMatrix
from benchmark.models import ModelTags, Param, Recommender
from benchmark.seeds import derive_seed

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele, Lea & Flood 2014), vectorised on uint64 (wraps modulo 2**64)."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return x ^ (x >> np.uint64(31))


class Random(Recommender):
    """Uniform random scores, different for every user and fixed by ``random_state``.

    The non-personalised lower bound used throughout Dacrema, Cremonesi & Jannach, "Are we really
    making much progress? A worrying analysis of recent neural recommendation approaches" (RecSys
    2019). The score of ``(user, item)`` is a hash of ``(random_state, user, item)``, so it does not
    depend on which batch the user is scored in, and the same seed gives the same scores in any
    process.

    Scores of training items lie in ``(0, 1]``; items without training interactions score 0 (the
    same rule as every other model: an item never seen in training cannot be recommended on
    evidence). Users without training interactions get random scores like everyone else.

    Args:
        random_state: seed of the scores.
    """

    tags: ClassVar[ModelTags] = ModelTags(personalised=False)  # random scores ignore the history

    param_specs: ClassVar[dict[str, Param]] = {"random_state": Param("int", low=0, high=2**63 - 1)}

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, train: InteractionMatrix) -> Random:
        self.validate_params()
        self.n_items_ = train.n_items
        self.seen_items_ = train.item_counts() > 0
        self.seed_ = derive_seed("Random", int(self.random_state))
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted("seed_")
        users = np.asarray(users, dtype=np.uint64)
        items = np.arange(self.n_items_, dtype=np.uint64)
        with np.errstate(over="ignore"):
            key = _splitmix64(np.uint64(self.seed_) ^ _splitmix64(users))
            bits = _splitmix64(key[:, None] ^ (items[None, :] * np.uint64(0xD6E8FEB86659FD93) & _MASK64))
        # Top 24 bits -> (0, 1] exactly representable in float32; 0 is kept for unseen items.
        scores = ((bits >> np.uint64(40)).astype(np.float32) + 1.0) / np.float32(2**24)
        scores[:, ~self.seen_items_] = 0.0
        return scores
