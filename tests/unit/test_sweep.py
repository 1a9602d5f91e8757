"""The ``reprorec`` sweep end to end: Hydra CLI -> cells -> MLflow store, checked through MlflowClient.

CLI tests run ``python -m benchmark.cli.sweep`` in a subprocess (Hydra keeps global state) inside
``tmp_path``, so the default store ``sqlite:///mlflow.db`` lands there; the config folder is a copy
of ``conf/`` plus a tiny synthetic dataset and the toy models of ``test_tuning.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmark.tracking import schema as S

REPO = Path(__file__).resolve().parents[2]
TINY: dict[str, Any] = {
    "name": "synthetic",
    "preprocessing": {},
    "options": {"n_users": 120, "n_items": 80, "n_interactions": 2400, "seed": 0},
}
FAST = [
    "dataset=tiny",
    "tuner.n_startup_trials=2",
    "evaluation.cutoffs=[5,10]",
    "evaluation.metrics=[precision,recall,ndcg,map]",
    "evaluation.validation_metrics=[ndcg]",
    "progress=false",
    "report.enabled=false",
]
TOY_MODELS = {
    "broken": ("Broken", {"l2": {"type": "float", "low": 1.0, "high": 2.0}}),
    "flaky": ("Flaky", {"x": {"type": "int", "low": 0, "high": 9}}),
    "killer": ("Killer", {"x": {"type": "int", "low": 0, "high": 9}}),
    "curve": ("Curve", {"lr": {"type": "float", "low": 0.01, "high": 1.0, "log": True}}),
    "blurred": ("Blurred", {"lr": {"type": "float", "low": 0.01, "high": 1.0, "log": True}}),
}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A working folder with ``conf/`` (repo config + tiny dataset + toy models)."""
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "dataset" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    for name, (cls, space) in TOY_MODELS.items():
        params = {"epochs": 30, "peak": 12} if name in ("curve", "blurred") else {}
        (conf / "model" / f"{name}.yaml").write_text(
            yaml.safe_dump(
                {
                    "name": name,
                    "cls": f"tests.unit.test_tuning.{cls}",
                    "family": "neural",
                    "params": params,
                    "search_space": space,
                }
            )
        )
    return tmp_path


def reprorec(
    work: Path, *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: int = 400
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full_env.update({"REPROREC_CONF": str(work / "conf"), "PYTHONPATH": str(REPO), **(env or {})})
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark.cli.sweep", *args],
        cwd=work,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"reprorec failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def client(work: Path) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{work / 'mlflow.db'}")


def runs(work: Path, run_type: str) -> list[Any]:
    c = client(work)
    exp = c.get_experiment_by_name("reprorec")
    return list(c.search_runs([exp.experiment_id], f"tags.`{S.RUN_TYPE}` = '{run_type}'", max_results=1000))


def by_model(cells: list[Any]) -> dict[tuple[str, str], list[Any]]:
    out: dict[tuple[str, str], list[Any]] = {}
    for r in cells:
        out.setdefault((r.data.tags[S.MODEL], r.data.tags[S.SEED]), []).append(r)
    return out


