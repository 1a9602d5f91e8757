"""Local PostgreSQL + MLflow server: loopback only, reachable, stopped by PID."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import mlflow
import pytest

from benchmark import services

pytestmark = pytest.mark.services


def _listening_ports(pids: set[int]) -> list[tuple[str, int]]:
    """(address, port) of TCP sockets listened on by the given PIDs, from `ss -ltnp`."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            local = line.split()[3]
            addr, _, port = local.rpartition(":")
            found.append((addr, int(port)))
    return found


def _descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        p, pp = map(int, line.split())
        children.setdefault(pp, []).append(p)
    todo, seen = [pid], set()
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo.extend(children.get(p, []))
    return seen


def test_services_listen_on_loopback_only_and_serve_mlflow(svc):
    _, state = svc
    pg_pid = int((Path(state.pg_dir) / "data" / "postmaster.pid").read_text().split()[0])
    pids = _descendants(state.mlflow_pid) | {pg_pid}
    sockets = _listening_ports(pids)
    ports = {port for _, port in sockets}
    assert {state.pg_port, state.mlflow_port} <= ports
    assert all(addr == "127.0.0.1" for addr, _ in sockets), sockets

    client = mlflow.MlflowClient(tracking_uri=state.tracking_uri)
    exp = client.create_experiment("services-test")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "test/ndcg_at_10", 0.25)
    client.set_terminated(run.info.run_id)
    got = client.get_run(run.info.run_id)
    assert got.data.metrics["test/ndcg_at_10"] == 0.25
    assert got.info.status == "FINISHED"


def test_urls_file_is_private_and_status_redacts_the_password(svc):
    folder, state = svc
    urls_path = folder / "urls.json"
    assert oct(urls_path.stat().st_mode & 0o777) == "0o600"
    urls = json.loads(urls_path.read_text())
    assert state.pg_password in urls["optuna_storage"]
    text = json.dumps(services.status(folder))
    assert state.pg_password not in text
    assert "reprorec:***@127.0.0.1" in text


def test_redact_url_hides_only_the_password():
    assert services.redact_url("postgresql+psycopg2://bob:s3cret@127.0.0.1:5432/optuna") == (
        "postgresql+psycopg2://bob:***@127.0.0.1:5432/optuna"
    )
    assert services.redact_url("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert services.redact_url("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def test_down_stops_everything_by_pid(tmp_path: Path):
    try:
        services.pg_bin("initdb")
    except services.ServiceError as exc:
        pytest.skip(str(exc))
    folder = tmp_path / ".services"
    state = services.up(folder)
    pg_pid = int((Path(state.pg_dir) / "data" / "postmaster.pid").read_text().split()[0])
    pids = _descendants(state.mlflow_pid) | _descendants(pg_pid)
    assert services.down(folder)
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            # a zombie is dead: its status is only waiting to be collected
            stat = Path(f"/proc/{pid}/stat").read_text().split()[2]
            if stat != "Z":
                alive.append(pid)
        except ProcessLookupError:
            pass
    assert alive == []
    # nothing listens any more on either port
    for port in (state.pg_port, state.mlflow_port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, port
    assert not Path(state.pg_dir).exists()
    assert services.status(folder) == {"running": False, "dir": str(folder.resolve())}
