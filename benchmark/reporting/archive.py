"""Store archives: the finished cells of a tracking store, with their trials and sweeps, as files.

A leaderboard is generated from a tracking store, and a number in it is only worth citing if anyone
can regenerate it. An archive is what travels with a report (``reports/stores/<name>/``): the FINISHED
cell runs of one MLflow experiment, every trial run of those cells, and the sweep runs they belong to
(their tags, params, full metric histories, timestamps, statuses and artifacts), written so that
``reprorec-store import`` rebuilds them in any other store. There ``reprorec-report`` regenerates
the report, the MLflow UI browses the runs, and a sweep of the same code skips the imported cells
(same cell keys) and runs only what is missing: a sweep longer than one machine's allocation
(a SLURM time limit, a lent machine) can be carried to the next one as an archive.

Layout of an archive folder::

    archive.json            format, version, the experiment, every run (ids, parent, status, times,
                            tags, params, artifact files), sha256 of every file
    metrics.parquet         every metric point: run, key, step, timestamp, value
    studies.json            the Optuna studies of the cells that have not FINISHED (every trial:
                            state, params, distributions, values, attributes, times), so that
                            such a cell resumes from its finished trials in the other store
    artifacts/<run>/...     the runs' artifacts (``recommendations.parquet`` only when asked: large,
                            and not needed by a report)

What changes on the way, on purpose:

* every tag, param and text artifact goes through :func:`benchmark.portable.portable_text`: no
  password and no absolute path of the exporting machine is written (a committed archive is
  published like the report itself);
* the lease tag (``reprorec.owner``: host and pid of a process of the exporting machine) and
  ``mlflow.user`` are left out; a run that was still RUNNING is imported KILLED, with the reason;
* an imported run gets new MLflow run ids (MLflow assigns them) and keeps its first id in
  ``reprorec.origin_run_id``, which reports show and later exports keep: a run's id is stable
  through any chain of exports and imports. The sweeps' ``sweep/cells.json`` is rewritten to the new
  ids.

Import is idempotent and all-or-nothing per run: a run counts as imported only once its
``reprorec.import.complete`` tag and final status are set (after its params, metrics and
artifacts); a half-imported run left by a crash is deleted and imported again by the next call. A
cell whose cell key already has a FINISHED run in the target store is not imported twice (the store
never holds two FINISHED runs of one key). A study is added trial by trial in trial order; an
import that finds a study of that name with fewer trials that agree with the archive's adds the
rest (an interrupted import goes on), one whose trials disagree is left alone and reported.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.errors import ConfigError, DataError
from benchmark.fingerprint import sha256_file
from benchmark.io import atomic_dir
from benchmark.portable import portable_text
from benchmark.redaction import redact_url
from benchmark.reporting.collect import open_store_uri
from benchmark.tracking import schema as S

FORMAT = "reprorec.store-archive"
VERSION = 1
MANIFEST = "archive.json"
METRICS = "metrics.parquet"
STUDIES = "studies.json"
ARTIFACTS = "artifacts"
#: Tags never exported: the lease of a process of the exporting machine, the OS user name, the
#: bookkeeping of an earlier import.
DROPPED_TAGS = frozenset({S.OWNER, "mlflow.user", S.IMPORT_COMPLETE})
#: Text artifacts rewritten portable on export (the others are copied byte for byte).
TEXT_SUFFIXES = (".json", ".yaml", ".yml", ".csv", ".txt", ".md")
TERMINAL = ("FINISHED", "FAILED", "KILLED")
#: Run types in import order: a parent before its children.
ORDER = (S.RUN_TYPE_SWEEP, S.RUN_TYPE_CELL, S.RUN_TYPE_TRIAL)


@dataclass
class ArchiveSummary:
    """What an export or an import did, run by run type."""

    runs: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    already: int = 0  # runs an earlier import of the archive brought in
    files: int = 0
    studies: int = 0
    study_trials: int = 0
    metric_points: int = 0

    def line(self, verb: str) -> str:
        counts = ", ".join(f"{n} {t} runs" for t, n in self.runs.items()) or "no runs"
        studies = f"{self.studies} studies of unfinished cells"
        if self.study_trials:
            studies += f" ({self.study_trials} trials)"
        return f"{verb} {counts}, {self.metric_points} metric points, {self.files} artifact files, {studies}"


# ---------------------------------------------------------------------------------------- export
def _all_runs(client: Any, experiment_id: str) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def origin_id(run: Any) -> str:
    """A run's stable id: the one it had in the store it was first logged to."""
    return str(run.data.tags.get(S.ORIGIN_RUN_ID) or run.info.run_id)


