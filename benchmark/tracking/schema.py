"""Names of everything reprorec logs to MLflow: the contract between sweeps and reports.

The sweep (``benchmark.tuning`` / ``benchmark.tracking``) writes these; ``reprorec-report`` and the
dashboard read them. Change a name here and both sides follow.

Run hierarchy (one MLflow experiment per sweep configuration, default name ``reprorec``):

* sweep run   (tag ``reprorec.run_type=sweep``) — parent of the cells of one multirun
* cell run    (tag ``reprorec.run_type=cell``, parent = sweep) — one (dataset, split, model, seed);
  carries the final refit + test metrics ``test/<metric>_at_<k>``
* trial run   (tag ``reprorec.run_type=trial``, parent = cell) — one tuning trial; metrics
  ``val/<metric>_at_<k>`` (with ``step`` = epoch for iterative models)
"""

from __future__ import annotations

# ---------------------------------------------------------------- tags
RUN_TYPE = "reprorec.run_type"  # sweep | cell | trial
RUN_TYPE_SWEEP, RUN_TYPE_CELL, RUN_TYPE_TRIAL = "sweep", "cell", "trial"
PARENT_RUN_ID = "mlflow.parentRunId"  # MLflow's own nesting tag
SWEEP_ID = "reprorec.sweep_id"
CELL_KEY = "reprorec.cell_key"  # sha256 identifying the cell (skip a cell already FINISHED)
# host:pid:nonce of the process that runs a sweep or cell run (benchmark.tracking.leases): a RUNNING
# run whose owner is dead is closed KILLED by the next process that uses the store
OWNER = "reprorec.owner"
END_REASON = "reprorec.end_reason"  # why a run was closed by another process, or interrupted
DATASET = "reprorec.dataset"
SPLIT = "reprorec.split"  # split config name (protocol)
MODEL = "reprorec.model"
MODEL_FAMILY = "reprorec.model_family"
SEED = "reprorec.seed"
PROTOCOL = "reprorec.protocol"  # experiment / protocol name
FP_DATASET = "reprorec.fingerprint.dataset"
FP_TRAIN = "reprorec.fingerprint.train"
FP_VALIDATION = "reprorec.fingerprint.validation"
FP_TEST = "reprorec.fingerprint.test"
FP_CANDIDATES = "reprorec.fingerprint.test_candidates"
FP_SPLIT = "reprorec.fingerprint.split"
GIT_COMMIT = "reprorec.git.commit"
GIT_DIRTY = "reprorec.git.dirty"
CONFIG_HASH = "reprorec.config_hash"
HARDWARE = "reprorec.hardware"
VERSIONS = "reprorec.versions"  # JSON {package: version}
COMMAND = "reprorec.command"  # the command line that regenerates the sweep
TRIAL_NUMBER = "reprorec.trial"
TRIAL_STATE = "reprorec.trial_state"  # complete | failed | pruned
PACKED = "reprorec.packed"  # "true" on a trial trained inside a batched trial pack (tuner.pack_size > 1)
WORKER = "reprorec.worker"  # which worker of the cell ran the trial (tuner.workers > 1; 0 = the cell)
BEST_EPOCH = "reprorec.best_epoch"
SWEEP_KEY = "reprorec.sweep_key"  # sha256 of the sweep's overrides + code version (a rerun reuses the run)
# package version + hash of the code, configs and pinned environment: part of the cell key
CODE_VERSION = "reprorec.code_version"
TUNER = "reprorec.tuner"  # optuna | fixed | none
FP_SEARCH_SPACE = "reprorec.fingerprint.search_space"
# a run rebuilt from a store archive (benchmark.reporting.archive): its id in the store it was first
# logged to (kept through further exports), and "true" once all of it was imported
ORIGIN_RUN_ID = "reprorec.origin_run_id"
IMPORT_COMPLETE = "reprorec.import.complete"

# ---------------------------------------------------------------- experiment tags
# MLflow 3 guesses an experiment's kind and may open GenAI tabs; this tag pins the classic runs view.
EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_VALUE = "custom_model_development"

