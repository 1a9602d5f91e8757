"""Local PostgreSQL + MLflow tracking server, for shared tracking/tuning and for the tests.

``reprorec-services up`` starts, bound to 127.0.0.1 only:

* a PostgreSQL server (Debian's ``postgresql`` package) initialised into ``<dir>/pg`` on a free
  port, with password authentication and two databases, ``mlflow`` (tracking store) and ``optuna``
  (tuning studies shared by several workers);
* an MLflow tracking server on that PostgreSQL store, with an artifact folder ``<dir>/artifacts``.

The URLs (with the generated password) are written to ``<dir>/urls.json`` (mode 0600), which
``reprorec`` reads for ``tracking=server`` / ``tuner.storage=services``. ``down`` stops both by
PID; ``status`` says what runs. Every URL printed or logged goes through :func:`redact_url`.

The password is never on a command line (``ps`` shows every process's arguments to every local
user) nor in any other file: ``initdb`` reads it from a 0600 file removed right after, ``createdb``
from ``$PGPASSWORD``, and the MLflow server gets its backend store URI from
``$MLFLOW_BACKEND_STORE_URI`` (a process's environment is readable only by its owner and root).
``urls.json`` is the one file that holds it; ``state.json`` (PIDs, ports) does not.

PostgreSQL refuses to run as root; when started by root the server runs as the ``postgres``
system user (``runuser``), which owns the data folder.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from benchmark.errors import ReproRecError
from benchmark.io import atomic_write_text
from benchmark.redaction import redact_text, redact_url

DEFAULT_DIR = Path(".services")
LOOPBACK = "127.0.0.1"
PG_USER = "reprorec"


class ServiceError(ReproRecError):
    """A local service could not be started, reached or stopped."""


#: The signals that end a command: Ctrl-C, ``kill``/systemd, a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """A stop signal arrived (like :class:`KeyboardInterrupt`, for SIGTERM and SIGHUP too).

    A ``BaseException`` so that ``except Exception`` blocks do not swallow it, and cleanup in
    ``finally`` / ``except BaseException`` blocks (stopping the servers started so far) runs.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell convention for a command ended by a signal: 128 + the signal number."""
        return 128 + self.signum


class StopSignals:
    """Turn SIGINT/SIGTERM/SIGHUP into :class:`Terminated`, so that a command stops what it started.

    Python's default for SIGTERM and SIGHUP ends the interpreter at once, without ``finally``
    blocks: the servers a command started in their own session would keep running. Used as a
    context manager (main thread only), it installs handlers that only *record* a signal; inside
    :meth:`armed` the first signal raises :class:`Terminated` (at once if one came before). Later
    signals are only recorded, so that the cleanup after the first one is not cut short.

    A signal that was ignored when the command started (``nohup`` ignores SIGHUP) stays ignored.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._armed = False
        self._previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}

    def __enter__(self) -> StopSignals:
        for signum in STOP_SIGNALS:
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN:
                continue
            # None: a handler not set from Python, which cannot be put back; the default it is.
            self._previous[signum] = signal.SIG_DFL if previous is None else previous
            signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._armed = False
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self._armed:
            self._armed = False
            raise Terminated(signum)

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        """A block that a stop signal interrupts with :class:`Terminated`."""
        if self.signum is not None:
            raise Terminated(self.signum)
        self._armed = True
        try:
            yield
        finally:
            self._armed = False


