"""Splitters: plain functions ``(data, *, rng, **params) -> Split`` that hold out a test set.

Every splitter returns a :class:`~benchmark.splits.split.Split` with ``train`` and ``test`` (no
validation, no candidates) in the id space of ``data``; :func:`carve_validation` applies a splitter
to a split's train part to carve out a validation set. All work is vectorised: per-user selections
rank every interaction inside its user with one ``np.lexsort`` and compare the rank with the
user's quota, so no Python loop runs over users or interactions.

Randomness: a splitter draws from ``rng`` only (one uniform key per interaction, in CSR order, plus
one permutation of users for :func:`user_kfold`), so the same seed gives the same split.

Users with few interactions (the rules every per-user splitter follows):

* A user keeps at least ``min_train`` (default 1) interactions in train. A user with
  ``n_u <= min_train`` interactions keeps them all in train and gets no test interaction, e.g. a
  user with a single interaction under leave-one-out or per-user holdout.
* The per-user test quota is ``test_fraction * n_u`` rounded by ``rounding``: ``"round"``
  (half up, the default), ``"ceil"`` (e.g. Anelli et al. 2022: ``ceil(0.2 n_u)``) or ``"floor"``,
  then capped at ``n_u - min_train``. A quota that rounds to 0 (``n_u = 2`` at 20%) leaves the
  user without test interactions.
* Users without test interactions simply do not take part in evaluation (the evaluator only scores
  users with test items); users without train interactions (possible only under global splits:
  :func:`random_holdout`, :func:`temporal_global`) are cold-start users the evaluator sees with
  an empty history. Nobody is dropped silently: ``Split.params`` counts them as
  ``n_users_without_test``, ``n_users_without_train`` and ``n_users_below_min_train``.

Temporal splitters raise :class:`~benchmark.errors.LeakageError` if a test interaction is older
than the cut (the global one, or the user's own latest training interaction).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError, DataError, LeakageError, UnknownNameError
from benchmark.fingerprint import canonical_json
from benchmark.splits.split import Split

Rounding = Literal["round", "ceil", "floor"]
_KEY_BITS = 32
_EPS = 1e-9  # guards float products such as 0.7 * 10 = 7.000000000000001 before ceil/floor


# ---------------------------------------------------------------------------------------- helpers
def _check_fraction(test_fraction: float, name: str = "test_fraction") -> float:
    f = float(test_fraction)
    if not 0.0 < f < 1.0:
        raise ConfigError(f"{name} must be in (0, 1), got {test_fraction!r}")
    return f


def _check_min_train(min_train: int) -> int:
    if int(min_train) != min_train or min_train < 0:
        raise ConfigError(f"min_train must be a non-negative integer, got {min_train!r}")
    return int(min_train)


def _need_timestamps(data: InteractionMatrix, splitter: str) -> np.ndarray:
    if data.timestamps is None:
        raise DataError(
            f"splitter {splitter!r} needs timestamps but the data has none",
            field="timestamps",
            value=data.name or None,
        )
    return data.timestamps


def _quota(counts: np.ndarray, fraction: float, rounding: str, min_train: int) -> np.ndarray:
    """Per-user number of held-out interactions: rounded fraction, capped at ``n_u - min_train``."""
    raw = fraction * counts.astype(np.float64)
    if rounding == "round":
        n = np.floor(raw + 0.5 + _EPS)
    elif rounding == "ceil":
        n = np.ceil(raw - _EPS)
    elif rounding == "floor":
        n = np.floor(raw + _EPS)
    else:
        raise ConfigError(f"rounding must be 'round', 'ceil' or 'floor', got {rounding!r}")
    return np.clip(n.astype(np.int64), 0, np.maximum(counts - min_train, 0))


def random_keys(rng: np.random.Generator, n: int) -> np.ndarray:
    """The seeded per-interaction keys every random per-user choice uses (uint32 values, int64)."""
    return rng.integers(0, 1 << _KEY_BITS, size=n, dtype=np.int64)


def _rank_within_user(
    data: InteractionMatrix, keys: np.ndarray, *, latest_first: np.ndarray | None = None
) -> np.ndarray:
    """0-based rank of every entry inside its user, by ``keys`` ascending (0 <= keys < 2**32).

    With ``latest_first`` (timestamps), entries are ranked by timestamp descending first and
    ``keys`` only break ties. Equal keys (probability 2**-32 per pair for random keys) keep CSR
    order, i.e. item index. Implemented with stable argsorts of packed int64 keys, several times
    faster than ``np.lexsort`` on millions of entries; ``np.lexsort`` remains the fallback when
    the packed keys would not fit in 63 bits.
    """
    users = data.row_indices()
    if data.nnz == 0:
        return np.zeros(0, dtype=np.int64)
    user_bits = max(int(data.n_users - 1).bit_length(), 1)
    if latest_first is None:
        if user_bits + _KEY_BITS <= 63:
            order = np.argsort((users << _KEY_BITS) | keys, kind="stable")
        else:  # pragma: no cover - over 2**31 users
            order = np.lexsort((keys, users))
    else:
        age = int(latest_first.max()) - latest_first
        age_bits = max(int(age.max()).bit_length(), 1)
        if user_bits + age_bits <= 63 and data.nnz < (1 << 31):
            # sort by (user, age), then by (group of equal (user, age), key): two packed sorts of
            # nearly sorted data instead of a three-key lexsort
            packed = (users << age_bits) | age
            by_age = np.argsort(packed, kind="stable")
            p = packed[by_age]
            group = np.concatenate(([0], np.cumsum(p[1:] != p[:-1])))
            order = by_age[np.argsort((group << _KEY_BITS) | keys[by_age], kind="stable")]
        else:  # pragma: no cover - timestamp ranges beyond 2**(63 - user bits)
            order = np.lexsort((keys, -latest_first, users))
    rank = np.empty(data.nnz, dtype=np.int64)
    rank[order] = np.arange(data.nnz, dtype=np.int64) - data.matrix.indptr[users[order]]
    return rank


def _json_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters in their JSON form, so a split's params equal those of its reloaded copy."""
    return dict(json.loads(canonical_json(dict(params))))


