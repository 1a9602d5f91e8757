"""Seconds per training epoch and per full-ranking evaluation of the torch recommenders (CPU).

Prints, for each model on ml-100k (MCRec published split) and optionally ml-1m (all ratings,
binarised, random 80/20 split per interaction), the mean seconds of a training epoch, the seconds
of one full-ranking evaluation of every test user through the shared Evaluator (NDCG@10, seen items
masked), and RecBole 1.2.1's reference figures from issue 6 with the speed-up ratio.

Two settings per model:

* ``recbole``: RecBole's default configuration of that model (train batch 2048, 64-d embeddings,
  1 uniform negative per positive; NeuMF: 64-d GMF and MLP embeddings, MLP 128-64; LightGCN 2
  layers; Mult-VAE hidden 600, latent 64; RecVAE hidden 600, latent 64) - the "equal settings" of
  the ratio against RecBole's figures;
* ``paper``: the YAML defaults (the papers' settings, e.g. NeuMF batch 256 with 4 negatives).

Usage::

    nice -n 10 timeout 1800 .venv/bin/python scripts/bench_neural.py --datasets ml-100k --epochs 2

Timings depend on the machine's load (run it alone for figures you report).
"""

from __future__ import annotations

import argparse
import gzip
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmark.data.interactions import InteractionMatrix
from benchmark.evaluation import Evaluator
from benchmark.registry import get_model_spec
from benchmark.seeds import derive_rng
from benchmark.splits.published import read_published
from neural.base import TorchRecommender

#: RecBole 1.2.1 on this machine kind, ml-100k (issue 6): seconds per epoch, seconds per evaluation.
RECBOLE = {
    "neumf": (10.8, 31.0),
    "lightgcn": (1.6, None),
    "multvae": (0.6, 9.0),
    "recvae": (1.0, 17.0),
}
RECBOLE_BPR_MF = 2.0

#: RecBole's default hyperparameters of each model, in our parameter names.
RECBOLE_SETTINGS: dict[str, dict[str, Any]] = {
    "neumf": {"factors": 64, "layers": "128,64", "n_negatives": 1, "batch_size": 2048},
    "gmf": {"factors": 64, "n_negatives": 1, "batch_size": 2048},
    "mlp": {"layers": "128,64", "n_negatives": 1, "batch_size": 2048},
    "lightgcn": {"embedding_size": 64, "n_layers": 2, "batch_size": 2048},
    "multvae": {"hidden_dims": "600", "latent_dim": 64, "batch_size": 2048},
    "multdae": {"latent_dim": 64, "batch_size": 2048},
    "recvae": {"hidden_dim": 600, "latent_dim": 64, "batch_size": 2048},
    "spectralcf": {"embedding_size": 64, "batch_size": 2048},
}
MODELS = ["neumf", "gmf", "mlp", "multvae", "multdae", "recvae", "lightgcn", "spectralcf"]


def load(name: str, mirror: Path) -> tuple[InteractionMatrix, InteractionMatrix]:
    if name == "ml-100k":
        d = mirror / "movielens-100k" / "MCRec_KDD2018"
        split = read_published("mcrec_ml100k", [d / "ml-100k.train.rating", d / "ml-100k.test.rating"])
        return split.train, split.test
    if name == "ml-1m":
        with gzip.open(mirror / "movielens-1m" / "ratings_notimestamp.tsv.gz", "rt") as fh:
            first = fh.readline()
        header = 0 if not first.split("\t")[0].strip().isdigit() else None
        frame = pd.read_csv(mirror / "movielens-1m" / "ratings_notimestamp.tsv.gz", sep="\t", header=header)
        frame = frame.iloc[:, :2]
        frame.columns = ["user", "item"]
        frame = frame.drop_duplicates()
        full = InteractionMatrix.from_frame(frame, name="ml-1m")
        test_mask = derive_rng("bench_neural", "ml-1m").random(full.nnz) < 0.2
        return full.select(~test_mask, name="ml-1m/train"), full.select(test_mask, name="ml-1m/test")
    raise SystemExit(f"unknown dataset {name!r}; use ml-100k or ml-1m")


def bench(
    model: TorchRecommender, train: InteractionMatrix, test: InteractionMatrix, epochs: int
) -> tuple[float, float, float, float]:
    t0 = time.perf_counter()
    model._init_fit(train)
    setup = time.perf_counter() - t0
    times = []
    for epoch in range(1, epochs + 1):
        t = time.perf_counter()
        model._fit_epoch(epoch)
        times.append(time.perf_counter() - t)
    model.epochs_run_ = epochs
    ev = Evaluator(test, exclude=train, cutoffs=[10], metrics=["ndcg"])
    t = time.perf_counter()
    result = ev.evaluate(model)
    eval_s = time.perf_counter() - t
    return setup, float(np.mean(times)), eval_s, float(result.summary["ndcg_at_10"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["ml-100k"])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--settings", nargs="+", default=["recbole", "paper"], choices=["recbole", "paper"])
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per model (mean reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--mirror", default=os.environ.get("REPROREC_MIRROR", "../shared/datasets"))
    args = parser.parse_args(argv)
    mirror = Path(args.mirror)
    threads = args.threads or torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, cpu; load average {os.getloadavg()}")
    header = (
        f"{'dataset':8} {'model':10} {'setting':8} {'setup_s':>8} {'epoch_s':>8} {'eval_s':>7} "
        f"{'ndcg@10':>8} {'recbole_epoch_s':>15} {'epoch_x':>7} {'recbole_eval_s':>14} {'eval_x':>6}"
    )
    for dataset in args.datasets:
        train, test = load(dataset, mirror)
        print(
            f"\n{dataset}: {train.n_users} users x {train.n_items} items, {train.nnz} train / {test.nnz} test"
        )
        print(header)
        for name in args.models:
            spec = get_model_spec(name)
            for setting in args.settings:
                over = RECBOLE_SETTINGS.get(name, {}) if setting == "recbole" else {}
                model = spec.build(**{**over, "device": "cpu", "num_threads": threads})
                assert isinstance(model, TorchRecommender)
                setup, epoch_s, eval_s, ndcg = bench(model, train, test, args.epochs)
                ref_epoch, ref_eval = RECBOLE.get(name, (None, None))
                comparable = setting == "recbole" and dataset == "ml-100k"
                rx = f"{ref_epoch / epoch_s:7.1f}" if comparable and ref_epoch else f"{'-':>7}"
                ex = f"{ref_eval / eval_s:6.1f}" if comparable and ref_eval else f"{'-':>6}"
                print(
                    f"{dataset:8} {name:10} {setting:8} {setup:8.2f} {epoch_s:8.3f} {eval_s:7.3f} "
                    f"{ndcg:8.4f} {ref_epoch if comparable and ref_epoch else '-':>15} {rx} "
                    f"{ref_eval if comparable and ref_eval else '-':>14} {ex}",
                    flush=True,
                )
    print(f"\n(RecBole BPR-MF reference: {RECBOLE_BPR_MF} s/epoch; BPR-MF is a baseline, not timed here.)")
    print("ndcg@10 after only the timed epochs: a sanity check, not a result.")


if __name__ == "__main__":
    main()
