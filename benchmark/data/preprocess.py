"""Preprocessing of an interaction frame: duplicates policy, rating threshold, iterative k-core.

Steps run in this order, each optional, and each records the users / items / interactions before
and after it (:class:`StepRecord`), so a datasheet can show where data was lost:

1. ``duplicates``: what to do with repeated (user, item) pairs (always runs; ``error`` by default).
2. ``min_rating``: keep interactions with ``rating >= min_rating`` (explicit -> implicit feedback).
3. ``k_core``: drop users with fewer than ``user_core`` and items with fewer than ``item_core``
   interactions, repeated until nothing changes (removing items can push users below the threshold).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from benchmark.errors import ConfigError, DataError

DUPLICATE_POLICIES = ("error", "first", "last", "max_rating")


@dataclass(frozen=True)
class PreprocessConfig:
    """Which preprocessing steps run, and with which parameters (all optional).

    Attributes:
        duplicates: ``error`` (refuse), ``first`` / ``last`` (keep the first / last occurrence in file
            order), ``max_rating`` (keep the highest rating; ties keep the first occurrence).
        min_rating: keep interactions whose rating is >= this value; None keeps all.
        user_core: minimum interactions per user (0 or 1: no constraint).
        item_core: minimum interactions per item (0 or 1: no constraint).
    """

    duplicates: str = "error"
    min_rating: float | None = None
    user_core: int = 0
    item_core: int = 0

    def __post_init__(self) -> None:
        if self.duplicates not in DUPLICATE_POLICIES:
            raise ConfigError(
                f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, got {self.duplicates!r}"
            )
        for name in ("user_core", "item_core"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {v!r}")
        if self.min_rating is not None and not np.isfinite(float(self.min_rating)):
            raise ConfigError(f"min_rating must be a finite number, got {self.min_rating!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Counts:
    """Distinct users, distinct items and rows of an interaction frame."""

    users: int
    items: int
    interactions: int

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Counts:
        return cls(_n_distinct(frame["user"]), _n_distinct(frame["item"]), len(frame))


def _dense_codes(col: pd.Series) -> tuple[np.ndarray, int]:
    """Integer codes of a column and their upper bound: ``id - min`` for compact integer ids (no hashing,
    the common case), else ``pd.factorize`` codes."""
    values = col.to_numpy()
    if values.dtype.kind in "iu" and len(values):
        lo, hi = int(values.min()), int(values.max())
        if hi - lo <= 4 * len(values) + 1_000_000:
            return (values - lo).astype(np.int64, copy=False), hi - lo + 1
    codes, uniques = pd.factorize(col)
    return codes.astype(np.int64, copy=False), max(len(uniques), 1)


def _n_distinct(col: pd.Series) -> int:
    codes, n = _dense_codes(col)
    return int(np.count_nonzero(np.bincount(codes, minlength=n))) if len(codes) else 0


@dataclass(frozen=True)
class StepRecord:
    """One preprocessing step: its name, parameters and the counts before and after it."""

    step: str
    params: dict[str, Any] = field(default_factory=dict)
    before: Counts = Counts(0, 0, 0)
    after: Counts = Counts(0, 0, 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "params": dict(self.params),
            "before": asdict(self.before),
            "after": asdict(self.after),
        }


def _pair_codes(frame: pd.DataFrame) -> np.ndarray:
    """One int64 code per (user, item) pair, equal iff the pair is equal."""
    u, _ = _dense_codes(frame["user"])
    i, n_items = _dense_codes(frame["item"])
    return u * n_items + i


def drop_duplicates(frame: pd.DataFrame, policy: str, *, source: str = "") -> pd.DataFrame:
    """Resolve repeated (user, item) pairs by ``policy`` (see :class:`PreprocessConfig`).

    Sort-based (pandas' hash-based ``duplicated`` is an order of magnitude slower at 20M rows): the
    common no-duplicate case costs one sort of the pair codes.
    """
    codes = _pair_codes(frame)
    if len(codes) < 2 or not (np.diff(np.sort(codes)) == 0).any():
        return frame
    if policy == "max_rating":
        if "rating" not in frame.columns:
            raise DataError(
                "duplicates='max_rating' needs a rating column", file=source or None, field="rating"
            )
        # Stable: among equal (pair, rating) the earliest row comes first.
        order = np.lexsort((-frame["rating"].to_numpy(), codes))
    else:
        order = np.argsort(codes, kind="stable")  # file order inside each run of equal pairs
    sc = codes[order]
    new_run = np.concatenate(([True], sc[1:] != sc[:-1]))
    if policy == "error":
        run_id = np.cumsum(new_run) - 1
        run_len = np.bincount(run_id)
        involved = np.zeros(len(codes), dtype=bool)
        involved[order] = run_len[run_id] > 1
        first = int(np.flatnonzero(involved)[0])
        user, item = frame["user"].iloc[first], frame["item"].iloc[first]
        raise DataError(
            f"{int((run_len > 1).sum())} duplicate (user, item) pairs ({int(involved.sum())} rows); set "
            "preprocessing duplicates to first, last or max_rating",
            file=source or None,
            field="user,item",
            value=(getattr(user, "item", lambda: user)(), getattr(item, "item", lambda: item)()),
        )
    if policy == "last":
        chosen = np.concatenate((sc[1:] != sc[:-1], [True]))  # last row of each run
    else:  # first, max_rating: first row of each run
        chosen = new_run
    kept = np.sort(order[chosen])  # back to file order
    return frame.iloc[kept].reset_index(drop=True)


def k_core(frame: pd.DataFrame, user_core: int, item_core: int) -> tuple[pd.DataFrame, int]:
    """Iteratively keep users with >= ``user_core`` and items with >= ``item_core`` interactions.

    Returns:
        The filtered frame and the number of passes until nothing changed.
    """
    u, n_users = _dense_codes(frame["user"])
    i, n_items = _dense_codes(frame["item"])
    keep = np.ones(len(frame), dtype=bool)
    passes = 0
    while True:
        passes += 1
        uc = np.bincount(u[keep], minlength=n_users)
        ic = np.bincount(i[keep], minlength=n_items)
        new = keep & (uc[u] >= user_core) & (ic[i] >= item_core)
        if new.sum() == keep.sum():
            break
        keep = new
    if keep.all():
        return frame, passes
    return frame.loc[keep].reset_index(drop=True), passes


def preprocess(
    frame: pd.DataFrame, config: PreprocessConfig, *, source: str
) -> tuple[pd.DataFrame, list[StepRecord]]:
    """Apply the configured steps to an interaction frame.

    Args:
        frame: columns ``user, item[, rating][, timestamp]``.
        config: which steps run.
        source: where the frame came from (named in errors).

    Returns:
        The filtered frame and one :class:`StepRecord` per step that ran.

    Raises:
        DataError: duplicates under policy ``error``, a rating step without ratings, NaN or
            infinite ratings, or nothing left after filtering.
    """
    for col in ("user", "item"):
        if col not in frame.columns:
            raise DataError("missing column", file=source, field=col, value=list(frame.columns))
    if "rating" in frame.columns:
        _check_ratings(frame["rating"].to_numpy(dtype=np.float64), source)
    steps: list[StepRecord] = []

    before = Counts.of(frame)
    frame = drop_duplicates(frame, config.duplicates, source=source)
    steps.append(StepRecord("duplicates", {"policy": config.duplicates}, before, Counts.of(frame)))

    if config.min_rating is not None:
        if "rating" not in frame.columns:
            raise DataError("min_rating needs a rating column", file=source, field="rating")
        before = Counts.of(frame)
        frame = frame.loc[frame["rating"].to_numpy() >= config.min_rating].reset_index(drop=True)
        steps.append(StepRecord("min_rating", {"min_rating": config.min_rating}, before, Counts.of(frame)))
        _not_empty(frame, "min_rating", source)

    if config.user_core > 1 or config.item_core > 1:
        before = Counts.of(frame)
        frame, passes = k_core(frame, config.user_core, config.item_core)
        steps.append(
            StepRecord(
                "k_core",
                {"user_core": config.user_core, "item_core": config.item_core, "passes": passes},
                before,
                Counts.of(frame),
            )
        )
        _not_empty(frame, "k_core", source)
    _not_empty(frame, "load", source)
    return frame, steps


#: The largest rating the float32 rating array of an InteractionMatrix holds without becoming inf.
_MAX_RATING = float(np.finfo(np.float32).max)


def _check_ratings(ratings: np.ndarray, source: str) -> None:
    """Refuse NaN, infinite and float32-overflowing ratings, naming the first one (row and value).

    Parsers refuse them with the file's line; this also covers frames built in code and readers
    that do not check (a rating of ``1e39`` is finite here but ``inf`` once stored as float32).
    """
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(ratings) | (np.abs(ratings) > _MAX_RATING)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        v = float(ratings[r])
        what = "NaN" if np.isnan(v) else "infinite" if np.isinf(v) else "out-of-range (beyond float32)"
        raise DataError(
            f"{what} rating in row {r} (0-based, {int(bad.sum())} such rows); ratings must be finite numbers",
            file=source,
            field="rating",
            value=v,
        )


def _not_empty(frame: pd.DataFrame, step: str, source: str) -> None:
    if len(frame) == 0:
        raise DataError(f"no interactions left after {step}", file=source)
