"""Cell runs -> leaderboards: one table per (dataset, split, protocol), with CIs and significance.

Comparability rule: a table only holds runs evaluated on the *same* split. For every seed, all runs
of a table must carry the same ``reprorec.fingerprint.split`` tag, and all must share the
evaluation settings (candidates, tie rule, excluded items, cutoffs, split parameters). A group that
breaks the rule is **refused** (listed with the runs and fingerprints that disagree, never merged);
with ``split_by_fingerprint=True`` it is instead split into one table per split fingerprint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

from benchmark.errors import ConfigError, UnknownNameError
from benchmark.registry import COMPARED_FAMILIES, EXTERNAL, FAMILIES, get_model_spec
from benchmark.reporting.collect import CellRun
from benchmark.reporting.stats import (
    Interval,
    adjust_pvalues,
    bootstrap_ci,
    clipped_seeds_ci,
    combined_paired_test,
    hierarchical_bootstrap_ci,
    paired_test,
)
from benchmark.seeds import derive_seed
from benchmark.splits.audit import summary as audit_summary
from benchmark.tracking import schema as S

DEFAULT_METRICS = ("ndcg", "recall", "precision", "map", "hit_rate", "item_coverage")
DEFAULT_CUTOFFS = (5, 10, 20, 50)
DEFAULT_MAIN_METRIC = "ndcg_at_10"
ALPHA = 0.05
MARK_BETTER, MARK_WORSE = "†", "*"

#: Other spellings a metric may be logged under (first logged one wins).
ALIASES = {
    "hit_rate": ("hit_rate", "hitrate", "hr"),
    "item_coverage": ("item_coverage", "coverage"),
    "map": ("map", "mean_average_precision"),
}
LABELS = {
    "ndcg": "NDCG",
    "recall": "Recall",
    "precision": "Precision",
    "map": "MAP",
    "hit_rate": "HitRate",
    "hitrate": "HitRate",
    "hr": "HR",
    "item_coverage": "Coverage",
    "coverage": "Coverage",
    "mrr": "MRR",
}
#: Settings that must agree inside one table (else the numbers are not comparable).
PROTOCOL_PARAMS = (S.PARAM_PROTOCOL, S.PARAM_TIE_RULE, S.PARAM_EXCLUDE, S.PARAM_SPLIT_PARAMS)
#: Settings that should agree (tuning parity); a difference is reported, not refused.
PARITY_PARAMS = (
    S.PARAM_N_TRIALS,
    S.PARAM_N_RANDOM,
    S.PARAM_SAMPLER,
    S.PARAM_TUNE_METRIC,
    S.PARAM_PRUNER,
    S.PARAM_PACK_SIZE,
)
#: What a run that predates a parity setting used.
_PARITY_DEFAULTS = {S.PARAM_PRUNER: "none", S.PARAM_PACK_SIZE: "1"}
_KEY_RE = re.compile(r"^(?P<name>.+?)(?:_at_(?P<k>\d+))?$")


@dataclass(frozen=True)
class Column:
    metric: str  # logged metric name (after alias resolution)
    k: int | None

    @property
    def key(self) -> str:
        return self.metric if self.k is None else f"{self.metric}_at_{self.k}"

    @property
    def label(self) -> str:
        name = LABELS.get(self.metric, self.metric)
        return name if self.k is None else f"{name}@{self.k}"


@dataclass
class Row:
    model: str
    family: str
    runs: list[CellRun]
    cells: dict[str, Interval] = field(default_factory=dict)
    bold: set[str] = field(default_factory=set)
    n_users: int | None = None
    n_users_skipped: int | None = None
    p_value: float = math.nan
    p_adjusted: float = math.nan  # by the table's correction (Holm or Benjamini-Hochberg)
    mark: str = ""
    pairing_note: str = ""
    cost: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)  # seed -> best-so-far per trial
    untuned: bool = False  # ran one configuration although its registry entry has a search space
    protocol: dict[str, str] = field(default_factory=dict)  # this row's tuning protocol (_row_protocol)

    @property
    def seeds(self) -> list[str]:
        return [r.seed for r in self.runs]


@dataclass
class Leaderboard:
    dataset: str
    split: str
    protocol: str
    split_fingerprints: dict[str, str]  # seed -> fingerprint
    columns: list[Column]
    rows: list[Row]
    main_key: str
    reference_model: str | None
    test: str
    correction: str = "holm"
    notes: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)
    references: list[dict[str, Any]] = field(default_factory=list)
    fingerprint_suffix: str = ""  # set when a group was split by split fingerprint

    @property
    def title(self) -> str:
        proto = f", protocol {self.protocol}" if self.protocol else ""
        fp = f", split {self.fingerprint_suffix}" if self.fingerprint_suffix else ""
        return f"{self.dataset} · {self.split}{proto}{fp}"

    @property
    def slug(self) -> str:
        parts = [self.dataset, self.split] + ([self.protocol] if self.protocol else [])
        parts += [self.fingerprint_suffix] if self.fingerprint_suffix else []
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(parts)).strip("-")


@dataclass(frozen=True)
class Refusal:
    dataset: str
    split: str
    protocol: str
    reason: str
    runs: list[dict[str, str]]

    def message(self) -> str:
        lines = [
            f"refused table {self.dataset} · {self.split} "
            f"({self.protocol or 'no protocol tag'}): {self.reason}"
        ]
        lines += ["  " + ", ".join(f"{k}={v}" for k, v in r.items()) for r in self.runs]
        return "\n".join(lines)


# ---------------------------------------------------------------- helpers


def _family_order(family: str) -> int:
    return FAMILIES.index(family) if family in FAMILIES else len(FAMILIES)


def _logged_test_keys(runs: Sequence[CellRun]) -> set[str]:
    keys: set[str] = set()
    for r in runs:
        keys |= {k[len(S.TEST_PREFIX) :] for k in r.metrics if k.startswith(S.TEST_PREFIX)}
    return keys


def resolve_columns(
    runs: Sequence[CellRun], metrics: Sequence[str], cutoffs: Sequence[int]
) -> tuple[list[Column], list[str]]:
    """Columns (requested metric x cutoff) that at least one run logged, and the ones none did."""
    logged = _logged_test_keys(runs)
    cols: list[Column] = []
    missing: list[str] = []
    for metric in metrics:
        names = ALIASES.get(metric, (metric,))
        if any(n in logged for n in names):  # a cutoff-free metric (e.g. coverage of all lists)
            cols.append(Column(next(n for n in names if n in logged), None))
            continue
        for k in cutoffs:
            name = next((n for n in names if f"{n}_at_{k}" in logged), None)
            if name is None:
                missing.append(f"{metric}_at_{k}")
            else:
                cols.append(Column(name, int(k)))
    return cols, missing


def _signature(run: CellRun) -> tuple[tuple[str, str], ...]:
    return tuple((p, run.params.get(p, "")) for p in PROTOCOL_PARAMS)


def _check_comparable(runs: Sequence[CellRun]) -> str:
    """Why these runs cannot share a table ('' when they can)."""
    reasons = []
    by_seed: dict[str, set[str]] = defaultdict(set)
    for r in runs:
        by_seed[r.seed].add(r.split_fingerprint)
    bad = {s: fps for s, fps in by_seed.items() if len(fps) > 1}
    if bad:
        reasons.append(
            "runs of the same seed were evaluated on different splits "
            f"({S.FP_SPLIT} differs: "
            + "; ".join(f"seed {s}: {sorted(f[:12] for f in fps)}" for s, fps in sorted(bad.items()))
            + ")"
        )
    sigs = {_signature(r) for r in runs}
    if len(sigs) > 1:
        differing = sorted({p for sig in sigs for p, v in sig if len({dict(s)[p] for s in sigs}) > 1})
        reasons.append(f"evaluation settings differ ({', '.join(differing)})")
    return "; ".join(reasons)


def _run_summary(r: CellRun) -> dict[str, str]:
    out = {
        "run": r.run_id,
        "model": r.model,
        "seed": r.seed,
        "split_fp": r.split_fingerprint[:12] or "(none)",
    }
    for p in PROTOCOL_PARAMS:
        if p in r.params:
            out[p] = r.params[p]
    return out


def _aligned(run: CellRun, key: str) -> pd.Series | None:
    pu = run.per_user
    if pu is None or key not in pu.columns or "user_id" not in pu.columns:
        return None
    s = pd.Series(pu[key].to_numpy(np.float64), index=pu["user_id"].astype(str).to_numpy())
    return s[~s.index.duplicated()]


def _mean_per_user(row: Row, key: str, seeds: Sequence[str]) -> pd.Series | None:
    """Per-user value averaged over ``seeds`` (the user set must be identical for every seed)."""
    series = []
    for r in row.runs:
        if r.seed in seeds:
            s = _aligned(r, key)
            if s is None:
                return None
            series.append(s.sort_index())
    if not series:
        return None
    idx = series[0].index
    if any(not s.index.equals(idx) for s in series[1:]):
        return None
    return pd.concat(series, axis=1).mean(axis=1)


def _per_seed_pairs(
    row: Row, ref: Row, key: str, seeds: Sequence[str]
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Per seed, the two rows' per-user values on the users both evaluated in that seed (a random
    split evaluates different users in different seeds: each seed is paired on its own)."""
    pairs = []
    for seed in seeds:
        a = [_aligned(r, key) for r in row.runs if r.seed == seed]
        b = [_aligned(r, key) for r in ref.runs if r.seed == seed]
        if not a or not b or a[0] is None or b[0] is None:
            return None
        common = a[0].index.intersection(b[0].index).sort_values()
        if not len(common):
            return None
        pairs.append((a[0].loc[common].to_numpy(), b[0].loc[common].to_numpy()))
    return pairs