# ---------------------------------------------------------------- params (cell)
PARAM_PREFIX_MODEL = "model."  # model.<hyperparameter> = final (best) value
PARAM_SEARCH_SPACE = "tuning.search_space"  # JSON
PARAM_N_TRIALS = "tuning.n_trials"
PARAM_N_RANDOM = "tuning.n_startup_trials"
PARAM_SAMPLER = "tuning.sampler"
PARAM_TUNE_METRIC = "tuning.metric"  # e.g. ndcg_at_10
PARAM_CUTOFFS = "evaluation.cutoffs"  # JSON list
PARAM_METRICS = "evaluation.metrics"  # JSON list of metric names
PARAM_PROTOCOL = "evaluation.protocol"  # full | sampled
PARAM_TIE_RULE = "evaluation.tie_rule"
#: The evaluator's default tie rule (benchmark.evaluation.evaluator.DEFAULT_TIE_RULE, checked by a
#: test): what runs logged before the rule was resolved recorded as ``default``.
DEFAULT_TIE_RULE = "random"
PARAM_EXCLUDE = "evaluation.exclude"  # e.g. train+validation
PARAM_SPLIT_PARAMS = "split.params"  # JSON
PARAM_SPLIT_NAME = "split.name"
PARAM_DATASET_PREPROCESSING = "dataset.preprocessing"  # JSON
PARAM_SEED = "seed"
PARAM_TUNER = "tuning.tuner"  # optuna | none
PARAM_EARLY_STOPPING = "tuning.early_stopping"  # JSON {every, patience}
PARAM_THREADS = "resources.threads"  # BLAS/OpenMP/torch threads per process (benchmark.threads)
PARAM_CPUS = "resources.cpus"  # CPUs of the cell (its processes share them)
PARAM_PRUNER = "tuning.pruner"  # none | median | successive_halving | hyperband
PARAM_PACK_SIZE = "tuning.pack_size"  # trials asked (and trained, for packable models) at once
PARAM_PINNED = "protocol.pinned_params"  # JSON: the hyperparameters the protocol fixed for this model
PARAM_BEST_EPOCH = "tuning.best_epoch"  # epochs of the final refit (iterative models)

# ---------------------------------------------------------------- metrics (cell)
TEST_PREFIX = "test/"
VAL_PREFIX = "val/"
BEST_VAL = "tuning/best_value"
TUNING_SECONDS = "time/tuning_s"  # fit + validation seconds of the counted trials, every process's
TUNING_INTERRUPTED_SECONDS = "time/tuning_interrupted_s"  # trials abandoned by a SIGTERM / Ctrl-C
TUNING_WALL_SECONDS = "time/tuning_wall_s"  # wall clock of the last process's tuning
FIT_SECONDS = "time/fit_s"
EVAL_SECONDS = "time/eval_s"
WARMUP_SECONDS = "time/warmup_s"  # the process's one-off kernel loading, kept out of the trials' cost
CPU_SECONDS = "time/cpu_s"  # CPU time (user + system) of the cell's process and its ended children
PEAK_MEMORY_MB = "memory/peak_rss_mb"
N_USERS_EVALUATED = "test/n_users_evaluated"
N_USERS_SKIPPED = "test/n_users_skipped"
N_TRIALS_DONE = "tuning/n_trials_complete"
N_TRIALS_FAILED = "tuning/n_trials_failed"
N_TRIALS_PRUNED = "tuning/n_trials_pruned"

# ---------------------------------------------------------------- artifacts (cell)
ART_CONFIG = "config/resolved.yaml"
ART_PER_USER = "per_user_metrics.parquet"
ART_RECOMMENDATIONS = "recommendations.parquet"
ART_TRIALS = "tuning/trials.csv"
ART_DATASHEET = "data/datasheet.json"
ART_PROTOCOL = "protocol.json"  # everything the report's protocol card needs
ART_TRACEBACK = "error/traceback.txt"
ART_SWEEP_CELLS = "sweep/cells.json"  # sweep run: every cell of the multirun (incl. reused) and status
ART_TRIAL_HISTORY = "history.json"  # trial run: validation metrics per epoch


def metric_key(phase: str, metric: str, k: int | None) -> str:
    """``test/ndcg_at_10`` style key (MLflow rejects ``@``)."""
    return f"{phase}/{metric}" if k is None else f"{phase}/{metric}_at_{k}"
