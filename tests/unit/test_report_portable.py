"""Reports name stores and files portably and never carry a secret (issue 15, "Credentials in reports").

The store is filled as an older reprorec would have left it: commands logged with a tracking URI
that has a password and absolute paths, a datasheet naming the absolute mirror/cache files that
were read, a hyperparameter holding an absolute path. Every output file of every format must come out
without the password and without any absolute path of this machine.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from benchmark.fingerprint import sha256_json
from benchmark.reporting import ReportInputError, generate_report
from benchmark.reporting.collect import collect_runs
from benchmark.reporting.report import FILES, build_document, render_all, report_command
from benchmark.reporting.stats import CONFIDENCE
from benchmark.reporting.tables import build_leaderboards
from benchmark.tracking import schema as S
from tests.tracking_fixtures import FakeCell, log_sweep, new_sqlite_store

SECRET = "s3cr3tPW"
PG_URI = f"postgresql+psycopg2://u:{SECRET}@127.0.0.1/db"
DASH_SECRET = "d4shPW"
OTHER_MIRROR = "/work/shared/datasets"  # the mirror folder of the machine that ran the cells
# An absolute path of a typical machine: what `grep -rE '/work/|/tmp/|/root/|/home/' reports/` finds.
ABSOLUTE = re.compile(r"(?<![\w.~$<>/-])/(?:work|tmp|root|home|private|var|Users)/")
N = 30


def _leaks(text: str, *forbidden: str) -> list[str]:
    """The forbidden strings and absolute paths found in ``text`` (embedded PNGs left out)."""
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    found = [f for f in forbidden if f in text]
    return found + [text[max(m.start() - 40, 0) : m.end() + 40] for m in ABSOLUTE.finditer(text)]


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Mirror and cache folders of this machine, under tmp_path (which is itself absolute)."""
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    monkeypatch.setenv("REPROREC_MIRROR", str(mirror))
    monkeypatch.setenv("REPROREC_CACHE", str(cache))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return mirror, cache


@pytest.fixture
def leaky_store(tmp_path, env) -> str:
    """A sqlite store in ``tmp_path/store`` whose runs logged a password and absolute paths."""
    mirror, cache = env
    rng = np.random.default_rng(3)
    base = rng.uniform(0.2, 0.6, N)
    cells = [
        FakeCell("toppop", "non-personalised", 0, {"ndcg_at_10": base - 0.05}),
        FakeCell(
            "ease",
            "linear",
            0,
            {"ndcg_at_10": base},
            hyperparameters={"l2": 10.0, "scratch_dir": str(tmp_path / "scratch" / "ease")},
        ),
    ]
    store = tmp_path / "store"
    uri = new_sqlite_store(store)
    command = (
        f"reprorec -m 'tracking.uri={PG_URI}' tuner.storage=postgresql://opt:{SECRET}@127.0.0.1/optuna "
        f"dataset.path={tmp_path / 'data' / 'ratings.csv'} hydra.run.dir=/tmp/bench/outputs"
    )
    _, _, ids = log_sweep(uri, cells, artifact_location=(store / "artifacts").as_uri(), command=command)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    sheet = {
        "users": N,
        "source": {
            "files": [
                {"key": "ratings", "origin": "mirror", "file": str(mirror / "movielens-100k" / "u.data")},
                {"key": "extra", "origin": "mirror", "file": str(mirror / "other" / "items.csv")},
                {"key": "ratings", "origin": "mirror", "file": f"{OTHER_MIRROR}/movielens-100k/u.data"},
                {"key": "split", "origin": "cache", "file": str(cache / "splits" / "abc" / "test.npz")},
            ]
        },
    }
    folder = tmp_path / "sheet" / "data"
    folder.mkdir(parents=True)
    (folder / Path(S.ART_DATASHEET).name).write_text(json.dumps(sheet))
    for rid in ids:  # overwrite the fixture's datasheet artifact, as an older cell logged it
        client.log_artifact(rid, str(folder / Path(S.ART_DATASHEET).name), str(Path(S.ART_DATASHEET).parent))
    return uri


