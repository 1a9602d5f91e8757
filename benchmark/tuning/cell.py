"""One benchmark cell: (dataset, split, model, seed) -> tune -> refit -> test, logged to MLflow.

The protocol (Dacrema et al., TOIS 2021), read top to bottom in :func:`run_prepared`:

1. load and preprocess the dataset, split it (cached, fingerprinted): :mod:`benchmark.tuning.prepare`;
2. tune the model on ``train`` against ``validation``: :func:`benchmark.tuning.steps.tune_cell`;
3. refit the best configuration on ``train + validation`` (iterative models: for the best epoch
   count found while tuning);
4. evaluate once on ``test``, excluding train + validation items. The test data is not touched
   before this step.

Every write to the tracking store goes through one :class:`benchmark.tuning.record.CellRecorder`.

``tuner.name=none`` skips 2 and refits ``model.params`` as given (published-hyperparameter checks).
``tuner.name=fixed`` searches nothing either: step 2 is one trial of ``model.params``, so an
iterative model's epoch count is still early-stopped on validation (Dacrema et al. ran the papers'
neural models with the authors' hyperparameters, not re-tuned).

A cell whose key already has a FINISHED run in the tracking store is skipped. Any exception marks
the cell run FAILED with the traceback as ``error/traceback.txt`` and is reported in the returned
:class:`CellOutcome` rather than raised, so a sweep goes on with the next cell.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmark.config import Config
from benchmark.faults import fault_point
from benchmark.redaction import redact_text
from benchmark.threads import limit_threads, thread_share
from benchmark.tracking import schema as S
from benchmark.tracking.leases import LeaseTable, lease_table
from benchmark.tracking.mlflow_store import (
    Tracker,
    check_tracking_reachable,
    finished_cell_in_sqlite,
    resolve_study_storage,
)
from benchmark.tuning.prepare import PreparedCell, cell_name, prepare_cell
from benchmark.tuning.record import CellRecorder
from benchmark.tuning.steps import evaluate_on_test, final_params, refit, tune_cell
from benchmark.tuning.tuner import TuningResult
from benchmark.tuning.worker import WorkerPool


@dataclass(frozen=True)
class CellOutcome:
    """What happened to a cell (returned, never raised, so that sweeps go on)."""

    name: str
    status: str  # finished | skipped | failed
    run_id: str | None = None
    cell_key: str | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_prepared(p: PreparedCell, recorder: CellRecorder, resolved_config: str | None) -> dict[str, float]:
    """The protocol of a prepared cell whose run exists: tune, refit, test, record."""
    from benchmark.evaluation.evaluator import warm_up  # lazily: a skipped cell never imports torch

    recorder.setup(p)
    recorder.warmup_seconds = warm_up()  # not charged to the first trial of the process's first cell
    tuning: TuningResult | None = None
    if p.config.tuner.name != "none":
        with WorkerPool(p, recorder) as pool:
            tuning = tune_cell(p, recorder, on_ready=pool.start)
    params = final_params(p, tuning)
    model, fit_seconds = refit(p, params, tuning)
    test, eval_seconds = evaluate_on_test(p, model)
    recorder.test_evaluations += 1  # the one evaluation on test, after tuning
    return recorder.result(
        p,
        model_params=model.get_params(),
        final_params=params,
        tuning=tuning,
        test=test,
        fit_seconds=fit_seconds,
        eval_seconds=eval_seconds,
        resolved_config=resolved_config,
    )


def run_cell(
    cfg: Config,
    *,
    sweep_run_id: str | None = None,
    resolved_config: str | None = None,
    command: str | None = None,
    tracker: Tracker | None = None,
    prepared: PreparedCell | None = None,
) -> CellOutcome:
    """Run (or skip) one cell and log it; never raises except on KeyboardInterrupt.

    Args:
        cfg: the composed configuration (plain dataclasses).
        sweep_run_id: the parent sweep run (None: a cell outside any sweep).
        resolved_config: the resolved Hydra config as YAML, logged as ``config/resolved.yaml``.
        command: the command line that regenerates the sweep.
        tracker: the tracking store (default: ``cfg.tracking.uri``).
        prepared: the cell already prepared from ``cfg`` (its data and split loaded once by a caller
            that checked them first, as ``reprorec-score`` does).
    """
    t0 = time.perf_counter()
    name = cell_name(cfg)
    try:
        limit_threads(thread_share(cfg.threads, cfg.tuner.workers))  # before any data or BLAS
        if tracker is None and cfg.tracking.skip_finished:
            # A rerun that finds its cell done (shell loops, requeued array jobs) answers from a
            # sqlite store without MLflow; a preparation error is left to the logged path below.
            with contextlib.suppress(Exception):
                prepared = prepared or prepare_cell(cfg)
            if prepared is not None and (done := _finished_in_sqlite(cfg, name, prepared.cell_key, t0)):
                return done
        tracker = tracker or Tracker(cfg.tracking.uri)
        check_tracking_reachable(tracker.uri)
        experiment_id = tracker.ensure_experiment(cfg.tracking.experiment)
    except Exception as exc:  # no store to log to: the outcome is all there is
        print(f"[reprorec] FAILED {name}: tracking store unusable: {redact_text(str(exc))}", file=sys.stderr)
        return CellOutcome(
            name, "failed", error=redact_text(traceback.format_exc()), seconds=time.perf_counter() - t0
        )
    recorder = CellRecorder(tracker, experiment_id, cfg, command=command, parent_run_id=sweep_run_id)
    key: str | None = None
    leases: LeaseTable | None = None
    try:
        prepared = prepared or prepare_cell(cfg)
        key = prepared.cell_key
        if cfg.tracking.skip_finished and (done := _finished_outcome(tracker, experiment_id, name, key, t0)):
            return done
        # The key is claimed before its run exists: a second process with the same key (a requeued
        # SLURM job, another terminal) waits here, then skips the cell the first one finished.
        leases = lease_table(resolve_study_storage(cfg.tuner.storage, tracker.uri))
        tracker.close_dead_runs(experiment_id, leases)  # runs of dead processes: KILLED
        leases.claim(f"cell:{key}", what=name, info=name)
        fault_point("cell.claimed")
        if cfg.tracking.skip_finished and (done := _finished_outcome(tracker, experiment_id, name, key, t0)):
            return done
        tracker.mark_stale_cells(experiment_id, key)  # RUNNING runs of this key: their owner is dead
        recorder.start(key)
        fault_point("cell.started")
        metrics = run_prepared(prepared, recorder, resolved_config)
        fault_point("cell.finishing")
        if not leases.still_held(f"cell:{key}"):  # stalled past the grace period and taken over
            raise RuntimeError(
                f"the claim of cell key {key[:12]} was taken over by another process while this one "
                "ran it (no heartbeat for the grace period): its result is not recorded as FINISHED"
            )
        recorder.end("FINISHED")
        return CellOutcome(name, "finished", recorder.run_id, key, metrics, seconds=time.perf_counter() - t0)
    except KeyboardInterrupt as exc:
        if recorder.run_id is not None:
            with contextlib.suppress(Exception):  # a second signal must not leave it RUNNING
                recorder.interrupted(str(exc) or "SIGINT", traceback.format_exc())
            recorder.end("KILLED")
        raise
    except Exception as exc:
        tb = redact_text(traceback.format_exc())
        print(f"[reprorec] FAILED {name}: {type(exc).__name__}: {redact_text(str(exc))}", file=sys.stderr)
        try:
            recorder.failed(tb, key)
        except Exception:  # the store itself is broken: the outcome still carries the error
            tb += "\n(while logging the failure:)\n" + traceback.format_exc()
        return CellOutcome(name, "failed", recorder.run_id, key, error=tb, seconds=time.perf_counter() - t0)
    finally:
        if leases is not None and key is not None:
            leases.release(f"cell:{key}")


def _finished_in_sqlite(cfg: Config, name: str, key: str, t0: float) -> CellOutcome | None:
    found = finished_cell_in_sqlite(cfg.tracking.uri or "", cfg.tracking.experiment, key)
    if found is None:
        return None
    return _skipped(name, key, *found, t0)


def _finished_outcome(
    tracker: Tracker, experiment_id: str, name: str, key: str, t0: float
) -> CellOutcome | None:
    """The ``skipped`` outcome of a cell whose key already has a FINISHED run, else None."""
    done = tracker.find_finished_cell(experiment_id, key)
    if done is None:
        return None
    return _skipped(name, key, str(done.info.run_id), done.data.metrics, t0)


def _skipped(name: str, key: str, run_id: str, metrics: Mapping[str, float], t0: float) -> CellOutcome:
    print(f"[reprorec] skip {name}: already FINISHED as run {run_id} (cell key {key[:12]})", file=sys.stderr)
    return CellOutcome(name, "skipped", run_id, key, _test_metrics(metrics), seconds=time.perf_counter() - t0)


def _test_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k.startswith(S.TEST_PREFIX)}
