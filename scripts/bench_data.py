"""Benchmark of the data path on an ML-20M-sized synthetic file (not a test; prints figures).

Stage 1 (child process): generate 20M distinct (user, item) pairs over 138,493 x 26,744 with
power-law marginals, add ratings and timestamps, write a CSV with header to a temp folder.
Stage 2 (fresh child process, so its peak memory is the data path's alone): the ``file`` dataset path
(parse -> preprocess -> frame_to_matrix, the steps of ``load_dataset("file", ...)``) and a
per-user random 80/20 hold-out split. Target: the whole stage 2 under 60 s and 4 GiB peak RSS.

    .venv/bin/python scripts/bench_data.py [--rows 20000000] [--users 138493] [--items 26744]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def generate(path: Path, users: int, items: int, rows: int) -> dict[str, float]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from benchmark.data.synthetic import power_law_matrix
    from benchmark.seeds import derive_rng, derive_seed

    t0 = time.perf_counter()
    m = power_law_matrix(users, items, rows, seed=derive_seed("bench_data", "matrix"), exponent=0.8)
    t_gen = time.perf_counter() - t0
    rng = derive_rng("bench_data", "values")
    order = rng.permutation(m.nnz)  # files are rarely sorted
    table = pa.table(
        {
            "user": m.row_indices()[order] + 1,
            "item": m.matrix.indices.astype(np.int64)[order] + 1,
            "rating": rng.integers(1, 11, m.nnz)[order] / 2.0,
            "timestamp": rng.integers(789_652_009, 1_427_784_002, m.nnz),
        }
    )
    t1 = time.perf_counter()
    pacsv.write_csv(table, path)
    return {"generate_s": t_gen, "write_csv_s": time.perf_counter() - t1, "bytes": path.stat().st_size}


def measure(path: Path) -> dict[str, object]:
    from benchmark.data.loading import frame_to_matrix
    from benchmark.data.parsers import parse
    from benchmark.data.preprocess import PreprocessConfig, preprocess
    from benchmark.seeds import derive_rng

    out: dict[str, object] = {}
    t = time.perf_counter()
    frame = parse("delimited", [path], {"sep": ",", "header": True})
    out["parse_s"] = time.perf_counter() - t

    t = time.perf_counter()
    frame, steps = preprocess(
        frame, PreprocessConfig(duplicates="error", user_core=5, item_core=5), source=str(path)
    )
    out["preprocess_s"] = time.perf_counter() - t
    out["steps"] = [s.to_dict() for s in steps]

    t = time.perf_counter()
    data = frame_to_matrix(frame, name="bench")  # what load_dataset("file", ...) does
    del frame
    out["matrix_s"] = time.perf_counter() - t
    out["shape"] = [data.n_users, data.n_items, data.nnz]

    import importlib

    try:
        splitter: Any = importlib.import_module("benchmark.splits.splitters").random_holdout_per_user
    except (ImportError, AttributeError):
        splitter = None
    if splitter is None:
        out["split_s"] = None
    else:
        t = time.perf_counter()
        split = splitter(data, test_fraction=0.2, rng=derive_rng("bench_data", "split"))
        out["split_s"] = time.perf_counter() - t
        out["split_sizes"] = [split.train.nnz, split.test.nnz]
    out["peak_rss_gib"] = peak_rss_gib()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--users", type=int, default=138_493)
    ap.add_argument("--items", type=int, default=26_744)
    ap.add_argument("--stage", choices=["generate", "measure"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--path", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.stage == "generate":
        print(json.dumps(generate(args.path, args.users, args.items, args.rows)))
        return 0
    if args.stage == "measure":
        print(json.dumps(measure(args.path)))
        return 0

    with tempfile.TemporaryDirectory(prefix="reprorec-bench-") as tmp:
        path = Path(tmp) / "ratings.csv"
        base = [
            sys.executable,
            __file__,
            "--path",
            str(path),
            "--rows",
            str(args.rows),
            "--users",
            str(args.users),
            "--items",
            str(args.items),
        ]
        gen = json.loads(
            subprocess.run([*base, "--stage", "generate"], check=True, capture_output=True, text=True).stdout
        )
        print(
            f"generated {args.rows:,} rows ({args.users:,} x {args.items:,}) in {gen['generate_s']:.1f} s, "
            f"CSV written in {gen['write_csv_s']:.1f} s ({gen['bytes'] / 2**20:.0f} MiB)"
        )
        res = json.loads(
            subprocess.run([*base, "--stage", "measure"], check=True, capture_output=True, text=True).stdout
        )
    total = res["parse_s"] + res["preprocess_s"] + res["matrix_s"]
    print(f"load (parse CSV)          {res['parse_s']:7.1f} s")
    print(f"preprocess (dup + 5-core) {res['preprocess_s']:7.1f} s")
    print(
        f"InteractionMatrix         {res['matrix_s']:7.1f} s   -> {res['shape'][0]:,} x {res['shape'][1]:,}, "
        f"{res['shape'][2]:,} interactions"
    )
    if res["split_s"] is None:
        print("split: not available (benchmark.splits.splitters.random_holdout_per_user missing)")
    else:
        total += res["split_s"]
        print(
            f"split (per-user 80/20)    {res['split_s']:7.1f} s   -> train {res['split_sizes'][0]:,} / "
            f"test {res['split_sizes'][1]:,}"
        )
    print(f"TOTAL                     {total:7.1f} s   (target < 60 s)")
    print(f"peak RSS                  {res['peak_rss_gib']:7.2f} GiB (target < 4 GiB)")
    for s in res["steps"]:
        print(f"  step {s['step']}: {s['before']['interactions']:,} -> {s['after']['interactions']:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
