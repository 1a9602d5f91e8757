"""Datasheet of a loaded dataset: size, sparsity, popularity skew, degrees, ratings, time, provenance."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from benchmark.data.loading import LoadedDataset

QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: all equal; close to 1: all mass on one).

    Uses the sorted-values form ``sum((2k - n - 1) x_k) / (n sum x)`` with 1-based ranks ``k``.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    total = x.sum()
    if n == 0 or total == 0:
        return 0.0
    k = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * k - n - 1) * x).sum() / (n * total))


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    q = np.quantile(values, QUANTILES)
    return {
        f"q{int(p * 100):02d}" if 0 < p < 1 else ("min" if p == 0 else "max"): float(v)
        for p, v in zip(QUANTILES, q)
    }


def datasheet(loaded: LoadedDataset) -> dict[str, Any]:
    """Summary statistics and provenance of a loaded dataset, as a JSON-ready dict.

    Degree statistics are over users/items with at least one interaction (a synthetic matrix may keep
    empty rows/columns in its id space; ``users``/``items`` count the whole id space).
    """
    m = loaded.data
    uc, ic = m.user_counts(), m.item_counts()
    sheet: dict[str, Any] = {
        "name": loaded.name,
        "title": loaded.info.title,
        "variant": loaded.source.variant,
        "users": m.n_users,
        "items": m.n_items,
        "interactions": m.nnz,
        "density": m.nnz / (m.n_users * m.n_items) if m.n_users and m.n_items else 0.0,
        "popularity_gini": gini(ic),
        "user_degree": _quantiles(uc[uc > 0]),
        "item_degree": _quantiles(ic[ic > 0]),
    }
    if m.ratings is not None:
        r = np.sort(m.ratings)  # sort + run lengths: np.unique is slow on large arrays here
        starts = np.flatnonzero(np.concatenate(([True], r[1:] != r[:-1])))
        values, counts = r[starts], np.diff(np.append(starts, len(r)))
        if len(values) <= 50:
            sheet["rating_histogram"] = {f"{float(v):g}": int(c) for v, c in zip(values, counts)}
        else:
            sheet["rating_histogram"] = None
            sheet["rating_range"] = [float(values[0]), float(values[-1])]
    if m.timestamps is not None and m.nnz:
        lo, hi = int(m.timestamps.min()), int(m.timestamps.max())
        sheet["timestamp_range"] = [lo, hi]
        sheet["time_range_utc"] = [
            dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S") for t in (lo, hi)
        ]
    sheet["preprocessing"] = [s.to_dict() for s in loaded.steps]
    sheet["fingerprint"] = loaded.fingerprint
    sheet["source"] = loaded.source.to_dict()
    sheet["license"] = loaded.info.license
    sheet["citation"] = loaded.info.citation
    sheet["notes"] = loaded.info.notes
    return sheet


def _fmt(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.2f}"


def format_datasheet(sheet: dict[str, Any]) -> str:
    """Human-readable text of a :func:`datasheet` (what ``reprorec-data describe`` prints)."""
    lines = [
        f"{sheet['name']}: {sheet['title']}  [variant: {sheet['variant']}]",
        f"  {sheet['users']:,} users, {sheet['items']:,} items, {sheet['interactions']:,} interactions",
        f"  density {sheet['density']:.4%}, item popularity Gini {sheet['popularity_gini']:.4f}",
    ]
    for label in ("user_degree", "item_degree"):
        q = sheet[label]
        if q:
            lines.append(f"  {label.replace('_', ' ')}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in q.items()))
    if sheet.get("rating_histogram"):
        lines.append("  ratings: " + ", ".join(f"{k}: {v:,}" for k, v in sheet["rating_histogram"].items()))
    elif "rating_range" in sheet:
        lo, hi = sheet["rating_range"]
        lines.append(f"  ratings (values): {lo:g} .. {hi:g}")
    if "time_range_utc" in sheet:
        lines.append(f"  time: {sheet['time_range_utc'][0]} .. {sheet['time_range_utc'][1]} UTC")
    lines.append("  preprocessing:")
    for s in sheet["preprocessing"]:
        b, a = s["before"], s["after"]
        params = ", ".join(f"{k}={v}" for k, v in s["params"].items())
        lines.append(
            f"    {s['step']} ({params}): {b['users']:,}/{b['items']:,}/{b['interactions']:,} -> "
            f"{a['users']:,}/{a['items']:,}/{a['interactions']:,} (users/items/interactions)"
        )
    lines.append(f"  fingerprint: {sheet['fingerprint']}")
    src = sheet["source"]
    for f in src["files"]:
        lines.append(f"  file [{f['origin']}, {f['check']}]: {f['file']}  sha256 {f['sha256']}")
    if src.get("dropped_rows"):
        lines.append(f"  dropped rows (known bad content): {src['dropped_rows']}")
    if src.get("options"):
        lines.append(f"  options: {src['options']}")
    for label, text in (
        ("variant notes", src.get("notes")),
        ("notes", sheet.get("notes")),
        ("license", sheet.get("license")),
    ):
        if text:
            lines.append(f"  {label}: {text}")
    if sheet.get("citation"):
        lines.append("  cite:")
        lines.extend("    " + c for c in str(sheet["citation"]).splitlines())
    return "\n".join(lines)