def _portable_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: portable_text(v) for k, v in sorted(tags.items()) if k not in DROPPED_TAGS}


def _select(runs: list[Any], client: Any) -> list[Any]:
    """FINISHED cells, all their trials, and the sweeps that ran them or list them as reused."""
    by_id = {r.info.run_id: r for r in runs}
    kind = {r.info.run_id: r.data.tags.get(S.RUN_TYPE) for r in runs}
    cells = {i for i, r in by_id.items() if kind[i] == S.RUN_TYPE_CELL and r.info.status == "FINISHED"}
    trials = {
        i
        for i, r in by_id.items()
        if kind[i] == S.RUN_TYPE_TRIAL and r.data.tags.get(S.PARENT_RUN_ID) in cells
    }
    sweeps = {by_id[c].data.tags.get(S.PARENT_RUN_ID) for c in cells} & set(by_id)
    for i in by_id:  # a sweep that reused a selected cell shows it in its report
        if kind[i] == S.RUN_TYPE_SWEEP and i not in sweeps:
            listed = _sweep_cells(client, i)
            if any(e.get("run_id") in cells for e in listed):
                sweeps.add(i)
    chosen = cells | trials | {s for s in sweeps if s}
    return [by_id[i] for i in sorted(chosen, key=lambda i: (by_id[i].info.start_time or 0, i))]


def _sweep_cells(client: Any, run_id: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="reprorec-archive-") as tmp:
        try:
            local = client.download_artifacts(run_id, S.ART_SWEEP_CELLS, tmp)
        except Exception:  # no cells.json (a sweep that has not ended): MLflow raises several types
            return []
        listed = json.loads(Path(local).read_text(encoding="utf-8"))
    return listed if isinstance(listed, list) else []


def _copy_artifacts(client: Any, run_id: str, dest: Path, *, with_recommendations: bool) -> list[str]:
    """Download a run's artifacts into ``dest``; text files made portable. Returns relative paths."""
    with tempfile.TemporaryDirectory(prefix="reprorec-archive-") as tmp:
        if not client.list_artifacts(run_id):
            return []
        root = Path(client.download_artifacts(run_id, "", tmp))
        out = []
        for src in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = src.relative_to(root).as_posix()
            if rel == S.ART_RECOMMENDATIONS and not with_recommendations:
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if src.suffix in TEXT_SUFFIXES:
                target.write_text(portable_text(src.read_text(encoding="utf-8")), encoding="utf-8")
            else:
                shutil.copyfile(src, target)
            out.append(rel)
    return out


