"""Hyperparameter tuning of one model on train vs validation, with Optuna called directly.

The protocol is the same for every model of a sweep (Dacrema et al., TOIS 2021): ``n_trials``
trials, the first ``n_startup_trials`` random, then TPE (Bergstra et al., NeurIPS 2011); iterative
models are early-stopped on validation and the best epoch count is stored with the trial.

Determinism and resumption: the study lives in an SQLAlchemy store under the cell key, and the
sampler is re-seeded before every trial with ``derive_seed(base_seed, n)`` (``n`` counts the trials
that ran to the end), so trial ``n`` sees the same history and the same random stream whether the
cell ran in one go or was interrupted and resumed. A trial that raises, or whose validation value
is NaN, is marked failed and tuning continues; a trial left RUNNING by a killed process is marked
failed on resumption and does not count against the budget.

Several workers (``tuner.workers=N``, see :mod:`benchmark.tuning.worker`) may tune one cell together:
each runs :func:`tune` on the same study in the same RDB storage. The budget is split without being
exceeded: a worker asks for a trial (Optuna numbers trials under a row lock on the study, so the
numbers are dense and committed in order), then counts the trials numbered before it that still
count; if they already fill the budget it discards its trial (marked ``interrupted``, not counted,
never logged) and waits for the running ones. Workers record Optuna heartbeats; a worker that dies
leaves a RUNNING trial that :func:`optuna.storages.fail_stale_trials` fails after the grace period,
without an ``error`` attribute, so it does not count and another worker runs a replacement. The number
of finished, counted trials is therefore exactly ``n_trials``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd
from optuna.storages._heartbeat import get_heartbeat_thread  # ask/tell has no public heartbeat API

from benchmark.config import TunerConfig
from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError, ModelError
from benchmark.faults import fault_point
from benchmark.models import IterativeRecommender, Recommender
from benchmark.registry import ModelSpec
from benchmark.seeds import derive_seed
from benchmark.tracking.mlflow_store import sqlite_path
from benchmark.tuning.early_stopping import EarlyStopping
from benchmark.tuning.space import SearchSpace, check_space_against_model

#: Validation function: model -> summary mapping (``{"ndcg_at_10": 0.31, ...}``).
Validate = Callable[[Recommender], Mapping[str, float]]

_INTERRUPTED = "interrupted"

#: Heartbeats of multi-worker studies: a trial without a heartbeat for GRACE_S is a dead worker's.
HEARTBEAT_S = int(os.environ.get("REPROREC_HEARTBEAT_S", "2"))
GRACE_S = int(os.environ.get("REPROREC_HEARTBEAT_GRACE_S", "10"))
#: How long a PostgreSQL / MySQL connection attempt may take before the storage is reported unreachable.
CONNECT_TIMEOUT_S = 10
#: How often a worker whose budget is taken by running trials of others looks again.
POLL_S = 0.5


@dataclass(frozen=True)
class TrialRecord:
    """What one trial did (passed to the ``on_trial`` callback and kept in the trials table)."""

    number: int
    state: str  # complete | failed
    params: dict[str, Any]
    value: float | None
    best_epoch: int | None = None
    val_metrics: dict[str, float] = field(default_factory=dict)
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    fit_seconds: float = 0.0
    error: str | None = None
    resumed: bool = False
    worker: int | None = None


@dataclass(frozen=True)
class TuningResult:
    """The outcome of tuning one cell."""

    best_params: dict[str, Any]
    best_value: float
    best_epoch: int | None
    best_trial: int
    trials: pd.DataFrame
    n_complete: int
    n_failed: int
    #: Summed fit + validation seconds of the counted trials, whichever process ran them.
    seconds: float
    #: Seconds spent in trials abandoned by an interrupted process (known only where the process
    #: could still write them: SIGTERM / Ctrl-C, not SIGKILL); not part of ``seconds``.
    seconds_interrupted: float = 0.0
    #: Wall-clock seconds of this process's :func:`tune` call.
    wall_seconds: float = 0.0


def _validated_model(spec: ModelSpec, params: Mapping[str, Any]) -> Recommender:
    model = spec.build(**params)
    model.validate_params()
    return model


def fit_with_early_stopping(
    model: Recommender,
    train: InteractionMatrix,
    validate: Validate,
    metric: str,
    *,
    every: int,
    patience: int,
) -> tuple[float, dict[str, float], int | None, list[tuple[int, dict[str, float]]]]:
    """Fit ``model`` and return (value, validation summary, best epoch, per-epoch history)."""
    if not isinstance(model, IterativeRecommender):
        model.fit(train)
        summary = dict(validate(model))
        return _metric(summary, metric), summary, None, []
    summaries: dict[int, dict[str, float]] = {}

    def value_at(m: IterativeRecommender) -> float:
        summary = dict(validate(m))
        summaries[m.epochs_run_] = summary
        return _metric(summary, metric)

    stopper = EarlyStopping(value_at, every=every, patience=patience)
    model.fit(train, epoch_callback=stopper)
    history = sorted(summaries.items())
    return stopper.best_value, summaries[stopper.best_epoch], stopper.best_epoch, history


def _metric(summary: Mapping[str, float], metric: str) -> float:
    if metric not in summary:
        raise ConfigError(f"tuner.metric={metric!r} is not computed by the evaluator; have {sorted(summary)}")
    return float(summary[metric])


def _sampler(config: TunerConfig, seed: int, *, constant_liar: bool = False) -> optuna.samplers.BaseSampler:
    if config.sampler == "tpe":
        # constant_liar: parallel workers do not all sample next to the same running trial
        return optuna.samplers.TPESampler(
            n_startup_trials=config.n_startup_trials, seed=seed, constant_liar=constant_liar
        )
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"tuner.sampler={config.sampler!r} is not one of ['tpe', 'random']")


def check_tuner_config(config: TunerConfig) -> None:
    if config.n_trials < 1:
        raise ConfigError(f"tuner.n_trials={config.n_trials} must be >= 1")
    if config.n_startup_trials < 0:
        raise ConfigError(f"tuner.n_startup_trials={config.n_startup_trials} must be >= 0")
    if config.direction not in ("maximize", "minimize"):
        raise ConfigError(f"tuner.direction={config.direction!r} is not one of ['maximize', 'minimize']")
    if config.workers < 1:
        raise ConfigError(f"tuner.workers={config.workers} must be >= 1")
    if config.validate_every < 1 or config.patience < 1:
        raise ConfigError(
            f"tuner.validate_every={config.validate_every} and tuner.patience={config.patience} must be >= 1"
        )
    _sampler(config, 0)


def open_storage(storage: str, attempts: int = 5, *, heartbeat: bool = False) -> optuna.storages.RDBStorage:
    """Open (creating its tables on first use) an Optuna RDB storage.

    The sweep creates it once before jobs fan out; the retry covers processes that still race on
    the first use (SQLite reports the loser as a UNIQUE / locked error). A server that does not
    answer within :data:`CONNECT_TIMEOUT_S` fails at once with a :class:`ConfigError` naming the
    URL with its password redacted. ``heartbeat``: record trial heartbeats (multi-worker studies).
    """
    from benchmark.services import redact_url

    if storage.startswith("sqlite"):
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    elif storage.startswith(("postgresql", "mysql")):
        engine_kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    else:
        engine_kwargs = {}
    beat: dict[str, Any] = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S} if heartbeat else {}
    db = sqlite_path(storage)
    if db is not None:  # built in a temporary file and renamed: a kill never leaves half a schema
        from benchmark.io import create_sqlite_atomically

        create_sqlite_atomically(db, _build_optuna_schema, what=f"the Optuna storage {db.name}")
    for i in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs, **beat)
        except Exception as exc:
            unreachable = "could not connect" in str(exc).lower() or "timeout" in str(exc).lower()
            if unreachable or i == attempts - 1:
                raise ConfigError(
                    f"Optuna storage {redact_url(storage)} is not usable "
                    f"(connect timeout {CONNECT_TIMEOUT_S} s): {type(exc).__name__}: "
                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                ) from None
            time.sleep(0.2 * (i + 1))
    raise AssertionError("unreachable")


def _build_optuna_schema(url: str) -> None:
    storage = optuna.storages.RDBStorage(url)
    storage.engine.dispose()


def open_study(
    config: TunerConfig, *, study_name: str, storage: str | None, heartbeat: bool = False
) -> optuna.Study:
    """Create or load the study of a cell (``storage`` None keeps it in memory)."""
    rdb = None if storage is None else open_storage(storage, heartbeat=heartbeat)
    return optuna.create_study(
        study_name=study_name,
        storage=rdb,
        direction=config.direction,  # type: ignore[arg-type]  # checked by check_tuner_config
        load_if_exists=True,
    )


def _record_from_frozen(t: optuna.trial.FrozenTrial) -> TrialRecord:
    attrs = t.user_attrs
    value = t.value if t.state == optuna.trial.TrialState.COMPLETE else None
    return TrialRecord(
        number=t.number,
        state="complete" if t.state == optuna.trial.TrialState.COMPLETE else "failed",
        params=dict(t.params),
        value=value,
        best_epoch=attrs.get("best_epoch"),
        val_metrics=dict(attrs.get("val_metrics", {})),
        history=[(int(e), dict(s)) for e, s in attrs.get("history", [])],
        fit_seconds=float(attrs.get("fit_seconds", 0.0)),
        error=attrs.get("error"),
        resumed=True,
        worker=attrs.get("worker"),
    )


def counts(t: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts against the budget (running, or finished by a live worker).

    Not counted: trials marked ``interrupted`` (left RUNNING by a killed single worker, or discarded
    over budget) and FAIL trials without an ``error`` attribute, which only a stale-heartbeat check
    produces (a worker killed mid-trial): a trial that failed by itself always stores its error.
    """
    if t.user_attrs.get("state") == _INTERRUPTED:
        return False
    if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE):
        return True
    return t.state == optuna.trial.TrialState.FAIL and "error" in t.user_attrs


