"""Graph baselines: three-step random walks on the user-item bipartite graph (P3alpha, RP3beta)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize as sk_normalize

from baselines.similarity import ItemSimilarityRecommender, binarize, blocked_topk, topk_per_column
from benchmark.data.interactions import InteractionMatrix
from benchmark.models import ModelTags, Param


def random_walk_similarity(
    matrix: sp.csr_matrix,
    *,
    alpha: float,
    beta: float,
    top_k: int,
    normalize: bool,
    block_size: int | None = None,
) -> sp.csr_matrix:
    """Item x item transition weights of a user-item-user-item walk, pruned to ``top_k``.

    ``W = (P_iu^alpha @ P_ui^alpha) * pop(j)^-beta`` where ``P_ui`` is the users x items matrix
    row-normalised to sum 1 (user -> item transition probabilities), ``P_iu`` its item -> user
    counterpart and powers are elementwise on stored entries. As in Dacrema et al.'s reference
    implementation, the diagonal is set to 0, each row keeps its ``top_k`` largest entries, rows
    are l1-normalised when ``normalize``, and finally each column keeps its ``top_k`` largest
    (their ``similarityMatrixTopK``; when a few popular items are every row's best targets, this
    second pruning leaves far fewer than ``top_k`` entries per row). Items without interactions get
    empty rows and columns.

    Args:
        matrix: users x items interactions (binarised here).
        alpha: exponent of the transition probabilities (1 is the plain random walk).
        beta: popularity penalty exponent (0 is P3alpha).
        top_k: entries kept per row, then per column.
        normalize: l1-normalise rows after the row pruning.
        block_size: items per block (the result does not depend on it).

    Returns:
        float32 CSR ``[n_items, n_items]``; scores are ``X @ W``.
    """
    x = binarize(sp.csr_matrix(matrix))
    p_ui = sk_normalize(x, norm="l1", axis=1)
    p_iu = sk_normalize(sp.csr_matrix(x.T), norm="l1", axis=1)
    if alpha != 1.0:
        p_ui.data = np.power(p_ui.data, alpha)
        p_iu.data = np.power(p_iu.data, alpha)
    p_ui = sp.csr_matrix(p_ui, dtype=np.float32)
    p_iu = sp.csr_matrix(p_iu, dtype=np.float32)
    popularity = np.bincount(x.indices, minlength=x.shape[1]).astype(np.float64)
    penalty = np.zeros(x.shape[1], dtype=np.float32)
    seen = popularity > 0
    penalty[seen] = np.power(popularity[seen], -beta)
    n = x.shape[1]

    def block(start: int, stop: int) -> sp.csr_matrix:
        return sp.csr_matrix(p_iu[start:stop] @ p_ui)

    def transform(dense: np.ndarray, start: int, stop: int) -> None:
        dense *= penalty[None, :]

    w = blocked_topk(
        block, n, n, int(top_k), transform=transform if beta != 0.0 else None, block_size=block_size
    )
    if normalize:
        w = sp.csr_matrix(sk_normalize(w, norm="l1", axis=1), dtype=np.float32)
    return topk_per_column(w, int(top_k))


_GRAPH_PARAMS: dict[str, Param] = {
    "top_k": Param("int", low=1),
    "alpha": Param("float", low=0),
    "normalize": Param("bool"),
    "block_size": Param("int", low=1, nullable=True),
}


class P3alpha(ItemSimilarityRecommender):
    """P3alpha: three-step random walk from the user, with transition probabilities raised to alpha.

    Cooper, Lee, Radecki & Kifer, "Random walks in recommender systems: exact computation and
    simulations", WWW 2014 Companion; implemented as in Dacrema et al. (RecSys 2019, TOIS 2021):
    an item x item matrix ``W = P_iu^alpha P_ui^alpha`` (see :func:`random_walk_similarity`)
    pruned to ``top_k`` entries per item, optionally row-normalised, and scores ``X[u] @ W``.

    Users without training interactions get all-zero scores; items never seen in training get zero
    scores.

    Args:
        top_k: entries of ``W`` kept per item (>= 1).
        alpha: exponent of the transition probabilities (>= 0; 1 is the plain random walk).
        normalize: l1-normalise the rows of ``W`` after pruning.
        block_size: items per block; ``None`` sizes blocks to about 64 MiB (never changes the result).
    """

    tags: ClassVar[ModelTags] = ModelTags(test_params={"top_k": 10})

    param_specs: ClassVar[dict[str, Param]] = _GRAPH_PARAMS

    def __init__(
        self, top_k: int = 100, alpha: float = 1.0, normalize: bool = False, block_size: int | None = None
    ) -> None:
        self.top_k = top_k
        self.alpha = alpha
        self.normalize = normalize
        self.block_size = block_size

    def fit(self, train: InteractionMatrix) -> P3alpha:
        self.validate_params()
        self.similarity_ = random_walk_similarity(
            train.matrix,
            alpha=float(self.alpha),
            beta=0.0,
            top_k=self.top_k,
            normalize=self.normalize,
            block_size=self.block_size,
        )
        self.profiles_ = sp.csr_matrix(train.matrix, dtype=np.float32)
        self.n_items_ = train.n_items
        return self


class RP3beta(ItemSimilarityRecommender):
    """RP3beta: P3alpha with the walk's end item re-ranked by its popularity to the power -beta.

    Paudel, Christoffel, Newell & Bernstein, "Updatable, accurate, diverse, and scalable
    recommendations for interactive applications", ACM TiiS 7(1), 2017; implemented as in Dacrema
    et al. (RecSys 2019, TOIS 2021), who found it among the strongest simple baselines:
    ``W[i, j] = (P_iu^alpha P_ui^alpha)[i, j] / pop(j)^beta`` pruned to ``top_k`` entries per item
    (see :func:`random_walk_similarity`), optionally row-normalised, and scores ``X[u] @ W``.

    Users without training interactions get all-zero scores; items never seen in training (pop 0)
    get zero scores.

    Args:
        top_k: entries of ``W`` kept per item (>= 1).
        alpha: exponent of the transition probabilities (>= 0).
        beta: popularity penalty exponent (>= 0; 0 is P3alpha).
        normalize: l1-normalise the rows of ``W`` after pruning.
        block_size: items per block; ``None`` sizes blocks to about 64 MiB (never changes the result).
    """

    tags: ClassVar[ModelTags] = ModelTags(test_params={"top_k": 10})

    param_specs: ClassVar[dict[str, Param]] = {**_GRAPH_PARAMS, "beta": Param("float", low=0)}

    def __init__(
        self,
        top_k: int = 100,
        alpha: float = 1.0,
        beta: float = 0.6,
        normalize: bool = True,
        block_size: int | None = None,
    ) -> None:
        self.top_k = top_k
        self.alpha = alpha
        self.beta = beta
        self.normalize = normalize
        self.block_size = block_size

    def fit(self, train: InteractionMatrix) -> RP3beta:
        self.validate_params()
        self.similarity_ = random_walk_similarity(
            train.matrix,
            alpha=float(self.alpha),
            beta=float(self.beta),
            top_k=self.top_k,
            normalize=self.normalize,
            block_size=self.block_size,
        )
        self.profiles_ = sp.csr_matrix(train.matrix, dtype=np.float32)
        self.n_items_ = train.n_items
        return self