def _best_so_far(trials: pd.DataFrame | None) -> list[float]:
    if trials is None or "value" not in trials.columns:
        return []
    t = trials
    if "state" in t.columns:
        t = t[t["state"].astype(str).str.lower().isin(["complete", "trialstate.complete"])]
    if "number" in t.columns:
        t = t.sort_values("number")
    v = pd.to_numeric(t["value"], errors="coerce").to_numpy(np.float64)
    v = v[np.isfinite(v)]
    return np.maximum.accumulate(v).tolist() if v.size else []


def _stopping_text(logged: str) -> str:
    """``{"every": 5, "patience": 5}`` -> ``validated every 5 epochs, patience 5``."""
    try:
        d = json.loads(logged)
        return f"validated every {d['every']} epochs, patience {d['patience']}"
    except (ValueError, KeyError, TypeError):
        return logged


def _row_protocol(runs: Sequence[CellRun]) -> dict[str, str]:
    """How this row's cells were tuned and refit, from their logged parameters (one value per
    setting, or all values joined when the seeds differ)."""

    def one(key: str, default: str = "") -> str:
        return " / ".join(sorted({r.params.get(key, default) for r in runs} - {""})) or "–"

    epochs = sorted({r.params.get(S.PARAM_BEST_EPOCH, "") for r in runs} - {""})
    stopping = sorted({r.params.get(S.PARAM_EARLY_STOPPING, "") for r in runs} - {""})
    return {
        "tuner": " / ".join(sorted({r.tags.get(S.TUNER, "") for r in runs} - {""})) or "–",
        "trials": one(S.PARAM_N_TRIALS),
        "random_start": one(S.PARAM_N_RANDOM),
        "pruner": one(S.PARAM_PRUNER, "none"),
        "pack_size": one(S.PARAM_PACK_SIZE, "1"),
        "early_stopping": " / ".join(_stopping_text(x) for x in stopping) if epochs else "–",
        "refit": "train + validation" + (f", {' / '.join(epochs)} epochs" if epochs else ""),
        "pinned": one(S.PARAM_PINNED),
    }


