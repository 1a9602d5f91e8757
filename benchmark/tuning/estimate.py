"""Pre-flight estimate of a sweep (``reprorec -m ... dry_run=true``) from earlier runs in the store.

For each cell of the sweep: whether a FINISHED run of the same (model, dataset, split, seed) and the
same code version already exists (the cell will most likely be skipped: its cell key also covers
hyperparameter defaults, search space and evaluation, which are not compared here), else the cost
of the newest earlier FINISHED run of the same model on the same dataset (the same split first):
tuning seconds per trial times this cell's trial budget, plus its refit and test seconds, its CPU
seconds scaled the same way, and its peak memory. Cells with no earlier run are counted as unknown,
never guessed. Nothing is written: no run, no study, no folder.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.config import Config
from benchmark.portable import sqlite_file
from benchmark.tracking import provenance
from benchmark.tracking import schema as S


@dataclass(frozen=True)
class CellEstimate:
    """What one cell of a sweep is expected to cost."""

    cell: str
    trials: int
    status: str  # skip | estimate | unknown
    seconds: float | None = None
    cpu_seconds: float | None = None
    peak_rss_mb: float | None = None
    based_on: str = ""


def _cost(run: Any, trials: int) -> tuple[float, float | None, float | None]:
    m = run.data.metrics
    done = max(1.0, float(m.get(S.N_TRIALS_DONE, 0.0)))
    tuning, refit = (
        float(m.get(S.TUNING_SECONDS, 0.0)),
        float(m.get(S.FIT_SECONDS, 0.0) + m.get(S.EVAL_SECONDS, 0.0)),
    )
    seconds = tuning / done * trials + refit
    cpu = m.get(S.CPU_SECONDS)  # scaled like the wall time (runs before time/cpu_s: unknown)
    cpu_est = None if cpu is None or tuning + refit <= 0 else float(cpu) * seconds / (tuning + refit)
    return seconds, cpu_est, m.get(S.PEAK_MEMORY_MB)


def estimate_sweep(cells: Iterable[Config], tracking_uri: str, experiment: str) -> list[CellEstimate]:
    """One :class:`CellEstimate` per cell (see the module docstring); the store is only read."""
    from mlflow import MlflowClient

    from benchmark.tuning.prepare import cell_name

    runs: list[Any] = []
    db = sqlite_file(tracking_uri)
    exists = db is None or Path(db).is_file()  # a missing sqlite file is not created
    client = MlflowClient(tracking_uri=tracking_uri) if exists else None
    exp = client.get_experiment_by_name(experiment) if client is not None else None
    if client is not None and exp is not None:
        runs = list(
            client.search_runs(
                [exp.experiment_id],
                filter_string=f"tags.`{S.RUN_TYPE}` = '{S.RUN_TYPE_CELL}' and attributes.status = 'FINISHED'",
                max_results=5000,
                order_by=["attributes.start_time DESC"],
            )
        )
    code = provenance.code_version()
    tags = [dict(r.data.tags) for r in runs]
    out = []
    for cfg in cells:
        name = f"{cell_name(cfg)} · {cfg.split.name}"
        trials = (
            0 if cfg.tuner.name == "none" else 1 if cfg.tuner.name == "fixed" else int(cfg.tuner.n_trials)
        )
        same_model = [
            (r, t)
            for r, t in zip(runs, tags, strict=True)
            if t.get(S.MODEL) == cfg.model.name and t.get(S.DATASET) == cfg.dataset.name
        ]
        done = [
            r
            for r, t in same_model
            if t.get(S.SPLIT) == cfg.split.name
            and t.get(S.SEED) == str(cfg.seed)
            and t.get(S.CODE_VERSION) == code
        ]
        if done:
            out.append(CellEstimate(name, trials, "skip", 0.0, 0.0, None, f"run {done[0].info.run_id}"))
            continue
        # the newest run of the same split first, else the newest of any split (a stable sort)
        basis = [r for r, _ in sorted(same_model, key=lambda rt: rt[1].get(S.SPLIT) != cfg.split.name)]
        if not basis:
            out.append(CellEstimate(name, trials, "unknown"))
            continue
        seconds, cpu, rss = _cost(basis[0], trials)
        out.append(
            CellEstimate(
                name,
                trials,
                "estimate",
                seconds,
                cpu,
                rss,
                f"run {basis[0].info.run_id} ({basis[0].data.tags.get(S.SPLIT)})",
            )
        )
    return out


def format_estimate(estimates: list[CellEstimate]) -> str:
    """The table ``dry_run=true`` prints, with totals."""
    lines = [f"{'cell':<60} {'trials':>6} {'expected':>10} {'CPU':>10} {'peak MB':>8}  basis"]
    for e in estimates:
        t = "skip" if e.status == "skip" else "?" if e.seconds is None else f"{e.seconds:.0f} s"
        c = "" if e.cpu_seconds is None or e.status == "skip" else f"{e.cpu_seconds:.0f} s"
        m = "" if e.peak_rss_mb is None else f"{e.peak_rss_mb:.0f}"
        basis = e.based_on or "no earlier run of this model on this dataset"
        lines.append(f"{e.cell:<60} {e.trials:>6} {t:>10} {c:>10} {m:>8}  {basis}")
    known = [e for e in estimates if e.status == "estimate"]
    total = sum(e.seconds or 0.0 for e in known)
    n_skip = sum(e.status == "skip" for e in estimates)
    n_unknown = sum(e.status == "unknown" for e in estimates)
    peak = max((e.peak_rss_mb or 0.0 for e in estimates), default=0.0)
    lines.append(
        f"{len(estimates)} cells: {n_skip} probably skipped (finished with this code version), "
        f"{len(known)} estimated at {total / 60:.1f} min in all (one process, this store's machine), "
        f"{n_unknown} without an earlier run; largest peak memory seen {peak:.0f} MB"
    )
    return "\n".join(lines)