def export_store(
    tracking_uri: str,
    out: str | Path,
    *,
    experiment: str = "reprorec",
    with_recommendations: bool = False,
    study_storage: str | None = None,
) -> ArchiveSummary:
    """Write the finished cells of ``experiment`` in ``tracking_uri`` (with their trials and sweeps)
    as an archive folder ``out``, replacing it atomically (a reader sees the old or the new one).

    Args:
        tracking_uri: the store to read (a URI, or a bare sqlite path); see
            :func:`benchmark.reporting.collect.open_store_uri`.
        out: the archive folder to write.
        experiment: the MLflow experiment to export.
        with_recommendations: also copy the cells' ``recommendations.parquet`` (large; reports do
            not read it).
        study_storage: the Optuna storage of the sweep (default: ``optuna.db`` next to a sqlite
            tracking store, as the sweep's own default); the studies of the experiment's cells
            that have not FINISHED are archived from it (none when it does not exist).

    Raises:
        ConfigError: the store or the experiment does not exist, or it holds neither a FINISHED cell
            nor the study of an unfinished one.
    """
    from mlflow import MlflowClient

    uri = open_store_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ConfigError(
            f"experiment {experiment!r} not found in {redact_url(uri)}; experiments there: {names}"
        )
    every = _all_runs(client, exp.experiment_id)
    chosen = _select(every, client)
    ids = {r.info.run_id: origin_id(r) for r in chosen}
    summary = ArchiveSummary()
    entries, points = [], []
    with atomic_dir(out) as tmp:
        for run in chosen:
            rid = ids[run.info.run_id]
            kind = run.data.tags.get(S.RUN_TYPE, "")
            summary.runs[kind] = summary.runs.get(kind, 0) + 1
            tags = _portable_tags(dict(run.data.tags))
            tags.pop(S.ORIGIN_RUN_ID, None)  # the entry's id is the origin id
            parent = tags.pop(S.PARENT_RUN_ID, None)
            arts = _copy_artifacts(
                client, run.info.run_id, tmp / ARTIFACTS / rid, with_recommendations=with_recommendations
            )
            if kind == S.RUN_TYPE_SWEEP and S.ART_SWEEP_CELLS in arts:
                # name the listed cells by their stable ids too
                path = tmp / ARTIFACTS / rid / S.ART_SWEEP_CELLS
                listed = json.loads(path.read_text(encoding="utf-8"))
                for e in listed:
                    if e.get("run_id") in ids:
                        e["run_id"] = ids[e["run_id"]]
                path.write_text(json.dumps(listed, indent=2), encoding="utf-8")
            summary.files += len(arts)
            for key in sorted(run.data.metrics):
                for m in client.get_metric_history(run.info.run_id, key):
                    points.append((rid, key, int(m.step), int(m.timestamp), float(m.value)))
            entries.append(
                {
                    "id": rid,
                    "type": kind,
                    "parent": ids.get(parent) if parent else None,  # a parent not archived: none
                    "name": portable_text(run.info.run_name or ""),
                    "status": run.info.status,
                    "start_time": run.info.start_time,
                    "end_time": run.info.end_time,
                    "tags": tags,
                    "params": {k: portable_text(v) for k, v in sorted(run.data.params.items())},
                    "artifacts": arts,
                }
            )
        finished = {
            r.data.tags.get(S.CELL_KEY) for r in chosen if r.data.tags.get(S.RUN_TYPE) == S.RUN_TYPE_CELL
        }
        unfinished = {
            r.data.tags[S.CELL_KEY]
            for r in every
            if r.data.tags.get(S.RUN_TYPE) == S.RUN_TYPE_CELL and S.CELL_KEY in r.data.tags
        } - finished
        studies = _export_studies(_study_storage(study_storage, uri), sorted(unfinished))
        if not finished - {None} and not studies:
            raise ConfigError(
                f"no FINISHED cell run and no study of an unfinished one in experiment {experiment!r} "
                f"of {redact_url(uri)}: nothing to export"
            )
        (tmp / STUDIES).write_text(json.dumps(studies, indent=1) + "\n", encoding="utf-8")
        summary.studies = len(studies)
        frame = pd.DataFrame(points, columns=["run", "key", "step", "timestamp", "value"])
        frame.to_parquet(tmp / METRICS, index=False)
        summary.metric_points = len(frame)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "experiment": {
                "name": exp.name,
                "tags": {k: portable_text(v) for k, v in sorted(exp.tags.items())},
            },
            "left_out": [] if with_recommendations else [S.ART_RECOMMENDATIONS],
            "runs": entries,
            "sha256": {p.relative_to(tmp).as_posix(): sha256_file(p) for p in files},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return summary


