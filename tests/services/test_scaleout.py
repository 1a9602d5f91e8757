"""Several workers per cell on the shared PostgreSQL Optuna storage and the MLflow server.

The sweeps run ``python -m benchmark.cli.sweep`` through ``hydra/launcher=local_jobs`` (submitit's
local executor, what SLURM does on a cluster) against the services of ``reprorec-services up``,
with ``tuner.workers=3``; everything is checked through the MLflow client API and the Optuna study.
The budget-splitting property itself is also checked on sqlite, with bare :func:`tune` processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import optuna
import psutil
import pytest
import yaml

from benchmark import services
from benchmark.data.interactions import InteractionMatrix
from benchmark.models import Param
from benchmark.tracking import schema as S
from benchmark.tuning.parallel import counts
from benchmark.tuning.space import parse_space
from benchmark.tuning.tuner import tune
from tests.services.test_services import _listening_ports
from tests.synthetic import random_matrix
from tests.unit.test_sweep import FAST as SWEEP_FAST
from tests.unit.test_sweep import TINY
from tests.unit.test_tuning import SPACE_X, Quadratic, _Popular, _quadratic_validate, _tuner, spec_of

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
FAST = [*SWEEP_FAST, "hydra/launcher=local_jobs", "tracking=server", "tuner.storage=services"]


class Sleepy(_Popular):
    """Popularity after sleeping ``$REPROREC_TEST_SLEEP`` seconds: trials long enough to overlap."""

    param_specs: ClassVar[dict[str, Param]] = {"x": Param("int", low=0, high=99)}

    def __init__(self, x: int = 0) -> None:
        self.x = x

    def fit(self, train: InteractionMatrix) -> Sleepy:
        # Helper workers start as new processes, which can take long on a loaded machine: so that the
        # tests see them take part whatever the load, a helper announces itself in the barrier folder
        # and worker 0 (the cell's own process) waits for one before its trials (at most 120 s).
        barrier = os.environ.get("REPROREC_TEST_BARRIER")
        if barrier:
            folder = Path(barrier)
            main_spec = getattr(sys.modules["__main__"], "__spec__", None)
            if main_spec is not None and main_spec.name == "benchmark.tuning.worker":
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"helper-{os.getpid()}").touch()
            else:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and not any(folder.glob("helper-*")):
                    time.sleep(0.2)
        time.sleep(float(os.environ.get("REPROREC_TEST_SLEEP", "2.5")))
        self._fit_popularity(train)
        return self


class SlowQuadratic(Quadratic):
    def fit(self, train: InteractionMatrix) -> SlowQuadratic:
        time.sleep(0.15)
        super().fit(train)
        return self


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def work(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "dataset" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (conf / "model" / "sleepy.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "sleepy",
                "cls": "tests.services.test_scaleout.Sleepy",
                "family": "neighbourhood",
                "params": {},
                "search_space": {"x": {"type": "int", "low": 0, "high": 99}},
            }
        )
    )
    return tmp_path


def _env(work: Path, folder: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(
        {
            "REPROREC_CONF": str(work / "conf"),
            "PYTHONPATH": str(REPO),
            services.ENV_SERVICES_DIR: str(folder),
            "REPROREC_LEASE_HEARTBEAT_S": "1",
            "REPROREC_HEARTBEAT_GRACE_S": "4",
            "REPROREC_TEST_BARRIER": str(work / "barrier"),
            **(extra or {}),
        }
    )
    return env


def reprorec(work: Path, folder: Path, *args: str, check: bool = True, timeout: int = 400, **kw: Any) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark.cli.sweep", *args],
        cwd=work,
        env=_env(work, folder, kw.get("env")),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"reprorec failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def _runs(client: Any, experiment: str) -> dict[str, list[Any]]:
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id], max_results=1000)
    out: dict[str, list[Any]] = {S.RUN_TYPE_SWEEP: [], S.RUN_TYPE_CELL: [], S.RUN_TYPE_TRIAL: []}
    for r in found:
        out[r.data.tags[S.RUN_TYPE]].append(r)
    return out


def _tree(pid: int) -> dict[Any, list[str]]:
    """Live descendants of ``pid`` with their command lines."""
    found = {}
    for p in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):  # ended meanwhile
            found[p] = p.cmdline()
    return found


def _job_logs(work: Path) -> str:
    """What the jobs wrote: submitit's stdout/stderr files and Hydra's job logs."""
    files = [f for ext in ("out", "err", "log") for f in work.glob(f"multirun/**/*.{ext}")]
    return "".join(f.read_text(errors="replace") for f in files)


def _study(storage: str, cell_key: str) -> optuna.Study:
    return optuna.load_study(study_name=cell_key, storage=storage)


# ---------------------------------------------------------------------------- budget on sqlite
def _start(helpers: list[Any]) -> None:
    for h in helpers:
        h.start()


def _tune_worker(index: int, storage: str, n_trials: int, out: Any, helpers: list[Any]) -> None:
    config = dataclasses.replace(_tuner(n_trials=n_trials), workers=3)
    seen: list[int] = []
    tune(
        dataclasses.replace(spec_of(Quadratic), cls=f"{__name__}.SlowQuadratic"),
        parse_space(SPACE_X),
        random_matrix(20, 15, seed=0),
        _quadratic_validate,
        config,
        seed=3,
        study_name="shared",
        storage=storage,
        worker_index=index,
        on_trial=lambda r: seen.append(r.number) if not r.resumed else None,
        on_ready=lambda: _start(helpers),
    )
    out.put((index, seen))


def test_three_tune_processes_split_a_budget_of_nine_exactly(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    out: Any = mp.get_context("fork").Queue()
    fork = mp.get_context("fork")
    helpers = [fork.Process(target=_tune_worker, args=(i, storage, 9, out, [])) for i in (1, 2)]
    _tune_worker(0, storage, 9, out, helpers)
    for h in helpers:
        h.join(60)
    ran = dict(out.get(timeout=5) for _ in range(3))
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    counted = [t for t in trials if counts(t)]
    # exactly the budget finished, each counted trial reported once by the worker that ran it
    assert len(counted) == 9 and all(t.state != optuna.trial.TrialState.RUNNING for t in counted)
    reported = sorted(n for numbers in ran.values() for n in numbers)
    assert reported == sorted(t.number for t in counted)
    assert sum(bool(numbers) for numbers in ran.values()) >= 2  # the work was shared
    # x % 5 == 3 crashes: those count as failed trials, the rest complete
    for t in counted:
        crashed = t.params["x"] % 5 == 3 or t.params["x"] == 12
        assert (t.state == optuna.trial.TrialState.FAIL) == crashed


# ---------------------------------------------------------------------------- sweeps on the services
def test_two_cells_three_workers_each_log_exactly_n_trials_under_one_sweep(work: Path, svc: Any) -> None:
    from mlflow import MlflowClient

    folder, state = svc
    args = ["-m", "model=ease,sleepy", "tuner.n_trials=6", "tuner.workers=3", "tracking.experiment=3w", *FAST]
    reprorec(work, folder, *args, env={"REPROREC_TEST_SLEEP": "3"})  # trials long enough to share
    assert _job_logs(work).count("helper worker(s), PIDs") == 2
    client = MlflowClient(state.tracking_uri)
    runs = _runs(client, "3w")
    (sweep,) = runs[S.RUN_TYPE_SWEEP]
    cells, trials = runs[S.RUN_TYPE_CELL], runs[S.RUN_TYPE_TRIAL]
    assert sweep.info.status == "FINISHED" and len(cells) == 2
    assert {c.data.tags[S.PARENT_RUN_ID] for c in cells} == {sweep.info.run_id}
    for cell in cells:
        assert cell.info.status == "FINISHED"
        kids = [t for t in trials if t.data.tags[S.PARENT_RUN_ID] == cell.info.run_id]
        numbers = [int(t.data.tags[S.TRIAL_NUMBER]) for t in kids]
        assert len(kids) == 6 and len(set(numbers)) == 6, numbers  # n_trials, no duplicates
        # the Optuna study agrees: six counted trials, the same numbers
        study = _study(state.optuna_storage, cell.data.tags[S.CELL_KEY])
        assert sorted(t.number for t in study.get_trials() if counts(t)) == sorted(numbers)
        # one final test evaluation: one value in the metric's history, the refit of the best trial
        assert len(client.get_metric_history(cell.info.run_id, "test/ndcg_at_10")) == 1
        assert cell.data.metrics[S.N_TRIALS_DONE] + cell.data.metrics[S.N_TRIALS_FAILED] == 6
        best = max(kids, key=lambda t: t.data.metrics["val/ndcg_at_10"])
        assert cell.data.metrics[S.BEST_VAL] == pytest.approx(best.data.metrics["val/ndcg_at_10"])
        if cell.data.tags[S.MODEL] == "sleepy":  # 2.5 s trials: the helpers took some
            assert len({t.data.tags[S.WORKER] for t in kids}) >= 2
    # nothing of ours carries the password: params, tags, the resolved config
    for r in [sweep, *cells, *trials]:
        text = repr(r.data.params) + repr(r.data.tags)
        assert state.pg_password not in text
    config = Path(client.download_artifacts(cells[0].info.run_id, S.ART_CONFIG, str(work / "dl")))
    assert state.pg_password not in config.read_text()


def test_killed_helper_worker_is_replaced_and_the_rerun_does_nothing_new(work: Path, svc: Any) -> None:
    from mlflow import MlflowClient

    folder, state = svc
    # the storage URL given literally (with its password): it must still not be logged anywhere
    args = [
        "-m",
        "model=sleepy",
        "seed=1",  # not the cell of the test above: its study (named by the cell key) is done
        "tuner.n_trials=6",
        "tuner.workers=3",
        "tracking.experiment=kill",
        *FAST[:-1],
        f"tuner.storage='{state.optuna_storage}'",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmark.cli.sweep", *args],
        cwd=work,
        env=_env(work, folder),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    storage = optuna.storages.RDBStorage(state.optuna_storage)
    killed: int | None = None
    deadline = time.monotonic() + 240
    try:
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            tree = _tree(proc.pid)
            helpers = {int(cmd[-1]): p for p, cmd in tree.items() if "benchmark.tuning.worker" in cmd}
            ours = {p.pid for p in tree} | {proc.pid}
            assert all(addr in ("127.0.0.1", "::1") for addr, _ in _listening_ports(ours))
            for study in storage.get_all_studies():
                for t in storage.get_all_trials(study._study_id, states=(optuna.trial.TrialState.RUNNING,)):
                    worker = t.user_attrs.get("worker")
                    if worker in helpers and killed is None:
                        helpers[worker].send_signal(signal.SIGKILL)
                        killed, killed_trial = helpers[worker].pid, t.number
            time.sleep(0.3)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "no helper worker was seen running a trial"
    assert proc.returncode == 0, err[-3000:]

    client = MlflowClient(state.tracking_uri)
    runs = _runs(client, "kill")
    (cell,) = runs[S.RUN_TYPE_CELL]
    trials = runs[S.RUN_TYPE_TRIAL]
    assert cell.info.status == "FINISHED"
    numbers = sorted(int(t.data.tags[S.TRIAL_NUMBER]) for t in trials)
    assert len(numbers) == 6 and len(set(numbers)) == 6 and killed_trial not in numbers
    tuned = _study(state.optuna_storage, cell.data.tags[S.CELL_KEY])
    lost = tuned.trials[killed_trial]
    # the killed worker's trial: failed by the heartbeat check, without an error, not counted
    assert lost.state == optuna.trial.TrialState.FAIL and not counts(lost)
    assert sorted(t.number for t in tuned.trials if counts(t)) == numbers
    for r in [cell, *trials, *runs[S.RUN_TYPE_SWEEP]]:
        assert state.pg_password not in repr(r.data.params) + repr(r.data.tags)
    assert f"postgresql+psycopg2://reprorec:***@127.0.0.1:{state.pg_port}/optuna" in cell.data.tags[S.COMMAND]
    config = Path(client.download_artifacts(cell.info.run_id, S.ART_CONFIG, str(work / "dl")))
    assert state.pg_password not in config.read_text() and state.pg_password not in err

    # the same command again: the cell is skipped, nothing new in MLflow or in the study
    again = reprorec(work, folder, *args)
    assert state.pg_password not in again.stderr + _job_logs(work)
    summaries = sorted(work.glob("multirun/*/*/summary.json"), key=lambda f: f.stat().st_mtime)
    assert json.loads(summaries[-1].read_text())["counts"] == {"finished": 0, "skipped": 1, "failed": 0}
    after = _runs(client, "kill")
    assert len(after[S.RUN_TYPE_CELL]) == 1 and len(after[S.RUN_TYPE_TRIAL]) == 6
    assert len(_study(state.optuna_storage, cell.data.tags[S.CELL_KEY]).trials) == len(tuned.trials)


# ---------------------------------------------------------------------------- bad URLs
def test_unreachable_tracking_server_and_storage_fail_fast_with_redacted_url(work: Path, svc: Any) -> None:
    folder, _ = svc
    port = services.free_port()  # nothing listens there
    t0 = time.monotonic()
    proc = reprorec(
        work, folder, "-m", "model=toppop", *FAST[:-2], f"tracking.uri=http://127.0.0.1:{port}", check=False
    )
    assert proc.returncode != 0 and time.monotonic() - t0 < 90
    assert f"MLflow tracking server http://127.0.0.1:{port} is not reachable" in proc.stderr

    proc = reprorec(
        work,
        folder,
        "-m",
        "model=ease",
        *FAST[:-2],
        f"tuner.storage='postgresql+psycopg2://bob:hunter2secret@127.0.0.1:{port}/optuna'",
        check=False,
    )
    assert proc.returncode != 0
    redacted = f"postgresql+psycopg2://bob:***@127.0.0.1:{port}/optuna"
    assert f"Optuna storage {redacted} is not usable" in proc.stderr
    assert "hunter2secret" not in proc.stderr + proc.stdout
