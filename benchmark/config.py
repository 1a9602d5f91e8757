"""Configuration schemas of a reprorec run (plain dataclasses, validated by Hydra at compose time).

The CLI (:mod:`benchmark.cli.sweep`, the only module that imports Hydra) registers these classes
in Hydra's ConfigStore with :func:`register_configs`; ``conf/config.yaml`` lists ``base_config``
first in its defaults, so every group file is merged into a typed node: a misspelt key or a value of
the wrong type fails before any work, naming the key. The composed config is converted with
``OmegaConf.to_object`` into these dataclasses, which is all that code below the CLI sees.

The model's schema is the registry's :class:`benchmark.registry.ModelSpec` (one schema per
concept). The ``dataset`` and ``split`` schemas are deliberately generic (a name plus mappings) because
their contents belong to the data and split registries, which validate them.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from benchmark.registry import ModelSpec


@dataclass
class DatasetConfig:
    """``conf/dataset/*.yaml``: which dataset and how to preprocess it."""

    name: str = MISSING
    preprocessing: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    description: str | None = None


@dataclass
class SplitConfigSchema:
    """``conf/split/*.yaml``: mirrors :class:`benchmark.splits.make.SplitConfig`."""

    name: str = MISSING
    splitter: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    validation_splitter: str | None = None
    validation_params: dict[str, Any] = field(default_factory=dict)
    published: str | None = None
    description: str | None = None


@dataclass
class TunerConfig:
    """``conf/tuner/*.yaml``: the tuning protocol, the same for every model of a sweep.

    Attributes:
        name: ``optuna`` (tune on train vs validation), ``fixed`` (one trial of ``model.params``:
            no search, but iterative models are early-stopped on validation) or ``none`` (fit
            ``model.params`` as given).
        n_trials: trial budget per cell (Dacrema et al.: 50).
        n_startup_trials: the first trials are random search, then TPE (Dacrema et al.: 15).
        sampler: ``tpe`` or ``random``.
        metric: validation metric key of the evaluator summary, e.g. ``ndcg_at_10``.
        direction: ``maximize`` or ``minimize``.
        validate_every: iterative models are validated every this many epochs ...
        patience: ... and stopped after this many validations without improvement.
        pruner: ``none`` (Dacrema et al.'s protocol), ``median``, ``successive_halving`` or
            ``hyperband``: Optuna's pruner on every iterative model's validations (neural, iALS
            and BPR alike, see :mod:`benchmark.tuning.trials`); a pruned trial counts against
            ``n_trials``. Stated in the protocol card when on.
        storage: SQLAlchemy URL of the Optuna study store (``services``: the PostgreSQL database of
            ``reprorec-services up``); None puts ``optuna.db`` next to the
            tracking store (an interrupted cell resumes its trials from there).
        timeout_s: optional wall-clock budget per cell (None: trials only).
        workers: processes tuning each cell together on its one study (the cell's own process and
            ``workers - 1`` helpers it starts, see :mod:`benchmark.tuning.worker`); they split the
            budget without exceeding it. Above 1 the storage must be shared by them (a sqlite file
            on one machine, or a server: ``tuner.storage=services`` / ``postgresql+psycopg2://...``).
        pack_size: trials asked at once (1: one after another, Dacrema et al.'s protocol). Above 1,
            the next ``pack_size`` trials are sampled together (TPE with ``constant_liar``) and
            told when all are done, for every model of the sweep alike; a ``packable`` model
            (the NCF family) trains them as one batched model (:mod:`neural.pack`), the others
            in turn. Stated in the protocol card.
        pack_memory_gb: the most one batched pack may use; a larger pack is trained as several
            smaller ones (None: 80% of the device's available memory). The results do not depend on
            it: a member ends as its solo run in any pack.
    """

    name: str = "optuna"
    n_trials: int = 50
    n_startup_trials: int = 15
    sampler: str = "tpe"
    metric: str = "ndcg_at_10"
    direction: str = "maximize"
    validate_every: int = 5
    patience: int = 5
    pruner: str = "none"
    storage: str | None = None
    timeout_s: float | None = None
    workers: int = 1
    pack_size: int = 1
    pack_memory_gb: float | None = None


@dataclass
class TrackingConfig:
    """``conf/tracking/*.yaml``: where runs are logged.

    Attributes:
        uri: MLflow tracking URI; None means ``MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db`` in the
            working directory (MLflow 3's default), resolved once in the launching process.
            ``services`` means the server started by ``reprorec-services up`` (its ``urls.json``;
            ``services:<folder>`` for another state folder than ``./.services``).
        experiment: MLflow experiment name.
        log_recommendations: log the test top-k lists (``recommendations.parquet``).
        skip_finished: skip a cell whose cell key already has a FINISHED run.
        log_trials: one nested MLflow run per tuning trial.
    """

    uri: str | None = None
    experiment: str = "reprorec"
    log_recommendations: bool = True
    skip_finished: bool = True
    log_trials: bool = True


@dataclass
class EvaluationConfig:
    """``conf/evaluation/*.yaml``: the one evaluation protocol of a sweep.

    ``protocol`` is ``full`` (rank all items not excluded) or ``sampled`` (rank each user's test items
    against the split's fixed candidates or ``n_negatives`` sampled negatives).
    """

    protocol: str = "full"
    cutoffs: list[int] = field(default_factory=lambda: [5, 10, 20, 50])
    metrics: list[str] = field(
        default_factory=lambda: ["precision", "recall", "ndcg", "map", "hit_rate", "mrr"]
    )
    n_negatives: int | None = None
    tie_rule: str | None = None
    batch_size: int = 1024
    validation_metrics: list[str] | None = None


@dataclass
class ReportConfig:
    """The report the sweep writes when it ends (``reprorec-report`` with these options).

    Attributes:
        enabled: write a report at the end of a multirun.
        out_dir: report folder (default ``reports/<protocol>``).
        reference: CSV of published values shown beside ours (``model,metric,cutoff,value,source``).
        metrics: metric names of the leaderboard columns (None: the report's defaults).
        cutoffs: cutoffs of the leaderboard columns (None: the report's defaults).
        main_metric: the column the significance tests and the "best baseline" use.
        correction: the multiple-testing correction over each table's tests: ``holm``
            (family-wise error rate) or ``bh`` (Benjamini-Hochberg, false discovery rate).
        url: where the report will be published (``https://...``): its BibTeX ``url``.
    """

    enabled: bool = True
    out_dir: str | None = None
    reference: str | None = None
    metrics: list[str] | None = None
    cutoffs: list[int] | None = None
    main_metric: str | None = None
    correction: str = "holm"
    url: str | None = None


@dataclass
class Config:
    """The whole composed configuration of one cell (``conf/config.yaml``)."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    split: SplitConfigSchema = field(default_factory=SplitConfigSchema)
    model: ModelSpec = field(default_factory=ModelSpec)
    tuner: TunerConfig = field(default_factory=TunerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    seed: int = 0
    protocol: str = "custom"
    progress: bool = True
    #: BLAS / OpenMP / torch threads of each process of a cell; None: the cell's CPUs divided
    #: by ``tuner.workers`` (see :mod:`benchmark.threads`).
    threads: int | None = None
    #: ``-m ... dry_run=true``: check the sweep and print each cell's expected cost from earlier runs
    #: in the store (:mod:`benchmark.tuning.estimate`), then exit without running anything.
    dry_run: bool = False
    #: Hyperparameters a protocol fixes, by model-name pattern (:func:`fnmatch.fnmatch`, e.g.
    #: ``"userknn*"``): the reference behaviour an experiment reproduces (Dacrema et al.'s
    #: reverse UserKNN neighbourhood, say). Applied under ``model.params`` (so
    #: ``model.params.x=...`` on the command line still wins, for ablations) and never over a
    #: searched hyperparameter; the report's protocol card lists them. See :func:`pin_params`.
    pinned_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def pinned_for_model(self) -> dict[str, Any]:
        """The pins of :attr:`pinned_params` whose pattern matches ``model.name``, not searched."""
        out: dict[str, Any] = {}
        for pattern, values in self.pinned_params.items():
            if fnmatch.fnmatchcase(self.model.name, pattern):
                out.update({k: v for k, v in values.items() if k not in self.model.search_space})
        return out


def pin_params(cfg: Config) -> Config:
    """Put the protocol's pins for ``cfg.model`` under its ``params`` (in place; returns ``cfg``)."""
    cfg.model.params = {**cfg.pinned_for_model(), **cfg.model.params}
    return cfg


def pins_in_effect(cfg: Config) -> dict[str, Any]:
    """The pins a cell runs with: those not overridden by ``model.params`` (for the report)."""
    return {k: v for k, v in cfg.pinned_for_model().items() if cfg.model.params.get(k) == v}


def register_configs() -> None:
    """Register the schemas in Hydra's ConfigStore (called by the CLI only)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
