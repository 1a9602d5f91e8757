"""The split store: splits persisted as parquet in the cache, verified on every reuse.

A stored split is one folder holding ``users.parquet`` and ``items.parquet`` (the id maps), one
parquet file per part (``train``, ``test``, optional ``validation``: columns ``user``, ``item``
as indices into the id maps, optional ``rating`` and ``timestamp``; ``test_candidates``: ``user``,
``item``) and ``split.json`` (the split's params, the fingerprint of every part and the sha256 of
every file). The folder is written atomically (:func:`benchmark.io.atomic_dir`) with fixed pyarrow
options and no timestamps, so the same split gives byte-identical files in any process.

Reading verifies the sha256 of every file and then recomputes the part fingerprints: a truncated,
edited or partial folder raises :class:`CorruptSplitError`, and :func:`cached_split` rebuilds it
(with a warning) instead of ever using it.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ReproRecError
from benchmark.fingerprint import canonical_json, sha256_file
from benchmark.io import atomic_dir
from benchmark.splits.split import Split

STORE_VERSION = 1
META = "split.json"
# Fixed writer options: same bytes for the same table in any process (pyarrow writes no time).
_PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": False,
    "write_statistics": False,
    "version": "2.6",
    "data_page_version": "1.0",
}


class CorruptSplitError(ReproRecError):
    """A stored split folder that is incomplete or does not match its own checksums."""


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The reprorec cache folder: ``cache_dir``, else ``$REPROREC_CACHE``, else the user cache dir."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("REPROREC_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("reprorec"))


def splits_dir(cache_dir: str | Path | None = None) -> Path:
    """Folder holding the stored splits (``<cache>/splits``)."""
    return cache_root(cache_dir) / "splits"


def safe_name(*parts: object) -> str:
    """A file-system-safe folder name made of ``parts``."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", "-".join(str(p) for p in parts))


# ---------------------------------------------------------------------------------------- write
def _write_table(path: Path, columns: dict[str, np.ndarray]) -> None:
    table = pa.table({k: pa.array(v) for k, v in columns.items()})
    pq.write_table(table, path, **_PARQUET_OPTIONS)


def _part_columns(part: InteractionMatrix) -> dict[str, np.ndarray]:
    cols = {"user": part.row_indices(), "item": part.matrix.indices.astype(np.int64)}
    if part.ratings is not None:
        cols["rating"] = np.asarray(part.ratings, dtype=np.float32)
    if part.timestamps is not None:
        cols["timestamp"] = np.asarray(part.timestamps, dtype=np.int64)
    return cols


def _ids_column(ids: np.ndarray) -> np.ndarray:
    if ids.dtype.kind in "OUS":
        return np.asarray([str(x) for x in ids.tolist()], dtype=object)
    return ids


def write_split(split: Split, dest: str | Path) -> Path:
    """Persist ``split`` to the folder ``dest`` atomically (replacing what was there)."""
    dest = Path(dest)
    with atomic_dir(dest) as tmp:
        files: dict[str, str] = {}
        _write_table(tmp / "users.parquet", {"id": _ids_column(split.train.user_ids)})
        _write_table(tmp / "items.parquet", {"id": _ids_column(split.train.item_ids)})
        parts: dict[str, InteractionMatrix | None] = {
            "train": split.train,
            "validation": split.validation,
            "test": split.test,
        }
        for name, part in parts.items():
            if part is not None:
                _write_table(tmp / f"{name}.parquet", _part_columns(part))
        if split.test_candidates is not None:
            c = sp.csr_matrix(split.test_candidates)
            rows = np.repeat(np.arange(c.shape[0], dtype=np.int64), np.diff(c.indptr))
            _write_table(tmp / "test_candidates.parquet", {"user": rows, "item": c.indices.astype(np.int64)})
        for f in sorted(tmp.glob("*.parquet")):
            files[f.name] = sha256_file(f)
        meta = {
            "format": STORE_VERSION,
            "names": {k: v.name for k, v in parts.items() if v is not None},
            "params": dict(split.params),
            "fingerprints": dict(split.fingerprints),
            "files": files,
        }
        (tmp / META).write_text(
            json.dumps(json.loads(canonical_json(meta)), indent=1, sort_keys=True) + "\n", encoding="utf-8"
        )
    return dest