def user_stats(train: InteractionMatrix, test: InteractionMatrix) -> dict[str, int]:
    """Counts of a split's users: with interactions, without test, without train."""
    n_tr, n_te = train.user_counts(), test.user_counts()
    return {
        "n_train": train.nnz,
        "n_test": test.nnz,
        "n_users": int(((n_tr + n_te) > 0).sum()),
        "n_users_without_test": int(((n_tr > 0) & (n_te == 0)).sum()),
        "n_users_without_train": int(((n_te > 0) & (n_tr == 0)).sum()),
    }


def _split_from_mask(data: InteractionMatrix, test_mask: np.ndarray, params: Mapping[str, Any]) -> Split:
    train = data.select(~test_mask, name=f"{data.name}/train" if data.name else "train")
    test = data.select(test_mask, name=f"{data.name}/test" if data.name else "test")
    return Split(train=train, test=test, params=_json_params({**params, **user_stats(train, test)})).check()


def _per_user_holdout_mask(
    data: InteractionMatrix,
    keys: np.ndarray,
    quota: np.ndarray,
) -> np.ndarray:
    """Hold out, per user, the ``quota[u]`` entries with the smallest ``keys``."""
    rank = _rank_within_user(data, keys)
    return rank < quota[data.row_indices()]


# ---------------------------------------------------------------------------------------- splitters
def random_holdout(data: InteractionMatrix, *, test_fraction: float, rng: np.random.Generator) -> Split:
    """Global random holdout: ``round(test_fraction * nnz)`` interactions drawn uniformly.

    Users are not protected: a user may lose all interactions to test (cold start) or keep all in
    train; both are counted in ``params``.
    """
    f = _check_fraction(test_fraction)
    n_test = int(np.floor(f * data.nnz + 0.5))
    mask = np.zeros(data.nnz, dtype=bool)
    mask[rng.permutation(data.nnz)[:n_test]] = True
    return _split_from_mask(data, mask, {"splitter": "random_holdout", "test_fraction": f})


