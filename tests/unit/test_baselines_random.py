"""Random: seeded, per-user, batch-independent scores."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import stats

from baselines.random import Random
from benchmark.data.interactions import InteractionMatrix
from tests.synthetic import random_matrix

TRAIN = random_matrix(n_users=200, n_items=150, density=0.05, seed=1)


def test_random_same_seed_same_scores_other_seed_other_scores() -> None:
    users = np.arange(TRAIN.n_users)
    a = Random(random_state=3).fit(TRAIN).score(users)
    b = Random(random_state=3).fit(TRAIN).score(users)
    c = Random(random_state=4).fit(TRAIN).score(users)
    np.testing.assert_array_equal(a, b)
    assert np.mean(a == c) < 0.01


def test_random_rankings_differ_between_users() -> None:
    scores = Random().fit(TRAIN).score(np.arange(TRAIN.n_users))
    top1 = scores.argmax(axis=1)
    assert len(np.unique(top1)) > 50  # 200 users over 150 items: nearly all distinct draws
    assert not np.array_equal(scores[0], scores[1])


def test_random_scores_are_uniform_on_zero_one() -> None:
    scores = Random(random_state=9).fit(TRAIN).score(np.arange(TRAIN.n_users)).ravel()
    assert scores.min() > 0.0 and scores.max() <= 1.0
    assert stats.kstest(scores, "uniform").pvalue > 1e-3


def test_random_item_without_training_data_scores_zero_user_without_data_scores_randomly() -> None:
    x = np.array([[1, 0, 1, 0], [0, 0, 1, 1], [0, 0, 0, 0]], dtype=np.float32)  # item 1, user 2 empty
    scores = Random().fit(InteractionMatrix.from_csr(sp.csr_matrix(x))).score(np.arange(3))
    assert np.all(scores[:, 1] == 0.0)
    assert np.all(scores[:, [0, 2, 3]] > 0.0)
    assert len(np.unique(scores[2, [0, 2, 3]])) == 3