def _content(doc: dict) -> dict:
    """The part of a report.json that its report_id hashes (see build_document)."""
    content = copy.deepcopy(doc)
    for key in ("report_id", "commands", "source", "generated"):
        content.pop(key)
    for t in content["tables"]:
        for r in t["rows"]:
            for p in r["provenance"]:
                p.pop("link")
    return content


def _outputs(out: Path) -> dict[str, str]:
    return {name: (out / name).read_text(encoding="utf-8") for name in FILES}


def test_every_format_is_free_of_passwords_and_absolute_paths(leaky_store, tmp_path, env, monkeypatch):
    mirror, cache = env
    cwd = tmp_path / "elsewhere"  # the store is outside the working directory
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = generate_report(
        leaky_store,
        out_dir=cwd / "reports" / "r",
        cutoffs=(10,),
        metrics=("ndcg",),
        n_resamples=99,
        dashboard_url=f"http://admin:{DASH_SECRET}@127.0.0.1:5555/",
    )
    files = _outputs(out)
    for name, text in files.items():
        assert (
            _leaks(text, SECRET, DASH_SECRET, str(tmp_path), str(mirror), str(cache), OTHER_MIRROR) == []
        ), name
    md = files["README.md"]
    # Portable names instead: the store by file name, the data files below their roots.
    assert "--tracking-uri 'sqlite:///<store>/mlflow.db'" in md
    assert "--out reports/r" in md  # under the working directory: relative
    assert "<mirror>/movielens-100k/u.data" in md and "<mirror>/other/items.csv" in md
    assert "<cache>/splits/abc/test.npz" in md
    assert 'tracking.uri="$MLFLOW_TRACKING_URI"' in md  # the logged sweep's store, without its password
    assert "postgresql://opt:***@127.0.0.1/optuna" in md  # another URL: password redacted
    assert "dataset.path=<local>/ratings.csv" in md
    doc = json.loads(files["report.json"])
    assert doc["source"]["tracking_uri"] == "sqlite:///<store>/mlflow.db"
    assert doc["source"]["dashboard_url"] == "http://admin:***@127.0.0.1:5555/"
    ease = next(r for r in doc["tables"][0]["rows"] if r["model"] == "ease")
    assert ease["provenance"][0]["hyperparameters"]["scratch_dir"] == "<local>/ease"
    assert ease["provenance"][0]["link"].startswith("http://admin:***@127.0.0.1:5555/#/experiments/")


def test_tracking_uri_from_the_environment_is_named_by_the_variable(leaky_store, tmp_path, env, monkeypatch):
    # No PostgreSQL server needed: the runs are collected from the sqlite store, then the report is
    # made as if they had been read from the credentialed server named by MLFLOW_TRACKING_URI.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", PG_URI)
    coll = collect_runs(leaky_store)
    coll.tracking_uri = PG_URI
    tables, refused = build_leaderboards(coll.cells, metrics=("ndcg",), cutoffs=(10,), n_resamples=99)
    cmd = report_command(PG_URI, None, coll.sweep_run_id, tmp_path / "reports" / "r", None)
    assert cmd.startswith('reprorec-report --tracking-uri "$MLFLOW_TRACKING_URI" ')
    assert SECRET not in cmd and "postgresql" not in cmd and str(tmp_path) not in cmd
    settings = {"confidence": CONFIDENCE, "n_resamples": 99}
    doc = build_document(coll, tables, refused, settings=settings, report_cmd=cmd, dashboard_url=None)
    assert doc["source"]["tracking_uri"] == "$MLFLOW_TRACKING_URI"
    for name, text in render_all(doc).items():
        assert _leaks(text, SECRET, str(tmp_path)) == [], name
        assert not re.search(r"postgresql\+psycopg2://[^$]", text), name


