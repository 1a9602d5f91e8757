"""The three steps of a cell after it is prepared: tune on validation, refit, evaluate once on test.

Dacrema et al. (TOIS 2021): tune on ``train`` against ``validation``; refit the best configuration
on ``train + validation`` (iterative models: for the best epoch count found while tuning); evaluate
once on ``test``, excluding train + validation items. The test data is not touched before the last
step.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from benchmark.faults import fault_point
from benchmark.models import IterativeRecommender, Recommender
from benchmark.seeds import derive_seed
from benchmark.splits.audit import tuning_evaluator_audit
from benchmark.tracking.mlflow_store import resolve_study_storage
from benchmark.tuning.prepare import PreparedCell, evaluator_on_test, evaluator_on_validation
from benchmark.tuning.record import CellRecorder
from benchmark.tuning.tuner import TuningResult, tune


def tune_cell(
    p: PreparedCell,
    recorder: CellRecorder,
    *,
    worker_index: int = 0,
    on_ready: Any = None,
) -> TuningResult:
    """Tune a prepared cell on train vs validation; every trial is a child run of the cell run.

    Worker 0 is the cell's own process (progress line, resumed trials, ``on_ready`` once the
    study is clean); the helpers of :mod:`benchmark.tuning.worker` call this with their index.
    """
    cfg, spec = p.config, p.spec
    val_eval = evaluator_on_validation(p)
    recorder.tuning_evaluator = tuning_evaluator_audit(val_eval, p.split)
    progress = Progress(p.name, cfg.tuner.metric, cfg.progress and worker_index == 0)
    try:
        return tune(
            spec,
            p.space,
            p.split.train,
            lambda m: val_eval.evaluate(m).summary,
            cfg.tuner,
            seed=derive_seed(cfg.dataset.name, cfg.split.name, spec.name, cfg.seed, "tuner"),
            fixed_params=p.fixed_params,
            study_name=p.cell_key,
            storage=resolve_study_storage(cfg.tuner.storage, recorder.tracker.uri),
            on_trial=recorder.trial_logger(spec.name) if cfg.tracking.log_trials else None,
            progress=progress,
            worker_index=worker_index,
            on_ready=on_ready,
        )
    finally:
        progress.close()


def final_params(p: PreparedCell, tuning: TuningResult | None) -> dict[str, Any]:
    """The hyperparameters of the refit: the tuned ones, or ``model.params`` as given (tuner=none)."""
    if tuning is None:
        return {**p.spec.params, **p.fixed_params}
    return {**p.spec.params, **tuning.best_params}


def refit(p: PreparedCell, params: dict[str, Any], tuning: TuningResult | None) -> tuple[Recommender, float]:
    """Fit ``params`` on train + validation (for the best epoch count found); (model, seconds)."""
    model = p.spec.build(**params)
    if isinstance(model, IterativeRecommender) and tuning is not None and tuning.best_epoch:
        model.set_params(epochs=int(tuning.best_epoch))
    fault_point("refit.start")
    t0 = time.perf_counter()
    model.validate_params()
    model = model.fit(p.split.train_full)
    seconds = time.perf_counter() - t0
    fault_point("refit.done")
    return model, seconds


def evaluate_on_test(p: PreparedCell, model: Recommender) -> tuple[Any, float]:
    """The one evaluation on test: (:class:`benchmark.evaluation.EvaluationResult`, seconds)."""
    t0 = time.perf_counter()
    result = evaluator_on_test(p).evaluate(model, recommendations=p.config.tracking.log_recommendations)
    seconds = time.perf_counter() - t0
    fault_point("test.evaluated")
    return result, seconds


class Progress:
    """A live line per cell: trial i/N, best validation value, elapsed, ETA (tqdm)."""

    def __init__(self, name: str, metric: str, enabled: bool) -> None:
        self.name, self.metric, self.enabled = name, metric, enabled
        self.bar: Any = None

    def __call__(self, done: int, total: int, best: float | None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                initial=done,
                desc=self.name,
                unit="trial",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.5,
            )
        self.bar.n = done
        if best is not None:
            self.bar.set_postfix_str(f"best val {self.metric}={best:.4f}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
