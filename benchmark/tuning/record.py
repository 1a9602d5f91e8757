"""Recording a cell: every MLflow write of a cell run and of its trial runs, in one place.

What a cell run carries (names in :mod:`benchmark.tracking.schema`): identity tags (dataset, split,
model, seed, protocol, git commit, code version, config hash, package versions, hardware, the
command that regenerates it), fingerprints of data, split parts and search space, the protocol's
parameters, the dataset inputs, the final hyperparameters and test metrics with costs, and the
artifacts (resolved config, per-user metrics and recommendations, trials table, protocol document,
datasheet). Each tuning trial is a child run with its parameters and validation metrics per epoch.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from benchmark.config import Config, pins_in_effect
from benchmark.fingerprint import sha256_json
from benchmark.portable import portable_text
from benchmark.redaction import redact_text
from benchmark.splits.audit import leakage_audit
from benchmark.threads import cell_cpus, thread_share
from benchmark.tracking import provenance
from benchmark.tracking import schema as S
from benchmark.tracking.leases import process_owner
from benchmark.tracking.mlflow_store import Tracker
from benchmark.tuning.prepare import PreparedCell, cell_name, tuner_identity
from benchmark.tuning.tuner import TrialRecord, TuningResult


def config_dict(cfg: Config) -> dict[str, Any]:
    """The configuration as plain JSON data, without where things are stored (the config hash input)."""
    d = asdict(cfg)
    d["tracking"] = {k: v for k, v in d["tracking"].items() if k != "uri"}
    d["tuner"] = {k: v for k, v in d["tuner"].items() if k != "storage"}
    d.pop("progress", None)
    return d


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (shared by the cells it ran)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have ended (workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class CellRecorder:
    """The tracking writer of one cell: its run, its trials, its results.

    Args:
        tracker: the tracking store.
        experiment_id: the MLflow experiment of the sweep.
        cfg: the cell's configuration.
        command: the command line that regenerates the sweep (redacted, portable paths).
        parent_run_id: the sweep run (None: a cell outside any sweep).
    """

    def __init__(
        self,
        tracker: Tracker,
        experiment_id: str,
        cfg: Config,
        *,
        command: str | None = None,
        parent_run_id: str | None = None,
    ) -> None:
        self.tracker, self.experiment_id, self.cfg = tracker, experiment_id, cfg
        self.parent_run_id = parent_run_id
        self.run_id: str | None = None
        self._command = command
        #: the leakage audit's run-time checks: what the tuning trials' evaluator ranked, and how
        #: often the test part was ranked (see :mod:`benchmark.splits.audit`)
        self.tuning_evaluator: dict[str, Any] | None = None
        self.test_evaluations = 0
        self._cpu_start = cpu_seconds()
        self.warmup_seconds = 0.0

    # ------------------------------------------------------------------ the run
    def start(self, cell_key: str | None, *, owned: bool = True) -> str:
        """Create the cell run (``owned``: stamped with this process, which runs it)."""
        tags = self.identity_tags()
        if cell_key is not None:
            tags[S.CELL_KEY] = cell_key
        if owned:
            tags[S.OWNER] = process_owner()
        self.run_id = self.tracker.start_run(
            self.experiment_id, cell_name(self.cfg), tags=tags, parent_run_id=self.parent_run_id
        )
        return self.run_id

    def end(self, status: str) -> None:
        assert self.run_id is not None
        self.tracker.end_run(self.run_id, status)

    def failed(self, traceback_text: str, cell_key: str | None) -> None:
        """Record a failure (creating the run if it failed before the run existed: still visible)."""
        if self.run_id is None:
            self.start(cell_key, owned=False)
        assert self.run_id is not None
        self.tracker.log_text(self.run_id, traceback_text, S.ART_TRACEBACK)
        self.end("FAILED")

    def interrupted(self, reason: str, traceback_text: str) -> None:
        """Record a signal (SIGTERM, Ctrl-C): the run ends KILLED, its traceback kept."""
        assert self.run_id is not None
        self.tracker.log(self.run_id, tags={S.END_REASON: f"interrupted: {reason}"})
        self.tracker.log_text(self.run_id, traceback_text, S.ART_TRACEBACK)

    def identity_tags(self) -> dict[str, Any]:
        cfg = self.cfg
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
            S.COMMAND: portable_text(redact_text(self._command or provenance.command_line()), cwd=Path.cwd()),
        }

    # ------------------------------------------------------------------ before tuning
    def setup(self, p: PreparedCell) -> None:
        """Fingerprints, protocol parameters and dataset inputs (known before any fitting)."""
        assert self.run_id is not None
        self.tracker.log(self.run_id, tags=_fingerprint_tags(p), params=_cell_params(p))
        self.tracker.log_datasets(self.run_id, _dataset_inputs(p))

    # ------------------------------------------------------------------ tuning
    def trial_logger(self, model_name: str) -> Callable[[TrialRecord], None]:
        """The ``on_trial`` callback of :func:`benchmark.tuning.tuner.tune`: one child run per trial."""
        tracker, experiment_id, cell_run_id = self.tracker, self.experiment_id, self.run_id
        assert cell_run_id is not None

        def log_trial(rec: TrialRecord) -> None:
            tags: dict[str, Any] = {
                S.RUN_TYPE: S.RUN_TYPE_TRIAL,
                S.TRIAL_NUMBER: rec.number,
                S.TRIAL_STATE: rec.state,
                S.MODEL: model_name,
            }
            if rec.best_epoch is not None:
                tags[S.BEST_EPOCH] = rec.best_epoch
            if rec.worker is not None:
                tags[S.WORKER] = rec.worker
            if rec.packed:
                tags[S.PACKED] = "true"
            # The trial ran before it is logged: its run spans the trial's fit + validation time
            # (ending now), not the few milliseconds of logging.
            end_ms = int(time.time() * 1000)
            run_id = tracker.start_run(
                experiment_id,
                f"trial {rec.number}",
                tags=tags,
                parent_run_id=cell_run_id,
                start_time_ms=end_ms - round(rec.fit_seconds * 1000),
            )
            metrics = {f"{S.VAL_PREFIX}{k}": v for k, v in rec.val_metrics.items()}
            metrics["time/fit_s"] = rec.fit_seconds
            steps = [(epoch, {f"{S.VAL_PREFIX}{k}": v for k, v in s.items()}) for epoch, s in rec.history]
            tracker.log(
                run_id,
                params={f"{S.PARAM_PREFIX_MODEL}{k}": v for k, v in rec.params.items()},
                metrics=metrics,
                step=rec.best_epoch or 0,
                steps=steps,
            )
            if rec.error:
                tracker.log_text(run_id, rec.error, S.ART_TRACEBACK)
            tracker.end_run(run_id, "FAILED" if rec.state == "failed" else "FINISHED", end_time_ms=end_ms)

        return log_trial

    # ------------------------------------------------------------------ after the test evaluation
    def result(
        self,
        p: PreparedCell,
        *,
        model_params: Mapping[str, Any],
        final_params: Mapping[str, Any],
        tuning: TuningResult | None,
        test: Any,
        fit_seconds: float,
        eval_seconds: float,
        resolved_config: str | None,
    ) -> dict[str, float]:
        """Log the final hyperparameters, test metrics, costs and artifacts; return the test metrics."""
        assert self.run_id is not None
        metrics = dict(test.metrics("test"))
        metrics[S.N_USERS_EVALUATED] = float(test.n_users_evaluated)
        metrics[S.N_USERS_SKIPPED] = float(test.n_users_skipped)
        metrics[S.FIT_SECONDS] = fit_seconds
        metrics[S.EVAL_SECONDS] = eval_seconds
        metrics[S.PEAK_MEMORY_MB] = peak_rss_mb()
        metrics[S.CPU_SECONDS] = cpu_seconds() - self._cpu_start
        metrics[S.WARMUP_SECONDS] = self.warmup_seconds
        params: dict[str, Any] = {f"{S.PARAM_PREFIX_MODEL}{k}": v for k, v in model_params.items()}
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
                    S.N_TRIALS_PRUNED: float(tuning.n_pruned),
                }
            )
            if tuning.best_epoch is not None:
                tags[S.BEST_EPOCH] = tuning.best_epoch
                params[S.PARAM_BEST_EPOCH] = tuning.best_epoch
        self.tracker.log(self.run_id, params=params, metrics=metrics, tags=tags)
        with tempfile.TemporaryDirectory(prefix="reprorec-cell-") as tmp:
            folder = Path(tmp)
            self._write_artifacts(folder, p, test, final_params, tuning, resolved_config)
            self.tracker.log_folder(self.run_id, folder)
        return {k: v for k, v in metrics.items() if k.startswith(S.TEST_PREFIX)}

    def _write_artifacts(
        self,
        folder: Path,
        p: PreparedCell,
        test: Any,
        final_params: Mapping[str, Any],
        tuning: TuningResult | None,
        resolved_config: str | None,
    ) -> None:
        test.write(folder)
        (folder / "config").mkdir()
        config_text = resolved_config or yaml.safe_dump(asdict(self.cfg), sort_keys=False)
        (folder / S.ART_CONFIG).write_text(redact_text(config_text), encoding="utf-8")
        if tuning is not None:
            (folder / "tuning").mkdir()
            tuning.trials.to_csv(folder / S.ART_TRIALS, index=False)
        doc = protocol_document(p, test, final_params, tuning)
        doc["leakage"] = {
            **leakage_audit(p.split),
            "tuning": self.tuning_evaluator,
            "test_evaluations": self.test_evaluations,
        }
        (folder / S.ART_PROTOCOL).write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
        if p.datasheet is not None:
            (folder / "data").mkdir()
            (folder / S.ART_DATASHEET).write_text(
                json.dumps(p.datasheet, indent=2, default=str), encoding="utf-8"
            )


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
        S.PARAM_TIE_RULE: ev.tie_rule or S.DEFAULT_TIE_RULE,
        S.PARAM_EXCLUDE: "train+validation",
        S.PARAM_SPLIT_NAME: cfg.split.name,
        S.PARAM_SPLIT_PARAMS: {k: v for k, v in asdict(cfg.split).items() if k != "description"},
        S.PARAM_DATASET_PREPROCESSING: dict(cfg.dataset.preprocessing),
        S.PARAM_THREADS: thread_share(cfg.threads, cfg.tuner.workers),
        S.PARAM_CPUS: cell_cpus(),
    }
    pinned = pins_in_effect(cfg)
    if pinned:
        params[S.PARAM_PINNED] = pinned
    if tu.name != "none":
        params.update(
            {
                S.PARAM_N_TRIALS: tu.n_trials if len(p.space) else 1,
                S.PARAM_N_RANDOM: tu.n_startup_trials,
                S.PARAM_SAMPLER: tu.sampler,
                S.PARAM_TUNE_METRIC: tu.metric,
                S.PARAM_EARLY_STOPPING: {"every": tu.validate_every, "patience": tu.patience},
                S.PARAM_PRUNER: tu.pruner,
                S.PARAM_PACK_SIZE: tu.pack_size,
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


def protocol_document(
    p: PreparedCell, result: Any, final_params: Mapping[str, Any], tuning: TuningResult | None
) -> dict[str, Any]:
    """``protocol.json``: everything that defines the cell's numbers, in one document."""
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
            **tuner_identity(cfg),
            "best_trial": tuning.best_trial,
            "best_value": tuning.best_value,
            "best_epoch": tuning.best_epoch,
            "n_complete": tuning.n_complete,
            "n_failed": tuning.n_failed,
            "n_pruned": tuning.n_pruned,
        },
        "evaluation": {
            **asdict(cfg.evaluation),
            "exclude": "train+validation",
            "settings": dict(getattr(result, "settings", {}) or {}),
        },
        "seed": cfg.seed,
        "code_version": provenance.code_version(),
    }
