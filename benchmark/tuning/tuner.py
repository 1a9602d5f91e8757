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
each runs :func:`tune` on the same study in the same RDB storage, and :mod:`benchmark.tuning.parallel`
splits the budget among them without exceeding it.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd

from benchmark.config import TunerConfig
from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError, ModelError
from benchmark.faults import fault_point
from benchmark.registry import ModelSpec
from benchmark.tracking.studies import open_study
from benchmark.tuning.parallel import INTERRUPTED, Budget, SharedBudget, abandon
from benchmark.tuning.space import SearchSpace, check_space_against_model
from benchmark.tuning.trials import (
    TrialRecord,
    Validate,
    record_from_frozen,
    run_pack,
    run_trial,
    trials_table,
)

__all__ = ["TrialRecord", "TuningResult", "Validate", "tune"]

#: ``tuner.pruner`` -> the Optuna pruner; steps are epochs, validated every ``validate_every``.
PRUNERS: dict[str, Callable[[TunerConfig], optuna.pruners.BasePruner]] = {
    "none": lambda c: optuna.pruners.NopPruner(),
    # Optuna's defaults: prune below the median of earlier trials at the same epoch, once 5
    # trials have finished
    "median": lambda c: optuna.pruners.MedianPruner(n_startup_trials=5),
    # Jamieson & Talwalkar (AISTATS 2016) / Li et al. (MLSys 2020): rungs from the first validation
    "successive_halving": lambda c: optuna.pruners.SuccessiveHalvingPruner(min_resource=c.validate_every),
    # Li et al. (JMLR 2018); the maximum epoch count is learnt from the first trial
    "hyperband": lambda c: optuna.pruners.HyperbandPruner(min_resource=c.validate_every),
}


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
    #: Trials the pruner stopped (they count against the budget; never the best trial).
    n_pruned: int = 0


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
    if config.pack_size < 1:
        raise ConfigError(f"tuner.pack_size={config.pack_size} must be >= 1")
    if config.pack_memory_gb is not None and not config.pack_memory_gb > 0:
        raise ConfigError(f"tuner.pack_memory_gb={config.pack_memory_gb} must be > 0 (or null)")
    if config.pack_size > 1 and config.workers > 1:
        raise ConfigError(
            f"tuner.pack_size={config.pack_size} with tuner.workers={config.workers}: packs are tuned by "
            "one process per cell; use one or the other"
        )
    if config.pruner not in PRUNERS:
        raise ConfigError(f"tuner.pruner={config.pruner!r} is not one of {sorted(PRUNERS)}")
    _sampler(config, 0)


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
    check_space_against_model(space, spec.load_class()._param_names(), model=spec.name)
    fixed = dict(fixed_params or {})
    n_trials = config.n_trials if len(space) else 1
    study = open_study(study_name, storage, config.direction)
    study.pruner = PRUNERS[config.pruner](config)
    budget = _budget(study, n_trials, config, storage, worker_index)
    start = time.perf_counter()
    if worker_index == 0:  # before the other workers of this cell start (``on_ready``)
        budget.fail_left_running()
        for t in budget.finished():
            if on_trial is not None:
                on_trial(record_from_frozen(t))
        if on_ready is not None:
            on_ready()
    done = budget.finished()
    if progress is not None:
        progress(len(done), n_trials, _best_value(study))

    with budget:
        while len(done) < n_trials:
            if config.timeout_s is not None and time.perf_counter() - start > config.timeout_s:
                break
            if config.pack_size > 1:
                records = _run_pack(
                    study, budget, spec, space, train, validate, config, fixed, seed, n_trials
                )
            else:
                if not budget.has_slot():
                    done = budget.finished()
                    continue
                study.sampler = _sampler(
                    config, budget.trial_seed(seed, len(done)), constant_liar=budget.shared
                )
                trial = study.ask()
                if not budget.admit(trial):
                    continue
                record = _run_and_tell(study, trial, spec, space, train, validate, config, fixed)
                if budget.shared:
                    record = dataclasses.replace(record, worker=worker_index)
                records = [record]
            for record in records:
                if on_trial is not None:
                    on_trial(record)
            fault_point("tuning.logged")
            done = budget.finished()
            if progress is not None:
                progress(len(done), n_trials, _best_value(study))
    return _result(spec, study, done, fixed, time.perf_counter() - start)


def _budget(
    study: optuna.Study, n_trials: int, config: TunerConfig, storage: str | None, worker_index: int
) -> Budget:
    if config.workers <= 1 or n_trials <= 1:
        return Budget(study, n_trials, worker_index)
    if storage is None:
        raise ConfigError(f"tuner.workers={config.workers} needs an RDB storage shared by the workers")
    return SharedBudget(study, n_trials, worker_index, storage)


