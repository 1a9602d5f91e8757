"""ItemKNN, UserKNN and the blocked top-k similarity machinery: hand-checked values and properties."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from baselines.knn import ItemKNN, UserKNN
from baselines.similarity import (
    SIMILARITIES,
    blocked_topk,
    bm25,
    centre_rows,
    tf_idf,
    topk_per_column,
    topk_similarity,
    weight_features,
)
from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError
from tests.synthetic import dense, planted_blocks, random_matrix

# 4 users x 3 items. Item columns: i0 = {u0, u1, u2}, i1 = {u0, u2, u3}, i2 = {u1, u2}.
X43 = np.array(
    [
        [1, 1, 0],
        [1, 0, 1],
        [1, 1, 1],
        [0, 1, 0],
    ],
    dtype=np.float32,
)


def im(x: np.ndarray, ratings: np.ndarray | None = None) -> InteractionMatrix:
    """InteractionMatrix of a dense 0/1 array (ratings: dense array of the same shape, optional)."""
    users, items = np.nonzero(x)
    r = None if ratings is None else ratings[users, items]
    return InteractionMatrix.from_indices(
        users, items, np.arange(x.shape[0]), np.arange(x.shape[1]), ratings=r, name="hand"
    )


def sim_dense(model: ItemKNN) -> np.ndarray:
    """ItemKNN's similarity as a dense array with S[i, j] = sim(neighbour i, target j)."""
    return model.similarity_.toarray()


# ----------------------------------------------------------------------------- hand-checked cases
def test_itemknn_cosine_on_4x3_matrix_matches_hand_computed_similarities_and_scores() -> None:
    model = ItemKNN(top_k=5, shrink=0, similarity="cosine").fit(im(X43))
    # co-occurrences: (i0,i1)=2, (i0,i2)=2, (i1,i2)=1; column sizes 3, 3, 2.
    s01, s02, s12 = 2 / math.sqrt(3 * 3), 2 / math.sqrt(3 * 2), 1 / math.sqrt(3 * 2)
    expected_sim = np.array([[0, s01, s02], [s01, 0, s12], [s02, s12, 0]])
    np.testing.assert_allclose(sim_dense(model), expected_sim, rtol=1e-6)
    # user 0 has {i0, i1}: score(j) = sum of sim(i, j) over i in the profile
    # user 3 has {i1}: score(j) = sim(i1, j)
    scores = model.score(np.array([0, 3]))
    expected = np.array([[s01, s01, s02 + s12], [s01, 0, s12]])
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert scores.dtype == np.float32


def test_itemknn_shrink_enters_the_denominator() -> None:
    model = ItemKNN(top_k=5, shrink=1, similarity="cosine").fit(im(X43))
    expected = np.array(
        [
            [0, 2 / (3 + 1), 2 / (math.sqrt(6) + 1)],
            [2 / (3 + 1), 0, 1 / (math.sqrt(6) + 1)],
            [2 / (math.sqrt(6) + 1), 1 / (math.sqrt(6) + 1), 0],
        ]
    )
    np.testing.assert_allclose(sim_dense(model), expected, rtol=1e-6)


def test_shrink_prefers_the_well_supported_neighbour() -> None:
    # target t = {u0, u1}; a = {u0}: cosine 1/sqrt(2) = 0.71 from one co-occurrence;
    # b = {u0..u7}: cosine 2/sqrt(16) = 0.5 from two. shrink=5: a -> 1/(1.41+5) = 0.16, b -> 2/9 = 0.22.
    x = np.zeros((8, 3), dtype=np.float32)
    x[[0, 1], 0] = 1  # t
    x[0, 1] = 1  # a
    x[:, 2] = 1  # b
    train = im(x)
    no_shrink = ItemKNN(top_k=1, shrink=0).fit(train).similarity_.toarray()[:, 0]
    shrunk = ItemKNN(top_k=1, shrink=5).fit(train).similarity_.toarray()[:, 0]
    assert np.flatnonzero(no_shrink).tolist() == [1]
    assert np.flatnonzero(shrunk).tolist() == [2]
    assert shrunk[2] == pytest.approx(2 / 9)


