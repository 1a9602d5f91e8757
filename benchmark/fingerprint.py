"""sha256 fingerprints of arrays, files and configurations."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Return the hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def update_with_array(h: Any, name: str, array: np.ndarray | None) -> None:
    """Feed a named array into a hash in a canonical, platform-independent form.

    Numbers are hashed little-endian with their dtype; strings/objects as UTF-8 text separated by
    NUL. ``None`` is hashed as an explicit marker so that "absent" differs from "empty".
    """
    h.update(name.encode() + b"\x00")
    if array is None:
        h.update(b"<none>\x00")
        return
    arr = np.asarray(array)
    if arr.dtype.kind in "OUS":
        h.update(b"<str>" + str(arr.shape).encode() + b"\x00")
        h.update("\x00".join(map(str, arr.ravel().tolist())).encode("utf-8"))
    else:
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        h.update(arr.dtype.str.encode() + str(arr.shape).encode() + b"\x00")
        h.update(arr.tobytes())
    h.update(b"\x00")


def sha256_arrays(items: Iterable[tuple[str, np.ndarray | None]]) -> str:
    """Return the hex sha256 of a sequence of named arrays (see :func:`update_with_array`)."""
    h = hashlib.sha256()
    for name, array in items:
        update_with_array(h, name, array)
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    """Serialise a JSON-like object canonically (sorted keys, no spaces, numpy scalars as Python)."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        if isinstance(o, Mapping):
            return dict(o)
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        raise TypeError(f"cannot fingerprint {type(o).__name__}: {o!r}")

    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=default, allow_nan=True)


def sha256_json(obj: Any) -> str:
    """Return the hex sha256 of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()
