"""MF BPR (baselines.bpr): recovers a planted low-rank preference, deterministic, resumable state."""

from __future__ import annotations

import numpy as np
import pytest

from baselines.bpr import MFBPR, SGD_MODES
from benchmark.data.interactions import InteractionMatrix


def planted_low_rank(seed: int = 0) -> tuple[InteractionMatrix, np.ndarray, np.ndarray]:
    """200 users x 120 items whose preference is rank 4: users like the items of their group.

    Each user interacted with 12 of the 30 items of their group; 4 more of them are held out. A
    model that recovered the preference ranks the held-out items (own group) above the other
    groups' items; popularity cannot (the groups are equally popular).
    """
    rng = np.random.default_rng(seed)
    n_users, n_items, n_groups = 200, 120, 4
    per_group = n_items // n_groups
    users, items, held = [], [], np.zeros((n_users, n_items), dtype=bool)
    for u in range(n_users):
        g = u % n_groups
        chosen = rng.choice(per_group, size=16, replace=False) + g * per_group
        users += [u] * 12
        items += list(chosen[:12])
        held[u, chosen[12:]] = True
    train = InteractionMatrix.from_indices(
        np.array(users), np.array(items), np.arange(n_users), np.arange(n_items), name="low-rank"
    )
    own = np.zeros((n_users, n_items), dtype=bool)
    for u in range(n_users):
        g = u % n_groups
        own[u, g * per_group : (g + 1) * per_group] = True
    return train, held, own


def auc(scores: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> float:
    """Mean over users of P(score of a held-out positive > score of a negative)."""
    out = []
    for s, p, n in zip(scores, positives, negatives, strict=True):
        out.append((s[p][:, None] > s[n][None, :]).mean())
    return float(np.mean(out))


@pytest.mark.parametrize("mode", [m for m in SGD_MODES if m != "rmsprop"])
def test_bpr_recovers_a_planted_low_rank_preference(mode: str) -> None:
    train, held, own = planted_low_rank()
    lr = {"sgd": 0.2, "adagrad": 0.05, "adam": 0.005}[mode]  # sgd steps by the batch-mean gradient
    model = MFBPR(factors=8, epochs=150, batch_size=4, learning_rate=lr, sgd_mode=mode).fit(train)
    scores = model.score(np.arange(train.n_users))
    seen = train.matrix.toarray() > 0
    other_groups = ~own & ~seen
    got = auc(scores, held, other_groups)
    assert got > 0.95, (mode, got)
    # the untrained factors (one epoch of a tiny step) do not
    cold = MFBPR(factors=8, epochs=1, batch_size=4, learning_rate=1e-6, sgd_mode=mode).fit(train)
    assert auc(cold.score(np.arange(train.n_users)), held, other_groups) < 0.6


def test_bpr_is_deterministic_per_seed_and_differs_across_seeds() -> None:
    train, _, _ = planted_low_rank()
    a = MFBPR(factors=4, epochs=5, random_state=3).fit(train).score(np.arange(50))
    b = MFBPR(factors=4, epochs=5, random_state=3).fit(train).score(np.arange(50))
    c = MFBPR(factors=4, epochs=5, random_state=4).fit(train).score(np.arange(50))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_bpr_state_round_trip_resumes_training_exactly() -> None:
    """Early stopping restores a state; training on from it equals the uninterrupted run."""
    train, _, _ = planted_low_rank()
    full = MFBPR(factors=4, epochs=6, sgd_mode="adam").fit(train)
    states = {}

    def keep(model: MFBPR, epoch: int) -> bool:
        states[epoch] = model.get_state()
        return False

    MFBPR(factors=4, epochs=3, sgd_mode="adam").fit(train, epoch_callback=keep)
    resumed = MFBPR(factors=4, epochs=6, sgd_mode="adam")
    resumed._init_fit(train)
    resumed.set_state(states[3])
    for epoch in (4, 5, 6):
        resumed._fit_epoch(epoch)
    np.testing.assert_array_equal(resumed.score(np.arange(20)), full.score(np.arange(20)))


def test_bpr_user_without_interactions_scores_zero_or_the_item_bias() -> None:
    train, _, _ = planted_low_rank()
    keep = train.row_indices() != 0
    holes = train.select(keep, name="no user 0")
    plain = MFBPR(factors=4, epochs=3).fit(holes).score(np.array([0]))
    assert np.all(plain == 0)
    biased = MFBPR(factors=4, epochs=3, item_bias=True).fit(holes)
    np.testing.assert_allclose(biased.score(np.array([0]))[0], biased.item_bias_.astype(np.float32))