# column a = {u0, u1, u2}, b = {u1, u2, u3, u4}: |a ∩ b| = 2, |a| = 3, |b| = 4
XAB = np.array([[1, 0], [1, 1], [1, 1], [0, 1], [0, 1]], dtype=np.float32)


@pytest.mark.parametrize(
    ("similarity", "kwargs", "sim_a_b", "sim_b_a"),
    [
        ("jaccard", {}, 2 / (3 + 4 - 2), 2 / (3 + 4 - 2)),
        ("dice", {}, 2 * 2 / (3 + 4), 2 * 2 / (3 + 4)),
        # target a: 2 / (2 + 1 * |a - b| + 0 * |b - a|) = 2 / 3; target b: 2 / (2 + 1 * 2) = 1 / 2
        ("tversky", {"tversky_alpha": 1.0, "tversky_beta": 0.0}, 2 / 3, 2 / 4),
        ("tversky", {"tversky_alpha": 0.5, "tversky_beta": 0.5}, 4 / 7, 4 / 7),  # = Dice
        ("tversky", {"tversky_alpha": 1.0, "tversky_beta": 1.0}, 2 / 5, 2 / 5),  # = Jaccard
        # asymmetric alpha=1: d / |target|
        ("asymmetric", {"asymmetric_alpha": 1.0}, 2 / 3, 2 / 4),
        ("asymmetric", {"asymmetric_alpha": 0.0}, 2 / 4, 2 / 3),
    ],
)
def test_set_similarities_on_two_columns_match_hand_computed_values(
    similarity: str, kwargs: dict[str, Any], sim_a_b: float, sim_b_a: float
) -> None:
    s = topk_similarity(sp.csr_matrix(XAB), top_k=1, similarity=similarity, **kwargs).toarray()
    # row = target, column = candidate
    np.testing.assert_allclose(s, [[0, sim_a_b], [sim_b_a, 0]], rtol=1e-6)
    # ItemKNN stores it transposed: column = target
    model = ItemKNN(top_k=1, shrink=0, similarity=similarity, **kwargs).fit(im(XAB))
    np.testing.assert_allclose(sim_dense(model), [[0, sim_b_a], [sim_a_b, 0]], rtol=1e-6)


def test_set_similarities_use_the_binary_pattern_of_weighted_data() -> None:
    weighted = sp.csr_matrix(XAB * np.array([[3.0], [1.0], [2.0], [5.0], [1.0]], dtype=np.float32))
    s = topk_similarity(weighted, top_k=1, similarity="jaccard").toarray()
    np.testing.assert_allclose(s, [[0, 0.4], [0.4, 0]], rtol=1e-6)
    shrunk = topk_similarity(weighted, top_k=1, similarity="jaccard", shrink=5).toarray()
    np.testing.assert_allclose(shrunk, [[0, 2 / 10], [2 / 10, 0]], rtol=1e-6)


def test_asymmetric_cosine_with_alpha_one_half_equals_cosine() -> None:
    x = random_matrix(40, 30, 0.2, seed=3).matrix
    cos = topk_similarity(x, top_k=30, similarity="cosine", shrink=2).toarray()
    asym = topk_similarity(x, top_k=30, similarity="asymmetric", asymmetric_alpha=0.5, shrink=2).toarray()
    np.testing.assert_allclose(asym, cos, rtol=1e-6, atol=1e-7)
    assert np.count_nonzero(cos) > 100


