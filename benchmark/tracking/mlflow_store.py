"""The MLflow side of a sweep: store set-up, the sweep / cell / trial run hierarchy, batch logging.

Everything goes through :class:`mlflow.MlflowClient` with explicit run ids (never the fluent
``mlflow.start_run`` stack), because launchers move cells into other processes and working
directories: the parent run id travels explicitly. Names of tags, params, metrics and artifacts come
from :mod:`benchmark.tracking.schema`.

The default store is MLflow 3's own default, ``sqlite:///mlflow.db`` in the working directory, made
absolute once in the launching process (Hydra jobs may run elsewhere); artifacts go to ``mlruns/``
next to the database. SQLite serialises writers: a write that finds the database locked is retried.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from benchmark.errors import ConfigError
from benchmark.io import sqlite_path
from benchmark.tracking import schema

T = TypeVar("T")

#: Environment variables through which the launching process hands the sweep to its jobs.
ENV_SWEEP_RUN_ID = "REPROREC_SWEEP_RUN_ID"
ENV_SWEEP_DIR = "REPROREC_SWEEP_DIR"
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
DEFAULT_DB = "mlflow.db"


#: Seconds a tracking server may take to answer the reachability check before the run fails.
HTTP_CHECK_TIMEOUT_S = 10


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db`` (sqlite paths absolute).

    ``services`` (or ``services:<folder>``) is the MLflow server of ``reprorec-services up``.
    """
    from benchmark.services import resolve_service_url

    uri = uri or os.environ.get(ENV_TRACKING_URI) or DEFAULT_DB
    uri = resolve_service_url(uri, "tracking_uri")
    if "://" not in uri:  # a bare path means a sqlite file
        return f"sqlite:///{Path(uri).resolve()}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///") :]
        if rel != ":memory:":
            return f"sqlite:///{Path(rel).resolve()}"
    return uri


def ensure_sqlite_store(db: Path) -> bool:
    """Create the sqlite tracking store ``db`` with MLflow's full schema, crash-safely.

    MLflow creates a missing sqlite store by running its ~50 schema migrations in place on first
    use; a process killed meanwhile leaves a store that every later run refuses (``duplicate column
    name``), and two processes starting on a fresh store race the migrations. Here the schema is
    built in a temporary file under an exclusive lock and renamed into place
    (:func:`benchmark.io.create_sqlite_atomically`). Returns True if this call created it.
    """
    from benchmark.io import create_sqlite_atomically

    def build(url: str) -> None:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = SqlAlchemyStore(url, (db.parent / "mlruns").resolve().as_uri())
        store.engine.dispose()  # close the temporary file before it is renamed
        SqlAlchemyStore._engine_map.pop(url, None)

    return create_sqlite_atomically(db, build, what=f"the MLflow store {db.name}")


def default_study_storage(tracking_uri: str) -> str:
    """``optuna.db`` next to a sqlite tracking store (or in the working directory for a server)."""
    db = sqlite_path(tracking_uri)
    folder = db.parent if db is not None else Path.cwd()
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


def resolve_study_storage(storage: str | None, tracking_uri: str) -> str:
    """The Optuna storage URL: ``storage``, ``services[:<folder>]`` (the services' PostgreSQL), or
    :func:`default_study_storage` when None."""
    from benchmark.services import resolve_service_url

    if not storage:
        return default_study_storage(tracking_uri)
    return resolve_service_url(storage, "optuna_storage")


