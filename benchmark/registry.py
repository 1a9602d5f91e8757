"""The model registry: one YAML in ``conf/model/`` per model.

A new model is one module plus one YAML file; the class declares each hyperparameter once (name and
default in ``__init__``, type and range in ``param_specs``, test settings in ``tags``), the YAML only
what an experiment chooses::

    # conf/model/itemknn.yaml (the file name is the model's name)
    name: itemknn                      # the name used on the command line and in reports
    cls: baselines.knn.ItemKNN         # import path of the class
    family: neighbourhood              # leaderboard group (see FAMILIES)
    search_space:                      # explicit mapping: parameter -> distribution
      top_k: {type: int, low: 5, high: 1000}
      shrink: {type: int, low: 0, high: 1000}
      normalize: {type: categorical, choices: [true, false]}
    params: {shrink: 50}               # optional: a default this experiment changes (tuner=none)

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
from omegaconf import MISSING

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
    "external",
)
#: Families that are not baselines: the leaderboard tests them against the best baseline.
#: ``external``: recommendations made by other code, scored by ``reprorec-score``
#: (:mod:`benchmark.external`); no model YAML has it.
COMPARED_FAMILIES = ("neural", "external")
EXTERNAL = "external"


#: Folders of the user's own configs (``os.pathsep``-separated), searched after the built-in ones:
#: ``myconf/model/mymodel.yaml`` is a model, ``myconf/experiment/mine.yaml`` an experiment.
ENV_CONF_PATH = "REPROREC_CONF_PATH"


def repo_root() -> Path:
    """The folder above the ``benchmark`` package: the checkout (or, installed, site-packages)."""
    return Path(__file__).resolve().parents[1]


def in_checkout() -> bool:
    """Whether reprorec runs from a source checkout (its ``conf/`` and ``reports/`` beside the code)."""
    root = repo_root()
    return (root / "conf").is_dir() and (root / "pyproject.toml").is_file()


def installed_conf() -> Path:
    """Where a wheel installs the configs: ``<prefix>/share/reprorec/conf`` (pyproject data-files)."""
    import sysconfig

    return Path(sysconfig.get_path("data")) / "share" / "reprorec" / "conf"


def shipped_file(path: str | Path) -> Path:
    """``path`` as given when it exists (or is absolute), else the copy reprorec ships: the
    checkout's file, or a wheel's data file under ``<prefix>/share/reprorec`` (the published
    reference CSVs ``reports/reference/...`` that the ``dacrema/*`` experiments name)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    base = repo_root() if in_checkout() else installed_conf().parent
    return base / p if (base / p).exists() else p


def conf_dir() -> Path:
    """The built-in Hydra config folder: ``REPROREC_CONF``, else the checkout's ``conf/``, else the
    installed one (:func:`installed_conf`)."""
    if os.environ.get("REPROREC_CONF"):
        return Path(os.environ["REPROREC_CONF"])
    return repo_root() / "conf" if in_checkout() else installed_conf()


def user_conf_dirs() -> list[Path]:
    """The user's config folders (:data:`ENV_CONF_PATH`), absolute; a missing one is an error."""
    out = []
    for part in os.environ.get(ENV_CONF_PATH, "").split(os.pathsep):
        if not part.strip():
            continue
        path = Path(part).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"{ENV_CONF_PATH}: {part!r} is not a folder")
        out.append(path)
    return out


def hydra_searchpath_override() -> list[str]:
    """``hydra.searchpath=[file://...]`` for the user's config folders (none: [])."""
    dirs = user_conf_dirs()
    return ["hydra.searchpath=[" + ",".join(f"file://{d}" for d in dirs) + "]"] if dirs else []


@dataclass
class ModelSpec:
    """``conf/model/NAME.yaml``: a model's registry entry, and the ``model`` node of a run's config.

    The one schema of a model: the registry reads the YAML files into it, Hydra composes it (a
    misspelt key or a wrong type fails at compose time) and the cell runs from it.

    Attributes:
        name: the name used on the command line and in reports (= the file name).
        cls: import path of the :class:`~benchmark.models.Recommender` subclass.
        family: leaderboard group, one of :data:`FAMILIES`.
        params: the defaults an experiment changes (the class declares every hyperparameter with
            its default; ``model.params.x=...`` on the command line sets one); used as given when
            not tuned and for the parameters not searched.
        search_space: the explicit distributions the tuner samples.
        description: free text for people.
        variant_of: for a named variant (same class, some hyperparameters fixed in ``params``,
            its own search, its own report row: ``itemknn_cosine`` is ``itemknn`` with the cosine
            only), the model it is a variant of. Experiments that derive their model list from the
            registry (``${reprorec_models:...}``) run the base model only; the ``dacrema/*``
            experiments list the variants, as the reference reports them.
    """

    name: str = MISSING
    cls: str = MISSING
    family: str = MISSING
    params: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    variant_of: str | None = None

    @property
    def path(self) -> str:
        """Where the entry lives, as error messages name it."""
        return f"conf/model/{self.name}.yaml"

    def defaults(self) -> dict[str, Any]:
        """The hyperparameters' defaults as the class declares them (``__init__``)."""
        import inspect

        sig = inspect.signature(self.load_class().__init__)
        return {k: p.default for k, p in sig.parameters.items() if k != "self"}

    def effective_params(self) -> dict[str, Any]:
        """What a model built from this entry gets: the class defaults, then ``params``."""
        return {**self.defaults(), **self.params}

    def load_class(self) -> type[Recommender]:
        module_name, _, cls_name = self.cls.rpartition(".")
        try:
            module = importlib.import_module(module_name)
            cls = getattr(module, cls_name)
        except ImportError as exc:
            if (exc.name or "").split(".")[0] == "torch":  # the core installs without torch
                raise ConfigError(
                    f"{self.path}: model {self.name!r} ({self.cls}) needs torch, which is not installed: "
                    "pip install 'reprorec[neural]' (the tested version is in requirements/constraints.txt)"
                ) from exc
            raise ConfigError(f"{self.path}: cls {self.cls!r} cannot be imported: {exc}") from exc
        except AttributeError as exc:
            raise ConfigError(f"{self.path}: cls {self.cls!r} cannot be imported: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Recommender)):
            raise ConfigError(f"{self.path}: cls {self.cls!r} is not a Recommender subclass")
        return cls

    def build(self, **overrides: Any) -> Recommender:
        """Instantiate with the class defaults, updated by ``params`` and then by ``overrides``."""
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
    # Hydra selects a model by file name, reports show `name:`. Equal, they are unique: a copied
    # YAML that kept `name: itemknn` would otherwise run as a second, untested "itemknn".
    if str(raw["name"]) != path.stem:
        raise ConfigError(
            f"{path}: name {raw['name']!r} differs from the file name {path.stem!r} (a model is "
            f"selected as model={path.stem} and reported under its name; a duplicate name would "
            "mix two models in one leaderboard row): rename the file or the name"
        )
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
        description=raw.get("description"),
        variant_of=None if raw.get("variant_of") is None else str(raw["variant_of"]),
    )


@lru_cache(maxsize=8)
def _specs(folder: str) -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        spec = _read_spec(path)
        specs[spec.name] = spec
    for spec in specs.values():
        base = specs.get(spec.variant_of) if spec.variant_of is not None else spec
        if base is None or base.cls != spec.cls or base.variant_of is not None:
            raise ConfigError(
                f"{spec.path}: variant_of {spec.variant_of!r} must name a registered model with the "
                f"same cls {spec.cls!r} that is not itself a variant"
            )
    return specs


def model_specs() -> dict[str, ModelSpec]:
    """All registered models, by name: the built-in ones, then the user's (:data:`ENV_CONF_PATH`)."""
    specs = dict(_specs(str(conf_dir() / "model")))
    for folder in user_conf_dirs():
        if not (folder / "model").is_dir():
            continue
        for name, spec in _specs(str(folder / "model")).items():
            if name in specs:
                raise ConfigError(
                    f"{ENV_CONF_PATH}: {folder.name}/model/{name}.yaml has the name of a model that is "
                    "already registered; choose another name"
                )
            specs[name] = spec
    return specs


def get_model_spec(name: str) -> ModelSpec:
    specs = model_specs()
    if name not in specs:
        raise UnknownNameError("model", name, list(specs))
    return specs[name]


def make_model(name: str, **overrides: Any) -> Recommender:
    """Instantiate a registered model by name."""
    return get_model_spec(name).build(**overrides)
