"""Every registered baseline fits and evaluates on the MCRec ml-100k published split.

The split (MCRec, KDD 2018, as used by Dacrema et al., TOIS 2021) ranks each test user's test items
against every item the user has not rated in training. The checks are the ones a wrong baseline
fails: each personalised model clearly beats Random, and EASE with l2 in the hundreds (Steck's
regime) clearly beats TopPop on NDCG@10, as every simple neighbourhood / linear model did in
Dacrema et al.'s tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmark.data.interactions import InteractionMatrix
from benchmark.evaluation import Evaluator
from benchmark.registry import make_model, model_specs

pytestmark = pytest.mark.realdata

#: Representative hyperparameters (not tuned) where the YAML defaults are slow or far off.
PARAMS: dict[str, dict[str, Any]] = {
    "ease": {"l2": 500.0},
    "ials": {"factors": 64, "alpha": 5.0, "regularization": 1e-2, "epochs": 15},
    "bpr": {"factors": 64, "learning_rate": 0.01, "regularization": 1e-2, "epochs": 100},
    "slim": {"alpha": 1e-3, "l1_ratio": 0.1, "top_k": 100, "n_jobs": 2},
}
BASELINES = sorted(n for n, s in model_specs().items() if s.family != "neural")


@pytest.fixture(scope="module")
def mcrec(mirror: Path) -> tuple[InteractionMatrix, InteractionMatrix]:
    from benchmark.splits.published import load_published_split

    split = load_published_split("mcrec_ml100k", mirror=mirror)
    assert (split.train.nnz, split.test.nnz) == (80_000, 20_000)
    return split.train, split.test


@pytest.fixture(scope="module")
def ndcg(mcrec: tuple[InteractionMatrix, InteractionMatrix]) -> dict[str, float]:
    """NDCG@10 per baseline (one fit each, shared by the tests)."""
    train, test = mcrec
    evaluator = Evaluator(test, train, [10], ["ndcg", "recall"], seed=0)
    out = {}
    for name in BASELINES:
        model = make_model(name, **PARAMS.get(name, {})).fit(train)
        result = evaluator.evaluate(model)
        assert result.n_users_evaluated == 942
        out[name] = float(result.summary["ndcg_at_10"])
    return out


def test_every_baseline_gives_a_valid_ndcg(ndcg: dict[str, float]) -> None:
    for name, value in ndcg.items():
        assert np.isfinite(value) and 0.0 <= value <= 1.0, (name, value)


def test_every_personalised_baseline_clearly_beats_random(ndcg: dict[str, float]) -> None:
    assert ndcg["random"] < 0.05
    for name, value in ndcg.items():
        if name not in ("random", "toppop"):
            assert value > 3 * ndcg["random"], (name, value, ndcg["random"])


def test_toppop_beats_random_and_every_personalised_baseline_beats_toppop(ndcg: dict[str, float]) -> None:
    assert ndcg["toppop"] > 3 * ndcg["random"]
    for name, value in ndcg.items():
        if name not in ("random", "toppop"):
            assert value > ndcg["toppop"], (name, value, ndcg["toppop"])


def test_ease_with_l2_in_the_hundreds_clearly_beats_toppop(ndcg: dict[str, float]) -> None:
    assert ndcg["ease"] > 1.25 * ndcg["toppop"], ndcg


def test_unseen_items_score_zero_on_real_data(mcrec: tuple[InteractionMatrix, InteractionMatrix]) -> None:
    train, _ = mcrec
    unseen = np.flatnonzero(train.item_counts() == 0)
    assert len(unseen) == 25  # 1,682 items in the id space, 1,657 in the training file
    users = np.arange(0, train.n_users, 50)
    for name in ("random", "puresvd", "ease", "ials"):
        scores = make_model(name, **PARAMS.get(name, {})).fit(train).score(users)
        assert np.all(scores[:, unseen] == 0.0), name
