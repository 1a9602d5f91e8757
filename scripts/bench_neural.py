"""Seconds per training epoch and per full-ranking evaluation of the torch recommenders (CPU).

Prints, for each model on ml-100k (MCRec published split) and optionally ml-1m (all ratings,
binarised, random 80/20 split per interaction), the mean seconds of a training epoch, the seconds
of one full-ranking evaluation of every test user through the shared Evaluator (NDCG@10, seen items
masked), and RecBole 1.2.1's published reference figures from issue 6 with the speed-up ratio
(measured elsewhere, on a quiet machine: indicative only; the same-run comparison below is the
fair one).

Two settings per model:

* ``recbole``: RecBole's default configuration of that model (train batch 2048, 64-d embeddings,
  1 uniform negative per positive; NeuMF: 64-d GMF and MLP embeddings, MLP 128-64; LightGCN 2
  layers; Mult-VAE hidden 600, latent 128; Mult-DAE hidden 600, latent 64; RecVAE hidden 600,
  latent 200, 3 encoder + 1 decoder passes) - the "equal settings" of
  the ratio against RecBole's figures;
* ``paper``: the YAML defaults (the papers' settings, e.g. NeuMF batch 256 with 4 negatives).

Same-run comparison with RecBole (``--recbole-python`` and ``--recbole-script``): for BPR-MF
(ours: ``baselines.mf.BPR`` through ``implicit``), NeuMF, LightGCN, Mult-VAE and RecVAE, each of
our models is timed and then RecBole 1.2.1's implementation is run in a subprocess (a separate
virtual environment, RecBole's own protocol on its ML-100k copy: ratio split 8:1:1 per user, full
ranking of all items) at the same hyperparameters, the same number of epochs and the same number
of threads (default 1), so both sides of each ratio share the machine's load. ``ratio`` is
RecBole's seconds divided by ours (above 1: ours is faster). Our epoch: the mean over the timed
epochs of ``_fit_epoch`` (model construction excluded); RecBole's: its ``trainer.fit`` seconds
(no validation) divided by the epochs. Evaluation: one full ranking of every test user, after an
untimed warm-up evaluation on our side (RecBole's timed test evaluation follows its validation
pass). The RecBole script is an external peer benchmark; it is
never imported, only run.

Usage::

    nice -n 10 timeout 1800 .venv/bin/python scripts/bench_neural.py --datasets ml-100k --epochs 2
    nice -n 10 timeout 3600 .venv/bin/python scripts/bench_neural.py --threads 1 --epochs 3 \
        --recbole-python /tmp/recbole-venv/bin/python \
        --recbole-script /work/shared/peer-bench/recbole_ml100k.py

Timings depend on the machine's load (run it alone for figures you report; the RecBole ratios are
measured in one run, so they are fair under load as long as the load is steady).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from baselines.mf import BPR
from benchmark.data.interactions import InteractionMatrix
from benchmark.data.synthetic import power_law_matrix
from benchmark.evaluation import Evaluator
from benchmark.models import IterativeRecommender
from benchmark.registry import get_model_spec
from benchmark.seeds import derive_rng, derive_seed
from benchmark.splits.published import read_published
from neural.base import TorchRecommender

#: RecBole 1.2.1's published figures, ml-100k (issue 6): seconds per epoch, seconds per evaluation.
#: Measured on another, quiet machine; ``--recbole-python`` measures RecBole beside us instead.
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
    "multvae": {"hidden_dims": "600", "latent_dim": 128, "batch_size": 2048},
    "multdae": {"latent_dim": 64, "batch_size": 2048},
    "recvae": {"hidden_dim": 600, "latent_dim": 200, "batch_size": 2048},
    "spectralcf": {"embedding_size": 64, "batch_size": 2048},
}
#: Same-run RecBole comparison: our model -> (RecBole model, our settings, RecBole settings). Every
#: side uses train batch 2048 and 1 uniform negative per positive (RecBole's defaults, passed
#: explicitly to both); the dimensions are RecBole 1.2.1's defaults of each model, written out.
#: Our BPR-MF is ``implicit``'s SGD (one triple at a time, no mini-batch; an epoch draws as many
#: triples as there are training interactions, as RecBole's does) with an item bias on top.
PAIRS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "bpr": ("BPR", {"factors": 64}, {"embedding_size": 64}),
    "neumf": (
        "NeuMF",
        {"factors": 64, "layers": "128,64", "n_negatives": 1, "batch_size": 2048},
        {"mf_embedding_size": 64, "mlp_embedding_size": 64, "mlp_hidden_size": [128, 64]},
    ),
    "lightgcn": (
        "LightGCN",
        {"embedding_size": 64, "n_layers": 2, "batch_size": 2048},
        {"embedding_size": 64, "n_layers": 2},
    ),
    "multvae": (
        "MultiVAE",
        {"hidden_dims": "600", "latent_dim": 128, "dropout": 0.5, "batch_size": 2048},
        {"mlp_hidden_size": [600], "latent_dimension": 128, "dropout_prob": 0.5},
    ),
    "recvae": (
        "RecVAE",
        {"hidden_dim": 600, "latent_dim": 200, "n_enc_epochs": 3, "n_dec_epochs": 1, "batch_size": 2048},
        {"hidden_dimension": 600, "latent_dimension": 200, "n_enc_epochs": 3, "n_dec_epochs": 1},
    ),
}
RECBOLE_COMMON = {"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}}

#: Synthetic stand-ins: (users, items, interactions) of ml-100k and ml-1m.
SYNTHETIC = {"synthetic-ml-100k": (943, 1682, 100_000), "synthetic-ml-1m": (6040, 3706, 1_000_209)}

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
    if name in SYNTHETIC:
        # the shape and interaction count of the real dataset, power-law marginals; for machines
        # without the mirror (a lent GPU machine): epoch times depend on shapes and counts
        n_users, n_items, nnz = SYNTHETIC[name]
        full = power_law_matrix(n_users, n_items, nnz, seed=derive_seed("bench_neural", name), name=name)
        test_mask = derive_rng("bench_neural", name, "test").random(full.nnz) < 0.2
        return full.select(~test_mask, name=f"{name}/train"), full.select(test_mask, name=f"{name}/test")
    raise SystemExit(f"unknown dataset {name!r}; use ml-100k, ml-1m or {', '.join(SYNTHETIC)}")


def bench(
    model: IterativeRecommender, train: InteractionMatrix, test: InteractionMatrix, epochs: int
) -> tuple[float, float, float, float]:
    setup, epoch_s, eval_s, ndcg, _ = bench_cpu(model, train, test, epochs)
    return setup, epoch_s, eval_s, ndcg


def bench_cpu(
    model: IterativeRecommender, train: InteractionMatrix, test: InteractionMatrix, epochs: int
) -> tuple[float, float, float, float, float]:
    """Setup seconds, mean epoch seconds, evaluation seconds, NDCG@10, mean epoch CPU seconds."""
    t0 = time.perf_counter()
    model._init_fit(train)
    setup = time.perf_counter() - t0
    times = []
    c0 = time.process_time()
    for epoch in range(1, epochs + 1):
        t = time.perf_counter()
        model._fit_epoch(epoch)
        times.append(time.perf_counter() - t)
    cpu_epoch = (time.process_time() - c0) / max(epochs, 1)
    model.epochs_run_ = epochs
    ev = Evaluator(test, exclude=train, cutoffs=[10], metrics=["ndcg"])
    # warm-up: the first evaluation of a process pays one-off costs (as RecBole's timed test
    # evaluation follows its validation pass, ours follows an untimed one)
    ev.evaluate(model)
    t = time.perf_counter()
    result = ev.evaluate(model)
    eval_s = time.perf_counter() - t
    return setup, float(np.mean(times)), eval_s, float(result.summary["ndcg_at_10"]), cpu_epoch


def run_recbole(
    python: str, script: str, model: str, extra: dict[str, Any], epochs: int, threads: int, timeout: float
) -> dict[str, Any]:
    """One RecBole run through the peer script (its own process and virtual environment)."""
    cmd = [
        python, script, "--models", model, "--repeats", "1", "--epochs", str(epochs),
        "--threads", str(threads), "--train-batch-size", "2048", "--timeout", str(timeout),
        "--extra", json.dumps({**RECBOLE_COMMON, **extra}),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": f"rc={done.returncode}", "stderr_tail": done.stderr[-800:]}
    record: dict[str, Any] = json.loads(lines[-1])
    return record


def compare_recbole(args: argparse.Namespace, train: InteractionMatrix, test: InteractionMatrix) -> None:
    """Our model and RecBole's, one after the other per model, at the settings of ``PAIRS``.

    ``--repeats`` rounds over the models (a fresh model each time); one row per model and round,
    then the median [min-max] of each figure, since a loaded machine makes single runs noisy.
    """
    threads = int(args.threads or 1)
    print(
        f"\nsame-run comparison with RecBole ({args.recbole_python} {args.recbole_script}): "
        f"{args.epochs} epochs, {threads} thread(s) on both sides, train batch 2048, 1 uniform negative"
    )
    for name in PAIRS:
        recbole_name, ours_settings, recbole_settings = PAIRS[name]
        print(f"  {name}: ours {ours_settings} | RecBole {recbole_name} {recbole_settings}")
    header = (
        f"{'model':9} {'round':>5} {'ours_epoch_s':>12} {'recbole_epoch_s':>15} {'epoch_ratio':>11} "
        f"{'ours_eval_s':>11} {'recbole_eval_s':>14} {'eval_ratio':>10} {'ours_cpu_s':>10} {'rb_cpu_s':>9} "
        f"{'load_1m':>7}"
    )
    print(header)
    names = [n for n in (args.models if args.models != MODELS else list(PAIRS)) if n in PAIRS]
    figures: dict[str, list[tuple[float, ...]]] = {n: [] for n in names}
    for rnd in range(1, int(args.repeats) + 1):
        for name in names:
            recbole_name, ours_settings, recbole_settings = PAIRS[name]
            if name == "bpr":
                model: IterativeRecommender = BPR(**ours_settings, num_threads=threads)
            else:
                settings = {**ours_settings, "device": "cpu", "num_threads": threads}
                built = get_model_spec(name).build(**settings)
                assert isinstance(built, IterativeRecommender)
                model = built
            _, epoch_s, eval_s, _, cpu_s = bench_cpu(model, train, test, args.epochs)
            rec = run_recbole(
                args.recbole_python, args.recbole_script, recbole_name, recbole_settings, args.epochs,
                threads, args.recbole_timeout,
            )  # fmt: skip
            if "error" in rec:
                print(f"{name:9} {rnd:5} RecBole failed: {rec['error']} {rec['stderr_tail']}", flush=True)
                continue
            rb_epoch = rec["t_trainer_fit_s"] / max(int(rec["epochs_run"]), 1)
            rb_eval = float(rec["t_eval_test_s"])
            # CPU seconds of the process (all its threads): less sensitive to the machine's load
            # than wall time, and they show when a side uses more than its one compute thread
            rb_cpu = rec["cpu_fit_s"] / max(int(rec["epochs_run"]), 1)
            figures[name].append((epoch_s, rb_epoch, eval_s, rb_eval, cpu_s, rb_cpu))
            print(
                f"{name:9} {rnd:5} {epoch_s:12.3f} {rb_epoch:15.3f} {rb_epoch / epoch_s:11.1f} "
                f"{eval_s:11.3f} {rb_eval:14.3f} {rb_eval / eval_s:10.1f} {cpu_s:10.3f} {rb_cpu:9.3f} "
                f"{os.getloadavg()[0]:7.2f}",
                flush=True,
            )
            if args.json:
                print(json.dumps({"model": name, "round": rnd, "ours_epoch_s": epoch_s, "recbole": rec}))

    def spread(values: list[float]) -> str:
        return f"{np.median(values):.3g} [{min(values):.3g}-{max(values):.3g}]"

    print(f"\nmedian [min-max] over {args.repeats} round(s); ratio = RecBole / ours (above 1: ours faster)")
    print(
        f"{'model':9} {'ours_epoch_s':>22} {'recbole_epoch_s':>22} {'epoch_ratio':>18} {'eval_ratio':>18} "
        f"{'epoch_cpu_ratio':>18}"
    )
    for name, rows in figures.items():
        if not rows:
            continue
        ours_e, rb_e, ours_v, rb_v, ours_c, rb_c = (list(col) for col in zip(*rows))
        print(
            f"{name:9} {spread(ours_e):>22} {spread(rb_e):>22} "
            f"{spread([b / a for a, b in zip(ours_e, rb_e)]):>18} "
            f"{spread([b / a for a, b in zip(ours_v, rb_v)]):>18} "
            f"{spread([b / a for a, b in zip(ours_c, rb_c)]):>18}"
        )
    print(
        f"(ours: {train.nnz} training interactions, {test.n_users} users ranked; RecBole: its ML-100k copy, "
        "8:1:1 per user, evaluation of the test part, all items ranked.)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["ml-100k"])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--settings", nargs="+", default=["recbole", "paper"], choices=["recbole", "paper"])
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per model (mean reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--devices", nargs="+", default=["cpu"], help="torch devices to time in turn (cpu, cuda, auto)"
    )
    parser.add_argument("--mirror", default=os.environ.get("REPROREC_MIRROR", "../shared/datasets"))
    parser.add_argument("--recbole-python", help="python of a virtual environment with RecBole 1.2.1")
    parser.add_argument("--recbole-script", help="the peer script recbole_ml100k.py (run, never imported)")
    parser.add_argument("--recbole-timeout", type=float, default=1800, help="seconds per RecBole run")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the RecBole comparison")
    parser.add_argument("--json", action="store_true", help="also print the comparison as JSON lines")
    args = parser.parse_args(argv)
    mirror = Path(args.mirror)
    if bool(args.recbole_python) != bool(args.recbole_script):
        parser.error("--recbole-python and --recbole-script go together")
    if args.recbole_python:
        if args.threads is None:
            args.threads = 1
        torch.set_num_threads(args.threads)
        print(f"torch {torch.__version__}, cpu; uptime load average {os.getloadavg()}")
        train, test = load("ml-100k", mirror)
        compare_recbole(args, train, test)
        return
    threads = args.threads or torch.get_num_threads()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"torch {torch.__version__}, {threads} CPU threads, {gpu}; load average {os.getloadavg()}")
    header = (
        f"{'dataset':17} {'device':6} {'model':10} {'setting':8} {'setup_s':>8} {'epoch_s':>8} {'eval_s':>7} "
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
            for device, setting in itertools.product(args.devices, args.settings):
                over = RECBOLE_SETTINGS.get(name, {}) if setting == "recbole" else {}
                model = spec.build(**{**over, "device": device, "num_threads": threads})
                assert isinstance(model, TorchRecommender)
                setup, epoch_s, eval_s, ndcg = bench(model, train, test, args.epochs)
                ref_epoch, ref_eval = RECBOLE.get(name, (None, None))
                comparable = setting == "recbole" and dataset == "ml-100k"
                rx = f"{ref_epoch / epoch_s:7.1f}" if comparable and ref_epoch else f"{'-':>7}"
                ex = f"{ref_eval / eval_s:6.1f}" if comparable and ref_eval else f"{'-':>6}"
                print(
                    f"{dataset:17} {device:6} {name:10} {setting:8} {setup:8.2f} {epoch_s:8.3f} "
                    f"{eval_s:7.3f} "
                    f"{ndcg:8.4f} {ref_epoch if comparable and ref_epoch else '-':>15} {rx} "
                    f"{ref_eval if comparable and ref_eval else '-':>14} {ex}",
                    flush=True,
                )
    print(f"\n(RecBole BPR-MF reference: {RECBOLE_BPR_MF} s/epoch; BPR-MF is a baseline, not timed here.)")
    print("ndcg@10 after only the timed epochs: a sanity check, not a result.")


if __name__ == "__main__":
    main()
