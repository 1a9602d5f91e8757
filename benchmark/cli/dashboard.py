"""``reprorec-dashboard``: the MLflow UI over the project's tracking store, on loopback only.

Equivalent documented command::

    mlflow server --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000 --workers 1

(except that the store URI goes to the server through ``$MLFLOW_BACKEND_STORE_URI``, never on its
command line, which every local user sees with ``ps``: a database URI may hold a password).

The printed link opens the classic *runs* view of the experiment (``#/experiments/<id>/runs``),
where the sweep run is the parent of its nested cell runs, not MLflow 3's GenAI overview.

The command runs until the server exits or a signal ends it: Ctrl-C (SIGINT), SIGTERM (``kill``,
systemd) or SIGHUP (a closed terminal). Either way the server and all its worker processes are
stopped before it exits, with status 128 + the signal number (130, 143, 129), or 1 when the server
exited by itself. A signal ignored at start stays ignored (``nohup`` keeps it running).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from benchmark.redaction import redact_text, redact_url
from benchmark.services import StopSignals, Terminated, stop_process_group
from benchmark.tracking import schema as S
from benchmark.tracking.ui import CELLS_FILTER, runs_url

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port that is free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


#: MLflow's UI reads a "shared view" (filter + visible columns) from this experiment tag prefix.
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
CELLS_VIEW = "reprorec-cells"
VIEW_TAGS = (S.MODEL, S.DATASET, S.SEED, S.FP_SPLIT, S.GIT_COMMIT)


def install_cells_view(tracking_uri: str, experiment_id: str, cutoff: int = 10) -> str:
    """Store a shared view of the cell runs with their main test metrics and fingerprints as columns.

    MLflow keeps the columns a person picks per browser; a shared view (an experiment tag
    ``mlflow.sharedViewState.<key>``, opened with ``?viewStateShareKey=<key>``) gives every reader
    the same readable table: one row per ``model · dataset · seed`` with ``test/<metric>_at_<cutoff>``
    and the split fingerprint. Writing it only adds/updates that one experiment tag.

    Returns:
        The view key to pass to :func:`runs_url`.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    cells = client.search_runs([experiment_id], filter_string=CELLS_FILTER, max_results=200)
    suffix = f"_at_{cutoff}"
    metrics = sorted(
        {k for r in cells for k in r.data.metrics if k.startswith(S.TEST_PREFIX) and k.endswith(suffix)}
    )
    main = next((m for m in metrics if m == f"{S.TEST_PREFIX}ndcg{suffix}"), metrics[0] if metrics else "")
    state = {
        "searchFilter": CELLS_FILTER,
        # Sorting by a metric (not start time) makes MLflow list the cells flat, not under their
        # collapsed sweep row: the view reads as a leaderboard.
        "orderByKey": f"metrics.`{main}`" if main else "attributes.start_time",
        "orderByAsc": False,
        "selectedColumns": [f"metrics.`{m}`" for m in metrics] + [f"tags.`{t}`" for t in VIEW_TAGS],
    }
    client.set_experiment_tag(experiment_id, SHARED_VIEW_PREFIX + CELLS_VIEW, json.dumps(state))
    return CELLS_VIEW


@dataclass
class Dashboard:
    """A running ``mlflow server`` started by us (stopped by its PID / process group)."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until the server answers ``/health`` (raises with its log when it died or timed out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited with {self.process.returncode}:\n{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"mlflow server at {self.url} not ready after {timeout:.0f}s:\n{self._log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the server's process group, then kill what lingers; return when none is left.

        The whole group, not only its leader: the uvicorn supervisor and its workers hold the port,
        and outlive the ``mlflow server`` process for a moment (or for good, if it was killed).
        """
        stop_process_group(self.process.pid, timeout, reap=self.process.poll)
        # the group has no live member, but the leader may still be exiting (not yet a zombie that
        # poll() can collect): wait for its status rather than poll once
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return redact_text(self.log_path.read_text(errors="replace")[-3000:])


