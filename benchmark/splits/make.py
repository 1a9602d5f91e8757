"""Config -> split: the splitter, the validation carve-out, derived seeds, leakage checks, the cache.

:func:`make_split` is the one entry point the rest of reprorec uses. Seeds are derived from names
(:func:`benchmark.seeds.derive_seed`):

* the test split draws from ``derive_seed(dataset, config.name, config.splitter, "test", seed)``;
* the validation carve-out from ``derive_seed(dataset, config.name, validation_splitter,
  "validation", seed)``,

so the two never share a stream. The fold index of :func:`~benchmark.splits.splitters.user_kfold`
is deliberately *not* part of the seed: all folds of one config and seed must see the same user
partition. Repeated random hold-outs are repetitions of ``seed``.

Results are stored with :mod:`benchmark.splits.store` under ``<cache>/splits/``, keyed by the data
fingerprint, the canonical config and the seed, and reused after verification.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError, DataError
from benchmark.fingerprint import sha256_json
from benchmark.seeds import derive_seed
from benchmark.splits import store
from benchmark.splits.split import Split
from benchmark.splits.splitters import SPLITTERS, _json_params, apply_splitter, carve_validation, get_splitter

PUBLISHED = "published"  # the ``splitter`` value of a config that loads a published split


@dataclass(frozen=True)
class SplitConfig:
    """How to split a dataset (one ``conf/split/*.yaml``).

    Attributes:
        name: the config's name (part of every seed and of the cache key).
        splitter: a name in :data:`~benchmark.splits.splitters.SPLITTERS`, or ``"published"``.
        params: keyword arguments of the splitter.
        validation_splitter: splitter that carves validation out of train, or None.
        validation_params: its keyword arguments.
        published: name of a published split (see :mod:`benchmark.splits.published`) when
            ``splitter == "published"``.
        description: free text for people; not part of the cache key or the seeds.
    """

    name: str
    splitter: str
    params: Mapping[str, Any] = field(default_factory=dict)
    validation_splitter: str | None = None
    validation_params: Mapping[str, Any] = field(default_factory=dict)
    published: str | None = None
    description: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _json_params(self.params or {}))
        object.__setattr__(self, "validation_params", _json_params(self.validation_params or {}))
        if self.splitter == PUBLISHED or self.published is not None:
            if self.splitter != PUBLISHED or not self.published:
                raise ConfigError(
                    f"split config {self.name!r}: a published split needs "
                    f"splitter: {PUBLISHED} and published: NAME"
                )
            from benchmark.splits.published import get_published

            get_published(self.published)
            if self.params:
                raise ConfigError(f"split config {self.name!r}: a published split takes no params")
        else:
            get_splitter(self.splitter)
        if self.validation_splitter is not None:
            get_splitter(self.validation_splitter)
        elif self.validation_params:
            raise ConfigError(f"split config {self.name!r}: validation_params without validation_splitter")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any], *, name: str | None = None) -> SplitConfig:
        """Build from a plain mapping (a parsed YAML file); unknown keys are a ConfigError."""
        known = {
            "name",
            "splitter",
            "params",
            "validation_splitter",
            "validation_params",
            "published",
            "description",
        }
        extra = set(m) - known
        if extra:
            raise ConfigError(f"split config: unknown keys {sorted(extra)}; known: {sorted(known)}")
        kw = dict(m)
        if name is not None:
            kw.setdefault("name", name)
        if kw.get("splitter") is None and kw.get("published"):
            kw["splitter"] = PUBLISHED
        if "name" not in kw or "splitter" not in kw:
            raise ConfigError(f"split config needs 'name' and 'splitter', got keys {sorted(kw)}")
        kw["params"] = dict(kw.get("params") or {})
        kw["validation_params"] = dict(kw.get("validation_params") or {})
        return cls(**kw)

    def canonical(self) -> dict[str, Any]:
        """The config as plain JSON data (the cache key's config part)."""
        return {
            "name": self.name,
            "splitter": self.splitter,
            "params": dict(self.params),
            "validation_splitter": self.validation_splitter,
            "validation_params": dict(self.validation_params),
            "published": self.published,
        }


def load_split_config(name_or_path: str | Path, *, conf_dir: Path | None = None) -> SplitConfig:
    """Read ``conf/split/NAME.yaml`` (or a YAML file path) into a :class:`SplitConfig`."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        if conf_dir is None:
            from benchmark.registry import conf_dir as _conf_dir

            conf_dir = _conf_dir()
        path = conf_dir / "split" / f"{name_or_path}.yaml"
        if not path.exists():
            from benchmark.errors import UnknownNameError

            known = sorted(p.stem for p in (conf_dir / "split").glob("*.yaml"))
            raise UnknownNameError("split config", str(name_or_path), known)
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    return SplitConfig.from_mapping(data, name=path.stem)


def split_seeds(config: SplitConfig, *, dataset: str, seed: int) -> dict[str, int]:
    """The derived seeds of the test split and of the validation carve-out."""
    seeds = {"test": derive_seed(dataset, config.name, config.splitter, "test", seed)}
    if config.validation_splitter is not None:
        seeds["validation"] = derive_seed(
            dataset, config.name, config.validation_splitter, "validation", seed
        )
    return seeds


def split_key(data_fingerprint: str, config: SplitConfig, *, dataset: str, seed: int) -> str:
    """Cache key: data fingerprint + canonical config + dataset + seed + store format."""
    return sha256_json(
        {
            "store": store.STORE_VERSION,
            "data": data_fingerprint,
            "dataset": dataset,
            "config": config.canonical(),
            "seed": int(seed),
        }
    )


def make_split(
    data: InteractionMatrix | None,
    config: SplitConfig,
    *,
    dataset: str,
    seed: int,
    cache_dir: Path | None = None,
    use_cache: bool = True,
) -> Split:
    """Split ``data`` as ``config`` says (or load its published split), carve validation, cache it.

    Every split returned has passed :meth:`Split.check` (and the temporal guards of temporal
    splitters). For a published config, ``data`` is not used (the published files define the
    dataset: train ∪ test) and may be None; the cache key then uses the published split's
    fingerprint.

    Args:
        data: the (preprocessed) dataset.
        config: the split config.
        dataset: the dataset's name (part of seeds and cache key).
        seed: the experiment seed.
        cache_dir: the cache root (default ``$REPROREC_CACHE`` / user cache dir); splits go to
            ``<cache_dir>/splits/``.
        use_cache: False to neither read nor write the store.

    Returns:
        The split; ``params`` holds the splitter's own params and user counts plus ``config``,
        ``dataset``, ``seed``, ``seeds``, ``data_fingerprint`` and ``cache_key``.
    """
    if int(seed) != seed:
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    seeds = split_seeds(config, dataset=dataset, seed=seed)

    if config.splitter == PUBLISHED:
        from benchmark.splits.published import load_published_split

        assert config.published is not None
        base = load_published_split(config.published, cache_dir=cache_dir)
        data_fp = base.fingerprint
    else:
        if data is None:
            raise ConfigError(f"split config {config.name!r} needs data")
        base = None
        data_fp = data.fingerprint
    key = split_key(data_fp, config, dataset=dataset, seed=seed)

    def build() -> Split:
        if base is not None:
            split = base
        else:
            assert data is not None
            split = apply_splitter(
                config.splitter, data, config.params, rng=np.random.default_rng(seeds["test"])
            )
        if config.validation_splitter is not None:
            split = carve_validation(
                split,
                config.validation_splitter,
                config.validation_params,
                rng=np.random.default_rng(seeds["validation"]),
            )
        params = {
            **split.params,
            "config": config.name,
            "dataset": dataset,
            "seed": seed,
            "seeds": seeds,
            "data_fingerprint": data_fp,
            "cache_key": key,
        }
        made = Split(
            train=split.train,
            test=split.test,
            validation=split.validation,
            test_candidates=split.test_candidates,
            params=_json_params(params),
        ).check()
        return check_not_empty(made, config, dataset=dataset, seed=seed)  # before it is cached

    if not use_cache:
        return build()
    dest = store.splits_dir(cache_dir) / store.safe_name(dataset, config.name, f"seed{seed}", key[:16])
    # also a split cached before this check existed
    return check_not_empty(store.cached_split(dest, build), config, dataset=dataset, seed=seed)


def check_not_empty(split: Split, config: SplitConfig, *, dataset: str, seed: int) -> Split:
    """Refuse a split without test users (or with a validation part without users).

    Such a split cannot be evaluated: every metric is a mean over zero users (NaN), so a cell would
    "finish" with NaN metrics after all its fitting and tuning. It is refused before any fitting,
    naming the dataset, the split config and the counts.

    Returns:
        ``split`` unchanged.

    Raises:
        DataError: the test part, or the validation part when there is one, has no user.
    """
    parts = [("test", split.test)] + (
        [("validation", split.validation)] if split.validation is not None else []
    )
    for part, matrix in parts:
        n_users = int((matrix.user_counts() > 0).sum())
        if n_users == 0:
            n_train_users = int((split.train.user_counts() > 0).sum())
            raise DataError(
                f"split {config.name!r} of dataset {dataset!r} (seed {seed}) has 0 {part} users "
                f"({matrix.nnz} {part} interactions; {n_train_users} users and {split.train.nnz} "
                f"interactions in train): nothing to evaluate, every metric would be NaN; change the "
                f"split's parameters (e.g. split.params / split.validation_params) or the dataset's "
                "preprocessing",
                field=f"split.{part}",
                value=n_users,
            )
    return split


__all__ = [
    "PUBLISHED",
    "SPLITTERS",
    "SplitConfig",
    "check_not_empty",
    "load_split_config",
    "make_split",
    "split_key",
    "split_seeds",
]
