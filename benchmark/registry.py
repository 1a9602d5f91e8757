"""The model registry: one YAML in ``conf/model/`` per model.

A new model is one module plus one YAML file::

    # conf/model/itemknn.yaml
    name: itemknn                      # the name used on the command line and in reports
    cls: baselines.knn.ItemKNN         # import path of the class
    family: neighbourhood              # leaderboard group (see FAMILIES)
    params: {top_k: 100, shrink: 10}   # hyperparameters used when not tuned (tuner=none)
    search_space:                      # explicit mapping: parameter -> distribution
      top_k: {type: int, low: 5, high: 1000}
      shrink: {type: int, low: 0, high: 1000}
      normalize: {type: categorical, choices: [true, false]}

Classes are imported lazily, so listing models never imports torch.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import ConfigError, UnknownNameError
from benchmark.models import Recommender

#: Leaderboard groups, in display order.
FAMILIES = (
    "non-personalised",
    "neighbourhood",
    "graph",
    "matrix factorisation",
    "linear",
    "neural",
)


def repo_root() -> Path:
    """The checkout reprorec runs from (``conf/`` and ``reports/`` live there)."""
    return Path(__file__).resolve().parents[1]


def conf_dir() -> Path:
    """The Hydra config folder (``REPROREC_CONF`` overrides the checkout's ``conf/``)."""
    return Path(os.environ.get("REPROREC_CONF", repo_root() / "conf"))


@dataclass(frozen=True)
class ModelSpec:
    """What ``conf/model/NAME.yaml`` says about a model."""

    name: str
    cls: str
    family: str
    params: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: str = ""

    def load_class(self) -> type[Recommender]:
        module_name, _, cls_name = self.cls.rpartition(".")
        try:
            module = importlib.import_module(module_name)
            cls = getattr(module, cls_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{self.path}: cls {self.cls!r} cannot be imported: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Recommender)):
            raise ConfigError(f"{self.path}: cls {self.cls!r} is not a Recommender subclass")
        return cls

    def build(self, **overrides: Any) -> Recommender:
        """Instantiate with the YAML's ``params`` updated by ``overrides``."""
        cls = self.load_class()
        params = {**self.params, **overrides}
        try:
            return cls(**params)
        except TypeError as exc:
            raise ConfigError(f"{self.name}: bad hyperparameters {params}: {exc}") from exc


def _read_spec(path: Path) -> ModelSpec:
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    for key in ("name", "cls", "family"):
        if key not in raw:
            raise ConfigError(f"{path}: missing key {key!r}")
    if raw["family"] not in FAMILIES:
        raise ConfigError(f"{path}: family {raw['family']!r} not one of {FAMILIES}")
    space = raw.get("search_space") or {}
    if not isinstance(space, dict):
        raise ConfigError(f"{path}: search_space must be a mapping parameter -> distribution")
    return ModelSpec(
        name=str(raw["name"]),
        cls=str(raw["cls"]),
        family=str(raw["family"]),
        params=dict(raw.get("params") or {}),
        search_space={str(k): dict(v) for k, v in space.items()},
        path=str(path),
    )


@lru_cache(maxsize=8)
def _specs(folder: str) -> dict[str, ModelSpec]:
    specs = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        spec = _read_spec(path)
        specs[spec.name] = spec
    return specs


def model_specs() -> dict[str, ModelSpec]:
    """All registered models, by name."""
    return dict(_specs(str(conf_dir() / "model")))


def get_model_spec(name: str) -> ModelSpec:
    specs = model_specs()
    if name not in specs:
        raise UnknownNameError("model", name, list(specs))
    return specs[name]


def make_model(name: str, **overrides: Any) -> Recommender:
    """Instantiate a registered model by name."""
    return get_model_spec(name).build(**overrides)
