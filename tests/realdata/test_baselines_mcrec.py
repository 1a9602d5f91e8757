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


#: Dacrema et al.'s tuned KNN hyperparameters on this split (TOIS 2021 appendix Table 48) and the
#: rows they published with them (Table 46: Precision, Recall, NDCG with the full-IDCG, at 10).
PUBLISHED_KNN: dict[str, tuple[dict[str, Any], tuple[float, float, float]]] = {
    "userknn_cosine": ({"top_k": 903, "shrink": 2, "feature_weighting": "BM25"}, (0.2807, 0.1825, 0.2260)),
    "userknn_dice": ({"top_k": 129, "shrink": 0}, (0.3442, 0.2237, 0.2692)),
    "userknn_jaccard": ({"top_k": 128, "shrink": 0}, (0.3430, 0.2225, 0.2687)),
    "userknn_asymmetric": (
        {"top_k": 1000, "shrink": 1000, "asymmetric_alpha": 2.0, "feature_weighting": "BM25"},
        (0.2814, 0.1828, 0.2264),
    ),
    "userknn_tversky": (
        {"top_k": 125, "shrink": 28, "tversky_alpha": 1.8829, "tversky_beta": 1.9666},
        (0.3426, 0.2227, 0.2694),
    ),
    "itemknn_cosine": ({"top_k": 886, "shrink": 403, "feature_weighting": "BM25"}, (0.3293, 0.2152, 0.2571)),
    "itemknn_dice": ({"top_k": 179, "shrink": 0, "normalize": False}, (0.3211, 0.2040, 0.2425)),
    "itemknn_jaccard": ({"top_k": 161, "shrink": 0}, (0.3177, 0.2043, 0.2431)),
    "itemknn_asymmetric": (
        {"top_k": 468, "shrink": 706, "asymmetric_alpha": 1.5629, "feature_weighting": "BM25"},
        (0.3320, 0.2171, 0.2601),
    ),
    "itemknn_tversky": (
        {"top_k": 122, "shrink": 0, "tversky_alpha": 0.8648, "tversky_beta": 1.5755},
        (0.3283, 0.2145, 0.2562),
    ),
}


def _knn_rows(mcrec: tuple[InteractionMatrix, InteractionMatrix], name: str, **variant: Any) -> np.ndarray:
    train, test = mcrec
    params, _ = PUBLISHED_KNN[name]
    evaluator = Evaluator(
        test, train, [10], ["precision", "recall", "ndcg_full_idcg"], seed=0, tie_rule="random"
    )
    s = evaluator.evaluate(make_model(name, **params, **variant).fit(train)).summary
    return np.array([s["precision_at_10"], s["recall_at_10"], s["ndcg_full_idcg_at_10"]])


@pytest.mark.parametrize("name", sorted(PUBLISHED_KNN))
def test_knn_with_the_pinned_reference_behaviour_reproduces_the_published_rows(
    mcrec: tuple[InteractionMatrix, InteractionMatrix], name: str
) -> None:
    # the pins of the dacrema/* experiments: weighting changes the similarity only; UserKNN's
    # voters are the users that count the target among their neighbours
    pins = {"weighted_scoring": False} | (
        {"neighbourhood": "reverse_knn"} if name.startswith("userknn") else {}
    )
    got = _knn_rows(mcrec, name, **pins)
    np.testing.assert_allclose(got, PUBLISHED_KNN[name][1], atol=0.0015, err_msg=name)


def test_the_textbook_userknn_does_not_reproduce_them(
    mcrec: tuple[InteractionMatrix, InteractionMatrix],
) -> None:
    # what tells the variants apart on real data: own top-k and weighted profiles are 0.02-0.06 off
    for name in ("userknn_dice", "userknn_cosine"):
        got = _knn_rows(mcrec, name)
        assert abs(got[0] - PUBLISHED_KNN[name][1][0]) > 0.015, (name, got)


def test_mf_bpr_with_the_published_hyperparameters_reproduces_the_published_row(
    mcrec: tuple[InteractionMatrix, InteractionMatrix],
) -> None:
    # Table 49 (MF BPR on this split) -> Table 46: P@10 0.2816, R@10 0.1860, NDCG@10 0.2195. The
    # random streams differ from the reference's, so the tolerance is the seed-to-seed spread
    # measured over seeds 0-2 (P@10 0.2809-0.2843).
    train, test = mcrec
    model = make_model(
        "mf_bpr",
        sgd_mode="adagrad",
        epochs=355,
        factors=170,
        batch_size=256,
        positive_reg=2.16e-4,
        negative_reg=4.80e-5,
        learning_rate=3.97e-2,
    ).fit(train)
    metrics = ["precision", "recall", "ndcg_full_idcg"]
    s = Evaluator(test, train, [10], metrics, seed=0, tie_rule="random").evaluate(model).summary
    got = [s["precision_at_10"], s["recall_at_10"], s["ndcg_full_idcg_at_10"]]
    np.testing.assert_allclose(got, [0.2816, 0.1860, 0.2195], atol=0.005)
