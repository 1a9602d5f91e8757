"""Early stopping for iterative models: validate every few epochs, keep the best state.

Follows the protocol of Dacrema et al. (TOIS 2021, Sec. 4): iterative models are evaluated on the
validation data every ``every`` epochs and stopped after ``patience`` evaluations without
improvement; the best epoch count is what the final refit on train + validation trains for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmark.errors import ModelError
from benchmark.models import IterativeRecommender

#: ``report(epoch, value) -> prune?``: hands each validation value to a pruner (see
#: :mod:`benchmark.tuning.trials`); True ends training like a lost patience.
Report = Callable[[int, float], bool]


@dataclass
class EarlyStopping:
    """The ``epoch_callback`` of :meth:`IterativeRecommender.fit`.

    Args:
        validate: returns the validation value of the model in its current state.
        every: validate after every ``every`` epochs (and after the last one).
        patience: stop after this many validations in a row without improvement.
        min_delta: an improvement must beat the best value by more than this.
        direction: ``maximize`` (higher is better, e.g. NDCG) or ``minimize`` (e.g. a loss), the
            tuner's ``direction``: early stopping and trial selection agree on what "better" is.
        report: optional pruning hook, called after every finite validation; when it answers
            True, training stops at the best state so far and ``pruned`` is set.

    A model with a ``min_epochs`` attribute (Dacrema et al.'s ``epochs_min``, e.g. SpectralCF's)
    is not stopped for lost patience before that epoch; the best state is still the one kept.

    After ``fit`` returns, the model holds the state of ``best_epoch`` (restored with
    ``set_state`` when a later epoch was worse); ``history`` lists ``(epoch, value)`` of every
    validation. A NaN validation value stops training (the model diverged): the best earlier state
    is kept, and with no earlier state :class:`ModelError` is raised so the trial is marked failed.
    """

    validate: Callable[[IterativeRecommender], float]
    every: int = 5
    patience: int = 5
    min_delta: float = 0.0
    direction: str = "maximize"
    report: Report | None = None
    pruned: bool = field(default=False, init=False)
    best_value: float = field(default=math.nan, init=False)
    best_epoch: int = field(default=0, init=False)
    history: list[tuple[int, float]] = field(default_factory=list, init=False)
    _best_state: Any = field(default=None, init=False, repr=False)
    _bad: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.every < 1 or self.patience < 1:
            raise ValueError(f"every={self.every} and patience={self.patience} must be >= 1")
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"direction={self.direction!r} is not one of ['maximize', 'minimize']")

    def _better(self, value: float) -> bool:
        if self.direction == "maximize":
            return value > self.best_value + self.min_delta
        return value < self.best_value - self.min_delta

    def __call__(self, model: IterativeRecommender, epoch: int) -> bool:
        last = epoch >= int(model.epochs)
        if epoch % self.every and not last:
            return False
        value = float(self.validate(model))
        self.history.append((epoch, value))
        if math.isnan(value):
            if self.best_epoch == 0:
                raise ModelError(f"{type(model).__name__}: validation metric is NaN at epoch {epoch}")
            return self._restore(model)
        improved = self.best_epoch == 0 or self._better(value)
        if improved:
            self.best_value, self.best_epoch, self._bad = value, epoch, 0
            self._best_state = None if last else model.get_state()
        else:
            self._bad += 1
        # every validation is reported (the pruner compares trials epoch by epoch); pruning the
        # last epoch would change nothing
        if self.report is not None and self.report(epoch, value) and not last:
            self.pruned = True
            return True if improved else self._restore(model)
        if improved:
            return False
        if (self._bad >= self.patience and epoch >= int(getattr(model, "min_epochs", 0) or 0)) or last:
            return self._restore(model)
        return False

    def _restore(self, model: IterativeRecommender) -> bool:
        if self._best_state is not None:
            model.set_state(self._best_state)
        return True
