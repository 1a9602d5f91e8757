"""The model contract shared by every recommender (heuristic or neural).

Models only score. A recommender stores its hyperparameters unchanged as ``__init__`` keyword
arguments (scikit-learn convention), learns in ``fit(train) -> self`` and returns dense float32
scores from ``score(users)``. Masking of seen items, top-k, ties and metrics belong to the shared
:class:`benchmark.evaluation.Evaluator`, never to a model: that is what keeps comparisons fair.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import numpy as np

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError, ModelError

R = TypeVar("R", bound="Recommender")


@dataclass(frozen=True)
class Param:
    """Allowed values of one hyperparameter, checked when a model is fitted.

    Args:
        kind: ``int``, ``float``, ``bool``, ``str`` (one of ``choices``) or ``any``.
        low: smallest allowed value (inclusive) for numbers.
        high: largest allowed value (inclusive) for numbers.
        choices: allowed values for ``str`` (or any kind).
        nullable: whether ``None`` is allowed.
    """

    kind: Literal["int", "float", "bool", "str", "any"]
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False

    def describe(self) -> str:
        if self.choices is not None:
            allowed = f"one of {list(self.choices)}"
        elif self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else self.low
            hi = "inf" if self.high is None else self.high
            allowed = f"{self.kind} in [{lo}, {hi}]"
        else:
            allowed = self.kind
        return allowed + (" or None" if self.nullable else "")

    def check(self, model: str, name: str, value: Any) -> None:
        """Raise :class:`ConfigError` naming model, parameter, value and allowed range."""
        if value is None:
            if self.nullable:
                return
            raise ConfigError(f"{model}: {name}=None is not allowed; expected {self.describe()}")
        ok_type = {
            "int": isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)),
            "float": isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)),
            "bool": isinstance(value, (bool, np.bool_)),
            "str": isinstance(value, str),
            "any": True,
        }[self.kind]
        if not ok_type:
            raise ConfigError(
                f"{model}: {name}={value!r} has type {type(value).__name__}; expected {self.describe()}"
            )
        if self.kind == "float" and not math.isfinite(float(value)):
            raise ConfigError(f"{model}: {name}={value!r} is not finite; expected {self.describe()}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{model}: {name}={value!r} is not allowed; expected {self.describe()}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ConfigError(f"{model}: {name}={value!r} is out of range; expected {self.describe()}")


@dataclass(frozen=True)
class ModelTags:
    """What tools need to know about a model besides its hyperparameters (scikit-learn's estimator
    tags), declared on the class so that a new model needs no edit anywhere else.

    Attributes:
        personalised: False for a model whose ranking ignores the user's history (random scores,
            popularity): the contract suite's planted-structure check cannot hold for it, and is
            skipped (only for models of the ``non-personalised`` family).
        test_params: hyperparameters for the contract suite (``tests/unit/test_model_contract.py``):
            small and fast on a 20-user matrix, and still able to find its 4 planted blocks of 5
            items. Names the model does not take are refused by the suite. Without them, the
            suite caps epochs and factor counts at small values.
    """

    personalised: bool = True
    test_params: Mapping[str, Any] = field(default_factory=dict)


class Recommender:
    """Base class of all recommenders.

    Subclasses declare hyperparameters as keyword arguments of ``__init__`` and store each one
    unchanged under the same attribute name; fitted state ends with ``_``. ``param_specs`` states
    the allowed values, checked at the start of ``fit`` (an out-of-range value raises
    :class:`ConfigError` naming model, parameter, value and range).

    The contract (tested for every registered model by ``tests/unit/test_model_contract.py``):

    * ``fit(train) -> self`` with ``train`` an :class:`InteractionMatrix`;
    * ``score(users) -> np.ndarray`` float32 of shape ``[len(users), n_items]``, finite, for user
      *indices*; users without training interactions get scores too (their rule is documented by
      each model, most fall back to zero or popularity);
    * same hyperparameters (including ``random_state``) and data give the same scores on CPU.
    """

    param_specs: ClassVar[Mapping[str, Param]] = {}
    #: True for models trained in epochs that the tuner may early-stop.
    iterative: ClassVar[bool] = False
    tags: ClassVar[ModelTags] = ModelTags()

    # ----------------------------------------------------------------- parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        names = []
        for p in sig.parameters.values():
            if p.name == "self":
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.__init__ must not take *args / **kwargs")
            names.append(p.name)
        return sorted(names)

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as given to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self: R, **params: Any) -> R:
        """Set hyperparameters (unknown names raise :class:`ConfigError`)."""
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ConfigError(
                    f"{type(self).__name__} has no hyperparameter {name!r}; known: {sorted(valid)}"
                )
            setattr(self, name, value)
        return self

    def clone(self: R, **overrides: Any) -> R:
        """An unfitted copy with the same hyperparameters (optionally some replaced)."""
        params = {k: copy.deepcopy(v) for k, v in self.get_params().items()}
        params.update(overrides)
        return type(self)(**params)

    def validate_params(self) -> None:
        """Check every hyperparameter against ``param_specs``."""
        params = self.get_params()
        for name, spec in self.param_specs.items():
            spec.check(type(self).__name__, name, params[name])

    # ----------------------------------------------------------------- contract
    def fit(self: R, train: InteractionMatrix) -> R:
        raise NotImplementedError

    def score(self, users: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # ----------------------------------------------------------------- helpers
    def _check_fitted(self, *attrs: str) -> None:
        for a in attrs or ("n_items_",):
            if not hasattr(self, a):
                raise ModelError(f"{type(self).__name__} is not fitted: call fit(train) first")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class EpochCallback(Protocol):
    """Called by an iterative model after each epoch; returning True stops training."""

    def __call__(self, model: IterativeRecommender, epoch: int) -> bool: ...


@dataclass
class PackMember:
    """One model of a trial pack (see :meth:`IterativeRecommender.fit_pack`).

    Attributes:
        model: the unfitted model with the trial's hyperparameters.
        callback: its ``epoch_callback`` (early stopping, pruning), called exactly as by ``fit``.
        error: set by ``fit_pack`` when this member failed (the others go on).
        seconds: this member's share of the pack's time (its own validations in full, every
            shared training step divided among the members it trained), set by ``fit_pack``.
        packed: whether it was trained as part of a batched model (False: on its own).
    """

    model: IterativeRecommender
    callback: EpochCallback | None = None
    error: BaseException | None = None
    seconds: float = 0.0
    packed: bool = False


class IterativeRecommender(Recommender):
    """A model trained in epochs, which the tuner can early-stop.

    Subclasses have an ``epochs`` hyperparameter (the maximum) and implement ``_init_fit``,
    ``_fit_epoch`` and, so that early stopping can keep the best epoch, ``get_state`` /
    ``set_state`` (a deep copy of the fitted state). ``fit`` runs ``epochs`` epochs and calls
    ``epoch_callback(model, epoch)`` after each; the callback may stop training early, and may
    restore a better earlier state with ``set_state`` before returning True.

    ``fit_pack`` fits several configurations of one model (the trials of a pack, ``tuner.pack_size``).
    The default fits them one after another; a class that can train them as one batched model
    (``packable = True``) overrides it, and every member must end exactly as its own ``fit`` would
    (within float tolerance: the contract suite checks it).
    """

    iterative = True
    #: True when ``fit_pack`` trains members together (one batched model) rather than in turn.
    packable: ClassVar[bool] = False
    epochs: int

    @classmethod
    def fit_pack(
        cls, members: Sequence[PackMember], train: InteractionMatrix, *, memory_bytes: int | None = None
    ) -> None:
        """Fit every member's model on ``train`` with its callback; one failure fails one member.

        ``memory_bytes`` caps what one batched model may use (a packable class trains a larger
        pack as several smaller ones; None: a share of the device's available memory).

        After it returns, each member's model is fitted (or its ``error`` is set) and its
        ``seconds`` is its share of the time. Exceptions other than :class:`Exception` (a signal,
        Ctrl-C) propagate and abandon the whole pack.
        """
        for member in members:
            t0 = time.perf_counter()
            try:
                member.model.fit(train, epoch_callback=member.callback)
            except Exception as exc:
                member.error = exc
            member.seconds = time.perf_counter() - t0
            member.packed = False

    def fit(self, train: InteractionMatrix, *, epoch_callback: EpochCallback | None = None) -> Any:
        self.validate_params()
        self._init_fit(train)
        self.epochs_run_ = 0
        for epoch in range(1, int(self.epochs) + 1):
            self._fit_epoch(epoch)
            self.epochs_run_ = epoch
            if epoch_callback is not None and epoch_callback(self, epoch):
                break
        self._end_fit()
        return self

    def _init_fit(self, train: InteractionMatrix) -> None:
        raise NotImplementedError

    def _fit_epoch(self, epoch: int) -> None:
        raise NotImplementedError

    def _end_fit(self) -> None:
        """Hook after the last epoch (e.g. to cache factors for scoring)."""

    def get_state(self) -> Any:
        raise NotImplementedError

    def set_state(self, state: Any) -> None:
        raise NotImplementedError


def check_scores(model_name: str, users: np.ndarray, scores: np.ndarray, n_items: int) -> np.ndarray:
    """Validate a model's score matrix: shape, dtype and finiteness.

    Raises:
        ModelError: naming the model and the first offending users.
    """
    expected = (len(users), n_items)
    if not isinstance(scores, np.ndarray) or scores.shape != expected:
        shape = getattr(scores, "shape", type(scores).__name__)
        raise ModelError(f"{model_name}.score returned shape {shape}, expected {expected}")
    if scores.dtype != np.float32:
        scores = scores.astype(np.float32)
    finite = np.isfinite(scores)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        shown = [int(u) for u in np.asarray(users)[bad_rows[:10]]]
        raise ModelError(
            f"{model_name}.score returned NaN or inf for {len(bad_rows)} users (user indices "
            f"{shown}{'...' if len(bad_rows) > 10 else ''})"
        )
    return scores


def batched(n: int, batch_size: int) -> Sequence[slice]:
    """Slices covering ``range(n)`` in batches."""
    return [slice(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


ScoreFn = Callable[[np.ndarray], np.ndarray]
