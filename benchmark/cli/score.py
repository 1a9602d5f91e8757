"""``reprorec-score``: put recommendations made by any other code on a reprorec leaderboard.

Examples::

    # 1. the split of a cell, as files the other code trains on (dataset ids, fingerprints)
    reprorec-score export results/split-ml100k dataset=ml-100k split=random_per_user_80_20 seed=0
    # 2. ... the other code writes results/mymodel.tsv (user, item, rank) for users.tsv ...
    # 3. score it as the cell "mymodel" of that (dataset, split, seed), logged to the tracking store
    reprorec-score score results/mymodel.tsv --name mymodel --note "authors' code, commit abc123" \\
        dataset=ml-100k split=random_per_user_80_20 seed=0
    # the leaderboard now has the row, with the same tests and intervals as the tuned baselines
    reprorec-report

The trailing arguments are the Hydra overrides of ``reprorec`` (``experiment=dacrema/mcrec_ml100k``,
``tracking.uri=...``, ``evaluation.cutoffs=[10]``): the external cell is the cell of that
configuration with the model replaced by the file (family ``external``, ``tuner=none``). The file
format and its rules: :mod:`benchmark.external`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.errors import ReproRecError

_EPILOG = """file format: CSV or TSV (by suffix, .gz allowed) with a header naming user, item and one of
rank (1 = first) or score (higher = better); ids as in the exported train.tsv. Every evaluated user
(users.tsv) needs a list at least as long as the longest cutoff, without the user's train/validation
items (and, in a sampled protocol, only items of candidates.tsv).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reprorec-score",
        description="Export a reprorec split for other code, and score that code's recommendations as a "
        "leaderboard cell.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_export = sub.add_parser(
        "export", help="write the split of a cell (train/validation/test, users, candidates)"
    )
    p_export.add_argument("out_dir", type=Path, help="a new (or empty) folder")
    p_score = sub.add_parser("score", help="evaluate a recommendation file and log it as a cell")
    p_score.add_argument("file", type=Path, help="the recommendation file")
    p_score.add_argument("--name", required=True, help="the leaderboard row's name (not a registered model)")
    p_score.add_argument("--note", default="", help="where the lists come from (shown with the row)")
    p_score.add_argument(
        "--drop-invalid",
        action="store_true",
        help="drop train/validation (and, sampled, non-candidate) items instead of refusing the file",
    )
    for p in (p_export, p_score):
        p.usage = f"%(prog)s {'OUT_DIR' if p is p_export else 'FILE --name NAME [options]'} [OVERRIDE ...]"
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Options anywhere; every other ``key=value`` word is a Hydra override of the cell."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    bad = [a for a in rest if a.startswith("-") or "=" not in a]
    if bad:
        parser.error(
            f"unrecognized arguments: {' '.join(bad)} (overrides are key=value, e.g. dataset=ml-100k)"
        )
    args.overrides = rest
    return args


def compose(overrides: Sequence[str]) -> Any:
    """The composed DictConfig of ``reprorec <overrides>`` (no multirun, no job folder)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import benchmark.cli.sweep  # noqa: F401  (registers the config resolvers)
    from benchmark.config import register_configs
    from benchmark.registry import conf_dir, hydra_searchpath_override

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=[*overrides, *hydra_searchpath_override()])


def _shown_path(path: Path) -> str:
    """The file as the run records it: relative to the working folder when it lies under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def external_config(args: argparse.Namespace) -> tuple[Any, Any]:
    """(DictConfig, Config) of the external cell: the overrides' cell with the model replaced."""
    from omegaconf import OmegaConf, open_dict

    from benchmark.cli.sweep import to_config
    from benchmark.external import check_name, file_sha256
    from benchmark.registry import EXTERNAL, ModelSpec, model_specs

    name = check_name(args.name, set(model_specs()))
    if not args.file.is_file():
        raise ReproRecError(f"{args.file.name}: recommendation file not found")
    cfg = compose([*args.overrides, "tuner=none"])
    with open_dict(cfg):
        cfg.model = OmegaConf.structured(
            ModelSpec(
                name=name,
                cls="benchmark.external.ExternalRecommendations",
                family=EXTERNAL,
                search_space={},
                params={
                    "path": _shown_path(args.file),
                    "sha256": file_sha256(args.file),
                    "drop_invalid": bool(args.drop_invalid),
                    "note": args.note,
                },
                description=args.note,
            )
        )
    return cfg, to_config(cfg)


def _export(args: argparse.Namespace) -> int:
    from benchmark.cli.sweep import to_config
    from benchmark.external import export_split
    from benchmark.redaction import redact_text
    from benchmark.tuning.prepare import evaluator_on_test, prepare_cell

    cfg = compose([*args.overrides, "tuner=none"])
    config = to_config(cfg)
    prepared = prepare_cell(config)
    overrides = " ".join(a for a in args.overrides)
    command = redact_text(f"reprorec-score score FILE --name NAME {overrides}".strip())
    manifest = export_split(prepared, evaluator_on_test(prepared), args.out_dir, command=command)
    for name, info in manifest["files"].items():
        print(f"[reprorec] {args.out_dir.name}/{name}: {info['rows']} rows, sha256 {info['sha256'][:12]}")
    what = f"split {manifest['split']['name']} of {manifest['dataset']['name']}"
    print(f"[reprorec] {what} exported; then: {command}")
    return 0


def checked_cell(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """(DictConfig, Config, PreparedCell, RecommendationCheck) of a file that passed every check.

    The checks need the evaluator (its users, exclusions and candidates): they run before the cell
    exists, so a refused file leaves no run behind; the prepared cell is then run as it is.
    """
    from benchmark.external import ExternalRecommendations, check_recommendations
    from benchmark.tuning.prepare import evaluator_on_test, prepare_cell

    cfg, config = external_config(args)
    prepared = prepare_cell(config)
    model = ExternalRecommendations(**config.model.params).fit(prepared.split.train_full)
    found = check_recommendations(model, evaluator_on_test(prepared), file=args.file.name)
    return cfg, config, prepared, found


def _score(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from benchmark.portable import portable_text
    from benchmark.redaction import redact_text
    from benchmark.tracking import provenance
    from benchmark.tuning.cell import run_cell

    cfg, config, prepared, found = checked_cell(args)
    print(
        f"[reprorec] {args.file.name}: {found.users_evaluated} users evaluated, {found.users_ignored} listed "
        f"users ignored (no test items), dropped {found.dropped_excluded} seen and "
        f"{found.dropped_not_candidates} non-candidate items, shortest list {found.shortest_list} "
        f"(needed {found.list_length_needed})",
        file=sys.stderr,
    )
    resolved = portable_text(redact_text(OmegaConf.to_yaml(cfg, resolve=True)), cwd=Path.cwd())
    outcome = run_cell(
        config, resolved_config=resolved, command=redact_text(provenance.command_line()), prepared=prepared
    )
    if outcome.status == "failed":
        last = (outcome.error or "").strip().splitlines()[-1:] or ["?"]
        print(f"[reprorec] FAILED {outcome.name}: {last[0]}", file=sys.stderr)
        return 1
    cut = "_at_10" if any(k.endswith("_at_10") for k in outcome.test_metrics) else ""
    shown = ", ".join(f"{k}={v:.4f}" for k, v in outcome.test_metrics.items() if k.endswith(cut))
    print(f"[reprorec] {outcome.name} ({outcome.status}, run {outcome.run_id}): {shown}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``reprorec-score``."""
    args = parse_args(argv)
    try:
        code = _export(args) if args.command == "export" else _score(args)
    except ReproRecError as exc:
        print(f"reprorec-score: error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
