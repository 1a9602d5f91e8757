"""PureSVD: truncated SVD of the user x item matrix (Cremonesi, Koren & Turrin 2010)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError
from benchmark.models import ModelTags, Param, Recommender


class PureSVD(Recommender):
    """Scores from the rank-``n_factors`` truncated SVD of the training matrix.

    Cremonesi, Koren & Turrin, "Performance of recommender algorithms on top-N recommendation
    tasks", RecSys 2010. With ``X ~ U S V^T`` the score of user ``u`` is ``X[u] V V^T``: the user's
    row projected on the top item singular vectors (the "folding-in" form of ``U S V^T``, equal to it
    for training users). The SVD is scikit-learn's :func:`~sklearn.utils.extmath.randomized_svd`
    (Halko, Martinsson & Tropp 2011), seeded by ``random_state``.

    Users without training interactions score 0 everywhere; items without training interactions
    have a zero row in ``V`` and score 0.

    Args:
        n_factors: rank of the truncated SVD; at most ``min(n_users, n_items)`` of the training data.
        random_state: seed of the randomized range finder.
    """

    tags: ClassVar[ModelTags] = ModelTags(test_params={"n_factors": 4})

    param_specs: ClassVar[dict[str, Param]] = {
        "n_factors": Param("int", low=1, high=10_000),
        "random_state": Param("int", low=0, high=2**32 - 1),
    }

    def __init__(self, n_factors: int = 50, random_state: int = 0) -> None:
        self.n_factors = n_factors
        self.random_state = random_state

    def fit(self, train: InteractionMatrix) -> PureSVD:
        self.validate_params()
        max_rank = min(train.shape)
        if self.n_factors > max_rank:
            raise ConfigError(
                f"PureSVD: n_factors={self.n_factors} exceeds min(n_users, n_items)={max_rank} of "
                f"{train.name or 'the training data'}; expected int in [1, {max_rank}]"
            )
        self.n_items_ = train.n_items
        self.train_ = train.matrix
        _, self.singular_values_, vt = randomized_svd(
            train.matrix, int(self.n_factors), random_state=int(self.random_state)
        )
        self.item_factors_ = np.ascontiguousarray(vt.T, dtype=np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted("item_factors_")
        rows = sp.csr_matrix(self.train_[np.asarray(users, dtype=np.int64)])
        v = self.item_factors_
        return np.asarray((rows @ v) @ v.T, dtype=np.float32)
