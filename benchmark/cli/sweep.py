"""``reprorec``: run one benchmark cell, or a Hydra multirun sweep of cells.

Examples::

    reprorec dataset=ml-100k split=random_holdout model=itemknn            # one cell
    reprorec -m dataset=ml-100k model=toppop,itemknn,ials seed=0,1,2       # a sweep
    reprorec -m experiment=default                                         # the README's benchmark
    reprorec -m experiment=smoke hydra/launcher=parallel                   # 2 local workers (joblib)

This is the only module that uses Hydra. The composed DictConfig is converted to the plain
dataclasses of :mod:`benchmark.config` before anything below is called.

Sweep bookkeeping (a Hydra callback in the launching process):

* ``on_multirun_start`` resolves the tracking URI, creates / upgrades the store and the experiment
  once (jobs never race creating it), creates the *sweep* run (or reopens the one of an identical
  earlier sweep, so a rerun of an interrupted sweep completes it) and hands its id to the jobs through
  environment variables and ``<sweep dir>/reprorec_sweep.json``;
* every job writes ``cell_outcome.json`` into its output folder;
* ``on_multirun_end`` collects the outcomes, prints a summary, logs ``sweep/cells.json`` on the sweep
  run, ends it (FAILED if any cell failed), writes ``<sweep dir>/summary.json`` and, when
  ``benchmark.reporting.generate_report`` exists, builds the report. ``main`` then exits 1 if any
  cell failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmark.config import Config, pin_params, register_configs
from benchmark.errors import ConfigError
from benchmark.faults import fault_point
from benchmark.fingerprint import sha256_json
from benchmark.io import atomic_write_text
from benchmark.portable import portable_text
from benchmark.preflight import check_sweep
from benchmark.redaction import redact_text, redact_url
from benchmark.registry import conf_dir, hydra_searchpath_override
from benchmark.services import ENV_SERVICES_DIR, SERVICES, services_folder
from benchmark.threads import ENV_CELL_CPUS, cpus_per_cell
from benchmark.tracking import provenance
from benchmark.tracking import schema as S
from benchmark.tracking.leases import lease_table, process_owner
from benchmark.tracking.mlflow_store import (
    ENV_SWEEP_DIR,
    ENV_SWEEP_RUN_ID,
    ENV_TRACKING_URI,
    Tracker,
    check_tracking_reachable,
    resolve_study_storage,
    resolve_tracking_uri,
)
from benchmark.tuning.cell import CellOutcome, run_cell
from benchmark.tuning.steps import ENV_PROGRESS_LINES

try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra-core < 1.1
    Callback = object  # type: ignore[misc,assignment]

ENV_COMMAND = "REPROREC_COMMAND"
#: ``<date>/<time>-<pid>`` of the launching process: the sweep folder (``hydra.sweep.dir``) of every
#: job of one sweep, and different for two sweeps started in the same second.
ENV_SWEEP_STAMP = "REPROREC_SWEEP_STAMP"
SWEEP_FILE = "reprorec_sweep.json"
OWNER_FILE = ".reprorec_owner"
OUTCOME_FILE = "cell_outcome.json"
SUMMARY_FILE = "summary.json"
#: The sweep's cell count and start time (``time.time()``), for every job's sweep progress line.
ENV_SWEEP_CELLS = "REPROREC_SWEEP_CELLS"
ENV_SWEEP_T0 = "REPROREC_SWEEP_T0"

#: Outcomes of this process: single-run cells, and the summary of a multirun (read by ``main``);
#: ``signal``: the signal that interrupted it.
_STATE: dict[str, Any] = {"outcomes": [], "summary": None, "signal": None, "argv": None}


def hydra_arguments(argv: list[str]) -> list[str]:
    """The command line as Hydra is given it: ``model.params.x=v`` becomes ``++model.params.x=v``.

    A model's class declares its hyperparameters and defaults; its YAML names only those an
    experiment changes. ``model.params.x=v`` must set ``x`` whether the YAML names it or not, which
    is Hydra's add-or-override (``++``). The command logged and reported stays the one typed.
    """
    return [f"++{a}" if a.startswith("model.params.") else a for a in argv]


def sweep_stamp() -> str:
    """The launching process's sweep stamp (:data:`ENV_SWEEP_STAMP`), made on first use."""
    stamp = os.environ.get(ENV_SWEEP_STAMP)
    if not stamp:
        import time

        stamp = time.strftime("%Y-%m-%d/%H-%M-%S") + f"-{os.getpid()}"
        os.environ[ENV_SWEEP_STAMP] = stamp  # launcher workers inherit it
    return stamp


