"""Non-personalised popularity baseline."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from benchmark.data.interactions import InteractionMatrix
from benchmark.models import ModelTags, Param, Recommender


class TopPop(Recommender):
    """Recommend the items with the most training interactions to everyone.

    The classic non-personalised baseline (e.g. Cremonesi, Koren & Turrin, "Performance of
    recommender algorithms on top-N recommendation tasks", RecSys 2010). Every user, including users
    without training interactions, receives the same scores: the item's number of training
    interactions. Ties between equally popular items are broken by the shared evaluator.

    Args:
        None. TopPop has no hyperparameters.
    """

    tags: ClassVar[ModelTags] = ModelTags(personalised=False)  # one popularity ranking for every user

    param_specs: ClassVar[dict[str, Param]] = {}

    def __init__(self) -> None:
        pass

    def fit(self, train: InteractionMatrix) -> TopPop:
        self.validate_params()
        self.n_items_ = train.n_items
        self.popularity_ = train.item_counts().astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted("popularity_")
        return np.broadcast_to(self.popularity_, (len(users), self.n_items_)).copy()
