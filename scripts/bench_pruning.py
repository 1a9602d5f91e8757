"""What Optuna pruning saves, and whether it changes the chosen configuration (issue 17).

Runs one full sweep cell per (model, pruner) through the real CLI (``experiment=default``:
ml-100k, per-user 80/20, 50 trials, 15 random then TPE, early stopping every 5 epochs with
patience 5, tuned on NDCG@10), each in its own temporary store, one after another, and prints per
cell: trials complete / pruned, the summed tuning seconds (fit + validation of every trial), the
ratio to the unpruned cell of the same model, the chosen hyperparameters, the best validation
NDCG@10 and the test NDCG@10 of the refitted configuration.

Usage::

    REPROREC_MIRROR=../shared/datasets nice -n 10 .venv/bin/python scripts/bench_pruning.py \\
        --models ials bpr --pruners none median hyperband --override tuner.n_trials=20

Timings depend on the machine's load: run it alone (the ratios compare cells run one after the
other in one invocation).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_cell(model: str, pruner: str, extra: list[str]) -> dict[str, Any]:
    from mlflow import MlflowClient

    from benchmark.tracking import schema as S

    with tempfile.TemporaryDirectory(prefix="reprorec-bench-pruning-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env["PYTHONPATH"] = str(REPO)
        args = ["experiment=default", f"model={model}", f"tuner.pruner={pruner}", "progress=false"]
        args += ["report.enabled=false", "tracking.log_recommendations=false", *extra]
        proc = subprocess.run(
            [sys.executable, "-m", "benchmark.cli.sweep", *args],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"{model} / {pruner} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        client = MlflowClient(f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        exp = client.get_experiment_by_name("reprorec")
        (cell,) = client.search_runs([exp.experiment_id], f"tags.`{S.RUN_TYPE}` = '{S.RUN_TYPE_CELL}'")
        m, p = cell.data.metrics, cell.data.params
        return {
            "model": model,
            "pruner": pruner,
            "complete": int(m[S.N_TRIALS_DONE]),
            "pruned": int(m.get(S.N_TRIALS_PRUNED, 0)),
            "tuning_s": m[S.TUNING_SECONDS],
            "best_val": m[S.BEST_VAL],
            "test_ndcg_at_10": m[f"{S.TEST_PREFIX}ndcg_at_10"],
            "params": {
                k.removeprefix(S.PARAM_PREFIX_MODEL): v
                for k, v in sorted(p.items())
                if k.startswith(S.PARAM_PREFIX_MODEL)
                and k.removeprefix(S.PARAM_PREFIX_MODEL) != "random_state"
            },
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["ials", "bpr"])
    ap.add_argument("--pruners", nargs="+", default=["none", "median", "hyperband"])
    # An option, not a positional: after ``--pruners a b`` argparse would take overrides as pruners.
    ap.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one more Hydra override per use, e.g. --override tuner.n_trials=20",
    )
    a = ap.parse_args()
    for model in a.models:
        base: float | None = None
        for pruner in a.pruners:
            r = run_cell(model, pruner, a.override)
            base = r["tuning_s"] if base is None else base
            print(
                f"{model:10s} pruner={pruner:18s} trials {r['complete']:2d} complete "
                f"+ {r['pruned']:2d} pruned  tuning {r['tuning_s']:7.1f} s ({r['tuning_s'] / base:4.2f}x)  "
                f"best val {r['best_val']:.4f}  test NDCG@10 {r['test_ndcg_at_10']:.4f}  "
                f"params {r['params']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
