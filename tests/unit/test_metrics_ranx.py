"""Cross-check against an independent implementation: ``ranx`` (Bassani, ECIR 2022).

Correspondence (binary relevance, where the definitions coincide):

======================  =================  ==============================================
reprorec                ranx               definition
======================  =================  ==============================================
``precision``           ``precision@k``    hits in top k / k
``recall``              ``recall@k``       hits in top k / |R_u|
``hit_rate``            ``hit_rate@k``     1 if any hit in top k
``mrr``                 ``mrr@k``          1 / rank of the first hit within k
``ndcg``                ``ndcg@k``         DCG@k / IDCG of the ideal top-k (Järvelin)
``map_full``            ``map@k``          sum_{j<=k} rel_j P@j / |R_u|
======================  =================  ==============================================

``map`` (denominator min(k, |R_u|)) and ``ndcg_full_idcg`` have no ranx counterpart; they are checked
by hand in ``test_metrics.py``. The whole evaluator is compared, not just the metric functions: ranx
gets every non-excluded item with its score, reprorec masks and ranks itself. Scores are distinct so
that both sides rank identically without a tie rule.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from benchmark.evaluation import Evaluator
from tests.synthetic import random_matrix

ranx = pytest.importorskip("ranx")

PAIRS = {
    "precision": "precision",
    "recall": "recall",
    "hit_rate": "hit_rate",
    "mrr": "mrr",
    "ndcg": "ndcg",
    "map_full": "map",
}


class Fixed:
    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.scores[users].copy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluator_agrees_with_ranx_on_random_rankings(seed):
    n_users, n_items = 60, 80
    rng = np.random.default_rng(seed)
    train = random_matrix(n_users, n_items, 0.15, seed=10 + seed)
    t = random_matrix(n_users, n_items, 0.08, seed=20 + seed)
    overlap = t.matrix.multiply(train.matrix).toarray().astype(bool)[t.row_indices(), t.matrix.indices]
    test = t.select(~overlap)
    # Distinct scores: a random permutation of 0..n-1 per user.
    scores = np.argsort(rng.random((n_users, n_items)), axis=1).astype(np.float32)
    cutoffs = [1, 3, 10, 25]
    ev = Evaluator(test, train, cutoffs, list(PAIRS), batch_size=17)
    ours = ev.evaluate(Fixed(scores)).per_user

    seen = train.matrix.toarray().astype(bool)
    rel = test.matrix.toarray().astype(bool)
    users = ours["user"].to_numpy()
    qrels = {str(u): {str(i): 1 for i in np.flatnonzero(rel[u])} for u in users}
    run = {str(u): {str(i): float(scores[u, i]) for i in np.flatnonzero(~seen[u])} for u in users}
    names = [f"{theirs}@{k}" for theirs in PAIRS.values() for k in cutoffs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba type-safety chatter
        ref = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), names, return_mean=False)
    # ranx orders queries by its own sorting of the ids; map them back.
    order = sorted(str(u) for u in users)
    pos = {q: j for j, q in enumerate(order)}
    idx = [pos[str(u)] for u in users]
    assert len(users) > 40
    for mine, theirs in PAIRS.items():
        for k in cutoffs:
            np.testing.assert_allclose(
                ours[f"{mine}_at_{k}"].to_numpy(),
                np.asarray(ref[f"{theirs}@{k}"])[idx],
                rtol=0,
                atol=1e-9,
                err_msg=f"{mine}@{k} vs ranx {theirs}@{k}",
            )