# ---------------------------------------------------------------------------------------- import
def read_manifest(archive: str | Path) -> dict[str, Any]:
    """The archive's manifest, after checking its format and every file's sha256.

    Raises:
        DataError: not an archive, an unknown version, a missing or altered file (the message
            names the file).
    """
    folder = Path(archive)
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"not a store archive: no {MANIFEST} in it", file=str(archive))
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"not valid JSON: {exc}", file=str(path)) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(
            f"not a store archive (expected format {FORMAT!r})",
            file=str(path),
            field="format",
            value=manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__,
        )
    if manifest.get("version") != VERSION:
        raise DataError(
            f"archive version not supported by this reprorec (it reads version {VERSION})",
            file=str(path),
            field="version",
            value=manifest.get("version"),
        )
    for rel, digest in manifest["sha256"].items():
        f = folder / rel
        if not f.is_file():
            raise DataError("file listed in the archive is missing", file=str(f))
        if sha256_file(f) != digest:
            raise DataError(
                f"file differs from the archive's sha256 {digest[:12]}... (altered or truncated)", file=str(f)
            )
    return manifest


def _present(client: Any, experiment_id: str) -> dict[str, Any]:
    """Runs of the target store by stable id: its own runs, and those an import brought in."""
    return {origin_id(r): r for r in _all_runs(client, experiment_id)}


def _log_points(client: Any, run_id: str, points: Iterable[tuple[str, int, int, float]]) -> None:
    from mlflow.entities import Metric

    from benchmark.tracking.mlflow_store import _chunks, _retry

    batch = [Metric(k, v, ts, step) for k, step, ts, v in points]
    for chunk in _chunks(batch, 1000):
        _retry(lambda c=chunk: client.log_batch(run_id, metrics=c))  # type: ignore[misc]


def import_archive(
    archive: str | Path, tracking_uri: str, *, study_storage: str | None = None
) -> ArchiveSummary:
    """Rebuild the runs of ``archive`` in the store ``tracking_uri`` (created if it is a new sqlite file).

    Args:
        archive: an archive folder written by :func:`export_store`.
        tracking_uri: the target store (a URI or a bare sqlite path).
        study_storage: where the studies of unfinished cells go: the Optuna storage the sweep
            will use there (default: ``optuna.db`` beside a sqlite tracking store).

    Returns:
        What was imported; runs an earlier import brought in are counted in ``already``, cells whose
        cell key has a FINISHED run in the store already are listed in ``skipped``.

    Raises:
        DataError: the archive is not valid (see :func:`read_manifest`).
    """
    from mlflow.entities import Param, RunTag

    from benchmark.tracking.mlflow_store import Tracker, _chunks, _retry

    folder = Path(archive)
    manifest = read_manifest(folder)
    tracker = Tracker(tracking_uri)
    client = tracker.client
    exp_id = tracker.ensure_experiment(manifest["experiment"]["name"])
    for k, v in manifest["experiment"]["tags"].items():
        if k == S.EXPERIMENT_KIND:
            _retry(lambda k=k, v=v: client.set_experiment_tag(exp_id, k, v))  # type: ignore[misc]
    metrics = pd.read_parquet(folder / METRICS)
    by_run = {rid: g for rid, g in metrics.groupby("run", sort=False)}
    done = {}
    present = _present(client, exp_id)
    for origin, run in present.items():
        tags = run.data.tags
        if S.ORIGIN_RUN_ID in tags and tags.get(S.IMPORT_COMPLETE) != "true":
            # a crash mid-import left this run: do it again
            _retry(lambda r=run: client.delete_run(r.info.run_id))  # type: ignore[misc]
        else:  # imported before, or the store the archive came from
            done[origin] = run
    new_ids = {o: r.info.run_id for o, r in done.items()}
    finished_keys = {  # a half-imported cell is still RUNNING: never among these
        r.data.tags[S.CELL_KEY]: r.info.run_id
        for r in present.values()
        if r.data.tags.get(S.RUN_TYPE) == S.RUN_TYPE_CELL
        and r.info.status == "FINISHED"
        and S.CELL_KEY in r.data.tags
    }
    summary = ArchiveSummary()
    entries = sorted(
        manifest["runs"], key=lambda e: ORDER.index(e["type"]) if e["type"] in ORDER else len(ORDER)
    )
    left_cells: set[str] = set()
    sweeps_to_end: list[dict[str, Any]] = []
    for e in entries:
        if e["id"] in done:
            summary.already += 1
            continue
        if e["type"] == S.RUN_TYPE_TRIAL and e["parent"] in left_cells:
            continue
        key = e["tags"].get(S.CELL_KEY)
        if e["type"] == S.RUN_TYPE_CELL and key in finished_keys:
            left_cells.add(e["id"])
            new_ids[e["id"]] = finished_keys[key]
            summary.skipped.append(
                f"cell {e['id']} ({e['name']}): a FINISHED run of its cell key is in the store"
            )
            continue
        tags = dict(e["tags"])
        tags[S.ORIGIN_RUN_ID] = e["id"]
        if e["parent"]:
            if e["parent"] not in new_ids:
                raise DataError(
                    f"run {e['id']} names parent {e['parent']}, which the archive does not hold",
                    file=str(folder / MANIFEST),
                    field="parent",
                    value=e["parent"],
                )
            tags[S.PARENT_RUN_ID] = new_ids[e["parent"]]
        run_id = tracker.start_run(exp_id, e["name"], tags={}, start_time_ms=e["start_time"])
        params = [Param(k, v) for k, v in e["params"].items()]
        run_tags = [RunTag(k, v) for k, v in tags.items()]
        for chunk in _chunks(params + run_tags, 100):  # type: ignore[operator]
            cp = [x for x in chunk if isinstance(x, Param)]
            ct = [x for x in chunk if isinstance(x, RunTag)]
            _retry(lambda r=run_id, cp=cp, ct=ct: client.log_batch(r, params=cp, tags=ct))  # type: ignore[misc]
        if e["id"] in by_run:
            g = by_run[e["id"]]
            _log_points(client, run_id, zip(g["key"], g["step"], g["timestamp"], g["value"], strict=True))
            summary.metric_points += len(g)
        new_ids[e["id"]] = run_id
        summary.runs[e["type"]] = summary.runs.get(e["type"], 0) + 1
        if e["type"] == S.RUN_TYPE_SWEEP:
            sweeps_to_end.append({**e, "new_id": run_id})  # cells.json names cells: after them
            continue
        summary.files += _finish(tracker, folder, e, run_id, new_ids)
    for e in sweeps_to_end:
        summary.files += _finish(tracker, folder, e, e["new_id"], new_ids)
    studies = json.loads((folder / STUDIES).read_text(encoding="utf-8"))
    _import_studies(studies, _study_storage(study_storage, tracker.uri), summary)
    return summary