def check_tracking_reachable(uri: str, timeout: float = HTTP_CHECK_TIMEOUT_S) -> None:
    """Fail fast (ConfigError naming the redacted URL and the error) when an HTTP tracking server
    does not answer ``/health`` within ``timeout`` seconds; other URIs are not checked here.

    MLflow's own client retries an unreachable server with backoff for minutes: this check runs
    first, in the launching process and in every cell.
    """
    import urllib.error
    import urllib.request

    from benchmark.errors import ConfigError
    from benchmark.redaction import redact_url

    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            if resp.status == 200:
                return
            raise OSError(f"HTTP {resp.status}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ConfigError(
            f"MLflow tracking server {redact_url(uri)} is not reachable (timeout {timeout:.0f} s): "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _retry(fn: Callable[[], T], attempts: int = 8) -> T:
    """Retry an MLflow call that hit SQLite's writer lock (parallel cells share one file)."""
    delay = 0.1
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if "database is locked" not in str(exc) or i == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


def _chunks(items: list[T], size: int) -> Iterable[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def finished_cell_in_sqlite(uri: str, experiment: str, cell_key: str) -> tuple[str, dict[str, float]] | None:
    """``(run id, latest metrics)`` of the newest FINISHED cell run of ``cell_key`` in a sqlite store,
    read with :mod:`sqlite3` alone; None when there is none or the store cannot answer this way.

    What :meth:`Tracker.find_finished_cell` answers (active runs of the active experiment, newest
    start first), without importing MLflow and opening its SQLAlchemy store (about 1.5 s of a
    process that only finds its cell done). Reads MLflow's tables ``experiments``, ``runs``,
    ``tags`` and ``latest_metrics`` read-only; any error means "ask MLflow" (None).
    """
    import sqlite3

    db = sqlite_path(resolve_tracking_uri(uri))
    if db is None or not db.is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute(
                "SELECT r.run_uuid FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
                "JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = ? AND k.value = ? "
                "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = ? AND t.value = ? "
                "WHERE e.name = ? AND e.lifecycle_stage = 'active' AND r.lifecycle_stage = 'active' "
                "AND r.status = 'FINISHED' ORDER BY r.start_time DESC LIMIT 1",
                (schema.CELL_KEY, cell_key, schema.RUN_TYPE, schema.RUN_TYPE_CELL, experiment),
            ).fetchone()
            if row is None:
                return None
            metrics = con.execute("SELECT key, value FROM latest_metrics WHERE run_uuid = ?", (row[0],))
            return str(row[0]), {str(k): float(v) for k, v in metrics}
        finally:
            con.close()
    except sqlite3.Error:
        return None


class Tracker:
    """A thin, explicit-id wrapper around :class:`mlflow.MlflowClient` for one tracking store."""

    def __init__(self, uri: str | None = None, *, create: bool = True) -> None:
        """Open the store at ``uri`` (see :func:`resolve_tracking_uri`); ``create``: make a missing
        sqlite store (crash-safely, :func:`ensure_sqlite_store`) rather than leave it to MLflow."""
        from mlflow import MlflowClient

        self.uri = resolve_tracking_uri(uri)
        db = sqlite_path(self.uri)
        if db is not None and create:
            ensure_sqlite_store(db)
        # MLflow prints a "View run ... at: <server URL>" line per finished run on a server: one per
        # trial in every worker's log. reprorec prints its own progress.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
        except Exception as exc:  # a sqlite store is opened (and checked) here: not a database...
            raise self._unusable(exc) from exc

    # ------------------------------------------------------------------ store and experiment
    def ensure_experiment(self, name: str) -> str:
        """Create (or upgrade) the store and the experiment; return its id.

        Call once in the launching process before jobs fan out: the first use of a sqlite store
        runs its schema migrations, which race when several processes do it at once.
        """
        db = sqlite_path(self.uri)
        if db is not None and db.exists():
            # sqlite opens a read-only file happily and fails at the first write, mid-cell
            unwritable = [p for p in (db, db.parent) if not os.access(p, os.W_OK)]
            if unwritable:
                raise self._unusable(PermissionError(f"{unwritable[0].name or unwritable[0]} is read-only"))
        try:
            exp = _retry(lambda: self.client.get_experiment_by_name(name))
        except Exception as exc:  # not a database, a newer schema, a broken server
            raise self._unusable(exc) from exc
        if exp is not None:
            return str(exp.experiment_id)
        location = (db.parent / "mlruns").resolve().as_uri() if db is not None else None
        try:
            return str(_retry(lambda: self.client.create_experiment(name, artifact_location=location)))
        except Exception as exc:  # created meanwhile by another process, or not writable
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise self._unusable(exc) from exc
            return str(exp.experiment_id)

    def _unusable(self, exc: BaseException) -> ConfigError:
        """An error naming this store (password redacted) and what is wrong with it."""
        from benchmark.redaction import redact_url

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        db = sqlite_path(self.uri)
        what = f"the sqlite file {db.name}: " if db is not None else ""
        return ConfigError(
            f"MLflow tracking store {redact_url(self.uri)} is not usable: {what}{type(exc).__name__}: "
            f"{first} (a corrupt or read-only store: restore it, or point tracking.uri / "
            "MLFLOW_TRACKING_URI at another one)"
        )

    # ------------------------------------------------------------------ runs
    def start_run(
        self,
        experiment_id: str,
        name: str,
        *,
        tags: Mapping[str, Any],
        parent_run_id: str | None = None,
        start_time_ms: int | None = None,
    ) -> str:
        all_tags = {k: str(v) for k, v in tags.items()}
        if parent_run_id:
            all_tags[schema.PARENT_RUN_ID] = parent_run_id
        run = _retry(
            lambda: self.client.create_run(
                experiment_id, run_name=name, tags=all_tags, start_time=start_time_ms
            )
        )
        return str(run.info.run_id)

    def end_run(self, run_id: str, status: str = "FINISHED", *, end_time_ms: int | None = None) -> None:
        _retry(lambda: self.client.set_terminated(run_id, status=status, end_time=end_time_ms))

    def set_running(self, run_id: str) -> None:
        _retry(lambda: self.client.update_run(run_id, status="RUNNING"))

    def log(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
        step: int = 0,
        steps: Iterable[tuple[int, Mapping[str, float]]] = (),
    ) -> None:
        """Log params, tags and metrics (``steps``: per-epoch metrics) in as few batches as allowed."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        p = [Param(k, _param_value(v)) for k, v in (params or {}).items()]
        t = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        m = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()]
        for s, values in steps:
            m.extend(Metric(k, float(v), now, int(s)) for k, v in values.items())
        # MLflow's batch limits: 100 params + tags, 1000 metrics, 1000 entities per call.
        if len(p) + len(t) <= 100 and len(p) + len(t) + len(m) <= 1000:  # one round trip (a server)
            if p or t or m:
                _retry(lambda: self.client.log_batch(run_id, metrics=m, params=p, tags=t))
            return
        for chunk in _chunks(p + t, 100):  # type: ignore[operator]
            cp = [x for x in chunk if isinstance(x, Param)]
            ct = [x for x in chunk if isinstance(x, RunTag)]
            _retry(lambda cp=cp, ct=ct: self.client.log_batch(run_id, params=cp, tags=ct))  # type: ignore[misc]
        for mc in _chunks(m, 1000):
            _retry(lambda mc=mc: self.client.log_batch(run_id, metrics=mc))  # type: ignore[misc]

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        _retry(lambda: self.client.log_artifact(run_id, str(path), artifact_path))

    def log_folder(self, run_id: str, folder: Path) -> None:
        """Upload every entry of ``folder`` as an artifact of the run (a sub-folder keeps its name).

        One upload per entry: a kill between two leaves a run with part of its artifacts, which is
        never FINISHED (the run ends after this returns).
        """
        from benchmark.faults import fault_point

        for i, entry in enumerate(sorted(folder.iterdir())):
            if i == 1:
                fault_point("artifacts.logging")
            if entry.is_dir():
                _retry(lambda e=entry: self.client.log_artifacts(run_id, str(e), e.name))  # type: ignore[misc]
            else:
                self.log_artifact(run_id, entry)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        _retry(lambda: self.client.log_text(run_id, text, artifact_file))

    def log_dict(self, run_id: str, data: Any, artifact_file: str) -> None:
        _retry(lambda: self.client.log_text(run_id, json.dumps(data, indent=2, default=str), artifact_file))

    def log_datasets(
        self, run_id: str, datasets: Iterable[tuple[str, str, str, str, Mapping[str, Any]]]
    ) -> None:
        """Log inputs ``(name, sha256, source, context, profile)`` with :meth:`MlflowClient.log_inputs`.

        MLflow caps a dataset digest at 36 characters: the digest is the sha256's first 36 hex
        digits and the full sha256 is in the profile (and in the run's fingerprint tags).
        """
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = []
        for name, sha, source, context, profile in datasets:
            ds = Dataset(
                name=name,
                digest=sha[:36],
                source_type="reprorec",
                source=json.dumps({"uri": source}),
                profile=json.dumps({"sha256": sha, **profile}, default=str),
            )
            inputs.append(DatasetInput(ds, tags=[InputTag("mlflow.data.context", context)]))
        for attempt in range(6):
            try:
                _retry(lambda: self.client.log_inputs(run_id, datasets=inputs))
                return
            except Exception as exc:
                # Two cells of one dataset (parallel workers) insert the same (experiment, name,
                # digest) row at once: the loser's transaction is rolled back; retried, it finds
                # the winner's row and reuses it.
                text = str(exc)
                if attempt == 5 or not ("UNIQUE constraint" in text or "duplicate key" in text):
                    raise
                time.sleep(0.2 * (attempt + 1))

    # ------------------------------------------------------------------ queries
    def find_runs(self, experiment_id: str, **tags: str) -> list[Any]:
        """Runs of the experiment whose tags equal ``tags`` (newest first)."""
        flt = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        return list(
            _retry(
                lambda: self.client.search_runs(
                    [experiment_id],
                    filter_string=flt,
                    max_results=1000,
                    order_by=["attributes.start_time DESC"],
                )
            )
        )

    def find_finished_cell(self, experiment_id: str, cell_key: str) -> Any | None:
        runs = self.find_runs(
            experiment_id, **{schema.RUN_TYPE: schema.RUN_TYPE_CELL, schema.CELL_KEY: cell_key}
        )
        return next((r for r in runs if r.info.status == "FINISHED"), None)

    def mark_stale_cells(self, experiment_id: str, cell_key: str) -> list[str]:
        """Mark RUNNING runs of this cell (left by a killed process) as KILLED; return their ids."""
        runs = self.find_runs(
            experiment_id, **{schema.RUN_TYPE: schema.RUN_TYPE_CELL, schema.CELL_KEY: cell_key}
        )
        stale = [r.info.run_id for r in runs if r.info.status == "RUNNING"]
        for run_id in stale:
            with contextlib.suppress(Exception):
                for child in self.find_runs(experiment_id, **{schema.PARENT_RUN_ID: run_id}):
                    if child.info.status == "RUNNING":
                        self.end_run(child.info.run_id, "KILLED")
            self.end_run(run_id, "KILLED")
        return stale

    def close_dead_runs(self, experiment_id: str, leases: Any) -> list[tuple[str, str]]:
        """Close KILLED every RUNNING sweep / cell run whose owner process is dead, with its children.

        ``leases`` is the :class:`benchmark.tracking.leases.LeaseTable` the owners heartbeat in. A run
        without an owner tag (made by an older reprorec) is left to :meth:`mark_stale_cells`. Trial runs
        still RUNNING under a parent that is no longer RUNNING are closed too. Returns ``(run id,
        name)`` of the closed sweep / cell runs; each is printed with the reason.
        """
        import sys

        running = list(
            _retry(
                lambda: self.client.search_runs(
                    [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=5000
                )
            )
        )
        closed: list[tuple[str, str]] = []
        alive: dict[str, bool] = {}
        ended: set[str] = set()
        for run in running:
            tags = run.data.tags
            owner = tags.get(schema.OWNER)
            if tags.get(schema.RUN_TYPE) not in (schema.RUN_TYPE_SWEEP, schema.RUN_TYPE_CELL) or not owner:
                continue
            if owner not in alive:
                alive[owner] = leases.owner_alive(owner)
            if alive[owner]:
                continue
            why = f"its process {owner} died (no live lease)"
            with contextlib.suppress(Exception):
                self.log(run.info.run_id, tags={schema.END_REASON: why})
            self.end_run(run.info.run_id, "KILLED")
            ended.add(run.info.run_id)
            name = str(run.info.run_name)
            closed.append((str(run.info.run_id), name))
            print(f"[reprorec] closed run {run.info.run_id} ({name}) KILLED: {why}", file=sys.stderr)
        open_ids = {r.info.run_id for r in running} - ended
        for run in running:  # trials (and cells) left RUNNING under a parent that is closed
            parent = run.data.tags.get(schema.PARENT_RUN_ID)
            if run.info.run_id in ended or not parent or parent in open_ids:
                continue
            if run.data.tags.get(schema.RUN_TYPE) == schema.RUN_TYPE_TRIAL:
                with contextlib.suppress(Exception):
                    self.end_run(run.info.run_id, "KILLED")
        leases.prune_dead()  # after the runs: their owners' liveness was read from these rows
        return closed

    def start_or_resume_sweep(
        self,
        experiment_id: str,
        sweep_key: str,
        name: str,
        tags: Mapping[str, Any],
        *,
        leases: Any = None,
    ) -> str:
        """The sweep run for ``sweep_key``: an earlier one (rerun of an interrupted sweep) or a new one.

        With ``leases``, the run is claimed (``sweep:<run id>``) for this process: a run an identical
        sweep is running right now (live owner) is not reopened, a new run is made instead.
        """
        from benchmark.tracking.leases import process_owner

        runs = self.find_runs(
            experiment_id, **{schema.RUN_TYPE: schema.RUN_TYPE_SWEEP, schema.SWEEP_KEY: sweep_key}
        )
        owner = {schema.OWNER: process_owner()}
        for run in runs:
            run_id = str(run.info.run_id)
            if leases is not None and not leases.try_claim(f"sweep:{run_id}", info=name)[0]:
                continue  # an identical sweep is running now: it keeps its run
            self.log(run_id, tags=owner)
            self.set_running(run_id)
            return run_id
        run_id = self.start_run(
            experiment_id,
            name,
            tags={**tags, **owner, schema.RUN_TYPE: schema.RUN_TYPE_SWEEP, schema.SWEEP_KEY: sweep_key},
        )
        if leases is not None:
            leases.try_claim(f"sweep:{run_id}", info=name)
        return run_id


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 6000 else text[:5990] + "...[cut]"