def _group_alive(pgid: int) -> bool:
    """Whether a process of the process group ``pgid`` still runs (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    # killpg also succeeds for zombies, which only wait for a parent to collect their status
    # (an orphan's parent may be an init that never does): /proc tells them apart.
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def stop_process_group(pgid: int, timeout: float = 15.0, reap: Callable[[], object] | None = None) -> None:
    """SIGTERM the process group ``pgid`` and wait until all of it ended; SIGKILL what lingers.

    Waiting for the leader alone is not enough: a server's workers may outlive it for a moment,
    still holding the port.

    Args:
        pgid: the group (the PID of its leader, started with ``start_new_session=True``).
        timeout: seconds to wait after SIGTERM, and again after SIGKILL.
        reap: collects the leader's exit status when it is our child (``Popen.poll``); default:
            ``waitpid`` on ``pgid`` when it is our child.
    """

    def _reap() -> None:
        if reap is not None:
            reap()
        else:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pgid, os.WNOHANG)

    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + timeout
        while True:
            _reap()
            if not _group_alive(pgid):
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)


#: ``tracking.uri`` / ``tuner.storage`` value meaning "the services' URL" (``services:<folder>`` too).
SERVICES = "services"
#: The state folder that ``services`` refers to (set by the launching process for its jobs).
ENV_SERVICES_DIR = "REPROREC_SERVICES_DIR"


def services_folder(value: str = SERVICES) -> Path:
    """The state folder of ``services[:<folder>]`` (default ``$REPROREC_SERVICES_DIR``, else .services)."""
    folder = value[len(SERVICES) + 1 :] if value.startswith(SERVICES + ":") else ""
    return Path(folder or os.environ.get(ENV_SERVICES_DIR) or DEFAULT_DIR).resolve()


def resolve_service_url(value: str, key: str) -> str:
    """``value`` itself, or for ``services[:<folder>]`` the URL ``key`` of that folder's ``urls.json``."""
    if value != SERVICES and not value.startswith(SERVICES + ":"):
        return value
    return read_urls(services_folder(value))[key]


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.2)
    raise ServiceError(f"nothing answered on {host}:{port} within {timeout:.0f} s")


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL server binary (Debian keeps them out of PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise ServiceError(
            f"PostgreSQL's {name} not found: install Debian's postgresql package "
            "(apt-get install -y postgresql)"
        )
    return candidates[-1]


@dataclass
class ServicesState:
    """What ``up`` started: enough to reach and to stop it.

    ``pg_password`` is not written to ``state.json``: :func:`read_state` takes it from
    ``urls.json``, the one file meant to hold it.
    """

    dir: str
    pg_dir: str
    pg_port: int
    pg_password: str
    mlflow_port: int
    mlflow_pid: int
    started_at: float

    @property
    def pg_url(self) -> str:
        return f"postgresql+psycopg2://{PG_USER}:{self.pg_password}@{LOOPBACK}:{self.pg_port}"

    @property
    def tracking_uri(self) -> str:
        return f"http://{LOOPBACK}:{self.mlflow_port}"

    @property
    def optuna_storage(self) -> str:
        return f"postgresql+psycopg2://{PG_USER}:{self.pg_password}@{LOOPBACK}:{self.pg_port}/optuna"

    def urls(self) -> dict[str, str]:
        return {
            "tracking_uri": self.tracking_uri,
            "optuna_storage": self.optuna_storage,
            "mlflow_backend_store": f"{self.pg_url}/mlflow",
        }


def _as_pg_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _run(cmd: list[str], what: str, timeout: float = 120) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip()
        raise ServiceError(f"{what} failed (exit {proc.returncode}): {detail}")


def _state_file(folder: Path) -> Path:
    return folder / "state.json"


def _write_state(state: ServicesState) -> None:
    path = _state_file(Path(state.dir))
    data = asdict(state)
    del data["pg_password"]  # only urls.json holds the password
    atomic_write_text(path, json.dumps(data, indent=2))
    os.chmod(path, 0o600)


def read_state(folder: Path = DEFAULT_DIR) -> ServicesState | None:
    """What ``up`` started in ``folder`` (None when nothing), its password from ``urls.json``."""
    path = _state_file(folder)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    data.pop("pg_password", None)  # written there by older versions
    password = ""
    # urls.json is written last: a start under way or one that failed has no password to give.
    with contextlib.suppress(ServiceError, OSError, KeyError, ValueError):
        password = urlsplit(read_urls(folder)["optuna_storage"]).password or ""
    return ServicesState(**data, pg_password=password)


def read_urls(folder: Path = DEFAULT_DIR) -> dict[str, str]:
    """The URLs written by ``up`` (raises ServiceError when the services are not up)."""
    path = folder / "urls.json"
    if not path.exists():
        raise ServiceError(f"{path} not found: start the services with `reprorec-services up`")
    return dict(json.loads(path.read_text()))


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only (0600 from the start: no window with 0644)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def up(folder: Path = DEFAULT_DIR, *, timeout: float = 90) -> ServicesState:
    """Start PostgreSQL and the MLflow server (loopback only); return their state.

    Whatever was started is stopped again when starting fails or is interrupted (an exception,
    :class:`KeyboardInterrupt`, :class:`Terminated`). No spawned command line holds the password.
    """
    folder = folder.resolve()
    existing = read_state(folder)
    if existing is not None and existing.mlflow_pid and _pid_alive(existing.mlflow_pid):
        return existing
    if existing is not None:
        down(folder)  # leftovers of a start that died half-way (e.g. SIGKILL): stop them first
    folder.mkdir(parents=True, exist_ok=True)
    artifacts = folder / "artifacts"
    artifacts.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        # The server runs as the postgres system user, which may not reach a folder below a
        # private parent (a 0700 temp or home folder): give it a private folder of its own.
        pg_root = Path(tempfile.mkdtemp(prefix="reprorec-pg-"))
        shutil.chown(pg_root, "postgres")
    else:
        pg_root = folder / "postgres"
        shutil.rmtree(pg_root, ignore_errors=True)
        pg_root.mkdir()
    password = secrets.token_urlsafe(18)
    state = ServicesState(str(folder), str(pg_root), free_port(), password, 0, 0, time.time())
    # Written before anything starts, so that `down` (here on failure, or by hand after a
    # SIGKILL) finds what to stop and to remove.
    _write_state(state)
    try:
        _start_postgres(state, timeout)
        _start_mlflow(state, timeout)
    except BaseException:
        down(folder)
        raise
    urls = folder / "urls.json"
    atomic_write_text(urls, json.dumps(state.urls(), indent=2))  # a mkstemp file: 0600 from the start
    os.chmod(urls, 0o600)
    return state


def _start_postgres(state: ServicesState, timeout: float = 90) -> None:
    """initdb (the password read from a 0600 file), start the server, create the two databases."""
    pg_root = Path(state.pg_dir)
    pgdata, sock, pwfile = pg_root / "data", pg_root / "sock", pg_root / "pwfile"
    sock.mkdir()
    _write_private(pwfile, state.pg_password + "\n")
    if os.geteuid() == 0:
        shutil.chown(sock, "postgres")
        shutil.chown(pwfile, "postgres")
    try:
        _run(
            _as_pg_user(
                [
                    pg_bin("initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    PG_USER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ]
            ),
            "initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)
    opts = f"-c listen_addresses={LOOPBACK} -p {state.pg_port} -k {sock}"
    _run(
        _as_pg_user(
            [
                pg_bin("pg_ctl"),
                "-D",
                str(pgdata),
                "-l",
                str(pg_root / "postgres.log"),
                "-o",
                opts,
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ]
        ),
        "starting PostgreSQL",
        timeout=timeout + 10,
    )
    # libpq reads $PGPASSWORD: the password stays off createdb's command line.
    env = {**os.environ, "PGPASSWORD": state.pg_password}
    for db in ("mlflow", "optuna"):
        proc = subprocess.run(
            [pg_bin("createdb"), "-h", LOOPBACK, "-p", str(state.pg_port), "-U", PG_USER, db],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        if proc.returncode != 0:
            raise ServiceError(f"createdb {db} failed: {redact_text(proc.stderr.strip())}")


def _start_mlflow(state: ServicesState, timeout: float) -> None:
    """Start the MLflow server on the ``mlflow`` database and wait until it is healthy."""
    folder = Path(state.dir)
    state.mlflow_port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": "",
        # `mlflow server` reads --backend-store-uri from this variable (and passes it on to its
        # uvicorn workers the same way): a URI with the password never shows in `ps`.
        "MLFLOW_BACKEND_STORE_URI": f"{state.pg_url}/mlflow",
    }
    with open(folder / "mlflow.log", "ab") as log:
        proc_ml = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                LOOPBACK,
                "--port",
                str(state.mlflow_port),
                "--artifacts-destination",
                str(folder / "artifacts"),
                "--workers",
                "2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group (with its uvicorn workers), which `down` stops as a whole.
            start_new_session=True,
            env=env,
        )
    state.mlflow_pid = proc_ml.pid
    _write_state(state)
    _wait_http(f"{state.tracking_uri}/health", timeout, proc_ml)


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"MLflow server exited with code {proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise ServiceError(f"MLflow server at {redact_url(url)} not healthy after {timeout:.0f} s: {last}")


def down(folder: Path = DEFAULT_DIR) -> bool:
    """Stop the MLflow server (its whole process group) and PostgreSQL; True if anything ran.

    Returns only once no process of the MLflow server's group is left and PostgreSQL stopped, so
    that nothing listens on their ports any more.
    """
    folder = folder.resolve()
    state = read_state(folder)
    stopped = False
    if state is not None and state.mlflow_pid and _group_alive(state.mlflow_pid):
        stop_process_group(state.mlflow_pid)
        stopped = True
    if state is not None:
        pgdata = Path(state.pg_dir) / "data"
        if (pgdata / "postmaster.pid").exists():
            subprocess.run(
                _as_pg_user([pg_bin("pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"]),
                capture_output=True,
                timeout=60,
            )
            stopped = True
        shutil.rmtree(state.pg_dir, ignore_errors=True)
    for name in ("state.json", "urls.json"):
        (folder / name).unlink(missing_ok=True)
    return stopped


def status(folder: Path = DEFAULT_DIR) -> dict[str, object]:
    """What runs, with redacted URLs."""
    folder = folder.resolve()
    state = read_state(folder)
    if state is None:
        return {"running": False, "dir": str(folder)}
    pg_up = (Path(state.pg_dir) / "data" / "postmaster.pid").exists()
    return {
        "running": _pid_alive(state.mlflow_pid) and pg_up,
        "dir": str(folder),
        "postgresql": {"port": state.pg_port, "up": pg_up},
        "mlflow": {
            "pid": state.mlflow_pid,
            "up": _pid_alive(state.mlflow_pid),
            "tracking_uri": state.tracking_uri,
        },
        "optuna_storage": redact_url(state.optuna_storage),
    }