def _finished(t: optuna.trial.FrozenTrial) -> bool:
    return counts(t) and t.state != optuna.trial.TrialState.RUNNING


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per finished trial: number, state, value, best_epoch, seconds, ``param.*``, error."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if not _finished(t):
            continue
        row: dict[str, Any] = {
            "number": t.number,
            "state": "complete" if t.state == optuna.trial.TrialState.COMPLETE else "failed",
            "value": t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
            "best_epoch": t.user_attrs.get("best_epoch"),
            "fit_seconds": t.user_attrs.get("fit_seconds"),
        }
        row.update({f"param.{k}": v for k, v in t.params.items()})
        err = t.user_attrs.get("error")
        row["error"] = err.strip().splitlines()[-1] if err else None
        rows.append(row)
    return pd.DataFrame(rows)


def tune(
    spec: ModelSpec,
    space: SearchSpace,
    train: InteractionMatrix,
    validate: Validate,
    config: TunerConfig,
    *,
    seed: int,
    fixed_params: Mapping[str, Any] | None = None,
    study_name: str = "reprorec",
    storage: str | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
    progress: Callable[[int, int, float | None], None] | None = None,
    worker_index: int = 0,
    on_ready: Callable[[], None] | None = None,
) -> TuningResult:
    """Tune ``spec`` on ``train`` against ``validate`` and return the best configuration.

    Args:
        spec: the model (its ``params`` are the defaults of parameters not tuned).
        space: the search space (an empty one runs a single trial of the defaults).
        train: what models are fitted on while tuning (never the validation data).
        validate: scores a fitted model on validation; returns the evaluator summary.
        config: budget, sampler, metric, early stopping.
        seed: base seed of the sampler (see module docstring), e.g.
            ``derive_seed(dataset, split, model, seed, "tuner")``.
        fixed_params: parameters set for every trial (e.g. ``random_state``), not tuned.
        study_name: the study's name in ``storage`` (the cell key, so a rerun resumes it).
        storage: SQLAlchemy URL of the study store (None: in memory).
        on_trial: called after every finished trial, and once for each trial found already
            finished when resuming (``resumed=True``), e.g. to log it to MLflow.
        progress: called as ``progress(done, total, best_value)`` after each trial.
        worker_index: with ``config.workers > 1``, which worker this is. Worker 0 (the cell's own
            process) cleans up trials left by a killed earlier run and reports resumed trials; the
            other workers only run trials. Needs an RDB ``storage`` shared by all workers.
        on_ready: called by worker 0 once the study is cleaned up (the cell starts the other
            workers there, so that they never see a dead run's trials as live).

    Raises:
        ModelError: if every trial failed (the errors of the last trial are chained).
    """
    check_tuner_config(config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    model_params = spec.load_class()._param_names()
    check_space_against_model(space, model_params, model=spec.name)
    fixed = dict(fixed_params or {})
    n_trials = config.n_trials if len(space) else 1
    parallel = config.workers > 1 and n_trials > 1
    if parallel and storage is None:
        raise ConfigError(f"tuner.workers={config.workers} needs an RDB storage shared by the workers")
    study = open_study(config, study_name=study_name, storage=storage, heartbeat=parallel)
    start = time.perf_counter()

    if worker_index == 0:
        # Trials left RUNNING by a killed process: failed, and not counted against the budget. Only
        # worker 0 does this, before the other workers of this cell are started.
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study._storage.set_trial_user_attr(t._trial_id, "state", _INTERRUPTED)
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)

    def counted() -> list[optuna.trial.FrozenTrial]:
        return [t for t in study.get_trials(deepcopy=False) if counts(t)]

    done = [t for t in counted() if _finished(t)]
    if worker_index == 0:
        for t in done:
            if on_trial is not None:
                on_trial(_record_from_frozen(t))
        if on_ready is not None:
            on_ready()
    if progress is not None:
        progress(len(done), n_trials, _best_value(study))

    base = seed
    while len(done) < n_trials:
        if config.timeout_s is not None and time.perf_counter() - start > config.timeout_s:
            break
        if parallel:
            _fail_dead_workers_trials(study)
            if len(counted()) >= n_trials:  # the rest of the budget is running in other workers
                time.sleep(POLL_S)
                done = [t for t in counted() if _finished(t)]
                continue
        # Seeded by the trial's index among counted trials, so an interrupted (uncounted) trial does
        # not shift the streams of the trials after it; parallel workers also by their index.
        seed_n = derive_seed(base, len(done), worker_index) if parallel else derive_seed(base, len(done))
        study.sampler = _sampler(config, seed_n % (2**32), constant_liar=parallel)
        with warnings.catch_warnings():  # we run the heartbeat thread ourselves, below
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            trial = study.ask()
        if parallel:
            ahead = sum(counts(t) and t.number < trial.number for t in study.get_trials(deepcopy=False))
            if ahead >= n_trials:  # another worker took the last slot between our count and our ask
                study._storage.set_trial_user_attr(trial._trial_id, "state", _INTERRUPTED)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            # heartbeat first, then the worker attribute: a RUNNING trial without it is one whose
            # worker died right after asking (see _fail_dead_workers_trials)
            study._storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
            trial.set_user_attr("worker", worker_index)

        t_trial = time.perf_counter()
        try:
            with get_heartbeat_thread(trial._trial_id, study._storage):
                fault_point("tuning.trial")
                record = _run_trial(trial, spec, space, train, validate, config, fixed)
        except BaseException:  # SIGTERM / Ctrl-C (KeyboardInterrupt), SystemExit: never left RUNNING
            _mark_interrupted(study, trial, seconds=time.perf_counter() - t_trial)
            raise
        if parallel:
            record = dataclasses.replace(record, worker=worker_index)
        for key, val in (
            ("best_epoch", record.best_epoch),
            ("val_metrics", record.val_metrics),
            ("history", record.history),
            ("fit_seconds", record.fit_seconds),
            ("error", record.error),
        ):
            if val is not None:
                trial.set_user_attr(key, val)
        if record.state == "complete":
            study.tell(trial, record.value)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        fault_point("tuning.told")
        if on_trial is not None:
            on_trial(record)
        fault_point("tuning.logged")
        done = [t for t in counted() if _finished(t)]
        if progress is not None:
            progress(len(done), n_trials, _best_value(study))

    complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
    n_failed = len(done) - len(complete)
    if not complete:
        last_error = next(
            (t.user_attrs.get("error") for t in reversed(done) if t.user_attrs.get("error")), ""
        )
        raise ModelError(f"{spec.name}: all {len(done)} tuning trials failed; last error:\n{last_error}")
    best = study.best_trial
    best_params = {**fixed, **best.params}
    return TuningResult(
        best_params=best_params,
        best_value=float(best.value),  # type: ignore[arg-type]
        best_epoch=best.user_attrs.get("best_epoch"),
        best_trial=best.number,
        trials=trials_table(study),
        n_complete=len(complete),
        n_failed=n_failed,
        # every process's trials: a resumed cell's cost is what all of its trials took, not only
        # the last process's share (fit_seconds is stored with each trial when it finishes)
        seconds=float(sum(float(t.user_attrs.get("fit_seconds", 0.0)) for t in done)),
        seconds_interrupted=float(
            sum(
                float(t.user_attrs.get("fit_seconds", 0.0))
                for t in study.get_trials(deepcopy=False)
                if not counts(t) and t.user_attrs.get("state") == _INTERRUPTED
            )
        ),
        wall_seconds=time.perf_counter() - start,
    )