def test_normalize_false_keeps_raw_cooccurrence_counts_divided_by_shrink() -> None:
    s = topk_similarity(sp.csr_matrix(X43), top_k=3, similarity="cosine", normalize=False).toarray()
    np.testing.assert_array_equal(s, [[0, 2, 2], [2, 0, 1], [2, 1, 0]])
    s4 = topk_similarity(sp.csr_matrix(X43), top_k=3, similarity="cosine", normalize=False, shrink=4)
    np.testing.assert_allclose(s4.toarray(), np.array([[0, 2, 2], [2, 0, 1], [2, 1, 0]]) / 4)


def test_adjusted_cosine_centres_ratings_by_user_mean() -> None:
    ratings = np.array([[5, 3, 0], [4, 0, 2], [1, 5, 3], [0, 4, 0]], dtype=np.float32)
    x = (ratings > 0).astype(np.float32)
    # user means 4, 3, 3, 4 -> centred: u0 (1, -1, .), u1 (1, ., -1), u2 (-2, 2, 0), u3 (., 0, .)
    c = np.array([[1, -1, 0], [1, 0, -1], [-2, 2, 0], [0, 0, 0]], dtype=np.float64)
    norms = np.sqrt((c**2).sum(axis=0))
    ref = (c.T @ c) / np.outer(norms, norms)
    np.fill_diagonal(ref, 0)
    model = ItemKNN(top_k=3, shrink=0, similarity="adjusted").fit(im(x, ratings))
    # sim(i0, i1) = (-1 - 4) / (sqrt(6) sqrt(5)) < 0, sim(i0, i2) = -1 / (sqrt(6) * 1) < 0, sim(i1, i2) = 0
    np.testing.assert_allclose(sim_dense(model), ref, rtol=1e-6, atol=1e-7)
    assert ref[0, 1] == pytest.approx(-5 / math.sqrt(30))
    # scores are computed from the binary interactions
    np.testing.assert_allclose(model.score(np.array([3])), ref[[1]], rtol=1e-6, atol=1e-7)


def test_adjusted_cosine_on_binary_data_raises_config_error() -> None:
    with pytest.raises(ConfigError, match=r"ItemKNN: similarity='adjusted' needs explicit ratings"):
        ItemKNN(similarity="adjusted").fit(im(X43))
    with pytest.raises(ConfigError, match=r"UserKNN: similarity='adjusted'"):
        UserKNN(similarity="adjusted").fit(im(X43))


def test_centre_rows_subtracts_the_mean_of_stored_values() -> None:
    m = sp.csr_matrix(np.array([[2, 0, 4], [0, 0, 0], [0, 7, 0], [1, 2, 6], [0, 0, 0]], dtype=np.float32))
    expected = np.array([[-1, 0, 1], [0, 0, 0], [0, 0, 0], [-2, -1, 3], [0, 0, 0]])
    np.testing.assert_allclose(centre_rows(m).toarray(), expected)


def test_tf_idf_and_bm25_weights_with_rows_as_documents() -> None:
    # 4 documents (rows), 2 terms: term 0 in 1 document (idf ln(4/2)), term 1 in 3 (idf ln(4/4) = 0)
    m = sp.csr_matrix(np.array([[1, 1], [0, 1], [0, 1], [0, 0]], dtype=np.float32))
    expected = np.array([[math.log(2), 0], [0, 0], [0, 0], [0, 0]])
    np.testing.assert_allclose(tf_idf(m).toarray(), expected, atol=1e-7)
    # BM25: document lengths 2, 1, 1, 0 (mean 1); entry (0, 0): 1 * 2.2 / (1.2 * (0.25 + 0.75 * 2) + 1)
    w = bm25(m, k1=1.2, b=0.75).toarray()
    assert w[0, 0] == pytest.approx(2.2 / (1.2 * (0.25 + 0.75 * 2) + 1) * math.log(2), rel=1e-6)
    assert w[0, 1] == 0 and w[1, 1] == 0