def random_holdout_per_user(
    data: InteractionMatrix,
    *,
    test_fraction: float,
    rng: np.random.Generator,
    min_train: int = 1,
    rounding: Rounding = "round",
) -> Split:
    """Per-user random holdout: each user holds out ``test_fraction`` of their interactions.

    The quota per user follows the module rules (rounding, ``min_train`` cap); which interactions
    are held out is uniform at random (smallest random keys).
    """
    f = _check_fraction(test_fraction)
    m = _check_min_train(min_train)
    counts = data.user_counts()
    quota = _quota(counts, f, rounding, m)
    mask = _per_user_holdout_mask(data, random_keys(rng, data.nnz), quota)
    return _split_from_mask(
        data,
        mask,
        {
            "splitter": "random_holdout_per_user",
            "test_fraction": f,
            "min_train": m,
            "rounding": rounding,
            "n_users_below_min_train": int(((counts > 0) & (counts <= m)).sum()),
        },
    )


def leave_one_out(
    data: InteractionMatrix,
    *,
    rng: np.random.Generator,
    by: Literal["random", "latest"] = "random",
    min_train: int = 1,
) -> Split:
    """Leave-one-out: one test interaction per user with more than ``min_train`` interactions.

    ``by="random"`` holds out a uniformly random interaction; ``by="latest"`` the one with the
    largest timestamp (e.g. NeuMF, He et al. WWW 2017). Tie rule: among interactions sharing the
    user's latest timestamp, the one with the smallest seeded random key (:func:`random_keys`,
    drawn in CSR order) is held out, so ties are broken uniformly at random and reproducibly for a
    given seed.
    """
    if by not in ("random", "latest"):
        raise ConfigError(f"leave_one_out: by must be 'random' or 'latest', got {by!r}")
    m = _check_min_train(min_train)
    counts = data.user_counts()
    keys = random_keys(rng, data.nnz)
    if by == "latest":
        ts = _need_timestamps(data, "leave_one_out(by='latest')")
        rank = _rank_within_user(data, keys, latest_first=ts)
    else:
        rank = _rank_within_user(data, keys)
    mask = (rank == 0) & (counts[data.row_indices()] > m)
    split = _split_from_mask(
        data,
        mask,
        {
            "splitter": "leave_one_out",
            "by": by,
            "min_train": m,
            "n_users_below_min_train": int(((counts > 0) & (counts <= m)).sum()),
        },
    )
    if by == "latest":
        _check_user_cuts(split)
    return split


def temporal_global(
    data: InteractionMatrix,
    *,
    test_fraction: float | None = None,
    cut: int | str | None = None,
    rng: np.random.Generator | None = None,
) -> Split:
    """One global time cut: interactions at or after ``cut`` are test, earlier ones train.

    Give exactly one of ``cut`` (unix seconds, or a date string such as ``"2000-12-01"``, read as
    UTC) or ``test_fraction``; the latter sets ``cut`` to the timestamp of the
    ``round(test_fraction * nnz)``-th latest interaction. Interactions sharing the cut's timestamp
    all go to test (a time cut cannot split one instant), so the realised test fraction can exceed
    the requested one; ``params`` records the cut and the realised counts. ``rng`` is accepted for
    the common splitter signature and not used: the split is deterministic.
    """
    del rng
    ts = _need_timestamps(data, "temporal_global")
    if (test_fraction is None) == (cut is None):
        raise ConfigError("temporal_global needs exactly one of test_fraction and cut")
    if cut is not None:
        if isinstance(cut, str):
            stamp = pd.Timestamp(cut)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
            cut_s = int(stamp.timestamp())
        else:
            cut_s = int(cut)
        f = None
    else:
        f = _check_fraction(test_fraction)  # type: ignore[arg-type]
        n_test = int(np.floor(f * data.nnz + 0.5))
        if n_test == 0:  # nothing to hold out: the cut lies after the last interaction
            cut_s = int(ts.max()) + 1 if data.nnz else 0
        else:
            cut_s = int(np.partition(ts, data.nnz - n_test)[data.nnz - n_test])
    mask = ts >= cut_s
    split = _split_from_mask(data, mask, {"splitter": "temporal_global", "test_fraction": f, "cut": cut_s})
    _check_global_cut(split, cut_s)
    return split