def registered_models(selection: str) -> str:
    """``${reprorec_models:SELECTION}``: the registered models, comma-separated, by family.

    ``baselines`` is every family but ``neural``, ``neural`` the neural models, ``all`` both. An
    experiment sweeping over this list runs a model added as one module + one YAML without edits.
    Named variants (``variant_of``, e.g. ``itemknn_cosine``) are left out: their base model runs.
    """
    from benchmark.registry import COMPARED_FAMILIES, EXTERNAL, FAMILIES, model_specs

    choices = {
        "baselines": [f for f in FAMILIES if f not in COMPARED_FAMILIES],
        "neural": ["neural"],
        "all": [f for f in FAMILIES if f != EXTERNAL],
    }
    if selection not in choices:
        raise ConfigError(f"${{reprorec_models:{selection}}}: choose one of {sorted(choices)}")
    specs = model_specs()
    order = {f: i for i, f in enumerate(FAMILIES)}
    names = sorted(
        (order[s.family], s.name)
        for s in specs.values()
        if s.family in choices[selection] and s.variant_of is None
    )
    return ",".join(name for _, name in names)


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("reprorec_sweep_stamp"):
        OmegaConf.register_new_resolver("reprorec_sweep_stamp", sweep_stamp)
    if not OmegaConf.has_resolver("reprorec_models"):
        OmegaConf.register_new_resolver("reprorec_models", registered_models)


_register_resolvers()  # at import: launcher workers resolve the jobs' folders too


def to_config(cfg: Any) -> Config:
    """DictConfig -> :class:`Config` (plain dataclasses, values resolved)."""
    from omegaconf import OmegaConf

    _check_keys(cfg, Config, "")
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, Config):  # composed without the schema (should not happen)
        raise TypeError(f"expected a Config, got {type(obj).__name__}")
    return pin_params(obj)


