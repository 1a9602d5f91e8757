"""Each process's share of the CPUs (benchmark.threads): the arithmetic and its effect on the pools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.threads import ENV_CELL_CPUS, available_cpus, cpus_per_cell, thread_share

REPO = Path(__file__).resolve().parents[2]


def test_cpus_per_cell_follow_the_launcher() -> None:
    n = available_cpus()
    assert cpus_per_cell(None) == n  # basic launcher: one cell at a time on this machine
    assert cpus_per_cell({"n_jobs": 2}) == max(1, n // 2)  # joblib: two cells side by side
    assert cpus_per_cell({"n_jobs": -1}) == 1  # joblib, one cell per CPU
    assert cpus_per_cell({"cpus_per_task": 4, "n_jobs": None}) == 4  # submitit / SLURM allocation


def test_thread_share_divides_the_cell_among_its_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_CELL_CPUS, "8")
    assert [thread_share(None, w) for w in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    assert thread_share(3, 2) == 3  # threads=N in the config wins
    monkeypatch.setenv(ENV_CELL_CPUS, "zero")
    with pytest.raises(ValueError, match=r"\$REPROREC_CELL_CPUS='zero' must be a positive integer"):
        thread_share(None, 1)


def test_limit_threads_reaches_blas_openmp_torch_and_child_processes() -> None:
    # in a fresh process: the limit is process-wide and must not leak into the test session
    code = (
        "import json, os, numpy, torch, threadpoolctl\n"
        "from benchmark.threads import limit_threads\n"
        "logged = limit_threads(1)\n"
        "pools = [p['num_threads'] for p in threadpoolctl.threadpool_info()]\n"
        "print(json.dumps({'logged': logged, 'pools': pools, 'torch': torch.get_num_threads(),"
        " 'omp': os.environ['OMP_NUM_THREADS'], 'blas': os.environ['OPENBLAS_NUM_THREADS']}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), ENV_CELL_CPUS: "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["logged"] == {"threads": 1, "cpus": 2}
    assert got["pools"] and set(got["pools"]) == {1}
    assert (got["torch"], got["omp"], got["blas"]) == (1, "1", "1")