def _cost(runs: Sequence[CellRun]) -> dict[str, float]:
    names = {
        "trials_complete": S.N_TRIALS_DONE,
        "trials_failed": S.N_TRIALS_FAILED,
        "trials_pruned": S.N_TRIALS_PRUNED,
        "best_val": S.BEST_VAL,
        "tuning_s": S.TUNING_SECONDS,
        "fit_s": S.FIT_SECONDS,
        "eval_s": S.EVAL_SECONDS,
        "cpu_s": S.CPU_SECONDS,
        "peak_rss_mb": S.PEAK_MEMORY_MB,
    }
    out: dict[str, float] = {}
    for short, key in names.items():
        vals = [r.metrics[key] for r in runs if key in r.metrics]
        if not vals and short == "trials_complete":
            vals = [float(len(_best_so_far(r.trials))) for r in runs if r.trials is not None]
        if vals:
            out[short] = float(np.mean(vals))
    budgets = [
        float(r.params[S.PARAM_N_TRIALS]) for r in runs if r.params.get(S.PARAM_N_TRIALS, "").isdigit()
    ]
    if budgets:
        out["trials_budget"] = float(np.mean(budgets))
    packs = [
        float(r.params[S.PARAM_PACK_SIZE]) for r in runs if r.params.get(S.PARAM_PACK_SIZE, "").isdigit()
    ]
    if packs and max(packs) > 1:
        out["pack_size"] = float(max(packs))
    return out