def _check_keys(node: Any, schema: type, path: str) -> None:
    """Hydra lets ``+key=value`` add keys the schema does not know: refuse them by name."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in node:
        full = f"{path}{key}"
        if key not in fields:
            raise ConfigError(f"unknown config key {full!r}; known keys here: {sorted(fields)}")
        sub = fields[key].type
        target = getattr(sys.modules[schema.__module__], sub, None) if isinstance(sub, str) else sub
        if dataclasses.is_dataclass(target):
            _check_keys(node[key], target, f"{full}.")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the sweep callback
class SweepCallback(Callback):  # type: ignore[misc,valid-type]
    """Creates the sweep run before jobs fan out and closes it with a summary afterwards."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        # Hydra turns a callback's exception into a warning and launches the jobs anyway: a sweep
        # whose store cannot be set up (unreachable server, bad URL) must stop here instead.
        try:
            self._start(config)
        except Exception as exc:
            why = f"{type(exc).__name__}: {redact_text(str(exc))}"
            print(f"[reprorec] sweep not started: {why}", file=sys.stderr)
            raise SystemExit(2) from None

    def _start(self, config: Any) -> None:
        from omegaconf import OmegaConf

        storage = config.tuner.storage
        if any(str(v or "").split(":", 1)[0] == SERVICES for v in (config.tracking.uri, storage)):
            # jobs resolve ``services`` against the same state folder, wherever they run
            os.environ[ENV_SERVICES_DIR] = str(services_folder(str(config.tracking.uri or storage)))
        node = OmegaConf.to_container(config.hydra.get("launcher") or {}, resolve=True)
        launcher: dict[str, Any] = {str(k): v for k, v in node.items()} if isinstance(node, dict) else {}
        if ENV_CELL_CPUS not in os.environ:  # jobs divide these CPUs among their processes
            os.environ[ENV_CELL_CPUS] = str(cpus_per_cell(launcher))
        if launcher.get("n_jobs") not in (None, 1) or launcher.get("cpus_per_task"):
            # cells side by side (joblib) or in job logs (submitit): labelled lines, not live bars
            os.environ[ENV_PROGRESS_LINES] = "1"
        # every cell's config, then each dataset once, before any store, run or data load
        n_cells = check_sweep(_cell_configs(config))
        print(f"[reprorec] checked {n_cells} cells: configs valid, data available", file=sys.stderr)
        if config.get("dry_run"):
            from benchmark.tuning.estimate import estimate_sweep, format_estimate

            uri = resolve_tracking_uri(config.tracking.uri)
            found = estimate_sweep(_cell_configs(config), uri, str(config.tracking.experiment))
            print(format_estimate(found))
            print(f"[reprorec] dry run: nothing was run (store {redact_url(uri)} only read)", file=sys.stderr)
            raise SystemExit(0)
        # a report names a store that came from the environment as $MLFLOW_TRACKING_URI
        from_env = not config.tracking.uri and bool(os.environ.get(ENV_TRACKING_URI))
        uri = resolve_tracking_uri(config.tracking.uri)
        os.environ[ENV_TRACKING_URI] = uri  # jobs (other processes, other folders) use the same store
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # no secret and no absolute path of this machine in a logged command (paths made relative)
        command = portable_text(redact_text(provenance.command_line(_STATE["argv"])), cwd=Path.cwd())
        check_tracking_reachable(uri)  # fail fast, before MLflow's client retries for minutes
        tracker = Tracker(uri)
        experiment_id = tracker.ensure_experiment(str(config.tracking.experiment))
        # the study store (which also holds the leases) is created before the fan-out
        leases = lease_table(resolve_study_storage(storage, uri))
        leases.try_claim(f"process:{process_owner()}", info="sweep")  # alive while the sweep runs
        _claim_sweep_dir(sweep_dir, leases)
        tracker.close_dead_runs(experiment_id, leases)
        overrides = sorted(
            redact_text(str(o)) for o in OmegaConf.to_container(config.hydra.overrides.task) or []
        )
        sweep_key = sha256_json({"overrides": overrides, "code": provenance.code_version()})
        git = provenance.git_info()
        run_id = tracker.start_or_resume_sweep(
            experiment_id,
            sweep_key,
            leases=leases,
            name=f"sweep · {' '.join(overrides) or 'defaults'}"[:250],
            tags={
                S.SWEEP_ID: sweep_key[:16],
                S.PROTOCOL: str(config.get("protocol", "")),
                S.COMMAND: command,
                S.GIT_COMMIT: git["commit"],
                S.GIT_DIRTY: str(git["dirty"]).lower(),
                S.CODE_VERSION: provenance.code_version(),
                S.VERSIONS: json.dumps(provenance.package_versions(), sort_keys=True),
                S.HARDWARE: json.dumps(provenance.hardware(), sort_keys=True),
            },
        )
        os.environ[ENV_SWEEP_RUN_ID] = run_id
        os.environ[ENV_SWEEP_DIR] = str(sweep_dir)
        os.environ[ENV_COMMAND] = command
        os.environ[ENV_SWEEP_CELLS] = str(n_cells)
        os.environ[ENV_SWEEP_T0] = repr(time.time())
        atomic_write_text(
            sweep_dir / SWEEP_FILE,
            json.dumps(
                {
                    "sweep_run_id": run_id,
                    "tracking_uri": uri,
                    "command": command,
                    "experiment_id": experiment_id,
                    "sweep_key": sweep_key,
                    "study_storage": resolve_study_storage(storage, uri),
                    "tracking_uri_from_env": from_env,
                },
                indent=2,
            ),
        )
        os.chmod(sweep_dir / SWEEP_FILE, 0o600)  # a database tracking URI may carry a password
        print(f"[reprorec] sweep run {run_id} in {redact_url(uri)} (outputs: {sweep_dir})", file=sys.stderr)
        fault_point("sweep.started")

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(os.environ.get(ENV_SWEEP_DIR) or str(config.hydra.sweep.dir)).resolve()
        out = config.report.out_dir or str(Path("reports") / str(config.get("protocol") or "custom"))
        options = {
            key: (list(value) if key in ("metrics", "cutoffs") else value)
            for key in ("reference", "metrics", "cutoffs", "main_metric", "correction", "url")
            if (value := config.report.get(key)) is not None
        }
        summary = finish_sweep(
            sweep_dir, report=bool(config.report.enabled), report_dir=out, report_options=options
        )
        _STATE["summary"] = summary


