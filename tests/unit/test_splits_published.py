"""Published split readers on tiny hand-written files in each format (no real data)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from benchmark.errors import DataError, LeakageError
from benchmark.splits.published import (
    read_cmn,
    read_cvae,
    read_mcrec,
    read_neumf,
    read_spectralcf,
    read_token_lines,
    read_user_lists,
)


def _pairs(im) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    f = im.to_frame(external_ids=True)
    return sorted(zip(f["user"].tolist(), f["item"].tolist()))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_token_lines_counts_lines_and_tokens_with_or_without_final_newline(tmp_path: Path) -> None:
    values, line, n = read_token_lines(_write(tmp_path / "a", "3 1 2\n\n7\t8 \r\n9"))
    assert values.tolist() == [3, 1, 2, 7, 8, 9]
    assert line.tolist() == [0, 0, 0, 2, 2, 3]
    assert n == 4


def test_mcrec_union_id_space_and_counts(tmp_path: Path) -> None:
    train = _write(tmp_path / "x.train.rating", "1\t10\t5\n1\t11\t3\n2\t10\t4\n")
    test = _write(tmp_path / "x.test.rating", "1 12\n3 10 11\n")
    split = read_mcrec(train, test, name="tiny")
    assert split.train.user_ids.tolist() == [1, 2, 3]  # user 3 occurs only in test
    assert split.train.item_ids.tolist() == [10, 11, 12]
    assert _pairs(split.train) == [(1, 10), (1, 11), (2, 10)]
    assert _pairs(split.test) == [(1, 12), (3, 10), (3, 11)]
    assert split.params["n_users_without_train"] == 1 and split.params["n_users_without_test"] == 1


def test_spectralcf_lines_with_trailing_spaces(tmp_path: Path) -> None:
    train = _write(tmp_path / "train_users.dat", "0 0 4 6 \n1 53 \n")
    test = _write(tmp_path / "test_users.dat", "0 7 \n")
    split = read_spectralcf(train, test)
    assert (split.train.nnz, split.test.nnz) == (4, 1)
    assert _pairs(split.test) == [(0, 7)]


def test_cvae_user_is_the_line_number_and_empty_test_lines_keep_the_user(tmp_path: Path) -> None:
    train = _write(tmp_path / "cf-train-1-users.dat", "1 5\n1 3\n1 0\n")
    test = _write(tmp_path / "cf-test-1-users.dat", "2 0 1\n0\n1 9\n")
    split = read_cvae(train, test)
    assert split.train.user_ids.tolist() == [0, 1, 2]
    assert _pairs(split.test) == [(0, 0), (0, 1), (2, 9)]
    assert split.params["n_users_without_test"] == 1


def test_cvae_wrong_count_names_file_and_line(tmp_path: Path) -> None:
    bad = _write(tmp_path / "cf-test-1-users.dat", "2 0 1\n3 4 5\n")
    with pytest.raises(DataError, match=r"cf-test-1-users\.dat:2.*count"):
        read_user_lists(bad, layout="count")


def test_non_integer_token_names_file_and_line(tmp_path: Path) -> None:
    bad = _write(tmp_path / "train_users.dat", "0 1 2\n1 x3 4\n")
    with pytest.raises(DataError, match=r"train_users\.dat:2.*x3"):
        read_user_lists(bad, layout="user")


def test_duplicate_pair_in_one_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="duplicate"):
        read_user_lists(_write(tmp_path / "d.dat", "0 1 1\n"), layout="user")


def test_train_test_overlap_is_refused(tmp_path: Path) -> None:
    train = _write(tmp_path / "tr", "0 1 2\n")
    test = _write(tmp_path / "te", "0 2\n")
    with pytest.raises(LeakageError, match="share 1"):
        read_spectralcf(train, test)


def _neumf_files(tmp_path: Path, negatives: str) -> tuple[Path, Path, Path]:
    train = tmp_path / "ml.train.rating.gz"
    with gzip.open(train, "wt") as fh:
        fh.write("0\t0\t5\t0\n0\t1\t3\t0\n1\t1\t4\t0\n")
    test = _write(tmp_path / "ml.test.rating", "0\t2\t4\t978\n1\t3\t5\t979\n")
    neg = _write(tmp_path / "ml.test.negative", negatives)
    return train, test, neg


def test_neumf_negatives_become_candidates(tmp_path: Path) -> None:
    split = read_neumf(*_neumf_files(tmp_path, "(0,2)\t3\t4\n(1,3)\t0\t2\n"))
    assert split.test_candidates is not None
    rows = [sorted(split.test_candidates[u].indices.tolist()) for u in range(2)]
    assert rows == [[3, 4], [0, 2]]
    assert split.test.timestamps is None and split.test.ratings is not None
    assert split.params["n_candidates"] == 4 and split.params["n_candidates_dropped"] == 0


def test_neumf_negative_equal_to_the_positive_is_dropped_or_refused(tmp_path: Path) -> None:
    # user 0's list names its own test item 2, user 1's its train item 1
    files = _neumf_files(tmp_path, "(0,2)\t3\t2\n(1,3)\t1\t0\n")
    with pytest.warns(RuntimeWarning, match="2 candidates"):
        split = read_neumf(*files)
    assert split.params["n_candidates_dropped"] == 2
    assert split.test_candidates is not None
    assert [split.test_candidates[u].indices.tolist() for u in range(2)] == [[3], [0]]
    with pytest.raises(LeakageError, match="2 candidates"):
        read_neumf(*files, on_dirty_candidates="error")


def test_neumf_head_not_in_the_test_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"ml\.test\.negative:2"):
        read_neumf(*_neumf_files(tmp_path, "(0,2)\t3\n(1,4)\t0\n"))


def test_cmn_npz_test_dict_and_train_rows(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    test_data = {0: (np.int64(3), [1, 4]), 1: (np.int64(0), [4, 3])}
    obj = np.empty((), dtype=object)
    obj[()] = test_data
    np.savez(path, train_data=np.array([[0, 0], [0, 1], [1, 2]], dtype=np.uint32), test_data=obj)
    with pytest.warns(RuntimeWarning, match="1 candidates"):  # user 0's negative 1 is a train item
        split = read_cmn(path)
    assert _pairs(split.test) == [(0, 3), (1, 0)]
    assert split.test_candidates is not None
    assert [split.test_candidates[u].indices.tolist() for u in range(2)] == [[4], [3, 4]]
    assert split.params["n_negatives_per_user"] == [2]
    assert pickle.loads(pickle.dumps(split.params)) == split.params