def _leakage(runs: Sequence[CellRun]) -> dict[str, str]:
    """The leakage audit per seed (each seed has its split): one line each, tuning checked for every run."""
    out: dict[str, str] = {}
    for seed in sorted({r.seed for r in runs}):
        docs = [
            r.protocol_doc["leakage"]
            for r in runs
            if r.seed == seed and r.protocol_doc and isinstance(r.protocol_doc.get("leakage"), dict)
        ]
        if not docs:
            out[f"seed {seed}"] = "not logged (runs made before the leakage audit)"
            continue
        tuned = [d["tuning"] for d in docs if d.get("tuning")]
        bad = [
            t
            for t in tuned
            if not t.get("is_validation") or t.get("is_test") or t.get("pairs_shared_with_test")
        ]
        audit = {
            **docs[0],
            "tuning": (bad or tuned or [None])[0],
            "test_evaluations": max(int(d.get("test_evaluations") or 0) for d in docs),
        }
        checked = f" ({len(tuned)} of {len(docs)} runs tuned, each checked)" if tuned else ""
        out[f"seed {seed}"] = audit_summary(audit) + checked
    return out


def _card(runs: Sequence[CellRun]) -> dict[str, Any]:
    """The protocol card: settings shared by the table's runs, from params, protocol.json, datasheet."""
    first = runs[0]
    card: dict[str, Any] = {
        "dataset": first.dataset,
        "split": first.split,
        "protocol": first.protocol,
        "split_params": _maybe_json(first.params.get(S.PARAM_SPLIT_PARAMS, "")),
        "candidates": first.params.get(S.PARAM_PROTOCOL, ""),
        "seen_items_excluded": first.params.get(S.PARAM_EXCLUDE, ""),
        "tie_rule": first.params.get(S.PARAM_TIE_RULE, ""),
        "cutoffs": _maybe_json(first.params.get(S.PARAM_CUTOFFS, "")),
        "metrics": _maybe_json(first.params.get(S.PARAM_METRICS, "")),
        "tuning_metric": sorted({r.params.get(S.PARAM_TUNE_METRIC, "") for r in runs} - {""}),
        "tuning_budget_trials": sorted({r.params.get(S.PARAM_N_TRIALS, "") for r in runs} - {""}),
        "tuning_random_trials": sorted({r.params.get(S.PARAM_N_RANDOM, "") for r in runs} - {""}),
        "tuning_sampler": sorted({r.params.get(S.PARAM_SAMPLER, "") for r in runs} - {""}),
        "tuning_pruner": sorted({r.params.get(S.PARAM_PRUNER, "") for r in runs} - {"", "none"}),
        "tuning_pack_size": sorted({r.params.get(S.PARAM_PACK_SIZE, "") for r in runs} - {"", "1"}),
        "seeds": sorted({r.seed for r in runs}),
        "pinned_params": {
            r.model: _maybe_json(r.params[S.PARAM_PINNED]) for r in runs if r.params.get(S.PARAM_PINNED)
        },
        "users_skipped": {
            f"{r.model} seed {r.seed}": r.metrics[S.N_USERS_SKIPPED]
            for r in runs
            if S.N_USERS_SKIPPED in r.metrics
        },
        "fingerprints": {
            "dataset": sorted({r.tags.get(S.FP_DATASET, "") for r in runs} - {""}),
            "split": sorted({r.split_fingerprint for r in runs} - {""}),
            "train": sorted({r.tags.get(S.FP_TRAIN, "") for r in runs} - {""}),
            "validation": sorted({r.tags.get(S.FP_VALIDATION, "") for r in runs} - {""}),
            "test": sorted({r.tags.get(S.FP_TEST, "") for r in runs} - {""}),
            "test_candidates": sorted({r.tags.get(S.FP_CANDIDATES, "") for r in runs} - {""}),
        },
        "leakage": _leakage(runs),
        "protocol_json": {k: v for k, v in (first.protocol_doc or {}).items() if k != "leakage"},
        "datasheet": first.datasheet or {},
    }
    return card


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _fill_row(row: Row, columns: Sequence[Column], table_key: tuple[str, ...], n_resamples: int) -> None:
    for col in columns:
        full = S.TEST_PREFIX + col.key
        vals = [(r, r.metrics[full]) for r in row.runs if full in r.metrics]
        if not vals:
            continue
        if len(vals) > 1:
            headline = float(np.mean([v for _, v in vals]))
            per_seed = [_aligned(r, col.key) for r, _ in vals]
            if all(x is not None for x in per_seed):
                row.cells[col.key] = hierarchical_bootstrap_ci(
                    [x.to_numpy() for x in per_seed if x is not None],
                    seed=derive_seed("report-bootstrap", *table_key, row.model, col.key),
                    n_resamples=n_resamples,
                    mean=headline,
                )
            else:  # no per-user values (e.g. coverage, a property of the whole list set)
                row.cells[col.key] = clipped_seeds_ci(np.array([v for _, v in vals]))
            std = float(np.std([v for _, v in vals], ddof=1))
            row.cells[col.key] = dataclasses.replace(row.cells[col.key], std=std)
            continue
        run, value = vals[0]
        per_user = _aligned(run, col.key)
        if per_user is None:
            row.cells[col.key] = Interval(value, math.nan, math.nan, 0, "none")
            continue
        ci = bootstrap_ci(
            per_user.to_numpy(),
            seed=derive_seed("report-bootstrap", *table_key, row.model, col.key),
            n_resamples=n_resamples,
        )
        # The logged value is the headline; the per-user file gives the interval around it.
        row.cells[col.key] = Interval(value, ci.low, ci.high, ci.n, ci.method)
    users = [r.metrics[S.N_USERS_EVALUATED] for r in row.runs if S.N_USERS_EVALUATED in r.metrics]
    if not users:
        users = [float(len(r.per_user)) for r in row.runs if r.per_user is not None]
    row.n_users = round(float(np.mean(users))) if users else None
    skipped = [r.metrics[S.N_USERS_SKIPPED] for r in row.runs if S.N_USERS_SKIPPED in r.metrics]
    row.n_users_skipped = round(float(np.mean(skipped))) if skipped else None
    row.cost = _cost(row.runs)
    row.protocol = _row_protocol(row.runs)
    row.untuned = _registry_space_size(row.model) > 0 and any(not _searched(r) for r in row.runs)
    row.curves = {r.seed: _best_so_far(r.trials) for r in row.runs if r.trials is not None}


