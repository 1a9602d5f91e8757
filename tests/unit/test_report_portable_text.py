"""benchmark.portable: how secrets and absolute paths are rewritten in report text."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.portable import (
    portable_doc,
    portable_path,
    portable_text,
    portable_tracking_uri,
    sqlite_file,
)


@pytest.fixture(autouse=True)
def roots(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROREC_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setenv("REPROREC_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a shlex-quoted override with a redacted or a clear password: the variable, quoted for the shell
        (
            "reprorec -m 'tracking.uri=postgresql+psycopg2://u:***@127.0.0.1/db' model=ease",
            'reprorec -m tracking.uri="$MLFLOW_TRACKING_URI" model=ease',
        ),
        (
            "reprorec-report --tracking-uri postgresql://u:pw@h/db --out x",
            'reprorec-report --tracking-uri "$MLFLOW_TRACKING_URI" --out x',
        ),
        (
            "tuner.storage=postgresql://opt:pw@h:5432/optuna",
            "tuner.storage=postgresql://opt:***@h:5432/optuna",
        ),
        (
            "tracking.uri=sqlite:////work/dacrema-runs/clone/mlflow.db progress=false",
            "tracking.uri=sqlite:///<store>/mlflow.db progress=false",
        ),
        ("file:///srv/mlruns", "<store>/mlruns"),
        (
            '{"file": "/work/shared/datasets/movielens-100k/u.data"}',
            '{"file": "<mirror>/movielens-100k/u.data"}',
        ),
        # the cache of another machine, recognised by the data layer's layout (archive extracted)
        (
            "/root/.cache/reprorec/ml-100k/archives/ml-100k.zip.d/ml-100k/u.data",
            "<cache>/ml-100k/archives/ml-100k.zip.d/ml-100k/u.data",
        ),
        ("dataset.path=/home/bob/data/ratings.csv", "dataset.path=<local>/ratings.csv"),
    ],
)
def test_secrets_and_paths_are_rewritten(text, expected):
    assert portable_text(text) == expected
    assert portable_text(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "DCG@k / IDCG@k with binary relevance and log2(rank + 1) discount",
        "hits in the top k / k; n/a; train+validation; 1/2",
        "a/b ./c ../d ~/e $HOME/f ${HOME}/g <mirror>/h",
        "http://127.0.0.1:5555/#/experiments/1/runs/abc?workflowType=machine_learning",
        "sqlite:///mlflow.db sqlite:///:memory: sqlite://",
        "http://user@host:5000/api",  # a user without a password is no secret
    ],
)
def test_text_without_secret_or_absolute_path_is_unchanged(text):
    assert portable_text(text) == text


def test_mirror_cache_and_working_directory_roots(tmp_path):
    assert portable_path(str(tmp_path / "mirror" / "x" / "y.csv")) == "<mirror>/x/y.csv"
    assert portable_path(str(tmp_path / "cache" / "splits" / "f" / "test.npz")) == "<cache>/splits/f/test.npz"
    inside = str(tmp_path / "work" / "mlflow.db")
    assert portable_path(inside) == "<local>/mlflow.db"  # no cwd: independent of where it runs
    assert portable_path(inside, cwd=tmp_path) == "work/mlflow.db"
    assert portable_path(inside, cwd=Path("/")) == "<local>/mlflow.db"  # '/' says nothing portable
    assert portable_path(inside, placeholder="<store>") == "<store>/mlflow.db"
    assert portable_path("relative/file.csv") == "relative/file.csv"


def test_tracking_uri_names(tmp_path):
    db = tmp_path / "mlflow.db"
    assert portable_tracking_uri(f"sqlite:///{db}", cwd=tmp_path) == "sqlite:///mlflow.db"
    assert portable_tracking_uri(f"sqlite:///{db}", cwd=tmp_path / "sub") == "sqlite:///<store>/mlflow.db"
    assert portable_tracking_uri(str(db)) == "<store>/mlflow.db"
    assert portable_tracking_uri(f"sqlite:///{db}", from_env=True) == "$MLFLOW_TRACKING_URI"
    assert portable_tracking_uri("postgresql+psycopg2://u:s3cr3t@127.0.0.1/db") == "$MLFLOW_TRACKING_URI"
    assert portable_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_sqlite_file():
    assert sqlite_file("sqlite:///mlflow.db") == "mlflow.db"
    assert sqlite_file("sqlite:////abs/mlflow.db?mode=ro") == "/abs/mlflow.db"
    assert sqlite_file("sqlite:///:memory:") is None and sqlite_file("sqlite://") is None
    assert sqlite_file("postgresql://h/db") is None


def test_portable_doc_rewrites_every_string_and_keeps_the_rest():
    doc = {"a": ["/home/x/f.csv", 1.5, None, True], "/tmp/k": {"b": "postgresql://u:pw@h/db"}}
    assert portable_doc(doc) == {
        "a": ["<local>/f.csv", 1.5, None, True],
        "<local>/k": {"b": "postgresql://u:***@h/db"},
    }
