"""Published reference values shown beside ours ("published vs reproduced").

Format: a CSV with header ``model,metric,cutoff,value,source`` (``cutoff`` empty for cutoff-free
metrics; ``source`` = the citation, e.g. "Dacrema et al. TOIS 2021, Table 46"). Optional columns
``dataset`` and ``split`` restrict a line to tables of that dataset / split (empty = every table).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from benchmark.errors import DataError
from benchmark.reporting.tables import ALIASES, Leaderboard

REQUIRED = ("model", "metric", "cutoff", "value", "source")


def read_reference(path: Path) -> list[dict[str, Any]]:
    """Parse a reference CSV; a bad line raises :class:`DataError` naming the file, line and field."""
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        absent = [c for c in REQUIRED if c not in header]
        if absent:
            raise DataError(
                f"reference file lacks column(s) {absent}; header must start with {','.join(REQUIRED)}",
                file=str(path),
                line=1,
                field=absent[0],
                value=",".join(header),
            )
        for lineno, rec in enumerate(reader, start=2):
            cutoff_text = (rec.get("cutoff") or "").strip()
            try:
                cutoff = int(cutoff_text) if cutoff_text else None
            except ValueError as exc:
                raise DataError(
                    "cutoff must be an integer or empty",
                    file=str(path),
                    line=lineno,
                    field="cutoff",
                    value=cutoff_text,
                ) from exc
            try:
                value = float(rec["value"])
            except (TypeError, ValueError) as exc:
                raise DataError(
                    "value must be a number",
                    file=str(path),
                    line=lineno,
                    field="value",
                    value=rec.get("value"),
                ) from exc
            for f in ("model", "metric", "source"):
                if not (rec.get(f) or "").strip():
                    raise DataError(
                        f"{f} must not be empty", file=str(path), line=lineno, field=f, value=rec.get(f)
                    )
            rows.append(
                {
                    "model": rec["model"].strip(),
                    "metric": rec["metric"].strip(),
                    "cutoff": cutoff,
                    "value": value,
                    "source": rec["source"].strip(),
                    "dataset": (rec.get("dataset") or "").strip(),
                    "split": (rec.get("split") or "").strip(),
                }
            )
    return rows


def attach_reference(table: Leaderboard, reference: list[dict[str, Any]]) -> None:
    """Fill ``table.references`` with (ours, published, difference) for the lines that apply."""
    rows = {r.model: r for r in table.rows}
    for ref in reference:
        if ref["dataset"] and ref["dataset"] != table.dataset:
            continue
        if ref["split"] and ref["split"] != table.split:
            continue
        if ref["model"] not in rows:
            continue
        names = ALIASES.get(ref["metric"], (ref["metric"],))
        cell = None
        for n in names:
            key = n if ref["cutoff"] is None else f"{n}_at_{ref['cutoff']}"
            cell = rows[ref["model"]].cells.get(key)
            if cell is not None:
                break
        ours = cell.mean if cell is not None else math.nan
        table.references.append(
            {
                "model": ref["model"],
                "metric": ref["metric"],
                "cutoff": ref["cutoff"],
                "ours": ours,
                "published": ref["value"],
                "difference": ours - ref["value"],
                "source": ref["source"],
            }
        )


#: |ours - published| at or below this counts as reproduced (4-decimal tables, bootstrap noise aside).
REPRODUCED_WITHIN = 0.002


def reproduction_summary(
    references: list[dict[str, Any]], within: float = REPRODUCED_WITHIN
) -> dict[str, Any]:
    """How the published values compare with ours: counts within ``within``, above and below it.

    ``above`` / ``below`` hold the count and the largest difference beyond the tolerance; values
    reprorec did not compute (no such run or column) count as ``missing``.
    """
    diffs = [x["difference"] for x in references]
    known = [d for d in diffs if not math.isnan(d)]
    above = [d for d in known if d > within]
    below = [d for d in known if d < -within]
    return {
        "n": len(diffs),
        "within": within,
        "n_within": len(known) - len(above) - len(below),
        "n_above": len(above),
        "max_above": max(above) if above else None,
        "n_below": len(below),
        "max_below": min(below) if below else None,
        "n_missing": len(diffs) - len(known),
    }


def summary_line(summary: dict[str, Any], label: str = "Reproduction") -> str:
    """``Reproduction: 40 of 57 published values within 0.002; 9 above (up to +0.0210); ...``."""
    n, within = summary["n"], summary["within"]
    parts = [f"{label}: {summary['n_within']} of {n} published values within {within:g}"]
    if summary["n_above"]:
        parts.append(f"{summary['n_above']} above (ours higher by up to {summary['max_above']:+.4f})")
    if summary["n_below"]:
        parts.append(f"{summary['n_below']} below (ours lower by up to {summary['max_below']:+.4f})")
    if summary["n_missing"]:
        parts.append(f"{summary['n_missing']} not computed here")
    return "; ".join(parts) + "."
