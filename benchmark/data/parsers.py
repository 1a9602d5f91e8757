"""Readers of interaction files, each returning a frame with columns ``user, item[, rating][, timestamp]``.

All readers are vectorised (pandas ``read_csv`` with explicit dtypes, pyarrow for parquet, numpy on
the whole text for list formats). When a fast read fails, a slower diagnostic pass finds the first
offending line and raises :class:`~benchmark.errors.DataError` naming file, line, field and text.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.errors import DataError, UnknownNameError

CANONICAL = ("user", "item", "rating", "timestamp")
_INT_COLS = ("user", "item", "timestamp")


def _open_text(path: Path) -> Any:
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _line_text(path: Path, line: int) -> str:
    """Text of 1-based ``line`` of ``path`` (error path only)."""
    with _open_text(path) as fh:
        for k, text in enumerate(fh, start=1):
            if k == line:
                return str(text).rstrip("\r\n")
    return ""


def _malformed(
    path: Path, line: int, message: str, field: str | None = None, value: str | None = None
) -> DataError:
    text = _line_text(path, line)
    return DataError(f"{message}: {text!r}", file=str(path), line=line, field=field, value=value)


# ---------------------------------------------------------------------------------------------- delimited
def read_delimited(
    path: str | Path,
    *,
    sep: str = ",",
    names: Sequence[str | None] | None = None,
    header: bool = False,
    columns: Mapping[str, str] | None = None,
    ids: str = "int",
    drop_rows: Sequence[Mapping[str, Any]] = (),
) -> pd.DataFrame:
    """Read a delimited text file (gzip allowed) of interactions.

    Args:
        path: the file.
        sep: field separator (``::`` is read by the C parser as ``:`` with empty fields in between).
        names: column names in file order (replacing the header, if any); ``None`` entries are skipped.
        header: whether the first line is a header.
        columns: file column -> canonical name (``user``, ``item``, ``rating``, ``timestamp``); with a
            header, defaults to the header's canonical names.
        ids: ``int`` (user/item ids must be integers) or ``str`` (any text).
        drop_rows: rows to drop by exact content (canonical names -> value), e.g. a known fake row.

    Returns:
        A frame with the canonical columns found (user/item int64 or str, rating float64, timestamp
        int64). Dropped rows are counted in ``frame.attrs["dropped_rows"]``.

    Raises:
        DataError: missing column, malformed line, non-integer id, NaN or infinite rating (file:line,
            field, value and the line's text).
    """
    path = Path(path)
    if ids not in ("int", "str"):
        raise DataError("ids must be 'int' or 'str'", field="ids", value=ids)
    read_sep, stride = sep, 1
    if sep == "::":  # the C engine is single-character; "a::b" = "a", "", "b" with ":"
        read_sep, stride = ":", 2

    if header and names is None:
        if columns is None:
            try:
                head = pd.read_csv(path, sep=read_sep, nrows=0, engine="c").columns
            except ValueError as exc:  # EmptyDataError: not even a header
                raise DataError(f"cannot read the header: {exc}", file=str(path), line=1) from None
            columns = {c: c for c in head if c in CANONICAL}
        rename = dict(columns)
        header_arg: int | None = 0
        file_names: list[str] | None = None
    else:
        if names is None:
            if columns is None:
                raise DataError("a file without header needs 'names' (columns in file order)", file=str(path))
            names = list(columns)
        mapping = dict(columns) if columns is not None else {n: n for n in names if n is not None}
        file_names = []
        usecols: list[str] = []
        for k, n in enumerate(names):
            for _ in range(stride - 1 if k else 0):
                file_names.append(f"_sep{k}")
            col = n if n is not None else f"_skip{k}"
            file_names.append(col)
            if n is not None and mapping.get(n) in CANONICAL:
                usecols.append(n)
        rename = {n: mapping[n] for n in usecols}
        header_arg = 0 if header else None  # with names and a header, the names replace the header

    targets = list(rename.values())
    for need in ("user", "item"):
        if need not in targets:
            raise DataError("missing column", file=str(path), field=need, value=sorted(rename))
    if len(set(targets)) != len(targets):
        raise DataError("two file columns map to the same name", file=str(path), value=rename)

    dtype: dict[str, Any] = {}
    for src, dst in rename.items():
        if dst == "rating":
            dtype[src] = "float64"
        elif dst in ("user", "item") and ids == "str":
            dtype[src] = "str"
        else:
            dtype[src] = "int64"
    kwargs: dict[str, Any] = {
        "sep": read_sep,
        "header": header_arg,
        "names": file_names,
        "index_col": False,  # with explicit names, a line with extra fields is an error, not an index
        "engine": "c",
        "compression": "infer",
    }
    try:
        frame = pd.read_csv(path, dtype=dtype, **kwargs)
    except ValueError as exc:  # ParserError is a ValueError; so are bad ints and missing columns
        raise _diagnose(path, kwargs, rename, header, exc, dtype) from None
    absent = [c for c in rename if c not in frame.columns]
    if absent:
        raise DataError("missing column", file=str(path), field=absent[0], value=list(frame.columns))
    frame = frame.rename(columns=rename)[[c for c in CANONICAL if c in targets]]

    if "rating" in frame.columns and not np.isfinite(frame["rating"].to_numpy()).all():
        # NaN and inf alike: an infinite rating (``inf``, ``1e999``) breaks every rating threshold
        # and weighted model as surely as a missing one.
        raise _diagnose(path, kwargs, rename, header, None, dtype) from None

    dropped = 0
    for row in drop_rows:
        mask = np.ones(len(frame), dtype=bool)
        for col, value in row.items():
            if col in frame.columns:
                mask &= (frame[col] == value).to_numpy()
        if mask.any():
            dropped += int(mask.sum())
            frame = frame.loc[~mask]
    frame = frame.reset_index(drop=True)
    frame.attrs["dropped_rows"] = dropped
    return frame


_LINE_RE = re.compile(r"line (\d+)")


def _diagnose(
    path: Path,
    kwargs: dict[str, Any],
    rename: Mapping[str, str],
    header: bool,
    exc: Exception | None,
    dtype: Mapping[str, Any],
) -> DataError:
    """Find the first offending line after the fast typed read failed (slow path, errors only)."""
    loose = dict(kwargs, skip_blank_lines=False, na_filter=False)
    try:
        raw = pd.read_csv(path, dtype=str, **loose)
    except ValueError as exc2:
        msg = str(exc2)
        if "Usecols do not match" in msg or "not in list" in msg:
            return DataError("missing column", file=str(path), value=msg)
        m = _LINE_RE.search(msg)
        if m:
            return _malformed(path, int(m.group(1)), f"malformed line ({msg.strip()})")
        return DataError(f"cannot read file: {msg}", file=str(path))
    offset = 2 if header else 1  # row r of the frame is 1-based line r + offset
    first: tuple[int, str, str] | None = None
    for src, dst in rename.items():
        values = raw[src]
        text = values.astype(str).str.strip()
        if dtype.get(src) == "str":
            bad = (text == "").to_numpy()
        else:
            num = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
            bad = ~np.isfinite(num)  # unparsable (NaN after coercion) or infinite
            if dtype.get(src) == "int64":
                with np.errstate(invalid="ignore"):
                    bad |= ~bad & (np.mod(num, 1) != 0)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            if first is None or r < first[0]:
                first = (r, dst, str(values.iloc[r]))
    if first is not None:
        r, dst, value = first
        line = r + offset
        if value.strip() == "":
            what = "empty line" if _line_text(path, line).strip() == "" else f"missing or NaN {dst}"
        elif dst in ("user", "item"):
            what = f"non-integer {dst} id {value!r}"
        elif np.isinf(pd.to_numeric(value.strip(), errors="coerce")):
            what = f"infinite {dst} {value!r} (ratings must be finite numbers)"
        elif value.strip().lower() in ("nan", "-nan", "+nan"):
            what = f"NaN {dst} {value!r} (ratings must be finite numbers)"
        else:
            what = f"non-numeric {dst} {value!r}"
        return _malformed(path, line, f"malformed line: {what}", field=dst, value=value)
    return DataError(f"cannot read file: {exc}", file=str(path))


# ---------------------------------------------------------------------------------------------- user lists
def read_user_lists(path: str | Path, *, layout: str = "count", min_tokens: int = 1) -> pd.DataFrame:
    """Read a one-line-per-user list file into (user, item) pairs, vectorised over the whole text.

    Layouts:
        * ``count`` (CiteULike ``users.dat``, CVAE ``cf-*-users.dat``): line ``u`` (0-based) is
          ``n item_1 ... item_n``; the user id is the line number and ``n`` must equal the item count.
        * ``user`` (MCRec test, SpectralCF): ``user item_1 item_2 ...``.

    Raises:
        DataError: a non-integer token or a count that disagrees with its line (file:line and text).
    """
    path = Path(path)
    if layout not in ("count", "user"):
        raise DataError("layout must be 'count' or 'user'", field="layout", value=layout)
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    b = np.frombuffer(data, dtype=np.uint8)
    ws = (b == 32) | (b == 9) | (b == 13) | (b == 10)
    starts = np.flatnonzero(~ws & np.concatenate(([True], ws[:-1])))
    line_of_token = np.cumsum(b == 10)[starts] if len(b) else np.zeros(0, dtype=np.int64)
    raw_tokens = np.array(data.split(), dtype=np.bytes_)
    try:
        tokens = raw_tokens.astype(np.int64)
    except ValueError:
        ok = np.char.isdigit(np.char.lstrip(raw_tokens, b"-"))
        k = int(np.flatnonzero(~ok)[0])
        raise _malformed(
            path, int(line_of_token[k]) + 1, f"non-integer token {raw_tokens[k].decode(errors='replace')!r}"
        ) from None
    if len(tokens) == 0:
        return pd.DataFrame({"user": np.zeros(0, np.int64), "item": np.zeros(0, np.int64)})
    is_first = np.concatenate(([True], line_of_token[1:] != line_of_token[:-1]))
    first_idx = np.flatnonzero(is_first)
    per_line = np.diff(np.append(first_idx, len(tokens)))
    lines = line_of_token[first_idx]
    if layout == "count":
        bad = tokens[first_idx] != per_line - 1
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise _malformed(
                path,
                int(lines[k]) + 1,
                f"count {tokens[first_idx[k]]} disagrees with the {per_line[k] - 1} items on the line",
            )
        user_of_line = lines.astype(np.int64)
    else:
        user_of_line = tokens[first_idx]
    users = np.repeat(user_of_line, per_line - 1)
    items = tokens[~is_first]
    return pd.DataFrame({"user": users, "item": items})


# ---------------------------------------------------------------------------------------------- parquet
def read_parquet(path: str | Path, *, columns: Mapping[str, str] | None = None, **_: Any) -> pd.DataFrame:
    """Read a parquet file; ``columns`` maps file columns to canonical names (default: same names)."""
    path = Path(path)
    import pyarrow.parquet as pq

    schema_names = pq.read_schema(path).names
    rename = dict(columns) if columns is not None else {c: c for c in schema_names if c in CANONICAL}
    missing = [c for c in rename if c not in schema_names]
    if missing or "user" not in rename.values() or "item" not in rename.values():
        raise DataError(
            "missing column", file=str(path), field=(missing or ["user/item"])[0], value=schema_names
        )
    frame = pd.read_parquet(path, columns=list(rename), engine="pyarrow").rename(columns=rename)
    frame = frame[[c for c in CANONICAL if c in frame.columns]]
    for col in ("user", "item", "timestamp"):
        if col in frame.columns and frame[col].isna().any():
            r = int(np.flatnonzero(frame[col].isna().to_numpy())[0])
            raise DataError("missing value", file=str(path), line=r + 1, field=col)
    if "rating" in frame.columns:
        frame["rating"] = frame["rating"].astype("float64")
        finite = np.isfinite(frame["rating"].to_numpy())
        if not finite.all():
            r = int(np.flatnonzero(~finite)[0])
            value = float(frame["rating"].iloc[r])
            raise DataError(
                f"{'NaN' if np.isnan(value) else 'infinite'} rating in row {r + 1}",
                file=str(path),
                line=r + 1,
                field="rating",
                value=value,
            )
    return frame


PARSERS: dict[str, Callable[..., pd.DataFrame]] = {
    "delimited": read_delimited,
    "user_lists": read_user_lists,
    "parquet": read_parquet,
}


def parse(parser: str, paths: Sequence[str | Path], options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Read ``paths`` with the named parser and concatenate them (in order)."""
    try:
        fn = PARSERS[parser]
    except KeyError:
        raise UnknownNameError("parser", parser, list(PARSERS)) from None
    frames = [fn(p, **dict(options or {})) for p in paths]
    if len(frames) == 1:
        return frames[0]
    out = pd.concat(frames, ignore_index=True)
    out.attrs["dropped_rows"] = sum(int(f.attrs.get("dropped_rows", 0)) for f in frames)
    return out