def artifacts(work: Path, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for f in client(work).list_artifacts(run_id, path):
        found |= artifacts(work, run_id, f.path) if f.is_dir else {f.path}
    return found


def children(cells: list[Any], trials: list[Any], run_id: str) -> list[Any]:
    return [t for t in trials if t.data.tags.get(S.PARENT_RUN_ID) == run_id]


# ---------------------------------------------------------------------------- the main sweep test
def test_two_models_two_seeds_sweep_logs_hierarchy_tags_metrics_artifacts(work: Path) -> None:
    args = ["-m", "model=toppop,ease", "seed=0,1", "tuner.n_trials=3", *FAST]
    reprorec(work, *args)
    (sweep,) = runs(work, S.RUN_TYPE_SWEEP)
    cells, trials = runs(work, S.RUN_TYPE_CELL), runs(work, S.RUN_TYPE_TRIAL)
    assert sweep.info.status == "FINISHED"
    assert len(cells) == 4 and {r.info.status for r in cells} == {"FINISHED"}
    cell = by_model(cells)
    assert set(cell) == {("toppop", "0"), ("toppop", "1"), ("ease", "0"), ("ease", "1")}
    assert {r.data.tags[S.PARENT_RUN_ID] for r in cells} == {sweep.info.run_id}
    assert cell["ease", "0"][0].info.run_name == "ease · synthetic · seed 0"

    # trials nest under their cell: 3 for EASE, 1 for TopPop (nothing to tune)
    for (model, _), (run,) in cell.items():
        kids = children(cells, trials, run.info.run_id)
        assert len(kids) == (3 if model == "ease" else 1)
        assert all("val/ndcg_at_10" in k.data.metrics for k in kids)
        assert run.data.params[S.PARAM_N_TRIALS] == ("3" if model == "ease" else "1")

    # fingerprints: one split per seed, shared by both models; different across seeds
    for seed in ("0", "1"):
        a, b = cell["toppop", seed][0].data.tags, cell["ease", seed][0].data.tags
        for tag in (S.FP_DATASET, S.FP_TRAIN, S.FP_VALIDATION, S.FP_TEST, S.FP_SPLIT):
            assert a[tag] == b[tag] and len(a[tag]) == 64
    assert cell["ease", "0"][0].data.tags[S.FP_TEST] != cell["ease", "1"][0].data.tags[S.FP_TEST]
    from benchmark.tracking.provenance import git_info

    tags = cell["ease", "0"][0].data.tags
    assert tags[S.GIT_COMMIT] == git_info()["commit"] and tags[S.GIT_DIRTY] in ("true", "false", "none")
    assert (
        len(tags[S.CONFIG_HASH]) == 64
        and tags[S.CONFIG_HASH] != cell["toppop", "0"][0].data.tags[S.CONFIG_HASH]
    )
    assert json.loads(tags[S.VERSIONS])["optuna"] and json.loads(tags[S.HARDWARE])["cpu_count"]
    assert "model=toppop,ease" in tags[S.COMMAND]

    # the best trial's l2 is the refit's l2, and the logged test metrics are those of that refit
    ease0 = cell["ease", "0"][0]
    kids = sorted(children(cells, trials, ease0.info.run_id), key=lambda t: int(t.data.tags[S.TRIAL_NUMBER]))
    best = max(kids, key=lambda t: t.data.metrics["val/ndcg_at_10"])  # first of equals, as Optuna
    assert float(ease0.data.params["model.l2"]) == pytest.approx(float(best.data.params["model.l2"]))
    assert ease0.data.metrics[S.BEST_VAL] == pytest.approx(best.data.metrics["val/ndcg_at_10"])
    expected = _direct_evaluation(float(ease0.data.params["model.l2"]), seed=0)
    for key, value in expected.items():
        assert ease0.data.metrics[key] == pytest.approx(value, abs=1e-12), key

    # artifacts
    arts = artifacts(work, ease0.info.run_id)
    assert {S.ART_CONFIG, S.ART_PER_USER, S.ART_RECOMMENDATIONS, S.ART_TRIALS, S.ART_PROTOCOL} <= arts
    local = client(work).download_artifacts(ease0.info.run_id, S.ART_CONFIG, str(work / "dl"))
    assert yaml.safe_load(Path(local).read_text())["model"]["name"] == "ease"
    import pandas as pd

    trials_csv = pd.read_csv(
        client(work).download_artifacts(ease0.info.run_id, S.ART_TRIALS, str(work / "dl"))
    )
    assert len(trials_csv) == 3 and trials_csv.value.max() == pytest.approx(ease0.data.metrics[S.BEST_VAL])
    # datasets as MLflow inputs, digest = our sha256 (cut to MLflow's 36 characters)
    inputs = client(work).get_run(ease0.info.run_id).inputs.dataset_inputs
    digests = {i.dataset.name: i.dataset.digest for i in inputs}
    assert digests["synthetic"] == tags[S.FP_DATASET][:36]
    assert digests["synthetic/random_per_user_80_20/test"] == tags[S.FP_TEST][:36]

    # resumable: the same sweep again skips every cell and reuses the sweep run
    again = reprorec(work, *args)
    assert again.stderr.count("already FINISHED") == 4
    assert len(runs(work, S.RUN_TYPE_CELL)) == 4 and len(runs(work, S.RUN_TYPE_TRIAL)) == len(trials)
    (sweep2,) = runs(work, S.RUN_TYPE_SWEEP)
    assert sweep2.info.run_id == sweep.info.run_id and sweep2.info.status == "FINISHED"


def _direct_evaluation(l2: float, *, seed: int) -> dict[str, float]:
    """Refit EASE on train + validation by hand and evaluate it with the shared Evaluator."""
    from baselines.ease import EASE
    from benchmark.data.loading import load_dataset
    from benchmark.evaluation import Evaluator
    from benchmark.splits.make import load_split_config, make_split
    from benchmark.tuning.prepare import evaluation_seed

    data = load_dataset("synthetic", options=TINY["options"]).data
    split = make_split(
        data,
        load_split_config("random_per_user_80_20", conf_dir=REPO / "conf"),
        dataset="synthetic",
        seed=seed,
    )
    assert split.validation is not None
    model = EASE(l2=l2).fit(split.train_full)
    ev = Evaluator(
        split.test,
        [split.train, split.validation],
        cutoffs=[5, 10],
        metrics=["precision", "recall", "ndcg", "map"],
        seed=evaluation_seed("synthetic", "random_per_user_80_20", seed, "test"),
    )
    return ev.evaluate(model).metrics("test")


# ---------------------------------------------------------------------------- kill and resume
def test_killed_sweep_rerun_completes_only_the_missing_cells_and_trials(work: Path) -> None:
    counter = work / "fits.txt"
    args = ["-m", "model=toppop,killer,ease", "seed=0", "tuner.n_trials=3", "tuner.sampler=random", *FAST]
    env = {"REPROREC_TEST_COUNTER": str(counter)}
    killed = reprorec(work, *args, env={**env, "REPROREC_TEST_KILL_AT": "2"}, check=False)
    assert killed.returncode == -signal.SIGKILL
    cells = by_model(runs(work, S.RUN_TYPE_CELL))
    assert set(cells) == {("toppop", "0"), ("killer", "0")}  # ease never started
    assert cells["killer", "0"][0].info.status == "RUNNING"  # left behind by the dead process
    toppop_run = cells["toppop", "0"][0].info.run_id

    rerun = reprorec(work, *args, env=env)
    assert rerun.stderr.count("already FINISHED") == 1
    cells = by_model(runs(work, S.RUN_TYPE_CELL))
    assert [r.info.run_id for r in cells["toppop", "0"]] == [toppop_run]
    assert sorted(r.info.status for r in cells["killer", "0"]) == ["FINISHED", "KILLED"]
    assert [r.info.status for r in cells["ease", "0"]] == ["FINISHED"]
    # killer: trial 0 finished before the kill, trial 1 died; the rerun ran 2 trials + the refit
    assert int(counter.read_text()) == 2 + 2 + 1
    killer = next(r for r in cells["killer", "0"] if r.info.status == "FINISHED")
    assert killer.data.metrics[S.N_TRIALS_DONE] == 3
    (sweep,) = runs(work, S.RUN_TYPE_SWEEP)
    assert sweep.info.status == "FINISHED"


def test_sigterm_ends_the_running_cell_killed_with_traceback_and_a_rerun_completes_it(work: Path) -> None:
    counter = work / "fits.txt"
    args = ["-m", "model=killer", "seed=0", "tuner.n_trials=3", "tuner.sampler=random", *FAST]
    env = {"REPROREC_TEST_COUNTER": str(counter)}
    term = {**env, "REPROREC_TEST_KILL_AT": "2", "REPROREC_TEST_KILL_SIGNAL": "SIGTERM"}
    killed = reprorec(work, *args, env=term, check=False)
    assert killed.returncode == 128 + signal.SIGTERM  # 143, not 130 as if it were Ctrl-C
    assert "sweep stopped: interrupted by SIGTERM" in killed.stderr
    assert "did not finish: job 0 (model=killer seed=0" in killed.stderr  # names the cell
    (cell,) = runs(work, S.RUN_TYPE_CELL)
    assert cell.info.status == "KILLED"  # not left RUNNING
    tb = Path(client(work).download_artifacts(cell.info.run_id, S.ART_TRACEBACK, str(work / "dl")))
    assert "signal SIGTERM" in tb.read_text()
    (sweep,) = runs(work, S.RUN_TYPE_SWEEP)
    assert sweep.info.status == "KILLED" and "SIGTERM" in sweep.data.tags[S.END_REASON]
    import sqlite3

    with sqlite3.connect(work / "optuna.db") as db:  # the trial it was running: failed, not RUNNING
        states = [s for (s,) in db.execute("SELECT state FROM trials ORDER BY number")]
    assert states == ["COMPLETE", "FAIL"]
    reprorec(work, *args, env=env)
    cells = by_model(runs(work, S.RUN_TYPE_CELL))
    assert sorted(r.info.status for r in cells["killer", "0"]) == ["FINISHED", "KILLED"]
    done = next(r for r in cells["killer", "0"] if r.info.status == "FINISHED")
    assert done.data.metrics[S.N_TRIALS_DONE] == 3


def test_sweep_that_adds_a_model_reports_the_cells_it_reused(work: Path) -> None:
    from benchmark.reporting.collect import collect_runs

    common = ["seed=0", "tuner.n_trials=2", "tuner.sampler=random", *FAST]
    reprorec(work, "-m", "model=toppop", *common)
    reprorec(work, "-m", "model=toppop,ease", *common)
    first, second = sorted(runs(work, S.RUN_TYPE_SWEEP), key=lambda r: r.info.start_time)
    cells = by_model(runs(work, S.RUN_TYPE_CELL))
    assert {k: len(v) for k, v in cells.items()} == {("toppop", "0"): 1, ("ease", "0"): 1}
    (toppop,) = cells["toppop", "0"]
    assert toppop.data.tags[S.PARENT_RUN_ID] == first.info.run_id  # reused, not rerun
    uri = f"sqlite:///{work / 'mlflow.db'}"
    got = collect_runs(uri, sweep_run_id=second.info.run_id, download=False)
    assert sorted((c.model, c.run_id) for c in got.cells) == sorted(
        [("ease", cells["ease", "0"][0].info.run_id), ("toppop", toppop.info.run_id)]
    )
    assert [c.model for c in collect_runs(uri, sweep_run_id=first.info.run_id, download=False).cells] == [
        "toppop"
    ]


# ---------------------------------------------------------------------------- failure isolation
def test_failing_cell_is_failed_with_traceback_sweep_goes_on_and_exits_nonzero(work: Path) -> None:
    proc = reprorec(
        work,
        "-m",
        "model=broken,flaky,toppop",
        "seed=0",
        "tuner.n_trials=6",
        "tuner.sampler=random",
        *FAST,
        check=False,
    )
    assert proc.returncode == 1
    assert "1 failed" in proc.stderr and "FAILED broken · synthetic · seed 0" in proc.stderr
    cells = by_model(runs(work, S.RUN_TYPE_CELL))
    broken, flaky, toppop = cells["broken", "0"][0], cells["flaky", "0"][0], cells["toppop", "0"][0]
    assert (broken.info.status, flaky.info.status, toppop.info.status) == ("FAILED", "FINISHED", "FINISHED")
    tb = Path(client(work).download_artifacts(broken.info.run_id, S.ART_TRACEBACK, str(work / "dl")))
    assert "Broken.fit fails on purpose" in tb.read_text() and "Traceback" in tb.read_text()
    # flaky: odd x raise, x == 0 gives NaN scores; those trials failed, the others completed
    trials = children([], runs(work, S.RUN_TYPE_TRIAL), flaky.info.run_id)
    assert len(trials) == 6
    for t in trials:
        x = int(t.data.params["model.x"])
        assert t.info.status == ("FAILED" if x % 2 or x == 0 else "FINISHED"), x
    n_failed = sum(t.info.status == "FAILED" for t in trials)
    assert flaky.data.metrics[S.N_TRIALS_FAILED] == n_failed and 0 < n_failed < 6
    (sweep,) = runs(work, S.RUN_TYPE_SWEEP)
    assert sweep.info.status == "FAILED"
    summary = json.loads(next(work.glob("multirun/*/*/summary.json")).read_text())
    assert summary["counts"] == {"finished": 2, "skipped": 0, "failed": 1}
    assert summary["failed"][0]["name"] == "broken · synthetic · seed 0"


# ---------------------------------------------------------------------------- tuner=none, one cell
def test_tuner_none_fits_the_given_params_on_train_plus_validation(work: Path) -> None:
    reprorec(work, "model=ease", "tuner=none", "model.params.l2=123.0", *FAST)
    (cell,) = runs(work, S.RUN_TYPE_CELL)
    assert cell.info.status == "FINISHED" and S.PARENT_RUN_ID not in cell.data.tags
    assert float(cell.data.params["model.l2"]) == 123.0
    assert S.PARAM_N_TRIALS not in cell.data.params and runs(work, S.RUN_TYPE_TRIAL) == []
    expected = _direct_evaluation(123.0, seed=0)
    assert cell.data.metrics["test/ndcg_at_10"] == pytest.approx(expected["test/ndcg_at_10"], abs=1e-12)


def test_tuner_fixed_runs_one_trial_of_the_given_params_and_early_stops_it(work: Path) -> None:
    """The published-configuration mode: nothing searched (lr stays 0.5 though curve.yaml searches
    it), but the epoch count is early-stopped on validation: Curve is best at the first validated
    epoch (5) and reverses after its peak (12), so refitting model.params.epochs=30 would be wrong."""
    reprorec(work, "model=curve", "tuner=fixed", "+model.params.lr=0.5", *FAST)
    (cell,) = runs(work, S.RUN_TYPE_CELL)
    assert cell.info.status == "FINISHED" and cell.data.tags[S.TUNER] == "fixed"
    assert len(children([cell], runs(work, S.RUN_TYPE_TRIAL), cell.info.run_id)) == 1
    assert cell.data.params[S.PARAM_SEARCH_SPACE] == "{}" and cell.data.params[S.PARAM_N_TRIALS] == "1"
    assert cell.data.params[S.PARAM_BEST_EPOCH] == "5" and float(cell.data.params["model.lr"]) == 0.5


# ---------------------------------------------------------------------------- parallel workers
def test_smoke_experiment_with_two_joblib_workers_loses_nothing(work: Path) -> None:
    reprorec(work, "-m", "experiment=smoke", "hydra/launcher=parallel", "progress=false", timeout=600)
    cells = runs(work, S.RUN_TYPE_CELL)
    trials = runs(work, S.RUN_TYPE_TRIAL)
    assert len(cells) == 6 and {c.info.status for c in cells} == {"FINISHED"}
    (sweep,) = runs(work, S.RUN_TYPE_SWEEP)
    for c in cells:
        assert c.data.tags[S.PARENT_RUN_ID] == sweep.info.run_id
        assert {"test/ndcg_at_10", "test/recall_at_5", S.FIT_SECONDS} <= set(c.data.metrics)
        n = 1 if c.data.tags[S.MODEL] == "toppop" else 4
        assert len(children(cells, trials, c.info.run_id)) == n
        assert {S.ART_PER_USER, S.ART_TRIALS} <= artifacts(work, c.info.run_id)


def test_pruned_sweep_counts_pruned_trials_and_its_report_states_the_pruner(work: Path) -> None:
    from benchmark.reporting import generate_report
    from benchmark.threads import available_cpus

    # Blurred's validation value depends on its lr: successive halving keeps the better third of
    # the trials at each rung (epochs 2, 6, 18) and prunes the others
    args = ["-m", "model=blurred,ease", "seed=0", "tuner.n_trials=8", "tuner.sampler=random"]
    reprorec(work, *args, "tuner.pruner=successive_halving", "tuner.validate_every=2", *FAST)
    cells = by_model(runs(work, S.RUN_TYPE_CELL))
    blurred, ease = cells["blurred", "0"][0].data, cells["ease", "0"][0].data
    assert blurred.params[S.PARAM_PRUNER] == ease.params[S.PARAM_PRUNER] == "successive_halving"
    # one cell at a time, one worker: each cell's process has all of the cell's CPUs
    assert blurred.params[S.PARAM_THREADS] == blurred.params[S.PARAM_CPUS] == str(available_cpus())
    pruned = blurred.metrics[S.N_TRIALS_PRUNED]
    assert blurred.metrics[S.N_TRIALS_DONE] + pruned == 8 and ease.metrics[S.N_TRIALS_PRUNED] == 0
    trials = [t for t in runs(work, S.RUN_TYPE_TRIAL) if t.data.tags[S.MODEL] == "blurred"]
    states = [t.data.tags[S.TRIAL_STATE] for t in trials]
    assert states.count("pruned") == pruned and {t.info.status for t in trials} == {"FINISHED"}
    out = work / "report"
    generate_report(f"sqlite:///{work / 'mlflow.db'}", out_dir=out, cutoffs=(10,), n_resamples=99)
    md = (out / "README.md").read_text()
    assert "Pruner (pruned trials count)" in md and "successive_halving" in md
    assert pruned > 0 and f"+ {pruned:.0f} pruned / 8" in md


def test_packed_sweep_trains_gmf_trials_together_and_its_report_states_the_pack_size(work: Path) -> None:
    from benchmark.reporting import generate_report

    # a GMF whose search leaves the shapes at their defaults, so that a CPU pack joins its trials
    (work / "conf" / "model" / "gmfpack.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "gmfpack",
                "cls": "neural.neumf.GMF",
                "family": "neural",
                "params": {"epochs": 4, "batch_size": 64, "device": "cpu"},
                "search_space": {
                    "learning_rate": {"type": "float", "low": 1e-3, "high": 5e-2, "log": True},
                    "n_negatives": {"type": "int", "low": 1, "high": 4},
                },
            }
        )
    )
    args = ["-m", "model=gmfpack,ease", "seed=0", "tuner.n_trials=4", "tuner.pack_size=2"]
    reprorec(work, *args, "tuner.validate_every=2", "tuner.patience=1", *FAST)
    cells = by_model(runs(work, S.RUN_TYPE_CELL))
    gmf, ease = cells["gmfpack", "0"][0].data, cells["ease", "0"][0].data
    # the sampling protocol applies to every model alike; only GMF trains its packs as one model
    assert gmf.params[S.PARAM_PACK_SIZE] == ease.params[S.PARAM_PACK_SIZE] == "2"
    assert gmf.metrics[S.N_TRIALS_DONE] == 4
    trials = {t.data.tags[S.MODEL]: [] for t in runs(work, S.RUN_TYPE_TRIAL)}
    for t in runs(work, S.RUN_TYPE_TRIAL):
        trials[t.data.tags[S.MODEL]].append(t.data.tags.get(S.PACKED))
    assert trials["gmfpack"] == ["true"] * 4 and set(trials["ease"]) == {None}
    out = work / "report"
    generate_report(f"sqlite:///{work / 'mlflow.db'}", out_dir=out, cutoffs=(10,), n_resamples=99)
    md = (out / "README.md").read_text()
    assert "Trial pack size" in md and "4 / 4 in packs of 2" in md