def _finish(tracker: Any, folder: Path, e: dict[str, Any], run_id: str, new_ids: dict[str, str]) -> int:
    """Upload the run's artifacts, mark it imported, and end it with its status."""
    src = folder / ARTIFACTS / e["id"]
    if e["artifacts"]:
        with tempfile.TemporaryDirectory(prefix="reprorec-archive-") as tmp:
            stage = Path(tmp) / "a"
            shutil.copytree(src, stage)
            cells = stage / S.ART_SWEEP_CELLS
            if e["type"] == S.RUN_TYPE_SWEEP and cells.is_file():
                listed = json.loads(cells.read_text(encoding="utf-8"))
                for entry in listed:
                    rid = entry.get("run_id")
                    # a cell the archive does not hold has no run here: the report skips the entry
                    entry["run_id"] = new_ids.get(rid) if rid else rid
                cells.write_text(json.dumps(listed, indent=2), encoding="utf-8")
            tracker.log_folder(run_id, stage)
    status, end_time = e["status"], e["end_time"]
    tags = {S.IMPORT_COMPLETE: "true"}
    if status not in TERMINAL:
        tags[S.END_REASON] = f"was {status} when it was archived"
        status, end_time = "KILLED", end_time or int(time.time() * 1000)
    tracker.log(run_id, tags=tags)
    tracker.end_run(run_id, status, end_time_ms=end_time)
    return len(e["artifacts"])


