"""P3alpha and RP3beta: a hand-computed tiny graph, a dense reference formula and properties."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from baselines.graph import P3alpha, RP3beta, random_walk_similarity
from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError
from tests.synthetic import dense, planted_blocks, random_matrix

# u0 = {i0, i1}, u1 = {i1, i2}: a path i0 - u0 - i1 - u1 - i2
PATH = np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32)


def im(x: np.ndarray) -> InteractionMatrix:
    users, items = np.nonzero(x)
    return InteractionMatrix.from_indices(users, items, np.arange(x.shape[0]), np.arange(x.shape[1]))


def same_csr(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    """Bit-for-bit equal structure and values."""
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("indptr", "indices", "data"))


def reference(x: np.ndarray, alpha: float, beta: float, normalize: bool) -> np.ndarray:
    """Dense W = (P_iu^alpha P_ui^alpha) / pop^beta, zero diagonal, optional l1 rows (no pruning)."""
    x = x.astype(np.float64)
    user_deg, pop = x.sum(axis=1), x.sum(axis=0)
    p_ui = np.divide(x, user_deg[:, None], out=np.zeros_like(x), where=user_deg[:, None] > 0)
    p_iu = np.divide(x.T, pop[:, None], out=np.zeros_like(x.T), where=pop[:, None] > 0)
    w = (p_iu**alpha * (p_iu > 0)) @ (p_ui**alpha * (p_ui > 0))
    w *= np.divide(1.0, pop**beta, out=np.zeros_like(pop), where=pop > 0)[None, :]
    np.fill_diagonal(w, 0)
    if normalize:
        sums = w.sum(axis=1, keepdims=True)
        w = np.divide(w, sums, out=np.zeros_like(w), where=sums > 0)
    return w


# ----------------------------------------------------------------------------- hand-computed
def test_p3alpha_on_a_path_graph_matches_hand_computed_walk_probabilities() -> None:
    # P_ui: u0 -> (1/2, 1/2, 0), u1 -> (0, 1/2, 1/2); P_iu: i0 -> u0, i1 -> (1/2, 1/2), i2 -> u1.
    # P_iu P_ui = [[1/2, 1/2, 0], [1/4, 1/2, 1/4], [0, 1/2, 1/2]]; the diagonal is dropped.
    model = P3alpha(top_k=10, alpha=1.0, normalize=False).fit(im(PATH))
    expected = np.array([[0, 1 / 2, 0], [1 / 4, 0, 1 / 4], [0, 1 / 2, 0]])
    np.testing.assert_allclose(model.similarity_.toarray(), expected, rtol=1e-6)
    # u0 has {i0, i1}: W[0] + W[1]; u1 has {i1, i2}: W[1] + W[2]
    expected_scores = np.array([[1 / 4, 1 / 2, 1 / 4], [1 / 4, 1 / 2, 1 / 4]])
    np.testing.assert_allclose(model.score(np.array([0, 1])), expected_scores, rtol=1e-6)


def test_rp3beta_on_a_path_graph_divides_by_popularity_then_normalises_rows() -> None:
    # popularity (1, 2, 1), beta = 1: column i1 halves -> [[0, 1/4, 0], [1/4, 0, 1/4], [0, 1/4, 0]]
    raw = RP3beta(top_k=10, alpha=1.0, beta=1.0, normalize=False).fit(im(PATH))
    np.testing.assert_allclose(
        raw.similarity_.toarray(), [[0, 1 / 4, 0], [1 / 4, 0, 1 / 4], [0, 1 / 4, 0]], rtol=1e-6
    )
    # l1 rows: [[0, 1, 0], [1/2, 0, 1/2], [0, 1, 0]]; u0 = W[0] + W[1] = (1/2, 1, 1/2)
    model = RP3beta(top_k=10, alpha=1.0, beta=1.0, normalize=True).fit(im(PATH))
    np.testing.assert_allclose(model.similarity_.toarray(), np.array([[0, 1, 0], [0.5, 0, 0.5], [0, 1, 0]]))
    np.testing.assert_allclose(model.score(np.array([0])), [[1 / 2, 1, 1 / 2]], rtol=1e-6)


def test_alpha_raises_each_transition_probability_to_a_power() -> None:
    # alpha = 2: P_iu^2 P_ui^2 on the path: W[1, 0] = (1/2)^2 (1/2)^2 = 1/16, W[0, 1] = 1 * 1/4
    model = P3alpha(top_k=10, alpha=2.0).fit(im(PATH))
    np.testing.assert_allclose(model.similarity_.toarray()[[1, 0], [0, 1]], [1 / 16, 1 / 4], rtol=1e-6)


# ----------------------------------------------------------------------------- dense reference
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 1.7])
@pytest.mark.parametrize("beta", [0.0, 0.6, 2.0])
@pytest.mark.parametrize("normalize", [False, True])
def test_rp3beta_without_pruning_equals_the_dense_reference_formula(
    alpha: float, beta: float, normalize: bool
) -> None:
    train = random_matrix(30, 20, 0.2, seed=4)
    x = dense(train)
    ref = reference(x, alpha, beta, normalize)
    model = RP3beta(top_k=20, alpha=alpha, beta=beta, normalize=normalize).fit(train)
    np.testing.assert_allclose(model.similarity_.toarray(), ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.score(np.arange(30)), x @ ref, rtol=1e-5, atol=1e-6)


def test_rp3beta_with_beta_zero_is_p3alpha() -> None:
    train = random_matrix(30, 20, 0.2, seed=6)
    p3 = P3alpha(top_k=5, alpha=0.8, normalize=True).fit(train).score(np.arange(30))
    rp3 = RP3beta(top_k=5, alpha=0.8, beta=0.0, normalize=True).fit(train).score(np.arange(30))
    np.testing.assert_array_equal(p3, rp3)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_users=st.integers(1, 12),
    n_items=st.integers(1, 10),
    top_k=st.integers(1, 10),
    alpha=st.sampled_from([0.5, 1.0, 1.5]),
    beta=st.sampled_from([0.0, 0.6]),
    normalize=st.booleans(),
)
def test_pruned_walk_keeps_top_k_per_row_and_column_and_ignores_block_size(
    seed: int, n_users: int, n_items: int, top_k: int, alpha: float, beta: float, normalize: bool
) -> None:
    x = (np.random.default_rng(seed).random((n_users, n_items)) < 0.4).astype(np.float32)
    m = im(x).matrix
    kwargs: dict[str, Any] = dict(alpha=alpha, beta=beta, top_k=top_k, normalize=normalize)
    results = [random_walk_similarity(m, block_size=bs, **kwargs) for bs in (1, 2, 3, n_items)]
    for other in results[1:]:
        assert same_csr(results[0], other)
    w = results[0].toarray().astype(np.float64)
    assert (np.count_nonzero(w, axis=1) <= top_k).all()
    assert (np.count_nonzero(w, axis=0) <= top_k).all()
    assert (np.diag(w) == 0).all()
    ref = reference(x, alpha, beta, normalize=False)
    for i in range(n_items):
        kept = np.flatnonzero(w[i])
        if not len(kept):
            continue
        # kept targets are among the row's top_k of the unpruned walk (ties either way)
        kth = np.sort(ref[i])[::-1][min(top_k, n_items) - 1]
        assert (ref[i, kept] >= kth - 1e-9).all()
        if not normalize:
            np.testing.assert_allclose(w[i, kept], ref[i, kept], rtol=1e-5)
        else:
            # normalised over the row's top_k before the column pruning, so at most 1
            assert w[i].sum() <= 1 + 1e-5


# ----------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize(
    "model",
    [
        P3alpha(top_k=10, alpha=1.0),
        P3alpha(top_k=10, alpha=0.5, normalize=True),
        RP3beta(top_k=10, alpha=1.0, beta=0.6),
        RP3beta(top_k=10, alpha=0.7, beta=0.3, normalize=False),
    ],
    ids=repr,
)
def test_planted_heldout_item_is_top1_among_unseen_items(model: P3alpha | RP3beta) -> None:
    split = planted_blocks()
    train, test = dense(split.train) > 0, dense(split.test) > 0
    scores = model.fit(split.train).score(np.arange(split.train.n_users)).astype(np.float64)
    scores[train] = -np.inf
    held = scores[test]
    scores[test] = -np.inf
    assert (held > scores.max(axis=1)).all()


@pytest.mark.parametrize("cls", [P3alpha, RP3beta])
def test_user_and_item_without_training_data_get_zero_scores(cls: type) -> None:
    x = np.vstack([PATH, np.zeros((1, 3), np.float32)])
    x = np.hstack([x, np.zeros((3, 1), np.float32)])
    scores = cls(top_k=5).fit(im(x)).score(np.arange(3))
    np.testing.assert_array_equal(scores[2], 0)
    np.testing.assert_array_equal(scores[:, 3], 0)
    assert scores.dtype == np.float32 and np.count_nonzero(scores[:2]) > 0


@pytest.mark.parametrize("cls", [P3alpha, RP3beta])
def test_fitting_twice_gives_identical_scores(cls: type) -> None:
    train = random_matrix(40, 30, 0.15, seed=8)
    first = cls(top_k=6, alpha=0.9).fit(train).score(np.arange(40))
    second = cls(top_k=6, alpha=0.9).fit(train).score(np.arange(40))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(
    ("cls", "param", "value", "allowed"),
    [
        (P3alpha, "top_k", 0, "int in [1, inf]"),
        (P3alpha, "alpha", -0.5, "float in [0, inf]"),
        (P3alpha, "normalize", "no", "bool"),
        (RP3beta, "beta", -1.0, "float in [0, inf]"),
        (RP3beta, "top_k", "100", "int in [1, inf]"),
        (RP3beta, "block_size", 0, "int in [1, inf] or None"),
    ],
)
def test_bad_hyperparameter_raises_config_error_naming_model_param_value_and_range(
    cls: type, param: str, value: object, allowed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        cls(**{param: value}).fit(im(PATH))
    assert f"{cls.__name__}: {param}={value!r}" in str(info.value)
    assert allowed in str(info.value)


@pytest.mark.parametrize("cls", [P3alpha, RP3beta])
def test_empty_training_matrix_gives_all_zero_scores_without_warnings(cls: type) -> None:
    empty = InteractionMatrix.from_csr(sp.csr_matrix(np.zeros((5, 4), dtype=np.float32)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = cls(alpha=0.5).fit(empty).score(np.arange(5))
    np.testing.assert_array_equal(scores, np.zeros((5, 4), np.float32))
