"""Cost accounting: CPU seconds per cell, and the dry-run estimate of a sweep from earlier runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.tracking import schema as S
from benchmark.tuning.estimate import estimate_sweep, format_estimate
from tests.unit.test_sweep import FAST, reprorec, work  # noqa: F401  (fixture)
from tests.unit.test_sweep_cell import compose


def test_dry_run_estimates_from_the_store_and_runs_nothing(work: Path) -> None:  # noqa: F811
    from mlflow import MlflowClient

    from benchmark.tuning.cell import run_cell

    uri = f"sqlite:///{work / 'mlflow.db'}"
    done = run_cell(compose(work / "conf", *FAST, "model=ease", "tuner.n_trials=3", f"tracking.uri={uri}"))
    assert done.status == "finished"
    run = MlflowClient(tracking_uri=uri).get_run(done.run_id)
    m = run.data.metrics
    assert 0 < m[S.CPU_SECONDS] < 600  # the cell's CPU time is logged
    assert S.WARMUP_SECONDS in m  # the kernels' one-off loading, outside the trials
    trials = MlflowClient(tracking_uri=uri).search_runs(
        [run.info.experiment_id], filter_string=f"tags.`{S.RUN_TYPE}` = '{S.RUN_TYPE_TRIAL}'"
    )
    assert len(trials) == 3
    for t in trials:  # a trial run spans its fit + validation, not the milliseconds of logging it
        assert t.info.end_time - t.info.start_time == round(t.data.metrics["time/fit_s"] * 1000)

    cells = [
        compose(work / "conf", *FAST, "model=ease", "tuner.n_trials=3", f"tracking.uri={uri}"),  # the same
        compose(work / "conf", *FAST, "model=ease", "tuner.n_trials=12", "seed=1", f"tracking.uri={uri}"),
        compose(work / "conf", *FAST, "model=itemknn", f"tracking.uri={uri}"),  # never ran
    ]
    same, other_seed, never = estimate_sweep(cells, uri, "reprorec")
    assert same.status == "skip" and done.run_id in same.based_on
    # 12 trials at the per-trial tuning cost of the earlier 3, plus its refit and test
    per_trial = m[S.TUNING_SECONDS] / m[S.N_TRIALS_DONE]
    assert other_seed.status == "estimate"
    assert other_seed.seconds == pytest.approx(12 * per_trial + m[S.FIT_SECONDS] + m[S.EVAL_SECONDS])
    assert other_seed.peak_rss_mb == m[S.PEAK_MEMORY_MB]
    assert never.status == "unknown" and never.seconds is None
    text = format_estimate([same, other_seed, never])
    assert "3 cells: 1 probably skipped" in text and "1 without an earlier run" in text

    # the command: exit 0, the table printed, no run added and no store created where none was
    n_runs = len(MlflowClient(tracking_uri=uri).search_runs(["0", run.info.experiment_id]))
    proc = reprorec(work, "-m", *FAST, "model=ease,itemknn", f"tracking.uri={uri}", "dry_run=true")
    assert "2 cells: 1 probably skipped" in proc.stdout, proc.stdout
    assert "ease · synthetic · seed 0" in proc.stdout
    assert len(MlflowClient(tracking_uri=uri).search_runs(["0", run.info.experiment_id])) == n_runs
    reprorec(work, "-m", *FAST, "model=ease", f"tracking.uri=sqlite:///{work / 'none.db'}", "dry_run=true")
    assert not (work / "none.db").exists()
