"""One benchmark cell: (dataset, split, model, seed) -> tune -> refit -> test, logged to MLflow.

The protocol (Dacrema et al., TOIS 2021):

1. load and preprocess the dataset, split it (cached, fingerprinted);
2. tune the model on ``train`` against ``validation`` (:func:`benchmark.tuning.tuner.tune`);
3. refit the best configuration on ``train + validation`` (iterative models: for the best epoch
   count found while tuning);
4. evaluate once on ``test``, excluding train + validation items. The test data is not touched
   before this step.

``tuner.name=none`` skips 2 and refits ``model.params`` as given (published-hyperparameter checks).
``tuner.name=fixed`` searches nothing either: step 2 is one trial of ``model.params``, so an
iterative model's epoch count is still early-stopped on validation (Dacrema et al. ran the papers'
neural models with the authors' hyperparameters, not re-tuned).

A cell is identified by its *cell key*: data and split fingerprints, model and its defaults, search
space, tuning budget, evaluation settings, seed and code version. A cell whose key already has a
FINISHED run in the tracking store is skipped. Any exception marks the cell run FAILED with the
traceback as ``error/traceback.txt`` and is reported in the returned :class:`CellOutcome` rather
than raised, so a sweep goes on with the next cell.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark.config import Config, EvaluationConfig
from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError
from benchmark.faults import fault_point
from benchmark.fingerprint import sha256_json
from benchmark.models import IterativeRecommender, Recommender
from benchmark.registry import ModelSpec
from benchmark.reporting.portable import portable_text
from benchmark.seeds import derive_seed
from benchmark.services import redact_text
from benchmark.splits.split import Split
from benchmark.tracking import provenance
from benchmark.tracking import schema as S
from benchmark.tracking.leases import LeaseTable, lease_table, process_owner
from benchmark.tracking.mlflow_store import Tracker, check_tracking_reachable, resolve_study_storage
from benchmark.tuning.space import SearchSpace, parse_space
from benchmark.tuning.tuner import TrialRecord, TuningResult, tune

#: Hyperparameter names through which models take their random seed.
SEED_PARAMS = ("random_state",)


@dataclass(frozen=True)
class CellOutcome:
    """What happened to a cell (returned, never raised, so that sweeps go on)."""

    name: str
    status: str  # finished | skipped | failed
    run_id: str | None = None
    cell_key: str | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PreparedCell:
    """Data, split, model and key of a cell: everything decided before any fitting."""

    config: Config
    split: Split
    spec: ModelSpec
    space: SearchSpace
    fixed_params: dict[str, Any]
    dataset_fingerprint: str
    dataset_source: str
    cell_key: str
    datasheet: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return cell_name(self.config)


def cell_name(cfg: Config) -> str:
    """The run name a person reads: ``itemknn · ml-100k · seed 0``."""
    return f"{cfg.model.name} · {cfg.dataset.name} · seed {cfg.seed}"


def model_spec(cfg: Config) -> ModelSpec:
    """The model as composed by Hydra (so ``model.params.x=...`` overrides apply)."""
    m = cfg.model
    return ModelSpec(
        name=m.name,
        cls=m.cls,
        family=m.family,
        params=dict(m.params),
        search_space={k: dict(v) for k, v in m.search_space.items()},
        path=f"conf/model/{m.name}.yaml",
    )


def _split_config(cfg: Config) -> Any:
    from benchmark.splits.make import SplitConfig

    raw = {k: v for k, v in asdict(cfg.split).items() if k != "description"}
    return SplitConfig.from_mapping(raw)


def load_split(cfg: Config) -> tuple[Split, str, str, dict[str, Any] | None]:
    """Load + preprocess the dataset and split it: (split, dataset sha256, source, datasheet)."""
    from benchmark.splits.make import PUBLISHED, make_split

    split_cfg = _split_config(cfg)
    if split_cfg.splitter == PUBLISHED:  # the published files define the data
        split = make_split(None, split_cfg, dataset=cfg.dataset.name, seed=cfg.seed)
        fp = str(split.params.get("data_fingerprint", split.fingerprint))
        return split, fp, f"published:{split_cfg.published}", _published_datasheet(cfg, split)

    from benchmark.data.loading import load_dataset
    from benchmark.data.preprocess import PreprocessConfig

    pre = PreprocessConfig(**cfg.dataset.preprocessing) if cfg.dataset.preprocessing else None
    loaded = load_dataset(cfg.dataset.name, preprocessing=pre, options=dict(cfg.dataset.options))
    split = make_split(loaded.data, split_cfg, dataset=cfg.dataset.name, seed=cfg.seed)
    sheet = None
    try:
        from benchmark.data.datasheet import datasheet

        sheet = datasheet(loaded)
    except ImportError:
        pass
    source = loaded.source
    described = json.dumps(source.to_dict(), default=str) if hasattr(source, "to_dict") else str(source)
    return split, str(loaded.fingerprint), described, sheet


def _published_datasheet(cfg: Config, split: Split) -> dict[str, Any] | None:
    """Datasheet of the data a published split defines (all of its parts together)."""
    from benchmark.data.datasets import get_dataset_info
    from benchmark.data.datasheet import datasheet
    from benchmark.data.loading import LoadedDataset, Source
    from benchmark.errors import UnknownNameError

    try:
        info = get_dataset_info(cfg.dataset.name)
    except UnknownNameError:
        return None
    data = split.train_full.union(split.test, name=f"{cfg.dataset.name} ({cfg.split.name})")
    source = Source(
        variant=f"published:{cfg.split.published}",
        notes="the published split files define the data: train + validation + test",
    )
    return datasheet(LoadedDataset(cfg.dataset.name, data, [], info, source))


def prepare_cell(cfg: Config) -> PreparedCell:
    """Load data, split, and compute the cell key (no fitting)."""
    from benchmark.preflight import check_cell_config

    check_cell_config(cfg)  # hyperparameter types and ranges before any data is read
    spec = model_spec(cfg)
    # tuner=fixed: an empty space, i.e. one trial of model.params (Hydra merges a `{}` override into
    # the YAML's mapping, so the space cannot be emptied from the command line)
    raw_space = {} if cfg.tuner.name == "fixed" else spec.search_space
    space = parse_space(raw_space, source=spec.path + ": search_space")
    names = spec.load_class()._param_names()
    fixed = {
        p: derive_seed(cfg.dataset.name, cfg.split.name, spec.name, cfg.seed, "model") % (2**31)
        for p in SEED_PARAMS
        if p in names and p not in space.names
    }
    split, data_fp, source, sheet = load_split(cfg)
    if cfg.tuner.name != "none" and split.validation is None:
        raise ConfigError(
            f"split {cfg.split.name!r} has no validation part: tuning needs one (set validation_splitter "
            "in the split config, or run with tuner=none)"
        )
    key = sha256_json(
        {
            "dataset": {"name": cfg.dataset.name, "fingerprint": data_fp},
            "split": {"name": cfg.split.name, "fingerprints": dict(split.fingerprints)},
            "model": {"name": spec.name, "cls": spec.cls, "params": spec.params},
            "search_space": space.to_dict(),
            "tuner": _tuner_identity(cfg),
            "evaluation": {k: v for k, v in asdict(cfg.evaluation).items() if k != "batch_size"},
            "seed": cfg.seed,
            "code": provenance.code_version(),
        }
    )
    return PreparedCell(cfg, split, spec, space, fixed, data_fp, source, key, sheet)


def _tuner_identity(cfg: Config) -> dict[str, Any]:
    # Where the study is stored and how long it may run do not change what the cell computes.
    t = asdict(cfg.tuner)
    t.pop("storage")
    t.pop("timeout_s")
    t.pop("workers")
    return t


def make_evaluator(
    test: InteractionMatrix,
    exclude: list[InteractionMatrix],
    ev: EvaluationConfig,
    *,
    candidates: Any,
    seed: int,
    name: str,
    metrics: list[str] | None = None,
) -> Any:
    """The shared :class:`benchmark.evaluation.Evaluator` for one phase of a cell."""
    from benchmark.evaluation import Evaluator

    if ev.protocol not in ("full", "sampled"):
        raise ConfigError(f"evaluation.protocol={ev.protocol!r} is not one of ['full', 'sampled']")
    kwargs: dict[str, Any] = {
        "cutoffs": list(ev.cutoffs),
        "metrics": list(metrics or ev.metrics),
        "batch_size": ev.batch_size,
        "seed": seed,
        "name": name,
    }
    if ev.tie_rule is not None:
        kwargs["tie_rule"] = ev.tie_rule
    if ev.protocol == "sampled":
        if candidates is not None:
            kwargs["candidates"] = candidates
        elif ev.n_negatives is not None:
            kwargs["n_negatives"] = ev.n_negatives
        else:
            raise ConfigError(
                "evaluation.protocol=sampled needs split test candidates or evaluation.n_negatives"
            )
    return Evaluator(test, exclude, **kwargs)


def evaluation_seed(dataset: str, split: str, seed: int, phase: str) -> int:
    """Seed of the evaluator (random tie rule, sampled negatives) for ``phase`` (``val`` or ``test``).

    It does not depend on the model: every model of a (dataset, split, seed) is ranked with the same
    tie keys and the same sampled negatives.
    """
    return derive_seed(dataset, split, seed, "evaluation", phase)


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS; peak of this process (shared by the cells it ran).
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


class _Progress:
    """A live line per cell: trial i/N, best validation value, elapsed, ETA (tqdm)."""

    def __init__(self, name: str, metric: str, enabled: bool) -> None:
        self.name, self.metric, self.enabled = name, metric, enabled
        self.bar: Any = None

    def __call__(self, done: int, total: int, best: float | None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                initial=done,
                desc=self.name,
                unit="trial",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.5,
            )
        self.bar.n = done
        if best is not None:
            self.bar.set_postfix_str(f"best val {self.metric}={best:.4f}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_cell(
    cfg: Config,
    *,
    sweep_run_id: str | None = None,
    resolved_config: str | None = None,
    command: str | None = None,
    tracker: Tracker | None = None,
) -> CellOutcome:
    """Run (or skip) one cell and log it; never raises except on KeyboardInterrupt.

    Args:
        cfg: the composed configuration (plain dataclasses).
        sweep_run_id: the parent sweep run (None: a cell outside any sweep).
        resolved_config: the resolved Hydra config as YAML, logged as ``config/resolved.yaml``.
        command: the command line that regenerates the sweep.
        tracker: the tracking store (default: ``cfg.tracking.uri``).
    """
    t0 = time.perf_counter()
    name = cell_name(cfg)
    try:
        tracker = tracker or Tracker(cfg.tracking.uri)
        check_tracking_reachable(tracker.uri)
        experiment_id = tracker.ensure_experiment(cfg.tracking.experiment)
    except Exception as exc:  # no store to log to: the outcome is all there is
        print(f"[reprorec] FAILED {name}: tracking store unusable: {redact_text(str(exc))}", file=sys.stderr)
        return CellOutcome(
            name, "failed", error=redact_text(traceback.format_exc()), seconds=time.perf_counter() - t0
        )
    run_id: str | None = None
    key: str | None = None
    leases: LeaseTable | None = None
    base_tags = _base_tags(cfg, command)
    try:
        prepared = prepare_cell(cfg)
        key = prepared.cell_key
        if cfg.tracking.skip_finished and (done := _finished_outcome(tracker, experiment_id, name, key, t0)):
            return done
        # The key is claimed before its run exists: a second process with the same key (a requeued
        # SLURM job, another terminal) waits here, then skips the cell the first one finished.
        leases = lease_table(resolve_study_storage(cfg.tuner.storage, tracker.uri))
        tracker.close_dead_runs(experiment_id, leases)  # runs of dead processes: KILLED
        leases.claim(f"cell:{key}", what=name, info=name)
        fault_point("cell.claimed")
        if cfg.tracking.skip_finished and (done := _finished_outcome(tracker, experiment_id, name, key, t0)):
            return done
        tracker.mark_stale_cells(experiment_id, key)  # RUNNING runs of this key: their owner is dead
        run_id = tracker.start_run(
            experiment_id,
            name,
            tags={**base_tags, S.CELL_KEY: key, S.OWNER: process_owner()},
            parent_run_id=sweep_run_id,
        )
        fault_point("cell.started")
        metrics = _run_prepared(prepared, tracker, experiment_id, run_id, resolved_config)
        fault_point("cell.finishing")
        if not leases.still_held(f"cell:{key}"):  # stalled past the grace period and taken over
            raise RuntimeError(
                f"the claim of cell key {key[:12]} was taken over by another process while this one "
                "ran it (no heartbeat for the grace period): its result is not recorded as FINISHED"
            )
        tracker.end_run(run_id, "FINISHED")
        return CellOutcome(name, "finished", run_id, key, metrics, seconds=time.perf_counter() - t0)
    except KeyboardInterrupt as exc:
        if run_id is not None:
            with contextlib.suppress(Exception):  # a second signal must not leave it RUNNING
                tracker.log(run_id, tags={S.END_REASON: f"interrupted: {exc or 'SIGINT'}"})
                tracker.log_text(run_id, traceback.format_exc(), S.ART_TRACEBACK)
            tracker.end_run(run_id, "KILLED")
        raise
    except Exception as exc:
        tb = redact_text(traceback.format_exc())
        print(f"[reprorec] FAILED {name}: {type(exc).__name__}: {redact_text(str(exc))}", file=sys.stderr)
        try:
            if run_id is None:  # failed before the run existed (data, split, config): still visible
                tags = {**base_tags, **({S.CELL_KEY: key} if key else {})}
                run_id = tracker.start_run(experiment_id, name, tags=tags, parent_run_id=sweep_run_id)
            tracker.log_text(run_id, tb, S.ART_TRACEBACK)
            tracker.end_run(run_id, "FAILED")
        except Exception:  # the store itself is broken: the outcome still carries the error
            tb += "\n(while logging the failure:)\n" + traceback.format_exc()
        return CellOutcome(name, "failed", run_id, key, error=tb, seconds=time.perf_counter() - t0)
    finally:
        if leases is not None and key is not None:
            leases.release(f"cell:{key}")


def _finished_outcome(
    tracker: Tracker, experiment_id: str, name: str, key: str, t0: float
) -> CellOutcome | None:
    """The ``skipped`` outcome of a cell whose key already has a FINISHED run, else None."""
    done = tracker.find_finished_cell(experiment_id, key)
    if done is None:
        return None
    print(
        f"[reprorec] skip {name}: already FINISHED as run {done.info.run_id} (cell key {key[:12]})",
        file=sys.stderr,
    )
    metrics = _test_metrics(done.data.metrics)
    return CellOutcome(name, "skipped", str(done.info.run_id), key, metrics, seconds=time.perf_counter() - t0)


def _test_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k.startswith(S.TEST_PREFIX)}


def _base_tags(cfg: Config, command: str | None) -> dict[str, Any]:
    git = provenance.git_info()
    return {
        S.RUN_TYPE: S.RUN_TYPE_CELL,
        S.DATASET: cfg.dataset.name,
        S.SPLIT: cfg.split.name,
        S.MODEL: cfg.model.name,
        S.MODEL_FAMILY: cfg.model.family,
        S.SEED: cfg.seed,
        S.PROTOCOL: cfg.protocol,
        S.TUNER: cfg.tuner.name,
        S.GIT_COMMIT: git["commit"],
        S.GIT_DIRTY: str(git["dirty"]).lower(),
        S.CODE_VERSION: provenance.code_version(),
        S.CONFIG_HASH: provenance.config_hash(config_dict(cfg)),
        S.VERSIONS: json.dumps(provenance.package_versions(), sort_keys=True),
        S.HARDWARE: json.dumps(provenance.hardware(), sort_keys=True),
        S.COMMAND: portable_text(redact_text(command or provenance.command_line()), cwd=Path.cwd()),
    }


def config_dict(cfg: Config) -> dict[str, Any]:
    """The configuration as plain JSON data, without where things are stored (the config hash input)."""
    d = asdict(cfg)
    d["tracking"] = {k: v for k, v in d["tracking"].items() if k != "uri"}
    d["tuner"] = {k: v for k, v in d["tuner"].items() if k != "storage"}
    d.pop("progress", None)
    return d


def _run_prepared(
    p: PreparedCell, tracker: Tracker, experiment_id: str, run_id: str, resolved_config: str | None
) -> dict[str, float]:
    cfg, split, spec = p.config, p.split, p.spec
    ev = cfg.evaluation
    tracker.log(run_id, tags=_fingerprint_tags(p), params=_cell_params(p))
    tracker.log_datasets(run_id, _dataset_inputs(p))

    # ---------------------------------------------------------------- tuning (train vs validation)
    tuning: TuningResult | None = None
    if cfg.tuner.name in ("optuna", "fixed"):
        from benchmark.tuning.worker import WorkerPool

        with WorkerPool(p, tracker.uri, experiment_id, run_id) as pool:
            tuning = tune_cell(p, tracker, experiment_id, run_id, on_ready=pool.start)
        final_params = {**spec.params, **tuning.best_params}
    elif cfg.tuner.name == "none":
        final_params = {**spec.params, **p.fixed_params}
    else:
        raise ConfigError(f"tuner.name={cfg.tuner.name!r} is not one of ['optuna', 'fixed', 'none']")

    # ---------------------------------------------------------------- refit on train + validation
    model = spec.build(**final_params)
    if isinstance(model, IterativeRecommender) and tuning is not None and tuning.best_epoch:
        model.set_params(epochs=int(tuning.best_epoch))
    train_full = split.train_full
    fault_point("refit.start")
    t_fit = time.perf_counter()
    model = _fit(model, train_full)
    fit_s = time.perf_counter() - t_fit
    fault_point("refit.done")

    # ---------------------------------------------------------------- the one test evaluation
    test_eval = make_evaluator(
        split.test,
        _seen(split),
        ev,
        candidates=split.test_candidates,
        seed=evaluation_seed(cfg.dataset.name, cfg.split.name, cfg.seed, "test"),
        name="test",
    )
    t_eval = time.perf_counter()
    result = test_eval.evaluate(model, recommendations=cfg.tracking.log_recommendations)
    eval_s = time.perf_counter() - t_eval
    fault_point("test.evaluated")

    metrics = dict(result.metrics("test"))
    metrics[S.N_USERS_EVALUATED] = float(result.n_users_evaluated)
    metrics[S.N_USERS_SKIPPED] = float(result.n_users_skipped)
    metrics[S.FIT_SECONDS] = fit_s
    metrics[S.EVAL_SECONDS] = eval_s
    metrics[S.PEAK_MEMORY_MB] = _peak_rss_mb()
    params: dict[str, Any] = {f"{S.PARAM_PREFIX_MODEL}{k}": v for k, v in model.get_params().items()}
    tags: dict[str, Any] = {}
    if tuning is not None:
        metrics.update(
            {
                S.BEST_VAL: tuning.best_value,
                S.TUNING_SECONDS: tuning.seconds,
                S.TUNING_INTERRUPTED_SECONDS: tuning.seconds_interrupted,
                S.TUNING_WALL_SECONDS: tuning.wall_seconds,
                S.N_TRIALS_DONE: float(tuning.n_complete),
                S.N_TRIALS_FAILED: float(tuning.n_failed),
            }
        )
        if tuning.best_epoch is not None:
            tags[S.BEST_EPOCH] = tuning.best_epoch
            params[S.PARAM_BEST_EPOCH] = tuning.best_epoch
    tracker.log(run_id, params=params, metrics=metrics, tags=tags)

    with tempfile.TemporaryDirectory(prefix="reprorec-cell-") as tmp:
        folder = Path(tmp)
        result.write(folder)
        (folder / "config").mkdir()
        (folder / S.ART_CONFIG).write_text(
            redact_text(resolved_config or yaml.safe_dump(asdict(cfg), sort_keys=False)), encoding="utf-8"
        )
        if tuning is not None:
            (folder / "tuning").mkdir()
            tuning.trials.to_csv(folder / S.ART_TRIALS, index=False)
        (folder / S.ART_PROTOCOL).write_text(
            json.dumps(_protocol_doc(p, result, final_params, tuning), indent=2, default=str),
            encoding="utf-8",
        )
        if p.datasheet is not None:
            (folder / "data").mkdir()
            (folder / S.ART_DATASHEET).write_text(
                json.dumps(p.datasheet, indent=2, default=str), encoding="utf-8"
            )
        from mlflow import MlflowClient

        client = MlflowClient(tracker.uri)
        for i, entry in enumerate(sorted(folder.iterdir())):  # one upload per entry: a kill between
            if i == 1:  # two of them leaves a run with part of its artifacts (never FINISHED)
                fault_point("artifacts.logging")
            if entry.is_dir():
                client.log_artifacts(run_id, str(entry), entry.name)
            else:
                client.log_artifact(run_id, str(entry))
    return {k: v for k, v in metrics.items() if k.startswith(S.TEST_PREFIX)}


def tune_cell(
    p: PreparedCell,
    tracker: Tracker,
    experiment_id: str,
    run_id: str,
    *,
    worker_index: int = 0,
    on_ready: Any = None,
) -> TuningResult:
    """Tune a prepared cell on train vs validation; every trial is a child run of ``run_id``.

    Worker 0 is the cell's own process (progress line, resumed trials, ``on_ready`` once the
    study is clean); the helpers of :mod:`benchmark.tuning.worker` call this with their index.
    """
    cfg, split, spec = p.config, p.split, p.spec
    assert split.validation is not None
    val_eval = make_evaluator(
        split.validation,
        [split.train],
        cfg.evaluation,
        candidates=None,
        seed=evaluation_seed(cfg.dataset.name, cfg.split.name, cfg.seed, "val"),
        name="val",
        metrics=cfg.evaluation.validation_metrics,
    )
    storage = resolve_study_storage(cfg.tuner.storage, tracker.uri)
    progress = _Progress(p.name, cfg.tuner.metric, cfg.progress and worker_index == 0)
    on_trial = _trial_logger(tracker, experiment_id, run_id, spec) if cfg.tracking.log_trials else None
    try:
        return tune(
            spec,
            p.space,
            split.train,
            lambda m: val_eval.evaluate(m).summary,
            cfg.tuner,
            seed=derive_seed(cfg.dataset.name, cfg.split.name, spec.name, cfg.seed, "tuner"),
            fixed_params=p.fixed_params,
            study_name=p.cell_key,
            storage=storage,
            on_trial=on_trial,
            progress=progress,
            worker_index=worker_index,
            on_ready=on_ready,
        )
    finally:
        progress.close()


def _seen(split: Split) -> list[InteractionMatrix]:
    """What the test ranking excludes: train + validation (everything the refit saw)."""
    return [split.train] if split.validation is None else [split.train, split.validation]


def _fit(model: Recommender, train: InteractionMatrix) -> Recommender:
    model.validate_params()
    return model.fit(train)


def _fingerprint_tags(p: PreparedCell) -> dict[str, Any]:
    fps = p.split.fingerprints
    tags = {
        S.FP_DATASET: p.dataset_fingerprint,
        S.FP_TRAIN: fps["train"],
        S.FP_VALIDATION: fps["validation"] or "",
        S.FP_TEST: fps["test"],
        S.FP_SPLIT: fps["split"],
        S.FP_SEARCH_SPACE: sha256_json(p.space.to_dict()),
    }
    if fps.get("test_candidates"):
        tags[S.FP_CANDIDATES] = fps["test_candidates"]
    return tags


def _cell_params(p: PreparedCell) -> dict[str, Any]:
    cfg = p.config
    ev, tu = cfg.evaluation, cfg.tuner
    params: dict[str, Any] = {
        S.PARAM_SEED: cfg.seed,
        S.PARAM_TUNER: tu.name,
        S.PARAM_SEARCH_SPACE: p.space.to_dict(),
        S.PARAM_CUTOFFS: list(ev.cutoffs),
        S.PARAM_METRICS: list(ev.metrics),
        S.PARAM_PROTOCOL: ev.protocol,
        S.PARAM_TIE_RULE: ev.tie_rule or "default",
        S.PARAM_EXCLUDE: "train+validation",
        S.PARAM_SPLIT_NAME: cfg.split.name,
        S.PARAM_SPLIT_PARAMS: {k: v for k, v in dataclasses.asdict(cfg.split).items() if k != "description"},
        S.PARAM_DATASET_PREPROCESSING: dict(cfg.dataset.preprocessing),
    }
    if tu.name != "none":
        params.update(
            {
                S.PARAM_N_TRIALS: tu.n_trials if len(p.space) else 1,
                S.PARAM_N_RANDOM: tu.n_startup_trials,
                S.PARAM_SAMPLER: tu.sampler,
                S.PARAM_TUNE_METRIC: tu.metric,
                S.PARAM_EARLY_STOPPING: {"every": tu.validate_every, "patience": tu.patience},
            }
        )
    return params


def _dataset_inputs(p: PreparedCell) -> list[tuple[str, str, str, str, Mapping[str, Any]]]:
    cfg, split = p.config, p.split
    out: list[tuple[str, str, str, str, Mapping[str, Any]]] = [
        (
            cfg.dataset.name,
            p.dataset_fingerprint,
            p.dataset_source,
            "dataset",
            {"preprocessing": dict(cfg.dataset.preprocessing)},
        )
    ]
    for part in ("train", "validation", "test"):
        im = getattr(split, part)
        if im is None:
            continue
        fp = split.fingerprints[part]
        assert fp is not None
        out.append(
            (
                f"{cfg.dataset.name}/{cfg.split.name}/{part}",
                fp,
                p.dataset_source,
                part,
                {"n_users": im.n_users, "n_items": im.n_items, "n_interactions": im.nnz},
            )
        )
    return out


def _protocol_doc(
    p: PreparedCell, result: Any, final_params: Mapping[str, Any], tuning: TuningResult | None
) -> dict[str, Any]:
    cfg = p.config
    return {
        "cell": p.name,
        "cell_key": p.cell_key,
        "protocol": cfg.protocol,
        "dataset": {
            "name": cfg.dataset.name,
            "fingerprint": p.dataset_fingerprint,
            "preprocessing": dict(cfg.dataset.preprocessing),
            "options": dict(cfg.dataset.options),
        },
        "split": {
            **{k: v for k, v in asdict(cfg.split).items() if k != "description"},
            "fingerprints": dict(p.split.fingerprints),
        },
        "model": {
            "name": p.spec.name,
            "cls": p.spec.cls,
            "family": p.spec.family,
            "final_params": dict(final_params),
            "search_space": p.space.to_dict(),
        },
        "tuning": None
        if tuning is None
        else {
            **_tuner_identity(cfg),
            "best_trial": tuning.best_trial,
            "best_value": tuning.best_value,
            "best_epoch": tuning.best_epoch,
            "n_complete": tuning.n_complete,
            "n_failed": tuning.n_failed,
        },
        "evaluation": {
            **asdict(cfg.evaluation),
            "exclude": "train+validation",
            "settings": dict(getattr(result, "settings", {}) or {}),
        },
        "seed": cfg.seed,
        "code_version": provenance.code_version(),
    }


def _trial_logger(tracker: Tracker, experiment_id: str, cell_run_id: str, spec: ModelSpec) -> Any:
    def log_trial(rec: TrialRecord) -> None:
        tags = {
            S.RUN_TYPE: S.RUN_TYPE_TRIAL,
            S.TRIAL_NUMBER: rec.number,
            S.TRIAL_STATE: rec.state,
            S.MODEL: spec.name,
        }
        if rec.best_epoch is not None:
            tags[S.BEST_EPOCH] = rec.best_epoch
        if rec.worker is not None:
            tags[S.WORKER] = rec.worker
        run_id = tracker.start_run(experiment_id, f"trial {rec.number}", tags=tags, parent_run_id=cell_run_id)
        metrics = {f"{S.VAL_PREFIX}{k}": v for k, v in rec.val_metrics.items()}
        metrics["time/fit_s"] = rec.fit_seconds
        steps = [(epoch, {f"{S.VAL_PREFIX}{k}": v for k, v in s.items()}) for epoch, s in rec.history]
        step = rec.best_epoch or 0
        tracker.log(
            run_id,
            params={f"{S.PARAM_PREFIX_MODEL}{k}": v for k, v in rec.params.items()},
            metrics=metrics,
            step=step,
            steps=steps,
        )
        if rec.error:
            tracker.log_text(run_id, rec.error, S.ART_TRACEBACK)
        tracker.end_run(run_id, "FINISHED" if rec.state == "complete" else "FAILED")

    return log_trial
