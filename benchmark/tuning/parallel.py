"""The trial budget of one cell's study, kept by one worker or shared by several (``tuner.workers=N``).

Which trials count against the budget (:func:`counts`):

* running trials, and trials that finished by themselves (COMPLETE, or FAIL with the ``error`` they
  raised stored as an attribute);
* not trials abandoned by an interrupted process (marked ``interrupted``, their seconds kept), not
  trials discarded over budget, and not trials of a dead worker, failed by another worker without an
  ``error`` attribute: their configurations are run again by the trials that replace them.

Several workers (:mod:`benchmark.tuning.worker`) split a budget without exceeding it: a worker asks
for a trial (Optuna numbers trials under a row lock on the study, so the numbers are dense and
committed in order), then counts the trials numbered before it that count; if they already fill the
budget it discards its trial and waits for the running ones. Every worker holds a lease
(:mod:`benchmark.tracking.leases`, heartbeats in the study storage) and stamps the trials it runs
with its owner id; a RUNNING trial whose owner is dead (its process gone on this host, or no
heartbeat for the lease grace period) is failed by the next worker that looks, so the number of
finished, counted trials is exactly ``n_trials``. Only Optuna's public API is used (``ask``,
``tell`` by trial number, user attributes).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from types import TracebackType

import optuna

from benchmark.seeds import derive_seed
from benchmark.tracking.leases import LeaseTable, lease_table, process_owner

State = optuna.trial.TrialState

#: The ``state`` attribute of a trial abandoned or discarded on purpose (not counted).
INTERRUPTED = "interrupted"
#: A RUNNING trial without an owner (its worker died between ``ask`` and stamping it) is failed
#: this many seconds after it started.
UNCLAIMED_GRACE_S = float(os.environ.get("REPROREC_HEARTBEAT_GRACE_S", "10"))
#: How often a worker whose budget is taken by running trials of others looks again.
POLL_S = 0.5


def counts(t: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts against the budget (running, or finished by a live worker)."""
    if t.user_attrs.get("state") == INTERRUPTED:
        return False
    if t.state in (State.RUNNING, State.COMPLETE, State.PRUNED):
        return True
    return t.state == State.FAIL and "error" in t.user_attrs


def finished(t: optuna.trial.FrozenTrial) -> bool:
    """A counted trial that has ended."""
    return counts(t) and t.state != State.RUNNING


def abandon(study: optuna.Study, trial: optuna.Trial, *, seconds: float | None = None) -> None:
    """Fail a trial of this process that must not count (a signal arrived, or it is over budget)."""
    with contextlib.suppress(Exception):  # the store may be what failed; a rerun cleans up then
        if seconds is not None:
            trial.set_user_attr("fit_seconds", seconds)
        trial.set_user_attr("state", INTERRUPTED)
        study.tell(trial, state=State.FAIL, skip_if_finished=True)


def fail_running(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Fail another process's RUNNING trial (no ``error`` attribute: it does not count)."""
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # finished meanwhile
        study.tell(trial.number, state=State.FAIL, skip_if_finished=True)


class Budget:
    """The budget of a study tuned by this process alone."""

    shared = False

    def __init__(self, study: optuna.Study, n_trials: int, worker_index: int = 0) -> None:
        self.study, self.n_trials, self.worker_index = study, n_trials, worker_index

    def counted(self) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self.study.get_trials(deepcopy=False) if counts(t)]

    def finished(self) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self.counted() if t.state != State.RUNNING]

    def fail_left_running(self) -> None:
        """Trials left RUNNING by a killed earlier process: failed, not counted (worker 0, at start)."""
        for t in self.study.get_trials(deepcopy=False, states=(State.RUNNING,)):
            fail_running(self.study, t)

    def has_slot(self) -> bool:
        """Whether this worker may start a trial now (False: wait, others run the rest)."""
        return True

    def admit(self, trial: optuna.Trial) -> bool:
        """Whether a trial just asked for is within the budget (else it was discarded)."""
        return True

    def trial_seed(self, base: int, n_finished: int) -> int:
        """The sampler seed of the next trial: by its index among counted trials, so that an
        uncounted trial does not shift the random streams of those after it."""
        return derive_seed(base, n_finished) % (2**32)

    def __enter__(self) -> Budget:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class SharedBudget(Budget):
    """The budget of a study tuned by several workers on one RDB storage."""

    shared = True

    def __init__(self, study: optuna.Study, n_trials: int, worker_index: int, storage: str) -> None:
        super().__init__(study, n_trials, worker_index)
        self.leases: LeaseTable = lease_table(storage)
        self.lease_key = f"worker:{study.study_name}:{worker_index}"

    def __enter__(self) -> SharedBudget:
        self.leases.claim(self.lease_key, what=f"worker {self.worker_index}", info=self.study.study_name)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.leases.release(self.lease_key)

    def has_slot(self) -> bool:
        self.fail_dead_workers()
        if len(self.counted()) >= self.n_trials:  # the rest of the budget is running in other workers
            time.sleep(POLL_S)
            return False
        return True

    def admit(self, trial: optuna.Trial) -> bool:
        trials = self.study.get_trials(deepcopy=False)
        if sum(counts(t) and t.number < trial.number for t in trials) >= self.n_trials:
            abandon(self.study, trial)  # another worker took the last slot between our count and ask
            return False
        # the owner first: a RUNNING trial without one is a worker's that died right after asking
        trial.set_user_attr("owner", process_owner())
        trial.set_user_attr("worker", self.worker_index)
        return True

    def trial_seed(self, base: int, n_finished: int) -> int:
        return derive_seed(base, n_finished, self.worker_index) % (2**32)

    def fail_dead_workers(self) -> None:
        """Fail the RUNNING trials of dead workers, and of workers that died before stamping theirs."""
        now = datetime.datetime.now()
        me = process_owner()
        for t in self.study.get_trials(deepcopy=False, states=(State.RUNNING,)):
            owner = t.user_attrs.get("owner")
            if owner == me:
                continue
            if owner is None:
                started = t.datetime_start
                dead = started is not None and (now - started).total_seconds() > UNCLAIMED_GRACE_S
            else:
                dead = not self.leases.owner_alive(str(owner))
            if dead:
                fail_running(self.study, t)
