"""The leakage audit (:mod:`benchmark.splits.audit`): hand-computed shares, planted leaks, run-time checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.data.interactions import InteractionMatrix
from benchmark.evaluation import Evaluator
from benchmark.splits.audit import WARN_SHARE, future_data, leakage_audit, summary, tuning_evaluator_audit
from benchmark.splits.split import Split
from benchmark.splits.splitters import random_holdout_per_user, temporal_global
from tests.synthetic import random_matrix

USERS = np.array(["a", "b"], dtype=object)
ITEMS = np.array([f"i{j}" for j in range(6)], dtype=object)


def part(users: list[int], items: list[int], times: list[int]) -> InteractionMatrix:
    return InteractionMatrix.from_indices(
        np.array(users), np.array(items), USERS, ITEMS, timestamps=np.array(times, dtype=np.int64)
    )


def test_future_data_shares_by_hand() -> None:
    # train: a at 1, 2, 9; b at 3, 10.  test: a at 5 (and 7), b at 4.
    train = part([0, 0, 0, 1, 1], [0, 1, 2, 0, 3], [1, 2, 9, 3, 10])
    test = part([0, 0, 1], [3, 4, 1], [5, 7, 4])
    fd = future_data(train, test)
    assert fd is not None
    # a's first test is 5: train at 9, 10 are later (2/5); b's is 4: 9, 10 (2/5)
    assert fd["after_each_test_user"] == pytest.approx(2 / 5)
    # own: a's 9 > 5, b's 10 > 4, out of 5 own interactions
    assert fd["own_after_first_test"] == pytest.approx(2 / 5)
    # split point 4: 9 and 10 are later
    assert fd["after_split_point"] == pytest.approx(2 / 5)
    assert fd["users"] == 2 and fd["users_with_future_data"] == 1.0
    # b's own later interaction removed: only a's own one is
    fd2 = future_data(part([0, 0, 0, 1], [0, 1, 2, 0], [1, 2, 9, 3]), test)
    assert fd2 is not None
    assert fd2["own_after_first_test"] == pytest.approx(1 / 4)
    assert fd2["after_each_test_user"] == pytest.approx(1 / 4)


def test_no_timestamps_no_future_data_claim() -> None:
    data = random_matrix(30, 20, 0.3, seed=1)
    split = random_holdout_per_user(data, test_fraction=0.2, rng=np.random.default_rng(0))
    audit = leakage_audit(split)
    assert audit["timestamps"] is False and audit["test"] is None and audit["disjoint"] is True
    assert "no timestamps" in summary(audit)


def test_a_global_temporal_split_is_clean_and_a_planted_leak_is_measured_exactly() -> None:
    data = random_matrix(60, 40, 0.3, seed=2, timestamps=True)
    split = temporal_global(data, test_fraction=0.2)
    clean = leakage_audit(split)
    assert clean["test"]["after_split_point"] == 0.0
    assert clean["test"]["after_each_test_user"] == 0.0
    assert clean["test"]["own_after_first_test"] == 0.0
    assert clean["warnings"] == []
    # plant: one training interaction moved after the latest test interaction
    ts = split.train.timestamps.copy()
    ts[0] = int(split.test.timestamps.max()) + 1
    train = InteractionMatrix(split.train.matrix, split.train.user_ids, split.train.item_ids, timestamps=ts)
    leaky = leakage_audit(Split(train=train, test=split.test))
    n = train.nnz
    assert leaky["test"]["after_split_point"] == pytest.approx(1 / n)
    assert leaky["test"]["after_each_test_user"] == pytest.approx(1 / n)  # later than every test user
    owner = train.row_indices()[0]
    own = np.isin(train.row_indices(), np.unique(split.test.row_indices())).sum()
    expected_own = (1 / own) if owner in set(split.test.row_indices()) else 0.0
    assert leaky["test"]["own_after_first_test"] == pytest.approx(expected_own)


def test_a_random_split_of_timestamped_data_is_flagged() -> None:
    data = random_matrix(60, 40, 0.3, seed=3, timestamps=True)
    split = random_holdout_per_user(data, test_fraction=0.2, rng=np.random.default_rng(0))
    audit = leakage_audit(split)
    assert audit["test"]["own_after_first_test"] > 0.5
    assert any(w.startswith("test: own_after_first_test") for w in audit["warnings"])
    assert f"WARNING: future training data above {WARN_SHARE:.0%} for test" in summary(audit)


def test_the_tuning_evaluator_check_catches_an_evaluator_over_test() -> None:
    data = random_matrix(40, 30, 0.3, seed=4)
    outer = random_holdout_per_user(data, test_fraction=0.2, rng=np.random.default_rng(0))
    inner = random_holdout_per_user(outer.train, test_fraction=0.2, rng=np.random.default_rng(1))
    split = Split(train=inner.train, validation=inner.test, test=outer.test)
    good = tuning_evaluator_audit(Evaluator(split.validation, split.train), split)
    assert good["is_validation"] and not good["is_test"] and good["pairs_shared_with_test"] == 0
    bad = tuning_evaluator_audit(Evaluator(split.test, split.train), split)
    assert bad["is_test"] and not bad["is_validation"] and bad["pairs_shared_with_test"] == split.test.nnz
    assert "TUNING EVALUATOR NOT THE VALIDATION PART" in summary({**leakage_audit(split), "tuning": bad})


def test_every_cell_logs_its_audit_and_the_card_shows_it(tmp_path: Path) -> None:
    from benchmark.reporting.collect import collect_runs
    from benchmark.reporting.tables import build_leaderboards
    from benchmark.tuning.cell import run_cell
    from tests.unit.test_sweep_cell import compose

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tiny = [
        "dataset=synthetic",
        "dataset.options.n_users=100",
        "dataset.options.n_items=60",
        "dataset.options.n_interactions=2000",
        "evaluation.cutoffs=[10]",
        "evaluation.metrics=[ndcg]",
        "evaluation.validation_metrics=[ndcg]",
        "progress=false",
        f"tracking.uri={uri}",
    ]
    repo = Path(__file__).resolve().parents[2] / "conf"
    for model in ("ease", "toppop"):
        assert run_cell(compose(repo, *tiny, f"model={model}", "tuner.n_trials=2")).status == "finished"
    runs = collect_runs(uri).cells
    docs = {r.model: r.protocol_doc["leakage"] for r in runs}
    assert docs["ease"]["tuning"]["is_validation"] is True
    assert docs["ease"]["tuning"]["excludes"].endswith("train")
    assert docs["ease"]["test_evaluations"] == 1
    assert docs["ease"]["shared_pairs"] == {"train/validation": 0, "train/test": 0, "validation/test": 0}
    (table,), _ = build_leaderboards(runs, metrics=["ndcg"], cutoffs=[10], main_metric="ndcg_at_10")
    assert table.card["leakage"]["seed 0"].startswith("parts disjoint")
    assert "tuning trials ranked the validation part only" in table.card["leakage"]["seed 0"]