def _searched(run: CellRun) -> bool:
    """Whether the run's hyperparameters came from a search (tuner=none logs a space it never searched)."""
    return run.tags.get(S.TUNER) != "none" and run.params.get(S.PARAM_SEARCH_SPACE, "{}") not in ("{}", "")


def _registry_space_size(model: str) -> int:
    """How many parameters the model's registry entry searches (0 for a model this checkout lacks)."""
    try:
        return len(get_model_spec(model).search_space)
    except (UnknownNameError, ConfigError):
        return 0


def _significance(
    rows: list[Row], main_key: str, test: str, notes: list[str], correction: str = "holm"
) -> str | None:
    """Test every model against the best baseline on ``main_key``; ``correction`` over the table."""
    scored = [r for r in rows if main_key in r.cells]
    baselines = [r for r in scored if r.family not in COMPARED_FAMILIES] or scored
    if not baselines:
        notes.append(f"no model logged the main metric {main_key}: no significance tests")
        return None
    ref = max(baselines, key=lambda r: r.cells[main_key].mean)
    ref.mark = "ref"
    tested: list[Row] = []
    for row in scored:
        if row is ref:
            continue
        seeds = sorted(set(row.seeds) & set(ref.seeds))
        if not seeds:
            row.pairing_note = f"no seed in common with {ref.model}"
            continue
        if len(seeds) > 1:
            pairs = _per_seed_pairs(row, ref, main_key, seeds)
            if pairs is None:
                row.pairing_note = "per-user metrics missing, or no user in common in some seed"
                continue
            row.p_value = combined_paired_test(pairs, test)
            tested.append(row)
            continue
        a = _mean_per_user(row, main_key, seeds)
        b = _mean_per_user(ref, main_key, seeds)
        if a is None or b is None:
            row.pairing_note = "per-user metrics missing (or user sets differ between seeds)"
            continue
        if not a.index.equals(b.index):
            only_a = len(a.index.difference(b.index))
            only_b = len(b.index.difference(a.index))
            row.pairing_note = (
                f"user sets differ from {ref.model} ({only_a} users only here, {only_b} only in "
                f"{ref.model}): not paired"
            )
            continue
        row.p_value = paired_test(a.to_numpy(), b.to_numpy(), test)
        tested.append(row)
    for row in rows:
        if row.pairing_note:
            notes.append(f"{row.model}: no significance test ({row.pairing_note})")
    adjusted = adjust_pvalues([r.p_value for r in tested], correction)
    for row, p in zip(tested, adjusted, strict=True):
        row.p_adjusted = float(p)
        if p < ALPHA:
            better = row.cells[main_key].mean > ref.cells[main_key].mean
            row.mark = MARK_BETTER if better else MARK_WORSE
    return ref.model


