"""Bad input is refused before any work, with an error naming the file, field and value (issue 15).

Each test fails on the code before the fix: a split without test users "finished" with NaN
metrics, ``inf`` ratings were accepted, a mirror file changed in place with size and mtime kept was
accepted on a remembered hash, a corrupt store failed with a bare ``DatabaseError``, an ill-typed
hyperparameter failed after the data load (leaving a FAILED run), an offline sweep failed every
cell separately with ``urlopen error``, ``reprorec-data verify`` exited 0 with a file missing,
and logged file records held absolute paths of the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import data as data_cli
from benchmark.data.datasets import Resource
from benchmark.data.fetch import locate_resource
from benchmark.data.interactions import InteractionMatrix
from benchmark.data.loading import load_dataset
from benchmark.data.parsers import read_delimited
from benchmark.data.preprocess import preprocess
from benchmark.errors import ChecksumError, ConfigError, DataError, ReproRecError
from benchmark.preflight import ensure_data
from benchmark.splits.make import SplitConfig, make_split
from benchmark.tracking.mlflow_store import Tracker
from tests.unit.test_data_fetch import register, sha
from tests.unit.test_sweep import FAST, reprorec, work  # noqa: F401  (fixture)

GOOD = b"1\t10\t5\n2\t10\t3\n2\t11\t4\n"


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A toy dataset with a mirrored ratings file and a downloadable side file; (mirror, cache)."""
    mirror, cache, up = tmp_path / "mirror", tmp_path / "cache", tmp_path / "upstream"
    for d in (mirror, cache, up):
        d.mkdir()
    (mirror / "toy").mkdir()
    (mirror / "toy" / "r.tsv").write_bytes(GOOD)
    side = b"side file\n"
    (up / "side.txt").write_bytes(side)
    register(
        monkeypatch,
        {
            "ratings": Resource(mirror="toy/r.tsv", mirror_sha256=sha(GOOD)),
            "side": Resource(urls=((up / "side.txt").as_uri(),), sha256=sha(side)),
        },
    )
    monkeypatch.setenv("REPROREC_MIRROR", str(mirror))
    monkeypatch.setenv("REPROREC_CACHE", str(cache))
    monkeypatch.delenv("REPROREC_OFFLINE", raising=False)
    return mirror, cache


# ---------------------------------------------------------------------------------------------- data
def test_split_without_test_users_is_refused_before_fitting_and_not_cached(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 30, 300), rng.integers(0, 40, 300)
    frame = pd.DataFrame({"user": users, "item": items}).drop_duplicates()
    data = InteractionMatrix.from_frame(frame, name="d")
    # every user keeps at least 1,000 training interactions: nobody can hold one out
    cfg = SplitConfig(
        name="nothing_held_out",
        splitter="random_holdout_per_user",
        params={"test_fraction": 0.2, "min_train": 1000},
    )
    with pytest.raises(DataError, match=r"nothing_held_out.*0 test users") as err:
        make_split(data, cfg, dataset="d", seed=0, cache_dir=tmp_path)
    assert err.value.field == "split.test"
    assert not any(p.is_file() for p in tmp_path.rglob("*")), "a refused split must not be cached"


@pytest.mark.parametrize("value", ["inf", "-inf", "1e999"])
def test_infinite_rating_is_refused_like_nan_naming_line_field_and_value(tmp_path: Path, value: str) -> None:
    path = tmp_path / "r.tsv"
    path.write_text(f"1\t10\t5\n2\t11\t{value}\n")
    with pytest.raises(DataError) as err:
        read_delimited(path, sep="\t", names=["user", "item", "rating"])
    assert err.value.line == 2 and err.value.field == "rating" and err.value.value == value
    assert "infinite" in str(err.value) and "r.tsv" in str(err.value)


def test_rating_beyond_float32_is_refused_in_preprocessing() -> None:
    frame = pd.DataFrame({"user": [0, 1], "item": [0, 1], "rating": [4.0, 1e39]})
    with pytest.raises(DataError, match=r"out-of-range.*row 1") as err:
        preprocess(frame, None, source="frame.csv")
    assert err.value.field == "rating" and err.value.value == 1e39


def test_mirror_file_changed_in_place_with_size_and_mtime_kept_is_refused(toy) -> None:
    mirror, _ = toy
    path = mirror / "toy" / "r.tsv"
    assert locate_resource("toy", "ratings").origin == "mirror"  # verified once
    st = path.stat()
    path.write_bytes(GOOD.replace(b"5", b"1"))  # same size: bit rot, `cp -p`
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(ChecksumError):
        locate_resource("toy", "ratings")