def _cell_configs(config: Any) -> Iterator[Config]:
    """The composed config of every job of the sweep, as Hydra's basic sweeper will launch them.

    The jobs' overrides are the sweeper's ``params`` plus the command line's, expanded to their
    Cartesian product (:meth:`BasicSweeper.split_arguments`); each is composed like a job is.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf, open_dict

    loader = GlobalHydra.instance().config_loader()
    node = config.hydra.sweeper.get("params")
    params = OmegaConf.to_container(node, resolve=True) if node else {}
    assert isinstance(params, dict)
    arguments = ["=".join((str(k), str(v))) for k, v in params.items()] + list(config.hydra.overrides.task)
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    for batch in BasicSweeper.split_arguments(parsed, None):
        for overrides in batch:
            job = loader.load_sweep_config(config, list(overrides))
            with open_dict(job):
                del job["hydra"]
            try:
                yield to_config(job)
            except Exception as exc:
                raise ConfigError(f"cell {' '.join(overrides)}: {exc}") from None


def _claim_sweep_dir(sweep_dir: Path, leases: Any) -> None:
    """Refuse a sweep folder a live sweep uses (an explicit ``hydra.sweep.dir`` given twice)."""
    marker = sweep_dir / OWNER_FILE
    me = process_owner()
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        owner = marker.read_text(encoding="utf-8").strip()
        if owner and owner != me and leases.owner_alive(owner):
            raise ConfigError(
                f"sweep folder {sweep_dir.name} (hydra.sweep.dir) is in use by the running sweep of "
                f"process {owner}: its jobs would overwrite each other's outcomes; give this sweep "
                "another hydra.sweep.dir, or leave it to the default (one folder per sweep)"
            ) from None
        atomic_write_text(marker, me + "\n")
        return
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(me + "\n")


def _release_sweep(info: dict[str, Any]) -> None:
    """Release this process's sweep leases (its run and its presence)."""
    storage = info.get("study_storage")
    if not storage:
        return
    with contextlib.suppress(Exception):
        leases = lease_table(storage)
        leases.release(f"sweep:{info['sweep_run_id']}")
        leases.release(f"process:{process_owner()}")


def collect_outcomes(sweep_dir: Path) -> list[dict[str, Any]]:
    """Outcomes written by the jobs; a job folder without one is a job that died."""
    outcomes = []
    for job_dir in sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=_job_order):
        f = job_dir / OUTCOME_FILE
        if f.exists():
            outcomes.append(json.loads(f.read_text(encoding="utf-8")))
        else:
            cell = _job_overrides(job_dir)
            outcomes.append(
                {
                    "name": f"job {job_dir.name} ({cell})",
                    "status": "failed",
                    "run_id": None,
                    "cell_key": None,
                    "test_metrics": {},
                    "seconds": 0.0,
                    "error": f"job {job_dir.name} ({cell}) ended without an outcome: its process was "
                    "killed (SIGKILL, out of memory) or crashed before the cell ended",
                }
            )
    return outcomes


def _job_overrides(job_dir: Path) -> str:
    """The overrides of a job (what names its cell), from Hydra's ``.hydra/overrides.yaml``."""
    import yaml

    try:
        overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text(encoding="utf-8"))
        return redact_text(" ".join(str(o) for o in overrides or [])) or "defaults"
    except (OSError, yaml.YAMLError):
        return "overrides unknown"


def _job_order(p: Path) -> tuple[int, str]:
    return (int(p.name), p.name) if p.name.isdigit() else (1 << 30, p.name)


