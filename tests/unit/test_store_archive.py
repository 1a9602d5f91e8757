"""Store archives (``reprorec-store export / import``): a real sweep's finished cells, trials and
sweep carried to a fresh store, where the report is the same, a rerun of the sweep runs nothing, and
nothing of the exporting machine (paths, leases) travels along."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmark.errors import DataError
from benchmark.reporting import generate_report
from benchmark.reporting.archive import MANIFEST, METRICS, export_store, import_archive, read_manifest
from benchmark.tracking import schema as S
from tests.unit.test_sweep import FAST, REPO, TINY, TOY_MODELS, reprorec

SWEEP = ["-m", "model=ease,curve", "tuner.n_trials=3", *FAST]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder with a finished two-model sweep (one iterative) in ``mlflow.db``."""
    work = tmp_path_factory.mktemp("archive")
    conf = work / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "dataset" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    cls, space = TOY_MODELS["curve"]
    (conf / "model" / "curve.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "curve",
                "cls": f"tests.unit.test_tuning.{cls}",
                "family": "neural",
                "params": {"epochs": 30, "peak": 12},
                "search_space": space,
            }
        )
    )
    reprorec(work, *SWEEP)
    return work


def _client(db: Path) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{db}")


def _runs(db: Path, run_type: str) -> list[Any]:
    c = _client(db)
    exp = c.get_experiment_by_name("reprorec")
    filt = f"tags.`{S.RUN_TYPE}` = '{run_type}'"
    return list(c.search_runs([exp.experiment_id], filt, max_results=1000))


def _origin(run: Any) -> str:
    return str(run.data.tags.get(S.ORIGIN_RUN_ID, run.info.run_id))


def _report_id(db: Path, out: Path) -> str:
    generate_report(f"sqlite:///{db}", out_dir=out)
    return str(json.loads((out / "report.json").read_text(encoding="utf-8"))["report_id"])


def test_an_imported_store_gives_the_same_report_and_a_rerun_runs_nothing(
    swept: Path, tmp_path: Path
) -> None:
    src = swept / "mlflow.db"
    summary = export_store(f"sqlite:///{src}", tmp_path / "arch")
    assert summary.runs == {"sweep": 1, "cell": 2, "trial": 6}
    target = tmp_path / "b" / "mlflow.db"
    imported = import_archive(tmp_path / "arch", f"sqlite:///{target}")
    assert imported.runs == summary.runs and imported.metric_points == summary.metric_points > 0

    # every run with its status, times, params, tags and full metric history, under its first id
    a_trials = {t.info.run_id: t for t in _runs(src, S.RUN_TYPE_TRIAL)}
    b_trials = {_origin(t): t for t in _runs(target, S.RUN_TYPE_TRIAL)}
    assert set(a_trials) == set(b_trials)
    ca, cb = _client(src), _client(target)
    curve_trials = [i for i, t in a_trials.items() if t.data.tags[S.MODEL] == "curve"]
    assert curve_trials
    for rid in curve_trials:
        a, b = a_trials[rid], b_trials[rid]
        assert (a.info.status, a.info.start_time, a.info.end_time) == (
            b.info.status,
            b.info.start_time,
            b.info.end_time,
        )
        assert a.data.params == b.data.params
        key = "val/ndcg_at_10"
        hist_a = [(m.step, m.timestamp, m.value) for m in ca.get_metric_history(rid, key)]
        hist_b = [(m.step, m.timestamp, m.value) for m in cb.get_metric_history(b.info.run_id, key)]
        assert hist_a == hist_b and len(hist_a) > 1  # one point per validated epoch
    # trials hang under their imported cell, cells under the imported sweep
    b_cells = {c.info.run_id: c for c in _runs(target, S.RUN_TYPE_CELL)}
    (b_sweep,) = _runs(target, S.RUN_TYPE_SWEEP)
    assert {c.data.tags[S.PARENT_RUN_ID] for c in b_cells.values()} == {b_sweep.info.run_id}
    assert {t.data.tags[S.PARENT_RUN_ID] for t in b_trials.values()} == set(b_cells)

    # the report made from the archive is the report made from the original store
    assert _report_id(target, tmp_path / "rb") == _report_id(src, tmp_path / "ra")

    # the same sweep on the imported store skips every cell: same cell keys, FINISHED
    proc = reprorec(swept, *SWEEP, f"tracking.uri=sqlite:///{target}")
    assert "skip" in (proc.stdout + proc.stderr).lower()
    assert len(_runs(target, S.RUN_TYPE_CELL)) == 2 and len(_runs(target, S.RUN_TYPE_TRIAL)) == 6


