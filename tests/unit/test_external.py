"""External recommendations (``reprorec-score``): the split exported, other code's lists scored.

The round trip is the proof: a reprorec model trained by "other code" on nothing but the exported
files, its lists written to a file and scored, gets exactly the test metrics of the same model's
reprorec cell. The rules of the file format are each checked with a file that breaks one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import DataError
from benchmark.evaluation import Evaluator
from benchmark.external import (
    ExternalRecommendations,
    check_recommendations,
    file_sha256,
    read_recommendations,
)
from benchmark.tracking import schema as S

DATA = [
    "dataset=synthetic",
    "dataset.options.n_users=150",
    "dataset.options.n_items=90",
    "dataset.options.n_interactions=3000",
    "split=random_per_user_80_20",
    "evaluation.cutoffs=[5,10]",
    "evaluation.metrics=[precision,recall,ndcg,map,hit_rate,mrr,coverage]",
    "progress=false",
    "report.enabled=false",
]


def cli(*argv: str) -> int:
    from benchmark.cli.score import main

    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    return int(exit_.value.code or 0)


def external_ease(split_dir: Path, out: Path, *, column: str = "rank", k: int = 10) -> None:
    """'Other code': EASE trained on the exported train + validation files only, top-k lists written."""
    from baselines.ease import EASE

    parts = [pd.read_csv(split_dir / f, sep="\t", dtype=str) for f in ("train.tsv", "validation.tsv")]
    data = InteractionMatrix.from_frame(pd.concat(parts, ignore_index=True))
    users = pd.read_csv(split_dir / "users.tsv", sep="\t", dtype=str)["user"]
    rows = np.array([data.user_index[u] for u in users])
    scores = EASE().fit(data).score(rows).astype(np.float64)
    seen = data.matrix[rows]
    scores[np.repeat(np.arange(len(rows)), np.diff(seen.indptr)), seen.indices] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    frame = pd.DataFrame(
        {
            "user": np.repeat(users.to_numpy(), k),
            "item": data.item_ids[top.ravel()],
            "rank": np.tile(np.arange(1, k + 1), len(rows)),
        }
    )
    if column == "score":  # higher is better; the file's order is its scores only
        frame = frame.assign(score=100.0 - frame["rank"]).drop(columns="rank").sample(frac=1, random_state=0)
    frame.to_csv(out, sep="\t" if out.suffix == ".tsv" else ",", index=False)


def finished_runs(uri: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("reprorec")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{S.RUN_TYPE}` = '{S.RUN_TYPE_CELL}'")
    return [r for r in runs if r.info.status == "FINISHED"]


def test_round_trip_an_exported_split_scored_back_equals_the_reprorec_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmark.cli.score import compose
    from benchmark.cli.sweep import to_config
    from benchmark.tuning.cell import run_cell

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert cli("export", "split", *DATA, f"tracking.uri={uri}") == 0
    manifest = json.loads((tmp_path / "split" / "split.json").read_text())
    assert manifest["format"] == "reprorec-split/1"
    for name, info in manifest["files"].items():  # every file is what the manifest fingerprints
        assert file_sha256(tmp_path / "split" / name) == info["sha256"]
    users = pd.read_csv(tmp_path / "split" / "users.tsv", sep="\t")
    assert (users["list_length"] == 10).all()

    external_ease(tmp_path / "split", tmp_path / "ease.tsv")
    external_ease(tmp_path / "split", tmp_path / "ease_scores.csv", column="score")
    assert (
        cli("score", "ease.tsv", "--name", "ease_ext", "--note", "round trip", *DATA, f"tracking.uri={uri}")
        == 0
    )
    assert cli("score", "ease_scores.csv", "--name", "ease_scores", *DATA, f"tracking.uri={uri}") == 0
    internal = run_cell(to_config(compose([*DATA, "model=ease", "tuner=none", f"tracking.uri={uri}"])))
    assert internal.status == "finished"

    runs = {r.data.tags[S.MODEL]: r for r in finished_runs(uri)}
    assert set(runs) == {"ease", "ease_ext", "ease_scores"}
    want = {k: v for k, v in runs["ease"].data.metrics.items() if k.startswith("test/") and "users" not in k}
    assert len(want) == 14
    for name in ("ease_ext", "ease_scores"):
        got = {k: runs[name].data.metrics[k] for k in want}
        assert got == pytest.approx(want, abs=1e-12), name
        assert runs[name].data.tags[S.MODEL_FAMILY] == "external"
    assert runs["ease_ext"].data.params["model.sha256"] == file_sha256(tmp_path / "ease.tsv")
    assert runs["ease_ext"].data.params["model.path"] == "ease.tsv"  # as typed, no machine path

    # the same file again: the same cell, skipped; a changed file: a new cell
    assert (
        cli("score", "ease.tsv", "--name", "ease_ext", "--note", "round trip", *DATA, f"tracking.uri={uri}")
        == 0
    )
    assert len(finished_runs(uri)) == 3
    frame = pd.read_csv(tmp_path / "ease.tsv", sep="\t", dtype=str)
    swapped = frame.copy()
    first = swapped.index[:2]
    swapped.loc[first, "rank"] = ["2", "1"]  # user 0's first two items swapped
    swapped.to_csv(tmp_path / "ease.tsv", sep="\t", index=False)
    assert (
        cli("score", "ease.tsv", "--name", "ease_ext", "--note", "round trip", *DATA, f"tracking.uri={uri}")
        == 0
    )
    assert len(finished_runs(uri)) == 4

    # the leaderboard has the row, tested against the best baseline, with where it came from
    from benchmark.reporting import generate_report

    generate_report(
        uri, out_dir=tmp_path / "report", metrics=["ndcg"], cutoffs=[10], main_metric="ndcg_at_10"
    )
    text = (tmp_path / "report" / "README.md").read_text()
    assert "| external | ease_scores |" in text
    assert "ease_scores (external): recommendation lists made by other code" in text
    assert str(tmp_path) not in text


def test_sampled_protocol_exports_candidates_and_refuses_lists_outside_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sampled = [*DATA, "evaluation=sampled", "evaluation.n_negatives=20", f"tracking.uri={uri}"]
    assert cli("export", "split", *sampled) == 0
    cand = pd.read_csv(tmp_path / "split" / "candidates.tsv", sep="\t", dtype=str)
    test = pd.read_csv(tmp_path / "split" / "test.tsv", sep="\t", dtype=str)
    users = pd.read_csv(tmp_path / "split" / "users.tsv", sep="\t", dtype=str)
    per_user = cand.groupby("user").size()
    n_test = test.groupby("user").size()
    assert (per_user == n_test[per_user.index] + 20).all()  # relevant + 20 negatives each
    # a list of each user's candidates in file order: valid
    lists = cand.assign(rank=cand.groupby("user").cumcount() + 1)
    lists.to_csv(tmp_path / "ok.tsv", sep="\t", index=False)
    assert cli("score", "ok.tsv", "--name", "cands", *sampled) == 0
    # one non-candidate item on top of a user's list: refused, then dropped on request
    train = pd.read_csv(tmp_path / "split" / "train.tsv", sep="\t", dtype=str)
    u = users["user"].iloc[0]
    all_items = set(train["item"]) | set(test["item"])
    outside = sorted(
        all_items - set(cand.loc[cand.user == u, "item"]) - set(train.loc[train.user == u, "item"])
    )
    bad = pd.concat(
        [pd.DataFrame({"user": [u], "item": [outside[0]], "rank": [0]}), lists], ignore_index=True
    )
    bad["rank"] = bad.groupby("user").cumcount() + 1
    bad.to_csv(tmp_path / "bad.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match=r"bad.tsv: 1 recommended .* not among the user's candidates"):
        _score_in_process(tmp_path / "bad.tsv", sampled)
    assert cli("score", "bad.tsv", "--name", "cands_dropped", "--drop-invalid", *sampled) == 0
    runs = {r.data.tags[S.MODEL]: r.data.metrics for r in finished_runs(uri)}
    assert (
        runs["cands_dropped"]["test/ndcg_at_10"] == runs["cands"]["test/ndcg_at_10"]
    )  # the evaluator ignores it


def _score_in_process(file: Path, overrides: list[str], *, drop: bool = False) -> None:
    """The checks of ``reprorec-score score`` (raising instead of exiting)."""
    import argparse

    from benchmark.cli.score import checked_cell

    checked_cell(argparse.Namespace(file=file, name="x", note="", drop_invalid=drop, overrides=overrides))


# ----------------------------------------------------------------------------- the rules, by hand

#: test items in the same id space: a -> i4, b -> i2 and i5, c -> i1
TRAIN = InteractionMatrix.from_frame(
    pd.DataFrame({"user": ["a", "a", "b", "c"], "item": ["i1", "i2", "i1", "i3"]}),
    item_ids=np.array(["i1", "i2", "i3", "i4", "i5"], dtype=object),
)
TEST = InteractionMatrix.from_indices(
    np.array([0, 1, 1, 2]), np.array([3, 1, 4, 0]), TRAIN.user_ids, TRAIN.item_ids
)


def write(
    tmp_path: Path, rows: list[tuple[Any, ...]], header: str = "user\titem\trank", name: str = "r.tsv"
) -> Path:
    path = tmp_path / name
    path.write_text(header + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


def fitted(path: Path, drop: bool = False) -> ExternalRecommendations:
    return ExternalRecommendations(path=str(path), sha256=file_sha256(path), drop_invalid=drop).fit(TRAIN)


def test_hand_computed_metrics_from_a_rank_file_and_a_score_file_with_ties(tmp_path: Path) -> None:
    ev = Evaluator(TEST, TRAIN, cutoffs=[1, 3], metrics=["precision", "ndcg", "mrr"], tie_rule="pessimistic")
    # a: [i5, i3, i4] -> hit at 3; b: [i2, i3, i4] -> hit at 1 (i5 unlisted); c: [i2, i4, i1] -> hit at 3
    ranks = [("a", "i5", 1), ("a", "i3", 2), ("a", "i4", 3), ("b", "i2", 1), ("b", "i3", 2), ("b", "i4", 3)]
    ranks += [("c", "i4", 2), ("c", "i2", 1), ("c", "i1", 3)]
    model = fitted(write(tmp_path, ranks))
    assert check_recommendations(model, ev, file="r.tsv").shortest_list == 3
    got = ev.evaluate(model).summary
    assert got["mrr_at_3"] == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)
    assert got["precision_at_1"] == pytest.approx(1 / 3)
    # b has two test items: DCG 1, IDCG 1 + 1/log2(3)
    ndcg_b = 1 / (1 + 1 / np.log2(3))
    assert got["ndcg_at_3"] == pytest.approx((0.5 + ndcg_b + 0.5) / 3)
    # a score file: c's scores tie at the top (i2, i1): the pessimistic rule puts the test item i1 second
    scores = [(u, i, 10 - r) for u, i, r in ranks if u != "c"] + [
        ("c", "i2", 5.0),
        ("c", "i1", 5.0),
        ("c", "i4", 1),
    ]
    tied = fitted(write(tmp_path, scores, header="user\titem\tscore", name="s.tsv"))
    got = ev.evaluate(tied).summary
    assert got["mrr_at_3"] == pytest.approx((1 / 3 + 1 + 1 / 2) / 3)


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (
            [("a", "i9", 1)],
            "user\titem\trank",
            r"r.tsv: column 'item' has 1 id\(s\) the split does not know.*'i9'",
        ),
        ([("z", "i1", 1)], "user\titem\trank", r"r.tsv: column 'user' .* 'z'"),
        (
            [("a", "i3", 1), ("a", "i3", 2)],
            "user\titem\trank",
            r"column 'user,item' is listed twice on 1 line.*line 3",
        ),
        ([("a", "i3", 1), ("a", "i4", 1)], "user\titem\trank", r"column 'rank' is used twice for one user"),
        ([("a", "i3", 0)], "user\titem\trank", r"column 'rank' is not an integer >= 1 .*line 2: rank='0'"),
        ([("a", "i3", "1.5")], "user\titem\trank", r"column 'rank' is not an integer"),
        ([("a", "i3", "nan")], "user\titem\tscore", r"column 'score' is not a finite number"),
        ([("a", "i3", 1, 2.0)], "user\titem\trank\tscore", r"exactly one of \['rank', 'score'\]"),
        ([("a", 1)], "user\trank", r"the header must name \['user', 'item'\]"),
    ],
)
def test_a_bad_file_is_refused_naming_file_column_and_value(
    tmp_path: Path, rows: list[tuple[Any, ...]], header: str, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        fitted(write(tmp_path, rows, header))


def test_seen_items_missing_users_and_short_lists_are_refused(tmp_path: Path) -> None:
    ev = Evaluator(TEST, TRAIN, cutoffs=[2], metrics=["precision"])
    full = [("a", "i3", 1), ("a", "i4", 2), ("b", "i3", 1), ("b", "i2", 2), ("c", "i1", 1), ("c", "i2", 2)]
    assert check_recommendations(fitted(write(tmp_path, full)), ev, file="r.tsv").users_evaluated == 3
    seen = [("a", "i1", 1), ("a", "i3", 2), ("a", "i4", 3), *full[2:]]  # i1 is a's training item
    with pytest.raises(DataError, match=r"1 recommended .* train/validation items.*\('a', 'i1'\)"):
        check_recommendations(fitted(write(tmp_path, seen)), ev, file="r.tsv")
    kept = check_recommendations(fitted(write(tmp_path, seen), drop=True), ev, file="r.tsv")
    assert (kept.dropped_excluded, kept.shortest_list) == (1, 2)
    with pytest.raises(DataError, match=r"1 evaluated user\(s\) have no list: 'c'"):
        check_recommendations(fitted(write(tmp_path, full[:4])), ev, file="r.tsv")
    with pytest.raises(
        DataError, match=r"1 user list\(s\) are shorter than the longest cutoff 2 .*'b': 1 < 2"
    ):
        check_recommendations(fitted(write(tmp_path, [*full[:3], *full[4:]])), ev, file="r.tsv")
    # a: i1 dropped leaves one item: too short, although the file lists two
    with pytest.raises(DataError, match=r"shorter than the longest cutoff"):
        short = [("a", "i1", 1), ("a", "i3", 2), *full[2:]]
        check_recommendations(fitted(write(tmp_path, short), drop=True), ev, file="r.tsv")


def test_a_file_changed_after_its_cell_was_keyed_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, [("a", "i3", 1)])
    model = ExternalRecommendations(path=str(path), sha256=file_sha256(path))
    path.write_text("user\titem\trank\na\ti4\t1\n")
    with pytest.raises(DataError, match=r"r.tsv: sha256 .* differs .* the file changed"):
        model.fit(TRAIN)
    assert read_recommendations(path)["item"].tolist() == ["i4"]


def test_export_refuses_a_folder_with_files_and_names_for_a_registered_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "split").mkdir()
    (tmp_path / "split" / "keep.txt").write_text("mine")
    assert cli("export", "split", *DATA) == 2
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".split.")]  # no temporary left
    write(tmp_path, [("a", "i3", 1)])
    assert cli("score", "r.tsv", "--name", "ease", *DATA) == 2
