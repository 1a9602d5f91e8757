"""Scale-out figures of ``tuner.workers`` on the shared services, printed.

1. Trials per minute of one cell (default: ml-100k from the mirror, ItemKNN) tuned by 1 and by 2
   workers on one Optuna study in PostgreSQL, logged to the MLflow server, through the real CLI
   (``reprorec dataset=ml-100k model=itemknn tuner.workers=W tracking=server tuner.storage=services``).
   The rate is ``n_trials / tuning seconds`` as the cell logs it (``time/tuning_s``): imports,
   data loading, refit and test are outside it.
2. The per-trial overhead of the bookkeeping round trips (Optuna ask + user attributes + tell, and
   the MLflow child run: create, one batch of params/metrics/tags, terminate) against the services
   versus the local default (``sqlite:///mlflow.db`` + ``sqlite:///optuna.db``), with a trial that
   does no work.

    .venv/bin/python scripts/bench_scaleout.py [--trials 8] [--overhead-trials 30]

Starts its own services (``benchmark.services.up``) in a temporary folder and stops them. Needs the
dataset mirror (``REPROREC_MIRROR``, default ``../shared/datasets``). Figures depend on the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmark import services  # noqa: E402
from benchmark.tracking import schema as S  # noqa: E402


def tune_rate(
    work: Path, folder: Path, workers: int, n_trials: int, dataset: str, model: str
) -> dict[str, float]:
    experiment = f"bench-{workers}w-{time.time_ns()}"  # a new experiment: the cell is never skipped
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update({"PYTHONPATH": str(REPO), services.ENV_SERVICES_DIR: str(folder)})
    args = [
        f"dataset={dataset}",
        f"model={model}",
        f"tuner.n_trials={n_trials}",
        "tuner.n_startup_trials=4",
        f"tuner.workers={workers}",
        "tracking=server",
        "tuner.storage=services",
        f"tracking.experiment={experiment}",
        "progress=false",
        "report.enabled=false",
        f"hydra.run.dir={work}/outputs/{experiment}",
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
        raise SystemExit(f"reprorec failed:\n{proc.stderr[-3000:]}")
    from mlflow import MlflowClient

    client = MlflowClient(services.read_urls(folder)["tracking_uri"])
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    (cell,) = client.search_runs([exp.experiment_id], f"tags.`{S.RUN_TYPE}` = '{S.RUN_TYPE_CELL}'")
    trials = client.search_runs([exp.experiment_id], f"tags.`{S.RUN_TYPE}` = '{S.RUN_TYPE_TRIAL}'")
    tuning_s = cell.data.metrics[S.TUNING_SECONDS]
    # The study is named by the cell key, which does not depend on the workers: drop it, so that the
    # next run tunes the same cell from scratch instead of resuming a finished study.
    import optuna

    optuna.delete_study(
        study_name=cell.data.tags[S.CELL_KEY], storage=services.read_urls(folder)["optuna_storage"]
    )
    return {
        "trials": len(trials),
        "tuning_s": tuning_s,
        "per_min": 60.0 * len(trials) / tuning_s,
        "wall_s": wall,
        "workers_seen": len({t.data.tags.get(S.WORKER, "0") for t in trials}),
    }


def bookkeeping_ms(tracking_uri: str, storage: str, n: int) -> tuple[list[float], list[float]]:
    """Milliseconds per empty trial, (Optuna ask/attrs/tell, the MLflow child run), as a worker does."""
    import optuna

    from benchmark.tracking.mlflow_store import Tracker
    from benchmark.tracking.studies import open_storage
    from benchmark.tuning.record import CellRecorder
    from benchmark.tuning.tuner import TrialRecord

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tracker = Tracker(tracking_uri)
    exp = tracker.ensure_experiment(f"overhead-{time.time_ns()}")
    cell = tracker.start_run(exp, "cell", tags={S.RUN_TYPE: S.RUN_TYPE_CELL})
    recorder = CellRecorder(tracker, exp, None)  # type: ignore[arg-type]  # only its trial logger is used
    recorder.run_id = cell
    log = recorder.trial_logger("empty")
    study = optuna.create_study(study_name=f"overhead-{time.time_ns()}", storage=open_storage(storage))
    opt, mlf = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        trial = study.ask()
        x = trial.suggest_int("x", 0, 100)
        for key, val in (("val_metrics", {"ndcg_at_10": 0.1}), ("fit_seconds", 0.0), ("history", [])):
            trial.set_user_attr(key, val)
        study.tell(trial, 0.1)
        t1 = time.perf_counter()
        metrics = {"ndcg_at_10": 0.1, "recall_at_10": 0.2}
        log(TrialRecord(trial.number, "complete", {"x": x}, 0.1, val_metrics=metrics))
        t2 = time.perf_counter()
        opt.append(1000 * (t1 - t0))
        mlf.append(1000 * (t2 - t1))
    tracker.end_run(cell)
    return opt, mlf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8, help="trial budget of the tuned cell")
    parser.add_argument("--overhead-trials", type=int, default=30)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--model", default="itemknn")
    parser.add_argument("--skip-tuning", action="store_true", help="only the overhead figures")
    parser.add_argument(
        "--services-dir", type=Path, default=None, help="use services already up there (else start them)"
    )
    args = parser.parse_args()
    if not os.environ.get("REPROREC_MIRROR") and (REPO.parent / "shared" / "datasets").is_dir():
        os.environ["REPROREC_MIRROR"] = str(REPO.parent / "shared" / "datasets")

    with tempfile.TemporaryDirectory(prefix="reprorec-bench-scaleout-") as tmp:
        work = Path(tmp)
        own = args.services_dir is None
        folder = work / ".services" if own else args.services_dir.resolve()
        t0 = time.perf_counter()
        state = services.up(folder)  # returns the running ones when they are up
        print(
            f"services up in {time.perf_counter() - t0:.1f} s (PostgreSQL :{state.pg_port}, "
            f"MLflow {state.tracking_uri})"
        )
        try:
            print(f"\n1. one cell ({args.dataset}, {args.model}), {args.trials} trials, PostgreSQL + MLflow")
            rates: dict[int, dict[str, float]] = {}
            if not args.skip_tuning:
                for workers in (1, 2):
                    r = rates[workers] = tune_rate(
                        work, folder, workers, args.trials, args.dataset, args.model
                    )
                    print(
                        f"   workers={workers}: {r['trials']:.0f} trials in {r['tuning_s']:.1f} s of tuning "
                        f"-> {r['per_min']:.1f} trials/min (workers that ran some: {r['workers_seen']:.0f}; "
                        f"command wall {r['wall_s']:.1f} s)"
                    )
                print(
                    f"   speed-up 2 vs 1 workers: {rates[2]['per_min'] / rates[1]['per_min']:.2f}x "
                    f"on {os.cpu_count()} CPU cores"
                )

            print(f"\n2. bookkeeping per empty trial ({args.overhead_trials} trials; median, p90 in ms)")
            medians: dict[str, float] = {}
            for name, uri, storage in (
                ("local sqlite", f"sqlite:///{work / 'mlflow.db'}", f"sqlite:///{work / 'optuna.db'}"),
                ("server (MLflow HTTP + PostgreSQL)", state.tracking_uri, state.optuna_storage),
            ):
                opt, mlf = bookkeeping_ms(uri, storage, args.overhead_trials)
                opt, mlf = opt[3:], mlf[3:]  # the first ones warm up connections
                total = [a + b for a, b in zip(opt, mlf, strict=True)]
                medians[name] = statistics.median(total)
                p90 = statistics.quantiles(total, n=10)[-1]
                print(
                    f"   {name:34s} total median {statistics.median(total):6.1f} (p90 {p90:6.1f})"
                    f" = Optuna {statistics.median(opt):6.1f} + MLflow {statistics.median(mlf):6.1f}"
                )
            a, b = medians.values()
            print(f"   server minus sqlite: {b - a:+.1f} ms per trial")
        finally:
            if own:
                services.down(folder)


if __name__ == "__main__":
    main()
