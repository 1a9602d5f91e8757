"""Per-cell overhead of a reprorec sweep (Hydra job + data/split cache + MLflow logging), printed.

Runs ``reprorec -m`` in a temporary folder over N cells of an *empty* model (fit and score do no
work) on a small synthetic dataset, once with ``tuner=none`` and once with a few tuning trials, and
prints per cell: the wall time between consecutive cell starts (everything a cell costs in a sweep)
minus the model's own fit and evaluation time, as logged by the cell. Target: < 1 s per cell.

    .venv/bin/python scripts/bench_sweep_overhead.py [--cells 8] [--trials 5]

The first cell pays the imports (torch, MLflow, SQLAlchemy) and the split computation; it is
reported separately. Figures depend on the machine's load: run it on a quiet machine to compare.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml

from benchmark.data.interactions import InteractionMatrix
from benchmark.models import Param, Recommender

REPO = Path(__file__).resolve().parents[1]


class EmptyModel(Recommender):
    """Does nothing: all scores zero (ties broken by the evaluator)."""

    param_specs: ClassVar[dict[str, Param]] = {"x": Param("int", low=0, high=100)}

    def __init__(self, x: int = 0) -> None:
        self.x = x

    def fit(self, train: InteractionMatrix) -> EmptyModel:
        self.n_items_ = train.n_items
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.zeros((len(users), self.n_items_), dtype=np.float32)


def _setup(work: Path) -> None:
    conf = work / "conf"
    shutil.copytree(REPO / "conf", conf)
    tiny = {
        "name": "synthetic",
        "preprocessing": {},
        "options": {"n_users": 300, "n_items": 200, "n_interactions": 6000, "seed": 0},
    }
    (conf / "dataset" / "bench_tiny.yaml").write_text(yaml.safe_dump(tiny))
    empty = {
        "name": "empty",
        "cls": "bench_sweep_overhead.EmptyModel",
        "family": "non-personalised",
        "params": {},
        "search_space": {"x": {"type": "int", "low": 0, "high": 100}},
    }
    (conf / "model" / "empty.yaml").write_text(yaml.safe_dump(empty))


def _sweep(work: Path, n_cells: int, extra: list[str]) -> tuple[float, list[Any]]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(
        {
            "REPROREC_CONF": str(work / "conf"),
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "scripts")]),
            "REPROREC_CACHE": str(work / "cache"),
        }
    )
    seeds = ",".join(str(i) for i in range(n_cells))
    args = [
        "-m",
        "model=empty",
        "dataset=bench_tiny",
        f"seed={seeds}",
        "progress=false",
        "report.enabled=false",
        "evaluation.cutoffs=[5,10]",
        *extra,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark.cli.sweep", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed:\n{proc.stderr[-3000:]}")
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("reprorec")
    assert exp is not None
    cells = client.search_runs(
        [exp.experiment_id],
        "tags.`reprorec.run_type` = 'cell'",
        max_results=1000,
        order_by=["attributes.start_time ASC"],
    )
    return wall, list(cells)


def _report(label: str, wall: float, cells: list[Any]) -> float:
    starts = [c.info.start_time / 1000 for c in cells]
    ends = [c.info.end_time / 1000 for c in cells]
    model_s = [
        c.data.metrics.get("time/fit_s", 0.0)
        + c.data.metrics.get("time/eval_s", 0.0)
        + c.data.metrics.get("time/tuning_s", 0.0)
        for c in cells
    ]
    # cell i costs from its start to the next cell's start (Hydra job set-up included); the last one
    # until its own end
    spans = [b - a for a, b in itertools.pairwise(starts)] + [ends[-1] - starts[-1]]
    overhead = [s - m for s, m in zip(spans, model_s)]
    steady = overhead[1:] or overhead
    print(f"{label}: {len(cells)} cells, process wall {wall:.1f} s")
    print(f"  first cell (imports, split): {spans[0]:.2f} s (model fit+eval+tuning {model_s[0]:.2f} s)")
    print(
        f"  later cells: overhead median {statistics.median(steady):.3f} s, max {max(steady):.3f} s "
        f"(span median {statistics.median(spans[1:] or spans):.3f} s, model median "
        f"{statistics.median(model_s[1:] or model_s):.3f} s)"
    )
    return statistics.median(steady)


def _trial_overhead(work: Path, cells: list[Any]) -> float:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    per_trial = []
    for c in cells:
        trials = client.search_runs([c.info.experiment_id], f"tags.`mlflow.parentRunId` = '{c.info.run_id}'")
        inside = sum(t.data.metrics.get("time/fit_s", 0.0) for t in trials)
        per_trial.append((c.data.metrics["time/tuning_s"] - inside) / max(len(trials), 1))
    return statistics.median(per_trial)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="reprorec-bench-") as tmp:
        # one folder per sweep: MLflow caches its store per URI within this process
        none_dir, tuned_dir = Path(tmp, "none"), Path(tmp, "tuned")
        for d in (none_dir, tuned_dir):
            d.mkdir()
            _setup(d)
        wall, cells = _sweep(none_dir, args.cells, ["tuner=none"])
        none_overhead = _report("tuner=none", wall, cells)
        extra = [
            f"tuner.n_trials={args.trials}",
            "tuner.n_startup_trials=2",
            "evaluation.validation_metrics=[ndcg]",
        ]
        wall, cells = _sweep(tuned_dir, args.cells, extra)
        label = f"tuner=optuna, {args.trials} trials (tuning time counted as model time)"
        tuned_overhead = _report(label, wall, cells)
        per_trial = _trial_overhead(tuned_dir, cells)
    print(
        f"per-cell overhead of Hydra + MLflow (empty model, tuner=none): {none_overhead:.3f} s "
        f"(target < 1 s: {'met' if none_overhead < 1 else 'NOT met'})"
    )
    print(
        f"with {args.trials} logged trials: {tuned_overhead:.3f} s per cell outside the tuning loop, "
        f"{per_trial:.3f} s per trial for Optuna + MLflow (tuning time minus the trials' fit+validation)"
    )


if __name__ == "__main__":
    main()
