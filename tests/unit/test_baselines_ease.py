"""EASE (Steck 2019): closed form checked by hand, memory guard."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import baselines.ease
from baselines.ease import EASE, ease_memory_bytes
from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError
from tests.synthetic import dense, random_matrix

# Every pair of the 3 items co-occurs twice and every item occurs 3 times:
# G + l2 I = 2 I + 2 J (J all ones), whose inverse is 0.5 I - 0.125 J, so
# B_ij = 0.125 / 0.375 = 1/3 off the diagonal.
SYMMETRIC = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=np.float32)


def im(x: np.ndarray) -> InteractionMatrix:
    return InteractionMatrix.from_csr(sp.csr_matrix(x))


def test_ease_symmetric_three_items_weights_are_one_third_by_hand() -> None:
    model = EASE(l2=1.0).fit(im(SYMMETRIC))
    expected = (np.ones((3, 3)) - np.eye(3)) / 3
    np.testing.assert_allclose(model.weights_, expected, atol=1e-6)
    # user 0 has items 0 and 1: scores [1/3, 1/3, 2/3]
    np.testing.assert_allclose(model.score(np.array([0])), [[1 / 3, 1 / 3, 2 / 3]], atol=1e-6)


def test_ease_matches_float64_closed_form_on_random_data() -> None:
    train = random_matrix(n_users=40, n_items=12, density=0.3, seed=3)
    x = dense(train).astype(np.float64)
    l2 = 7.5
    p = np.linalg.inv(x.T @ x + l2 * np.eye(12))
    b = np.eye(12) - p / np.diag(p)[None, :]
    model = EASE(l2=l2).fit(train)
    np.testing.assert_allclose(model.weights_, b, atol=1e-5)
    assert np.all(np.diag(model.weights_) == 0.0)
    np.testing.assert_allclose(model.score(np.arange(40)), x @ b, atol=1e-4)
    assert model.weights_.dtype == np.float32


def test_ease_item_without_training_data_scores_zero() -> None:
    x = np.array([[1, 1, 0, 1], [1, 0, 0, 1], [0, 1, 0, 1]], dtype=np.float32)  # item 2 never seen
    model = EASE(l2=2.0).fit(im(x))
    assert np.all(model.weights_[:, 2] == 0.0) and np.all(model.weights_[2, :] == 0.0)
    assert np.all(model.score(np.arange(3))[:, 2] == 0.0)


def test_ease_user_without_training_data_scores_zero() -> None:
    x = SYMMETRIC.copy()
    x[2] = 0
    model = EASE(l2=1.0).fit(im(x))
    assert np.all(model.score(np.array([2])) == 0.0)


def test_ease_memory_estimate_is_three_float32_item_matrices() -> None:
    assert ease_memory_bytes(3) == 3 * 4 * 9
    # ML-20M: 26,744 items need about 8 GiB.
    assert ease_memory_bytes(26_744) == 3 * 4 * 26_744**2
    assert 7.9 < ease_memory_bytes(26_744) / 2**30 < 8.0


def test_ease_refuses_above_max_memory_gib_stating_the_estimate() -> None:
    with pytest.raises(ConfigError, match=r"3 x 3 item matrices need about 0\.00 GiB \(108 bytes") as info:
        EASE(l2=1.0, max_memory_gib=1e-8).fit(im(SYMMETRIC))
    assert "max_memory_gib" in str(info.value)


def test_ease_refuses_above_available_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baselines.ease.psutil, "virtual_memory", lambda: SimpleNamespace(available=100))
    with pytest.raises(ConfigError, match=r"\(108 bytes.*available memory .*100 bytes"):
        EASE(l2=1.0).fit(im(SYMMETRIC))


def test_ease_negative_l2_names_model_parameter_and_range() -> None:
    with pytest.raises(ConfigError, match=r"EASE: l2=-1\.0 is out of range; expected float in"):
        EASE(l2=-1.0).fit(im(SYMMETRIC))


@settings(max_examples=25, deadline=None)
@given(
    x=arrays(np.float32, (12, 6), elements=st.sampled_from([0.0, 1.0])),
    l2=st.floats(1.0, 1e3),
    seed=st.integers(0, 2**16),
)
def test_ease_property_closed_form_and_item_permutation_equivariance(
    x: np.ndarray, l2: float, seed: int
) -> None:
    # Relabelling items permutes B's rows and columns the same way; B solves Steck's closed form.
    perm = np.random.default_rng(seed).permutation(6)
    b = EASE(l2=l2).fit(im(x)).weights_
    b_perm = EASE(l2=l2).fit(im(x[:, perm])).weights_
    np.testing.assert_allclose(b_perm, b[np.ix_(perm, perm)], atol=1e-5)
    p = np.linalg.inv(x.T.astype(np.float64) @ x + l2 * np.eye(6))
    np.testing.assert_allclose(b, np.eye(6) - p / np.diag(p)[None, :], atol=1e-5)


@pytest.mark.parametrize("l2", [0.5, 7.5, 500.0, 1e5])
def test_ease_dual_woodbury_path_equals_the_item_item_inverse(l2: float) -> None:
    # fewer users than items: fit takes the user x user (Woodbury) path; B must be Steck's closed form
    train = random_matrix(n_users=15, n_items=40, density=0.2, seed=11)
    x = dense(train).astype(np.float64)
    p = np.linalg.inv(x.T @ x + l2 * np.eye(40))
    b = np.eye(40) - p / np.diag(p)[None, :]
    dual = baselines.ease.ease_weights_dual(train.matrix, l2)
    np.testing.assert_allclose(dual, b, atol=2e-6)
    primal = baselines.ease.ease_weights_primal(train.matrix, l2)
    np.testing.assert_allclose(dual, primal, atol=1e-4)
    np.testing.assert_array_equal(EASE(l2=l2).fit(train).weights_, dual)
    assert np.all(np.diag(dual) == 0.0)


def test_ease_dual_item_without_training_data_keeps_a_zero_column() -> None:
    x = np.zeros((3, 8), dtype=np.float32)
    x[0, [0, 1, 5]] = x[1, [1, 5]] = x[2, [0, 6]] = 1  # items 2, 3, 4, 7 never seen
    b = EASE(l2=2.0).fit(im(x)).weights_
    for item in (2, 3, 4, 7):
        assert np.all(b[:, item] == 0.0) and np.all(b[item, :] == 0.0)


def test_ease_memory_estimate_of_the_dual_path_counts_user_matrices() -> None:
    # CiteULike-a: 5,551 users x 16,980 items -> ~3.3 GiB (primal estimate: ~3.2 GiB of float32)
    need = ease_memory_bytes(16_980, 5_551)
    assert need == 12 * 16_980**2 + 8 * 5_551 * 16_980 + 16 * 5_551**2
    assert ease_memory_bytes(3, 4) == ease_memory_bytes(3) == 108
