"""Fault injection: kill sweeps at named points (SIGKILL and SIGTERM), rerun, and check the store.

Every scenario starts from an empty folder, runs a small synthetic sweep (EASE and PureSVD, 3 tuning
trials each, one seed) that is killed at a fault point of :mod:`benchmark.faults` (or by the test,
after a seeded random delay, or from a second process), then reruns the same command and asserts:

* the store is usable (the rerun exits 0 and generates its report);
* exactly one FINISHED run per cell key, and no sweep, cell or trial run, nor Optuna trial, RUNNING;
* no lease left held;
* the leaderboard is identical, bit for bit, to an uninterrupted sweep's (every column but run ids);
* each cell's tuning cost is the sum of its trials' fit seconds, whichever process ran them.

The kill points are chosen with a seeded generator (``REPROREC_FAULTS_SEED``, default 0): each
point once, with SIGKILL or SIGTERM; ``REPROREC_FAULTS_ALL=1`` tries both signals at every point.
The figure "kills survived / tried" is printed at the end of the session (``conftest.py``).
Run with ``make test-faults`` (``pytest -m faults``; excluded from ``make test``).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmark.faults import POINTS
from benchmark.tracking import schema as S
from tests.faults.conftest import TALLY

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]
CELLS = ("ease", "puresvd")
N_TRIALS = 3
ARGS = [
    "-m",
    "experiment=smoke",
    f"model={','.join(CELLS)}",
    "seed=0",
    f"tuner.n_trials={N_TRIALS}",
    "dataset.options.n_users=200",
    "dataset.options.n_items=200",
    "dataset.options.n_interactions=4000",
    "progress=false",
]
REPORT = ["report.enabled=true", "report.out_dir=report"]

#: Fault points with the occurrences worth killing at (2 cells x 3 trials run in one process; the
#: sqlite stores are created in order: MLflow's first, then Optuna's).
OCCURRENCES: dict[str, tuple[int, ...]] = {
    "store.create": (1, 2),
    "store.created": (1, 2),
    "sweep.started": (1,),
    "cell.claimed": (1, 2),
    "cell.started": (2,),
    "tuning.trial": (1, 5),
    "tuning.told": (3,),
    "tuning.logged": (2, 4),
    "refit.start": (1,),
    "refit.done": (2,),
    "test.evaluated": (1, 2),
    "artifacts.logging": (1,),
    "cell.finishing": (2,),
    "sweep.finishing": (1,),
}
assert set(OCCURRENCES) == set(POINTS), "every fault point of benchmark.faults is covered"


def _plan() -> list[tuple[str, int, str]]:
    rng = random.Random(int(os.environ.get("REPROREC_FAULTS_SEED", "0")))
    both = os.environ.get("REPROREC_FAULTS_ALL") == "1"
    plan = []
    for point, nths in OCCURRENCES.items():
        for nth in nths:
            for sig in ("KILL", "TERM") if both else (rng.choice(("KILL", "TERM")),):
                plan.append((point, nth, sig))
    return plan


PLAN = _plan()


# ---------------------------------------------------------------------------- helpers
def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "REPROREC_FAULT")}
    env.update({"PYTHONPATH": str(REPO), "REPROREC_LEASE_POLL_S": "0.2", **extra})
    return env


def start(work: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmark.cli.sweep", *args],
        cwd=work,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sweep(work: Path, *args: str, **env: str) -> tuple[int, str]:
    proc = start(work, *args, **env)
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


def leaderboard(folder: Path) -> list[str]:
    """The leaderboard's rows without its comment line and without run ids (new runs, new ids)."""
    lines = [x for x in (folder / "leaderboard.csv").read_text().splitlines() if not x.startswith("#")]
    header = lines[0].split(",")
    drop = header.index("run_ids")
    assert drop == len(header) - 1  # run ids are the last column, so splitting at commas is safe
    return [",".join(line.split(",")[:drop]) for line in lines]


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The uninterrupted sweep: its leaderboard and each cell's test metrics."""
    work = tmp_path_factory.mktemp("baseline")
    code, err = sweep(work, *ARGS, *REPORT)
    assert code == 0, err[-3000:]
    return {"leaderboard": leaderboard(work / "report"), "metrics": test_metrics(work)}


