"""iALS and BPR through implicit: confidence values, equality with implicit, per-epoch semantics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from threadpoolctl import threadpool_limits

from baselines.mf import BPR, IALS, confidence_matrix
from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError
from tests.synthetic import dense, random_matrix

TRAIN = random_matrix(n_users=40, n_items=30, density=0.15, seed=11)


def with_empty_user_and_item(user: int, item: int) -> InteractionMatrix:
    keep = (TRAIN.row_indices() != user) & (TRAIN.matrix.indices != item)
    return TRAIN.select(keep)


# ----------------------------------------------------------------------------- confidence
def test_linear_confidence_is_one_plus_alpha_times_value() -> None:
    x = sp.csr_matrix(np.array([[1.0, 0.0, 3.0], [0.0, 2.0, 0.0]], dtype=np.float32))
    c = confidence_matrix(x, "linear", alpha=2.0)
    np.testing.assert_allclose(c.toarray(), [[3.0, 0.0, 7.0], [0.0, 5.0, 0.0]])
    assert c.dtype == np.float32
    assert x.data.tolist() == [1.0, 3.0, 2.0]  # input untouched


def test_log_confidence_is_one_plus_alpha_log_one_plus_value_over_epsilon() -> None:
    x = sp.csr_matrix(np.array([[1.0, 0.0, 3.0]], dtype=np.float32))
    c = confidence_matrix(x, "log", alpha=2.0, epsilon=0.5)
    # 1 + 2 ln(1 + 1/0.5) = 1 + 2 ln 3 = 3.1972...; 1 + 2 ln(1 + 3/0.5) = 1 + 2 ln 7 = 4.8918...
    np.testing.assert_allclose(c.toarray(), [[3.1972246, 0.0, 4.8918203]], rtol=1e-6)


def test_unknown_confidence_scaling_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"IALS: confidence_scaling='sqrt' is not allowed; expected one of"):
        IALS(confidence_scaling="sqrt").fit(TRAIN)


# ----------------------------------------------------------------------------- iALS
@pytest.mark.parametrize("use_cg", [True, False])
def test_ials_equals_implicit_called_directly_with_the_same_confidence(use_cg: bool) -> None:
    model = IALS(factors=6, regularization=0.05, alpha=3.0, epochs=4, use_cg=use_cg, random_state=5)
    model.fit(TRAIN)
    c = sp.csr_matrix(dense(TRAIN) * 3.0 + (dense(TRAIN) > 0), dtype=np.float32)  # 1 + 3 x on entries
    with threadpool_limits(1, "blas"):
        direct = AlternatingLeastSquares(
            factors=6, regularization=0.05, alpha=1.0, iterations=4, use_cg=use_cg, random_state=5
        )
        direct.fit(c, show_progress=False)
    np.testing.assert_array_equal(model.user_factors_, direct.user_factors)
    np.testing.assert_array_equal(model.item_factors_, direct.item_factors)


def test_ials_item_factors_solve_the_weighted_normal_equations_with_confidence_one_plus_alpha() -> None:
    # After a sweep the item factors are the exact (Cholesky) least-squares solution given the user
    # factors: y_i = (U^T C_i U + reg I)^-1 U^T C_i p_i with c_ui = 1 + alpha on observed entries.
    alpha, reg = 4.0, 0.3
    model = IALS(factors=5, regularization=reg, alpha=alpha, epochs=2, use_cg=False).fit(TRAIN)
    u = model.user_factors_.astype(np.float64)
    p = dense(TRAIN).astype(np.float64)
    for i in range(TRAIN.n_items):
        c = 1.0 + alpha * p[:, i]
        a = u.T @ (c[:, None] * u) + reg * np.eye(5)
        y = np.linalg.solve(a, u.T @ (c * p[:, i]))
        np.testing.assert_allclose(model.item_factors_[i], y, rtol=1e-3, atol=1e-4)


def test_ials_log_scaling_on_binary_data_equals_linear_with_alpha_times_log_term() -> None:
    users = np.arange(TRAIN.n_users)
    log = IALS(factors=4, alpha=2.0, epsilon=0.5, confidence_scaling="log", epochs=3).fit(TRAIN)
    linear = IALS(factors=4, alpha=2.0 * float(np.log(3.0)), epochs=3).fit(TRAIN)
    np.testing.assert_allclose(log.score(users), linear.score(users), rtol=1e-4, atol=1e-5)


def test_ials_is_deterministic_across_thread_counts() -> None:
    users = np.arange(TRAIN.n_users)
    one = IALS(factors=8, epochs=3, num_threads=1).fit(TRAIN).score(users)
    two = IALS(factors=8, epochs=3, num_threads=2).fit(TRAIN).score(users)
    np.testing.assert_array_equal(one, two)


def test_ials_user_and_item_without_training_data_score_zero() -> None:
    model = IALS(factors=4, epochs=3).fit(with_empty_user_and_item(user=2, item=5))
    scores = model.score(np.arange(TRAIN.n_users))
    assert np.all(scores[2] == 0.0) and np.all(scores[:, 5] == 0.0)
    assert np.count_nonzero(scores[3]) > 20


# ----------------------------------------------------------------------------- BPR
def test_bpr_one_epoch_equals_one_implicit_iteration() -> None:
    model = BPR(factors=6, learning_rate=0.05, regularization=0.01, epochs=1, random_state=3).fit(TRAIN)
    direct = BayesianPersonalizedRanking(
        factors=6, learning_rate=0.05, regularization=0.01, iterations=1, num_threads=1, random_state=3
    )
    direct.fit(TRAIN.matrix.copy(), show_progress=False)
    np.testing.assert_array_equal(model.user_factors_, direct.user_factors)
    np.testing.assert_array_equal(model.item_factors_, direct.item_factors)


def test_bpr_later_epochs_continue_one_random_stream() -> None:
    # Each epoch is one implicit fit call; the samplers' seeds come from one generator, so epoch 2
    # does not replay epoch 1's samples (which re-seeding from the integer would do).
    model = BPR(factors=6, learning_rate=0.05, regularization=1e-4, epochs=3, random_state=3).fit(TRAIN)
    direct = BayesianPersonalizedRanking(
        factors=6,
        learning_rate=0.05,
        regularization=1e-4,
        iterations=1,
        num_threads=1,
        random_state=np.random.default_rng(3),
    )
    replay = BayesianPersonalizedRanking(
        factors=6, learning_rate=0.05, regularization=1e-4, iterations=1, num_threads=1, random_state=3
    )
    x = TRAIN.matrix.copy()
    for _ in range(3):
        direct.fit(x, show_progress=False)
        replay.fit(x, show_progress=False)
    np.testing.assert_array_equal(model.item_factors_, direct.item_factors)
    assert not np.array_equal(model.item_factors_, replay.item_factors)


def test_bpr_ranks_training_items_above_others_after_training() -> None:
    model = BPR(factors=16, learning_rate=0.05, epochs=100).fit(TRAIN)
    scores = model.score(np.arange(TRAIN.n_users))
    x = dense(TRAIN) > 0
    # pairwise training AUC: a positive item outscores a non-interacted one
    auc = np.mean([(scores[u, x[u]][:, None] > scores[u, ~x[u]][None, :]).mean() for u in range(40)])
    assert auc > 0.9


def test_bpr_user_without_data_scores_item_bias_and_unseen_item_scores_zero() -> None:
    model = BPR(factors=4, epochs=5).fit(with_empty_user_and_item(user=2, item=5))
    scores = model.score(np.array([2, 3]))
    bias = model.item_factors_[:, -1].copy()
    bias[5] = 0.0
    np.testing.assert_allclose(scores[0], bias, atol=1e-7)
    assert np.all(scores[:, 5] == 0.0)
    assert np.all(model.user_factors_[2, :-1] == 0.0)
