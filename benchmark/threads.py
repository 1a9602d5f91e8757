"""Each process's share of the CPUs: BLAS, OpenMP and torch threads (issue 17).

Under shared cores an oversubscribed BLAS spin-waits: EASE's fit with 2 BLAS threads was measured
16x slower than with 1 while another process used the second core. So every process of a sweep
(a cell's own process, its ``tuner.workers`` helpers, cells run side by side by a launcher)
limits its threads to its share of the CPUs it may use, and the cell logs what it used
(``resources.threads``, ``resources.cpus``) with its provenance.

The share: the CPUs of one cell (``REPROREC_CELL_CPUS``, set by the launching process from the
launcher: joblib's ``n_jobs`` cells share this machine, a submitit/SLURM job has its
``cpus_per_task``; else the CPUs this process may run on) divided by the cell's processes
(``tuner.workers``), at least 1; ``threads=N`` in the config sets it explicitly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

#: CPUs available to one cell (set by the CLI's launching process for the jobs it starts).
ENV_CELL_CPUS = "REPROREC_CELL_CPUS"
#: What child processes (joblib, implicit's OpenMP, a torch import) read for their thread pools.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; a SLURM job's allocation)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cpus_per_cell(launcher: Mapping[str, Any] | None) -> int:
    """The CPUs of one cell under a Hydra launcher config (``hydra.launcher``; None: basic)."""
    launcher = launcher or {}
    if launcher.get("cpus_per_task"):  # submitit (local or SLURM): each cell job's allocation
        return max(1, int(launcher["cpus_per_task"]))
    n_jobs = launcher.get("n_jobs")  # joblib: n_jobs cells side by side on this machine
    if n_jobs:
        n = available_cpus() if int(n_jobs) < 0 else int(n_jobs)
        return max(1, available_cpus() // max(1, n))
    return available_cpus()


def cell_cpus() -> int:
    value = os.environ.get(ENV_CELL_CPUS)
    if value is None:
        return available_cpus()
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"${ENV_CELL_CPUS}={value!r} must be a positive integer (CPUs of one cell)")
    return n


def thread_share(threads: int | None, workers: int) -> int:
    """Threads per process: ``threads`` if set, else the cell's CPUs over its ``workers``."""
    if threads is not None:
        return int(threads)
    return max(1, cell_cpus() // max(1, workers))


_LIMIT: dict[str, int] = {}


def current_threads() -> int:
    """This process's thread share: what :func:`limit_threads` set, else torch's pool size when torch
    is loaded, else the CPUs this process may run on. (Asking torch would import it: seconds.)"""
    if "n" in _LIMIT:
        return _LIMIT["n"]
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    return available_cpus()


def limit_threads(n: int) -> dict[str, int]:
    """Limit this process (and the processes it starts) to ``n`` threads; returns what is logged.

    threadpoolctl limits the BLAS and OpenMP pools already loaded; the environment variables
    reach libraries loaded later and child processes (SLIM's joblib workers); torch, when a model
    has loaded it, gets ``set_num_threads`` (a later import reads ``OMP_NUM_THREADS``).
    """
    from threadpoolctl import threadpool_limits

    for var in THREAD_ENV:
        os.environ[var] = str(n)
    threadpool_limits(limits=n)  # stays in force: the object is not used as a context here
    _LIMIT["n"] = n
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    return {"threads": n, "cpus": cell_cpus()}
