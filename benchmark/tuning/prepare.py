"""Preparing a cell: its data, its split, its evaluators and its key, before anything is fitted.

A cell is identified by its *cell key*: data and split fingerprints, model and its defaults, search
space, tuning budget, evaluation settings, seed and code version. Two processes that compute the
same key compute the same numbers; a key with a FINISHED run in the tracking store is skipped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from benchmark.config import Config, EvaluationConfig
from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError
from benchmark.fingerprint import sha256_json
from benchmark.preflight import check_cell_config, split_config
from benchmark.registry import ModelSpec
from benchmark.seeds import derive_seed
from benchmark.splits.split import Split
from benchmark.tracking import provenance
from benchmark.tuning.space import SearchSpace, parse_space

#: Hyperparameter names through which models take their random seed.
SEED_PARAMS = ("random_state",)


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

    def seen(self) -> list[InteractionMatrix]:
        """What the test ranking excludes: train + validation (everything the refit saw)."""
        s = self.split
        return [s.train] if s.validation is None else [s.train, s.validation]


def cell_name(cfg: Config) -> str:
    """The run name a person reads: ``itemknn · ml-100k · seed 0``."""
    return f"{cfg.model.name} · {cfg.dataset.name} · seed {cfg.seed}"


def prepare_cell(cfg: Config) -> PreparedCell:
    """Check the configuration, load the data, split it and compute the cell key (no fitting)."""
    check_cell_config(cfg)  # hyperparameter types and ranges before any data is read
    spec = cfg.model
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
            "model": {"name": spec.name, "cls": spec.cls, "params": spec.effective_params()},
            "search_space": space.to_dict(),
            "tuner": tuner_identity(cfg),
            "evaluation": {k: v for k, v in asdict(cfg.evaluation).items() if k != "batch_size"},
            "seed": cfg.seed,
            "code": provenance.code_version(),
        }
    )
    return PreparedCell(cfg, split, spec, space, fixed, data_fp, source, key, sheet)


def tuner_identity(cfg: Config) -> dict[str, Any]:
    """The tuner settings that change what a cell computes (not where its study is, nor its time)."""
    t = asdict(cfg.tuner)
    for where in ("storage", "timeout_s", "workers"):
        t.pop(where)
    return t


def load_split(cfg: Config) -> tuple[Split, str, str, dict[str, Any] | None]:
    """Load + preprocess the dataset and split it: (split, dataset sha256, source, datasheet)."""
    from benchmark.splits.make import PUBLISHED, make_split

    split_cfg = split_config(cfg)
    if split_cfg.splitter == PUBLISHED:  # the published files define the data
        split = make_split(None, split_cfg, dataset=cfg.dataset.name, seed=cfg.seed)
        fp = str(split.params.get("data_fingerprint", split.fingerprint))
        return split, fp, f"published:{split_cfg.published}", _published_datasheet(cfg, split)

    from benchmark.data.datasheet import datasheet
    from benchmark.data.loading import load_dataset
    from benchmark.data.preprocess import PreprocessConfig

    pre = PreprocessConfig(**cfg.dataset.preprocessing) if cfg.dataset.preprocessing else None
    loaded = load_dataset(cfg.dataset.name, preprocessing=pre, options=dict(cfg.dataset.options))
    split = make_split(loaded.data, split_cfg, dataset=cfg.dataset.name, seed=cfg.seed)
    source = loaded.source
    described = json.dumps(source.to_dict(), default=str) if hasattr(source, "to_dict") else str(source)
    return split, str(loaded.fingerprint), described, datasheet(loaded)


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


# ---------------------------------------------------------------------------- evaluators


def evaluation_seed(dataset: str, split: str, seed: int, phase: str) -> int:
    """Seed of the evaluator (random tie rule, sampled negatives) for ``phase`` (``val`` or ``test``).

    It does not depend on the model: every model of a (dataset, split, seed) is ranked with the same
    tie keys and the same sampled negatives.
    """
    return derive_seed(dataset, split, seed, "evaluation", phase)


def evaluator_on_validation(p: PreparedCell) -> Any:
    """Ranks validation items against everything but ``train`` (what tuning fits on)."""
    cfg = p.config
    assert p.split.validation is not None
    return make_evaluator(
        p.split.validation,
        [p.split.train],
        cfg.evaluation,
        candidates=None,
        seed=evaluation_seed(cfg.dataset.name, cfg.split.name, cfg.seed, "val"),
        name="val",
        metrics=cfg.evaluation.validation_metrics,
    )


def evaluator_on_test(p: PreparedCell) -> Any:
    """Ranks test items, excluding train + validation (the one evaluation on test)."""
    cfg = p.config
    return make_evaluator(
        p.split.test,
        p.seen(),
        cfg.evaluation,
        candidates=p.split.test_candidates,
        seed=evaluation_seed(cfg.dataset.name, cfg.split.name, cfg.seed, "test"),
        name="test",
    )


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
