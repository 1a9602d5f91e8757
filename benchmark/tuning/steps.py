"""The three steps of a cell after it is prepared: tune on validation, refit, evaluate once on test.

Dacrema et al. (TOIS 2021): tune on ``train`` against ``validation``; refit the best configuration
on ``train + validation`` (iterative models: for the best epoch count found while tuning); evaluate
once on ``test``, excluding train + validation items. The test data is not touched before the last
step.
"""

from __future__ import annotations

import os
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

    def validate(model: Recommender) -> Any:
        progress.epoch(model)  # an iterative model validates every few epochs while it trains
        return val_eval.evaluate(model).summary

    try:
        return tune(
            spec,
            p.space,
            p.split.train,
            validate,
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


#: Set (to 1) by the launching process when cells run side by side or in job logs (a joblib or
#: submitit launcher): each cell then prints plain lines labelled with its name, as live bars of
#: several processes on one terminal would overwrite each other.
ENV_PROGRESS_LINES = "REPROREC_PROGRESS_LINES"
#: Fewest seconds between two plain progress lines of one cell (trial ends always print).
LINE_INTERVAL_S = 30.0


class Progress:
    """A live line per cell: trial i/N, best validation value, the running trial's epoch, elapsed,
    ETA (tqdm); plain labelled lines under parallel launchers (:data:`ENV_PROGRESS_LINES`)."""

    def __init__(self, name: str, metric: str, enabled: bool, *, lines: bool | None = None) -> None:
        self.name, self.metric, self.enabled = name, metric, enabled
        self.lines = os.environ.get(ENV_PROGRESS_LINES) == "1" if lines is None else lines
        self.bar: Any = None
        self.done, self.total = 0, 0
        self.best: float | None = None
        self.epoch_text = ""
        self.t0 = time.monotonic()
        self.last_line = -LINE_INTERVAL_S

    def details(self) -> list[str]:
        parts = [f"best val {self.metric}={self.best:.4f}"] if self.best is not None else []
        return parts + ([self.epoch_text] if self.epoch_text else [])

    def status(self) -> str:
        """``trial 3/50, best val ndcg_at_10=0.4123, epoch 15/100``: what a plain line shows."""
        return ", ".join([f"trial {self.done}/{self.total}", *self.details()])

    def __call__(self, done: int, total: int, best: float | None) -> None:
        improved = best is not None and best != self.best
        self.done, self.total, self.best, self.epoch_text = done, total, best, ""
        if self.enabled:  # a plain line when the best value moves, at the end, or after the interval
            self._show(force=improved or done >= total or done == 0)

    def epoch(self, model: Any) -> None:
        """Called at each validation of an iterative model while it trains (its epoch so far)."""
        run, epochs = getattr(model, "epochs_run_", None), getattr(model, "epochs", None)
        if run is None:
            return
        self.epoch_text = f"epoch {run}/{epochs}" if epochs else f"epoch {run}"
        if self.enabled:
            self._show(force=False)

    def _show(self, *, force: bool) -> None:
        if self.lines:
            now = time.monotonic()
            if force or now - self.last_line >= LINE_INTERVAL_S:
                self.last_line = now
                print(f"[reprorec] {self.name}: {self.status()} ({now - self.t0:.0f} s)", file=sys.stderr)
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=self.done,
                desc=self.name,
                unit="trial",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.5,
            )
        self.bar.n = self.done
        self.bar.set_postfix_str(", ".join(self.details()), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
