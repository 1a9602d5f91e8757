"""Trial packs vs solo trials: training throughput per trial, side by side in one run (issue 17).

For each packable model (NeuMF, GMF, MLP, SpectralCF), ``K`` configurations are drawn from its search space in
``conf/model/<name>.yaml`` (Optuna's random sampler, fixed seed: what the 15 random start-up trials
of a cell look like) and trained for ``--epochs`` epochs, without validation, twice: one after
another (``fit``, the ``pack_size=1`` protocol) and as one pack (``fit_pack``). ``ratio`` is solo
seconds / packed seconds for the same K trials (above 1: packing is faster). The runs alternate
solo / packed ``--repeats`` times and the best of each is kept (the machine is shared).
On CPU a pack only joins members of equal shapes (``NeuMF.pack_key``: factors, layer widths,
batch size), so K sampled trials mostly run alone; ``--same-shapes`` gives every member the
YAML's default shapes (factors, layers, batch size) and leaves the learning rate, negatives and
regularisation as sampled: the case where a CPU pack applies. SpectralCF packs any shapes (only
its filter product is shared). ``--params`` fixes hyperparameters for every configuration, e.g. the
Dacrema protocol's SpectralCF (``laplacian=random_walk,sampling=users,rms_init=1.0``: an epoch is
then one step, and the dense filter is decomposed once per process, before the timings). Peak RSS
of a packed fit is printed from a fresh subprocess per K (``--no-rss``: not measured).

Targets (issue 17): ratio >= 3 at K=8 for the NCF family on this 2-core CPU.

Usage::

    nice -n 10 .venv/bin/python scripts/bench_packs.py --dataset ml-100k --k 8 --threads 1
    .venv/bin/python scripts/bench_packs.py --dataset synthetic-ml-100k --k 4,8,16 --models neumf
    .venv/bin/python scripts/bench_packs.py --dataset ml-1m --models spectralcf --epochs 20 --no-rss \
        --params laplacian=random_walk,sampling=users,rms_init=1.0
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import optuna
import torch
import yaml
from bench_neural import load  # the ml-100k / ml-1m / synthetic loaders of the neural benchmark

from benchmark.models import PackMember
from benchmark.registry import model_specs
from benchmark.tuning.space import parse_space

MODELS = ["neumf", "gmf", "mlp", "spectralcf"]


def fixed_params(text: str) -> dict[str, Any]:
    """``key=value,...``, each value read as YAML (numbers, booleans, null, strings)."""
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        out[key.strip()] = yaml.safe_load(value)
    return out


def configs(
    name: str, k: int, epochs: int, threads: int, same_shapes: bool, fixed: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    spec = model_specs()[name]
    space = parse_space(spec.search_space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(k):
        params = space.suggest(study.ask())
        params.update(epochs=epochs, device="cpu", num_threads=threads, random_state=0, pretrain=False)
        if same_shapes:
            params.update(factors=8, layers="64,32,16,8", batch_size=256)
        params.update(fixed or {})
        out.append({key: v for key, v in params.items() if key in spec.load_class()._param_names()})
    return out


def time_solo(name: str, cfgs: list[dict[str, Any]], train: Any) -> float:
    spec = model_specs()[name]
    t0 = time.perf_counter()
    for c in cfgs:
        spec.build(**c).fit(train)
    return time.perf_counter() - t0


def time_pack(name: str, cfgs: list[dict[str, Any]], train: Any) -> float:
    spec = model_specs()[name]
    members = [PackMember(spec.build(**c)) for c in cfgs]
    t0 = time.perf_counter()
    type(members[0].model).fit_pack(members, train)
    seconds = time.perf_counter() - t0
    errors = [m.error for m in members if m.error is not None]
    if errors:
        raise errors[0]
    return seconds


def peak_rss_mb(args: argparse.Namespace, name: str, k: int) -> float:
    """Peak RSS of one packed fit in a fresh process (data + pack)."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--k",
        str(k),
        "--dataset",
        args.dataset,
        "--epochs",
        str(args.epochs),
        "--threads",
        str(args.threads),
    ]
    if args.same_shapes:
        cmd.append("--same-shapes")
    if args.params:
        cmd += ["--params", args.params]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--mirror", default=os.environ.get("REPROREC_MIRROR", "../shared/datasets"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--k", default="8", help="pack sizes, comma-separated")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--same-shapes", action="store_true")
    parser.add_argument("--params", default="", help="key=value,... fixed in every configuration")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocess")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train, _ = load(args.dataset, Path(args.mirror))
    fixed = fixed_params(args.params)
    if args.child:
        cfgs = configs(args.child, int(args.k), args.epochs, args.threads, args.same_shapes, fixed)
        time_pack(args.child, cfgs, train)
        print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return
    print(
        f"{args.dataset}: {train.n_users} users, {train.n_items} items, {train.nnz} training interactions; "
        f"torch {torch.__version__}, {args.threads} thread(s), {args.epochs} epochs per trial, "
        f"{'same shapes' if args.same_shapes else 'shapes as sampled'}; fixed {fixed or 'nothing'}; "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'model':8} {'K':>3} {'solo s':>8} {'packed s':>9} {'ratio':>6} {'target':>7} {'peak RSS MB':>12}"
    )
    for name in args.models.split(","):
        for k in (int(x) for x in args.k.split(",")):
            cfgs = configs(name, k, args.epochs, args.threads, args.same_shapes, fixed)
            spec = model_specs()[name]
            spec.build(**dict(cfgs[0], epochs=1)).fit(train)  # one-time setup (a dense filter) off the clock
            solo, packed = [], []
            for _ in range(args.repeats):
                solo.append(time_solo(name, cfgs, train))
                packed.append(time_pack(name, cfgs, train))
            ratio = min(solo) / min(packed)
            ok = "ok" if ratio >= 3 else "MISS"
            rss = float("nan") if args.no_rss else peak_rss_mb(args, name, k)
            print(
                f"{name:8} {k:3d} {min(solo):8.2f} {min(packed):9.2f} {ratio:6.2f} {ok:>7} {rss:12.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
