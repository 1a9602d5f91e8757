"""Local PostgreSQL + MLflow tracking server, for shared tracking/tuning and for the tests.

``reprorec-services up`` starts, bound to 127.0.0.1 only:

* a PostgreSQL server (Debian's ``postgresql`` package) initialised into ``<dir>/pg`` on a free
  port, with password authentication and two databases, ``mlflow`` (tracking store) and ``optuna``
  (tuning studies shared by several workers);
* an MLflow tracking server on that PostgreSQL store, with an artifact folder ``<dir>/artifacts``.

The URLs (with the generated password) are written to ``<dir>/urls.json`` (mode 0600), which
``reprorec`` reads for ``tracking=server`` / ``tuner.storage=services``. ``down`` stops both by
PID; ``status`` says what runs. Every URL printed or logged goes through :func:`redact_url`.

PostgreSQL refuses to run as root; when started by root the server runs as the ``postgres``
system user (``runuser``), which owns the data folder.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
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
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from benchmark.errors import ReproRecError
from benchmark.io import atomic_write_text

DEFAULT_DIR = Path(".services")
LOOPBACK = "127.0.0.1"
PG_USER = "reprorec"


class ServiceError(ReproRecError):
    """A local service could not be started, reached or stopped."""


def redact_url(url: str) -> str:
    """Replace the password of a URL by ``***`` (URLs without a password are unchanged)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*):[^\s/@]*@")


def redact_text(text: str) -> str:
    """Redact the password of every URL in a text (a command line, a resolved config, an error)."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('head')}:***@", text)


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
    """What ``up`` started: enough to reach and to stop it."""

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
    atomic_write_text(path, json.dumps(asdict(state), indent=2))
    os.chmod(path, 0o600)


def read_state(folder: Path = DEFAULT_DIR) -> ServicesState | None:
    path = _state_file(folder)
    if not path.exists():
        return None
    return ServicesState(**json.loads(path.read_text()))


def read_urls(folder: Path = DEFAULT_DIR) -> dict[str, str]:
    """The URLs written by ``up`` (raises ServiceError when the services are not up)."""
    path = folder / "urls.json"
    if not path.exists():
        raise ServiceError(f"{path} not found: start the services with `reprorec-services up`")
    return dict(json.loads(path.read_text()))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def up(folder: Path = DEFAULT_DIR, *, timeout: float = 90) -> ServicesState:
    """Start PostgreSQL and the MLflow server (loopback only); return their state."""
    folder = folder.resolve()
    existing = read_state(folder)
    if existing is not None and existing.mlflow_pid and _pid_alive(existing.mlflow_pid):
        return existing
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
    pgdata, sock, pwfile = pg_root / "data", pg_root / "sock", pg_root / "pwfile"
    sock.mkdir()
    password = secrets.token_urlsafe(18)
    atomic_write_text(pwfile, password + "\n")
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
    pg_port = free_port()
    state = ServicesState(str(folder), str(pg_root), pg_port, password, 0, 0, time.time())
    _write_state(state)
    try:
        opts = f"-c listen_addresses={LOOPBACK} -p {pg_port} -k {sock}"
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
        env = {**os.environ, "PGPASSWORD": password}
        for db in ("mlflow", "optuna"):
            proc = subprocess.run(
                [pg_bin("createdb"), "-h", LOOPBACK, "-p", str(pg_port), "-U", PG_USER, db],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            if proc.returncode != 0:
                raise ServiceError(f"createdb {db} failed: {proc.stderr.strip()}")
        state.mlflow_port = free_port()
        backend = f"{state.pg_url}/mlflow"
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
                    "--backend-store-uri",
                    backend,
                    "--artifacts-destination",
                    str(artifacts),
                    "--workers",
                    "2",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "MLFLOW_TRACKING_URI": ""},
            )
        state.mlflow_pid = proc_ml.pid
        _write_state(state)
        _wait_http(f"{state.tracking_uri}/health", timeout, proc_ml)
    except BaseException:
        down(folder)
        raise
    urls = folder / "urls.json"
    atomic_write_text(urls, json.dumps(state.urls(), indent=2))
    os.chmod(urls, 0o600)
    return state


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
    """Stop the MLflow server (by PID, whole process group) and PostgreSQL; True if anything ran."""
    folder = folder.resolve()
    state = read_state(folder)
    stopped = False
    if state is not None and state.mlflow_pid and _pid_alive(state.mlflow_pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(state.mlflow_pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _pid_alive(state.mlflow_pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(state.mlflow_pid, os.WNOHANG)
            time.sleep(0.2)
        if _pid_alive(state.mlflow_pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.mlflow_pid, signal.SIGKILL)
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
