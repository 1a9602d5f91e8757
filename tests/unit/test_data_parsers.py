"""Parsers on small hand-written files: values, dtypes, and clear errors naming file:line."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.data.parsers import parse, read_delimited, read_parquet, read_user_lists
from benchmark.errors import DataError, UnknownNameError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_tab_separated_four_columns_keeps_values_and_dtypes(tmp_path: Path) -> None:
    p = write(tmp_path / "u.data", "1\t10\t4\t881250949\n2\t10\t3\t891717742\n1\t20\t5\t878887116\n")
    f = read_delimited(p, sep="\t", names=["user", "item", "rating", "timestamp"])
    assert list(f.columns) == ["user", "item", "rating", "timestamp"]
    assert f["user"].tolist() == [1, 2, 1]
    assert f["item"].tolist() == [10, 10, 20]
    assert f["rating"].tolist() == [4.0, 3.0, 5.0]
    assert f["timestamp"].tolist() == [881250949, 891717742, 878887116]
    assert f["user"].dtype == np.int64 and f["rating"].dtype == np.float64


def test_double_colon_separator_of_ml1m_ratings_dat(tmp_path: Path) -> None:
    p = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    f = read_delimited(p, sep="::", names=["user", "item", "rating", "timestamp"])
    assert f.to_numpy().tolist() == [[1, 1193, 5, 978300760], [1, 661, 3, 978302109]]


def test_skipped_column_is_not_read(tmp_path: Path) -> None:
    p = write(tmp_path / "x.txt", "1 a 10\n2 b 11\n")
    f = read_delimited(p, sep=" ", names=["user", None, "item"])
    assert list(f.columns) == ["user", "item"] and f["item"].tolist() == [10, 11]


def test_header_with_column_mapping_and_drop_row_by_content(tmp_path: Path) -> None:
    p = write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n999,999999,5.0,1493846415",
    )
    f = read_delimited(
        p,
        sep=",",
        header=True,
        columns={"userId": "user", "movieId": "item", "rating": "rating", "timestamp": "timestamp"},
        drop_rows=[{"user": 999, "item": 999999, "rating": 5.0, "timestamp": 1493846415}],
    )
    assert f["user"].tolist() == [1, 1] and f["item"].tolist() == [1, 3]
    assert f.attrs["dropped_rows"] == 1


def test_drop_row_needs_every_field_equal(tmp_path: Path) -> None:
    p = write(tmp_path / "r.csv", "user,item,rating\n999,999999,4.0\n")
    f = read_delimited(p, header=True, drop_rows=[{"user": 999, "item": 999999, "rating": 5.0}])
    assert len(f) == 1 and f.attrs["dropped_rows"] == 0


def test_gzip_is_read_transparently(tmp_path: Path) -> None:
    p = tmp_path / "r.tsv.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("5\t6\t1\n7\t8\t2\n")
    f = read_delimited(p, sep="\t", names=["user", "item", "rating"])
    assert f["item"].tolist() == [6, 8]


def test_too_many_fields_names_file_line_and_text(tmp_path: Path) -> None:
    p = write(tmp_path / "bad.tsv", "1\t2\t3\n4\t5\t6\n7\t8\t9\t10\n")
    with pytest.raises(DataError) as err:
        read_delimited(p, sep="\t", names=["user", "item", "rating"])
    msg = str(err.value)
    assert f"{p}:3" in msg and "7\\t8\\t9\\t10" in msg
    assert err.value.line == 3


def test_non_integer_user_id_names_line_field_and_value(tmp_path: Path) -> None:
    p = write(tmp_path / "bad.csv", "user,item\n1,2\nabc,3\n4,5\n")
    with pytest.raises(DataError) as err:
        read_delimited(p, header=True)
    assert err.value.line == 3 and err.value.field == "user"
    assert "abc" in str(err.value) and "non-integer user id" in str(err.value)


def test_fractional_item_id_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path / "bad.tsv", "1\t2\n3\t4.5\n")
    with pytest.raises(DataError) as err:
        read_delimited(p, sep="\t", names=["user", "item"])
    assert err.value.line == 2 and err.value.field == "item"


def test_empty_rating_is_reported_as_nan_rating_with_line(tmp_path: Path) -> None:
    p = write(tmp_path / "r.csv", "user,item,rating\n1,2,3.5\n1,3,\n")
    with pytest.raises(DataError) as err:
        read_delimited(p, header=True)
    assert err.value.line == 3 and err.value.field == "rating"


def test_missing_column_in_header_is_named(tmp_path: Path) -> None:
    p = write(tmp_path / "r.csv", "user,rating\n1,3\n")
    with pytest.raises(DataError) as err:
        read_delimited(p, header=True)
    assert err.value.field == "item"


def test_string_ids_allowed_when_asked(tmp_path: Path) -> None:
    p = write(tmp_path / "r.csv", "user,item\nalice,x1\nbob,x2\n")
    f = read_delimited(p, header=True, ids="str")
    assert f["user"].tolist() == ["alice", "bob"]


def test_user_lists_count_layout_uses_line_number_as_user(tmp_path: Path) -> None:
    # user 1 has no items ("0"): it produces no pair but keeps the numbering of the next lines
    p = write(tmp_path / "users.dat", "2 5 7\n0\n1 3\n")
    f = read_user_lists(p, layout="count")
    assert f["user"].tolist() == [0, 0, 2] and f["item"].tolist() == [5, 7, 3]


def test_user_lists_user_layout_takes_first_token_as_user(tmp_path: Path) -> None:
    p = write(tmp_path / "test.rating", "1 209 234\n2 275\n")
    f = read_user_lists(p, layout="user")
    assert f["user"].tolist() == [1, 1, 2] and f["item"].tolist() == [209, 234, 275]


def test_user_lists_count_mismatch_names_the_line(tmp_path: Path) -> None:
    p = write(tmp_path / "users.dat", "2 5 7\n3 1 2\n")
    with pytest.raises(DataError) as err:
        read_user_lists(p, layout="count")
    assert err.value.line == 2 and "'3 1 2'" in str(err.value)


def test_user_lists_non_integer_token_names_the_line(tmp_path: Path) -> None:
    p = write(tmp_path / "users.dat", "1 5\n1 x7\n")
    with pytest.raises(DataError) as err:
        read_user_lists(p, layout="count")
    assert err.value.line == 2 and "x7" in str(err.value)


def test_parquet_with_column_mapping(tmp_path: Path) -> None:
    p = tmp_path / "r.parquet"
    pd.DataFrame({"uid": [3, 1], "iid": [7, 8], "score": [1.5, 2.0]}).to_parquet(p)
    f = read_parquet(p, columns={"uid": "user", "iid": "item", "score": "rating"})
    assert f.to_numpy().tolist() == [[3, 7, 1.5], [1, 8, 2.0]]


def test_parquet_nan_rating_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "r.parquet"
    pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [1.0, np.nan]}).to_parquet(p)
    with pytest.raises(DataError) as err:
        read_parquet(p)
    assert err.value.field == "rating" and err.value.line == 2


def test_parse_concatenates_files_in_order_and_rejects_unknown_parser(tmp_path: Path) -> None:
    a = write(tmp_path / "a.dat", "1 4\n")
    b = write(tmp_path / "b.dat", "1 9\n0\n")
    f = parse("user_lists", [a, b], {"layout": "count"})
    assert f["item"].tolist() == [4, 9] and f["user"].tolist() == [0, 0]
    with pytest.raises(UnknownNameError):
        parse("nope", [a])


def test_mapped_column_absent_from_header_is_named(tmp_path: Path) -> None:
    p = write(tmp_path / "r.csv", "uid,iid\n1,3\n")
    with pytest.raises(DataError) as err:
        read_delimited(p, header=True, columns={"uid": "user", "movieId": "item"})
    assert err.value.field == "movieId"


def test_too_few_fields_is_reported_with_line(tmp_path: Path) -> None:
    p = write(tmp_path / "r.tsv", "1\t2\t3\n4\t5\n")
    with pytest.raises(DataError) as err:
        read_delimited(p, sep="\t", names=["user", "item", "rating"])
    assert err.value.line == 2 and "'4\\t5'" in str(err.value)


user_item_lists = st.lists(st.lists(st.integers(0, 10**9), max_size=8), min_size=1, max_size=30)


@settings(max_examples=80, deadline=None)
@given(user_item_lists, st.booleans())
def test_user_lists_match_a_line_by_line_reference(lists: list[list[int]], trailing_newline: bool) -> None:
    import tempfile

    text = "\n".join(" ".join(map(str, [len(items), *items])) for items in lists)
    with tempfile.TemporaryDirectory() as tmp:
        p = write(Path(tmp) / "users.dat", text + ("\n" if trailing_newline else ""))
        f = read_user_lists(p, layout="count")
    expected = [(u, i) for u, items in enumerate(lists) for i in items]
    assert list(zip(f["user"].tolist(), f["item"].tolist())) == expected


def test_names_replace_an_existing_header(tmp_path: Path) -> None:
    p = write(tmp_path / "r.csv", "a,b,c\n1,2,3.5\n")
    f = read_delimited(p, header=True, names=["user", "item", "rating"])
    assert f.to_numpy().tolist() == [[1, 2, 3.5]]


def test_empty_file_is_a_data_error(tmp_path: Path) -> None:
    p = write(tmp_path / "empty.csv", "")
    with pytest.raises(DataError, match="header"):
        read_delimited(p, header=True)