def _build_table(
    runs: list[CellRun],
    key: tuple[str, str, str],
    metrics: Sequence[str],
    cutoffs: Sequence[int],
    main_metric: str,
    test: str,
    n_resamples: int,
    correction: str = "holm",
) -> Leaderboard:
    columns, missing = resolve_columns(runs, metrics, cutoffs)
    if "_at_" in main_metric and not any(c.key == main_metric for c in columns):
        # the tuned metric (e.g. Recall@50) may lie outside the paper's columns (@20..100 step 20):
        # show it first when logged, since the significance tests are run on it
        name, _, k = main_metric.rpartition("_at_")
        if k.isdigit():
            columns = resolve_columns(runs, [name], [int(k)])[0] + columns
    by_model: dict[str, list[CellRun]] = defaultdict(list)
    for r in runs:
        by_model[r.model].append(r)
    rows = []
    notes: list[str] = []
    for model, mruns in by_model.items():
        mruns.sort(key=lambda r: (len(r.seed), r.seed))
        seen: dict[str, CellRun] = {}
        count: dict[str, int] = defaultdict(int)
        for r in mruns:  # a re-run of the same cell: the newest one counts, and the report says so
            count[r.seed] += 1
            if r.seed not in seen or r.end_time >= seen[r.seed].end_time:
                seen[r.seed] = r
        for seed, n in count.items():
            if n > 1:
                used = seen[seed]
                commit = used.tags.get(S.GIT_COMMIT, "")[:12]
                notes.append(
                    f"{model} seed {seed}: {n} FINISHED runs, using the newest ({used.run_id}"
                    + (f", commit {commit})" if commit else ")")
                )
        fam = next((r.family for r in mruns if r.family), "")
        rows.append(Row(model=model, family=fam, runs=list(seen.values())))
    rows.sort(key=lambda r: (_family_order(r.family), r.family, r.model))
    for row in rows:
        _fill_row(row, columns, key, n_resamples)
    for col in columns:
        means = [
            r.cells[col.key].mean for r in rows if col.key in r.cells and np.isfinite(r.cells[col.key].mean)
        ]
        if means:
            best = max(means)
            for row in rows:
                if col.key in row.cells and row.cells[col.key].mean == best:
                    row.bold.add(col.key)
        absent = [row.model for row in rows if col.key not in row.cells]
        if absent:
            notes.append(f"{col.label} not logged by: {', '.join(absent)}")
    main_key = main_metric if any(c.key == main_metric for c in columns) else ""
    if not main_key:
        notes.append(f"main metric {main_metric} was not logged: no significance tests")
        ref = None
    else:
        ref = _significance(rows, main_key, test, notes, correction)
    # Models with nothing to tune (an empty search space: TopPop, Random) run one trial by design;
    # a tunable model run without search (tuner=fixed or none, e.g. a paper's published
    # configuration) is not a tuned result, and the reader must not take it for one.
    for row in rows:
        if row.untuned:
            how = sorted({r.tags.get(S.TUNER, "?") for r in row.runs if not _searched(r)})
            notes.append(
                f"{row.model} (not tuned): ran its model.params without search (tuner={'/'.join(how)}), "
                f"while conf/model/{row.model}.yaml searches {_registry_space_size(row.model)} "
                "parameters; the other models were tuned, so this row is not an equal-budget result"
            )
    # Recommendations of other code (reprorec-score): the file is the model; how it was tuned is
    # the authors' statement, not something this benchmark controlled.
    for row in rows:
        if row.family == EXTERNAL:
            files = sorted(
                {
                    f"{PurePath(r.params.get(S.PARAM_PREFIX_MODEL + 'path', '?')).name} "
                    f"(sha256 {r.params.get(S.PARAM_PREFIX_MODEL + 'sha256', '?')[:12]})"
                    for r in row.runs
                }
            )
            said = sorted({r.params.get(S.PARAM_PREFIX_MODEL + "note", "") for r in row.runs} - {""})
            notes.append(
                f"{row.model} (external): recommendation lists made by other code, scored by reprorec-score "
                f"from {', '.join(files)}; its tuning budget is not controlled by this benchmark"
                + (f"; note: {'; '.join(said)}" if said else "")
            )
    tuned = [r for r in runs if _searched(r)]
    parity = {p: sorted({r.params.get(p, _PARITY_DEFAULTS.get(p, "")) for r in tuned}) for p in PARITY_PARAMS}
    for p, vals in parity.items():
        if len(vals) > 1:
            notes.append(f"tuning parity: {p} differs between models ({vals})")
    unfingerprinted = sorted({r.run_id for r in runs if not r.split_fingerprint})
    if unfingerprinted:
        notes.append(
            f"{S.FP_SPLIT} not logged by runs {unfingerprinted}: that they share one split is not verified"
        )
    # an external cell has no tuning trials to log
    lacking = sorted({(r.model, a) for r in runs if r.family != EXTERNAL for a in r.missing_artifacts})
    for model, art in lacking:
        notes.append(f"{model}: artifact {art} not logged")
    fps = {}
    for r in runs:
        fps[r.seed] = r.split_fingerprint
    return Leaderboard(
        dataset=key[0],
        split=key[1],
        protocol=key[2],
        split_fingerprints=dict(sorted(fps.items())),
        columns=columns,
        rows=rows,
        main_key=main_key,
        reference_model=ref,
        test=test,
        correction=correction,
        notes=notes,
        missing_columns=missing,
        card=_card(runs),
    )


