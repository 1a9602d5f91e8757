"""Evaluator overhead on ML-20M-sized synthetic data: full evaluation vs the bare score product.

Prints, from one run: the time of the bare ``U[b] @ V.T`` over all evaluated users in the same user
batches the evaluator uses, the full evaluation time (scoring + masking + top-k + ties + every
accuracy metric at the cutoffs), their ratio (target <= 1.5) and the peak RSS. The two are timed
``--repeats`` times, interleaved; every repeat is printed and the best time of each side gives the
ratio. Both wall-clock and process CPU time are printed: on a shared machine the CPU-time ratio is the
steadier figure. BLAS and torch run with ``--threads`` threads (default 1, so that both sides do the
same single-core work).

Data: 138,493 users x 26,744 items (the ML-20M shape), ~10M training interactions with power-law
item popularity and user activity (used for masking), ~2.5M test interactions; a 64-factor model with
random float32 factors. Run: ``python scripts/bench_eval.py [--users N] [--batch-size B]``.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np
import psutil
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from benchmark.data.interactions import InteractionMatrix
from benchmark.evaluation import Evaluator
from benchmark.evaluation.topk import HAVE_NUMBA, fused_topk, member_rows
from benchmark.models import batched

ACCURACY = [
    "precision",
    "recall",
    "hit_rate",
    "f1",
    "mrr",
    "arhr",
    "map",
    "map_full",
    "ndcg",
    "ndcg_full_idcg",
]


def power_law_split(
    n_users: int, n_items: int, n_train: int, n_test: int, seed: int
) -> tuple[InteractionMatrix, InteractionMatrix]:
    """Disjoint train / test with Zipf-like item popularity and log-normal user activity."""
    rng = np.random.default_rng(seed)
    total = int((n_train + n_test) * 1.3)  # head-room for duplicate (user, item) draws
    activity = rng.lognormal(0.0, 1.0, n_users)
    users = rng.choice(n_users, total, p=activity / activity.sum())
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    items = rng.permutation(n_items)[rng.choice(n_items, total, p=pop / pop.sum())]
    keys = np.unique(users.astype(np.int64) * n_items + items)
    keys = keys[rng.permutation(keys.size)[: n_train + n_test]]
    is_test = np.zeros(keys.size, dtype=bool)
    is_test[: min(n_test, keys.size)] = True
    uid, iid = np.arange(n_users), np.arange(n_items)

    def part(mask: np.ndarray, name: str) -> InteractionMatrix:
        k = keys[mask]
        return InteractionMatrix.from_indices(k // n_items, k % n_items, uid, iid, name=name)

    return part(~is_test, "train"), part(is_test, "test")


class DotModel:
    """A factor model ``score(u) = U[u] @ V.T`` with fixed random factors."""

    def __init__(self, U: np.ndarray, V: np.ndarray) -> None:
        self.U, self.V = U, V

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.U[users] @ self.V.T


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


class PeakRSS:
    """Samples the process RSS every 20 ms in a thread: the peak within a block of code."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=138_493)
    ap.add_argument("--items", type=int, default=26_744)
    ap.add_argument("--train", type=int, default=10_000_000)
    ap.add_argument("--test", type=int, default=2_500_000)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--cutoffs", type=int, nargs="+", default=[10, 20, 50, 100])
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--tie-rule", default="random")
    ap.add_argument("--threads", type=int, default=1, help="BLAS and torch threads")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved bare / full timings; best of each")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if HAVE_NUMBA:
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    with threadpool_limits(args.threads):
        run(args)


