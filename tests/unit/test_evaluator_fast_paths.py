"""The evaluator's shortcuts give exactly what the plain code gives.

``accuracy_at_cutoffs`` (all accuracy metrics at all cutoffs in one pass) must be bit-for-bit equal to
the single-metric functions; ``member_rows`` / ``fused_topk`` reading rows of a matrix in place
(``rows`` / ``ex_rows``) must equal slicing the matrix first.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from benchmark.evaluation import metrics as M
from benchmark.evaluation.topk import HAVE_NUMBA, fused_topk, member_rows

ACCURACY = [name for name, m in M.METRICS.items() if m.kind == "accuracy"]


@settings(max_examples=200, deadline=None)
@given(
    hits=hnp.arrays(np.bool_, st.tuples(st.integers(0, 6), st.integers(1, 140))),
    data=st.data(),
)
def test_accuracy_at_cutoffs_is_bitwise_equal_to_single_metrics(hits, data):
    n_users, width = hits.shape
    n_rel = np.asarray(
        data.draw(st.lists(st.integers(0, 300), min_size=n_users, max_size=n_users)), dtype=np.int64
    )
    n_rel = np.maximum(n_rel, hits.sum(axis=1))  # at least as many relevant items as hits
    cutoffs = sorted(set(data.draw(st.lists(st.integers(1, width), min_size=1, max_size=5))))
    names = data.draw(st.lists(st.sampled_from(ACCURACY), min_size=1, unique=True))
    got = M.accuracy_at_cutoffs(names, hits, n_rel, cutoffs)
    assert list(got) == [f"{name}_at_{k}" for k in cutoffs for name in names]
    for k in cutoffs:
        for name in names:
            want = np.asarray(M.get_metric(name).fn(hits, n_rel, k), dtype=np.float64)
            value = got[f"{name}_at_{k}"]
            assert value.dtype == np.float64
            np.testing.assert_array_equal(value.view(np.int64), want.view(np.int64))  # same bits


def test_accuracy_at_cutoffs_two_hits_at_ranks_1_and_3():
    hits = np.array([[True, False, True, False], [False, False, False, False]])
    got = M.accuracy_at_cutoffs(["precision", "mrr", "ndcg", "map"], hits, np.array([2, 3]), [1, 4])
    assert got["precision_at_1"].tolist() == [1.0, 0.0]
    assert got["precision_at_4"].tolist() == [0.5, 0.0]
    assert got["mrr_at_4"].tolist() == [1.0, 0.0]  # a user without hits scores 0, not 1/rank 1
    assert got["map_at_4"].tolist() == [(1.0 + 2.0 / 3.0) / 2.0, 0.0]
    idcg = 1.0 + 1.0 / np.log2(3.0)
    np.testing.assert_allclose(got["ndcg_at_4"], [(1.0 + 0.5) / idcg, 0.0], rtol=0, atol=1e-15)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
def test_member_rows_in_place_rows_equal_slicing_the_matrix():
    rng = np.random.default_rng(3)
    m = sp.csr_matrix((rng.random((50, 200)) < 0.1).astype(np.float32))
    rows = np.array([7, 3, 3, 49, 0])
    items = rng.integers(-1, 200, (5, 30))
    items[0, :3] = m[7].indices[:3]  # some certain hits
    got = member_rows(m, items, rows=rows)
    dense = m.toarray() != 0
    want = np.where(items >= 0, dense[rows[:, None], np.maximum(items, 0)], False)
    np.testing.assert_array_equal(got, want)
    assert got[0, :3].all()
    np.testing.assert_array_equal(member_rows(m[rows], items), want)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
def test_fused_topk_ex_rows_equals_a_sliced_exclusion_matrix():
    rng = np.random.default_rng(9)
    scores = rng.integers(0, 50, (6, 300)).astype(np.float32)
    ex = sp.csr_matrix((rng.random((20, 300)) < 0.2).astype(np.float32))
    rows = np.array([19, 2, 2, 0, 11, 5])
    a, b = scores.copy(), scores.copy()
    va, ia, bad_a = fused_topk(a, ex.indptr, ex.indices, 7, ex_rows=rows)
    sliced = ex[rows]
    vb, ib, bad_b = fused_topk(b, sliced.indptr, sliced.indices, 7)
    np.testing.assert_array_equal(a, b)  # the same items masked in place
    assert (a[np.repeat(np.arange(6), np.diff(sliced.indptr)), sliced.indices] == -np.inf).all()
    np.testing.assert_array_equal(np.sort(va, axis=1), np.sort(vb, axis=1))
    np.testing.assert_array_equal(np.take_along_axis(a, ia, axis=1), va)  # indices match values
    np.testing.assert_array_equal(np.take_along_axis(b, ib, axis=1), vb)
    assert not bad_a.any() and not bad_b.any()
