"""The shared evaluator on hand-built cases: masking, skipping, ties, protocols, errors, artifacts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from baselines.toppop import TopPop
from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError, DataError, ModelError, UnknownNameError
from benchmark.evaluation import METRICS, EvaluationResult, Evaluator, evaluator
from benchmark.evaluation.topk import HAVE_NUMBA, fused_topk, topk_desc
from tests.synthetic import planted_blocks, random_matrix


@pytest.fixture(autouse=True, params=["fused", "numpy"] if HAVE_NUMBA else ["numpy"])
def engine(request, monkeypatch):
    """Run every test with both hot paths: the numba kernel and the numpy / torch one."""
    monkeypatch.setattr(evaluator, "USE_FUSED", request.param == "fused")
    return request.param


def D(j: int) -> float:
    return 1.0 / math.log2(j + 1)


def im(pairs: list[tuple[int, int]], n_users: int, n_items: int, name: str = "") -> InteractionMatrix:
    u = np.array([p[0] for p in pairs], dtype=np.int64)
    i = np.array([p[1] for p in pairs], dtype=np.int64)
    return InteractionMatrix.from_indices(
        u, i, np.arange(100, 100 + n_users), np.arange(500, 500 + n_items), name=name
    )


class Fixed:
    """A 'model' with a fixed score matrix (fresh copy per call, as the contract asks)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = np.asarray(scores, dtype=np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.scores[users].copy()


# ------------------------------------------------------------------------ full ranking
def test_excluded_items_are_masked_before_ranking():
    # User 0 saw items 0 and 1 (highest scores); test items 2 and 4 land at ranks 1 and 3.
    train = im([(0, 0), (0, 1)], 1, 6, "train")
    test = im([(0, 2), (0, 4)], 1, 6, "test")
    model = Fixed([[9, 8, 7, 6, 5, 4]])
    r = Evaluator(test, train, [2, 5], ["precision", "recall", "ndcg", "mrr"]).evaluate(
        model, recommendations=True
    )
    assert r.summary["precision_at_2"] == pytest.approx(0.5)
    assert r.summary["recall_at_2"] == pytest.approx(0.5)
    assert r.summary["ndcg_at_5"] == pytest.approx((D(1) + D(3)) / (D(1) + D(2)))
    assert r.summary["mrr_at_5"] == pytest.approx(1.0)
    recs = r.recommendations
    assert recs["item_id"].tolist() == [502, 503, 504, 505]  # 4 unseen items: the 5th slot stays empty
    assert recs["rank"].tolist() == [1, 2, 3, 4]
    assert recs["user_id"].unique().tolist() == [100]
    assert recs["score"].tolist() == [7, 6, 5, 4]


def test_exclude_sequence_masks_train_and_validation():
    train = im([(0, 0)], 1, 5, "train")
    val = im([(0, 1)], 1, 5, "validation")
    test = im([(0, 3)], 1, 5, "test")
    model = Fixed([[9, 8, 7, 6, 5]])
    r = Evaluator(test, [train, val], [1, 2], ["hit_rate"]).evaluate(model)
    assert r.summary == {"hit_rate_at_1": 0.0, "hit_rate_at_2": 1.0}
    assert r.settings["exclude"] == "train+validation"


def test_user_without_test_items_is_skipped_and_counted():
    train = im([(0, 0), (1, 0), (2, 1)], 3, 4, "train")
    test = im([(0, 1), (2, 2)], 3, 4, "test")
    r = Evaluator(test, train, [1], ["hit_rate"]).evaluate(Fixed(np.tile([4, 3, 2, 1], (3, 1))))
    assert r.n_users_evaluated == 2
    assert r.n_users_skipped == 1
    assert r.skipped == {"no_relevant_items": 1}
    assert r.per_user["user_id"].tolist() == [100, 102]
    assert r.per_user["hit_rate_at_1"].tolist() == [1.0, 0.0]


def test_user_without_training_data_is_evaluated():
    train = im([(0, 0)], 2, 3, "train")
    test = im([(0, 1), (1, 2)], 2, 3, "test")
    r = Evaluator(test, train, [1], ["hit_rate"]).evaluate(Fixed([[0, 1, 2], [0, 1, 2]]))
    assert r.per_user["user"].tolist() == [0, 1]
    assert r.per_user["hit_rate_at_1"].tolist() == [0.0, 1.0]


def test_test_item_also_in_exclude_is_not_relevant():
    train = im([(0, 0)], 1, 4, "train")
    test = im([(0, 0), (0, 2)], 1, 4, "test")
    r = Evaluator(test, train, [3], ["recall", "precision"]).evaluate(Fixed([[9, 1, 5, 3]]))
    assert r.per_user["n_relevant"].tolist() == [1]
    assert r.summary["recall_at_3"] == 1.0
    assert r.settings["n_test_items_excluded"] == 1


def test_planted_blocks_perfect_model_scores_one():
    split = planted_blocks()
    model = Fixed(split.test.matrix.toarray() * 2 + split.train.matrix.toarray())
    r = Evaluator(split.test, split.train, [1, 5], ["ndcg", "hit_rate", "map", "auc", "mrr"]).evaluate(model)
    assert all(v == pytest.approx(1.0) for v in r.summary.values())


def test_catalog_metrics_count_each_users_list():
    # Three users, identical scores, nothing excluded: everyone gets items 3 then 2.
    test = im([(0, 0), (1, 1), (2, 2)], 3, 4, "test")
    pop = np.array([1.0, 2.0, 4.0, 8.0])
    r = Evaluator(
        test, None, [1, 2], ["coverage", "gini", "entropy", "avg_popularity", "novelty"], item_popularity=pop
    ).evaluate(Fixed(np.tile([1, 2, 3, 4], (3, 1))))
    assert r.summary["coverage_at_1"] == pytest.approx(0.25)
    assert r.summary["coverage_at_2"] == pytest.approx(0.5)
    assert r.summary["gini_at_1"] == pytest.approx(0.75)
    assert r.summary["entropy_at_1"] == 0.0
    assert r.summary["entropy_at_2"] == pytest.approx(1.0)
    assert r.summary["avg_popularity_at_2"] == pytest.approx(6.0)
    # n_users = 3: -log2(8/3) and -log2(4/3)
    assert r.summary["novelty_at_2"] == pytest.approx(-(math.log2(8 / 3) + math.log2(4 / 3)) / 2)


def test_popularity_defaults_to_exclude_counts():
    train = im([(0, 0), (1, 0), (1, 1)], 2, 3, "train")
    test = im([(0, 2), (1, 2)], 2, 3, "test")
    r = Evaluator(test, train, [1], ["avg_popularity"]).evaluate(Fixed([[0, 1, 2], [0, 1, 2]]))
    # Both users' top-1 is item 2 (never trained): popularity 0.
    assert r.summary["avg_popularity_at_1"] == 0.0
    r = Evaluator(test, train, [3], ["avg_popularity"]).evaluate(Fixed([[0, 1, 2], [0, 1, 2]]))
    # user 0: items 2, 1 -> (0 + 1) / 2; user 1: item 2 -> 0
    assert r.per_user["avg_popularity_at_3"].tolist() == [0.5, 0.0]


# ------------------------------------------------------------------------ ties (full ranking)
def _constant_case(rule: str, seed: int = 0) -> EvaluationResult:
    # 8 items all scored 1; user 0's only test item is item 5; item 0 is excluded.
    train = im([(0, 0)], 1, 8, "train")
    test = im([(0, 5)], 1, 8, "test")
    ev = Evaluator(test, train, [1, 7], ["hit_rate", "mrr", "auc"], tie_rule=rule, seed=seed)
    return ev.evaluate(Fixed(np.ones((1, 8))), recommendations=True)


def test_optimistic_tie_ranks_the_test_item_first():
    r = _constant_case("optimistic")
    assert r.summary["mrr_at_7"] == 1.0
    assert r.summary["auc"] == 1.0


def test_pessimistic_tie_ranks_the_test_item_last():
    r = _constant_case("pessimistic")
    assert r.summary["mrr_at_7"] == pytest.approx(1 / 7)
    assert r.summary["auc"] == 0.0


def test_index_tie_rule_orders_by_item_index():
    r = _constant_case("index")
    assert r.recommendations["item_id"].tolist() == [501, 502, 503, 504, 505, 506, 507]
    assert r.summary["mrr_at_7"] == pytest.approx(1 / 5)
    assert r.summary["auc"] == 0.5


def test_random_tie_rule_is_seeded_and_spreads_the_test_item():
    ranks = []
    for seed in range(60):
        a, b = _constant_case("random", seed), _constant_case("random", seed)
        assert a.recommendations.equals(b.recommendations)
        ranks.append(round(1 / a.summary["mrr_at_7"]))
    # The test item takes every rank 1..7 across seeds, each roughly 1/7 of the time.
    assert set(ranks) == set(range(1, 8))
    assert 2.5 < np.mean(ranks) < 5.5


def test_tie_straddling_the_cutoff_follows_the_rule():
    # Scores [3, 1, 1, 1, 1, 0]: item 0 first, then four tied items for one slot at k = 2.
    test = im([(0, 4)], 1, 6, "test")
    model = Fixed([[3, 1, 1, 1, 1, 0]])
    got = {}
    for rule in ("optimistic", "pessimistic", "index"):
        r = Evaluator(test, None, [2], ["hit_rate"], tie_rule=rule).evaluate(model, recommendations=True)
        got[rule] = r.recommendations["item_id"].tolist()
    assert got == {"optimistic": [500, 504], "pessimistic": [500, 501], "index": [500, 501]}


def test_optimistic_tie_finds_a_relevant_item_far_outside_the_topk_blocks():
    # Wide rows take the two-stage top-k; the tied relevant item (last column) is in a block that
    # the block-max stage never selects, and must still win the tie.
    n = 3000
    scores = np.zeros((2, n), dtype=np.float32)
    scores[:, :3] = [5, 4, 3]
    test = im([(0, n - 1), (1, 7)], 2, n, "test")
    r = Evaluator(test, None, [5], ["mrr"], tie_rule="optimistic").evaluate(
        Fixed(scores), recommendations=True
    )
    assert r.per_user["mrr_at_5"].tolist() == [pytest.approx(1 / 4), pytest.approx(1 / 4)]
    p = Evaluator(test, None, [5], ["mrr"], tie_rule="pessimistic").evaluate(
        Fixed(scores), recommendations=True
    )
    assert p.per_user["mrr_at_5"].tolist() == [0.0, 0.0]
    assert p.recommendations["item_id"].tolist()[:5] == [500, 501, 502, 503, 504]


def test_two_stage_topk_values_match_a_full_sort_with_duplicates():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 50, (7, 5000)).astype(np.float32)
    scores[3] = -np.inf
    scores[3, 10] = 1.0
    for k in (1, 11, 19):
        v, i = topk_desc(scores.copy(), k)
        expected = -np.sort(-scores, axis=1)[:, :k]
        np.testing.assert_array_equal(v, expected)
        np.testing.assert_array_equal(np.take_along_axis(scores, i, axis=1), v)
        assert all(len(set(row)) == k for row in i)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
