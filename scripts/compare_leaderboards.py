"""Compare a regenerated leaderboard with a committed one, value by value.

``make benchmark`` writes its report to ``results/<experiment>/`` (untracked, so the checkout stays
clean and finished cells are not recomputed) and then runs::

    python scripts/compare_leaderboards.py results/default reports/default

Rows are matched on (dataset, split, protocol, model, key); every numeric column (value, interval,
n, p-values) must be equal bit for bit. Run ids, and the comment line with the regeneration command,
differ between stores by design and are not compared. Prints what differs; exits 1 if anything
does (``--warn-only``: print, exit 0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

KEY = ["dataset", "split", "protocol", "model", "key"]
IGNORED = {"run_ids"}


def load(folder: Path) -> pd.DataFrame:
    path = folder / "leaderboard.csv"
    if not path.is_file():
        raise SystemExit(f"no leaderboard: {path} does not exist")
    frame = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)
    missing = [c for c in KEY if c not in frame.columns]
    if missing:
        raise SystemExit(f"{path}: missing columns {missing}")
    return frame.set_index(KEY).sort_index()


def compare(new: pd.DataFrame, old: pd.DataFrame) -> list[str]:
    """Differences, one line each (empty when the leaderboards agree)."""
    problems = []
    for label, rows in (
        ("only in the new", new.index.difference(old.index)),
        ("only in the committed", old.index.difference(new.index)),
    ):
        problems.extend(f"{label} leaderboard: {'/'.join(map(str, r))}" for r in rows)
    columns = [c for c in old.columns if c in new.columns and c not in IGNORED]
    both = new.index.intersection(old.index)
    for column in columns:
        a, b = new.loc[both, column], old.loc[both, column]
        for idx in a.index[a != b]:  # strings as written: repr round-trips floats exactly
            problems.append(f"{'/'.join(map(str, idx))} {column}: {a[idx]} (new) != {b[idx]} (committed)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("new", type=Path, help="folder of the regenerated report")
    parser.add_argument("committed", type=Path, help="folder of the committed report")
    parser.add_argument("--warn-only", action="store_true", help="exit 0 even if values differ")
    args = parser.parse_args(argv)
    new, old = load(args.new), load(args.committed)
    problems = compare(new, old)
    n = len(new.index.intersection(old.index))
    if not problems:
        print(f"leaderboard {args.new} = {args.committed}: all {n} rows identical (run ids aside)")
        return 0
    print(
        f"leaderboard {args.new} differs from {args.committed} "
        f"({len(problems)} differences, {n} shared rows):"
    )
    for line in problems[:50]:
        print(f"  {line}")
    if len(problems) > 50:
        print(f"  ... and {len(problems) - 50} more")
    return 0 if args.warn_only else 1


if __name__ == "__main__":
    sys.exit(main())
