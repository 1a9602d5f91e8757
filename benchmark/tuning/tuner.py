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
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd

from benchmark.config import TunerConfig
from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError, ModelError
from benchmark.models import IterativeRecommender, Recommender
from benchmark.registry import ModelSpec
from benchmark.seeds import derive_seed
from benchmark.tuning.early_stopping import EarlyStopping
from benchmark.tuning.space import SearchSpace, check_space_against_model

#: Validation function: model -> summary mapping (``{"ndcg_at_10": 0.31, ...}``).
Validate = Callable[[Recommender], Mapping[str, float]]

_INTERRUPTED = "interrupted"


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
    seconds: float


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


def _sampler(config: TunerConfig, seed: int) -> optuna.samplers.BaseSampler:
    if config.sampler == "tpe":
        return optuna.samplers.TPESampler(n_startup_trials=config.n_startup_trials, seed=seed)
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
    if config.validate_every < 1 or config.patience < 1:
        raise ConfigError(
            f"tuner.validate_every={config.validate_every} and tuner.patience={config.patience} must be >= 1"
        )
    _sampler(config, 0)


def open_storage(storage: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Open (creating its tables on first use) an Optuna RDB storage.

    The sweep creates it once before jobs fan out; the retry covers processes that still race on
    the first use (SQLite reports the loser as a UNIQUE / locked error).
    """
    engine_kwargs = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {}
    for i in range(attempts):
        try:
            return optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs)
        except Exception:
            if i == attempts - 1:
                raise
            time.sleep(0.2 * (i + 1))
    raise AssertionError("unreachable")


def open_study(config: TunerConfig, *, study_name: str, storage: str | None) -> optuna.Study:
    """Create or load the study of a cell (``storage`` None keeps it in memory)."""
    rdb = None if storage is None else open_storage(storage)
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
    )


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per finished trial: number, state, value, best_epoch, seconds, ``param.*``, error."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING or t.user_attrs.get("state") == _INTERRUPTED:
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

    Raises:
        ModelError: if every trial failed (the errors of the last trial are chained).
    """
    check_tuner_config(config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    model_params = spec.load_class()._param_names()
    check_space_against_model(space, model_params, model=spec.name)
    fixed = dict(fixed_params or {})
    n_trials = config.n_trials if len(space) else 1
    study = open_study(config, study_name=study_name, storage=storage)
    start = time.perf_counter()

    # Trials left RUNNING by a killed process: failed, and not counted against the budget.
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "state", _INTERRUPTED)
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)

    def counted() -> list[optuna.trial.FrozenTrial]:
        return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("state") != _INTERRUPTED]

    done = counted()
    for t in done:
        if on_trial is not None:
            on_trial(_record_from_frozen(t))
    if progress is not None:
        progress(len(done), n_trials, _best_value(study))

    base = seed
    while len(done) < n_trials:
        if config.timeout_s is not None and time.perf_counter() - start > config.timeout_s:
            break
        # Seeded by the trial's index among counted trials, so an interrupted (uncounted) trial does
        # not shift the streams of the trials after it.
        study.sampler = _sampler(config, derive_seed(base, len(done)) % (2**32))
        trial = study.ask()
        record = _run_trial(trial, spec, space, train, validate, config, fixed)
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
        if on_trial is not None:
            on_trial(record)
        done = counted()
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
        seconds=time.perf_counter() - start,
    )


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
