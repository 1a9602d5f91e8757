"""EASE: the closed-form item-item linear autoencoder (Steck 2019)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import psutil
import scipy.linalg
import scipy.sparse as sp

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError
from benchmark.models import Param, Recommender

#: Dense item x item float32 matrices alive at the peak of ``fit`` (Gram, its inverse in place,
#: LAPACK workspace and the final weights), used to estimate memory before allocating.
DENSE_COPIES = 3


def ease_memory_bytes(n_items: int) -> int:
    """Estimated peak memory of :meth:`EASE.fit` for ``n_items`` items (float32 item x item)."""
    return DENSE_COPIES * 4 * int(n_items) ** 2


class EASE(Recommender):
    """Embarrassingly Shallow Autoencoder, solved in closed form.

    Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019. With the Gram matrix
    ``G = X^T X + l2 I`` and ``P = G^{-1}``, the item-item weights are ``B = I - P diag(1/diag(P))``
    (zero diagonal) and user ``u`` scores ``X[u] B``. Everything is float32.

    The dense item x item matrices need about ``3 * 4 * n_items**2`` bytes; ``fit`` refuses with a
    :class:`ConfigError` stating that estimate when it exceeds the available memory (``psutil``) or
    ``max_memory_gib``, before allocating anything.

    Users without training interactions score 0 everywhere; items without training interactions
    get a zero column in ``B`` and score 0.

    Args:
        l2: L2 regularisation added to the diagonal of the Gram matrix (Steck's lambda).
        max_memory_gib: optional cap on the estimated memory, in GiB (None: available memory only).
    """

    param_specs: ClassVar[dict[str, Param]] = {
        "l2": Param("float", low=1e-6, high=1e12),
        "max_memory_gib": Param("float", low=0.0, nullable=True),
    }

    def __init__(self, l2: float = 500.0, max_memory_gib: float | None = None) -> None:
        self.l2 = l2
        self.max_memory_gib = max_memory_gib

    def fit(self, train: InteractionMatrix) -> EASE:
        self.validate_params()
        self._check_memory(train.n_items)
        x = train.matrix
        gram = np.asarray((x.T @ x).toarray(), dtype=np.float32)
        gram[np.diag_indices_from(gram)] += np.float32(self.l2)
        # Gram + l2 I is symmetric positive definite for l2 > 0; inv works in place on it.
        p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        del gram
        p /= -np.diag(p)[None, :]
        p[np.diag_indices_from(p)] = 0.0
        self.n_items_ = train.n_items
        self.train_ = x
        self.weights_ = np.asarray(p, dtype=np.float32)
        return self

    def _check_memory(self, n_items: int) -> None:
        need = ease_memory_bytes(n_items)
        available = psutil.virtual_memory().available
        limits = [("available memory", available)]
        if self.max_memory_gib is not None:
            limits.append(("max_memory_gib", int(self.max_memory_gib * 2**30)))
        for label, limit in limits:
            if need > limit:
                raise ConfigError(
                    f"EASE: the dense {n_items} x {n_items} item matrices need about "
                    f"{need / 2**30:.2f} GiB ({need:,} bytes: {DENSE_COPIES} float32 copies), more than "
                    f"the {label} ({limit / 2**30:.2f} GiB, {limit:,} bytes); use fewer items or a "
                    "sparse model (SLIM, ItemKNN)"
                )

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted("weights_")
        rows = sp.csr_matrix(self.train_[np.asarray(users, dtype=np.int64)])
        return np.asarray(rows @ self.weights_, dtype=np.float32)