def finish_sweep(
    sweep_dir: Path,
    *,
    report: bool = True,
    report_dir: str | None = None,
    report_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Summarise the sweep, close its run, write ``summary.json``, and build the report if possible."""
    info = json.loads((sweep_dir / SWEEP_FILE).read_text(encoding="utf-8"))
    outcomes = collect_outcomes(sweep_dir)
    counts = {s: sum(o["status"] == s for o in outcomes) for s in ("finished", "skipped", "failed")}
    failed = [o for o in outcomes if o["status"] == "failed"]
    tracker = Tracker(info["tracking_uri"])
    run_id = info["sweep_run_id"]
    tracker.log(run_id, metrics={f"sweep/n_{k}": float(v) for k, v in counts.items()})
    tracker.log_dict(
        run_id,
        [{k: o.get(k) for k in ("name", "status", "run_id", "cell_key")} for o in outcomes],
        S.ART_SWEEP_CELLS,
    )
    fault_point("sweep.finishing")
    tracker.end_run(run_id, "FAILED" if failed else "FINISHED")
    _release_sweep(info)
    summary = {
        "sweep_run_id": run_id,
        "tracking_uri": redact_url(info["tracking_uri"]),
        "counts": counts,
        "failed": [
            {
                "name": o["name"],
                "run_id": o.get("run_id"),
                "error": (o.get("error") or "").strip().splitlines()[-1:],
            }
            for o in failed
        ],
    }
    atomic_write_text(sweep_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    print(
        f"[reprorec] sweep done: {counts['finished']} finished, {counts['skipped']} skipped "
        f"(already done), {counts['failed']} failed; sweep run {run_id}",
        file=sys.stderr,
    )
    for o in failed:
        last = (o.get("error") or "").strip().splitlines()[-1:] or ["?"]
        print(f"[reprorec]   FAILED {o['name']} (run {o.get('run_id')}): {last[0]}", file=sys.stderr)
    main = (report_options or {}).get("main_metric") or "ndcg_at_10"
    if outcomes:
        print(summary_table(outcomes, main), file=sys.stderr)
    if report and counts["finished"] + counts["skipped"] > 0:
        options = {**(report_options or {}), "from_env": bool(info.get("tracking_uri_from_env"))}
        summary["report"] = _generate_report(info["tracking_uri"], run_id, report_dir, options)
    return summary


def summary_table(outcomes: list[dict[str, Any]], main: str) -> str:
    """The sweep's cells, best first on the main test metric: a glance before the report."""
    key = f"{S.TEST_PREFIX}{main}"

    def value(o: dict[str, Any]) -> float:
        v = (o.get("test_metrics") or {}).get(key)
        return float(v) if v is not None else float("-inf")

    width = max(len(str(o["name"])) for o in outcomes)
    lines = [f"{'cell':<{width}}  {'status':<8}  {main:>12}  {'seconds':>8}"]
    for o in sorted(outcomes, key=lambda o: (-value(o), str(o["name"]))):
        v = value(o)
        shown = f"{v:.4f}" if v != float("-inf") else "–"
        lines.append(
            f"{o['name']:<{width}}  {o['status']:<8}  {shown:>12}  {float(o.get('seconds') or 0):>8.1f}"
        )
    return "\n".join(lines)


def _generate_report(
    tracking_uri: str, sweep_run_id: str, out_dir: str | None, options: dict[str, Any]
) -> str | None:
    """Build the leaderboard of this sweep's cells with ``benchmark.reporting.generate_report``.

    Guarded: a missing reporting package or a failing report is printed, never raised, so the
    sweep's own outcome (and exit code) stays what the cells decided.
    """
    try:
        from benchmark import reporting

        generate: Any = reporting.generate_report
    except (ImportError, AttributeError):
        print("[reprorec] no report: benchmark.reporting.generate_report is not available", file=sys.stderr)
        return None
    try:
        if options.get("reference"):
            options = {**options, "reference": Path(options["reference"])}
        out = generate(
            tracking_uri, sweep_run_id=sweep_run_id, out_dir=Path(out_dir or "reports/custom"), **options
        )
    except Exception as exc:  # a report failure must not hide the sweep's own outcome
        print(f"[reprorec] report failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    print(f"[reprorec] report: {out}", file=sys.stderr)
    return str(out)


# ---------------------------------------------------------------------------- the job
def _sweep_run_id() -> str | None:
    run_id = os.environ.get(ENV_SWEEP_RUN_ID)
    if run_id:
        return run_id
    try:  # launchers that do not pass the environment (e.g. remote SLURM nodes): the sweep file
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        multirun = hc.mode is not None and hc.mode.name == "MULTIRUN"
        f = Path(hc.runtime.cwd, hc.sweep.dir, SWEEP_FILE) if multirun else None
    except Exception:
        return None
    if f is not None and f.exists():
        info = json.loads(f.read_text(encoding="utf-8"))
        os.environ.setdefault(ENV_TRACKING_URI, info["tracking_uri"])
        return str(info["sweep_run_id"])
    return None


def _terminate(signum: int, frame: Any) -> None:
    if _STATE["signal"] is not None:  # a second signal while cleaning up: let the cleanup finish
        return
    _STATE["signal"] = signum
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def handle_sigterm() -> None:
    """Turn SIGTERM (``kill``, SLURM's time limit, a stopping container) and SIGHUP (a closed
    terminal) into KeyboardInterrupt, remembering the signal.

    The running trial is then marked failed (interrupted), the cell run ends KILLED with its
    traceback, the sweep run KILLED, and ``reprorec`` exits ``128 + signal`` (143 for SIGTERM, 129
    for SIGHUP, 130 for Ctrl-C) instead of leaving runs RUNNING. A rerun completes them.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGHUP, _terminate)


def task(cfg: Any) -> dict[str, Any]:
    """One Hydra job: one cell. Never raises for a failing cell (the outcome says it failed)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    handle_sigterm()  # also in launcher workers (other processes)

    resolved = portable_text(redact_text(OmegaConf.to_yaml(cfg, resolve=True)), cwd=Path.cwd())
    sweep_run_id = _sweep_run_id()
    config = to_config(cfg)
    if sweep_run_id is not None and os.environ.get(ENV_TRACKING_URI):
        # the store the launching process resolved (a relative path would move with the job's cwd)
        config.tracking.uri = os.environ[ENV_TRACKING_URI]
    outcome: CellOutcome = run_cell(
        config,
        sweep_run_id=sweep_run_id,
        resolved_config=resolved,
        command=redact_text(os.environ.get(ENV_COMMAND) or provenance.command_line(_STATE["argv"])),
    )
    result = outcome.to_dict()
    try:
        out_dir = Path(HydraConfig.get().runtime.output_dir)
        atomic_write_text(out_dir / OUTCOME_FILE, json.dumps(result, indent=2, default=str))
    except Exception:  # not under Hydra (called directly)
        pass
    _STATE["outcomes"].append(result)
    if outcome.status == "finished":
        shown = ", ".join(f"{k}={v:.4f}" for k, v in outcome.test_metrics.items() if "_at_10" in k)
        print(f"[reprorec] {outcome.name}: {shown} ({outcome.seconds:.1f} s)", file=sys.stderr)
    with contextlib.suppress(KeyError, ValueError, OSError):  # not in a sweep (a single run)
        sweep_dir, total = Path(os.environ[ENV_SWEEP_DIR]), int(os.environ[ENV_SWEEP_CELLS])
        done = sum(1 for _ in sweep_dir.glob(f"*/{OUTCOME_FILE}"))
        print(sweep_progress(done, total, time.time() - float(os.environ[ENV_SWEEP_T0])), file=sys.stderr)
    return result


def sweep_progress(done: int, total: int, elapsed: float) -> str:
    """``[reprorec] sweep: 3/12 cells done, 2m10s elapsed, ETA 6m30s``.

    The ETA assumes the remaining cells go at the rate of the done ones (wall time per done cell,
    so cells run side by side count as such; cells skipped as already done make it optimistic).
    """
    done = min(done, total)
    eta = "–" if done == 0 else _duration(elapsed / done * (total - done))
    return f"[reprorec] sweep: {done}/{total} cells done, {_duration(elapsed)} elapsed, ETA {eta}"


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s % 60:02d}s" if m else f"{s}s"


def _close_interrupted_sweep(why: str, status: str, exc: BaseException) -> None:
    """Close the sweep run of this process (if any) after an interruption, naming the dead cells.

    Cells of this process were closed KILLED by :func:`benchmark.tuning.cell.run_cell`; cells of
    launcher workers that died are closed here (their owner is dead) or by the next run.
    """
    with contextlib.suppress(Exception):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the bookkeeping first
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sweep_dir = os.environ.get(ENV_SWEEP_DIR)
    print(f"[reprorec] sweep stopped: {why}", file=sys.stderr)
    if not sweep_dir or not (Path(sweep_dir) / SWEEP_FILE).is_file():
        return
    info = json.loads((Path(sweep_dir) / SWEEP_FILE).read_text(encoding="utf-8"))
    try:
        outcomes = collect_outcomes(Path(sweep_dir))
        for o in outcomes:
            if o["status"] == "failed":
                print(f"[reprorec]   did not finish: {o['name']}", file=sys.stderr)
        tracker = Tracker(info["tracking_uri"])
        run_id = info["sweep_run_id"]
        tracker.log(run_id, tags={S.END_REASON: why})
        tracker.log_dict(
            run_id,
            [{k: o.get(k) for k in ("name", "status", "run_id", "cell_key")} for o in outcomes],
            S.ART_SWEEP_CELLS,
        )
        if info.get("study_storage"):
            tracker.close_dead_runs(info["experiment_id"], lease_table(info["study_storage"]))
        tracker.end_run(run_id, status)
        print(
            f"[reprorec] sweep run {run_id} ended {status}; rerun the same command to complete it",
            file=sys.stderr,
        )
    except Exception as err:  # the store may be what failed: say so, keep the exit code
        print(f"[reprorec] could not close the sweep run: {type(err).__name__}: {err}", file=sys.stderr)
    finally:
        _release_sweep(info)


def exit_code() -> int:
    """1 if a cell of this process (single run) or of the multirun failed, else 0."""
    summary = _STATE["summary"]
    if summary is not None:
        return 1 if summary["counts"]["failed"] else 0
    return 1 if any(o["status"] == "failed" for o in _STATE["outcomes"]) else 0


def main() -> None:
    """Entry point of ``reprorec`` (Hydra parses ``sys.argv``)."""
    import hydra

    handle_sigterm()
    register_configs()
    _STATE["argv"] = list(sys.argv)
    sys.argv = hydra_arguments(sys.argv)
    if not any(a.startswith(("hydra.searchpath=", "+hydra.searchpath=")) for a in sys.argv[1:]):
        sys.argv += hydra_searchpath_override()  # the user's config folders (REPROREC_CONF_PATH)
    os.environ.pop(ENV_SWEEP_STAMP, None)  # this process is the launcher: a stamp of its own
    sweep_stamp()
    try:
        hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(task)()
    except KeyboardInterrupt as exc:
        signum = _STATE["signal"] or signal.SIGINT
        _close_interrupted_sweep(f"interrupted by {signal.Signals(signum).name}", "KILLED", exc)
        sys.exit(128 + int(signum))
    except SystemExit as exc:
        # Hydra exits 1 after printing an error that escaped the launcher: with the joblib launcher
        # a worker killed by the OOM killer (TerminatedWorkerError) ends the sweep this way
        if os.environ.get(ENV_SWEEP_RUN_ID) and _STATE["summary"] is None:
            _close_interrupted_sweep(
                "a job's process died (e.g. TerminatedWorkerError: the OOM killer ended a launcher "
                "worker; see the error above)",
                "FAILED",
                exc,
            )
        raise
    code = exit_code()
    if code:
        failed = [o for o in _STATE["outcomes"] if o["status"] == "failed"]
        if _STATE["summary"] is None and failed:
            for o in failed:
                last = (o.get("error") or "").strip().splitlines()[-1:] or ["?"]
                print(f"[reprorec] FAILED {o['name']} (run {o.get('run_id')}): {last[0]}", file=sys.stderr)
        sys.exit(code)


if __name__ == "__main__":
    # Run the importable module's main, not this __main__ copy: the Hydra callback and the task
    # are resolved as benchmark.cli.sweep, and their state must be the one main() reads.
    from benchmark.cli.sweep import main as _main

    _main()
