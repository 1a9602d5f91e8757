"""A signal that ends ``reprorec-dashboard`` or ``reprorec-services up`` leaves no server behind.

The MLflow servers run in their own session (a process group with their uvicorn workers), so no
terminal signal reaches them: the command that started them must stop them, whichever of SIGINT
(Ctrl-C), SIGTERM (``kill``, systemd) or SIGHUP (a closed terminal) ends it, and exit with the
conventional status 128 + the signal number.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import mlflow
import pytest

from benchmark import services
from benchmark.cli.dashboard import free_port
from benchmark.tracking import schema as S
from tests.services.test_services import _descendants

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie only waits for its status to be collected)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _group_members(pgids: Iterable[int]) -> set[int]:
    """Running processes of the given process groups."""
    pgids = set(pgids)
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) in pgids and fields[0] not in ("Z", "X"):
                found.add(int(stat.parent.name))
    return found


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _kill_groups(pgids: Iterable[int]) -> None:
    """Cleanup for a failing test: no server outlives it."""
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A sqlite store with the ``reprorec`` experiment and one finished cell run."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("reprorec"), tags={S.RUN_TYPE: "cell"})
    client.log_metric(run.info.run_id, "test/ndcg_at_10", 0.25)
    client.set_terminated(run.info.run_id)
    return uri


SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]


@pytest.mark.parametrize("signum", SIGNALS, ids=[s.name for s in SIGNALS])
def test_a_signal_to_the_dashboard_stops_its_whole_server(signum: int, tiny_store: str, tmp_path: Path):
    port = free_port()
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmark.cli.dashboard", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**ENV, "MLFLOW_TRACKING_URI": tiny_store},
            cwd=tmp_path,
        )
    pgids: set[int] = set()
    try:
        ready = _wait_until(lambda: "stop with Ctrl-C" in log.read_text() or proc.poll() is not None, 180)
        assert ready and proc.poll() is None, log.read_text()
        assert _port_open(port)
        tree = _descendants(proc.pid) - {proc.pid}
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                pgids.add(os.getpgid(pid))
        assert len(tree) >= 2, tree  # mlflow server + uvicorn (+ its worker)
        assert os.getpgid(proc.pid) not in pgids  # the server is in a group of its own

        proc.send_signal(signum)  # to the dashboard only, as `kill PID` or systemd would
        rc = proc.wait(120)  # generous: under a loaded machine the server takes its time to stop
        # The dashboard returns only once its server stopped: nothing may be left even now, but
        # allow a moment for processes that the kernel still tears down.
        _wait_until(lambda: not ({p for p in tree if _running(p)} | _group_members(pgids)), 5)
        left = {
            "exit status": rc,
            "descendants left": {p for p in tree if _running(p)} | _group_members(pgids),
            "port open": _port_open(port),
        }
        assert left == {"exit status": 128 + signum, "descendants left": set(), "port open": False}, (
            log.read_text()
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _kill_groups(pgids)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_while_services_start_stops_what_was_started(signum: int, tmp_path: Path):
    try:
        services.pg_bin("initdb")
    except services.ServiceError as exc:
        pytest.skip(str(exc))
    folder = tmp_path / ".services"
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmark.cli.services", "up", "--dir", str(folder)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ENV,
        )
    state: dict[str, Any] = {}

    def mlflow_started() -> bool:
        # PostgreSQL runs and the MLflow server was just started: it takes seconds to be healthy.
        with contextlib.suppress(OSError, ValueError):
            state.update(json.loads((folder / "state.json").read_text()))
        return bool(state.get("mlflow_pid")) or proc.poll() is not None

    pg_pid = 0
    try:
        assert _wait_until(mlflow_started, 180) and proc.poll() is None, log.read_text()
        assert not (folder / "urls.json").exists(), "up finished before the signal: nothing tested"
        mlflow_pid, pg_port, pg_dir = state["mlflow_pid"], state["pg_port"], Path(state["pg_dir"])
        pg_pid = int((pg_dir / "data" / "postmaster.pid").read_text().split()[0])
        assert _running(pg_pid) and _port_open(pg_port)

        proc.send_signal(signum)
        rc = proc.wait(120)
        left = {
            "exit status": rc,
            "MLflow server processes": _group_members([mlflow_pid]),
            "PostgreSQL runs": _running(pg_pid),
            "ports open": [p for p in (pg_port, state["mlflow_port"]) if _port_open(p)],
            "files": [p.name for p in (pg_dir, folder / "state.json", folder / "urls.json") if p.exists()],
        }
        assert left == {
            "exit status": 128 + signum,
            "MLflow server processes": set(),
            "PostgreSQL runs": False,
            "ports open": [],
            "files": [],
        }, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if (folder / "state.json").exists():
            services.down(folder)  # what a failing run may have left
        if pg_pid and _running(pg_pid):
            os.kill(pg_pid, signal.SIGKILL)
