"""Synthetic power-law matrices: exact size, determinism, skew."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data.datasheet import gini
from benchmark.data.synthetic import power_law_matrix
from benchmark.errors import ConfigError


def test_exact_number_of_distinct_pairs_and_full_id_space() -> None:
    m = power_law_matrix(300, 200, 5000, seed=1)
    assert m.shape == (300, 200) and m.nnz == 5000
    codes = m.row_indices() * m.n_items + m.matrix.indices
    assert len(np.unique(codes)) == 5000  # no duplicate pair
    assert (m.matrix.data == 1.0).all()


def test_same_seed_same_matrix_other_seed_other_matrix() -> None:
    a = power_law_matrix(100, 80, 1500, seed=7)
    b = power_law_matrix(100, 80, 1500, seed=7)
    c = power_law_matrix(100, 80, 1500, seed=8)
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_exponent_controls_popularity_skew() -> None:
    flat = power_law_matrix(2000, 500, 40000, seed=0, exponent=0.0)
    steep = power_law_matrix(2000, 500, 40000, seed=0, exponent=1.2)
    assert gini(flat.item_counts()) < 0.1
    assert gini(steep.item_counts()) > 0.5
    assert gini(steep.user_counts()) > 0.5


def test_degree_caps_make_dense_requests_reachable() -> None:
    # 40% density with a steep exponent: uncapped head users would need more items than exist
    m = power_law_matrix(50, 50, 1000, seed=0, exponent=2.0)
    assert m.nnz == 1000 and m.user_counts().max() <= 50


def test_impossible_requests_are_refused() -> None:
    with pytest.raises(ConfigError):
        power_law_matrix(10, 10, 60, seed=0)
    with pytest.raises(ConfigError):
        power_law_matrix(0, 10, 1, seed=0)
