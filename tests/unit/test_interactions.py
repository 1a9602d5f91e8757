import numpy as np
import pandas as pd
import pytest

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import DataError
from tests.synthetic import random_matrix


def test_from_frame_sorts_ids_and_aligns_ratings_with_csr_order():
    f = pd.DataFrame({"u": [20, 10, 10], "i": ["b", "c", "a"], "r": [5.0, 3.0, 1.0], "t": [3, 2, 1]})
    im = InteractionMatrix.from_frame(f, user_col="u", item_col="i", rating_col="r", timestamp_col="t")
    assert im.user_ids.tolist() == [10, 20]
    assert im.item_ids.tolist() == ["a", "b", "c"]
    assert im.matrix.toarray().tolist() == [[1, 0, 1], [0, 1, 0]]
    # CSR order: (10,a) (10,c) (20,b)
    assert im.ratings.tolist() == [1.0, 3.0, 5.0]
    assert im.timestamps.tolist() == [1, 2, 3]


def test_duplicate_pair_is_refused_with_the_ids():
    f = pd.DataFrame({"user": [1, 1], "item": [7, 7]})
    with pytest.raises(DataError, match=r"duplicate.*\(1, 7\)"):
        InteractionMatrix.from_frame(f)


def test_fingerprint_depends_on_content_not_name():
    a = random_matrix(seed=1)
    b = random_matrix(seed=1)
    c = random_matrix(seed=2)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.select(np.ones(a.nnz, bool), name="x").fingerprint == a.fingerprint
    assert a.select(np.arange(a.nnz) > 0).fingerprint != a.fingerprint


def test_select_and_union_roundtrip():
    a = random_matrix(seed=3, ratings=True, timestamps=True)
    mask = np.arange(a.nnz) % 3 == 0
    left, right = a.select(mask), a.select(~mask)
    assert left.nnz + right.nnz == a.nnz
    assert left.union(right).fingerprint == a.fingerprint


def test_arrays_are_read_only():
    a = random_matrix()
    with pytest.raises(ValueError):
        a.matrix.data[0] = 5
