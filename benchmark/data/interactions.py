"""The immutable user x item interaction matrix every part of reprorec works on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmark.errors import DataError
from benchmark.fingerprint import sha256_arrays


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class InteractionMatrix:
    """Users x items implicit-feedback matrix with id maps and optional ratings/timestamps.

    ``matrix`` is a canonical CSR matrix (float32, sorted indices, no duplicates, every stored value
    1.0): an entry means "the user interacted with the item". ``ratings`` and ``timestamps``, when
    present, are aligned with ``matrix.data`` (entry ``k`` of the CSR order). Row ``u`` is the user
    with external id ``user_ids[u]``; column ``i`` the item ``item_ids[i]``.

    All parts of one dataset (a split's train, validation and test) share the same ``user_ids`` and
    ``item_ids``, so indices agree between them. The arrays are made read-only: treat instances as
    values. Build them with :meth:`from_frame` or :meth:`from_csr`.

    Attributes:
        matrix: CSR float32 [n_users, n_items], all stored values 1.0.
        user_ids: external user ids, index -> id.
        item_ids: external item ids, index -> id.
        ratings: float32 per stored entry, or None.
        timestamps: int64 per stored entry (unix seconds), or None.
        name: a human-readable name (dataset and part), not part of the fingerprint.
    """

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    ratings: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        m = self.matrix
        if not sp.issparse(m) or m.format != "csr":
            raise TypeError("InteractionMatrix.matrix must be a scipy CSR matrix")
        if m.shape != (len(self.user_ids), len(self.item_ids)):
            raise DataError(
                f"matrix shape {m.shape} does not match {len(self.user_ids)} user ids "
                f"x {len(self.item_ids)} item ids"
            )
        for label, arr in (("ratings", self.ratings), ("timestamps", self.timestamps)):
            if arr is not None and len(arr) != m.nnz:
                raise DataError(f"{label} has {len(arr)} values for {m.nnz} interactions")
        for arr in (m.data, m.indices, m.indptr, self.user_ids, self.item_ids):
            _readonly(arr)
        for opt in (self.ratings, self.timestamps):
            if opt is not None:
                _readonly(opt)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_csr(
        cls,
        matrix: sp.spmatrix | sp.sparray,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
        *,
        name: str = "",
    ) -> InteractionMatrix:
        """Build from any sparse matrix: every non-zero entry becomes one interaction.

        Ids default to ``0..n-1``. Values are discarded (binarised to 1.0).
        """
        csr = sp.csr_matrix(matrix, dtype=np.float32, copy=True)  # type: ignore[call-overload]
        csr.sum_duplicates()
        csr.eliminate_zeros()
        csr.sort_indices()
        csr.data[:] = 1.0
        csr.indptr = csr.indptr.astype(np.int64)
        csr.indices = csr.indices.astype(np.int32)
        n_users, n_items = csr.shape
        uid = np.arange(n_users, dtype=np.int64) if user_ids is None else np.asarray(user_ids)
        iid = np.arange(n_items, dtype=np.int64) if item_ids is None else np.asarray(item_ids)
        return cls(csr, uid.copy(), iid.copy(), name=name)

    @classmethod
    def from_indices(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        *,
        ratings: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
        name: str = "",
    ) -> InteractionMatrix:
        """Build from parallel arrays of user/item **indices** into given id arrays.

        (user, item) pairs must be unique (resolve duplicates before: see ``preprocess``).
        Entries are sorted into CSR order and ratings/timestamps are permuted with them.
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        n_users, n_items = len(user_ids), len(item_ids)
        if len(users) != len(items):
            raise DataError(f"{len(users)} user indices but {len(items)} item indices")
        if len(users) and (users.min() < 0 or users.max() >= n_users):
            raise DataError("user index out of range", value=int(users.max()))
        if len(items) and (items.min() < 0 or items.max() >= n_items):
            raise DataError("item index out of range", value=int(items.max()))
        # one int64 key sorts into CSR order far faster than a two-key lexsort at 20M rows
        key = users * max(n_items, 1) + items
        order = np.argsort(key)
        users, items = users[order], items[order]
        sorted_key = key[order]
        dup = np.flatnonzero(sorted_key[1:] == sorted_key[:-1])
        if len(dup):
            k = int(dup[0])
            raise DataError(
                "duplicate (user, item) pair; choose a duplicates policy in preprocessing",
                value=(_py(user_ids[users[k]]), _py(item_ids[items[k]])),
            )
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
        csr = sp.csr_matrix(
            (np.ones(len(items), dtype=np.float32), items.astype(np.int32), indptr),
            shape=(n_users, n_items),
        )
        r = None if ratings is None else np.asarray(ratings, dtype=np.float32)[order].copy()
        t = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)[order].copy()
        return cls(csr, np.asarray(user_ids).copy(), np.asarray(item_ids).copy(), r, t, name=name)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str | None = None,
        timestamp_col: str | None = None,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
        name: str = "",
    ) -> InteractionMatrix:
        """Build from a frame of external ids (one row per interaction, unique pairs).

        Ids are sorted (numerically when all ids are integers) unless ``user_ids`` / ``item_ids``
        fix the id space, e.g. to build a split part in its dataset's id space; then every id in the
        frame must occur in them.
        """
        for col in (user_col, item_col, rating_col, timestamp_col):
            if col is not None and col not in frame.columns:
                raise DataError("missing column", field=col, value=list(frame.columns))
        u_codes, uid = _encode(frame[user_col].to_numpy(), user_ids, user_col)
        i_codes, iid = _encode(frame[item_col].to_numpy(), item_ids, item_col)
        ratings = None if rating_col is None else frame[rating_col].to_numpy(np.float32)
        ts = None if timestamp_col is None else frame[timestamp_col].to_numpy(np.int64)
        return cls.from_indices(u_codes, i_codes, uid, iid, ratings=ratings, timestamps=ts, name=name)

    # ------------------------------------------------------------------ views
    @property
    def n_users(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def nnz(self) -> int:
        """Number of interactions."""
        return int(self.matrix.nnz)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_users, self.n_items)

    @cached_property
    def user_index(self) -> Mapping[Any, int]:
        """External user id -> row index."""
        return {u: k for k, u in enumerate(self.user_ids.tolist())}

    @cached_property
    def item_index(self) -> Mapping[Any, int]:
        """External item id -> column index."""
        return {i: k for k, i in enumerate(self.item_ids.tolist())}

    def row_indices(self) -> np.ndarray:
        """User index of every stored entry, in CSR order (int64)."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.matrix.indptr))

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the canonical content: id maps, structure, ratings, timestamps."""
        m = self.matrix
        return sha256_arrays(
            [
                ("shape", np.asarray(m.shape, dtype=np.int64)),
                ("indptr", m.indptr.astype(np.int64)),
                ("indices", m.indices.astype(np.int64)),
                ("user_ids", _canonical_ids(self.user_ids)),
                ("item_ids", _canonical_ids(self.item_ids)),
                ("ratings", self.ratings),
                ("timestamps", self.timestamps),
            ]
        )

    def to_frame(self, *, external_ids: bool = False) -> pd.DataFrame:
        """One row per interaction: ``user, item[, rating][, timestamp]`` (indices by default)."""
        users = self.row_indices()
        items = self.matrix.indices.astype(np.int64)
        cols: dict[str, np.ndarray] = {
            "user": self.user_ids[users] if external_ids else users,
            "item": self.item_ids[items] if external_ids else items,
        }
        if self.ratings is not None:
            cols["rating"] = self.ratings
        if self.timestamps is not None:
            cols["timestamp"] = self.timestamps
        return pd.DataFrame(cols)

    def select(self, mask: np.ndarray, *, name: str | None = None) -> InteractionMatrix:
        """Keep the entries where the boolean ``mask`` (aligned with CSR order) is True.

        The id space (shape, ``user_ids``, ``item_ids``) is kept: this is how split parts are made.
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.nnz,):
            raise ValueError(f"mask has shape {mask.shape}, expected ({self.nnz},)")
        users = self.row_indices()[mask]
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=self.n_users), out=indptr[1:])
        csr = sp.csr_matrix(
            (self.matrix.data[mask].copy(), self.matrix.indices[mask].copy(), indptr),
            shape=self.shape,
        )
        return InteractionMatrix(
            csr,
            self.user_ids,
            self.item_ids,
            None if self.ratings is None else self.ratings[mask].copy(),
            None if self.timestamps is None else self.timestamps[mask].copy(),
            name=self.name if name is None else name,
        )

    def union(self, other: InteractionMatrix, *, name: str | None = None) -> InteractionMatrix:
        """Interactions of both matrices (same id space, disjoint entries), e.g. train + validation."""
        if not self.same_id_space(other):
            raise DataError("cannot combine interaction matrices with different id spaces")
        frames = [self.to_frame(), other.to_frame()]
        f = pd.concat(frames, ignore_index=True)
        has_r = self.ratings is not None and other.ratings is not None
        has_t = self.timestamps is not None and other.timestamps is not None
        return InteractionMatrix.from_indices(
            f["user"].to_numpy(),
            f["item"].to_numpy(),
            self.user_ids,
            self.item_ids,
            ratings=f["rating"].to_numpy() if has_r else None,
            timestamps=f["timestamp"].to_numpy() if has_t else None,
            name=self.name if name is None else name,
        )

    def same_id_space(self, other: InteractionMatrix) -> bool:
        """True when both share shape and id maps (so indices mean the same users/items)."""
        return (
            self.shape == other.shape
            and (self.user_ids is other.user_ids or np.array_equal(self.user_ids, other.user_ids))
            and (self.item_ids is other.item_ids or np.array_equal(self.item_ids, other.item_ids))
        )

    def user_counts(self) -> np.ndarray:
        """Interactions per user (int64)."""
        return np.diff(self.matrix.indptr).astype(np.int64)

    def item_counts(self) -> np.ndarray:
        """Interactions per item (int64), i.e. item popularity."""
        return np.bincount(self.matrix.indices, minlength=self.n_items).astype(np.int64)

    def __repr__(self) -> str:
        extras = [x for x, v in (("ratings", self.ratings), ("timestamps", self.timestamps)) if v is not None]
        return (
            f"InteractionMatrix({self.name or 'unnamed'}: {self.n_users} users x {self.n_items} items, "
            f"{self.nnz} interactions{', ' + ', '.join(extras) if extras else ''})"
        )


def _canonical_ids(ids: np.ndarray) -> np.ndarray:
    """Integer ids hash as int64 and everything else as text, whatever dtype they were read with."""
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64, copy=False)
    if ids.dtype.kind in "OUST":
        return ids.astype(str)
    return ids


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _encode(values: np.ndarray, ids: np.ndarray | None, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Map external ids to codes; sort the id space unless one is given."""
    if ids is None:
        if values.dtype.kind in "iu" and len(values):
            # compact integer ids: rank by counting, O(n) and without hashing
            lo, hi = int(values.min()), int(values.max())
            if hi - lo <= 4 * len(values) + 1_000_000:
                shifted = (values - lo).astype(np.int64, copy=False)
                present = np.bincount(shifted, minlength=hi - lo + 1) > 0
                rank = np.cumsum(present) - 1
                return rank[shifted], (np.flatnonzero(present) + lo).astype(np.int64)
        codes, uniques = pd.factorize(values, sort=True)
        uniques = np.asarray(uniques)
        if uniques.dtype.kind in "iu":
            uniques = uniques.astype(np.int64)
        return codes.astype(np.int64), uniques
    ids = np.asarray(ids)
    index = pd.Index(ids)
    if not index.is_unique:
        raise DataError("id map has duplicate ids", field=column)
    codes = index.get_indexer(values)
    if (codes < 0).any():
        bad = values[np.flatnonzero(codes < 0)[0]]
        raise DataError("id not in the dataset's id space", field=column, value=bad)
    return codes.astype(np.int64), ids