# ---------------------------------------------------------------------------------------- read
def _read_columns(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    return {name: table.column(name).to_numpy() for name in table.column_names}


def _part(
    cols: dict[str, np.ndarray], user_ids: np.ndarray, item_ids: np.ndarray, name: str
) -> InteractionMatrix:
    """Rebuild a part written in CSR order directly (no re-sort; fingerprints are checked after)."""
    users, items = cols["user"].astype(np.int64), cols["item"]
    if len(users) and (users.min() < 0 or users.max() >= len(user_ids) or np.any(users[1:] < users[:-1])):
        raise CorruptSplitError(f"part {name}: user indices out of range or not in CSR order")
    if len(items) and (items.min() < 0 or items.max() >= len(item_ids)):
        raise CorruptSplitError(f"part {name}: item indices out of range")
    indptr = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=len(user_ids)), out=indptr[1:])
    csr = sp.csr_matrix(
        (np.ones(len(items), dtype=np.float32), items.astype(np.int32), indptr),
        shape=(len(user_ids), len(item_ids)),
    )
    ratings, timestamps = cols.get("rating"), cols.get("timestamp")
    return InteractionMatrix(
        csr,
        user_ids,
        item_ids,
        None if ratings is None else ratings.astype(np.float32),
        None if timestamps is None else timestamps.astype(np.int64),
        name=name,
    )


def read_split(src: str | Path) -> Split:
    """Load a split folder written by :func:`write_split`, verifying every checksum.

    Raises:
        CorruptSplitError: a file is missing, unreadable, or differs from the recorded sha256, or
            a rebuilt part's fingerprint differs from the recorded one.
    """
    src = Path(src)
    try:
        meta = json.loads((src / META).read_text(encoding="utf-8"))
        if meta.get("format") != STORE_VERSION:
            raise CorruptSplitError(f"{src / META}: store format {meta.get('format')!r} != {STORE_VERSION}")
        for name, digest in meta["files"].items():
            actual = sha256_file(src / name)
            if actual != digest:
                raise CorruptSplitError(f"{src / name}: sha256 {actual} != recorded {digest}")
        user_ids = _read_columns(src / "users.parquet")["id"]
        item_ids = _read_columns(src / "items.parquet")["id"]
        parts: dict[str, InteractionMatrix | None] = {}
        for name in ("train", "validation", "test"):
            fname = f"{name}.parquet"
            if fname not in meta["files"]:
                parts[name] = None
                continue
            parts[name] = _part(_read_columns(src / fname), user_ids, item_ids, meta["names"].get(name, name))
        cand = None
        if "test_candidates.parquet" in meta["files"]:
            cols = _read_columns(src / "test_candidates.parquet")
            cand = sp.csr_matrix(
                (np.ones(len(cols["user"]), dtype=bool), (cols["user"], cols["item"])),
                shape=(len(user_ids), len(item_ids)),
            )
        train, test = parts["train"], parts["test"]
        if train is None or test is None:
            raise CorruptSplitError(f"{src}: train or test part missing")
        split = Split(
            train=train,
            test=test,
            validation=parts["validation"],
            test_candidates=cand,
            params=meta["params"],
        )
    except CorruptSplitError:
        raise
    except Exception as exc:  # any unreadable / inconsistent file means the folder is corrupt
        raise CorruptSplitError(f"{src}: cannot read stored split ({type(exc).__name__}: {exc})") from exc
    if dict(split.fingerprints) != meta["fingerprints"]:
        raise CorruptSplitError(f"{src}: part fingerprints differ from the recorded ones")
    return split.check()


def cached_split(dest: str | Path, build: Callable[[], Split]) -> Split:
    """Return the split stored at ``dest``, or ``build()`` it and store it there.

    A stored folder that fails verification is never used: it is rebuilt and replaced, with a
    warning naming what was wrong.
    """
    dest = Path(dest)
    if (dest / META).exists() or dest.exists():
        try:
            return read_split(dest)
        except CorruptSplitError as exc:
            warnings.warn(f"rebuilding corrupt cached split: {exc}", RuntimeWarning, stacklevel=2)
    split = build()
    write_split(split, dest)
    return split