def build_leaderboards(
    cells: Sequence[CellRun],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
    main_metric: str = DEFAULT_MAIN_METRIC,
    test: str = "wilcoxon",
    split_by_fingerprint: bool = False,
    n_resamples: int = 2000,
    correction: str = "holm",
) -> tuple[list[Leaderboard], list[Refusal]]:
    """Group cells into comparable tables and compute every number the report shows.

    Returns:
        The leaderboards (ordered by dataset, split, protocol) and the groups refused (with why).
    """
    groups: dict[tuple[str, str, str], list[CellRun]] = defaultdict(list)
    for c in cells:
        groups[(c.dataset, c.split, c.protocol)].append(c)
    tables: list[Leaderboard] = []
    refused: list[Refusal] = []
    for key in sorted(groups):
        runs = groups[key]
        reason = _check_comparable(runs)
        if not reason:
            tables.append(
                _build_table(runs, key, metrics, cutoffs, main_metric, test, n_resamples, correction)
            )
            continue
        if not split_by_fingerprint:
            refused.append(Refusal(*key, reason=reason, runs=[_run_summary(r) for r in runs]))
            continue
        sub: dict[tuple[str, tuple[tuple[str, str], ...]], list[CellRun]] = defaultdict(list)
        for r in runs:
            sub[(r.split_fingerprint, _signature(r))].append(r)
        for (fp, _), sruns in sorted(sub.items(), key=lambda kv: kv[0][0]):
            t = _build_table(sruns, key, metrics, cutoffs, main_metric, test, n_resamples, correction)
            t.notes.insert(0, f"split into its own table: split fingerprint {fp[:12]} ({reason})")
            t.fingerprint_suffix = fp[:12]
            tables.append(t)
    return tables, refused
