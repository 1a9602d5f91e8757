"""Read reprorec cell runs (and their artifacts) from an MLflow tracking store.

Only names from :mod:`benchmark.tracking.schema` are used, so the report follows the sweep's contract
and nothing else. Runs that cannot be used are never dropped silently: each one is returned in
:attr:`Collection.skipped` with the reason.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.errors import ConfigError, DataError
from benchmark.portable import sqlite_file
from benchmark.redaction import redact_url
from benchmark.tracking import schema as S


class ReportInputError(ConfigError):
    """The tracking store holds nothing a report can be made from (says what is missing)."""


@dataclass(frozen=True)
class CellRun:
    """One FINISHED cell run: a (dataset, split, model, seed) with its final test metrics.

    ``run_id`` is the run's stable id: the one it had in the store it was first logged to, which a
    run imported from a store archive keeps (:mod:`benchmark.reporting.archive`), so that a report
    regenerated from an archive names the same runs; ``store_run_id`` is its id in this store.
    """

    run_id: str
    experiment_id: str
    run_name: str
    dataset: str
    split: str
    protocol: str
    model: str
    family: str
    seed: str
    start_time: int
    end_time: int
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    per_user: pd.DataFrame | None = None
    trials: pd.DataFrame | None = None
    protocol_doc: dict[str, Any] | None = None
    datasheet: dict[str, Any] | None = None
    missing_artifacts: tuple[str, ...] = ()
    store_run_id: str = ""

    @property
    def split_fingerprint(self) -> str:
        return self.tags.get(S.FP_SPLIT, "")

    @property
    def label(self) -> str:
        return f"{self.model} · {self.dataset} · seed {self.seed} (run {self.run_id})"


@dataclass(frozen=True)
class SkippedRun:
    run_id: str
    name: str
    reason: str


@dataclass
class Collection:
    """What :func:`collect_runs` found."""

    tracking_uri: str
    experiment_ids: list[str]
    experiment_names: list[str]
    sweep_run_id: str | None
    cells: list[CellRun] = field(default_factory=list)
    skipped: list[SkippedRun] = field(default_factory=list)
    sweep_command: str = ""
    sweep_tags: dict[str, str] = field(default_factory=dict)


def _read_artifacts(client: Any, run_id: str, root: Path) -> tuple[dict[str, Any], list[str]]:
    """Download the artifacts the report needs; return them and the names that were missing."""
    out: dict[str, Any] = {}
    missing: list[str] = []
    readers: dict[str, Callable[[str], Any]] = {
        S.ART_PER_USER: pd.read_parquet,
        S.ART_TRIALS: pd.read_csv,
        S.ART_PROTOCOL: lambda p: json.loads(Path(p).read_text(encoding="utf-8")),
        S.ART_DATASHEET: lambda p: json.loads(Path(p).read_text(encoding="utf-8")),
    }
    for name, reader in readers.items():
        dst = root / run_id
        dst.mkdir(parents=True, exist_ok=True)
        try:
            local = client.download_artifacts(run_id, name, str(dst))
        except Exception:  # absent artifact: MLflow raises several types depending on the store
            missing.append(name)
            continue
        try:
            out[name] = reader(local)
        except Exception as exc:
            raise DataError(f"run {run_id}: artifact cannot be read: {exc}", file=name) from exc
    return out, missing


def open_store_uri(tracking_uri: str) -> str:
    """The URI to open ``tracking_uri`` with; refuses a local store that does not exist.

    MLflow creates a missing sqlite file (or store folder) silently: a mistyped path would give an
    empty store and a misleading "experiment not found", or, on a path that exists later, a second
    store beside the real one. A report only reads, so a missing local store is an error.

    Args:
        tracking_uri: a tracking URI, or a bare path: a sqlite file (``mlflow.db``, as ``reprorec
            tracking.uri=`` takes it) or an existing MLflow file-store folder.

    Returns:
        ``tracking_uri``, with a bare sqlite path as ``sqlite:///<path>``.

    Raises:
        ReportInputError: the sqlite file or store folder does not exist (the message names it).
    """
    hint = "check --tracking-uri / MLFLOW_TRACKING_URI (MLflow would create a new, empty store there)"
    if "://" not in tracking_uri:
        path = Path(tracking_uri)
        if path.is_dir():  # an MLflow file store
            return tracking_uri
        if not path.is_file():
            raise ReportInputError(
                f"tracking store {tracking_uri!r} not found: no such file ({path.resolve()}); {hint}"
            )
        return f"sqlite:///{tracking_uri}"
    db = sqlite_file(tracking_uri)
    if db is not None and not Path(db).is_file():
        raise ReportInputError(
            f"tracking store {tracking_uri!r} not found: the sqlite file {db} ({Path(db).resolve()}) "
            f"does not exist; {hint}"
        )
    if tracking_uri.lower().startswith("file:"):
        from urllib.parse import unquote, urlsplit

        folder = Path(unquote(urlsplit(tracking_uri).path))
        if not folder.is_dir():
            raise ReportInputError(
                f"tracking store {tracking_uri!r} not found: no such folder ({folder}); {hint}"
            )
    return tracking_uri


def _resolve_experiments(client: Any, experiment: str | None, sweep_run_id: str | None) -> list[Any]:
    if sweep_run_id is not None:
        try:
            sweep = client.get_run(sweep_run_id)
        except Exception as exc:
            raise ReportInputError(
                f"sweep run {sweep_run_id!r} not found in the tracking store: {exc}"
            ) from exc
        return [client.get_experiment(sweep.info.experiment_id)]
    names = [e.name for e in client.search_experiments()]
    name = experiment or "reprorec"
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise ReportInputError(
            f"experiment {name!r} not found in the tracking store; experiments there: {sorted(names)}"
        )
    return [exp]


def _reused_cells(client: Any, sweep_run_id: str, have: set[str]) -> list[Any]:
    """Cells a sweep reused (FINISHED earlier, possibly under another sweep), from its cells.json.

    A sweep that adds one model to an earlier sweep's list skips the finished cells: they belong to
    the earlier sweep run, but this sweep's leaderboard must still show them. A sweep that has not
    finished yet has no cells.json: then only its own children are reported.
    """
    with tempfile.TemporaryDirectory(prefix="reprorec-sweep-") as tmp:
        try:
            local = client.download_artifacts(sweep_run_id, S.ART_SWEEP_CELLS, tmp)
        except Exception:  # absent artifact: MLflow raises several types depending on the store
            return []
        try:
            listed = json.loads(Path(local).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(
                f"sweep run {sweep_run_id}: artifact cannot be read: {exc}", file=S.ART_SWEEP_CELLS
            ) from exc
    out = []
    for entry in listed:
        run_id = entry.get("run_id")
        if entry.get("status") != "skipped" or not run_id or run_id in have:
            continue
        run = client.get_run(run_id)
        if run.data.tags.get(S.RUN_TYPE) == S.RUN_TYPE_CELL:
            out.append(run)
            have.add(run_id)
    return out


def collect_runs(
    tracking_uri: str,
    *,
    experiment: str | None = None,
    sweep_run_id: str | None = None,
    download: bool = True,
) -> Collection:
    """Read every cell run of an experiment (or of one sweep) and their report artifacts.

    Args:
        tracking_uri: MLflow tracking URI (``sqlite:///mlflow.db``, ``http://127.0.0.1:5000``, a folder)
            or a bare sqlite path (``mlflow.db``); see :func:`open_store_uri`.
        experiment: experiment name (default ``reprorec``); ignored when ``sweep_run_id`` is given.
        sweep_run_id: restrict to the cells of this sweep run: its children and the finished cells
            it reused (listed as skipped in its ``sweep/cells.json``).
        download: fetch the artifacts (per-user metrics, trials, protocol, datasheet).

    Returns:
        The FINISHED cells and the runs skipped with their reasons.

    Raises:
        ReportInputError: unknown experiment/sweep, no FINISHED cell run at all, or a local store
            (sqlite file, store folder) that does not exist.
    """
    # No per-file download progress bars on stderr (the report prints its own warnings there).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow import MlflowClient  # imported lazily: the CLI's --help stays fast

    tracking_uri = open_store_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    exps = _resolve_experiments(client, experiment, sweep_run_id)
    exp_ids = [e.experiment_id for e in exps]
    filt = f"tags.`{S.RUN_TYPE}` = '{S.RUN_TYPE_CELL}'"
    if sweep_run_id is not None:
        filt += f" and tags.`{S.PARENT_RUN_ID}` = '{sweep_run_id}'"
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(exp_ids, filter_string=filt, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    coll = Collection(tracking_uri, exp_ids, [e.name for e in exps], sweep_run_id)
    if sweep_run_id is not None:
        runs += _reused_cells(client, sweep_run_id, {r.info.run_id for r in runs})
        sweep = client.get_run(sweep_run_id)
        coll.sweep_tags = dict(sweep.data.tags)
        coll.sweep_command = sweep.data.tags.get(S.COMMAND, "")
    with tempfile.TemporaryDirectory(prefix="reprorec-report-") as tmp:
        for run in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)):
            tags = dict(run.data.tags)
            name = run.info.run_name or run.info.run_id
            if run.info.status != "FINISHED":
                coll.skipped.append(SkippedRun(run.info.run_id, name, f"status {run.info.status}"))
                continue
            need = [S.DATASET, S.SPLIT, S.MODEL]
            absent = [t for t in need if not tags.get(t)]
            if absent:
                coll.skipped.append(SkippedRun(run.info.run_id, name, f"tags not logged: {absent}"))
                continue
            if not any(k.startswith(S.TEST_PREFIX) for k in run.data.metrics):
                coll.skipped.append(SkippedRun(run.info.run_id, name, "no test/ metric logged"))
                continue
            arts: dict[str, Any] = {}
            missing: list[str] = []
            if download:
                arts, missing = _read_artifacts(client, run.info.run_id, Path(tmp))
            coll.cells.append(
                CellRun(
                    run_id=tags.get(S.ORIGIN_RUN_ID) or run.info.run_id,
                    store_run_id=run.info.run_id,
                    experiment_id=run.info.experiment_id,
                    run_name=name,
                    dataset=tags[S.DATASET],
                    split=tags[S.SPLIT],
                    protocol=tags.get(S.PROTOCOL, ""),
                    model=tags[S.MODEL],
                    family=tags.get(S.MODEL_FAMILY, ""),
                    seed=tags.get(S.SEED, "0"),
                    start_time=int(run.info.start_time or 0),
                    end_time=int(run.info.end_time or 0),
                    tags=tags,
                    params=_resolved_params(run.data.params),
                    metrics={k: float(v) for k, v in run.data.metrics.items()},
                    per_user=arts.get(S.ART_PER_USER),
                    trials=arts.get(S.ART_TRIALS),
                    protocol_doc=arts.get(S.ART_PROTOCOL),
                    datasheet=arts.get(S.ART_DATASHEET),
                    missing_artifacts=tuple(missing),
                )
            )
    if not coll.sweep_command:
        # The newest sweep run of the experiment holds the command that regenerates it.
        sweeps = client.search_runs(
            exp_ids,
            filter_string=f"tags.`{S.RUN_TYPE}` = '{S.RUN_TYPE_SWEEP}'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        if sweeps:
            coll.sweep_command = sweeps[0].data.tags.get(S.COMMAND, "")
            coll.sweep_tags = dict(sweeps[0].data.tags)
    if not coll.sweep_command:
        cmds = sorted({c.tags.get(S.COMMAND, "") for c in coll.cells} - {""})
        coll.sweep_command = " ; ".join(cmds)
    if not coll.cells:
        where = f"sweep {sweep_run_id}" if sweep_run_id else f"experiment {coll.experiment_names[0]!r}"
        at = redact_url(tracking_uri)  # an error message may be pasted into an issue
        lines = [f"no FINISHED cell runs (tag {S.RUN_TYPE}={S.RUN_TYPE_CELL}) in {where} at {at}"]
        if coll.skipped:
            lines.append("skipped runs:")
            lines += [f"  {s.run_id} ({s.name}): {s.reason}" for s in coll.skipped]
        raise ReportInputError("\n".join(lines))
    return coll


def _resolved_params(params: dict[str, str]) -> dict[str, str]:
    """A run's params with the tie rule resolved (older runs logged the evaluator's default as
    ``default``; the card names the rule the data was ranked with, and old and new runs agree)."""
    out = dict(params)
    if out.get(S.PARAM_TIE_RULE) == "default":
        out[S.PARAM_TIE_RULE] = S.DEFAULT_TIE_RULE
    return out
