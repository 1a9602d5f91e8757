"""Several processes tuning one cell together (``tuner.workers=N``).

The cell's own process (a Hydra job: local, joblib, submitit or SLURM) is worker 0 and the cell's
coordinator. Once its study is cleaned of a dead run's trials it starts ``N - 1`` helper processes
(``python -m benchmark.tuning.worker JOB INDEX``) on the same machine; each opens its own
connections to the Optuna storage and the MLflow store, attaches to the cell's one study and logs
each of its trials as a child run of the cell run it was given. :mod:`benchmark.tuning.parallel`
splits the budget among them without exceeding it, and fails the trial of a worker that died (its
lease's heartbeat stops, or its process is gone) so that the others run a replacement.

The refit and the test evaluation run exactly once, in worker 0, after its :func:`tune` returned:
``tune`` returns only once ``n_trials`` counted trials have *finished* (it waits for the running
trials of the helpers), so the budget is spent whichever worker finished last, and no lock or claim
is needed. Helpers exit when the budget is spent, and also when worker 0 dies (they watch their
parent), so a killed cell leaves no stray process; its rerun then resumes the study.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from types import TracebackType

from benchmark.redaction import redact_text
from benchmark.threads import limit_threads, thread_share
from benchmark.tracking.mlflow_store import Tracker
from benchmark.tuning.prepare import PreparedCell
from benchmark.tuning.record import CellRecorder
from benchmark.tuning.steps import tune_cell

#: Seconds worker 0 waits for its helpers to notice the spent budget before stopping them.
JOIN_TIMEOUT_S = 60.0


class WorkerPool:
    """The ``workers - 1`` helper processes of a cell (a context manager; ``start`` is ``on_ready``)."""

    def __init__(self, prepared: PreparedCell, recorder: CellRecorder) -> None:
        self.prepared = prepared
        self.job = {
            "tracking_uri": recorder.tracker.uri,
            "experiment_id": recorder.experiment_id,
            "cell_run_id": recorder.run_id,
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.folder: Path | None = None

    @property
    def n_helpers(self) -> int:
        cfg = self.prepared.config
        if len(self.prepared.space) == 0 or cfg.tuner.n_trials <= 1:
            return 0
        return max(0, cfg.tuner.workers - 1)

    def start(self) -> None:
        """Start the helpers (called by worker 0 once the study is clean)."""
        if self.n_helpers == 0:
            return
        # The job holds the config, whose storage URL may carry a password: a private folder.
        self.folder = Path(tempfile.mkdtemp(prefix="reprorec-workers-"))
        job = self.folder / "job.pkl"
        with open(job, "wb") as f:
            pickle.dump({**self.job, "prepared": self.prepared}, f, protocol=pickle.HIGHEST_PROTOCOL)
        for i in range(1, self.n_helpers + 1):
            proc = subprocess.Popen([sys.executable, "-m", "benchmark.tuning.worker", str(job), str(i)])
            self.procs.append(proc)
        pids = ", ".join(str(p.pid) for p in self.procs)
        name = self.prepared.name
        print(f"[reprorec] {name}: {len(self.procs)} helper worker(s), PIDs {pids}", file=sys.stderr)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        deadline = time.monotonic() + (JOIN_TIMEOUT_S if exc is None else 0.0)
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(timeout=10)
            if proc.returncode:
                print(
                    f"[reprorec] {self.prepared.name}: helper worker PID {proc.pid} ended with "
                    f"{proc.returncode} (its unfinished trial was failed and rerun by the others)",
                    file=sys.stderr,
                )
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _exit_with_parent() -> None:
    parent = os.getppid()

    def watch() -> None:
        while True:
            if os.getppid() != parent:  # worker 0 died: stop, its rerun resumes the study
                os._exit(3)
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmark.tuning.worker JOB INDEX``: one helper worker of a cell."""
    args = sys.argv[1:] if argv is None else argv
    job_file, index = Path(args[0]), int(args[1])
    _exit_with_parent()
    with open(job_file, "rb") as f:
        job = pickle.load(f)
    prepared = job["prepared"]
    limit_threads(thread_share(prepared.config.threads, prepared.config.tuner.workers))
    try:
        recorder = CellRecorder(Tracker(job["tracking_uri"]), job["experiment_id"], prepared.config)
        recorder.run_id = job["cell_run_id"]
        tune_cell(prepared, recorder, worker_index=index)
    except Exception:
        print(
            f"[reprorec] worker {index} of {prepared.name} failed:\n{redact_text(traceback.format_exc())}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
