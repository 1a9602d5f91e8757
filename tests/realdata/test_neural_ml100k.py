"""Every neural model, trained briefly on ml-100k (MCRec's published split), clearly beats TopPop.

NDCG@10 over all unseen items through the shared Evaluator. The settings are the YAML (paper)
defaults except for the few epochs that keep the test within minutes on a loaded CPU (and, where
noted, a larger batch or learning rate that reaches a good model in those few epochs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from baselines.toppop import TopPop
from benchmark.evaluation import Evaluator
from benchmark.models import Recommender
from benchmark.registry import make_model
from benchmark.splits.published import read_published
from benchmark.splits.split import Split

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

#: Margin over TopPop's NDCG@10 that counts as "clearly better".
MARGIN = 1.2

SETTINGS: dict[str, dict[str, Any]] = {
    "neumf": {"epochs": 3},
    "gmf": {"epochs": 5, "batch_size": 1024, "learning_rate": 5e-3},
    "mlp": {"epochs": 5, "batch_size": 1024, "learning_rate": 5e-3},
    "multvae": {"epochs": 40},
    "multdae": {"epochs": 40},
    "recvae": {"epochs": 8},
    "lightgcn": {"epochs": 10, "learning_rate": 5e-3},
    "spectralcf": {"epochs": 15, "learning_rate": 5e-3},
}


@pytest.fixture(scope="module")
def split(mirror: Path) -> Split:
    d = mirror / "movielens-100k" / "MCRec_KDD2018"
    return read_published("mcrec_ml100k", [d / "ml-100k.train.rating", d / "ml-100k.test.rating"])


def ndcg10(model: Recommender, split: Split) -> float:
    ev = Evaluator(split.test, exclude=split.train, cutoffs=[10], metrics=["ndcg"])
    return float(ev.evaluate(model).summary["ndcg_at_10"])


@pytest.fixture(scope="module")
def toppop_ndcg(split: Split) -> float:
    return ndcg10(TopPop().fit(split.train), split)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_neural_model_beats_toppop_on_ml100k(name: str, split: Split, toppop_ndcg: float) -> None:
    model = make_model(name, device="cpu", **SETTINGS[name])
    model.fit(split.train)
    ndcg = ndcg10(model, split)
    print(f"{name}: NDCG@10 {ndcg:.4f} vs TopPop {toppop_ndcg:.4f}")
    assert ndcg >= MARGIN * toppop_ndcg, f"{name}: NDCG@10 {ndcg:.4f} vs TopPop {toppop_ndcg:.4f}"
