"""Config composition (schemas) and single cells run in-process: determinism, early-stopped refit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmark.config import Config
from benchmark.tracking import schema as S
from tests.unit.test_sweep import FAST, REPO, work  # noqa: F401  (fixture)


def compose(conf: Path, *overrides: str) -> Config:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from benchmark.cli.sweep import to_config
    from benchmark.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return to_config(hydra_compose("config", overrides=list(overrides)))


def test_default_config_composes_to_the_documented_protocol() -> None:
    cfg = compose(REPO / "conf")
    assert (cfg.dataset.name, cfg.split.name, cfg.model.name) == (
        "ml-100k",
        "random_per_user_80_20",
        "toppop",
    )
    assert (cfg.tuner.n_trials, cfg.tuner.n_startup_trials, cfg.tuner.sampler) == (50, 15, "tpe")
    assert (cfg.tuner.validate_every, cfg.tuner.patience, cfg.tuner.metric) == (5, 5, "ndcg_at_10")
    assert cfg.evaluation.cutoffs == [5, 10, 20, 50] and cfg.tracking.uri is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tuner.n_trail=3", "Key 'n_trail' not in 'TunerConfig'"),
        ("tuner.n_trials=many", "Value 'many' of type 'str' could not be converted to Integer"),
        ("evaluation.cutoffs=[5,ten]", "evaluation.cutoffs"),
        ("tracking.skip_finished=maybe", "tracking.skip_finished"),
        ("seeed=1", "Could not override 'seeed'"),
        ("+seeed=1", "unknown config key 'seeed'"),
        ("+tuner.n_trial=1", "unknown config key 'tuner.n_trial'"),
    ],
)
def test_misspelt_key_or_wrong_type_fails_at_compose_time(override: str, message: str) -> None:
    with pytest.raises(Exception) as err:
        compose(REPO / "conf", override)
    text = f"{err.value} {err.value.__cause__}"
    assert message in text


def test_bad_key_in_a_group_file_fails_at_compose_time(tmp_path: Path) -> None:
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "tuner" / "typo.yaml").write_text("name: optuna\nn_trails: 10\n")
    with pytest.raises(Exception, match="n_trails"):
        compose(conf, "tuner=typo")


def _cell(work: Path, *overrides: str, uri: str) -> Any:  # noqa: F811
    from benchmark.tuning.cell import run_cell

    cfg = compose(work / "conf", *FAST, f"tracking.uri={uri}", *overrides)
    return run_cell(cfg)


def test_same_cell_same_seed_gives_identical_test_metrics_on_cpu(work: Path) -> None:  # noqa: F811
    a = _cell(work, "model=ease", "tuner.n_trials=3", uri=f"sqlite:///{work / 'a.db'}")
    b = _cell(work, "model=ease", "tuner.n_trials=3", uri=f"sqlite:///{work / 'b.db'}")
    c = _cell(work, "model=ease", "tuner.n_trials=3", "seed=1", uri=f"sqlite:///{work / 'c.db'}")
    assert a.status == b.status == c.status == "finished"
    assert a.cell_key == b.cell_key != c.cell_key
    assert a.test_metrics == b.test_metrics  # exactly equal, not approximately
    assert a.test_metrics != c.test_metrics


def test_refit_trains_for_the_early_stopped_best_epoch(work: Path) -> None:  # noqa: F811
    from mlflow import MlflowClient

    uri = f"sqlite:///{work / 'es.db'}"
    out = _cell(work, "model=curve", "tuner.n_trials=2", "tuner.patience=2", uri=uri)
    assert out.status == "finished", out.error
    client = MlflowClient(uri)
    cell = client.get_run(out.run_id)
    # Curve scores by popularity up to epoch 12, reversed afterwards: validations at 5 and 10 are
    # equal (5 is best, 10 counts as no improvement), 15 is worse -> patience 2 stops at 15.
    assert cell.data.tags[S.BEST_EPOCH] == "5"
    assert cell.data.params["model.epochs"] == "5"  # not the maximum (30) nor the stop epoch (15)
    trials = client.search_runs([cell.info.experiment_id], f"tags.`{S.PARENT_RUN_ID}` = '{out.run_id}'")
    assert len(trials) == 2
    history = client.get_metric_history(trials[0].info.run_id, "val/ndcg_at_10")
    steps = sorted({m.step for m in history})
    assert steps == [5, 10, 15]
    by_step = {m.step: m.value for m in history}
    assert by_step[5] == by_step[10] > by_step[15]


def test_cell_without_validation_part_refuses_to_tune(work: Path) -> None:  # noqa: F811
    conf = work / "conf"
    (conf / "split" / "no_val.yaml").write_text(
        "name: no_val\nsplitter: random_holdout_per_user\nparams: {test_fraction: 0.2}\n"
    )
    out = _cell(work, "model=ease", "split=no_val", uri=f"sqlite:///{work / 'nv.db'}")
    assert out.status == "failed" and "has no validation part" in (out.error or "")


def test_tracking_uri_defaults_to_mlflow_db_in_the_working_directory_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmark.tracking.mlflow_store import default_study_storage, resolve_tracking_uri

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_tracking_uri("sqlite:///runs/x.db") == f"sqlite:///{tmp_path / 'runs' / 'x.db'}"
    assert resolve_tracking_uri("store.db") == f"sqlite:///{tmp_path / 'store.db'}"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////srv/mlflow.db")
    assert resolve_tracking_uri(None) == "sqlite:////srv/mlflow.db"
    assert default_study_storage("sqlite:////srv/mlflow.db") == "sqlite:////srv/optuna.db"
    assert default_study_storage("http://127.0.0.1:5000") == f"sqlite:///{tmp_path / 'optuna.db'}"


def test_protocol_pins_apply_by_name_pattern_under_the_command_line_and_never_over_a_search() -> None:
    dacrema = "experiment=dacrema/mcrec_ml100k"
    cfg = compose(REPO / "conf", dacrema, "model=userknn_dice")
    assert cfg.model.params == {
        "similarity": "dice",
        "neighbourhood": "reverse_knn",
        "weighted_scoring": False,
    }
    model = cfg.model.build()
    assert (model.neighbourhood, model.weighted_scoring) == ("reverse_knn", False)  # type: ignore[attr-defined]
    assert compose(REPO / "conf", dacrema, "model=slim").model.params["top_k_rule"] == "dacrema"
    # an ablation on the command line wins over the protocol's pin
    ablation = compose(REPO / "conf", dacrema, "model=userknn_dice", "+model.params.neighbourhood=knn")
    assert ablation.model.params["neighbourhood"] == "knn"
    from benchmark.config import pins_in_effect

    assert pins_in_effect(ablation) == {"weighted_scoring": False}
    # a searched hyperparameter is never pinned, and models the patterns do not match are untouched
    searched = compose(
        REPO / "conf", dacrema, "model=userknn_dice", "+pinned_params.userknn_dice={shrink: 3}"
    )
    assert "shrink" not in searched.model.params and "shrink" in searched.model.search_space
    assert compose(REPO / "conf", dacrema, "model=ease").model.params == {}
    # outside the Dacrema protocols the textbook defaults hold
    assert compose(REPO / "conf", "model=userknn_dice").model.params == {"similarity": "dice"}
    # the cell key sees the pin: a pinned cell is not the unpinned one
    from benchmark.registry import get_model_spec

    assert get_model_spec("userknn_dice").effective_params()["neighbourhood"] == "knn"
    assert cfg.model.effective_params()["neighbourhood"] == "reverse_knn"


def test_the_sqlite_skip_lookup_answers_what_mlflow_answers(tmp_path: Path) -> None:
    # A skipped rerun reads a sqlite store without MLflow (start-up): same run, same metrics, and
    # KILLED, deleted, other-key and trial runs are never taken for a finished cell.
    from benchmark.tracking.mlflow_store import Tracker, finished_cell_in_sqlite

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri)
    exp = tracker.ensure_experiment("reprorec")
    cell = {S.RUN_TYPE: S.RUN_TYPE_CELL, S.CELL_KEY: "k1"}

    def run(tags: dict[str, str], status: str, start: int, ndcg: float) -> str:
        rid = tracker.start_run(exp, "r", tags=tags, start_time_ms=start)
        tracker.log(rid, metrics={"test/ndcg_at_10": ndcg})
        tracker.end_run(rid, status)
        return rid

    assert finished_cell_in_sqlite(uri, "reprorec", "k1") is None
    old = run(cell, "FINISHED", 1000, 0.1)
    run(cell, "KILLED", 3000, 0.9)
    run({S.RUN_TYPE: S.RUN_TYPE_TRIAL, S.CELL_KEY: "k1"}, "FINISHED", 4000, 0.8)
    run({**cell, S.CELL_KEY: "k2"}, "FINISHED", 5000, 0.7)
    new = run(cell, "FINISHED", 2000, 0.3)
    deleted = run(cell, "FINISHED", 6000, 0.6)
    tracker.client.delete_run(deleted)
    expected = tracker.find_finished_cell(exp, "k1")
    assert expected.info.run_id == new != old
    assert finished_cell_in_sqlite(uri, "reprorec", "k1") == (new, {"test/ndcg_at_10": 0.3})
    assert finished_cell_in_sqlite(uri, "another", "k1") is None
    assert finished_cell_in_sqlite(f"sqlite:///{tmp_path / 'none.db'}", "reprorec", "k1") is None
