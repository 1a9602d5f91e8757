"""Checks that run before any work: every cell's configuration, then each dataset's files once.

A sweep's cells fail one by one, each after its own data load, when the mistake is in the command
line (``model.params.l2=abc``) or in the machine (no network, no mirror). The launching process
therefore checks all cells first (:func:`check_sweep`), in this order:

1. every cell's configuration, without data: the model's hyperparameters against its declared
   types and ranges, its search space, the split configuration, the dataset name;
2. each dataset (and published split) once: files that are not local are fetched here, once and
   before the fan-out, and a dataset that cannot be obtained stops the sweep with the fix (the URL
   and pinned sha256 to download, the cache path to put the file at, ``REPROREC_MIRROR``,
   ``reprorec-data fetch``).

Files that are already local are not hashed here: every cell verifies the files it reads by content.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from benchmark.config import Config
from benchmark.errors import ConfigError, ReproRecError
from benchmark.redaction import publication_url_problem

#: ``tuner.name`` values: search (optuna), one trial of ``model.params`` (fixed), no tuning (none).
TUNERS = ("optuna", "fixed", "none")
#: Datasets without files (generated, or a user's own file that the cell reads and names).
_NO_FILES = ("synthetic", "file")


def split_config(cfg: Config) -> Any:
    """The cell's :class:`benchmark.splits.make.SplitConfig` (validated: unknown keys, bad values)."""
    from dataclasses import asdict

    from benchmark.splits.make import SplitConfig

    return SplitConfig.from_mapping(asdict(cfg.split))


def check_cell_config(cfg: Config) -> None:
    """Check one cell's configuration without loading any data.

    Raises:
        ConfigError: an unknown or ill-typed hyperparameter, a value out of its declared range, a
            malformed search space or split configuration (the message names the YAML file and
            the field, e.g. ``model.params.l2``).
        UnknownNameError: an unknown dataset or published split.
    """
    from benchmark.data.datasets import get_dataset_info
    from benchmark.tuning.space import parse_space

    if cfg.tuner.name not in TUNERS:
        raise ConfigError(f"tuner.name={cfg.tuner.name!r} is not one of {list(TUNERS)}")
    if cfg.tuner.name != "none":  # budget, sampler, pruner, direction: before any cell starts
        from benchmark.tuning.tuner import check_tuner_config

        check_tuner_config(cfg.tuner)
    if cfg.report.correction not in ("holm", "bh"):  # checked before the sweep, not at its report
        raise ConfigError(f"report.correction={cfg.report.correction!r} is not one of ['bh', 'holm']")
    if cfg.report.url is not None and (problem := publication_url_problem(cfg.report.url, "report.url")):
        raise ConfigError(problem)
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"threads={cfg.threads} must be >= 1 (or null: the cell's share of the CPUs)")
    spec = cfg.model
    try:
        model = spec.build(**spec.params)
        model.validate_params()
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"{spec.path}: model.params: {exc}") from None
    if cfg.tuner.name != "fixed":
        space = parse_space(spec.search_space, source=f"{spec.path}: search_space")
        unknown = sorted(set(space.names) - set(model._param_names()))
        if unknown:
            raise ConfigError(
                f"{spec.path}: search_space names {unknown}, which {type(model).__name__} does not "
                f"take; its hyperparameters: {sorted(model._param_names())}"
            )
    split = split_config(cfg)
    if split.published:
        from benchmark.splits.published import get_published

        get_published(split.published)
    elif cfg.dataset.name not in _NO_FILES:
        get_dataset_info(cfg.dataset.name)


def data_needs(cfg: Config) -> tuple[str, tuple[str, ...] | None, str | None]:
    """What a cell reads: (dataset, resource keys or None for "a variant", requested variant)."""
    split = split_config(cfg)
    if split.published:
        from benchmark.splits.published import get_published

        pub = get_published(split.published)
        return pub.dataset, tuple(pub.resources), None
    variant = cfg.dataset.options.get("variant") if cfg.dataset.options else None
    return cfg.dataset.name, None, None if variant is None else str(variant)


def ensure_data(
    dataset: str,
    keys: tuple[str, ...] | None = None,
    variant: str | None = None,
    *,
    mirror: Any = None,
    cache_dir: Any = None,
) -> None:
    """Make the files of ``dataset`` local (fetching what is missing), or fail with the fix.

    Args:
        dataset: registry name.
        keys: the resources needed (a published split's files); None: one variant's files.
        variant: the variant requested in the dataset options (None: the first local one, else the
            first that can be downloaded, as the loader chooses).

    Raises:
        ResourceUnavailableError: a file is neither local nor obtainable (the message says how).
        ChecksumError: a downloaded file does not have its pinned sha256.
    """
    from benchmark.data.datasets import get_dataset_info
    from benchmark.data.fetch import local_copy, locate_resource
    from benchmark.data.loading import choose_variant

    info = get_dataset_info(dataset)

    def local(key: str) -> bool:  # present; verified by content when a cell reads it
        return local_copy(dataset, key, mirror=mirror, cache_dir=cache_dir) is not None

    if keys is None:
        if not info.variants:
            return
        if variant is None and any(all(map(local, v.resources)) for v in info.variants):
            return  # the loader reads the first variant that is all local
        chosen = choose_variant(info, variant=variant, mirror=mirror, cache_dir=cache_dir)
        keys = tuple(chosen.resources)
    for key in keys:
        if not local(key):
            locate_resource(dataset, key, mirror=mirror, cache_dir=cache_dir)  # downloads, verified


def check_sweep(configs: Iterable[Config]) -> int:
    """Check every cell's configuration, then each dataset once (see the module docstring).

    Returns:
        The number of cells checked.

    Raises:
        ConfigError: a cell's configuration is invalid (the message names the cell's overrides
            where they are known, the file and the field).
        ReproRecError: a dataset cannot be obtained (one message per sweep, with the fix).
    """
    needs: dict[tuple[str, tuple[str, ...] | None, str | None], None] = {}
    n = 0
    for cfg in configs:
        check_cell_config(cfg)
        if cfg.dataset.name not in _NO_FILES:
            needs[data_needs(cfg)] = None
        n += 1
    for dataset, keys, variant in needs:
        try:
            ensure_data(dataset, keys, variant)
        except ReproRecError as exc:
            raise type(exc)(f"dataset {dataset!r} is needed by this sweep: {exc}") from None
    return n


__all__ = ["check_cell_config", "check_sweep", "data_needs", "ensure_data"]
