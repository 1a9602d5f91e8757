"""``reprorec-store``: carry the finished cells of a tracking store to another store, as files.

    reprorec-store export --tracking-uri results/default_all/mlflow.db --out reports/stores/default_all
    reprorec-store import reports/stores/default_all --tracking-uri results/default_all/mlflow.db

See :mod:`benchmark.reporting.archive` for what an archive holds and what import guarantees.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reprorec-store",
        description="Export the FINISHED cells of an MLflow experiment (with their trials and sweeps) as a "
        "portable archive folder, or import such a folder into a store: to publish a report's runs, or to go "
        "on with a sweep on another machine (its next run skips the imported cells).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    uri_help = "MLflow tracking URI or sqlite file (default: $MLFLOW_TRACKING_URI, else mlflow.db)"
    ex = sub.add_parser("export", help="write an archive folder from a store")
    ex.add_argument("--tracking-uri", default=None, help=uri_help + "; it must exist")
    ex.add_argument("--experiment", default="reprorec", help="MLflow experiment (default: reprorec)")
    ex.add_argument("--out", type=Path, required=True, help="archive folder (replaced atomically)")
    ex.add_argument(
        "--with-recommendations",
        action="store_true",
        help="also copy each cell's recommendations.parquet (large; reports do not read it)",
    )
    study_help = (
        "Optuna storage of the sweep (default: optuna.db beside a sqlite tracking store), for the studies "
        "of cells that have not finished: they resume from their finished trials"
    )
    ex.add_argument("--study-storage", default=None, help=study_help)
    im = sub.add_parser("import", help="rebuild an archive's runs in a store (created if new)")
    im.add_argument("archive", type=Path, help="archive folder written by reprorec-store export")
    im.add_argument("--tracking-uri", default=None, help=uri_help)
    im.add_argument("--study-storage", default=None, help=study_help)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from benchmark.errors import ReproRecError
    from benchmark.reporting.archive import export_store, import_archive

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "mlflow.db"
    try:
        if args.command == "export":
            s = export_store(
                uri,
                args.out,
                experiment=args.experiment,
                with_recommendations=args.with_recommendations,
                study_storage=args.study_storage,
            )
            print(f"reprorec-store: {s.line('exported')} to {args.out}")
        else:
            s = import_archive(args.archive, uri, study_storage=args.study_storage)
            if s.already:
                print(f"reprorec-store: {s.already} runs were imported before: left as they are")
            for line in s.skipped:
                print(f"reprorec-store: skipped {line}")
            print(f"reprorec-store: {s.line('imported')} from {args.archive}")
    except ReproRecError as exc:
        print(f"reprorec-store: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