# ---------------------------------------------------------------------------------------- studies
def _study_storage(storage: str | None, tracking_uri: str) -> str | None:
    """The study storage to read or write: ``storage``, else ``optuna.db`` beside a sqlite store."""
    from benchmark.tracking.mlflow_store import default_study_storage, resolve_study_storage

    if storage:
        return resolve_study_storage(storage, tracking_uri)
    from benchmark.io import sqlite_path

    if sqlite_path(tracking_uri) is None:
        return None  # a tracking server: the sweep's study storage must be named
    return default_study_storage(tracking_uri)


def _export_studies(storage: str | None, names: list[str]) -> list[dict[str, Any]]:
    import optuna
    from optuna.distributions import distribution_to_json

    from benchmark.io import sqlite_path
    from benchmark.portable import portable_doc

    db = sqlite_path(storage) if storage else None
    if storage is None or (db is not None and not db.is_file()) or not names:
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from benchmark.tracking.studies import open_storage

    rdb = open_storage(storage)
    present = {s.study_name for s in optuna.get_all_study_summaries(rdb, include_best_trial=False)}
    out = []
    for name in names:
        if name not in present:
            continue
        study = optuna.load_study(study_name=name, storage=rdb)
        trials = []
        for t in study.get_trials(deepcopy=False):
            state = t.state
            if state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING):
                state = optuna.trial.TrialState.FAIL  # what the next process would make of it
            trials.append(
                {
                    "number": t.number,
                    "state": state.name,
                    "values": t.values,
                    "params": t.params,
                    "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
                    "user_attrs": portable_doc(t.user_attrs),
                    "system_attrs": portable_doc(t.system_attrs),
                    "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
                    "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
                    "datetime_complete": t.datetime_complete.isoformat() if t.datetime_complete else None,
                }
            )
        out.append(
            {
                "name": name,
                "directions": [d.name for d in study.directions],
                "user_attrs": portable_doc(study.user_attrs),
                "trials": trials,
            }
        )
    return out


def _frozen(t: dict[str, Any]) -> Any:
    import datetime

    import optuna
    from optuna.distributions import json_to_distribution

    def when(x: str | None) -> datetime.datetime | None:
        return datetime.datetime.fromisoformat(x) if x else None

    return optuna.trial.FrozenTrial(
        number=t["number"],
        state=optuna.trial.TrialState[t["state"]],
        value=None,
        values=t["values"],
        datetime_start=when(t["datetime_start"]),
        datetime_complete=when(t["datetime_complete"]),
        params=t["params"],
        distributions={k: json_to_distribution(d) for k, d in t["distributions"].items()},
        user_attrs=t["user_attrs"],
        system_attrs=t["system_attrs"],
        intermediate_values={int(k): v for k, v in t["intermediate_values"].items()},
        trial_id=0,
    )


def _import_studies(studies: list[dict[str, Any]], storage: str | None, summary: ArchiveSummary) -> None:
    import optuna

    if not studies:
        return
    if storage is None:
        raise ConfigError(
            "the archive holds studies of unfinished cells and the target tracking store is a server: "
            "name the sweep's study storage (--study-storage, as tuner.storage)"
        )
    from benchmark.tracking.studies import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = open_storage(storage)
    present = {s.study_name for s in optuna.get_all_study_summaries(rdb, include_best_trial=False)}
    for doc in studies:
        name = doc["name"]
        directions = [optuna.study.StudyDirection[d] for d in doc["directions"]]
        if name in present:
            study = optuna.load_study(study_name=name, storage=rdb)
        else:
            study = optuna.create_study(study_name=name, storage=rdb, directions=directions)
            for k, v in doc["user_attrs"].items():
                study.set_user_attr(k, v)
        have = study.get_trials(deepcopy=False)
        theirs = doc["trials"]
        agree = len(have) <= len(theirs) and all(
            h.number == t["number"] and h.state.name == t["state"] and h.params == t["params"]
            for h, t in zip(have, theirs, strict=False)
        )
        if not agree:
            summary.skipped.append(
                f"study {name[:12]}...: the target's {len(have)} trials disagree with the archive's "
                f"{len(theirs)}: left as it is"
            )
            continue
        for t in theirs[len(have) :]:
            study.add_trial(_frozen(t))
            summary.study_trials += 1
        summary.studies += 1
