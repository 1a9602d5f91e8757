"""``reprorec-data``: list, fetch, describe and verify datasets.

Examples::

    reprorec-data list
    REPROREC_MIRROR=../shared/datasets reprorec-data describe ml-100k
    reprorec-data describe file --option path=my.csv --option header=true
    reprorec-data describe ml-1m --min-rating 4 --user-core 10 --item-core 10 --json
    reprorec-data fetch ml-latest-small
    reprorec-data verify citeulike-a
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import ReproRecError


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"option must be KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)  # "true" -> True, "10" -> 10, "{a: b}" -> dict


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mirror", type=Path, default=None, help="offline mirror folder (default: $REPROREC_MIRROR)"
    )
    p.add_argument("--cache-dir", type=Path, default=None, help="cache folder (default: $REPROREC_CACHE)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reprorec-data", description="Datasets of the reprorec benchmark.")
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="list registered datasets and whether they are available locally")
    _common(p_list)

    p_fetch = sub.add_parser(
        "fetch",
        help="make every resource of a dataset available locally (verified); exits 1 naming any that "
        "could not be fetched",
    )
    p_fetch.add_argument("name")
    p_fetch.add_argument("--resource", action="append", default=None, help="only this resource key")
    _common(p_fetch)

    p_desc = sub.add_parser("describe", help="load a dataset and print its datasheet")
    p_desc.add_argument("name")
    p_desc.add_argument(
        "--option",
        "-o",
        action="append",
        type=_parse_option,
        default=[],
        metavar="KEY=VALUE",
        help="dataset option (variant, path, columns, n_users, ...)",
    )
    p_desc.add_argument("--duplicates", choices=["error", "first", "last", "max_rating"], default=None)
    p_desc.add_argument("--min-rating", type=float, default=None)
    p_desc.add_argument("--user-core", type=int, default=None)
    p_desc.add_argument("--item-core", type=int, default=None)
    p_desc.add_argument("--json", action="store_true", help="print the datasheet as JSON")
    _common(p_desc)

    p_verify = sub.add_parser(
        "verify", help="re-hash every local copy of a dataset's files; exits 1 if one is missing or differs"
    )
    p_verify.add_argument("name")
    _common(p_verify)
    return parser


def _cmd_list(args: argparse.Namespace) -> int:
    from benchmark.data.datasets import DATASETS
    from benchmark.data.fetch import ResourceUnavailableError, locate_resource

    for name, info in DATASETS.items():
        local = []
        for v in info.variants:
            try:
                for k in v.resources:
                    locate_resource(
                        name, k, mirror=args.mirror, cache_dir=args.cache_dir, allow_download=False
                    )
                local.append(v.name)
            except (ResourceUnavailableError, ReproRecError):
                pass
        if not info.variants:
            status = "built-in"
        elif local:
            status = "local: " + ", ".join(local)
        elif any(all(info.resource(k).urls for k in v.resources) for v in info.variants):
            status = "download"
        else:
            status = "unavailable (mirror only)"
        print(f"{name:22s} {info.title}  [{status}]")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from benchmark.data.datasets import get_dataset_info
    from benchmark.data.fetch import locate_resource

    info = get_dataset_info(args.name)
    # Every resource (all variants, published splits, side files) unless --resource narrows it:
    # `verify` checks them all, so a fetch that left one out would "succeed" and leave it missing.
    keys = list(args.resource) if args.resource else list(info.resources)
    failed: list[str] = []
    for key in keys:
        try:
            f = locate_resource(args.name, key, mirror=args.mirror, cache_dir=args.cache_dir)
            print(f"{key:28s} {f.origin:8s} [{f.check}] {f.path}")
        except ReproRecError as exc:
            failed.append(key)
            print(f"{key:28s} FAILED   {exc}", file=sys.stderr)
    if not keys:
        print(f"{args.name} has no files to fetch")
    if failed:
        print(
            f"reprorec-data: error: {len(failed)} of {len(keys)} resources of {args.name} were not "
            f"fetched: {', '.join(failed)} (see above; --resource KEY fetches only some)",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from benchmark.data.datasheet import datasheet, format_datasheet
    from benchmark.data.loading import default_preprocessing, load_dataset

    config = default_preprocessing(args.name)
    changes = {
        k: v
        for k, v in (
            ("duplicates", args.duplicates),
            ("min_rating", args.min_rating),
            ("user_core", args.user_core),
            ("item_core", args.item_core),
        )
        if v is not None
    }
    config = replace(config, **changes)
    loaded = load_dataset(
        args.name,
        preprocessing=config,
        options=dict(args.option),
        mirror=args.mirror,
        cache_dir=args.cache_dir,
    )
    sheet = datasheet(loaded)
    print(json.dumps(sheet, indent=2) if args.json else format_datasheet(sheet))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from benchmark.data.fetch import cache_root, mirror_root, verify_dataset

    results = verify_dataset(args.name, mirror=args.mirror, cache_dir=args.cache_dir)
    bad: list[str] = []
    missing: list[str] = []
    for r in results:
        if r.status == "missing":
            missing.append(r.key)
            mirror = mirror_root(args.mirror) or "REPROREC_MIRROR not set"
            print(
                f"{r.key:28s} MISSING  not in the mirror ({mirror}) nor in the cache "
                f"({cache_root(args.cache_dir)})",
                file=sys.stderr,
            )
            continue
        line = f"{r.key:28s} {r.status:8s} {r.where:7s} {r.path}"
        if r.status == "MISMATCH":
            bad.append(r.key)
            line += f"\n{'':28s} expected {r.expected}\n{'':28s} actual   {r.actual}"
        print(line)
    if bad or missing:
        what = [f"sha256 mismatch: {', '.join(bad)}"] if bad else []
        what += [f"missing: {', '.join(missing)} (reprorec-data fetch {args.name})"] if missing else []
        print(f"reprorec-data: error: {args.name}: {'; '.join(what)}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``reprorec-data``; returns the exit status (errors print one clear line)."""
    args = build_parser().parse_args(argv)
    commands = {"list": _cmd_list, "fetch": _cmd_fetch, "describe": _cmd_describe, "verify": _cmd_verify}
    try:
        return commands[args.command](args)
    except ReproRecError as exc:
        print(f"reprorec-data: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