def test_fused_kernel_matches_numpy_path_with_ties_masks_and_signed_zeros():
    rng = np.random.default_rng(5)
    for b, n, k in [(5, 7, 3), (9, 5000, 11), (4, 3000, 101), (3, 100, 100), (2, 40, 1)]:
        scores = rng.integers(0, 30, (b, n)).astype(np.float32)
        scores[0, : n // 2] = -0.0
        scores[0, n // 2 :] = 0.0
        ex = sp.random(b, n, density=0.1, format="csr", random_state=1)
        ex.sort_indices()
        fused = scores.copy()
        v, i, bad = fused_topk(fused, ex.indptr, ex.indices, k)
        order = np.argsort(-v, axis=1, kind="stable")  # the kernel returns the top k unordered
        v, i = np.take_along_axis(v, order, axis=1), np.take_along_axis(i, order, axis=1)
        masked = scores.copy()
        masked[np.repeat(np.arange(b), np.diff(ex.indptr)), ex.indices] = -np.inf
        v2, _ = topk_desc(masked.copy(), k)
        assert not bad.any()
        np.testing.assert_array_equal(fused, masked)  # masked in place
        np.testing.assert_array_equal(v, v2)
        np.testing.assert_array_equal(np.take_along_axis(masked, i, axis=1), v)
        assert all(len(set(row)) == k for row in i)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
def test_fused_kernel_row_chunks_in_threads_give_the_same_result():
    rng = np.random.default_rng(8)
    scores = rng.integers(0, 1000, (301, 4000)).astype(np.float32)
    ex = sp.random(301, 4000, density=0.02, format="csr", random_state=2)
    ex.sort_indices()
    one, three = scores.copy(), scores.copy()
    a = fused_topk(one, ex.indptr, ex.indices, 50, threads=1)
    b = fused_topk(three, ex.indptr, ex.indices, 50, threads=3)
    np.testing.assert_array_equal(one, three)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("bad_value", [np.nan, -np.nan, np.inf, -np.inf])
def test_fused_kernel_flags_non_finite_rows_and_leaves_them_unmasked(bad_value):
    scores = np.ones((3, 70), dtype=np.float32)
    scores[0, 5] = np.finfo(np.float32).max  # huge and tiny finite values are fine
    scores[0, 6] = -np.finfo(np.float32).max
    scores[1, 69] = bad_value  # in the short tail block
    scores[2, 3] = bad_value
    ex = sp.csr_matrix(np.eye(3, 70, dtype=np.float32))
    _, _, bad = fused_topk(scores, ex.indptr, ex.indices, 5)
    assert bad.tolist() == [False, True, True]
    assert scores[1, 1] == 1.0 and scores[0, 0] == -np.inf


def test_batch_size_does_not_change_any_result():
    train = random_matrix(40, 30, 0.15, seed=1)
    test = random_matrix(40, 30, 0.1, seed=2)
    test = test.select(
        ~(
            test.matrix.multiply(train.matrix)
            .tocsr()
            .astype(bool)
            .toarray()[test.row_indices(), test.matrix.indices]
        )
    )
    scores = np.random.default_rng(3).integers(0, 4, (40, 30)).astype(np.float32)  # many ties
    names = [n for n in METRICS]
    frames = [
        Evaluator(test, train, [1, 5, 10], names, batch_size=bs, seed=7).evaluate(
            Fixed(scores), recommendations=True
        )
        for bs in (1, 7, 1024)
    ]
    for f in frames[1:]:
        pd.testing.assert_frame_equal(f.per_user, frames[0].per_user)
        pd.testing.assert_frame_equal(f.recommendations, frames[0].recommendations)
        assert f.summary == pytest.approx(frames[0].summary, nan_ok=True)


# ------------------------------------------------------------------------ sampled ranking
def _sampled_case(rule: str, seed: int = 0) -> EvaluationResult:
    # 1 positive (item 0, score 0.5) + 4 fixed negatives scored 0.9, 0.5, 0.5, 0.1. Items 5..7 are
    # not candidates and scored higher: they must not take part.
    test = im([(0, 0)], 1, 8, "test")
    cand = sp.csr_matrix(np.array([[0, 1, 1, 1, 1, 0, 0, 0]], dtype=bool))
    model = Fixed([[0.5, 0.9, 0.5, 0.5, 0.1, 5, 6, 7]])
    ev = Evaluator(
        test, None, [1, 2, 3, 5], ["hit_rate", "ndcg", "auc"], candidates=cand, tie_rule=rule, seed=seed
    )
    return ev.evaluate(model, recommendations=True)


def test_sampled_fixed_candidates_optimistic_ranks_positive_second():
    s = _sampled_case("optimistic").summary
    assert (s["hit_rate_at_1"], s["hit_rate_at_2"]) == (0.0, 1.0)
    assert s["ndcg_at_3"] == pytest.approx(D(2))
    assert s["auc"] == pytest.approx((4 - 1 - 2 + 2) / 4)


def test_sampled_fixed_candidates_pessimistic_ranks_positive_fourth():
    s = _sampled_case("pessimistic").summary
    assert s["hit_rate_at_3"] == 0.0
    assert s["hit_rate_at_5"] == 1.0
    assert s["ndcg_at_5"] == pytest.approx(D(4))
    assert s["auc"] == pytest.approx(0.25)


def test_sampled_fixed_candidates_random_rank_is_between_and_seeded():
    ndcgs = set()
    for seed in range(40):
        r = _sampled_case("random", seed)
        assert r.summary["auc"] == pytest.approx(0.5)
        assert r.recommendations["item_id"].iloc[0] == 501
        ndcgs.add(round(r.summary["ndcg_at_5"], 9))
        assert r.summary["ndcg_at_5"] == _sampled_case("random", seed).summary["ndcg_at_5"]
    assert ndcgs == {round(D(2), 9), round(D(3), 9), round(D(4), 9)}


def test_sampled_ranking_never_ranks_non_candidates():
    r = _sampled_case("index")
    assert sorted(r.recommendations["item_id"]) == [500, 501, 502, 503, 504]
    assert r.settings["protocol"] == "sampled"


def test_sampled_user_without_candidates_is_skipped():
    test = im([(0, 0), (1, 1)], 2, 4, "test")
    cand = sp.csr_matrix(np.array([[0, 1, 1, 0], [0, 0, 0, 0]], dtype=bool))
    r = Evaluator(test, None, [1], ["hit_rate"], candidates=cand).evaluate(Fixed(np.ones((2, 4))))
    assert r.n_users_evaluated == 1
    assert r.skipped == {"no_relevant_items": 0, "no_candidates": 1}


def test_sampled_negatives_are_never_seen_or_test_items_and_fixed_by_seed():
    train = random_matrix(30, 60, 0.2, seed=4)
    t = random_matrix(30, 60, 0.05, seed=5)
    overlap = t.matrix.multiply(train.matrix).toarray().astype(bool)[t.row_indices(), t.matrix.indices]
    test = t.select(~overlap)
    model = Fixed(np.random.default_rng(0).random((30, 60)))

    def ranked(seed: int, bs: int) -> pd.DataFrame:
        ev = Evaluator(test, train, [60], ["hit_rate"], n_negatives=10, seed=seed, batch_size=bs)
        return ev.evaluate(model, recommendations=True).recommendations

    recs = ranked(1, 1024)
    seen = set(zip(train.to_frame(external_ids=True)["user"], train.to_frame(external_ids=True)["item"]))
    tf = test.to_frame(external_ids=True)
    positives = set(zip(tf["user"], tf["item"]))
    pairs = set(zip(recs["user_id"], recs["item_id"]))
    assert not pairs & seen
    assert positives <= pairs  # every relevant item is ranked
    per_user = recs.groupby("user_id").size()
    n_pos = tf.groupby("user").size()
    assert (per_user - n_pos.reindex(per_user.index) == 10).all()
    pd.testing.assert_frame_equal(recs, ranked(1, 4))  # independent of the batch size
    assert not recs.equals(ranked(2, 1024))


# ------------------------------------------------------------------------ bad input
def _small() -> tuple[InteractionMatrix, InteractionMatrix]:
    return im([(0, 0)], 2, 4, "train"), im([(0, 1), (1, 2)], 2, 4, "test")


@pytest.mark.parametrize("k", [0, -1, 5])
def test_cutoff_outside_one_to_n_items_is_rejected(k):
    train, test = _small()
    with pytest.raises(ConfigError, match=f"cutoff {k}.*1..n_items=4"):
        Evaluator(test, train, [k], ["ndcg"])


def test_unknown_metric_and_tie_rule_list_the_known_names():
    train, test = _small()
    with pytest.raises(UnknownNameError, match=r"known: .*ndcg_full_idcg"):
        Evaluator(test, train, [1], ["ndcg@10"])
    with pytest.raises(UnknownNameError, match="optimistic"):
        Evaluator(test, train, [1], ["ndcg"], tie_rule="first")


def test_exclude_from_another_id_space_is_rejected():
    _, test = _small()
    other = im([(0, 0)], 2, 5, "other")
    with pytest.raises(DataError, match=r"'other'.*id space"):
        Evaluator(test, other, [1], ["ndcg"])
    with pytest.raises(DataError, match="candidates"):
        Evaluator(test, None, [1], ["ndcg"], candidates=sp.csr_matrix((2, 5), dtype=bool))


def test_candidates_and_n_negatives_together_are_rejected():
    _, test = _small()
    with pytest.raises(ConfigError, match="either"):
        Evaluator(test, None, [1], ["ndcg"], candidates=sp.csr_matrix((2, 4), dtype=bool), n_negatives=3)


def test_model_returning_wrong_shape_raises_model_error_naming_the_model():
    train, test = _small()

    class Broken:
        def score(self, users):
            return np.zeros((len(users), 3), dtype=np.float32)

    with pytest.raises(ModelError, match=r"Broken\.score returned shape \(2, 3\), expected \(2, 4\)"):
        Evaluator(test, train, [1], ["ndcg"]).evaluate(Broken())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_model_returning_nan_or_inf_names_model_and_users(bad):
    train, test = _small()
    scores = np.ones((2, 4), dtype=np.float32)
    scores[1, 3] = bad
    with pytest.raises(
        ModelError, match=r"Fixed\.score returned NaN or inf for 1 users \(user indices \[1\]"
    ):
        Evaluator(test, train, [1], ["ndcg"]).evaluate(Fixed(scores))


def test_huge_finite_scores_are_accepted():
    train, test = _small()
    scores = np.full((2, 4), 3e38, dtype=np.float32)  # the row sum overflows, the scores are finite
    scores[1, 2] = 3.3e38
    scores[0, 1] = 1.0
    r = Evaluator(test, train, [1], ["hit_rate"]).evaluate(Fixed(scores))
    assert r.per_user["hit_rate_at_1"].tolist() == [0.0, 1.0]


def test_float64_scores_are_accepted_and_ranked_like_float32():
    train, test = _small()
    scores = np.array([[0.1, 0.35, 0.3, 0.4], [0.4, 0.3, 0.5, 0.1]])  # test items at ranks 2 and 1
    a = Evaluator(test, train, [2], ["ndcg"]).evaluate(lambda users: scores[users])
    b = Evaluator(test, train, [2], ["ndcg"]).evaluate(Fixed(scores))
    pd.testing.assert_frame_equal(a.per_user, b.per_user)
    assert a.per_user["ndcg_at_2"].tolist() == [pytest.approx(D(2)), 1.0]


def test_read_only_scores_are_not_written():
    train, test = _small()
    base = np.arange(8, dtype=np.float32).reshape(2, 4)
    base.setflags(write=False)
    r = Evaluator(test, train, [1], ["hit_rate"]).evaluate(lambda users: base[users])
    assert np.array_equal(base, np.arange(8).reshape(2, 4))
    assert r.settings["model"] == "<lambda>"


# ------------------------------------------------------------------------ result
def test_result_metric_keys_per_user_table_and_parquet_artifacts(tmp_path):
    split = planted_blocks()
    ev = Evaluator(split.test, split.train, [5, 10], ["ndcg", "recall", "auc"], name="val")
    r = ev.evaluate(TopPop().fit(split.train), recommendations=True)
    keys = r.metrics()
    assert set(keys) == {"val/ndcg_at_5", "val/ndcg_at_10", "val/recall_at_5", "val/recall_at_10", "val/auc"}
    assert set(r.metrics("test/")) == {k.replace("val/", "test/") for k in keys}
    assert list(r.per_user.columns) == [
        "user",
        "user_id",
        "n_relevant",
        "ndcg_at_5",
        "ndcg_at_10",
        "recall_at_5",
        "recall_at_10",
        "auc",
    ]
    assert r.per_user["ndcg_at_10"].mean() == pytest.approx(r.summary["ndcg_at_10"])
    paths = r.write(tmp_path / "artifacts")
    assert set(paths) == {"per_user_metrics.parquet", "recommendations.parquet"}
    back = pd.read_parquet(paths["recommendations.parquet"])
    assert list(back.columns) == ["user_id", "rank", "item_id", "score"]
    assert len(back) == 10 * r.n_users_evaluated
    pd.testing.assert_frame_equal(pd.read_parquet(paths["per_user_metrics.parquet"]), r.per_user)
    s = r.settings
    assert (s["protocol"], s["tie_rule"], s["cutoffs"], s["exclude"]) == (
        "full",
        "random",
        [5, 10],
        "planted/train",
    )
    assert "min(k,|R_u|)" in s["metric_definitions"]["ndcg"]


@pytest.mark.parametrize("tie_rule", ["random", "optimistic"])
@pytest.mark.parametrize("protocol", ["full", "sampled"])
def test_thread_count_does_not_change_any_result(monkeypatch, tie_rule, protocol):
    # Rows of a batch are ranked and measured in row chunks on `threads` threads; every value is per
    # row (or an integer count), so 1, 2 and 3 threads give identical tables. Chunks of one row
    # upwards here, so chunk edges fall everywhere (the default is >= 64 rows per chunk).
    monkeypatch.setattr(evaluator, "_MIN_CHUNK_ROWS", 1)
    train = random_matrix(40, 30, 0.15, seed=1)
    test = random_matrix(40, 30, 0.1, seed=2)
    scores = np.random.default_rng(3).integers(0, 4, (40, 30)).astype(np.float32)  # many ties
    sampled = {"n_negatives": 8} if protocol == "sampled" else {}
    names = list(METRICS)
    frames = [
        Evaluator(
            test, train, [1, 5, 10], names, batch_size=17, seed=7, tie_rule=tie_rule, threads=t, **sampled
        ).evaluate(Fixed(scores), recommendations=True)
        for t in (1, 2, 3)
    ]
    for f in frames[1:]:
        pd.testing.assert_frame_equal(f.per_user, frames[0].per_user)
        pd.testing.assert_frame_equal(f.recommendations, frames[0].recommendations)
        assert repr(f.summary) == repr(frames[0].summary)  # repr: NaN equals NaN


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_threads_must_be_a_positive_integer(threads):
    with pytest.raises(ConfigError, match="threads"):
        Evaluator(random_matrix(5, 6, 0.3, seed=0), threads=threads)