def test_logged_file_records_name_mirror_cache_and_working_dir_portably(
    toy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_dataset("toy")
    assert [f["file"] for f in loaded.source.files] == ["<mirror>/toy/r.tsv"]
    assert locate_resource("toy", "side").to_dict()["file"] == "<cache>/toy/side/side.txt"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.csv").write_text("user,item\n1,2\n2,3\n")
    own = load_dataset("file", options={"path": str(tmp_path / "mine.csv")})
    assert [f["file"] for f in own.source.files] == ["mine.csv"]
    assert str(tmp_path) not in repr(own.source.to_dict()) + repr(loaded.source.to_dict())


# ---------------------------------------------------------------------------------------------- offline
def test_offline_first_use_fails_once_with_url_cache_path_mirror_and_fetch(toy, monkeypatch) -> None:
    _, cache = toy
    monkeypatch.setenv("REPROREC_OFFLINE", "1")
    with pytest.raises(ReproRecError) as err:
        ensure_data("toy", ("side",))
    msg = str(err.value)
    assert "side.txt" in msg and "sha256" in msg  # what to download
    assert str(cache / "toy" / "side" / "side.txt") in msg  # where to put it
    assert "reprorec-data fetch toy" in msg
    monkeypatch.delenv("REPROREC_OFFLINE")
    ensure_data("toy", ("side",))  # online: fetched once, verified
    assert (cache / "toy" / "side" / "side.txt").is_file()


def test_preflight_does_not_hash_files_that_are_already_local(toy, monkeypatch) -> None:
    """Cells verify what they read; the sweep's check only looks for presence (no double hashing)."""
    from benchmark.data import fetch

    calls: list[str] = []
    monkeypatch.setattr(fetch, "sha256_file", lambda p: calls.append(str(p)) or "")
    ensure_data("toy")  # its variant's file is in the mirror
    assert calls == []


def test_data_fetch_fails_loudly_when_a_resource_cannot_be_fetched(toy, monkeypatch, capsys) -> None:
    monkeypatch.setenv("REPROREC_OFFLINE", "1")
    assert data_cli.main(["fetch", "toy"]) == 1
    err = capsys.readouterr().err
    assert "1 of 2 resources of toy were not fetched: side" in err


def test_data_verify_exits_1_when_a_file_is_missing(toy, capsys) -> None:
    assert data_cli.main(["verify", "toy"]) == 1  # side was never fetched
    err = capsys.readouterr().err
    assert "missing: side" in err and "reprorec-data fetch toy" in err
    assert data_cli.main(["fetch", "toy"]) == 0
    assert data_cli.main(["verify", "toy"]) == 0


def test_offline_sweep_stops_once_before_any_store_with_the_fix(work: Path) -> None:  # noqa: F811
    env = {"REPROREC_OFFLINE": "1", "REPROREC_CACHE": str(work / "cache"), "REPROREC_MIRROR": ""}
    proc = reprorec(work, "-m", "model=toppop,ease", "dataset=ml-100k", *FAST[1:], env=env, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("sweep not started") == 1
    assert "dataset 'ml-100k' is needed by this sweep" in proc.stderr
    assert "files.grouplens.org" in proc.stderr and "reprorec-data fetch ml-100k" in proc.stderr
    assert str(work / "cache" / "ml-100k" / "archives" / "ml-100k.zip") in proc.stderr
    assert "set REPROREC_MIRROR to a dataset mirror folder holding movielens-100k/u.data" in proc.stderr
    assert "urlopen error" not in proc.stderr
    assert not (work / "mlflow.db").exists(), "nothing is created before the checks pass"


# ---------------------------------------------------------------------------------------------- config
def test_ill_typed_hyperparameter_stops_the_sweep_before_any_data_or_run(work: Path) -> None:  # noqa: F811
    proc = reprorec(work, "-m", "model=ease", "seed=0,1", "model.params.l2=abc", *FAST, check=False)
    assert proc.returncode == 2
    assert "conf/model/ease.yaml: model.params: EASE: l2='abc'" in proc.stderr
    assert not (work / "mlflow.db").exists() and not (work / "optuna.db").exists()


def test_out_of_range_hyperparameter_in_one_cell_stops_the_whole_sweep(work: Path) -> None:  # noqa: F811
    proc = reprorec(work, "-m", "model=ease", "model.params.l2=-1", *FAST, check=False)
    assert proc.returncode == 2 and "l2=-1" in proc.stderr and "expected float in" in proc.stderr


def test_bad_pruner_threads_or_credentialed_report_url_stop_the_sweep_before_any_store(work: Path) -> None:  # noqa: F811
    proc = reprorec(work, "-m", "model=ease", "tuner.pruner=asha", *FAST, check=False)
    assert proc.returncode == 2 and "tuner.pruner='asha' is not one of ['hyperband', 'median'" in proc.stderr
    proc = reprorec(work, "-m", "model=ease", "threads=0", *FAST, check=False)
    assert proc.returncode == 2 and "threads=0 must be >= 1" in proc.stderr
    proc = reprorec(work, "-m", "model=ease", "report.url=https://bob:pw@example.org/r", *FAST, check=False)
    assert proc.returncode == 2 and "report.url='https://bob:***@example.org/r'" in proc.stderr
    assert "pw@" not in proc.stderr
    assert not (work / "mlflow.db").exists() and not (work / "optuna.db").exists()


# ---------------------------------------------------------------------------------------------- stores
def test_corrupt_store_error_names_the_store(work: Path) -> None:  # noqa: F811
    (work / "broken.db").write_bytes(os.urandom(4096))
    proc = reprorec(work, "-m", "model=toppop", *FAST, "tracking.uri=sqlite:///broken.db", check=False)
    assert proc.returncode == 2
    assert "broken.db is not usable: the sqlite file broken.db: DatabaseError" in proc.stderr


def test_read_only_store_error_names_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "ro.db"
    Tracker(f"sqlite:///{db}").ensure_experiment("x")  # a complete store
    real_access = os.access
    # root writes read-only files anyway; the check under test is the one made for other users
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == db else real_access(p, mode))
    with pytest.raises(ConfigError, match=r"ro\.db is not usable.*ro\.db is read-only"):
        Tracker(f"sqlite:///{db}").ensure_experiment("x")
