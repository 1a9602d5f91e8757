"""Named fault points: where the fault-injection tests kill a sweep (failpoints, as in etcd / TiKV).

Production code calls :func:`fault_point` at the moments where an interruption is hardest to
survive (half-created store, a trial told but not logged, a refit done but not recorded, artifacts
half-uploaded). It does nothing unless ``REPROREC_FAULT`` names that point::

    REPROREC_FAULT=tuning.told@3:KILL     # the 3rd time this process reaches tuning.told: SIGKILL
    REPROREC_FAULT=store.create:TERM      # SIGTERM while the tracking store's schema is built
    REPROREC_FAULT=cell.started:sleep=5   # a 5 s stall (races between processes, slow disks)

Several entries are separated by commas. The process sends the signal to itself, so SIGTERM goes
through reprorec's own handler (as from ``kill``, SLURM or systemd) and SIGKILL leaves no chance to
clean up (as the OOM killer). Cost when unset: one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time
from functools import lru_cache

ENV_FAULT = "REPROREC_FAULT"

#: Every fault point, with where it is (the fault-injection suite covers each of them).
POINTS = {
    "store.create": "while the sqlite tracking store's schema is being built (temporary file)",
    "store.created": "schema built, before the store is renamed into place",
    "sweep.started": "sweep run created, before any job ran",
    "cell.claimed": "the cell key is claimed, before its run is created",
    "cell.started": "cell run created, before tuning",
    "tuning.trial": "a tuning trial is running",
    "tuning.told": "a trial's result is in the study, not yet logged to MLflow",
    "tuning.logged": "a trial is logged to MLflow",
    "refit.start": "tuning done, before the refit on train + validation",
    "refit.done": "refit done, before the test evaluation",
    "test.evaluated": "test evaluation done, before its metrics are logged",
    "artifacts.logging": "metrics logged, artifacts half-written",
    "cell.finishing": "artifacts logged, before the cell run is ended FINISHED",
    "sweep.finishing": "every job done, before the sweep run is closed",
}


@lru_cache(maxsize=8)
def _plan(value: str) -> dict[str, tuple[int, signal.Signals | float]]:
    plan: dict[str, tuple[int, signal.Signals | float]] = {}
    for entry in filter(None, (e.strip() for e in value.split(","))):
        where, _, action = entry.rpartition(":")
        name, _, nth = where.partition("@")
        if name not in POINTS:
            raise ValueError(f"{ENV_FAULT}={value!r}: unknown fault point {name!r}; known: {sorted(POINTS)}")
        if action.startswith("sleep="):
            plan[name] = (int(nth or 1), float(action.removeprefix("sleep=")))
        else:
            plan[name] = (int(nth or 1), signal.Signals[f"SIG{action.upper()}"])
    return plan


_seen: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill this process here if ``REPROREC_FAULT`` asks for it (see the module docstring)."""
    value = os.environ.get(ENV_FAULT)
    if not value:
        return
    planned = _plan(value).get(name)
    if planned is None:
        return
    _seen[name] = _seen.get(name, 0) + 1
    nth, sig = planned
    if _seen[name] != nth:
        return
    if isinstance(sig, float):
        time.sleep(sig)
    else:
        os.kill(os.getpid(), sig)
        # the handler of a caught signal runs at the next bytecode; give a default action time too
        time.sleep(5)