def start_dashboard(
    tracking_uri: str, *, port: int | None = None, log_path: Path | None = None, workers: int = 1
) -> Dashboard:
    """Start ``mlflow server`` on 127.0.0.1 over ``tracking_uri`` (a database URI or a folder).

    Args:
        tracking_uri: the backend store (``sqlite:///mlflow.db``, ``postgresql://...``, ``./mlruns``).
        port: the port (default: a free one).
        log_path: where the server's output goes (default: discarded).
        workers: server worker processes (one is plenty for a person browsing).

    Returns:
        The running server; call :meth:`Dashboard.wait_ready` then :meth:`Dashboard.stop`.
    """
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115  (handed to the child)
    # `mlflow server` reads --backend-store-uri from $MLFLOW_BACKEND_STORE_URI: a database URI's
    # password stays off the command line (a process's environment is private to its user).
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_BACKEND_STORE_URI": tracking_uri}
    # A new session: the server and its workers form one process group that stop() ends.
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return Dashboard(proc, f"http://{HOST}:{port}", log_path)


def _experiment_id(tracking_uri: str, name: str) -> str | None:
    from mlflow import MlflowClient

    exp = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(name)
    return exp.experiment_id if exp else None


def _has_password(uri: str) -> bool:
    try:
        return urlsplit(uri).password is not None
    except ValueError:
        return False


def _serve(dash: Dashboard, uri: str, experiment: str) -> int:
    """Print the links once the server is ready, then wait for it; 1 when it exits by itself."""
    dash.wait_ready()
    exp_id = _experiment_id(uri, experiment)
    if exp_id is None:
        print(f"MLflow UI at {dash.url} (experiment {experiment!r} not found yet)", flush=True)
    else:
        print(f"MLflow UI, runs of {experiment!r} (sweeps with nested cells): {runs_url(dash.url, exp_id)}")
        print(
            "cell runs with test metrics and fingerprints as columns: "
            f"{runs_url(dash.url, exp_id, view=install_cells_view(uri, exp_id))}",
            flush=True,
        )
    print(f"server PID {dash.pid}; stop with Ctrl-C", flush=True)
    code = dash.process.wait()
    print(f"reprorec-dashboard: the MLflow server exited with code {code}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="reprorec-dashboard",
        description="Start the MLflow UI on 127.0.0.1 over the project's tracking store "
        "and print the runs-view URL.",
        epilog="Ctrl-C, SIGTERM and SIGHUP stop the server and all its workers; the exit status is "
        "then 128 + the signal number (130, 143, 129), 1 when the server exited by itself.",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="backend store (default: $MLFLOW_TRACKING_URI or MLflow's default sqlite:///mlflow.db); "
        "give a URI with a password through $MLFLOW_TRACKING_URI: command lines are public",
    )
    p.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--experiment", default="reprorec", help="experiment whose runs view is printed")
    args = p.parse_args(argv)
    if args.tracking_uri and _has_password(args.tracking_uri):
        print(
            "reprorec-dashboard: warning: --tracking-uri holds a password, which every local user "
            "can read in this command line (ps); set MLFLOW_TRACKING_URI instead",
            file=sys.stderr,
        )
    import mlflow

    uri = args.tracking_uri or mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        exp_id = _experiment_id(uri, args.experiment)
        shown = redact_url(uri)
        print(f"{shown} is already a tracking server; open " + (runs_url(shown, exp_id) if exp_id else shown))
        return 0
    # SIGTERM/SIGHUP would otherwise end Python at once, without the `finally` below, and leave the
    # server (its own session, so no terminal signal reaches it) running with the port open.
    with StopSignals() as stop:
        dash = start_dashboard(uri, port=args.port)  # a signal meanwhile is raised just below
        try:
            with stop.armed():
                return _serve(dash, uri, args.experiment)
        except Terminated as exc:
            return exc.exit_code
        finally:
            dash.stop()  # further signals are only recorded: the stop is not cut short


if __name__ == "__main__":
    sys.exit(main())
