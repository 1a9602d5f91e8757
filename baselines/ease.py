"""EASE: the closed-form item-item linear autoencoder (Steck 2019)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import psutil
import scipy.linalg
import scipy.sparse as sp

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError
from benchmark.models import ModelTags, Param, Recommender

#: Dense item x item float32 matrices alive at the peak of the primal solve (Gram, its inverse in
#: place, LAPACK workspace and the final weights), used to estimate memory before allocating.
DENSE_COPIES = 3


def ease_memory_bytes(n_items: int, n_users: int | None = None) -> int:
    """Estimated peak memory of :meth:`EASE.fit` (``n_users`` given: of the path ``fit`` takes).

    Primal (``n_users >= n_items`` or unknown): three float32 item x item matrices. Dual (fewer
    users than items): the float64 item x item product, the float32 weights, the float64
    user x item and two user x user matrices.
    """
    n_items = int(n_items)
    if n_users is None or n_users >= n_items:
        return DENSE_COPIES * 4 * n_items**2
    n_users = int(n_users)
    return 12 * n_items**2 + 8 * n_users * n_items + 16 * n_users**2


def ease_weights_primal(x: sp.csr_matrix, l2: float) -> np.ndarray:
    """``B = I - P diag(1/diag(P))``, ``P = (X^T X + l2 I)^{-1}``: one item x item inverse (float32)."""
    gram = np.asarray((x.T @ x).toarray(), dtype=np.float32)
    gram[np.diag_indices_from(gram)] += np.float32(l2)
    # Gram + l2 I is symmetric positive definite for l2 > 0; inv works in place on it.
    p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    del gram
    p /= -np.diag(p)[None, :]
    p[np.diag_indices_from(p)] = 0.0
    return np.asarray(p, dtype=np.float32)


def ease_weights_dual(x: sp.csr_matrix, l2: float) -> np.ndarray:
    """The same ``B`` through the user x user system, for data with fewer users than items.

    Woodbury: ``(X^T X + l2 I)^{-1} = (I - X^T (X X^T + l2 I)^{-1} X) / l2``. The inverse is
    ``n_users^3`` instead of ``n_items^3`` (CiteULike-a: 5,551 users vs 16,980 items, ~30x fewer
    operations); the products with the sparse ``X`` cost ``nnz * n_users + nnz * n_items``. Float64
    throughout, since ``I - X^T K X`` cancels where ``l2`` is small against the spectrum of ``X X^T``;
    the weights are returned as float32 like the primal path's.
    """
    x64 = sp.csr_matrix(x, dtype=np.float64)
    gram_u = np.asarray((x64 @ x64.T).toarray())
    gram_u[np.diag_indices_from(gram_u)] += l2
    k = scipy.linalg.inv(gram_u, overwrite_a=True, check_finite=False)
    del gram_u
    kx = np.ascontiguousarray((x64.T @ k).T)  # K X, users x items (K is symmetric)
    del k
    p = np.asarray(x64.T @ kx)  # X^T K X, items x items
    del kx
    p *= -1.0 / l2
    p[np.diag_indices_from(p)] += 1.0 / l2
    p /= -np.diag(p)[None, :]
    p[np.diag_indices_from(p)] = 0.0
    return p.astype(np.float32)


class EASE(Recommender):
    """Embarrassingly Shallow Autoencoder, solved in closed form.

    Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019. With the Gram matrix
    ``G = X^T X + l2 I`` and ``P = G^{-1}``, the item-item weights are ``B = I - P diag(1/diag(P))``
    (zero diagonal) and user ``u`` scores ``X[u] B`` (float32). With fewer users than items, ``P``
    comes from the user x user system by the Woodbury identity (:func:`ease_weights_dual`), the same
    ``B`` in a fraction of the time; otherwise from the item x item inverse.

    The dense matrices need about ``3 * 4 * n_items**2`` bytes (:func:`ease_memory_bytes`); ``fit``
    refuses with a :class:`ConfigError` stating that estimate when it exceeds the available memory
    (``psutil``) or ``max_memory_gib``, before allocating anything.

    Users without training interactions score 0 everywhere; items without training interactions
    get a zero column in ``B`` and score 0.

    Args:
        l2: L2 regularisation added to the diagonal of the Gram matrix (Steck's lambda).
        max_memory_gib: optional cap on the estimated memory, in GiB (None: available memory only).
    """

    tags: ClassVar[ModelTags] = ModelTags(test_params={"l2": 1.0})

    param_specs: ClassVar[dict[str, Param]] = {
        "l2": Param("float", low=1e-6, high=1e12),
        "max_memory_gib": Param("float", low=0.0, nullable=True),
    }

    def __init__(self, l2: float = 500.0, max_memory_gib: float | None = None) -> None:
        self.l2 = l2
        self.max_memory_gib = max_memory_gib

    def fit(self, train: InteractionMatrix) -> EASE:
        self.validate_params()
        x = train.matrix
        self._check_memory(train.n_items, train.n_users)
        solve = ease_weights_dual if train.n_users < train.n_items else ease_weights_primal
        self.n_items_ = train.n_items
        self.train_ = x
        self.weights_ = solve(x, float(self.l2))
        return self

    def _check_memory(self, n_items: int, n_users: int) -> None:
        need = ease_memory_bytes(n_items, n_users)
        available = psutil.virtual_memory().available
        limits = [("available memory", available)]
        if self.max_memory_gib is not None:
            limits.append(("max_memory_gib", int(self.max_memory_gib * 2**30)))
        for label, limit in limits:
            if need > limit:
                raise ConfigError(
                    f"EASE: the dense {n_items} x {n_items} item matrices need about "
                    f"{need / 2**30:.2f} GiB ({need:,} bytes), more than "
                    f"the {label} ({limit / 2**30:.2f} GiB, {limit:,} bytes); use fewer items or a "
                    "sparse model (SLIM, ItemKNN)"
                )

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted("weights_")
        rows = sp.csr_matrix(self.train_[np.asarray(users, dtype=np.int64)])
        return np.asarray(rows @ self.weights_, dtype=np.float32)