def _mark_interrupted(study: optuna.Study, trial: optuna.Trial, *, seconds: float) -> None:
    """Fail a trial this process is abandoning (a signal arrived): not counted, its time kept."""
    with contextlib.suppress(Exception):  # the store may be what failed; a rerun cleans up then
        study._storage.set_trial_user_attr(trial._trial_id, "fit_seconds", seconds)
        study._storage.set_trial_user_attr(trial._trial_id, "state", _INTERRUPTED)
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def _fail_dead_workers_trials(study: optuna.Study) -> None:
    """Fail the RUNNING trials of workers that died: no heartbeat for ``GRACE_S`` (Optuna's check),
    or never a heartbeat at all (killed between ``ask`` and the first one) ``GRACE_S`` after start.
    Neither carries an ``error`` attribute, so neither counts against the budget."""
    import datetime

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        started = t.datetime_start
        if "worker" in t.user_attrs or started is None or (now - started).total_seconds() <= GRACE_S:
            continue
        try:
            study._storage.set_trial_user_attr(t._trial_id, "state", _INTERRUPTED)
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # finished meanwhile, or failed by another
            pass


def _best_value(study: optuna.Study) -> float | None:
    try:
        return float(study.best_value)
    except ValueError:  # no completed trial yet
        return None


def _run_trial(
    trial: optuna.Trial,
    spec: ModelSpec,
    space: SearchSpace,
    train: InteractionMatrix,
    validate: Validate,
    config: TunerConfig,
    fixed: Mapping[str, Any],
) -> TrialRecord:
    params: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        params = space.suggest(trial)
        model = _validated_model(spec, {**fixed, **params})
        value, summary, best_epoch, history = fit_with_early_stopping(
            model, train, validate, config.metric, every=config.validate_every, patience=config.patience
        )
        if not math.isfinite(value):
            raise ModelError(f"{spec.name}: validation {config.metric} is {value} (diverged?)")
    except ConfigError as exc:
        # A configuration error (bad metric name, out-of-range space) fails every trial alike:
        # stop instead of burning the budget on it.
        if "tuner.metric" in str(exc):
            raise
        return TrialRecord(
            trial.number,
            "failed",
            params,
            None,
            fit_seconds=time.perf_counter() - t0,
            error=traceback.format_exc(),
        )
    except Exception:
        return TrialRecord(
            trial.number,
            "failed",
            params,
            None,
            fit_seconds=time.perf_counter() - t0,
            error=traceback.format_exc(),
        )
    return TrialRecord(
        trial.number,
        "complete",
        params,
        value,
        best_epoch=best_epoch,
        val_metrics={k: float(v) for k, v in summary.items()},
        history=history,
        fit_seconds=time.perf_counter() - t0,
    )
