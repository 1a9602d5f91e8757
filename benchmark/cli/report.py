"""``reprorec-report``: write the leaderboard report of a sweep or experiment from MLflow."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from benchmark.reporting.tables import DEFAULT_CUTOFFS, DEFAULT_MAIN_METRIC, DEFAULT_METRICS


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv_list(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"cutoffs must be integers separated by commas, got {text!r}"
        ) from exc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reprorec-report",
        description="Leaderboard report (Markdown, LaTeX, HTML, CSV, JSON, BibTeX) from the FINISHED "
        "cell runs "
        "of an MLflow experiment or sweep. Runs on different splits are never merged into one table.",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI, or the path of a sqlite file (default: $MLFLOW_TRACKING_URI or MLflow's "
        "default sqlite:///mlflow.db); a sqlite file or store folder that does not exist is an error",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--experiment", default=None, help="experiment name (default: reprorec)")
    which.add_argument(
        "--sweep", default=None, metavar="RUN_ID", help="report only the cells of this sweep run"
    )
    p.add_argument("--out", type=Path, default=None, help="report folder (default: reports/<experiment>)")
    p.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="CSV model,metric,cutoff,value,source of published values shown beside ours",
    )
    p.add_argument(
        "--metrics", type=_csv_list, default=list(DEFAULT_METRICS), help="metric names, comma-separated"
    )
    p.add_argument(
        "--cutoffs", type=_int_list, default=list(DEFAULT_CUTOFFS), help="cutoffs, comma-separated"
    )
    p.add_argument("--main-metric", default=DEFAULT_MAIN_METRIC, help="column used for significance tests")
    p.add_argument("--test", choices=("wilcoxon", "ttest"), default="wilcoxon", help="paired test over users")
    p.add_argument(
        "--correction",
        choices=("holm", "bh"),
        default="holm",
        help="multiple-testing correction over each table's comparisons: holm (family-wise error "
        "rate, default) or bh (Benjamini-Hochberg, false discovery rate)",
    )
    p.add_argument(
        "--split-by-fingerprint",
        action="store_true",
        help="put runs evaluated on different splits in separate tables instead of refusing them",
    )
    p.add_argument(
        "--dashboard-url", default=None, help="base URL of a running MLflow UI (rows link to runs)"
    )
    p.add_argument(
        "--url",
        default=None,
        help="where the report is published (https://...): the url of its BibTeX entry and a line "
        "of the report; not part of what the report id covers",
    )
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per interval")
    p.add_argument(
        "--overall",
        nargs="+",
        type=Path,
        default=None,
        metavar="REPORT",
        help="instead of a report from a store: rank the models across the tables of these report "
        "folders (average ranks, Friedman + Nemenyi, critical-difference diagram, wins/ties/losses), "
        "written to --out",
    )
    return p


def _overall(args: argparse.Namespace) -> int:
    from benchmark.errors import ReproRecError
    from benchmark.portable import portable_path
    from benchmark.reporting.overall import write_overall

    if args.out is None:
        print("reprorec-report: error: --overall needs --out", file=sys.stderr)
        return 2
    shown = [portable_path(str(p), cwd=Path.cwd()) for p in [*args.overall, args.out]]
    command = "reprorec-report --overall " + " ".join(shown[:-1]) + f" --out {shown[-1]}"
    try:
        path = write_overall(args.overall, args.out, command=command)
    except ReproRecError as exc:
        print(f"reprorec-report: error: {exc}", file=sys.stderr)
        return 2
    print(f"overall page written to {path} (README.md, overall.json, main_metric.csv, cd_diagram.*)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.overall:
        return _overall(args)
    import mlflow

    from benchmark.errors import ReproRecError
    from benchmark.portable import TRACKING_URI_ENV
    from benchmark.registry import in_checkout, repo_root
    from benchmark.reporting import generate_report

    env_uri = os.environ.get(TRACKING_URI_ENV) or None
    # Where the URI came from decides how the report names it: "$MLFLOW_TRACKING_URI" for the
    # environment's (it may hold a password, and is what the reader sets too), a path otherwise.
    from_env = args.tracking_uri is None and env_uri is not None
    uri = args.tracking_uri or env_uri or mlflow.get_tracking_uri()
    out = args.out or (repo_root() / "reports" if in_checkout() else Path("reports")) / (
        args.experiment or (f"sweep-{args.sweep}" if args.sweep else "reprorec")
    )
    try:
        path = generate_report(
            uri,
            experiment=args.experiment,
            sweep_run_id=args.sweep,
            out_dir=out,
            reference=args.reference,
            dashboard_url=args.dashboard_url,
            cutoffs=args.cutoffs,
            metrics=args.metrics,
            main_metric=args.main_metric,
            test=args.test,
            correction=args.correction,
            split_by_fingerprint=args.split_by_fingerprint,
            n_resamples=args.resamples,
            from_env=from_env,
            url=args.url,
        )
    except ReproRecError as exc:
        print(f"reprorec-report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {path} (README.md, leaderboard.tex, report.html, leaderboard.csv, report.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