def test_an_interrupted_cell_goes_on_from_its_archived_trials(swept: Path, tmp_path: Path) -> None:
    """SIGTERM after two trials: the archive carries the cell's study, and the sweep run on the
    imported store resumes it (the two trials are not run again) to the uninterrupted result."""
    import optuna

    work = tmp_path / "w"
    shutil.copytree(swept / "conf", work / "conf")
    args = ["-m", "model=curve", "tuner.n_trials=3", *FAST]
    proc = reprorec(work, *args, env={"REPROREC_FAULT": "tuning.logged@2:TERM"}, check=False)
    assert proc.returncode == 143
    exported = export_store(f"sqlite:///{work / 'mlflow.db'}", tmp_path / "arch")
    assert exported.runs == {} and exported.studies == 1  # no FINISHED cell yet: only its study
    target = tmp_path / "t" / "mlflow.db"
    imported = import_archive(tmp_path / "arch", f"sqlite:///{target}")
    assert imported.studies == 1 and imported.study_trials >= 2

    reprorec(work, *args, f"tracking.uri=sqlite:///{target}")
    (cell,) = _runs(target, S.RUN_TYPE_CELL)
    (ref,) = [c for c in _runs(swept / "mlflow.db", S.RUN_TYPE_CELL) if c.data.tags[S.MODEL] == "curve"]
    assert cell.info.status == "FINISHED" and cell.data.tags[S.CELL_KEY] == ref.data.tags[S.CELL_KEY]
    test = {k: v for k, v in cell.data.metrics.items() if k.startswith(S.TEST_PREFIX)}
    assert test == {k: v for k, v in ref.data.metrics.items() if k.startswith(S.TEST_PREFIX)}
    assert {k: v for k, v in cell.data.params.items() if k.startswith("model.")} == {
        k: v for k, v in ref.data.params.items() if k.startswith("model.")
    }
    # the archived trials were carried, not rerun: same start times; one trial ran here
    study = optuna.load_study(
        study_name=cell.data.tags[S.CELL_KEY], storage=f"sqlite:///{target.parent / 'optuna.db'}"
    )
    archived = json.loads((tmp_path / "arch" / "studies.json").read_text(encoding="utf-8"))[0]["trials"]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3
    for t in archived:
        assert study.trials[t["number"]].datetime_start.isoformat() == t["datetime_start"]


def test_import_is_idempotent_and_redoes_a_half_imported_run(swept: Path, tmp_path: Path) -> None:
    export_store(f"sqlite:///{swept / 'mlflow.db'}", tmp_path / "arch")
    target = tmp_path / "b.db"
    first = import_archive(tmp_path / "arch", f"sqlite:///{target}")
    again = import_archive(tmp_path / "arch", f"sqlite:///{target}")
    assert again.runs == {} and again.already == sum(first.runs.values())

    # a crash between creating a trial run and ending it leaves it RUNNING without the complete tag
    c = _client(target)
    trial = _runs(target, S.RUN_TYPE_TRIAL)[0]
    c.delete_tag(trial.info.run_id, S.IMPORT_COMPLETE)
    c.update_run(trial.info.run_id, status="RUNNING")
    redo = import_archive(tmp_path / "arch", f"sqlite:///{target}")
    assert redo.runs == {"trial": 1}
    trials = _runs(target, S.RUN_TYPE_TRIAL)
    assert len(trials) == 6 and trial.info.run_id not in {t.info.run_id for t in trials}
    assert all(t.data.tags[S.IMPORT_COMPLETE] == "true" for t in trials)


