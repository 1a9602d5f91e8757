"""Search spaces: the explicit mapping of ``conf/model/*.yaml`` turned into Optuna suggestions.

A search space maps each tuned hyperparameter to a distribution::

    top_k: {type: int, low: 5, high: 1000}
    alpha: {type: float, low: 1.0e-3, high: 50.0, log: true}
    similarity: {type: categorical, choices: [cosine, jaccard, tversky]}
    tversky_alpha: {type: float, low: 0, high: 2, when: {similarity: [tversky]}}

``when`` makes a parameter conditional: it is sampled only when each named (categorical) parameter
took one of the listed values, otherwise the model keeps its default from ``params``. This is how
Dacrema et al. tuned the similarity-specific parameters of the neighbourhood models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna

from benchmark.errors import ConfigError

_KEYS = {"type", "low", "high", "log", "step", "choices", "when"}
_TYPES = ("int", "float", "categorical")


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter's distribution (validated by :func:`parse_space`)."""

    name: str
    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether the ``when`` condition holds for the values sampled so far."""
        return all(name in values and values[name] in allowed for name, allowed in self.when.items())

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.type == "int":
            step = 1 if self.step is None else int(self.step)
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def to_dict(self) -> dict[str, Any]:
        """The canonical mapping (what is logged and hashed into the cell key)."""
        out: dict[str, Any] = {"type": self.type}
        if self.type == "categorical":
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high, log=self.log)
            if self.step is not None:
                out["step"] = self.step
        if self.when:
            out["when"] = {k: list(v) for k, v in self.when.items()}
        return out


@dataclass(frozen=True)
class SearchSpace:
    """An ordered tuple of :class:`Dimension` (conditions come after what they depend on)."""

    dimensions: tuple[Dimension, ...] = ()

    def __len__(self) -> int:
        return len(self.dimensions)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample one configuration; inactive conditional parameters are left out."""
        values: dict[str, Any] = {}
        for dim in self.dimensions:
            if dim.active(values):
                values[dim.name] = dim.suggest(trial)
        return values

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {d.name: d.to_dict() for d in self.dimensions}


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: {key}={value!r} must be a finite number")
    return float(value)


def _parse_dimension(name: str, raw: Any, where: str) -> Dimension:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping like {{type: int, low: 1, high: 10}}, got {raw!r}")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    kind = raw.get("type")
    if kind not in _TYPES:
        raise ConfigError(f"{where}: type={kind!r} is not one of {list(_TYPES)}")
    when_raw = raw.get("when") or {}
    if not isinstance(when_raw, Mapping) or not all(
        isinstance(v, (list, tuple)) and len(v) > 0 for v in when_raw.values()
    ):
        raise ConfigError(f"{where}: when={when_raw!r} must map parameter names to non-empty lists of values")
    when = {str(k): tuple(v) for k, v in when_raw.items()}
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log={log!r} must be true or false")

    if kind == "categorical":
        for key in ("low", "high", "step"):
            if key in raw:
                raise ConfigError(f"{where}: {key} is not allowed for a categorical parameter")
        choices = raw.get("choices")
        if not isinstance(choices, (list, tuple)) or len(choices) == 0:
            raise ConfigError(f"{where}: choices={choices!r} must be a non-empty list")
        bad = [c for c in choices if c is not None and not isinstance(c, (bool, int, float, str))]
        if bad:
            raise ConfigError(f"{where}: choices must be numbers, strings, booleans or null; got {bad!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{where}: choices={list(choices)!r} contain duplicates")
        return Dimension(name, "categorical", choices=tuple(choices), when=when)

    if "choices" in raw:
        raise ConfigError(f"{where}: choices is only allowed for type categorical")
    for key in ("low", "high"):
        if key not in raw:
            raise ConfigError(f"{where}: missing {key!r} for type {kind}")
    low, high = _number(where, "low", raw["low"]), _number(where, "high", raw["high"])
    if kind == "int" and (low != int(low) or high != int(high)):
        raise ConfigError(f"{where}: low={raw['low']!r}, high={raw['high']!r} must be integers for type int")
    if low > high:
        raise ConfigError(f"{where}: low={raw['low']!r} is greater than high={raw['high']!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}: log=true needs low > 0, got low={raw['low']!r}")
    step = raw.get("step")
    if step is not None:
        step = _number(where, "step", step)
        if step <= 0:
            raise ConfigError(f"{where}: step={raw['step']!r} must be positive")
        if log:
            raise ConfigError(f"{where}: step and log=true cannot be combined (Optuna does not support it)")
    return Dimension(name, kind, low=low, high=high, log=log, step=step, when=when)


def parse_space(raw: Mapping[str, Any] | None, *, source: str = "search_space") -> SearchSpace:
    """Validate a search-space mapping and order it so conditions follow what they depend on.

    Args:
        raw: mapping ``parameter -> {type, low, high, log, step, choices, when}``.
        source: where the mapping came from (a file name), used in error messages.

    Raises:
        ConfigError: naming the source, the parameter, the key and the offending value.
    """
    if raw is None:
        return SearchSpace()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: the search space must be a mapping parameter -> distribution")
    dims = {str(name): _parse_dimension(str(name), spec, f"{source}: {name}") for name, spec in raw.items()}
    for dim in dims.values():
        for dep, allowed in dim.when.items():
            where = f"{source}: {dim.name}: when"
            if dep not in dims:
                raise ConfigError(
                    f"{where} refers to {dep!r}, which is not in the search space {sorted(dims)}"
                )
            if dims[dep].type != "categorical":
                raise ConfigError(f"{where} refers to {dep!r}, which is not categorical")
            missing = [v for v in allowed if v not in dims[dep].choices]
            if missing:
                raise ConfigError(
                    f"{where}: values {missing!r} are not among the choices of {dep!r} "
                    f"{list(dims[dep].choices)!r}"
                )
    # Topological order (stable: YAML order where there is no dependency); a cycle is an error.
    ordered: list[Dimension] = []
    placed: set[str] = set()
    pending = list(dims.values())
    while pending:
        ready = [d for d in pending if set(d.when) <= placed]
        if not ready:
            raise ConfigError(f"{source}: circular 'when' conditions among {[d.name for d in pending]}")
        for d in ready:
            ordered.append(d)
            placed.add(d.name)
        pending = [d for d in pending if d.name not in placed]
    return SearchSpace(tuple(ordered))


def check_space_against_model(space: SearchSpace, param_names: list[str], *, model: str) -> None:
    """Every tuned parameter must be a hyperparameter of the model (catches typos before any fit)."""
    unknown = [n for n in space.names if n not in param_names]
    if unknown:
        raise ConfigError(
            f"{model}: search_space tunes {unknown}, which are not hyperparameters of the model; "
            f"known: {sorted(param_names)}"
        )