def test_a_password_in_an_explicit_uri_is_not_printed_either(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cmd = report_command(PG_URI, "reprorec", None, Path("reports/x"), None, ["--dashboard-url", PG_URI])
    assert SECRET not in cmd and "u:***@127.0.0.1" in cmd  # the dashboard option: redacted
    assert cmd.startswith('reprorec-report --tracking-uri "$MLFLOW_TRACKING_URI" --experiment reprorec')


def test_cli_names_a_store_under_the_working_directory_relative_to_it(
    leaky_store, tmp_path, env, monkeypatch
):
    from benchmark.cli.report import main

    monkeypatch.chdir(tmp_path)
    # the absolute URI, as MLflow's default and `reprorec` hand it over
    args = ["--cutoffs", "10", "--metrics", "ndcg", "--resamples", "99", "--out", str(tmp_path / "r")]
    assert main(["--tracking-uri", leaky_store, *args]) == 0
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["commands"]["report"].startswith("reprorec-report --tracking-uri sqlite:///store/mlflow.db ")
    assert "--out r " in doc["commands"]["report"]
    # the same store from the environment: the command names the variable
    monkeypatch.setenv("MLFLOW_TRACKING_URI", leaky_store)
    assert main(args) == 0
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["commands"]["report"].startswith('reprorec-report --tracking-uri "$MLFLOW_TRACKING_URI" ')
    assert doc["source"]["tracking_uri"] == "$MLFLOW_TRACKING_URI"
    # a bare sqlite path is read as `reprorec tracking.uri=` reads it
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert main(["--tracking-uri", "store/mlflow.db", *args]) == 0
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["commands"]["report"].startswith("reprorec-report --tracking-uri store/mlflow.db ")
    # a sweep exports its URI to the variable for its jobs, then reports: the URI is not "from the
    # environment" unless the caller says so
    monkeypatch.setenv("MLFLOW_TRACKING_URI", leaky_store)
    generate_report(leaky_store, out_dir=tmp_path / "r", cutoffs=(10,), metrics=("ndcg",), n_resamples=99)
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["commands"]["report"].startswith("reprorec-report --tracking-uri sqlite:///store/mlflow.db ")


def test_report_id_covers_the_portable_content_and_not_the_working_directory(
    leaky_store, tmp_path, monkeypatch
):
    ids = []
    for where in ("a", "b/c"):
        cwd = tmp_path / where
        cwd.mkdir(parents=True)
        monkeypatch.chdir(cwd)
        out = generate_report(
            leaky_store, out_dir=cwd / "r", cutoffs=(10,), metrics=("ndcg",), n_resamples=99
        )
        doc = json.loads((out / "report.json").read_text())
        # the id is the sha256 of what the file shows (content part), so a reader can check it
        content = _content(doc)
        assert sha256_json(content) == doc["report_id"]
        ids.append(doc["report_id"])
    assert ids[0] == ids[1]


@pytest.mark.parametrize("form", ["uri", "relative-uri", "bare"])
def test_missing_sqlite_store_is_refused_not_created(tmp_path, monkeypatch, capsys, form):
    from benchmark.cli.report import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    db = tmp_path / "runs" / "mlflow.db"
    db.parent.mkdir()
    given = {"uri": f"sqlite:///{db}", "relative-uri": "sqlite:///runs/mlflow.db", "bare": "runs/mlflow.db"}[
        form
    ]
    assert main(["--tracking-uri", given, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and str(db) in err
    assert not db.exists() and not (tmp_path / "r").exists()
    with pytest.raises(ReportInputError, match=r"does not exist|no such file"):
        generate_report(given, out_dir=tmp_path / "r")
    assert not db.exists()


def test_default_store_missing_in_the_working_directory_is_refused(tmp_path, monkeypatch, capsys):
    from benchmark.cli.report import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["--out", str(tmp_path / "r")]) == 2
    assert str(tmp_path / "mlflow.db") in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no empty mlflow.db left behind


REPO = Path(__file__).resolve().parents[2]
COMMITTED = sorted((REPO / "reports").glob("**/report.json"))


@pytest.mark.parametrize("report", COMMITTED, ids=lambda p: str(p.parent.relative_to(REPO)))
def test_committed_reports_are_portable_and_their_id_covers_what_they_show(report):
    for name in FILES:
        text = (report.parent / name).read_text(encoding="utf-8")
        assert _leaks(text) == [], name
        assert not re.search(r"postgresql\+psycopg2://[^$]", text), name
    doc = json.loads(report.read_text(encoding="utf-8"))
    content = _content(doc)
    assert sha256_json(content) == doc["report_id"]
    assert doc["report_id"] in (report.parent / "CITATION.bib").read_text(encoding="utf-8")