def temporal_per_user(
    data: InteractionMatrix,
    *,
    test_fraction: float,
    rng: np.random.Generator | None = None,
    min_train: int = 1,
    rounding: Rounding = "round",
) -> Split:
    """Per-user temporal holdout: each user's latest ``test_fraction`` of interactions are test.

    Quotas follow the module rules. Ties on the boundary timestamp are broken by the seeded random
    key when ``rng`` is given, else by item index (higher index to test); either way no test
    interaction is older than the user's latest training interaction (checked).
    """
    f = _check_fraction(test_fraction)
    m = _check_min_train(min_train)
    ts = _need_timestamps(data, "temporal_per_user")
    counts = data.user_counts()
    quota = _quota(counts, f, rounding, m)
    if rng is not None:
        tie = random_keys(rng, data.nnz)
    else:  # higher item index first
        tie = (data.n_items - 1) - data.matrix.indices.astype(np.int64)
    rank = _rank_within_user(data, tie, latest_first=ts)  # rank 0 = latest
    mask = rank < quota[data.row_indices()]
    split = _split_from_mask(
        data,
        mask,
        {
            "splitter": "temporal_per_user",
            "test_fraction": f,
            "min_train": m,
            "rounding": rounding,
            "n_users_below_min_train": int(((counts > 0) & (counts <= m)).sum()),
        },
    )
    _check_user_cuts(split)
    return split


def user_kfold(
    data: InteractionMatrix,
    *,
    n_folds: int,
    fold: int,
    test_fraction: float,
    rng: np.random.Generator,
    min_train: int = 1,
    rounding: Rounding = "round",
) -> Split:
    """User-based k-fold (strong generalisation, Liang et al. WWW 2018 "Mult-VAE").

    Users with interactions are permuted with ``rng`` and dealt round-robin into ``n_folds`` folds
    of (nearly) equal size. Users of fold ``fold`` hold out ``test_fraction`` of their interactions
    (per-user random, module quota rules); the rest of their interactions stay in train as their
    fold-in history, because a :class:`Split` has no separate fold-in part and every model here
    scores users from the train matrix. Users of the other folds stay fully in train.

    The fold assignment depends only on ``rng``'s first draw, so the same generator state (the
    same seed: :func:`benchmark.splits.make.make_split` leaves ``fold`` out of the seed) gives the
    same partition for every ``fold``, and the k test user sets are disjoint and cover all users.
    """
    if int(n_folds) != n_folds or n_folds < 2:
        raise ConfigError(f"user_kfold: n_folds must be an integer >= 2, got {n_folds!r}")
    if int(fold) != fold or not 0 <= fold < n_folds:
        raise ConfigError(f"user_kfold: fold must be in 0..{n_folds - 1}, got {fold!r}")
    f = _check_fraction(test_fraction)
    m = _check_min_train(min_train)
    counts = data.user_counts()
    active = np.flatnonzero(counts > 0)
    fold_of = np.full(data.n_users, -1, dtype=np.int64)
    fold_of[rng.permutation(active)] = np.arange(len(active), dtype=np.int64) % int(n_folds)
    quota = np.where(fold_of == fold, _quota(counts, f, rounding, m), 0)
    mask = _per_user_holdout_mask(data, random_keys(rng, data.nnz), quota)
    in_fold = fold_of == fold
    return _split_from_mask(
        data,
        mask,
        {
            "splitter": "user_kfold",
            "n_folds": int(n_folds),
            "fold": int(fold),
            "test_fraction": f,
            "min_train": m,
            "rounding": rounding,
            "n_fold_users": int(in_fold.sum()),
            "n_users_below_min_train": int((in_fold & (counts <= m)).sum()),
        },
    )


