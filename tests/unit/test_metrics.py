"""Hand-computed values of every metric function (``benchmark.evaluation.metrics``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.errors import UnknownNameError
from benchmark.evaluation import METRICS, get_metric
from benchmark.evaluation import metrics as M


def H(*rows: list[int]) -> np.ndarray:
    return np.array(rows, dtype=bool)


def D(j: int) -> float:
    """Discount of rank j (1-based)."""
    return 1.0 / math.log2(j + 1)


# ------------------------------------------------------------------------ precision / recall / hr / f1
def test_precision_two_hits_in_top_5():
    h = H([1, 0, 1, 0, 0])
    assert M.precision(h, np.array([4]), 5)[0] == pytest.approx(0.4)
    assert M.precision(h, np.array([4]), 2)[0] == pytest.approx(0.5)


def test_precision_denominator_stays_k_when_fewer_relevant_items():
    # Perfect list of a user with 1 relevant item: precision@5 = 1/5, not 1.
    assert M.precision(H([1, 0, 0, 0, 0]), np.array([1]), 5)[0] == pytest.approx(0.2)


def test_recall_divides_by_all_relevant_items_not_k():
    h = H([1, 0, 1, 0, 0])
    assert M.recall(h, np.array([4]), 5)[0] == pytest.approx(0.5)
    assert M.recall(h, np.array([4]), 1)[0] == pytest.approx(0.25)


def test_recall_of_user_without_relevant_items_is_zero_not_nan():
    assert M.recall(H([0, 0]), np.array([0]), 2)[0] == 0.0


def test_hit_rate_first_hit_at_rank_3():
    h = H([0, 0, 1])
    assert M.hit_rate(h, np.array([1]), 2)[0] == 0.0
    assert M.hit_rate(h, np.array([1]), 3)[0] == 1.0


def test_f1_harmonic_mean_of_precision_0_4_and_recall_0_5():
    h = H([1, 0, 1, 0, 0])
    assert M.f1(h, np.array([4]), 5)[0] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert M.f1(H([0, 0]), np.array([3]), 2)[0] == 0.0


# ------------------------------------------------------------------------ mrr / arhr
def test_mrr_first_hit_at_rank_3_ignores_later_hits():
    h = H([0, 0, 1, 1])
    assert M.mrr(h, np.array([2]), 4)[0] == pytest.approx(1 / 3)
    assert M.mrr(h, np.array([2]), 2)[0] == 0.0


def test_arhr_hits_at_ranks_1_and_3_sums_reciprocal_ranks():
    assert M.arhr(H([1, 0, 1]), np.array([2]), 3)[0] == pytest.approx(1 + 1 / 3)


# ------------------------------------------------------------------------ map
def test_map_two_hits_at_ranks_1_and_3_four_relevant():
    # AP sum = P@1 + P@3 = 1 + 2/3; denominator min(5, 4) = 4 for both variants.
    h = H([1, 0, 1, 0, 0])
    assert M.map_min(h, np.array([4]), 5)[0] == pytest.approx((1 + 2 / 3) / 4)
    assert M.map_full(h, np.array([4]), 5)[0] == pytest.approx((1 + 2 / 3) / 4)


def test_map_denominator_min_k_relevant():
    # 10 relevant items, k = 5: map divides by min(k, |R|) = 5, map_full by |R| = 10.
    h = H([1, 0, 1, 0, 0])
    assert M.map_min(h, np.array([10]), 5)[0] == pytest.approx((1 + 2 / 3) / 5)
    assert M.map_full(h, np.array([10]), 5)[0] == pytest.approx((1 + 2 / 3) / 10)


def test_map_perfect_top_k_with_more_relevant_than_k():
    h = H([1, 1, 1])
    assert M.map_min(h, np.array([6]), 3)[0] == pytest.approx(1.0)
    assert M.map_full(h, np.array([6]), 3)[0] == pytest.approx(0.5)


# ------------------------------------------------------------------------ ndcg
def test_ndcg_two_hits_at_ranks_1_and_3():
    h = H([1, 0, 1, 0, 0])
    expected = (D(1) + D(3)) / (D(1) + D(2))
    assert M.ndcg(h, np.array([2]), 5)[0] == pytest.approx(expected)
    assert expected == pytest.approx(0.919720, abs=1e-6)
    # With only two relevant items both variants agree.
    assert M.ndcg_full_idcg(h, np.array([2]), 5)[0] == pytest.approx(expected)


def test_ndcg_ideal_dcg_truncated_at_k_vs_over_all_relevant_items():
    # 6 relevant items, hits at ranks 1 and 3 of a top-3 list.
    h = H([1, 0, 1])
    dcg = D(1) + D(3)
    assert M.ndcg(h, np.array([6]), 3)[0] == pytest.approx(dcg / (D(1) + D(2) + D(3)))
    full = sum(D(j) for j in range(1, 7))
    assert M.ndcg_full_idcg(h, np.array([6]), 3)[0] == pytest.approx(dcg / full)
    assert M.ndcg_full_idcg(h, np.array([6]), 3)[0] == pytest.approx(0.4539036, abs=1e-6)


def test_ndcg_perfect_list_is_one_and_no_hit_is_zero():
    assert M.ndcg(H([1, 1, 0]), np.array([2]), 3)[0] == pytest.approx(1.0)
    assert M.ndcg(H([0, 0, 0]), np.array([2]), 3)[0] == 0.0


def test_ndcg_full_idcg_handles_users_with_more_relevant_items_than_the_table():
    n_rel = np.array([1, 5000])
    v = M.ndcg_full_idcg(H([1, 0], [1, 0]), n_rel, 2)
    assert v[0] == pytest.approx(1.0)
    assert v[1] == pytest.approx(1.0 / sum(D(j) for j in range(1, 5001)))


def test_metrics_vectorised_over_users_match_single_rows():
    rng = np.random.default_rng(3)
    h = rng.random((20, 7)) < 0.3
    n_rel = rng.integers(1, 9, 20)
    for name in (
        "precision",
        "recall",
        "hit_rate",
        "f1",
        "mrr",
        "arhr",
        "map",
        "map_full",
        "ndcg",
        "ndcg_full_idcg",
    ):
        fn = METRICS[name].fn
        whole = fn(h, n_rel, 5)
        rows = [fn(h[i : i + 1], n_rel[i : i + 1], 5)[0] for i in range(20)]
        np.testing.assert_allclose(whole, rows, err_msg=name)


# ------------------------------------------------------------------------ auc
def test_auc_two_positives_one_tie_one_negative_above():
    # User with 3 negatives: positive A above all; positive B below 1 negative and tied with 1.
    args = (np.array([3]), np.array([0, 1]), np.array([0, 1]), np.array([0, 0]), 1)
    assert M.auc_from_counts(*args, tie_credit=0.5)[0] == pytest.approx((3 + 1.5) / 6)
    assert M.auc_from_counts(*args, tie_credit=1.0)[0] == pytest.approx((3 + 2) / 6)
    assert M.auc_from_counts(*args, tie_credit=0.0)[0] == pytest.approx((3 + 1) / 6)


def test_auc_without_negatives_is_nan():
    assert np.isnan(M.auc_from_counts(np.array([0]), np.array([0]), np.array([0]), np.array([0]), 1)[0])


# ------------------------------------------------------------------------ beyond accuracy
POP = np.array([4.0, 1.0, 0.0, 2.0])


def test_novelty_self_information_with_unseen_item_clipped_to_one_interaction():
    # -log2(4/4) = 0, -log2(1/4) = 2, item 2 has 0 interactions -> counted as 1 -> 2 bits.
    items = np.array([[0, 1], [2, -1]])
    v = M.novelty(items, POP, 4, 2)
    assert v[0] == pytest.approx(1.0)
    assert v[1] == pytest.approx(2.0)  # the empty slot is not counted


def test_avg_popularity_mean_count_of_recommended_items():
    assert M.avg_popularity(np.array([[0, 3], [1, -1]]), POP, 4, 2) == pytest.approx([3.0, 1.0])
    assert np.isnan(M.avg_popularity(np.array([[-1, -1]]), POP, 4, 2)[0])


def test_coverage_two_of_four_items_recommended():
    assert M.coverage(np.array([3, 0, 1, 0])) == pytest.approx(0.5)


def test_gini_all_recommendations_on_one_of_four_items():
    assert M.gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)  # (n-1)/n, the maximum


def test_gini_equal_counts_is_zero_and_hand_case():
    assert M.gini(np.array([2, 2, 2, 2])) == pytest.approx(0.0)
    # sorted [1, 1, 2]: sum (2i-n-1) c_i = (-2)(1) + 0(1) + 2(2) = 2; / (3 * 4)
    assert M.gini(np.array([2, 1, 1])) == pytest.approx(2 / 12)


def test_entropy_of_counts_1_1_2_is_1_5_bits():
    assert M.entropy(np.array([1, 1, 2, 0])) == pytest.approx(1.5)
    assert M.entropy(np.array([5, 5, 5, 5])) == pytest.approx(2.0)
    assert M.entropy(np.zeros(3)) == 0.0


# ------------------------------------------------------------------------ registry
def test_registry_names_every_variant():
    for name in (
        "precision",
        "recall",
        "hit_rate",
        "f1",
        "mrr",
        "arhr",
        "map",
        "map_full",
        "ndcg",
        "ndcg_full_idcg",
        "auc",
        "coverage",
        "gini",
        "entropy",
        "novelty",
        "avg_popularity",
    ):
        assert get_metric(name).name == name
        assert METRICS[name].definition


def test_unknown_metric_lists_known_names():
    with pytest.raises(UnknownNameError, match="ndcg_full_idcg") as exc:
        get_metric("ndgc")
    assert "ndgc" in str(exc.value)
