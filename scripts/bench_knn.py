"""Fit time and peak memory of the neighbourhood and graph baselines on MovieLens-sized data.

Prints one line per (data, model): fit seconds (wall clock, and CPU time of this process, which is
less sensitive to other load on a shared machine), score seconds for 1,000 users, peak resident memory
during fit (absolute, and above the level before fit) and the size of the learned similarity.
Targets (issue 4): ItemKNN top_k=100 and RP3beta on ML-20M-sized data under 120 s and 4 GiB.

Usage::

    nice -n 10 timeout 1800 .venv/bin/python scripts/bench_knn.py --size ml20m --models itemknn,rp3beta
    .venv/bin/python scripts/bench_knn.py --size ml1m

The data are synthetic (:func:`benchmark.data.synthetic.power_law_matrix`: Zipf-like user activity
and item popularity, exponent 0.8, seed derived from the size name), so the figures are reproducible
without the licensed datasets. Timings depend on machine load.
"""

from __future__ import annotations

import argparse
import gc
import threading
import time
from dataclasses import dataclass

import numpy as np
import psutil

from baselines.graph import P3alpha, RP3beta
from baselines.knn import ItemKNN, UserKNN
from benchmark.data.interactions import InteractionMatrix
from benchmark.data.synthetic import power_law_matrix
from benchmark.models import Recommender
from benchmark.seeds import derive_seed

SIZES = {
    # name: (users, items, interactions), shaped like MovieLens 1M and 20M
    "ml1m": (6_040, 3_706, 1_000_000),
    "ml20m": (138_493, 26_744, 10_000_000),
}

MODELS = {
    "itemknn": lambda: ItemKNN(top_k=100, shrink=10, similarity="cosine"),
    "itemknn-bm25": lambda: ItemKNN(top_k=100, shrink=10, similarity="cosine", feature_weighting="BM25"),
    "itemknn-jaccard": lambda: ItemKNN(top_k=100, shrink=10, similarity="jaccard"),
    "userknn": lambda: UserKNN(top_k=100, shrink=10, similarity="cosine"),
    "p3alpha": lambda: P3alpha(top_k=100, alpha=1.0),
    "rp3beta": lambda: RP3beta(top_k=100, alpha=1.0, beta=0.6),
}


class PeakRSS:
    """Samples the process's resident set size every few milliseconds while active."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.start = self.proc.memory_info().rss
        self.peak = self.start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


@dataclass(frozen=True)
class Result:
    data: str
    model: str
    fit_s: float
    fit_cpu_s: float
    score_s: float
    peak_gib: float
    delta_gib: float
    nnz_w: int


def run(data: InteractionMatrix, label: str, model_name: str) -> Result:
    model: Recommender = MODELS[model_name]()
    gc.collect()
    with PeakRSS() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(data)
        fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    users = np.arange(min(1000, data.n_users))
    t0 = time.perf_counter()
    scores = model.score(users)
    score_s = time.perf_counter() - t0
    assert scores.shape == (len(users), data.n_items) and np.isfinite(scores).all()
    w = model.similarity_  # type: ignore[attr-defined]
    gib = 1024.0**3
    return Result(
        label, model_name, fit_s, fit_cpu_s, score_s, mem.peak / gib, (mem.peak - mem.start) / gib, w.nnz
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), action="append")
    parser.add_argument("--models", default="itemknn,userknn,p3alpha,rp3beta")
    args = parser.parse_args()
    names = args.models.split(",")
    for bad in set(names) - set(MODELS):
        parser.error(f"unknown model {bad!r}; known: {sorted(MODELS)}")
    print(f"cpus={psutil.cpu_count()} load={psutil.getloadavg()}")
    header = ("data", "model", "fit_s", "fit_cpu_s", "score1k_s", "peak_GiB", "+fit_GiB", "nnz(W)")
    print(f"{header[0]:<8} {header[1]:<16} " + " ".join(f"{h:>9}" for h in header[2:]))
    for size in args.size or ["ml1m"]:
        n_users, n_items, nnz = SIZES[size]
        t0 = time.perf_counter()
        data = power_law_matrix(n_users, n_items, nnz, seed=derive_seed("bench_knn", size), name=size)
        print(f"# {data!r}, generated in {time.perf_counter() - t0:.1f} s", flush=True)
        for name in names:
            r = run(data, size, name)
            print(
                f"{r.data:<8} {r.model:<16} {r.fit_s:>9.1f} {r.fit_cpu_s:>9.1f} {r.score_s:>9.2f} "
                f"{r.peak_gib:>9.2f} {r.delta_gib:>9.2f} {r.nnz_w:>9}",
                flush=True,
            )


if __name__ == "__main__":
    main()
