"""SLIM ElasticNet (Ning & Karypis 2011): weight structure and equality with a direct fit."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import ElasticNet

from baselines.slim import SLIM
from benchmark.data.interactions import InteractionMatrix
from tests.synthetic import dense, random_matrix

TRAIN = random_matrix(n_users=60, n_items=25, density=0.2, seed=4)


def test_slim_weights_are_non_negative_with_zero_diagonal_and_at_most_top_k_per_item() -> None:
    model = SLIM(alpha=1e-3, l1_ratio=0.1, top_k=3).fit(TRAIN)
    w = model.weights_.toarray()
    assert w.shape == (25, 25)
    assert np.all(w >= 0.0)
    assert np.all(np.diag(w) == 0.0)
    per_item = np.count_nonzero(w, axis=0)
    assert np.all(per_item == 3)  # weak penalty: every column has 7 to 14 positive weights untruncated


def test_slim_column_equals_elasticnet_on_dense_data_with_the_item_removed() -> None:
    alpha, l1_ratio = 2e-3, 0.3
    model = SLIM(alpha=alpha, l1_ratio=l1_ratio, top_k=25, max_iter=1000, tol=1e-8).fit(TRAIN)
    x = dense(TRAIN).astype(np.float64)
    for j in (0, 7, 24):
        xj = x.copy()
        xj[:, j] = 0.0
        direct = ElasticNet(
            alpha=alpha, l1_ratio=l1_ratio, positive=True, fit_intercept=False, max_iter=1000, tol=1e-8
        ).fit(xj, x[:, j])
        np.testing.assert_allclose(model.weights_[:, [j]].toarray().ravel(), direct.coef_, atol=1e-5)


def test_slim_column_equals_the_full_regression_when_items_share_no_user() -> None:
    # Three user communities with disjoint items, one user bridging two of them: most items share no
    # user with most others, so each regression is solved on a small set of co-occurring items. The
    # weights must still be the full regression's (all 30 items, the target item's column zeroed).
    rng = np.random.default_rng(3)
    x = np.zeros((90, 30))
    for c in range(3):
        block = rng.random((30, 10)) < 0.3
        x[30 * c : 30 * c + 30, 10 * c : 10 * c + 10] = block
    x[0, [12, 15]] = 1.0  # user 0 (community 0) also read two items of community 1
    train = InteractionMatrix.from_csr(sp.csr_matrix(x))
    x = dense(train).astype(np.float64)  # what the model sees
    alpha, l1_ratio = 1e-3, 0.2
    model = SLIM(alpha=alpha, l1_ratio=l1_ratio, top_k=30, max_iter=2000, tol=1e-10).fit(train)
    w = model.weights_.toarray()
    for j in range(30):
        xj = x.copy()
        xj[:, j] = 0.0
        direct = ElasticNet(
            alpha=alpha, l1_ratio=l1_ratio, positive=True, fit_intercept=False, max_iter=2000, tol=1e-10
        ).fit(xj, x[:, j])
        np.testing.assert_allclose(w[:, j], direct.coef_, atol=1e-7, err_msg=f"item {j}")
    assert np.count_nonzero(w[20:, :20]) == 0 and np.count_nonzero(w[:10, 20:]) == 0  # no shared user
    assert w[12, 0] > 0 or w[15, 0] > 0 or w[0:10, 12].any()  # the bridge links communities 0 and 1


def test_slim_top_k_keeps_the_largest_weights_of_each_column() -> None:
    full = SLIM(top_k=25).fit(TRAIN).weights_.toarray()
    top2 = SLIM(top_k=2).fit(TRAIN).weights_.toarray()
    for j in range(25):
        kept = np.flatnonzero(top2[:, j])
        assert set(kept) == set(np.argsort(-full[:, j])[:2])
        np.testing.assert_array_equal(top2[kept, j], full[kept, j])


def test_slim_dacrema_rule_keeps_min_nnz_minus_one_and_top_k() -> None:
    full = SLIM(top_k=25).fit(TRAIN).weights_.toarray()
    nnz = np.count_nonzero(full, axis=0)
    k = int(np.median(nnz[nnz > 0]))  # some items have fewer than k weights, some more
    ref = SLIM(top_k=k, top_k_rule="dacrema").fit(TRAIN).weights_.toarray()
    plain = SLIM(top_k=k).fit(TRAIN).weights_.toarray()
    assert (nnz <= k).any() and (nnz > k).any()
    for j in range(25):
        expected = max(min(nnz[j] - 1, k), 0)
        kept = np.flatnonzero(ref[:, j])
        assert len(kept) == expected, (j, nnz[j], k)
        assert set(kept) == set(np.argsort(-full[:, j], kind="stable")[:expected])
        if nnz[j] > k:  # the two rules agree where an item has more than top_k weights
            np.testing.assert_array_equal(ref[:, j], plain[:, j])
        else:  # ... and the reference drops the smallest weight where it has at most top_k
            assert len(np.flatnonzero(plain[:, j])) == nnz[j]


def test_slim_parallel_fit_equals_serial_fit() -> None:
    serial = SLIM(top_k=5, n_jobs=1).fit(TRAIN).weights_
    parallel = SLIM(top_k=5, n_jobs=2).fit(TRAIN).weights_
    np.testing.assert_array_equal(serial.toarray(), parallel.toarray())


def test_slim_scores_are_user_rows_times_weights_and_unseen_item_scores_zero() -> None:
    x = dense(TRAIN)
    x[:, 4] = 0.0  # item 4 never seen
    train = InteractionMatrix.from_csr(sp.csr_matrix(x))
    model = SLIM(top_k=10).fit(train)
    scores = model.score(np.arange(60))
    np.testing.assert_allclose(scores, x @ model.weights_.toarray(), rtol=1e-6, atol=1e-7)
    assert np.all(scores[:, 4] == 0.0)
    assert model.weights_[4].nnz == 0 and model.weights_[:, 4].nnz == 0