def test_a_cell_already_finished_in_the_target_is_not_imported_twice(swept: Path, tmp_path: Path) -> None:
    src = swept / "mlflow.db"
    export_store(f"sqlite:///{src}", tmp_path / "arch")
    # into the store it came from: every run is there already
    copy = tmp_path / "same.db"
    shutil.copyfile(src, copy)
    shutil.copytree(swept / "mlruns", tmp_path / "mlruns")
    out = import_archive(tmp_path / "arch", f"sqlite:///{copy}")
    assert out.runs == {} and out.already == 9
    # into a store where another run of one cell key FINISHED (the same cell run elsewhere)
    other = tmp_path / "other.db"
    manifest = read_manifest(tmp_path / "arch")
    cell = next(e for e in manifest["runs"] if e["type"] == S.RUN_TYPE_CELL)
    c = _client(other)
    exp = c.create_experiment("reprorec")
    run = c.create_run(exp, tags={S.RUN_TYPE: S.RUN_TYPE_CELL, S.CELL_KEY: cell["tags"][S.CELL_KEY]})
    c.set_terminated(run.info.run_id, "FINISHED")
    out = import_archive(tmp_path / "arch", f"sqlite:///{other}")
    assert out.runs == {"sweep": 1, "cell": 1, "trial": 3}
    assert len(out.skipped) == 1 and "FINISHED run of its cell key" in out.skipped[0]
    assert len(_runs(other, S.RUN_TYPE_CELL)) == 2 and len(_runs(other, S.RUN_TYPE_TRIAL)) == 3


def test_the_archive_names_nothing_of_the_exporting_machine(swept: Path, tmp_path: Path) -> None:
    export_store(f"sqlite:///{swept / 'mlflow.db'}", tmp_path / "arch")
    arch = tmp_path / "arch"
    manifest = read_manifest(arch)
    texts = [p.read_text(encoding="utf-8") for p in arch.rglob("*") if p.suffix in (".json", ".yaml", ".csv")]
    machine = {str(swept), str(Path.home()), str(tmp_path)}
    for text in texts:
        assert not any(m in text for m in machine)
    assert all(S.OWNER not in e["tags"] and "mlflow.user" not in e["tags"] for e in manifest["runs"])
    assert not list(arch.rglob("recommendations.parquet"))
    assert manifest["left_out"] == ["recommendations.parquet"]
    # the sweep's cell list names the cells by the ids the archive gives them
    (sweep,) = [e for e in manifest["runs"] if e["type"] == S.RUN_TYPE_SWEEP]
    listed = json.loads((arch / "artifacts" / sweep["id"] / S.ART_SWEEP_CELLS).read_text(encoding="utf-8"))
    cells = {e["id"] for e in manifest["runs"] if e["type"] == S.RUN_TYPE_CELL}
    assert {e["run_id"] for e in listed} == cells


def test_a_damaged_archive_is_refused_naming_the_file(swept: Path, tmp_path: Path) -> None:
    arch = tmp_path / "arch"
    export_store(f"sqlite:///{swept / 'mlflow.db'}", arch)
    target = tmp_path / "t.db"
    data = bytearray((arch / METRICS).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (arch / METRICS).write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"sha256.*metrics\.parquet"):
        import_archive(arch, f"sqlite:///{target}")
    assert not target.exists()  # refused before the store is touched

    manifest = json.loads((arch / MANIFEST).read_text(encoding="utf-8"))
    manifest["version"] = 99
    (arch / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(DataError, match=r"version.*archive\.json.*version.*99"):
        read_manifest(arch)
    with pytest.raises(DataError, match=r"no archive\.json"):
        read_manifest(tmp_path)


def test_cli_exports_and_imports(swept: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmark.cli.store import main

    db = str(swept / "mlflow.db")
    assert main(["export", "--tracking-uri", db, "--out", str(tmp_path / "a")]) == 0
    assert "exported 1 sweep runs, 2 cell runs, 6 trial runs" in capsys.readouterr().out
    assert main(["import", str(tmp_path / "a"), "--tracking-uri", str(tmp_path / "x.db")]) == 0
    assert "imported 1 sweep runs, 2 cell runs, 6 trial runs" in capsys.readouterr().out
    assert main(["export", "--tracking-uri", str(tmp_path / "none.db"), "--out", str(tmp_path / "n")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "n").exists()
