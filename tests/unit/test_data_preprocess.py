"""Preprocessing steps on hand-computed cases, and k-core properties."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.data.preprocess import Counts, PreprocessConfig, k_core, preprocess
from benchmark.errors import ConfigError, DataError


def frame(rows: list[tuple[int, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


# (1, 10) occurs three times with ratings 3, 5, 5; (2, 10) twice with 4, 1
DUPS = frame([(1, 10, 3.0), (2, 10, 4.0), (1, 10, 5.0), (1, 11, 2.0), (2, 10, 1.0), (1, 10, 5.0)])


def test_duplicates_error_names_the_pair_and_source() -> None:
    with pytest.raises(DataError) as err:
        preprocess(DUPS, PreprocessConfig(), source="toy.csv")
    assert "2 duplicate (user, item) pairs (5 rows)" in str(err.value)
    assert err.value.file == "toy.csv" and err.value.value == (1, 10)


def test_duplicates_first_keeps_earliest_rows_in_file_order() -> None:
    out, steps = preprocess(DUPS, PreprocessConfig(duplicates="first"), source="t")
    assert out.to_numpy().tolist() == [[1, 10, 3.0], [2, 10, 4.0], [1, 11, 2.0]]
    assert steps[0].before == Counts(2, 2, 6) and steps[0].after == Counts(2, 2, 3)


def test_duplicates_last_keeps_latest_rows() -> None:
    out, _ = preprocess(DUPS, PreprocessConfig(duplicates="last"), source="t")
    assert out.to_numpy().tolist() == [[1, 11, 2.0], [2, 10, 1.0], [1, 10, 5.0]]


def test_duplicates_max_rating_keeps_highest_and_first_among_ties() -> None:
    f = DUPS.assign(tag=range(6))  # tag identifies which row survived
    out, _ = preprocess(f, PreprocessConfig(duplicates="max_rating"), source="t")
    # (1,10): ratings 3,5,5 -> first 5 is row 2; (2,10): 4 beats 1 -> row 1; (1,11) row 3
    assert out["tag"].tolist() == [1, 2, 3]
    assert out["rating"].tolist() == [4.0, 5.0, 2.0]


def test_duplicates_max_rating_without_ratings_is_refused() -> None:
    f = pd.DataFrame({"user": [1, 1], "item": [2, 2]})
    with pytest.raises(DataError, match="max_rating"):
        preprocess(f, PreprocessConfig(duplicates="max_rating"), source="t")


def test_min_rating_keeps_ratings_at_or_above_threshold() -> None:
    f = frame([(1, 1, 3.5), (1, 2, 4.0), (2, 1, 5.0), (3, 3, 1.0)])
    out, steps = preprocess(f, PreprocessConfig(min_rating=4.0), source="t")
    assert out[["user", "item"]].to_numpy().tolist() == [[1, 2], [2, 1]]
    assert steps[1].step == "min_rating"
    assert steps[1].before == Counts(3, 3, 4) and steps[1].after == Counts(2, 2, 2)


def test_min_rating_without_rating_column_is_refused() -> None:
    with pytest.raises(DataError, match="min_rating needs a rating column"):
        preprocess(pd.DataFrame({"user": [1], "item": [1]}), PreprocessConfig(min_rating=1), source="t")


def test_k_core_needs_several_passes_to_converge() -> None:
    # Pass 1 drops u4 (1 item); that leaves i3 with 1 user -> pass 2 drops (u3, i3); that leaves u3
    # with 1 item -> pass 3 drops (u3, i2); pass 4 sees no change. A single pass would keep 5 rows.
    f = frame([(1, 1, 1), (1, 2, 1), (2, 1, 1), (2, 2, 1), (3, 2, 1), (3, 3, 1), (4, 3, 1)])
    out, steps = preprocess(f, PreprocessConfig(user_core=2, item_core=2), source="t")
    assert sorted(map(tuple, out[["user", "item"]].to_numpy().tolist())) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    rec = steps[-1]
    assert rec.step == "k_core" and rec.params["passes"] == 4
    assert rec.before == Counts(4, 3, 7) and rec.after == Counts(2, 2, 4)


def test_user_core_only_leaves_items_unconstrained() -> None:
    f = frame([(1, 1, 1), (1, 2, 1), (2, 3, 1)])
    out, _ = k_core(f, 2, 0)
    assert out["user"].tolist() == [1, 1]


def test_filtering_everything_is_an_error() -> None:
    f = frame([(1, 1, 1.0), (2, 2, 2.0)])
    with pytest.raises(DataError, match="no interactions left after min_rating"):
        preprocess(f, PreprocessConfig(min_rating=3), source="toy")
    with pytest.raises(DataError, match="no interactions left after k_core"):
        preprocess(f, PreprocessConfig(user_core=5), source="toy")


def test_nan_rating_is_refused() -> None:
    with pytest.raises(DataError, match="NaN rating"):
        preprocess(frame([(1, 1, float("nan"))]), PreprocessConfig(), source="t")


def test_bad_config_values_are_refused() -> None:
    with pytest.raises(ConfigError):
        PreprocessConfig(duplicates="keep")
    with pytest.raises(ConfigError):
        PreprocessConfig(user_core=-1)
    with pytest.raises(ConfigError):
        PreprocessConfig(min_rating=float("nan"))


def test_only_configured_steps_are_recorded() -> None:
    _, steps = preprocess(frame([(1, 1, 1.0)]), PreprocessConfig(), source="t")
    assert [s.step for s in steps] == ["duplicates"]


pairs = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=1, max_size=120, unique=True)


@settings(max_examples=60, deadline=None)
@given(pairs, st.integers(0, 4), st.integers(0, 4))
def test_k_core_result_satisfies_cores_and_is_a_fixed_point(
    rows: list[tuple[int, int]], uk: int, ik: int
) -> None:
    f = pd.DataFrame(rows, columns=["user", "item"])
    out, _ = k_core(f, uk, ik)
    if len(out):
        assert out["user"].value_counts().min() >= uk
        assert out["item"].value_counts().min() >= ik
    again, passes = k_core(out, uk, ik)
    assert len(again) == len(out) and passes == 1
    # The k-core is unique (the largest such subgraph): compare with a plain reference.
    assert set(map(tuple, out.to_numpy().tolist())) == reference_k_core(set(rows), uk, ik)


def reference_k_core(rows: set[tuple[int, int]], uk: int, ik: int) -> set[tuple[int, int]]:
    """Remove one violating pair at a time until none is left (slow, obviously correct)."""
    rows = set(rows)
    while True:
        users = pd.Series([u for u, _ in rows]).value_counts().to_dict() if rows else {}
        items = pd.Series([i for _, i in rows]).value_counts().to_dict() if rows else {}
        bad = {(u, i) for u, i in rows if users[u] < uk or items[i] < ik}
        if not bad:
            return rows
        rows -= {min(bad)}