def run(args: argparse.Namespace) -> None:

    t0 = time.perf_counter()
    train, test = power_law_split(args.users, args.items, args.train, args.test, seed=0)
    rng = np.random.default_rng(1)
    U = rng.standard_normal((args.users, args.factors), dtype=np.float32)
    V = rng.standard_normal((args.items, args.factors), dtype=np.float32)
    model = DotModel(U, V)
    ev = Evaluator(test, train, args.cutoffs, ACCURACY, batch_size=args.batch_size, tie_rule=args.tie_rule)
    print(f"data: {train}, {test}; built in {time.perf_counter() - t0:.1f}s")
    print(
        f"evaluated users: {len(ev.users):,} (skipped {ev.skipped}); batch {args.batch_size}; "
        f"top-{max(args.cutoffs)}; {args.threads} thread(s); tie rule {args.tie_rule}"
    )
    # Warm-up, not timed: numba compiles the kernel on first use (or loads it from its cache).
    start = time.perf_counter()
    if HAVE_NUMBA:  # int32 column indices, as in the evaluator's CSR matrices (one build per dtype)
        ptr, ind = np.zeros(3, np.int64), np.zeros(0, np.int32)
        fused_topk(np.zeros((2, args.items), np.float32), ptr, ind, 2)
        member_rows(sp.csr_matrix(np.zeros((2, args.items), np.float32)), np.zeros((2, 2), np.int64))
    model.score(ev.users[: args.batch_size])
    print(f"warm-up (numba compile or cache load, first product): {time.perf_counter() - start:.1f}s")
    rss_before = rss_mb()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    # Bare product and full evaluation, interleaved `--repeats` times; the best of each side is
    # compared (every repeat is printed too). The bare product runs in the same batches as the
    # evaluator and drops each result, as the evaluator does once a batch is done.
    bare: list[tuple[float, float]] = []
    full: list[tuple[float, float]] = []
    peak_mb = rss_before
    summaries = []
    for rep in range(args.repeats):
        start, cpu = time.perf_counter(), time.process_time()
        for sl in batched(len(ev.users), args.batch_size):
            model.score(ev.users[sl])
        bare.append((time.perf_counter() - start, time.process_time() - cpu))
        with PeakRSS() as peak:
            start, cpu = time.perf_counter(), time.process_time()
            result = ev.evaluate(model)
            full.append((time.perf_counter() - start, time.process_time() - cpu))
        peak_mb = max(peak_mb, peak.peak)
        summaries.append(result.summary)
        (bw, bc), (fw, fc) = bare[-1], full[-1]
        print(
            f"repeat {rep + 1}: bare {bw:7.2f} s wall {bc:7.2f} s cpu | full {fw:7.2f} s wall {fc:7.2f} s cpu"
            f" | ratio {fw / bw:5.2f} wall {fc / bc:5.2f} cpu"
        )
    if any(repr(sm) != repr(summaries[0]) for sm in summaries):  # repr: NaN equals NaN
        raise RuntimeError("repeats gave different metric values")
    bare_wall, bare_cpu = min(w for w, _ in bare), min(c for _, c in bare)
    full_wall, full_cpu = min(w for w, _ in full), min(c for _, c in full)

    print(f"bare U[b] @ V.T      : {bare_wall:8.2f} s wall {bare_cpu:8.2f} s cpu  (best of {args.repeats})")
    n_values = len(result.summary)
    print(
        f"full evaluation      : {full_wall:8.2f} s wall {full_cpu:8.2f} s cpu  (best of {args.repeats}; "
        f"{n_values} metric values)"
    )
    print(
        f"ratio full / bare    : {full_wall / bare_wall:8.2f} wall   {full_cpu / bare_cpu:8.2f} cpu  "
        "(target <= 1.5)"
    )
    batch_mb = args.batch_size * args.items * 4 / 2**20
    print(
        f"RSS before evaluation: {rss_before:8.0f} MiB (data + factors); peak during evaluation "
        f"{peak_mb:.0f} MiB (+{peak_mb - rss_before:.0f} MiB; one score batch = {batch_mb:.0f} MiB)"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"engine: {'numba fused kernel' if HAVE_NUMBA else 'numpy/torch'}")
    shown = {k: round(v, 5) for k, v in result.summary.items() if k.endswith("_at_10")}
    print(f"summary@10 (random factors, so near chance): {shown}")


if __name__ == "__main__":
    main()