def test_feature_weighting_treats_items_as_documents_so_idf_scales_each_user() -> None:
    train = random_matrix(30, 20, 0.2, seed=5)
    x = train.matrix
    idf_user = np.log(x.shape[1] / (1.0 + np.diff(x.indptr)))
    expected = sp.csr_matrix(sp.diags(idf_user) @ x)
    np.testing.assert_allclose(weight_features(x, "TF-IDF").toarray(), expected.toarray(), rtol=1e-6)
    model = ItemKNN(top_k=20, shrink=3, feature_weighting="TF-IDF").fit(train)
    ref = topk_similarity(expected, top_k=20, shrink=3).T.toarray()
    np.testing.assert_allclose(sim_dense(model), ref, rtol=1e-5)


# ----------------------------------------------------------------------------- top-k
def test_top_k_keeps_exactly_the_k_largest_of_each_column() -> None:
    rng = np.random.default_rng(0)
    values = rng.permutation(200).reshape(10, 20).astype(np.float32) + 1  # distinct, non-zero
    w = topk_per_column(sp.csr_matrix(values), 3).toarray()
    for j in range(20):
        kept = np.flatnonzero(w[:, j])
        assert sorted(kept) == sorted(np.argsort(values[:, j])[-3:])
        np.testing.assert_array_equal(w[kept, j], values[kept, j])


def test_blocked_topk_keeps_the_k_largest_per_row_and_breaks_ties_by_lowest_index() -> None:
    full = np.array([[0, 5, 3, 3, 3, 1], [2, 0, 0, 0, 2, 2], [-1, -2, 4, 0, 0, 0]], dtype=np.float32)
    got = blocked_topk(lambda a, b: full[a:b], 3, 6, 3, exclude_diagonal=False, block_size=2).toarray()
    expected = np.array([[0, 5, 3, 3, 0, 0], [2, 0, 0, 0, 2, 2], [0, 0, 4, 0, 0, 0]], dtype=np.float32)
    # row 2: the 3 largest are 4, 0, 0 and zeros are never stored
    np.testing.assert_array_equal(got, expected)


def test_itemknn_top_k_keeps_the_k_most_similar_neighbours_of_every_item() -> None:
    train = random_matrix(60, 40, 0.15, seed=11)
    full = ItemKNN(top_k=40, shrink=0).fit(train).similarity_.toarray()
    k = 5
    pruned = ItemKNN(top_k=k, shrink=0).fit(train).similarity_.toarray()
    for j in range(train.n_items):
        kept = np.flatnonzero(pruned[:, j])
        assert len(kept) == min(k, np.count_nonzero(full[:, j]))
        np.testing.assert_array_equal(pruned[kept, j], full[kept, j])
        dropped = np.setdiff1d(np.flatnonzero(full[:, j]), kept)
        if len(dropped):
            assert full[kept, j].min() >= full[dropped, j].max()
        assert pruned[j, j] == 0


# ----------------------------------------------------------------------------- blocked == dense
def dense_reference(
    x: np.ndarray, similarity: str, shrink: float, normalize: bool, a: float, b: float
) -> np.ndarray:
    """Full similarity (row = target, column = candidate) written directly from the formulas."""
    x = x.astype(np.float64)
    if similarity in ("jaccard", "dice", "tversky"):
        x = (x != 0).astype(np.float64)
    d = x.T @ x
    n = (x**2).sum(axis=0)
    nt, nc = n[:, None], n[None, :]
    if similarity in ("cosine", "asymmetric") and not normalize:
        s = d / shrink if shrink else d
    else:
        with np.errstate(divide="ignore", invalid="ignore"):  # 0 ** negative for unused columns
            num, den = {
                "cosine": (d, np.sqrt(nt) * np.sqrt(nc) + shrink),
                "asymmetric": (d, nt**a * nc ** (1 - a) + shrink),
                "jaccard": (d, nt + nc - d + shrink),
                "dice": (2 * d, nt + nc + shrink),
                "tversky": (d, d + a * (nt - d) + b * (nc - d) + shrink),
            }[similarity]
            s = np.where(den != 0, num / np.where(den != 0, den, 1), 0.0)
        s[d == 0] = 0
    np.fill_diagonal(s, 0)
    return s


