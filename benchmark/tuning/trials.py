"""One tuning trial: fit a configuration, early-stopped (and optionally pruned) on validation.

Dacrema et al. (TOIS 2021, Sec. 4) validate iterative models every few epochs and stop them
after a patience; with ``tuner.pruner`` set, each validation value is also reported to the
study's Optuna pruner (median rule, successive halving or Hyperband), which may end a trial
early when it trails the trials before it at the same epoch. A pruned trial keeps its best
state and counts against the budget, like any finished trial.
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
from benchmark.errors import MetricNotComputedError, ModelError
from benchmark.models import IterativeRecommender, Recommender
from benchmark.registry import ModelSpec
from benchmark.tuning.early_stopping import EarlyStopping, Report
from benchmark.tuning.parallel import finished
from benchmark.tuning.space import SearchSpace

#: Validation function: model -> summary mapping (``{"ndcg_at_10": 0.31, ...}``).
Validate = Callable[[Recommender], Mapping[str, float]]

_STATES = {
    optuna.trial.TrialState.COMPLETE: "complete",
    optuna.trial.TrialState.PRUNED: "pruned",
}


def state_name(state: optuna.trial.TrialState) -> str:
    """``complete``, ``pruned`` or ``failed`` (what the trials table and MLflow call it)."""
    return _STATES.get(state, "failed")


@dataclass(frozen=True)
class TrialRecord:
    """What one trial did (passed to the ``on_trial`` callback and kept in the trials table)."""

    number: int
    state: str  # complete | pruned | failed
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
class FitOutcome:
    """What :func:`fit_with_early_stopping` returns."""

    value: float
    summary: dict[str, float]
    best_epoch: int | None
    history: list[tuple[int, dict[str, float]]]
    pruned: bool = False


def fit_with_early_stopping(
    model: Recommender,
    train: InteractionMatrix,
    validate: Validate,
    metric: str,
    *,
    every: int,
    patience: int,
    direction: str = "maximize",
    report: Report | None = None,
) -> FitOutcome:
    """Fit ``model``; iterative ones early-stopped on ``metric`` (and pruned when ``report`` says so)."""
    if not isinstance(model, IterativeRecommender):
        model.fit(train)
        summary = dict(validate(model))
        return FitOutcome(metric_value(summary, metric), summary, None, [])
    summaries: dict[int, dict[str, float]] = {}

    def value_at(m: IterativeRecommender) -> float:
        summary = dict(validate(m))
        summaries[m.epochs_run_] = summary
        return metric_value(summary, metric)

    stopper = EarlyStopping(value_at, every=every, patience=patience, direction=direction, report=report)
    model.fit(train, epoch_callback=stopper)
    history = sorted(summaries.items())
    return FitOutcome(
        stopper.best_value, summaries[stopper.best_epoch], stopper.best_epoch, history, stopper.pruned
    )


def metric_value(summary: Mapping[str, float], metric: str) -> float:
    if metric not in summary:
        raise MetricNotComputedError(
            f"tuner.metric={metric!r} is not computed by the evaluator; have {sorted(summary)}"
        )
    return float(summary[metric])


def run_trial(
    trial: optuna.Trial,
    spec: ModelSpec,
    space: SearchSpace,
    train: InteractionMatrix,
    validate: Validate,
    config: TunerConfig,
    fixed: Mapping[str, Any],
) -> TrialRecord:
    """Suggest, build, fit and validate one configuration (an exception fails only this trial)."""
    params: dict[str, Any] = {}
    t0 = time.perf_counter()

    def report(epoch: int, value: float) -> bool:
        trial.report(value, epoch)
        return trial.should_prune()

    try:
        params = space.suggest(trial)
        model = spec.build(**{**fixed, **params})
        model.validate_params()
        out = fit_with_early_stopping(
            model,
            train,
            validate,
            config.metric,
            every=config.validate_every,
            patience=config.patience,
            direction=config.direction,
            # without a pruner nothing is reported: the default protocol's study stays as it was
            report=report if config.pruner != "none" else None,
        )
        if not math.isfinite(out.value):
            raise ModelError(f"{spec.name}: validation {config.metric} is {out.value} (diverged?)")
    except MetricNotComputedError:  # fails every trial alike: stop instead of burning the budget
        raise
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
        "pruned" if out.pruned else "complete",
        params,
        out.value,
        best_epoch=out.best_epoch,
        val_metrics={k: float(v) for k, v in out.summary.items()},
        history=out.history,
        fit_seconds=time.perf_counter() - t0,
    )


def record_from_frozen(t: optuna.trial.FrozenTrial) -> TrialRecord:
    """The record of a trial finished by an earlier process (reported again on resumption)."""
    attrs = t.user_attrs
    return TrialRecord(
        number=t.number,
        state=state_name(t.state),
        params=dict(t.params),
        value=t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
        best_epoch=attrs.get("best_epoch"),
        val_metrics=dict(attrs.get("val_metrics", {})),
        history=[(int(e), dict(s)) for e, s in attrs.get("history", [])],
        fit_seconds=float(attrs.get("fit_seconds", 0.0)),
        error=attrs.get("error"),
        resumed=True,
        worker=attrs.get("worker"),
    )


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per finished trial: number, state, value, best_epoch, seconds, ``param.*``, error.

    ``value`` is that of complete trials only: a pruned trial's best validation value is in its
    ``val_metrics`` (it was stopped before its configuration could show its end value).
    """
    rows = []
    for t in study.get_trials(deepcopy=False):
        if not finished(t):
            continue
        row: dict[str, Any] = {
            "number": t.number,
            "state": state_name(t.state),
            "value": t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
            "best_epoch": t.user_attrs.get("best_epoch"),
            "fit_seconds": t.user_attrs.get("fit_seconds"),
        }
        row.update({f"param.{k}": v for k, v in t.params.items()})
        err = t.user_attrs.get("error")
        row["error"] = err.strip().splitlines()[-1] if err else None
        rows.append(row)
    return pd.DataFrame(rows)
