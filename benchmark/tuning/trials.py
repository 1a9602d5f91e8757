"""One tuning trial: fit a configuration, early-stopped (and optionally pruned) on validation.

Dacrema et al. (TOIS 2021, Sec. 4) validate iterative models every few epochs and stop them
after a patience; with ``tuner.pruner`` set, each validation value is also reported to the
study's Optuna pruner (median rule, successive halving or Hyperband), which may end a trial
early when it trails the trials before it at the same epoch. A pruned trial keeps its best
state and counts against the budget, like any finished trial.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd

from benchmark.config import TunerConfig
from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import MetricNotComputedError, ModelError
from benchmark.models import IterativeRecommender, PackMember, Recommender
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
    #: Trained inside a batched trial pack (``tuner.pack_size`` > 1 and a packable model).
    packed: bool = False


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
    watch = _Watch(validate, metric, every=every, patience=patience, direction=direction, report=report)
    model.fit(train, epoch_callback=watch.stopper)
    return watch.outcome()


class _Watch:
    """The early stopping of one fit, and the validation summaries it saw (epoch -> summary)."""

    def __init__(
        self,
        validate: Validate,
        metric: str,
        *,
        every: int,
        patience: int,
        direction: str,
        report: Report | None,
    ) -> None:
        self.summaries: dict[int, dict[str, float]] = {}

        def value_at(m: IterativeRecommender) -> float:
            summary = dict(validate(m))
            self.summaries[m.epochs_run_] = summary
            return metric_value(summary, metric)

        self.stopper = EarlyStopping(
            value_at, every=every, patience=patience, direction=direction, report=report
        )

    def outcome(self) -> FitOutcome:
        s = self.stopper
        return FitOutcome(
            s.best_value, self.summaries[s.best_epoch], s.best_epoch, sorted(self.summaries.items()), s.pruned
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
    t0 = time.perf_counter()
    try:
        params = space.suggest(trial)
    except Exception:
        return _failed(trial, {}, time.perf_counter() - t0, traceback.format_exc())
    return _fit_trial(trial, params, spec, train, validate, config, fixed, t0)


def _fit_trial(
    trial: optuna.Trial,
    params: dict[str, Any],
    spec: ModelSpec,
    train: InteractionMatrix,
    validate: Validate,
    config: TunerConfig,
    fixed: Mapping[str, Any],
    t0: float,
) -> TrialRecord:
    """Build, fit (early-stopped, pruned) and validate one suggested configuration."""
    try:
        model = spec.build(**{**fixed, **params})
        model.validate_params()
        if isinstance(model, IterativeRecommender):
            watch = _watch(trial, validate, config)
            model.fit(train, epoch_callback=watch.stopper)
            out = watch.outcome()
        else:
            out = fit_with_early_stopping(
                model, train, validate, config.metric, every=config.validate_every, patience=config.patience
            )
        _check_finite(spec, config, out)
    except MetricNotComputedError:  # fails every trial alike: stop instead of burning the budget
        raise
    except Exception:
        return _failed(trial, params, time.perf_counter() - t0, traceback.format_exc())
    return _record(trial, params, out, time.perf_counter() - t0)


def run_pack(
    asked: Sequence[tuple[optuna.Trial, dict[str, Any], str | None]],
    spec: ModelSpec,
    train: InteractionMatrix,
    validate: Validate,
    config: TunerConfig,
    fixed: Mapping[str, Any],
) -> list[TrialRecord]:
    """Fit the configurations of a trial pack together (``tuner.pack_size``), one record each.

    ``asked`` holds each trial, its suggested parameters and the error of its suggestion (None).
    Iterative models go to their class's :meth:`IterativeRecommender.fit_pack` (one batched model
    where the class is ``packable``, else one after another), each with its own early stopping and
    pruning; other models are fitted in turn. A member's failure fails only its trial.
    """
    records: dict[int, TrialRecord] = {}
    members: list[tuple[optuna.Trial, dict[str, Any], PackMember, _Watch]] = []
    for trial, params, error in asked:
        t0 = time.perf_counter()
        if error is not None:
            records[trial.number] = _failed(trial, params, 0.0, error)
            continue
        try:
            model = spec.build(**{**fixed, **params})
        except Exception:
            records[trial.number] = _failed(trial, params, time.perf_counter() - t0, traceback.format_exc())
            continue
        if not isinstance(model, IterativeRecommender):
            records[trial.number] = _fit_trial(trial, params, spec, train, validate, config, fixed, t0)
            continue
        watch = _watch(trial, validate, config)
        members.append((trial, params, PackMember(model, watch.stopper), watch))
    if members:
        memory = None if config.pack_memory_gb is None else int(config.pack_memory_gb * 2**30)
        type(members[0][2].model).fit_pack([m for _, _, m, _ in members], train, memory_bytes=memory)
    for trial, params, member, watch in members:
        if isinstance(member.error, MetricNotComputedError):
            raise member.error
        try:
            if member.error is not None:
                raise member.error
            out = watch.outcome()
            _check_finite(spec, config, out)
        except Exception:
            records[trial.number] = _failed(trial, params, member.seconds, traceback.format_exc())
            continue
        records[trial.number] = dataclasses.replace(
            _record(trial, params, out, member.seconds), packed=member.packed
        )
    return [records[trial.number] for trial, _, _ in asked]


def _watch(trial: optuna.Trial, validate: Validate, config: TunerConfig) -> _Watch:
    """The early stopping of a trial under ``config`` (reporting to its pruner when one is set;
    without a pruner nothing is reported, so the default protocol's study stays as it was)."""
    return _Watch(
        validate,
        config.metric,
        every=config.validate_every,
        patience=config.patience,
        direction=config.direction,
        report=_reporter(trial) if config.pruner != "none" else None,
    )


def _reporter(trial: optuna.Trial) -> Report:
    def report(epoch: int, value: float) -> bool:
        trial.report(value, epoch)
        return trial.should_prune()

    return report


def _check_finite(spec: ModelSpec, config: TunerConfig, out: FitOutcome) -> None:
    if not math.isfinite(out.value):
        raise ModelError(f"{spec.name}: validation {config.metric} is {out.value} (diverged?)")


def _failed(trial: optuna.Trial, params: dict[str, Any], seconds: float, error: str) -> TrialRecord:
    return TrialRecord(trial.number, "failed", params, None, fit_seconds=seconds, error=error)


def _record(trial: optuna.Trial, params: dict[str, Any], out: FitOutcome, seconds: float) -> TrialRecord:
    return TrialRecord(
        trial.number,
        "pruned" if out.pruned else "complete",
        params,
        out.value,
        best_epoch=out.best_epoch,
        val_metrics={k: float(v) for k, v in out.summary.items()},
        history=out.history,
        fit_seconds=seconds,
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
        packed=bool(attrs.get("packed", False)),
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
