"""Load a registered dataset into an :class:`InteractionMatrix`, recording where it came from.

``load_dataset("ml-100k")`` locates the files (mirror, cache, download; see :mod:`.fetch`), parses
them, applies the dataset's default preprocessing (or the one given) and returns a
:class:`LoadedDataset` with the matrix, the preprocessing steps, the registry entry and the source
(variant, files, their sha256 and whether they came from the mirror, the cache or a download).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.data.datasets import DatasetInfo, Variant, get_dataset_info
from benchmark.data.fetch import (
    LocatedFile,
    ResourceUnavailableError,
    fix_hint,
    locate_resource,
    mirror_root,
    portable_file_name,
)
from benchmark.data.interactions import InteractionMatrix
from benchmark.data.parsers import parse
from benchmark.data.preprocess import Counts, PreprocessConfig, StepRecord, preprocess
from benchmark.data.synthetic import power_law_matrix
from benchmark.errors import ChecksumError, ConfigError, DataError
from benchmark.fingerprint import sha256_file


@dataclass(frozen=True)
class Source:
    """Where a loaded dataset came from.

    Attributes:
        variant: the variant read (e.g. ``grouplens``, ``rda-notimestamp``, ``file``, ``synthetic``).
        files: the files read, with sha256, origin (mirror/cache/download/local) and check applied.
        dropped_rows: rows dropped by content at parse time (known fake rows).
        options: the options that made it (for ``file`` / ``synthetic``).
        notes: how this variant relates to the others.
    """

    variant: str
    files: tuple[dict[str, str], ...] = ()
    dropped_rows: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""

    def __str__(self) -> str:
        files = "; ".join(f"{f['origin']}:{f['file']} sha256={f['sha256'][:12]}" for f in self.files)
        return f"{self.variant}({files or ', '.join(f'{k}={v}' for k, v in self.options.items())})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "files": [dict(f) for f in self.files],
            "dropped_rows": self.dropped_rows,
            "options": dict(self.options),
            "notes": self.notes,
        }


@dataclass(frozen=True, eq=False)
class LoadedDataset:
    """A dataset ready for splitting: matrix, preprocessing record, registry entry and source."""

    name: str
    data: InteractionMatrix
    steps: list[StepRecord]
    info: DatasetInfo
    source: Source
    preprocessing: PreprocessConfig = field(default_factory=PreprocessConfig)

    @property
    def fingerprint(self) -> str:
        """Content fingerprint of ``data`` (differs between variants of one dataset)."""
        return self.data.fingerprint


def default_preprocessing(name: str) -> PreprocessConfig:
    """The registered default preprocessing of dataset ``name``."""
    return PreprocessConfig(**dict(get_dataset_info(name).preprocessing))


def choose_variant(
    info: DatasetInfo, *, variant: str | None = None, mirror: Any = None, cache_dir: Any = None
) -> Variant:
    """The variant to read: the requested one, else the first whose files are all local, else the
    first that can be downloaded."""
    return locate_variant(info, variant=variant, mirror=mirror, cache_dir=cache_dir, locate=False)[0]


def locate_variant(
    info: DatasetInfo,
    *,
    variant: str | None = None,
    mirror: Any = None,
    cache_dir: Any = None,
    locate: bool = True,
) -> tuple[Variant, list[LocatedFile]]:
    """The variant to read (see :func:`choose_variant`) and, with ``locate``, its verified files.

    Each file is hashed once: the copies verified while looking for a local variant are the ones
    returned, not hashed again.

    Raises:
        ResourceUnavailableError: no variant is local and none can be downloaded (the message says
            how to make one available).
        ChecksumError: a file of the requested variant does not have its pinned sha256.
    """
    if variant is not None:
        v = info.variant(variant)
        files = (
            [locate_resource(info.name, k, mirror=mirror, cache_dir=cache_dir) for k in v.resources]
            if locate
            else []
        )
        return v, files
    for v in info.variants:
        try:
            files = [
                locate_resource(info.name, key, mirror=mirror, cache_dir=cache_dir, allow_download=False)
                for key in v.resources
            ]
        except (ResourceUnavailableError, ChecksumError):
            continue  # not local, or a corrupt cached copy: a download below replaces it
        return v, files
    for v in info.variants:
        if all(info.resource(k).urls for k in v.resources):
            files = (
                [locate_resource(info.name, k, mirror=mirror, cache_dir=cache_dir) for k in v.resources]
                if locate
                else []
            )
            return v, files
    hints = "; ".join(
        f"variant {v.name!r}: {fix_hint(info.name, k, mirror=mirror, cache_dir=cache_dir)}"
        for v in info.variants
        for k in v.resources[:1]
    )
    raise ResourceUnavailableError(
        f"dataset {info.name!r} is not available: no variant is in the mirror "
        f"({mirror_root(mirror) or 'REPROREC_MIRROR not set'}) or the cache, and none can be "
        f"downloaded; {hints}"
    )


def load_dataset(
    name: str,
    *,
    preprocessing: PreprocessConfig | None = None,
    options: Mapping[str, Any] | None = None,
    mirror: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> LoadedDataset:
    """Load dataset ``name`` (see the module docstring).

    Args:
        name: a registered dataset name (``reprorec-data list``).
        preprocessing: the steps to apply; None uses the dataset's registered default.
        options: per-dataset options: ``variant`` for registered datasets; ``path``, ``format``,
            ``sep``, ``header``, ``columns``, ``ids`` for ``file``; ``n_users``, ``n_items``,
            ``n_interactions``, ``seed``, ``exponent`` for ``synthetic``.
        mirror: the offline mirror folder (default ``REPROREC_MIRROR``).
        cache_dir: the cache folder (default ``REPROREC_CACHE`` or the user cache dir).

    Raises:
        UnknownNameError: unknown dataset (the message lists the known ones) or variant.
        DataError: malformed input, or nothing left after preprocessing.
        ChecksumError: a file does not have its pinned sha256.
    """
    info = get_dataset_info(name)
    opts = dict(options or {})
    config = preprocessing if preprocessing is not None else default_preprocessing(name)

    if name == "synthetic":
        return _load_synthetic(info, opts, config)
    if name == "file":
        frame, source = _read_file(opts)
        read = [str(Path(str(opts["path"])).expanduser())]
    else:
        requested = opts.pop("variant", None)
        if opts:
            raise ConfigError(f"dataset {name!r} takes only the option 'variant', got {sorted(opts)}")
        variant, located = locate_variant(info, variant=requested, mirror=mirror, cache_dir=cache_dir)
        frame = parse(variant.parser, [f.path for f in located], variant.parser_options)
        source = Source(
            variant=variant.name,
            files=tuple(f.to_dict() for f in located),
            dropped_rows=int(frame.attrs.get("dropped_rows", 0)),
            notes=variant.notes,
        )
        read = [str(f.path) for f in located]
    # Errors name the files as this machine has them (the user fixes them here); what is logged
    # (source.files) names them portably.
    where = ", ".join(read) or name
    frame, steps = preprocess(frame, config, source=where)
    data = _to_matrix(frame, name)
    return LoadedDataset(name, data, steps, info, source, config)


def frame_to_matrix(frame: pd.DataFrame, *, name: str = "") -> InteractionMatrix:
    """Build the :class:`InteractionMatrix` of a frame of unique (user, item) pairs (sorted ids)."""
    return InteractionMatrix.from_frame(
        frame,
        rating_col="rating" if "rating" in frame.columns else None,
        timestamp_col="timestamp" if "timestamp" in frame.columns else None,
        name=name,
    )


def _to_matrix(frame: pd.DataFrame, name: str) -> InteractionMatrix:
    return frame_to_matrix(frame, name=name)


_FILE_OPTIONS = {"path", "format", "sep", "header", "columns", "ids"}


def _read_file(opts: Mapping[str, Any]) -> tuple[pd.DataFrame, Source]:
    unknown = set(opts) - _FILE_OPTIONS
    if unknown:
        raise ConfigError(
            f"unknown options for dataset 'file': {sorted(unknown)}; known: {sorted(_FILE_OPTIONS)}"
        )
    if not opts.get("path"):
        raise ConfigError("dataset 'file' needs options.path")
    path = Path(str(opts["path"])).expanduser()
    if not path.is_file():
        raise DataError("file not found", file=str(path))
    suffixes = [s.lower() for s in path.suffixes]
    fmt = opts.get("format") or (
        "parquet" if ".parquet" in suffixes else "tsv" if {".tsv", ".tab"} & set(suffixes) else "csv"
    )
    columns = opts.get("columns")
    if fmt == "parquet":
        frame = parse("parquet", [path], {"columns": dict(columns) if columns else None})
    elif fmt in ("csv", "tsv"):
        header = bool(opts.get("header", True))
        sep = opts.get("sep") or ("\t" if fmt == "tsv" else ",")
        parser_opts: dict[str, Any] = {"sep": sep, "header": header, "ids": opts.get("ids", "int")}
        if isinstance(columns, (list, tuple)):
            parser_opts["names"] = list(columns)
        elif columns is not None:
            parser_opts["columns"] = dict(columns)
        elif not header:
            parser_opts["names"] = ["user", "item", "rating", "timestamp"][: _n_fields(path, sep)]
        frame = parse("delimited", [path], parser_opts)
    else:
        raise ConfigError(f"format must be csv, tsv or parquet, got {fmt!r}")
    record = {
        "key": "file",
        "file": portable_file_name(path),  # logged: no absolute path of this machine
        "sha256": sha256_file(path),
        "origin": "local",
        "check": "none (user file)",
    }
    clean = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in opts.items()}
    clean["path"] = record["file"]  # the file as the record names it (portable)
    return frame, Source("file", (record,), options=clean)


def _n_fields(path: Path, sep: str) -> int:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        first = fh.readline().rstrip("\r\n")
    return min(4, max(2, len(first.split(sep))))


_SYNTH_DEFAULTS: dict[str, Any] = {
    "n_users": 1000,
    "n_items": 500,
    "n_interactions": 20000,
    "seed": 0,
    "exponent": 0.8,
}


def _load_synthetic(info: DatasetInfo, opts: dict[str, Any], config: PreprocessConfig) -> LoadedDataset:
    unknown = set(opts) - set(_SYNTH_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown options for dataset 'synthetic': {sorted(unknown)}")
    params = {**_SYNTH_DEFAULTS, **opts}
    m = power_law_matrix(
        int(params["n_users"]),
        int(params["n_items"]),
        int(params["n_interactions"]),
        seed=int(params["seed"]),
        exponent=float(params["exponent"]),
        name="synthetic",
    )
    source = Source(
        "synthetic", options=params, notes="generated by benchmark.data.synthetic.power_law_matrix"
    )
    needs_frame = config.min_rating is not None or config.user_core > 1 or config.item_core > 1
    if not needs_frame:
        c = Counts(m.n_users, m.n_items, m.nnz)
        # Counts over the id space: users/items without interactions are kept in a synthetic matrix.
        steps = [StepRecord("duplicates", {"policy": config.duplicates}, c, c)]
        return LoadedDataset("synthetic", m, steps, info, source, config)
    frame, steps = preprocess(m.to_frame(external_ids=True), config, source="synthetic")
    return LoadedDataset("synthetic", _to_matrix(frame, "synthetic"), steps, info, source, config)


def load_dataset_config(cfg: Mapping[str, Any], **kwargs: Any) -> LoadedDataset:
    """Load from a plain mapping shaped like ``conf/dataset/*.yaml`` (``name``, ``preprocessing``,
    ``options``); the CLI converts Hydra configs to plain containers before calling this."""
    if "name" not in cfg:
        raise ConfigError("dataset config needs a 'name'")
    pre = cfg.get("preprocessing")
    config = PreprocessConfig(**dict(pre)) if pre is not None else None
    return load_dataset(str(cfg["name"]), preprocessing=config, options=cfg.get("options") or None, **kwargs)
