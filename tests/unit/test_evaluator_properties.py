"""Hypothesis properties of the evaluator: bounds, perfect rankings, invariances, masking, tie order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.data.interactions import InteractionMatrix
from benchmark.evaluation import Evaluator, evaluator
from benchmark.evaluation.topk import HAVE_NUMBA

ACCURACY = ["precision", "recall", "hit_rate", "f1", "mrr", "map", "map_full", "ndcg", "ndcg_full_idcg"]
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(autouse=True, params=["fused", "numpy"] if HAVE_NUMBA else ["numpy"])
def engine(request, monkeypatch):
    """Run every property with both hot paths (the fixture is constant across examples)."""
    monkeypatch.setattr(evaluator, "USE_FUSED", request.param == "fused")
    return request.param


class Fixed:
    def __init__(self, scores: np.ndarray) -> None:
        self.scores = np.asarray(scores, dtype=np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.scores[users].copy()


@st.composite
def cases(draw: st.DrawFn, *, ties: bool = True):
    """Random train / test (disjoint) and scores; integer scores in a small range make many ties."""
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(2, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    state = rng.integers(0, 3, (n_users, n_items))  # 0 nothing, 1 train, 2 test
    if ties:
        scores = rng.integers(0, draw(st.integers(1, 4)), (n_users, n_items)).astype(np.float32)
    else:
        scores = np.argsort(rng.random((n_users, n_items)), axis=1).astype(np.float32)
    uid, iid = np.arange(n_users), np.arange(n_items)

    def part(code: int, name: str) -> InteractionMatrix:
        u, i = np.nonzero(state == code)
        return InteractionMatrix.from_indices(u, i, uid, iid, name=name)

    ks = sorted(set(draw(st.lists(st.integers(1, n_items), min_size=1, max_size=3))))
    return part(1, "train"), part(2, "test"), scores, ks, seed


@SETTINGS
@given(cases(), st.sampled_from(["random", "index", "optimistic", "pessimistic"]))
def test_accuracy_metrics_lie_in_unit_interval(case, rule):
    train, test, scores, ks, seed = case
    r = Evaluator(test, train, ks, [*ACCURACY, "auc", "arhr"], tie_rule=rule, seed=seed).evaluate(
        Fixed(scores)
    )
    if r.n_users_evaluated == 0:  # nobody has a test item: every mean is undefined
        assert all(np.isnan(v) for v in r.summary.values())
        return
    for key, v in r.summary.items():
        if key.startswith("arhr"):
            k = int(key.rsplit("_", 1)[1])
            assert 0.0 <= v <= sum(1 / j for j in range(1, k + 1)) + 1e-12
        elif key == "auc" and np.isnan(v):
            continue  # every candidate of every user is relevant: no pair to compare
        else:
            assert 0.0 <= v <= 1.0 + 1e-12, key


@SETTINGS
@given(cases(), st.sampled_from(["random", "index", "optimistic", "pessimistic"]))
def test_perfect_ranking_scores_one(case, rule):
    train, test, _, ks, seed = case
    rel = test.matrix.toarray()
    scores = rel + np.random.default_rng(seed).integers(0, 1, rel.shape) * 0.0  # relevant 1, others tie at 0
    r = Evaluator(test, train, ks, [*ACCURACY, "auc"], tie_rule=rule, seed=seed).evaluate(Fixed(scores))
    n_rel = r.per_user["n_relevant"].to_numpy()
    for k in ks:
        for name in ("hit_rate", "mrr", "map", "ndcg"):
            np.testing.assert_allclose(r.per_user[f"{name}_at_{k}"], 1.0, err_msg=name)
        np.testing.assert_allclose(r.per_user[f"precision_at_{k}"], np.minimum(k, n_rel) / k)
        np.testing.assert_allclose(r.per_user[f"recall_at_{k}"], np.minimum(k, n_rel) / n_rel)
    auc = r.per_user["auc"].to_numpy()
    assert np.all((auc == 1.0) | np.isnan(auc))


@SETTINGS
@given(cases(), st.sampled_from(["optimistic", "pessimistic"]), st.integers(0, 2**32 - 1))
def test_permuting_non_relevant_items_changes_nothing_with_ties(case, rule, perm_seed):
    # Under optimistic / pessimistic ties the ranks of relevant items depend only on the multiset of
    # the other candidates' scores, so shuffling those scores among non-relevant items is invisible.
    train, test, scores, ks, seed = case
    _check_permutation_invariance(train, test, scores, ks, seed, rule, perm_seed)


@SETTINGS
@given(cases(ties=False), st.sampled_from(["random", "index"]), st.integers(0, 2**32 - 1))
def test_permuting_non_relevant_items_changes_nothing_without_ties(case, rule, perm_seed):
    train, test, scores, ks, seed = case
    _check_permutation_invariance(train, test, scores, ks, seed, rule, perm_seed)


def _check_permutation_invariance(train, test, scores, ks, seed, rule, perm_seed):
    rng = np.random.default_rng(perm_seed)
    other = ~(test.matrix.toarray().astype(bool) | train.matrix.toarray().astype(bool))
    permuted = scores.copy()
    for u in range(scores.shape[0]):
        cols = np.flatnonzero(other[u])
        permuted[u, cols] = scores[u, rng.permutation(cols)]
    names = [*ACCURACY, "auc"]
    a = Evaluator(test, train, ks, names, tie_rule=rule, seed=seed).evaluate(Fixed(scores))
    b = Evaluator(test, train, ks, names, tie_rule=rule, seed=seed).evaluate(Fixed(permuted))
    np.testing.assert_allclose(
        a.per_user.drop(columns=["user", "user_id"]).to_numpy(dtype=float),
        b.per_user.drop(columns=["user", "user_id"]).to_numpy(dtype=float),
        equal_nan=True,
    )


@SETTINGS
@given(cases(), st.sampled_from(["random", "index", "optimistic", "pessimistic"]))
def test_excluded_items_are_never_recommended(case, rule):
    train, test, scores, ks, seed = case
    # Give excluded items the highest scores so that a missing mask would surface them.
    scores = scores + 10 * train.matrix.toarray()
    r = Evaluator(test, train, ks, ["hit_rate"], tie_rule=rule, seed=seed).evaluate(
        Fixed(scores), recommendations=True
    )
    seen = train.matrix.toarray().astype(bool)
    recs = r.recommendations
    assert not seen[recs["user_id"].to_numpy(), recs["item_id"].to_numpy()].any()
    # Every list holds min(max k, unseen items) distinct items.
    sizes = recs.groupby("user_id").size()
    unseen = (~seen).sum(axis=1)
    np.testing.assert_array_equal(sizes.to_numpy(), np.minimum(max(ks), unseen[sizes.index]))
    assert not recs.duplicated(["user_id", "item_id"]).any()


@SETTINGS
@given(cases())
def test_optimistic_at_least_random_at_least_pessimistic_per_user(case):
    train, test, scores, ks, seed = case
    names = [*ACCURACY, "auc", "arhr"]
    res = {
        rule: Evaluator(test, train, ks, names, tie_rule=rule, seed=seed).evaluate(Fixed(scores)).per_user
        for rule in ("optimistic", "random", "index", "pessimistic")
    }
    cols = [c for c in res["random"].columns if c not in ("user", "user_id", "n_relevant")]
    for middle in ("random", "index"):
        for c in cols:
            hi, mid, lo = (res[r][c].to_numpy() for r in ("optimistic", middle, "pessimistic"))
            ok = ~np.isnan(mid)
            assert np.all(hi[ok] >= mid[ok] - 1e-12), (middle, c)
            assert np.all(mid[ok] >= lo[ok] - 1e-12), (middle, c)


@SETTINGS
@given(cases(), st.integers(1, 5), st.sampled_from(["random", "optimistic", "pessimistic"]))
def test_sampled_negatives_bounds_and_no_seen_items(case, n_neg, rule):
    train, test, scores, ks, seed = case
    r = Evaluator(test, train, ks, [*ACCURACY, "auc"], n_negatives=n_neg, tie_rule=rule, seed=seed).evaluate(
        Fixed(scores), recommendations=True
    )
    for key, v in r.summary.items():
        assert np.isnan(v) or 0.0 <= v <= 1.0 + 1e-12, key
    seen = train.matrix.toarray().astype(bool)
    recs = r.recommendations
    assert not seen[recs["user_id"].to_numpy(), recs["item_id"].to_numpy()].any()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 40),
    st.integers(100, 3000),
    st.integers(1, 60),
    st.integers(1, 50),
    st.sampled_from(["random", "index", "optimistic", "pessimistic"]),
    st.integers(0, 2**32 - 1),
)
def test_fused_and_numpy_paths_agree_on_wide_rows(n_users, n_items, k, n_levels, rule, seed):
    # Wide rows exercise the block stage of both top-k implementations; few score levels make ties
    # straddle the cutoff and spread across blocks.
    if not HAVE_NUMBA:
        return
    rng = np.random.default_rng(seed)
    state = rng.choice(3, (n_users, n_items), p=[0.8, 0.15, 0.05])
    uid, iid = np.arange(n_users), np.arange(n_items)
    parts = [InteractionMatrix.from_indices(*np.nonzero(state == c), uid, iid) for c in (1, 2)]
    scores = rng.integers(0, n_levels, (n_users, n_items)).astype(np.float32)
    ks = sorted({1, min(k, n_items)})
    names = ["ndcg", "map", "recall", "mrr"]
    out = []
    for fused in (True, False):
        evaluator.USE_FUSED = fused
        try:
            r = Evaluator(parts[1], parts[0], ks, names, tie_rule=rule, seed=seed).evaluate(
                Fixed(scores), recommendations=True
            )
        finally:
            evaluator.USE_FUSED = HAVE_NUMBA
        out.append(r)
    assert out[0].recommendations.equals(out[1].recommendations)
    assert out[0].per_user.equals(out[1].per_user)


@SETTINGS
@given(cases(), st.sampled_from([("optimistic", 1.0), ("pessimistic", 0.0), ("random", 0.5)]))
def test_auc_equals_the_pairwise_definition_with_ties(case, rule_credit):
    # AUC = share of (positive, negative) candidate pairs ranked right, a tie counting `credit`:
    # counted pair by pair here, by sorted keys over all rows at once in the evaluator.
    rule, credit = rule_credit
    train, test, scores, ks, seed = case
    r = Evaluator(test, train, ks, ["auc"], tie_rule=rule, seed=seed).evaluate(Fixed(scores))
    seen, held = train.matrix.toarray() > 0, test.matrix.toarray() > 0
    for u, got in zip(r.per_user["user"], r.per_user["auc"], strict=True):
        pos = scores[u, held[u]]
        neg = scores[u, ~held[u] & ~seen[u]]
        if neg.size == 0:
            assert np.isnan(got)
            continue
        pairs = (pos[:, None] > neg[None, :]) + credit * (pos[:, None] == neg[None, :])
        assert got == pytest.approx(pairs.mean(), abs=1e-12)
