"""Splitters: hypothesis properties for every splitter, plus hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError, DataError, LeakageError, UnknownNameError
from benchmark.splits.split import Split
from benchmark.splits.splitters import (
    SPLITTERS,
    Rounding,
    _check_global_cut,
    _check_user_cuts,
    _rank_within_user,
    apply_splitter,
    carve_validation,
    get_splitter,
    leave_one_out,
    random_holdout_per_user,
    random_keys,
    temporal_global,
    temporal_per_user,
    user_kfold,
)
from tests.synthetic import random_matrix

# Every splitter with the parameters the properties exercise (min_train default 1 where it applies).
CASES: dict[str, dict] = {
    "random_holdout": {"test_fraction": 0.3},
    "random_holdout_per_user": {"test_fraction": 0.3},
    "random_holdout_per_user_ceil": {"test_fraction": 0.25, "rounding": "ceil", "min_train": 0},
    "leave_one_out": {"by": "random"},
    "leave_one_out_latest": {"by": "latest"},
    "temporal_global": {"test_fraction": 0.3},
    "temporal_per_user": {"test_fraction": 0.4},
    "user_kfold": {"n_folds": 3, "fold": 1, "test_fraction": 0.5},
}


def _splitter(case: str) -> str:
    return next(name for name in sorted(SPLITTERS, key=len, reverse=True) if case.startswith(name))


@st.composite
def matrices(draw: st.DrawFn) -> InteractionMatrix:
    """Small random matrices with ratings and many tied timestamps (timestamps drawn from 0..5)."""
    n_users = draw(st.integers(1, 8))
    n_items = draw(st.integers(1, 7))
    cells = draw(st.lists(st.booleans(), min_size=n_users * n_items, max_size=n_users * n_items))
    users, items = np.nonzero(np.array(cells, dtype=bool).reshape(n_users, n_items))
    ts = draw(st.lists(st.integers(0, 5), min_size=len(users), max_size=len(users)))
    return InteractionMatrix.from_indices(
        users,
        items,
        np.arange(n_users) * 10,
        np.arange(n_items) + 100,
        ratings=np.arange(len(users), dtype=np.float32),
        timestamps=np.array(ts, dtype=np.int64),
    )


def _run(case: str, data: InteractionMatrix, seed: int) -> Split:
    return apply_splitter(_splitter(case), data, CASES[case], rng=np.random.default_rng(seed))


_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("case", sorted(CASES))
@_settings
@given(data=matrices(), seed=st.integers(0, 2**32 - 1))
def test_parts_disjoint_and_union_is_the_input(case: str, data: InteractionMatrix, seed: int) -> None:
    split = _run(case, data, seed)
    assert split.train.matrix.multiply(split.test.matrix).nnz == 0
    assert split.train.nnz + split.test.nnz == data.nnz
    # The union carries ratings and timestamps back: same fingerprint as the input.
    assert split.train.union(split.test).fingerprint == data.fingerprint
    assert split.params["n_train"] == split.train.nnz and split.params["n_test"] == split.test.nnz


@pytest.mark.parametrize("case", sorted(CASES))
@_settings
@given(data=matrices(), seed=st.integers(0, 2**32 - 1))
def test_same_seed_gives_the_same_split(case: str, data: InteractionMatrix, seed: int) -> None:
    assert _run(case, data, seed).fingerprints == _run(case, data, seed).fingerprints


@pytest.mark.parametrize("case", sorted(CASES))
@_settings
@given(data=matrices(), seed=st.integers(0, 2**32 - 1), vseed=st.integers(0, 2**32 - 1))
def test_validation_carve_out_keeps_test_and_partitions_train(
    case: str, data: InteractionMatrix, seed: int, vseed: int
) -> None:
    split = _run(case, data, seed)
    carved = carve_validation(split, _splitter(case), CASES[case], rng=np.random.default_rng(vseed))
    assert carved.validation is not None
    assert carved.fingerprints["test"] == split.fingerprints["test"]
    assert carved.train.matrix.multiply(carved.validation.matrix).nnz == 0
    assert carved.train.union(carved.validation).union(carved.test).fingerprint == data.fingerprint
    assert carved.train_full.fingerprint == split.train.fingerprint


def _expected_quota(n: int, fraction: float, rounding: str, min_train: int) -> int:
    raw = fraction * n
    q = {
        "round": math.floor(raw + 0.5 + 1e-9),
        "ceil": math.ceil(raw - 1e-9),
        "floor": math.floor(raw + 1e-9),
    }
    return max(0, min(q[rounding], n - min_train))


@pytest.mark.parametrize(
    ("fraction", "rounding", "min_train"),
    [(0.2, "round", 1), (0.5, "round", 1), (0.25, "ceil", 0), (0.7, "ceil", 1), (0.3, "floor", 2)],
)
@_settings
@given(data=matrices(), seed=st.integers(0, 2**32 - 1))
def test_per_user_fraction_is_the_rounded_quota(
    fraction: float, rounding: Rounding, min_train: int, data: InteractionMatrix, seed: int
) -> None:
    for fn in (random_holdout_per_user, temporal_per_user):
        split = fn(
            data,
            test_fraction=fraction,
            rng=np.random.default_rng(seed),
            min_train=min_train,
            rounding=rounding,
        )
        n_u, t_u = data.user_counts(), split.test.user_counts()
        expected = [_expected_quota(int(n), fraction, rounding, min_train) for n in n_u]
        assert t_u.tolist() == expected
        # within rounding of the requested fraction wherever the min_train cap does not bind
        free = n_u - np.array(expected) > min_train
        assert np.all(np.abs(t_u[free] - fraction * n_u[free]) <= 1.0)
        assert split.params["n_users_below_min_train"] == int(((n_u > 0) & (n_u <= min_train)).sum())


@_settings
@given(data=matrices(), seed=st.integers(0, 2**32 - 1))
def test_leave_one_out_holds_out_exactly_one_per_user_with_two_or_more(
    data: InteractionMatrix, seed: int
) -> None:
    for by in ("random", "latest"):
        split = leave_one_out(data, rng=np.random.default_rng(seed), by=by)
        n_u = data.user_counts()
        assert split.test.user_counts().tolist() == (n_u >= 2).astype(int).tolist()
        assert split.params["n_users_below_min_train"] == int((n_u == 1).sum())


@_settings
@given(data=matrices(), seed=st.integers(0, 2**32 - 1))
def test_temporal_no_test_interaction_older_than_the_cut(data: InteractionMatrix, seed: int) -> None:
    g = temporal_global(data, test_fraction=0.3)
    cut = g.params["cut"]
    assert g.test.timestamps is not None and g.train.timestamps is not None
    assert np.all(g.test.timestamps >= cut) and np.all(g.train.timestamps < cut)
    for split in (
        temporal_per_user(data, test_fraction=0.4, rng=np.random.default_rng(seed)),
        temporal_per_user(data, test_fraction=0.4),
        leave_one_out(data, rng=np.random.default_rng(seed), by="latest"),
    ):
        assert split.train.timestamps is not None and split.test.timestamps is not None
        last_train = np.full(data.n_users, -1)
        np.maximum.at(last_train, split.train.row_indices(), split.train.timestamps)
        assert np.all(split.test.timestamps >= last_train[split.test.row_indices()])


@_settings
@given(data=matrices(), seed=st.integers(0, 2**32 - 1), n_folds=st.integers(2, 4))
def test_user_kfold_test_users_partition_the_users(data: InteractionMatrix, seed: int, n_folds: int) -> None:
    folds = [
        user_kfold(
            data, n_folds=n_folds, fold=f, test_fraction=0.5, rng=np.random.default_rng(seed), min_train=0
        )
        for f in range(n_folds)
    ]
    counts = data.user_counts()
    fold_users = [f.test.user_counts() > 0 for f in folds]
    # with min_train=0 and fraction 0.5 every user with >= 1 interaction has a test item in its fold
    assert np.array_equal(np.sum(fold_users, axis=0), (counts > 0).astype(int))
    assert sum(f.params["n_fold_users"] for f in folds) == int((counts > 0).sum())
    sizes = [f.params["n_fold_users"] for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for f in folds:  # users outside the fold keep everything in train (fold-in stays in train too)
        outside = f.test.user_counts() == 0
        assert np.array_equal(f.train.user_counts()[outside], counts[outside])


# ------------------------------------------------------------------ different seeds, larger data
@pytest.mark.parametrize("case", sorted(c for c in CASES if c != "temporal_global"))
def test_different_seed_gives_a_different_split(case: str) -> None:
    data = random_matrix(60, 40, density=0.15, seed=3, timestamps=True)
    if case in ("leave_one_out_latest", "temporal_per_user"):
        # randomness there only breaks ties: make every user's timestamps tie
        data = InteractionMatrix.from_indices(
            data.row_indices(),
            data.matrix.indices,
            data.user_ids,
            data.item_ids,
            timestamps=np.zeros(data.nnz, dtype=np.int64),
        )
    fps = {_run(case, data, seed).fingerprint for seed in range(4)}
    assert len(fps) == 4


def test_temporal_global_ignores_the_seed() -> None:
    data = random_matrix(30, 20, seed=1, timestamps=True)
    assert _run("temporal_global", data, 1).fingerprint == _run("temporal_global", data, 2).fingerprint


# ------------------------------------------------------------------ hand cases
def _tiny(
    users: list[int], items: list[int], ts: list[int], n_users: int = 3, n_items: int = 4
) -> InteractionMatrix:
    return InteractionMatrix.from_indices(
        np.array(users), np.array(items), np.arange(n_users), np.arange(n_items), timestamps=np.array(ts)
    )


def test_leave_one_out_latest_picks_the_latest_interaction() -> None:
    # user 0: item 1 is latest (30); user 1: item 3 (ts 7); user 2: one interaction, stays in train
    data = _tiny([0, 0, 0, 1, 1, 2], [0, 1, 2, 0, 3, 2], [10, 30, 20, 5, 7, 99])
    split = leave_one_out(data, rng=np.random.default_rng(0), by="latest")
    assert split.test.to_frame()[["user", "item"]].values.tolist() == [[0, 1], [1, 3]]
    assert split.train.user_counts().tolist() == [2, 1, 1]
    assert split.params["n_users_below_min_train"] == 1
    assert split.params["n_users_without_test"] == 1


def test_leave_one_out_latest_tie_goes_to_the_smallest_seeded_key() -> None:
    # user 0: items 1 and 3 share the latest timestamp 9; item 0 (ts 5) must never be chosen
    data = _tiny([0, 0, 0], [0, 1, 3], [5, 9, 9], n_users=1)
    chosen = set()
    for seed in range(30):
        split = leave_one_out(data, rng=np.random.default_rng(seed), by="latest")
        keys = random_keys(np.random.default_rng(seed), data.nnz)  # the documented draw, CSR order
        expected = [1, 3][int(np.argmin(keys[1:]))]
        (item,) = split.test.matrix.indices.tolist()
        assert item == expected
        chosen.add(item)
    assert chosen == {1, 3}


def test_temporal_global_cut_on_a_tiny_timeline() -> None:
    ts = [1, 2, 3, 4, 5, 6, 7, 8]
    data = _tiny([0, 0, 0, 0, 1, 1, 1, 1], [0, 1, 2, 3, 0, 1, 2, 3], ts, n_users=2)
    by_cut = temporal_global(data, cut=6)
    assert sorted(by_cut.test.timestamps.tolist()) == [6, 7, 8]  # type: ignore[union-attr]
    assert by_cut.params["n_users_without_test"] == 1  # user 0 is all before the cut
    by_fraction = temporal_global(data, test_fraction=0.25)  # 2 of 8 -> cut at 7
    assert by_fraction.params["cut"] == 7
    assert sorted(by_fraction.test.timestamps.tolist()) == [7, 8]  # type: ignore[union-attr]


def test_temporal_global_interactions_at_the_cut_instant_all_go_to_test() -> None:
    data = _tiny([0, 0, 0, 0, 1, 1, 1, 1], [0, 1, 2, 3, 0, 1, 2, 3], [1, 2, 3, 4, 5, 6, 6, 6], n_users=2)
    split = temporal_global(data, test_fraction=0.25)  # wants 2, the cut instant 6 holds 3
    assert split.params["cut"] == 6 and split.test.nnz == 3


def test_temporal_global_date_cut_is_read_as_utc() -> None:
    day = 86_400
    data = _tiny([0, 0, 1], [0, 1, 0], [0, day - 1, day], n_users=2)  # 1970-01-01 .. 1970-01-02
    split = temporal_global(data, cut="1970-01-02")
    assert split.params["cut"] == day and split.test.nnz == 1


def test_temporal_per_user_holds_out_each_users_latest() -> None:
    data = _tiny([0, 0, 0, 0, 1, 1], [0, 1, 2, 3, 0, 1], [4, 1, 3, 2, 8, 9], n_users=2)
    split = temporal_per_user(data, test_fraction=0.5)
    assert split.test.to_frame()[["user", "item"]].values.tolist() == [[0, 0], [0, 2], [1, 1]]


def test_per_user_holdout_keeps_a_single_interaction_in_train() -> None:
    data = _tiny([0, 1, 1, 1, 1], [0, 0, 1, 2, 3], [0] * 5, n_users=2)
    split = random_holdout_per_user(data, test_fraction=0.5, rng=np.random.default_rng(0))
    assert split.test.user_counts().tolist() == [0, 2]
    assert split.params["n_users_below_min_train"] == 1
    ceil = random_holdout_per_user(data, test_fraction=0.2, rng=np.random.default_rng(0), rounding="ceil")
    assert ceil.test.user_counts().tolist() == [0, 1]  # ceil(0.8) = 1; ceil(0.2) capped by min_train
    rounded = random_holdout_per_user(data, test_fraction=0.2, rng=np.random.default_rng(0))
    assert rounded.test.user_counts().tolist() == [0, 1]  # round(0.8) = 1
    floor = random_holdout_per_user(data, test_fraction=0.2, rng=np.random.default_rng(0), rounding="floor")
    assert floor.test.user_counts().tolist() == [0, 0]


def test_guards_catch_a_test_interaction_older_than_the_cut() -> None:
    data = _tiny([0, 0], [0, 1], [10, 5], n_users=1)
    leaky = Split(train=data.select(np.array([True, False])), test=data.select(np.array([False, True])))
    with pytest.raises(LeakageError, match="older than their user's training cut"):
        _check_user_cuts(leaky)
    with pytest.raises(LeakageError, match="older than the cut"):
        _check_global_cut(leaky, 7)


# ------------------------------------------------------------------ errors
def test_unknown_splitter_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="leave_one_out"):
        get_splitter("leave_two_out")


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("random_holdout", {"test_fraction": 1.5}),
        ("random_holdout", {"test_fraction": 0.2, "bogus": 1}),
        ("random_holdout_per_user", {"test_fraction": 0.2, "rounding": "up"}),
        ("leave_one_out", {"by": "oldest"}),
        ("temporal_global", {"test_fraction": 0.2, "cut": 5}),
        ("user_kfold", {"n_folds": 3, "fold": 3, "test_fraction": 0.2}),
        ("user_kfold", {"n_folds": 1, "fold": 0, "test_fraction": 0.2}),
    ],
)
def test_bad_parameters_are_config_errors(name: str, params: dict) -> None:
    data = random_matrix(10, 8, seed=0, timestamps=True)
    with pytest.raises(ConfigError):
        apply_splitter(name, data, params, rng=np.random.default_rng(0))


@pytest.mark.parametrize("case", ["leave_one_out_latest", "temporal_global", "temporal_per_user"])
def test_temporal_splitters_need_timestamps(case: str) -> None:
    with pytest.raises(DataError, match="timestamps"):
        _run(case, random_matrix(10, 8, seed=0), 0)


@_settings
@given(data=matrices(), seed=st.integers(0, 2**32 - 1))
def test_packed_rank_within_user_equals_the_lexsort_definition(data: InteractionMatrix, seed: int) -> None:
    keys = random_keys(np.random.default_rng(seed), data.nnz) % 3  # many equal keys too
    users = data.row_indices()
    assert data.timestamps is not None
    for latest, ref in (
        (None, np.lexsort((np.arange(data.nnz), keys, users))),
        (data.timestamps, np.lexsort((np.arange(data.nnz), keys, -data.timestamps, users))),
    ):
        expected = np.empty(data.nnz, dtype=np.int64)
        expected[ref] = np.arange(data.nnz) - data.matrix.indptr[users[ref]]
        assert _rank_within_user(data, keys, latest_first=latest).tolist() == expected.tolist()


def test_temporal_per_user_without_rng_breaks_ties_by_higher_item_index() -> None:
    data = _tiny([0, 0, 0], [0, 2, 3], [5, 5, 5], n_users=1)
    split = temporal_per_user(data, test_fraction=1 / 3)
    assert split.test.matrix.indices.tolist() == [3]
