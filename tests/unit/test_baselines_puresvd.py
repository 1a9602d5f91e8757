"""PureSVD (Cremonesi et al. 2010): hand-checkable projections."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from baselines.puresvd import PureSVD
from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError
from tests.synthetic import dense, random_matrix

# X^T X = [[2, 2, 0], [2, 2, 0], [0, 0, 1]]: the top right singular vector is (1, 1, 0) / sqrt(2)
# (singular value 2), the second (0, 0, 1) (singular value 1).
TWO_BLOCKS = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32)


def test_puresvd_rank_one_keeps_only_the_big_block() -> None:
    model = PureSVD(n_factors=1).fit(InteractionMatrix.from_csr(sp.csr_matrix(TWO_BLOCKS)))
    np.testing.assert_allclose(model.singular_values_, [2.0], atol=1e-6)
    expected = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=np.float32)
    np.testing.assert_allclose(model.score(np.arange(3)), expected, atol=1e-6)


def test_puresvd_rank_two_reconstructs_both_blocks() -> None:
    model = PureSVD(n_factors=2).fit(InteractionMatrix.from_csr(sp.csr_matrix(TWO_BLOCKS)))
    np.testing.assert_allclose(model.score(np.arange(3)), TWO_BLOCKS, atol=1e-6)


def test_puresvd_full_rank_reconstructs_the_training_matrix() -> None:
    train = random_matrix(n_users=20, n_items=8, density=0.3, seed=5)
    model = PureSVD(n_factors=8).fit(train)
    np.testing.assert_allclose(model.score(np.arange(20)), dense(train), atol=1e-5)


def test_puresvd_truncated_scores_equal_numpy_svd_projection() -> None:
    train = random_matrix(n_users=30, n_items=15, density=0.25, seed=2)
    x = dense(train).astype(np.float64)
    _, s, vt = np.linalg.svd(x)
    v = vt[:5].T
    model = PureSVD(n_factors=5, random_state=1).fit(train)
    np.testing.assert_allclose(model.singular_values_, s[:5], rtol=1e-4)
    np.testing.assert_allclose(model.score(np.arange(30)), x @ v @ v.T, atol=1e-4)


def test_puresvd_item_without_training_data_scores_zero() -> None:
    x = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 1]], dtype=np.float32)
    model = PureSVD(n_factors=2).fit(InteractionMatrix.from_csr(sp.csr_matrix(x)))
    assert np.all(model.score(np.arange(3))[:, 1] == 0.0)


def test_puresvd_more_factors_than_items_names_the_data_limit() -> None:
    with pytest.raises(ConfigError, match=r"PureSVD: n_factors=4 exceeds min\(n_users, n_items\)=3"):
        PureSVD(n_factors=4).fit(InteractionMatrix.from_csr(sp.csr_matrix(TWO_BLOCKS)))