def _db(work: Path, name: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{work / name}?mode=ro", uri=True)


def test_metrics(work: Path) -> dict[str, dict[str, float]]:
    """Test metrics of each FINISHED cell run, by run name."""
    with _db(work, "mlflow.db") as db:
        rows = db.execute(
            "SELECT r.name, m.key, m.value FROM runs r JOIN latest_metrics m ON m.run_uuid = r.run_uuid "
            "WHERE r.status = 'FINISHED' AND m.key LIKE 'test/%' AND r.run_uuid IN "
            f"(SELECT run_uuid FROM tags WHERE key = '{S.RUN_TYPE}' AND value = '{S.RUN_TYPE_CELL}')"
        ).fetchall()
    out: dict[str, dict[str, float]] = {}
    for name, key, value in rows:
        out.setdefault(name, {})[key] = value
    return out


test_metrics.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def check_store(work: Path, baseline: dict[str, object]) -> None:
    """The assertions every scenario ends with (see the module docstring)."""
    with _db(work, "mlflow.db") as db:
        status = dict(db.execute("SELECT run_uuid, status FROM runs").fetchall())
        tags: dict[str, dict[str, str]] = {}
        for run, key, value in db.execute("SELECT run_uuid, key, value FROM tags"):
            tags.setdefault(run, {})[key] = value
        fit_s = dict(db.execute("SELECT run_uuid, value FROM latest_metrics WHERE key = 'time/fit_s'"))
        tuning_s = dict(
            db.execute("SELECT run_uuid, value FROM latest_metrics WHERE key = ?", (S.TUNING_SECONDS,))
        )
    running = [
        (tags[r].get("mlflow.runName"), tags[r].get(S.RUN_TYPE)) for r, s in status.items() if s == "RUNNING"
    ]
    assert running == [], f"runs left RUNNING: {running}"
    finished: dict[str, list[str]] = {}
    for run, t in tags.items():
        if t.get(S.RUN_TYPE) == S.RUN_TYPE_CELL and status[run] == "FINISHED":
            finished.setdefault(t[S.CELL_KEY], []).append(run)
    assert len(finished) == len(CELLS), f"cell keys with a FINISHED run: {len(finished)}"
    assert all(len(v) == 1 for v in finished.values()), f"FINISHED runs per key: {finished}"
    for (cell,) in finished.values():  # the cost sums every process's trials
        trials = [r for r, t in tags.items() if t.get(S.PARENT_RUN_ID) == cell]
        assert len(trials) == N_TRIALS
        assert tuning_s[cell] == pytest.approx(sum(fit_s[t] for t in trials), rel=1e-12, abs=1e-12)
    with _db(work, "optuna.db") as db:
        assert db.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone() == (0,)
        assert db.execute("SELECT * FROM reprorec_leases").fetchall() == []
    assert test_metrics(work) == baseline["metrics"]


def rerun_and_check(work: Path, baseline: dict[str, object], name: str, kills: int) -> None:
    """Rerun the sweep uninterrupted, check the store and the leaderboard; tally the kills."""
    ok = False
    try:
        code, err = sweep(work, *ARGS, *REPORT)
        assert code == 0, err[-4000:]
        check_store(work, baseline)
        assert leaderboard(work / "report") == baseline["leaderboard"]
        ok = True
    finally:
        TALLY.append((name, kills, kills if ok else 0))


# ---------------------------------------------------------------------------- the scenarios
@pytest.mark.parametrize(("point", "nth", "sig"), PLAN, ids=[f"{p}@{n}:{s}" for p, n, s in PLAN])
def test_killed_at_a_fault_point_then_rerun(
    tmp_path: Path, baseline: dict[str, object], point: str, nth: int, sig: str
) -> None:
    code, err = sweep(tmp_path, *ARGS, *REPORT, REPROREC_FAULT=f"{point}@{nth}:{sig}")
    expected = -signal.SIGKILL if sig == "KILL" else 128 + signal.SIGTERM
    assert code == expected, f"not killed at {point}@{nth} (exit {code}):\n{err[-3000:]}"
    if sig == "TERM" and (tmp_path / "mlflow.db").exists():  # SIGTERM: nothing left RUNNING
        with _db(tmp_path, "mlflow.db") as db:
            assert db.execute("SELECT COUNT(*) FROM runs WHERE status = 'RUNNING'").fetchone() == (0,)
    rerun_and_check(tmp_path, baseline, f"{point}@{nth}:{sig}", 1)


def test_random_sigkills_while_the_store_is_first_created(
    tmp_path: Path, baseline: dict[str, object]
) -> None:
    rng = random.Random(int(os.environ.get("REPROREC_FAULTS_SEED", "0")) + 1)
    kills = 0
    for _ in range(4):  # interpreter start-up and imports take ~1.5 s; the schema ~1 s more
        proc = start(tmp_path, *ARGS, *REPORT)
        time.sleep(rng.uniform(1.0, 3.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate()
    rerun_and_check(tmp_path, baseline, "random SIGKILL during store creation", kills)


def test_two_identical_sweeps_at_once_on_a_fresh_store(tmp_path: Path, baseline: dict[str, object]) -> None:
    a, b = start(tmp_path, *ARGS), start(tmp_path, *ARGS)
    (_, err_a), (_, err_b) = a.communicate(timeout=600), b.communicate(timeout=600)
    assert (a.returncode, b.returncode) == (0, 0), err_a[-2000:] + err_b[-2000:]
    folders = sorted(p.parent for p in tmp_path.glob("multirun/*/*/summary.json"))
    assert len(folders) == 2  # each sweep its own folder, also when started in the same second
    with _db(tmp_path, "mlflow.db") as db:
        sweeps = db.execute(
            "SELECT r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            f"WHERE t.key = '{S.RUN_TYPE}' AND t.value = '{S.RUN_TYPE_SWEEP}'"
        ).fetchall()
    assert sweeps == [("FINISHED",), ("FINISHED",)]  # a live identical sweep is not reopened
    rerun_and_check(tmp_path, baseline, "two sweeps on one fresh store (no kill)", 0)


def _wait_for(cond: Callable[[], bool], timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def _lease_held(work: Path) -> bool:
    try:
        with _db(work, "optuna.db") as db:
            return bool(
                db.execute("SELECT COUNT(*) FROM reprorec_leases WHERE lease_key LIKE 'cell:%'").fetchone()[0]
            )
    except sqlite3.Error:
        return False


def _create_stores(work: Path) -> None:
    """Create the MLflow store and the study storage (with its lease table) before a race."""
    from benchmark.tracking.leases import lease_table
    from benchmark.tracking.mlflow_store import ensure_sqlite_store

    ensure_sqlite_store(work / "mlflow.db")
    lease_table(f"sqlite:///{work / 'optuna.db'}").engine.dispose()


ONE_CELL = ["experiment=smoke", "model=ease", *ARGS[3:]]  # a single cell, no multirun


def test_one_cell_key_in_two_processes_second_waits_then_skips(
    tmp_path: Path, baseline: dict[str, object]
) -> None:
    _create_stores(tmp_path)
    first = start(tmp_path, *ONE_CELL, REPROREC_FAULT="cell.started:sleep=8")  # holds the claim 8 s
    _wait_for(lambda: _lease_held(tmp_path))
    second = start(tmp_path, *ONE_CELL)
    (_, err1), (_, err2) = first.communicate(timeout=600), second.communicate(timeout=600)
    assert (first.returncode, second.returncode) == (0, 0), err1[-2000:] + err2[-2000:]
    assert "waiting for process" in err2 and "already FINISHED" in err2
    rerun_and_check(tmp_path, baseline, "one cell key in two processes (no kill)", 0)


def test_holder_of_a_cell_killed_while_another_process_waits(
    tmp_path: Path, baseline: dict[str, object]
) -> None:
    _create_stores(tmp_path)
    first = start(tmp_path, *ONE_CELL, REPROREC_FAULT="cell.started:sleep=8,tuning.trial@2:KILL")
    _wait_for(lambda: _lease_held(tmp_path))
    second = start(tmp_path, *ONE_CELL)
    _, err1 = first.communicate(timeout=600)
    _, err2 = second.communicate(timeout=600)
    assert first.returncode == -signal.SIGKILL, err1[-2000:]
    assert second.returncode == 0, err2[-3000:]
    assert "waiting for process" in err2 and "took over from dead process" in err2
    rerun_and_check(tmp_path, baseline, "cell holder SIGKILLed while a second process waits", 1)


def test_launcher_worker_killed_like_the_oom_killer(tmp_path: Path, baseline: dict[str, object]) -> None:
    # joblib's workers are other processes: SIGKILL in one of them is what the OOM killer does; the
    # sweep stops with TerminatedWorkerError, which must close the sweep and name the dead cell
    code, err = sweep(tmp_path, *ARGS, "hydra/launcher=parallel", REPROREC_FAULT="refit.start@1:KILL")
    assert code == 1, err[-3000:]
    assert "a job's process died" in err and "did not finish: job" in err
    with _db(tmp_path, "mlflow.db") as db:
        assert db.execute("SELECT COUNT(*) FROM runs WHERE status = 'RUNNING'").fetchone() == (0,)
    rerun_and_check(tmp_path, baseline, "joblib worker SIGKILLed (TerminatedWorkerError)", 1)