# ---------------------------------------------------------------------------------------- guards
def _check_global_cut(split: Split, cut: int) -> None:
    """LeakageError unless every test interaction is at/after ``cut`` and every train one before."""
    te, tr = split.test.timestamps, split.train.timestamps
    if te is not None and len(te) and int(te.min()) < cut:
        raise LeakageError(
            f"temporal split: a test interaction at {int(te.min())} is older than the cut {cut}"
        )
    if tr is not None and len(tr) and int(tr.max()) >= cut:
        raise LeakageError(
            f"temporal split: a train interaction at {int(tr.max())} is not before the cut {cut}"
        )


def _check_user_cuts(split: Split) -> None:
    """LeakageError if a user's test interaction is older than that user's latest train one."""
    tr, te = split.train, split.test
    if tr.timestamps is None or te.timestamps is None:
        return
    last_train = np.full(tr.n_users, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last_train, tr.row_indices(), tr.timestamps)
    older = te.timestamps < last_train[te.row_indices()]
    if older.any():
        k = int(np.flatnonzero(older)[0])
        u = int(te.row_indices()[k])
        raise LeakageError(
            f"temporal split: {int(older.sum())} test interactions are older than their user's "
            f"training cut (first: user {te.user_ids[u]!r}, test at {int(te.timestamps[k])}, "
            f"cut {int(last_train[u])})"
        )


# ---------------------------------------------------------------------------------------- registry
SPLITTERS: dict[str, Callable[..., Split]] = {
    "random_holdout": random_holdout,
    "random_holdout_per_user": random_holdout_per_user,
    "leave_one_out": leave_one_out,
    "temporal_global": temporal_global,
    "temporal_per_user": temporal_per_user,
    "user_kfold": user_kfold,
}


def get_splitter(name: str) -> Callable[..., Split]:
    """The splitter registered as ``name``; :class:`UnknownNameError` lists the known ones."""
    try:
        return SPLITTERS[name]
    except KeyError:
        raise UnknownNameError("splitter", name, list(SPLITTERS)) from None


def apply_splitter(
    name: str, data: InteractionMatrix, params: Mapping[str, Any], *, rng: np.random.Generator
) -> Split:
    """Run splitter ``name`` with ``params``; bad parameter names become a :class:`ConfigError`."""
    fn = get_splitter(name)
    try:
        return fn(data, rng=rng, **dict(params))
    except TypeError as exc:
        if "unexpected keyword" in str(exc) or "missing" in str(exc):
            raise ConfigError(f"splitter {name!r}: {exc} (params: {dict(params)!r})") from exc
        raise


def carve_validation(
    split: Split, splitter: str, params: Mapping[str, Any], *, rng: np.random.Generator
) -> Split:
    """Carve a validation set out of ``split.train`` with splitter ``splitter``.

    The inner splitter's train becomes the new train and its test the validation; ``test`` and
    ``test_candidates`` are unchanged. The validation's parameters and user counts go into
    ``params["validation"]``. Temporal splitters keep their leakage guard (validation is not
    older than the remaining train).
    """
    if split.validation is not None:
        raise ConfigError("this split already has a validation part")
    inner = apply_splitter(splitter, split.train, params, rng=rng)
    base = split.train.name
    return Split(
        train=dataclasses.replace(inner.train, name=base),
        validation=dataclasses.replace(inner.test, name=f"{base}/validation" if base else "validation"),
        test=split.test,
        test_candidates=split.test_candidates,
        params=_json_params({**split.params, "validation": dict(inner.params)}),
    ).check()
