"""The frozen train / validation / test split with its fingerprints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import LeakageError
from benchmark.fingerprint import sha256_arrays, sha256_json

PARTS = ("train", "validation", "test", "test_candidates")


def candidates_fingerprint(candidates: sp.csr_matrix | None) -> str | None:
    """sha256 of a candidate matrix's structure (None when absent)."""
    if candidates is None:
        return None
    c = candidates.tocsr()
    c.sort_indices()
    return sha256_arrays(
        [
            ("shape", np.asarray(c.shape, dtype=np.int64)),
            ("indptr", c.indptr.astype(np.int64)),
            ("indices", c.indices.astype(np.int64)),
        ]
    )


@dataclass(frozen=True, eq=False)
class Split:
    """A train / optional validation / test split of one dataset, with fingerprints.

    All parts share the dataset's id space (same shape and id maps). ``test_candidates``, when
    present, is a boolean CSR matrix [n_users, n_items] whose row ``u`` lists the fixed negative
    candidates against which user ``u``'s test items are ranked (sampled-ranking protocols).

    ``validation`` is carved out of the training data: ``train`` then holds only what the model sees
    while tuning, and the final refit uses ``train_full`` (train + validation).

    Attributes:
        train: training interactions (without validation).
        test: test interactions.
        validation: validation interactions, or None.
        test_candidates: fixed negative candidates per test user, or None (full ranking).
        params: the parameters that made this split (splitter name, its arguments, seed, source).
        fingerprints: sha256 per part (``train``, ``validation``, ``test``, ``test_candidates``)
            and ``split`` for the whole.
    """

    train: InteractionMatrix
    test: InteractionMatrix
    validation: InteractionMatrix | None = None
    test_candidates: sp.csr_matrix | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    fingerprints: Mapping[str, str | None] = field(init=False)

    def __post_init__(self) -> None:
        parts = [self.train, self.test] + ([self.validation] if self.validation is not None else [])
        for p in parts[1:]:
            if not self.train.same_id_space(p):
                raise LeakageError("split parts do not share one id space (shape / id maps)")
        if self.test_candidates is not None:
            c = sp.csr_matrix(self.test_candidates, dtype=bool)
            c.sort_indices()
            if c.shape != self.train.shape:
                raise LeakageError(f"test_candidates shape {c.shape} != data shape {self.train.shape}")
            object.__setattr__(self, "test_candidates", c)
        fps: dict[str, str | None] = {
            "train": self.train.fingerprint,
            "validation": None if self.validation is None else self.validation.fingerprint,
            "test": self.test.fingerprint,
            "test_candidates": candidates_fingerprint(self.test_candidates),
        }
        fps["split"] = sha256_json({k: fps[k] for k in PARTS})
        object.__setattr__(self, "fingerprints", fps)
        object.__setattr__(self, "params", dict(self.params))

    @property
    def fingerprint(self) -> str:
        """sha256 identifying the whole split (all parts)."""
        fp = self.fingerprints["split"]
        assert fp is not None
        return fp

    @property
    def train_full(self) -> InteractionMatrix:
        """Train + validation: what the final refit is trained on."""
        if self.validation is None:
            return self.train
        return self.train.union(self.validation, name=f"{self.train.name}+validation")

    def check(self) -> Split:
        """Raise :class:`LeakageError` unless parts are pairwise disjoint and candidates are clean.

        Returns ``self`` so it can be chained. Temporal guards live with the temporal splitters,
        which know their cut.
        """
        for pair, overlap in self.shared_pairs().items():
            if overlap:
                a, b = pair.split("/")
                raise LeakageError(f"{a} and {b} share {overlap} (user, item) interactions")
        if self.test_candidates is not None:
            c = self.test_candidates.astype(np.float32)
            for name, part in self._parts().items():
                bad = c.multiply(part.matrix).nnz
                if bad:
                    raise LeakageError(
                        f"test_candidates contain {bad} items that are {name} interactions of the same user"
                    )
        return self

    def _parts(self) -> dict[str, InteractionMatrix]:
        parts = {"train": self.train, "validation": self.validation, "test": self.test}
        return {k: v for k, v in parts.items() if v is not None}

    def shared_pairs(self) -> dict[str, int]:
        """(user, item) pairs each two parts share: ``{"train/test": n, ...}`` (0 after :meth:`check`)."""
        parts = self._parts()
        names = list(parts)
        return {
            f"{a}/{b}": int(parts[a].matrix.multiply(parts[b].matrix).nnz)
            for i, a in enumerate(names)
            for b in names[i + 1 :]
        }

    def __repr__(self) -> str:
        v = f", validation={self.validation.nnz}" if self.validation is not None else ""
        c = ", with test candidates" if self.test_candidates is not None else ""
        return (
            f"Split({self.params.get('splitter', '?')}: train={self.train.nnz}{v}, "
            f"test={self.test.nnz}{c}, fingerprint={self.fingerprint[:12]})"
        )
