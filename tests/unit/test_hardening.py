"""Stores, claims and costs under interruption (issue 15, items 4-8): crash-safe store creation,
one claim per cell key, dead processes' runs closed, summed tuning costs, content-based code identity.

The full kill matrix (every fault point, SIGKILL and SIGTERM, then a rerun) is ``tests/faults``.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmark.tracking import provenance
from benchmark.tracking import schema as S

REPO = Path(__file__).resolve().parents[2]


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if k != "REPROREC_FAULT"}
    full.update({"PYTHONPATH": str(REPO), **(extra or {})})
    return full


def run_py(code: str, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(cmd, env=_env(env), capture_output=True, text=True, timeout=300)


def start_py(code: str, *, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.Popen(cmd, env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---------------------------------------------------------------------------- item 8: code identity
def _tree(root: Path) -> None:
    for rel, text in {
        "benchmark/core.py": "X = 1\n",
        "conf/model/m.yaml": "name: m\n",
        "requirements/constraints.txt": "numpy==2.0.0\n",
        "README.md": "# docs\n",
        "reports/default/leaderboard.csv": "a,b\n",
        "tests/test_x.py": "def test(): pass\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def _hash(root: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(provenance, "repo_root", lambda: root)
    provenance.code_hash.cache_clear()
    try:
        return provenance.code_hash()
    finally:
        provenance.code_hash.cache_clear()


@pytest.mark.parametrize(
    "edited", ["README.md", "reports/default/leaderboard.csv", "tests/test_x.py", "new.md"]
)
def test_docs_reports_and_tests_do_not_change_the_code_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edited: str
) -> None:
    _tree(tmp_path)
    before = _hash(tmp_path, monkeypatch)
    (tmp_path / edited).write_text("changed\n")
    assert _hash(tmp_path, monkeypatch) == before


@pytest.mark.parametrize(
    "edited", ["benchmark/core.py", "conf/model/m.yaml", "requirements/constraints.txt", "benchmark/new.py"]
)
def test_code_configs_and_the_pinned_environment_change_the_code_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edited: str
) -> None:
    _tree(tmp_path)
    before = _hash(tmp_path, monkeypatch)
    (tmp_path / edited).write_text("changed = True\n")
    assert _hash(tmp_path, monkeypatch) != before


def test_code_version_has_no_git_dirty_flag() -> None:
    # a generated report dirties the checkout: the key must not depend on it (it used to end in -dirty)
    version = provenance.code_version()
    assert "+code." in version and "dirty" not in version and len(version.split("+code.")[1]) == 16


# ---------------------------------------------------------------------------- item 4: store creation
CREATE = """
from benchmark.tracking.mlflow_store import Tracker
t = Tracker({uri!r})
print(t.ensure_experiment("reprorec"))
"""


def test_sigkill_while_the_store_schema_is_built_leaves_no_store_and_the_next_run_works(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for point in ("store.create", "store.created"):
        proc = run_py(CREATE.format(uri=uri), env={"REPROREC_FAULT": f"{point}:KILL"})
        assert proc.returncode == -signal.SIGKILL
        assert not (tmp_path / "mlflow.db").exists()  # no half-built store
        assert list(tmp_path.glob(".mlflow.db.build-*"))  # only the dead builder's temporary file
    proc = run_py(CREATE.format(uri=uri))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1" and not list(tmp_path.glob(".mlflow.db.build-*"))


def test_a_build_that_fails_halfway_leaves_no_database(tmp_path: Path) -> None:
    from benchmark.io import create_sqlite_atomically

    db = tmp_path / "x.db"

    def half(url: str) -> None:
        con = sqlite3.connect(url.removeprefix("sqlite:///"))
        con.execute("CREATE TABLE a (x)")
        con.commit()
        con.close()
        raise RuntimeError("killed halfway")

    with pytest.raises(RuntimeError, match="halfway"):
        create_sqlite_atomically(db, half, what="x")
    assert not db.exists() and list(tmp_path.iterdir()) == [tmp_path / ".x.db.lock"]
    assert create_sqlite_atomically(
        db, lambda url: sqlite3.connect(url[10:]).execute("CREATE TABLE b (y)"), what="x"
    )
    assert sqlite3.connect(db).execute("SELECT name FROM sqlite_master").fetchall() == [("b",)]


def test_processes_starting_together_on_a_fresh_store_wait_for_each_other(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    procs = [start_py(CREATE.format(uri=uri)) for _ in range(3)]
    results = [(p.communicate(timeout=300), p.returncode) for p in procs]
    assert [code for _, code in results] == [0, 0, 0], [err[-1500:] for (_, err), _ in results]
    assert {out.strip() for (out, _), _ in results} == {"1"}  # one experiment, seen by all


# ---------------------------------------------------------------------------- item 5: claims
HOLD = """
import sys, time
from benchmark.tracking.leases import lease_table, process_owner
table = lease_table({url!r})
ok, _ = table.try_claim("cell:abc", info="held by a child")
print(ok, process_owner(), flush=True)
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 60)
"""


def test_a_live_claim_is_refused_a_dead_one_taken_over(tmp_path: Path) -> None:
    from benchmark.tracking.leases import lease_table

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    table = lease_table(url)
    child = start_py(HOLD.format(url=url))
    line = child.stdout.readline().split()  # type: ignore[union-attr]
    assert line[0] == "True"
    owner = line[1]
    ok, holder = table.try_claim("cell:abc")
    assert not ok and holder is not None and holder.owner == owner and table.owner_alive(owner)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert not table.owner_alive(owner)  # same host, process gone: dead at once, no grace period
    ok, previous = table.try_claim("cell:abc")
    assert ok and previous is not None and previous.owner == owner
    assert table.still_held("cell:abc")
    table.release("cell:abc")
    assert table.holder("cell:abc") is None


def test_a_live_owner_on_this_host_stays_alive_with_a_late_heartbeat_and_a_reused_pid_does_not() -> None:
    """A native call that keeps the GIL (scipy's LAPACK: minutes for a dense decomposition) stalls the
    heartbeat thread: the owner's process decides on this host, not the heartbeat's age."""
    from benchmark.tracking.leases import GRACE_S, _process_start, holder_dead, process_owner

    me, started = process_owner(), _process_start(os.getpid())
    assert started is not None and abs(started - time.time()) < 3600  # this test process, started lately
    beat = started + 5.0  # a heartbeat of this process...
    assert not holder_dead(me, beat, now=beat + 100 * GRACE_S)  # ...two hours late: still alive
    # the same pid with a heartbeat from before the process started: a dead owner whose pid was reused
    assert holder_dead(me, started - 60.0, now=started)
    # an owner on another host: its heartbeat is all there is
    other = "another-host:" + me.split(":", 1)[1]
    assert not holder_dead(other, beat, now=beat + GRACE_S / 2)
    assert holder_dead(other, beat, now=beat + 2 * GRACE_S)


RACE = """
import time
from benchmark.tracking.leases import lease_table
table = lease_table({url!r})
time.sleep(max(0.0, {at} - time.time()))
print(table.try_claim("cell:race")[0], flush=True)
time.sleep(2)
"""


def test_of_processes_racing_for_one_key_exactly_one_wins(tmp_path: Path) -> None:
    from benchmark.tracking.leases import lease_table

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    lease_table(url)  # the table exists: the race is for the key, not the schema
    at = time.time() + 4
    procs = [start_py(RACE.format(url=url, at=at)) for _ in range(4)]
    wins = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert sorted(wins) == ["False", "False", "False", "True"]


# ---------------------------------------------------------------------------- item 6: dead runs
def test_running_runs_of_dead_processes_are_closed_live_ones_kept(tmp_path: Path) -> None:
    from benchmark.tracking.leases import lease_table, process_owner
    from benchmark.tracking.mlflow_store import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    table = lease_table(f"sqlite:///{tmp_path / 'optuna.db'}")
    exp = tracker.ensure_experiment("reprorec")
    child = start_py(HOLD.format(url=table.url))
    dead_owner = child.stdout.readline().split()[1]  # type: ignore[union-attr]
    child.send_signal(signal.SIGKILL)
    child.communicate()
    table.try_claim("cell:mine")
    cell = {S.RUN_TYPE: S.RUN_TYPE_CELL}
    dead = tracker.start_run(exp, "dead cell", tags={**cell, S.OWNER: dead_owner})
    trial = tracker.start_run(exp, "trial 0", tags={S.RUN_TYPE: S.RUN_TYPE_TRIAL}, parent_run_id=dead)
    live = tracker.start_run(exp, "live cell", tags={**cell, S.OWNER: process_owner()})
    legacy = tracker.start_run(exp, "no owner tag", tags=cell)
    closed = tracker.close_dead_runs(exp, table)
    assert closed == [(dead, "dead cell")]
    status = {r: tracker.client.get_run(r).info.status for r in (dead, trial, live, legacy)}
    assert status == {dead: "KILLED", trial: "KILLED", live: "RUNNING", legacy: "RUNNING"}
    assert "died" in tracker.client.get_run(dead).data.tags[S.END_REASON]
    assert table.holder("cell:abc") is None  # the dead holder's lease was pruned
    table.release("cell:mine")


# ---------------------------------------------------------------------------- item 7: summed costs
def test_a_resumed_tuning_cost_sums_the_trials_of_every_process(tmp_path: Path) -> None:
    from benchmark.tuning.space import parse_space
    from benchmark.tuning.tuner import tune
    from tests.unit.test_tuning import SPACE_X, Quadratic, _quadratic_validate, _tuner, random_matrix, spec_of

    train = random_matrix(20, 15, seed=0)
    spec, space = spec_of(Quadratic), parse_space(SPACE_X)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = tune(
        spec, space, train, _quadratic_validate, _tuner(n_trials=5), seed=3, study_name="c", storage=storage
    )
    second = tune(
        spec, space, train, _quadratic_validate, _tuner(n_trials=9), seed=3, study_name="c", storage=storage
    )
    per_trial = [float(s) for s in second.trials["fit_seconds"]]
    assert len(per_trial) == 9
    assert second.seconds == pytest.approx(sum(per_trial), rel=1e-12)
    assert second.seconds > first.seconds  # the first process's 5 trials are in it (they used to be dropped)
    assert second.seconds == pytest.approx(first.seconds + sum(per_trial[5:]), rel=1e-9)