def _sparse_matrix(n_rows: int, n_cols: int, seed: int, weighted: bool) -> np.ndarray:
    """About 35% non-zeros: 1.0 (binary) or weights in [0.5, 3) as after TF-IDF / BM25."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_rows, n_cols)) < 0.35
    values = rng.uniform(0.5, 3.0, (n_rows, n_cols)) if weighted else np.ones((n_rows, n_cols))
    return (mask * values).astype(np.float32)


matrices = st.builds(
    _sparse_matrix, st.integers(1, 12), st.integers(1, 10), st.integers(0, 2**32 - 1), st.booleans()
)


@settings(max_examples=60, deadline=None)
@given(
    x=matrices,
    similarity=st.sampled_from(["cosine", "asymmetric", "jaccard", "dice", "tversky"]),
    top_k=st.integers(1, 11),
    shrink=st.sampled_from([0.0, 1.0, 7.5]),
    normalize=st.booleans(),
    a=st.sampled_from([0.0, 0.3, 1.0, 2.0]),
    b=st.sampled_from([0.0, 0.5, 1.5]),
)
def test_blocked_similarity_equals_the_dense_reference_for_any_block_size(
    x: np.ndarray, similarity: str, top_k: int, shrink: float, normalize: bool, a: float, b: float
) -> None:
    kwargs: dict[str, Any] = dict(
        similarity=similarity,
        shrink=shrink,
        normalize=normalize,
        asymmetric_alpha=a,
        tversky_alpha=a,
        tversky_beta=b,
    )
    n = x.shape[1]
    results = [topk_similarity(sp.csr_matrix(x), top_k=top_k, block_size=bs, **kwargs) for bs in (1, 2, 3, n)]
    for other in results[1:]:  # identical for every block size, bit for bit
        assert all(
            np.array_equal(getattr(results[0], k), getattr(other, k)) for k in ("indptr", "indices", "data")
        )
    got = results[0].toarray().astype(np.float64)
    ref = dense_reference(x, similarity, shrink, normalize, a, b)
    # no pruning: every value equals the reference
    if top_k >= n:
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    # pruning: the kept entries are reference values, as many as possible, and at least as large as
    # every dropped one (ties may go either way between implementations)
    for t in range(n):
        kept = np.flatnonzero(got[t])
        np.testing.assert_allclose(got[t, kept], ref[t, kept], rtol=1e-5, atol=1e-6)
        assert len(kept) <= top_k
        assert t not in kept
        dropped = np.setdiff1d(np.flatnonzero(ref[t]), kept)
        if len(dropped):
            assert len(kept) == top_k or (ref[t, dropped] < 0).all()
            assert got[t, kept].min() >= ref[t, dropped].max() - 1e-6


# ----------------------------------------------------------------------------- UserKNN
def test_userknn_cosine_on_4x3_matrix_uses_the_k_nearest_users_of_the_target() -> None:
    # user rows: u0 = {i0, i1}, u1 = {i0, i2}, u2 = {i0, i1, i2}, u3 = {i1}
    # cosine(u0, .) = u1: 1/2, u2: 2/sqrt(6) = 0.82, u3: 1/sqrt(2) = 0.71 -> top 2: u2, u3
    model = UserKNN(top_k=2, shrink=0).fit(im(X43))
    s2, s3 = 2 / math.sqrt(6), 1 / math.sqrt(2)
    np.testing.assert_allclose(model.similarity_.toarray()[0], [0, 0, s2, s3], rtol=1e-6)
    # score(u0, i) = s2 * x[u2, i] + s3 * x[u3, i]
    np.testing.assert_allclose(model.score(np.array([0])), [[s2, s2 + s3, s2]], rtol=1e-6)


def test_userknn_with_all_neighbours_equals_dense_user_similarity_times_interactions() -> None:
    train = random_matrix(25, 30, 0.2, seed=2)
    x = dense(train)
    sim = dense_reference(x.T, "cosine", 4.0, True, 0.5, 0.5)
    expected = sim @ x
    model = UserKNN(top_k=25, shrink=4).fit(train)
    np.testing.assert_allclose(model.score(np.arange(25)), expected, rtol=1e-5, atol=1e-6)


# Users (rows) x 6 items, built so that pruned neighbourhoods are not symmetric (cosine, shrink 0):
#   u0 = {i0, i1}; u1 = {i0..i3}; u2 = {i0..i4}; u3 = {i0, i5}.
#   top-1 of u0 is u1 (2/sqrt(8) = 0.71 > u2 0.63 > u3 0.5); top-1 of u1 is u2 (4/sqrt(20) = 0.89);
#   top-1 of u2 is u1; top-1 of u3 is u0 (1/2 > u1 0.35 > u2 0.32).
# So u0's own neighbour u1 recommends i2/i3, while the only user that counts u0 as *its* neighbour
# is u3, who recommends i5.
X_ASYM = np.array(
    [
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 0, 0, 0, 0, 1],
    ],
    dtype=np.float32,
)


def test_userknn_neighbourhood_directions_recommend_different_planted_items() -> None:
    train = im(X_ASYM)
    unseen = np.array([2, 3, 4, 5])
    own = UserKNN(top_k=1, shrink=0).fit(train).score(np.array([0]))[0]
    reverse = UserKNN(top_k=1, shrink=0, neighbourhood="reverse_knn").fit(train).score(np.array([0]))[0]
    s01, s30 = 2 / math.sqrt(8), 1 / 2
    np.testing.assert_allclose(own, s01 * X_ASYM[1], rtol=1e-6)  # u1 votes with sim(u0, u1)
    np.testing.assert_allclose(reverse, s30 * X_ASYM[3], rtol=1e-6)  # u3 votes with sim(u3, u0)
    assert unseen[np.argmax(own[unseen])] in (2, 3) and own[5] == 0
    assert unseen[np.argmax(reverse[unseen])] == 5 and reverse[2] == 0


def test_reverse_knn_is_the_transpose_of_the_pruned_similarity() -> None:
    train = random_matrix(30, 25, 0.2, seed=5)
    for cls in (ItemKNN, UserKNN):
        own = cls(top_k=3, shrink=2).fit(train)
        reverse = cls(top_k=3, shrink=2, neighbourhood="reverse_knn").fit(train)
        np.testing.assert_array_equal(reverse.similarity_.toarray(), own.similarity_.toarray().T)
        assert not np.array_equal(reverse.score(np.arange(30)), own.score(np.arange(30)))
        # Without pruning the (symmetric) cosine gives the same scores both ways.
        full = cls(top_k=100, shrink=2).fit(train).score(np.arange(30))
        full_rev = cls(top_k=100, shrink=2, neighbourhood="reverse_knn").fit(train).score(np.arange(30))
        np.testing.assert_allclose(full_rev, full, rtol=1e-6)


@pytest.mark.parametrize("cls", [ItemKNN, UserKNN])
@pytest.mark.parametrize("weighting", ["TF-IDF", "BM25"])
def test_weighted_scoring_false_weights_the_similarity_only(cls: type, weighting: str) -> None:
    train = random_matrix(30, 25, 0.2, seed=6)
    x, users = dense(train), np.arange(30)
    weighted = cls(top_k=5, feature_weighting=weighting).fit(train)
    binary = cls(top_k=5, feature_weighting=weighting, weighted_scoring=False).fit(train)
    np.testing.assert_array_equal(binary.similarity_.toarray(), weighted.similarity_.toarray())
    w = weight_features(train.matrix, weighting).toarray()
    s = weighted.similarity_.toarray()
    expected_w, expected_b = (w @ s, x @ s) if cls is ItemKNN else (s @ w, s @ x)
    np.testing.assert_allclose(weighted.score(users), expected_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(binary.score(users), expected_b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected_w, expected_b)


# ----------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("cls", [ItemKNN, UserKNN])
@pytest.mark.parametrize("similarity", ["cosine", "asymmetric", "jaccard", "dice", "tversky"])
def test_planted_heldout_item_is_top1_among_unseen_items(cls: type, similarity: str) -> None:
    split = planted_blocks()
    train, test = dense(split.train) > 0, dense(split.test) > 0
    model = cls(top_k=10, shrink=2, similarity=similarity, asymmetric_alpha=0.3).fit(split.train)
    scores = model.score(np.arange(split.train.n_users)).astype(np.float64)
    scores[train] = -np.inf
    held = scores[test]
    scores[test] = -np.inf
    assert (held > scores.max(axis=1)).all()


@pytest.mark.parametrize("cls", [ItemKNN, UserKNN])
def test_user_and_item_without_training_data_get_zero_scores(cls: type) -> None:
    x = X43.copy()
    x = np.vstack([x, np.zeros((1, 3), np.float32)])  # u4: no interactions
    x = np.hstack([x, np.zeros((5, 1), np.float32)])  # i3: never seen
    model = cls(top_k=5, shrink=0).fit(im(x))
    scores = model.score(np.arange(5))
    np.testing.assert_array_equal(scores[4], 0)
    np.testing.assert_array_equal(scores[:, 3], 0)
    assert np.count_nonzero(scores[:4, :3]) > 0


@pytest.mark.parametrize("cls", [ItemKNN, UserKNN])
@pytest.mark.parametrize("weighting", ["none", "TF-IDF", "BM25"])
def test_fitting_twice_gives_identical_scores(cls: type, weighting: str) -> None:
    train = random_matrix(40, 30, 0.15, seed=9)
    first = cls(top_k=7, feature_weighting=weighting).fit(train).score(np.arange(40))
    second = cls(top_k=7, feature_weighting=weighting).fit(train).score(np.arange(40))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("cls", [ItemKNN, UserKNN])
@pytest.mark.parametrize(
    ("param", "value", "allowed"),
    [
        ("top_k", 0, "int in [1, inf]"),
        ("shrink", -1.0, "float in [0, inf]"),
        ("similarity", "pearson", f"one of {list(SIMILARITIES)}"),
        ("feature_weighting", "bm25", "one of ['none', 'TF-IDF', 'BM25']"),
        ("asymmetric_alpha", 2.5, "float in [0, 2]"),
        ("tversky_beta", -0.1, "float in [0, inf]"),
        ("normalize", "yes", "bool"),
        ("top_k", 2.5, "int in [1, inf]"),
    ],
)
def test_bad_hyperparameter_raises_config_error_naming_model_param_value_and_range(
    cls: type, param: str, value: object, allowed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        cls(**{param: value}).fit(im(X43))
    message = str(info.value)
    assert f"{cls.__name__}: {param}={value!r}" in message
    assert allowed in message


def test_hyperparameters_are_stored_unchanged() -> None:
    model = ItemKNN(top_k=7, shrink=3, similarity="tversky", tversky_alpha=0.2, feature_weighting="BM25")
    assert model.get_params()["top_k"] == 7
    assert model.get_params()["feature_weighting"] == "BM25"
    assert model.clone().get_params() == model.get_params()


@pytest.mark.parametrize("cls", [ItemKNN, UserKNN])
@pytest.mark.parametrize("weighting", ["none", "TF-IDF", "BM25"])
def test_empty_training_matrix_gives_all_zero_scores_without_warnings(cls: type, weighting: str) -> None:
    empty = InteractionMatrix.from_csr(sp.csr_matrix(np.zeros((5, 4), dtype=np.float32)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = cls(feature_weighting=weighting, similarity="asymmetric", asymmetric_alpha=2.0).fit(empty)
        scores = model.score(np.arange(5))
    np.testing.assert_array_equal(scores, np.zeros((5, 4), np.float32))
