"""No password on any command line, nor in any file but the 0600 ``urls.json``.

A process's arguments are public (every local user reads ``/proc/<pid>/cmdline``, ``ps``); its
environment is readable by its owner and root only. The services and the dashboard are started
with a planted, distinctive password, and every command line seen meanwhile and every file written
is searched for it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from benchmark import services
from benchmark.cli.dashboard import free_port
from tests.services.test_services import _descendants

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
#: Letters and digits only: valid in a URL as is, so the plaintext is what any leak would show.
PLANTED = "PlantedPw" + secrets.token_hex(12)


def _cmdline_hits(secret: bytes) -> set[str]:
    """Command lines (of any process on the machine) that contain ``secret``."""
    hits = set()
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            data = path.read_bytes()
            if secret in data:
                shown = data.replace(b"\0", b" ").decode(errors="replace")
                hits.add(f"pid {path.parent.name}: {shown}")
    return hits


class _CmdlineWatcher:
    """Scans every command line on the machine over and over, to catch short-lived processes too."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.hits: set[str] = set()
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.hits |= _cmdline_hits(self.secret)
            self.scans += 1
            self._stop.wait(0.01)

    @contextlib.contextmanager
    def running(self) -> Iterator[_CmdlineWatcher]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def _file_hits(roots: list[Path], secret: bytes) -> dict[Path, int]:
    """{file: its mode} of the files below ``roots`` that contain ``secret``."""
    hits = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    if secret in path.read_bytes():
                        hits[path] = path.stat().st_mode & 0o777
    return hits


def _wait_for(what: str, check, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout:.0f} s (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def test_no_password_on_a_command_line_or_in_a_file_but_the_private_urls_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    try:
        services.pg_bin("initdb")
    except services.ServiceError as exc:
        pytest.skip(str(exc))
    secret = PLANTED.encode()
    monkeypatch.setattr(secrets, "token_urlsafe", lambda nbytes=None: PLANTED)
    # Whatever the servers write to their working folder or home lands in tmp_path (searched).
    # Not $TMPDIR: the PostgreSQL folder of a root run must stay outside pytest's 0700 folders.
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    for d in (cwd, home):
        d.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(home))
    # Every command this process starts (initdb, pg_ctl, createdb, mlflow server, the dashboard).
    spawned: list[str] = []
    real_init = subprocess.Popen.__init__

    def spy(self: subprocess.Popen[bytes], args: object, *a: object, **kw: object) -> None:
        spawned.append(args if isinstance(args, str) else " ".join(map(str, args)))
        real_init(self, args, *a, **kw)

    monkeypatch.setattr(subprocess.Popen, "__init__", spy)

    folder = tmp_path / ".services"
    dash = None
    dash_groups: set[int] = set()
    with _CmdlineWatcher(secret).running() as watcher:
        try:
            state = services.up(folder)
            assert state.pg_password == PLANTED  # the planted password is the one in use
            # Something in every store: a run with a metric and an artifact, on the tracking server.
            client = mlflow.MlflowClient(tracking_uri=state.tracking_uri)
            run = client.create_run(client.create_experiment("secrets-test"))
            client.log_metric(run.info.run_id, "test/ndcg_at_10", 0.5)
            client.log_text(run.info.run_id, "hello", "notes/hello.txt")
            client.set_terminated(run.info.run_id)

            # The dashboard over a PostgreSQL database with that password, given the documented
            # way: $MLFLOW_TRACKING_URI (an option would put it on the dashboard's own command line).
            createdb = [services.pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(state.pg_port)]
            subprocess.run(
                [*createdb, "-U", services.PG_USER, "dashboard"],
                env={**os.environ, "PGPASSWORD": PLANTED},
                check=True,
                capture_output=True,
            )
            uri = f"postgresql+psycopg2://{services.PG_USER}:{PLANTED}@127.0.0.1:{state.pg_port}/dashboard"
            log = tmp_path / "dashboard.log"
            port = free_port()
            with open(log, "wb") as out:
                dash = subprocess.Popen(
                    [sys.executable, "-m", "benchmark.cli.dashboard", "--port", str(port)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={
                        **os.environ,
                        "MLFLOW_TRACKING_URI": uri,
                        "PYTHONPATH": str(REPO),
                        "TMPDIR": str(tmp_path),
                    },
                )
            _wait_for("dashboard ready", lambda: "stop with Ctrl-C" in log.read_text(), 180, dash, log)
            time.sleep(1)  # let the watcher see the servers' workers at least once more
            dash_groups = {os.getpgid(p) for p in _descendants(dash.pid) - {dash.pid}}

            cmdlines = watcher.hits | _cmdline_hits(secret)
            files = _file_hits([tmp_path, Path(state.pg_dir)], secret)
        finally:
            if dash is not None and dash.poll() is None:
                dash.send_signal(signal.SIGTERM)
                try:
                    dash.wait(60)
                except subprocess.TimeoutExpired:
                    dash.kill()
            for pgid in dash_groups:  # what a dashboard that failed to stop its server left
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
            services.down(folder)

    assert watcher.scans > 10
    urls = folder.resolve() / "urls.json"
    # No command line holds the password, and one file only: urls.json, private to its owner (not
    # logs, state, artifacts, PostgreSQL's data folder and log, the servers' working folders).
    assert {
        "spawned by this process": [c for c in spawned if PLANTED in c],
        "seen on the machine": cmdlines,
        "files": {str(p): oct(m) for p, m in files.items()},
    } == {"spawned by this process": [], "seen on the machine": set(), "files": {str(urls): "0o600"}}
