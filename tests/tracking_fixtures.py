"""Fill an MLflow store with sweep/cell/trial runs exactly as :mod:`benchmark.tracking.schema` says.

For tests of the report and the dashboard (and demos) that must not depend on the sweep code: each
cell is described by its per-user test metrics, and every cell-level number (``test/<m>_at_<k>`` =
mean over users) is derived from them, so a test can recompute any figure the report shows.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.errors import UnknownNameError
from benchmark.fingerprint import sha256_json
from benchmark.registry import get_model_spec
from benchmark.tracking import schema as S


@dataclass
class FakeCell:
    """One cell run to log: ``per_user`` maps ``ndcg_at_10``-style keys to per-user values."""

    model: str
    family: str
    seed: int
    per_user: dict[str, np.ndarray]
    user_ids: Sequence[str] | None = None
    dataset: str = "synthetic"
    split: str = "random_holdout"
    protocol: str = "default"
    split_fingerprint: str | None = None  # default: derived from (dataset, split, seed)
    status: str = "FINISHED"
    extra_metrics: dict[str, float] = field(default_factory=dict)  # e.g. test/item_coverage_at_10
    trial_values: Sequence[float] = (0.1, 0.15, 0.12, 0.2)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    # the logged tuning.search_space; None: the model's registry space (a tuned cell), else one
    # float per hyperparameter for a model this checkout lacks
    search_space: dict[str, Any] | None = None
    tuner: str = "optuna"  # the reprorec.tuner tag
    eval_params: dict[str, str] = field(default_factory=dict)
    log_per_user: bool = True

    @property
    def run_name(self) -> str:
        return f"{self.model} · {self.dataset} · seed {self.seed}"


_TEMPLATE: dict[str, Path] = {}


def new_sqlite_store(folder: Path) -> str:
    """A fresh sqlite tracking store in ``folder`` (``mlflow.db``); returns its URI.

    Creating MLflow's schema takes seconds (dozens of migrations), so it is done once per process
    into a template database that is then copied.
    """
    import shutil

    from mlflow import MlflowClient

    if "db" not in _TEMPLATE or not _TEMPLATE["db"].exists():
        tdir = Path(tempfile.mkdtemp(prefix="reprorec-mlflow-template-"))
        MlflowClient(tracking_uri=f"sqlite:///{tdir}/mlflow.db").search_experiments()
        _TEMPLATE["db"] = tdir / "mlflow.db"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_TEMPLATE["db"], folder / "mlflow.db")
    return f"sqlite:///{folder}/mlflow.db"


def _space(c: FakeCell) -> dict[str, Any]:
    if c.search_space is not None:
        return c.search_space
    try:
        return get_model_spec(c.model).search_space
    except UnknownNameError:
        return {k: {"type": "float"} for k in c.hyperparameters}


def _fp(*parts: object) -> str:
    return sha256_json([str(p) for p in parts])


def log_sweep(
    tracking_uri: str,
    cells: Sequence[FakeCell],
    *,
    experiment: str = "reprorec",
    artifact_location: str | None = None,
    command: str = "reprorec -m dataset=synthetic model=toppop,itemknn seed=0",
) -> tuple[str, str, list[str]]:
    """Log one sweep run with ``cells`` nested under it (and trial runs under each cell).

    Returns:
        (experiment id, sweep run id, cell run ids in the order of ``cells``).
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = (
        exp.experiment_id
        if exp
        else client.create_experiment(
            experiment, artifact_location=artifact_location, tags={S.EXPERIMENT_KIND: S.EXPERIMENT_KIND_VALUE}
        )
    )
    common = {
        S.GIT_COMMIT: "0123456789abcdef0123456789abcdef01234567",
        S.GIT_DIRTY: "false",
        S.VERSIONS: json.dumps({"numpy": np.__version__, "pandas": pd.__version__}),
        S.HARDWARE: "test-cpu x2",
        S.COMMAND: command,
    }
    sweep = client.create_run(
        exp_id,
        run_name="sweep · synthetic",
        start_time=1_699_999_999_000,
        tags={S.RUN_TYPE: S.RUN_TYPE_SWEEP, **common},
    )
    sweep_id = sweep.info.run_id
    ids = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, c in enumerate(cells):
            n_users = len(next(iter(c.per_user.values())))
            users = list(c.user_ids) if c.user_ids is not None else [f"u{j}" for j in range(n_users)]
            fp_split = c.split_fingerprint or _fp(c.dataset, c.split, c.seed)
            tags = {
                S.RUN_TYPE: S.RUN_TYPE_CELL,
                S.TUNER: c.tuner,
                S.PARENT_RUN_ID: sweep_id,
                S.SWEEP_ID: sweep_id,
                S.CELL_KEY: _fp(c.dataset, c.split, c.model, c.seed),
                S.DATASET: c.dataset,
                S.SPLIT: c.split,
                S.MODEL: c.model,
                S.MODEL_FAMILY: c.family,
                S.SEED: str(c.seed),
                S.PROTOCOL: c.protocol,
                S.FP_DATASET: _fp(c.dataset),
                S.FP_SPLIT: fp_split,
                S.FP_TRAIN: _fp(fp_split, "train"),
                S.FP_VALIDATION: _fp(fp_split, "validation"),
                S.FP_TEST: _fp(fp_split, "test"),
                S.CONFIG_HASH: _fp(c.model, c.hyperparameters),
                **common,
            }
            run = client.create_run(exp_id, run_name=c.run_name, tags=tags, start_time=1_700_000_000_000 + i)
            rid = run.info.run_id
            ids.append(rid)
            cutoffs = sorted({int(k.rsplit("_at_", 1)[1]) for k in c.per_user if "_at_" in k})
            names = sorted({k.rsplit("_at_", 1)[0] for k in c.per_user})
            params = {
                S.PARAM_N_TRIALS: str(len(c.trial_values)),
                S.PARAM_N_RANDOM: "2",
                S.PARAM_SAMPLER: "tpe",
                S.PARAM_TUNE_METRIC: "ndcg_at_10",
                S.PARAM_CUTOFFS: json.dumps(cutoffs),
                S.PARAM_METRICS: json.dumps(names),
                S.PARAM_PROTOCOL: "full",
                S.PARAM_TIE_RULE: "item_index",
                S.PARAM_EXCLUDE: "train+validation",
                S.PARAM_SPLIT_PARAMS: json.dumps({"test_fraction": 0.2}),
                S.PARAM_SEARCH_SPACE: json.dumps(_space(c)),
                **{S.PARAM_PREFIX_MODEL + k: str(v) for k, v in c.hyperparameters.items()},
                **c.eval_params,
            }
            now = 1_700_000_000_000
            metrics = {S.TEST_PREFIX + k: float(np.mean(v)) for k, v in c.per_user.items()}
            metrics.update(c.extra_metrics)
            metrics.update(
                {
                    S.N_USERS_EVALUATED: float(n_users),
                    S.N_USERS_SKIPPED: 0.0,
                    S.BEST_VAL: float(max(c.trial_values)),
                    S.N_TRIALS_DONE: float(len(c.trial_values)),
                    S.N_TRIALS_FAILED: 0.0,
                    S.TUNING_SECONDS: 10.0 * (i + 1),
                    S.FIT_SECONDS: 1.0 + i,
                    S.EVAL_SECONDS: 0.5,
                    S.PEAK_MEMORY_MB: 300.0,
                }
            )
            client.log_batch(
                rid,
                metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                params=[Param(k, v) for k, v in params.items()],
            )
            d = Path(tmp) / rid
            (d / "tuning").mkdir(parents=True)
            (d / "data").mkdir()
            if c.log_per_user:
                pu = pd.DataFrame(
                    {
                        "user": np.arange(n_users),
                        "user_id": users,
                        **{k: np.asarray(v, dtype=np.float64) for k, v in c.per_user.items()},
                    }
                )
                pu.to_parquet(d / S.ART_PER_USER, index=False)
            pd.DataFrame(
                {
                    "number": np.arange(len(c.trial_values)),
                    "state": "COMPLETE",
                    "value": list(c.trial_values),
                    "duration_s": 1.0,
                    **{f"params_{k}": v for k, v in c.hyperparameters.items()},
                }
            ).to_csv(d / S.ART_TRIALS, index=False)
            (d / S.ART_PROTOCOL).write_text(
                json.dumps(
                    {
                        "candidates": "full",
                        "exclude": "train+validation",
                        "tie_rule": "item_index",
                        "metric_definitions": {"ndcg": "binary-relevance NDCG, IDCG truncated at k"},
                    }
                )
            )
            (d / S.ART_DATASHEET).write_text(json.dumps({"users": n_users, "items": 40, "interactions": 400}))
            client.log_artifacts(rid, str(d))
            for t, value in enumerate(c.trial_values):
                trial = client.create_run(
                    exp_id,
                    run_name=f"{c.model} · trial {t}",
                    tags={
                        S.RUN_TYPE: S.RUN_TYPE_TRIAL,
                        S.PARENT_RUN_ID: rid,
                        S.TRIAL_NUMBER: str(t),
                        S.TRIAL_STATE: "complete",
                    },
                )
                client.log_batch(trial.info.run_id, metrics=[Metric("val/ndcg_at_10", float(value), now, 0)])
                client.set_terminated(trial.info.run_id, "FINISHED", end_time=now + t)
            client.set_terminated(rid, c.status, end_time=1_700_000_100_000 + i)
    client.set_terminated(sweep_id, "FINISHED", end_time=1_700_000_200_000)
    return exp_id, sweep_id, ids
