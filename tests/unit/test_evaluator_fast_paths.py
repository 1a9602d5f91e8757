"""The evaluator's shortcuts give exactly what the plain code gives.

``accuracy_at_cutoffs`` (all accuracy metrics at all cutoffs in one pass) must be bit-for-bit equal to
the single-metric functions; ``member_rows`` / ``fused_topk`` reading rows of a matrix in place
(``rows`` / ``ex_rows``) must equal slicing the matrix first; the top-k lists of both engines must
equal a plain lexsort of the masked rows under every tie rule.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from benchmark.data.interactions import InteractionMatrix
from benchmark.evaluation import Evaluator, evaluator
from benchmark.evaluation import metrics as M
from benchmark.evaluation.evaluator import pair_hash
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


def _reference_top_k(scores, excluded, relevant, users, k, tie_rule, seed):
    """The plain definition: mask, sort every row by (score desc, tie key asc), keep finite scores."""
    n = scores.shape[1]
    items = np.arange(n)
    lists = []
    for u in users:
        row = scores[u].copy()
        row[excluded[u]] = -np.inf
        rel = relevant[u].astype(np.int64)
        key = {
            "random": (pair_hash(seed, np.full(n, u), items) >> np.uint64(1)).astype(np.int64),
            "index": items,
            "optimistic": (1 - rel) * n + items,
            "pessimistic": rel * n + items,
        }[tie_rule]
        top = np.lexsort((key, -row))[:k]
        lists.append(top[np.isfinite(row[top])].tolist())
    return lists


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_users=st.integers(1, 5),
    n_items=st.sampled_from([7, 40, 420, 1100, 3000]),
    k=st.integers(1, 14),
    levels=st.sampled_from([1, 2, 3, 6, 100, 10**6]),
    mask_density=st.sampled_from([0.0, 0.0, 0.001, 0.05, 0.5, 0.97]),
    mask_top=st.integers(0, 16),
    tie_rule=st.sampled_from(["random", "index", "optimistic", "pessimistic"]),
)
def test_top_k_lists_equal_a_lexsort_reference_with_ties_masks_and_k_near_the_unmasked_count(
    seed, n_users, n_items, k, levels, mask_density, mask_top, tie_rule
):
    # Few or many distinct scores (ties, +-0.0 mixed), masks from none to nearly all items, the
    # best-scored items masked (as a model's seen items are: blocks whose maxima are gone), k from 1
    # to beyond the unmasked count: both the fused kernel (its threshold from untouched super-blocks,
    # the fallback that recomputes touched blocks, the search-everything path of narrow rows) and the
    # numpy path must give exactly the lists of the plain definition, for every tie rule.
    rng = np.random.default_rng(seed)
    k = min(k, n_items)
    scores = rng.integers(0, levels, (n_users, n_items)).astype(np.float32)
    scores[(scores == 0) & (rng.random(scores.shape) < 0.5)] = -0.0
    excluded = rng.random(scores.shape) < mask_density
    best = np.argsort(-scores, axis=1, kind="stable")[:, :mask_top]
    excluded[np.arange(n_users)[:, None], best] = True
    relevant = (rng.random(scores.shape) < 0.2) & ~excluded
    relevant[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    excluded &= ~relevant
    ids_u, ids_i = np.arange(100, 100 + n_users), np.arange(500, 500 + n_items)

    def matrix(mask, name):
        u, i = np.nonzero(mask)
        return InteractionMatrix.from_indices(u, i, ids_u, ids_i, name=name)

    want = _reference_top_k(scores, excluded, relevant, range(n_users), k, tie_rule, seed)
    engines = [True, False] if HAVE_NUMBA else [False]
    saved = evaluator.USE_FUSED
    try:
        for fused in engines:
            evaluator.USE_FUSED = fused
            ev = Evaluator(
                matrix(relevant, "test"),
                matrix(excluded, "train"),
                [k],
                ["ndcg"],
                tie_rule=tie_rule,
                seed=seed,
            )
            model = lambda users: scores[users].copy()  # noqa: E731 - a scoring function
            recs = ev.evaluate(model, recommendations=True).recommendations
            assert recs is not None
            got = [
                (recs.loc[recs["user_id"] == 100 + u].sort_values("rank")["item_id"] - 500).tolist()
                for u in range(n_users)
            ]
            assert got == want, f"fused={fused}"
    finally:
        evaluator.USE_FUSED = saved


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize(
    ("levels", "n_masked", "best", "k"),
    [
        (20, 0, False, 30),
        (20, 3, False, 30),
        (20, 40, False, 30),
        (20, 2990, False, 30),
        (10**6, 60, True, 90),
        (10**6, 5, True, 5),
        (10**6, 20, True, 5),
    ],
)
def test_fused_topk_values_equal_a_full_sort_whether_few_or_most_blocks_lost_items(levels, n_masked, best, k):
    # 3000 items: 375 blocks of 8 in 46 super-blocks of 8 blocks. A few masked items leave k
    # untouched super-blocks for the threshold; many (or k = 90 > 46) force the fallback that
    # recomputes the touched blocks' maxima. Masking the best items (``best``) takes the largest
    # maxima away: a threshold from those stale maxima would be above every remaining score.
    rng = np.random.default_rng(n_masked)
    scores = rng.integers(0, levels, (4, 3000)).astype(np.float32)
    masked = np.stack([rng.permutation(3000)[:n_masked] for _ in range(4)])
    if best:
        masked = np.argsort(-scores, axis=1)[:, :n_masked]
    ex = sp.csr_matrix(
        (np.ones(masked.size, np.float32), (np.repeat(np.arange(4), n_masked), masked.ravel())),
        shape=(4, 3000),
    )
    ex.sort_indices()
    want = scores.copy()
    want[np.repeat(np.arange(4), n_masked), masked.ravel()] = -np.inf
    got = scores.copy()
    vals, idx, bad = fused_topk(got, ex.indptr, ex.indices, k)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(-np.sort(-vals, axis=1), -np.sort(-want, axis=1)[:, :k])
    np.testing.assert_array_equal(np.take_along_axis(want, idx, axis=1), vals)
    assert all(len(set(row)) == k for row in idx) and not bad.any()


@pytest.mark.parametrize("tie_rule", ["random", "index", "optimistic", "pessimistic"])
def test_ties_straddling_the_cutoff_in_many_rows_and_chunks_equal_the_reference(tie_rule):
    # A sparse neighbourhood model's rows: a few positive scores, then a huge tie of zeros that the
    # cutoff cuts through, in more rows than one chunk of the straddle resolution holds.
    rng = np.random.default_rng(5)
    n_users, n_items, k = 2 * evaluator._STRADDLE_CHUNK + 37, 300, 20
    scores = np.zeros((n_users, n_items), dtype=np.float32)
    nonzero = rng.random(scores.shape) < rng.uniform(0.0, 0.12, (n_users, 1))
    scores[nonzero] = rng.integers(1, 4, nonzero.sum())  # ties above the boundary as well
    excluded = (rng.random(scores.shape) < 0.1) & ~nonzero
    relevant = (rng.random(scores.shape) < 0.05) & ~excluded
    relevant[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    excluded &= ~relevant
    ids_u, ids_i = np.arange(n_users), np.arange(n_items)

    def matrix(mask, name):
        u, i = np.nonzero(mask)
        return InteractionMatrix.from_indices(u, i, ids_u, ids_i, name=name)

    ev = Evaluator(
        matrix(relevant, "test"), matrix(excluded, "train"), [k], ["ndcg"], tie_rule=tie_rule, seed=9
    )
    recs = ev.evaluate(lambda users: scores[users].copy(), recommendations=True).recommendations
    assert recs is not None
    got = recs.sort_values(["user_id", "rank"]).groupby("user_id")["item_id"].apply(list).tolist()
    assert got == _reference_top_k(scores, excluded, relevant, range(n_users), k, tie_rule, 9)