def _run_pack(
    study: optuna.Study,
    budget: Budget,
    spec: ModelSpec,
    space: SearchSpace,
    train: InteractionMatrix,
    validate: Validate,
    config: TunerConfig,
    fixed: Mapping[str, Any],
    seed: int,
    n_trials: int,
) -> list[TrialRecord]:
    """Ask the next ``pack_size`` trials at once, fit them as a pack, tell each (in trial order).

    Trial ``n + j`` of a pack asked after ``n`` finished trials is sampled with the seed of index
    ``n + j`` and sees the pack's earlier members as running (TPE's ``constant_liar``: it does not
    sample next to them). Its parameters are suggested right after it is asked, so each member is
    drawn with its own seed. Results are told only when the whole pack is done: an interrupted pack
    leaves no told member behind, and a resumed cell asks the same pack again (same seeds, same
    history), so a resumed sweep stays identical to an uninterrupted one.
    """
    n_done = len(budget.finished())
    asked: list[tuple[optuna.Trial, dict[str, Any], str | None]] = []
    t0 = time.perf_counter()
    try:
        for j in range(min(config.pack_size, n_trials - n_done)):
            study.sampler = _sampler(config, budget.trial_seed(seed, n_done + j), constant_liar=True)
            trial = study.ask()
            try:
                asked.append((trial, space.suggest(trial), None))
            except Exception:
                asked.append((trial, {}, traceback.format_exc()))
        fault_point("tuning.trial")
        records = run_pack(asked, spec, train, validate, config, fixed)
    except BaseException:  # SIGTERM / Ctrl-C, SystemExit, a metric the evaluator does not compute
        seconds = time.perf_counter() - t0
        for trial, _, _ in asked:
            abandon(study, trial, seconds=seconds / max(len(asked), 1))
        raise
    for (trial, _, _), record in zip(asked, records):
        trial.set_user_attr("pack", {"size": len(asked), "index": trial.number - asked[0][0].number})
        if record.packed:
            trial.set_user_attr("packed", True)
        _tell(study, trial, record)
    fault_point("tuning.told")
    return records


def _run_and_tell(
    study: optuna.Study,
    trial: optuna.Trial,
    spec: ModelSpec,
    space: SearchSpace,
    train: InteractionMatrix,
    validate: Validate,
    config: TunerConfig,
    fixed: Mapping[str, Any],
) -> TrialRecord:
    """Run one trial and store its outcome in the study (a signal abandons it: never left RUNNING)."""
    t0 = time.perf_counter()
    try:
        fault_point("tuning.trial")
        record = run_trial(trial, spec, space, train, validate, config, fixed)
    except BaseException:  # SIGTERM / Ctrl-C (KeyboardInterrupt), SystemExit
        abandon(study, trial, seconds=time.perf_counter() - t0)
        raise
    _tell(study, trial, record)
    fault_point("tuning.told")
    return record


def _tell(study: optuna.Study, trial: optuna.Trial, record: TrialRecord) -> None:
    """Store a trial's outcome and attributes in the study."""
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
    elif record.state == "pruned":  # Optuna keeps its last reported value for the sampler
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _result(
    spec: ModelSpec,
    study: optuna.Study,
    done: list[optuna.trial.FrozenTrial],
    fixed: Mapping[str, Any],
    wall: float,
) -> TuningResult:
    complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
    n_pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in done)
    if not complete:
        last_error = next(
            (t.user_attrs.get("error") for t in reversed(done) if t.user_attrs.get("error")), ""
        )
        what = (
            f"all {len(done)} tuning trials failed" if not n_pruned else f"no trial of {len(done)} completed"
        )
        raise ModelError(f"{spec.name}: {what} ({n_pruned} pruned); last error:\n{last_error}")
    best = study.best_trial
    abandoned = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("state") == INTERRUPTED]
    return TuningResult(
        best_params={**fixed, **best.params},
        best_value=float(best.value),  # type: ignore[arg-type]
        best_epoch=best.user_attrs.get("best_epoch"),
        best_trial=best.number,
        trials=trials_table(study),
        n_complete=len(complete),
        n_failed=len(done) - len(complete) - n_pruned,
        n_pruned=n_pruned,
        # every process's trials: a resumed cell's cost is what all of its trials took, not only
        # the last process's share (fit_seconds is stored with each trial when it finishes)
        seconds=float(sum(float(t.user_attrs.get("fit_seconds", 0.0)) for t in done)),
        seconds_interrupted=float(sum(float(t.user_attrs.get("fit_seconds", 0.0)) for t in abandoned)),
        wall_seconds=wall,
    )


def _best_value(study: optuna.Study) -> float | None:
    try:
        return float(study.best_value)
    except ValueError:  # no completed trial yet
        return None
