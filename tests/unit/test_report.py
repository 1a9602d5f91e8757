"""reprorec-report on MLflow stores filled per benchmark/tracking/schema.py (no sweep code involved)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from benchmark.errors import DataError
from benchmark.reporting import ReportInputError, generate_report
from benchmark.reporting import render as render_mod
from benchmark.reporting.reference import read_reference
from benchmark.reporting.stats import holm
from benchmark.seeds import derive_seed
from tests.tracking_fixtures import FakeCell, log_sweep, new_sqlite_store

N = 60
REPO = Path(__file__).resolve().parents[2]


def _planted() -> dict[str, dict[str, np.ndarray]]:
    """Per-user NDCG@10/Recall@10 with a known ordering: neumf >> ease > toppop ~ ease-, itemknn << ease."""
    rng = np.random.default_rng(7)
    ease = rng.uniform(0.2, 0.6, N)
    half = rng.normal(0, 0.05, N // 2)
    symmetric = np.concatenate([half, -half])  # differences with no direction: not significant
    models = {
        "ease": ease,
        "itemknn": np.clip(ease - 0.12 + rng.normal(0, 0.03, N), 0, 1),
        "toppop": ease - 0.001 + symmetric,
        "neumf": np.clip(ease + 0.1 + rng.normal(0, 0.03, N), 0, 1),
    }
    return {m: {"ndcg_at_10": v, "recall_at_10": np.clip(v * 1.1, 0, 1)} for m, v in models.items()}


FAMILY = {"ease": "linear", "itemknn": "neighbourhood", "toppop": "non-personalised", "neumf": "neural"}


def _store(tmp: Path, cells: list[FakeCell], **kw) -> str:
    uri = new_sqlite_store(tmp)
    log_sweep(uri, cells, artifact_location=(tmp / "artifacts").as_uri(), **kw)
    return uri


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory) -> tuple[str, dict[str, dict[str, np.ndarray]]]:
    tmp = tmp_path_factory.mktemp("planted")
    pu = _planted()
    cells = [
        FakeCell(m, FAMILY[m], 0, pu[m], extra_metrics={"test/item_coverage_at_10": 0.1 * i})
        for i, m in enumerate(["toppop", "itemknn", "ease", "neumf"])
    ]
    return _store(tmp, cells), pu


@pytest.fixture(scope="module")
def planted_report(planted_store, tmp_path_factory) -> dict:
    uri, _ = planted_store
    out = tmp_path_factory.mktemp("out") / "report"
    generate_report(uri, out_dir=out, cutoffs=(10,), n_resamples=999, dashboard_url="http://127.0.0.1:5555/")
    return json.loads((out / "report.json").read_text())


def _row(doc: dict, model: str) -> dict:
    return next(r for r in doc["tables"][0]["rows"] if r["model"] == model)


def test_rows_are_grouped_by_family_in_registry_order(planted_report):
    models = [r["model"] for r in planted_report["tables"][0]["rows"]]
    assert models == ["toppop", "itemknn", "ease", "neumf"]


def test_mean_and_bootstrap_ci_match_scipy_on_planted_per_user_ndcg(planted_report, planted_store):
    _, pu = planted_store
    cell = _row(planted_report, "itemknn")["cells"]["ndcg_at_10"]
    x = pu["itemknn"]["ndcg_at_10"]
    seed = derive_seed("report-bootstrap", "synthetic", "random_holdout", "default", "itemknn", "ndcg_at_10")
    ref = stats.bootstrap(
        (x,), np.mean, n_resamples=999, method="percentile", rng=np.random.default_rng(seed)
    ).confidence_interval
    assert cell["mean"] == pytest.approx(x.mean())
    assert (cell["low"], cell["high"]) == pytest.approx((ref.low, ref.high))
    assert cell["n"] == N and cell["method"] == "bootstrap"
    assert _row(planted_report, "itemknn")["n_users"] == N


def test_best_per_column_is_bold(planted_report):
    assert "ndcg_at_10" in _row(planted_report, "neumf")["bold"]
    assert "item_coverage_at_10" in _row(planted_report, "neumf")["bold"]  # 0.3 is the largest coverage
    assert all("ndcg_at_10" not in _row(planted_report, m)["bold"] for m in ("toppop", "itemknn", "ease"))


def test_significance_vs_best_baseline_is_wilcoxon_with_holm(planted_report, planted_store):
    _, pu = planted_store
    table = planted_report["tables"][0]
    assert table["reference_model"] == "ease"  # best non-neural model on NDCG@10
    others = ["toppop", "itemknn", "neumf"]
    raw = [float(stats.wilcoxon(pu[m]["ndcg_at_10"], pu["ease"]["ndcg_at_10"]).pvalue) for m in others]
    adjusted = holm(raw)
    for m, p, padj in zip(others, raw, adjusted):
        row = _row(planted_report, m)
        assert row["p_value"] == pytest.approx(p)
        assert row["p_adjusted"] == pytest.approx(padj)
    # The planted structure: neumf clearly better, itemknn clearly worse, toppop indistinguishable.
    assert _row(planted_report, "neumf")["mark"] == "†"
    assert _row(planted_report, "itemknn")["mark"] == "*"
    assert _row(planted_report, "toppop")["mark"] == ""
    assert _row(planted_report, "ease")["mark"] == "ref"


def test_benjamini_hochberg_is_an_option_and_the_report_says_so(planted_store, planted_report, tmp_path):
    from statsmodels.stats.multitest import multipletests

    uri, pu = planted_store
    out = tmp_path / "bh"
    generate_report(uri, out_dir=out, cutoffs=(10,), n_resamples=999, correction="bh")
    doc = json.loads((out / "report.json").read_text())
    others = ["toppop", "itemknn", "neumf"]
    raw = [float(stats.wilcoxon(pu[m]["ndcg_at_10"], pu["ease"]["ndcg_at_10"]).pvalue) for m in others]
    # by hand: the i-th smallest of m p-values times m / i, a running minimum from the largest
    order = np.argsort(raw)
    hand = np.empty(3)
    running = 1.0
    for rank in range(3, 0, -1):
        i = order[rank - 1]
        running = min(running, raw[i] * 3 / rank)
        hand[i] = running
    np.testing.assert_allclose(hand, multipletests(raw, method="fdr_bh")[1])
    for m, padj in zip(others, hand, strict=True):
        assert _row(doc, m)["p_adjusted"] == pytest.approx(padj)
        assert _row(doc, m)["p_value"] == pytest.approx(_row(planted_report, m)["p_value"])
    assert doc["settings"]["correction"] == "bh" and doc["tables"][0]["correction"] == "bh"
    md = (out / "README.md").read_text()
    assert "Benjamini-Hochberg-corrected over the 3 comparisons" in md and "p (Benjamini-Hochberg)" in md
    assert "--correction bh" in md  # the regenerate command keeps the option


def test_every_format_is_written_with_header_and_marks(planted_store, planted_report, tmp_path):
    uri, _ = planted_store
    out = tmp_path / "r"
    generate_report(uri, out_dir=out, cutoffs=(10,), n_resamples=999)
    md = (out / "README.md").read_text()
    assert md.startswith("<!-- generated by reprorec-report")
    assert "do not edit" in md and "reprorec-report --tracking-uri" in md
    assert "0.4" in md and "† / *" in md and "Holm-corrected" in md
    assert "Not logged by any run (no column): precision_at_10, map_at_10, hit_rate_at_10." in md
    tex = (out / "leaderboard.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\textsuperscript{\dag}" in tex
    csv = pd.read_csv(out / "leaderboard.csv", comment="#")
    row = csv[(csv.model == "itemknn") & (csv.key == "ndcg_at_10")].iloc[0]
    assert row.value == pytest.approx(_row(planted_report, "itemknn")["cells"]["ndcg_at_10"]["mean"])
    assert row.mark == "*"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2
    bib = (out / "CITATION.bib").read_text()
    assert planted_report["report_id"] in bib and "@misc{" in bib


def test_provenance_rows_link_to_the_runs_view(planted_report):
    prov = _row(planted_report, "ease")["provenance"][0]
    run_page = f"http://127.0.0.1:5555/#/experiments/{prov['experiment_id']}/runs/{prov['run_id']}"
    assert prov["link"] == run_page + "?workflowType=machine_learning"  # the runs view, not GenAI tabs
    assert prov["git_commit"] and prov["git_dirty"] == "false" and prov["fp_split"] and prov["hardware"]
    assert planted_report["commands"]["sweep"].startswith("reprorec -m")


def test_missing_cutoffs_are_named(planted_store, tmp_path):
    uri, _ = planted_store
    generate_report(uri, out_dir=tmp_path / "r", n_resamples=99)  # default cutoffs 5/10/20/50
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    missing = doc["tables"][0]["missing_columns"]
    assert "ndcg_at_5" in missing and "hit_rate_at_10" in missing and "ndcg_at_10" not in missing


def test_report_id_is_stable_and_changes_when_a_number_changes(planted_store, planted_report, tmp_path):
    uri, _ = planted_store
    generate_report(uri, out_dir=tmp_path / "a", cutoffs=(10,), n_resamples=999)
    doc_a = json.loads((tmp_path / "a" / "report.json").read_text())
    assert doc_a["report_id"] == planted_report["report_id"]  # regenerated elsewhere, same content
    # Same store copied, one logged test metric changed (a later value of the metric wins in MLflow).
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run_id = _row(planted_report, "toppop")["provenance"][0]["run_id"]
    old = client.get_run(run_id).data.metrics["test/recall_at_10"]
    try:
        client.log_metric(run_id, "test/recall_at_10", old + 0.001, timestamp=1_800_000_000_000, step=1)
        generate_report(uri, out_dir=tmp_path / "b", cutoffs=(10,), n_resamples=999)
        doc_b = json.loads((tmp_path / "b" / "report.json").read_text())
    finally:
        client.log_metric(run_id, "test/recall_at_10", old, timestamp=1_900_000_000_000, step=2)
    assert doc_b["report_id"] != doc_a["report_id"]


def test_failing_renderer_leaves_previous_report_intact(planted_store, tmp_path, monkeypatch):
    uri, _ = planted_store
    out = tmp_path / "rep"
    generate_report(uri, out_dir=out, cutoffs=(10,), n_resamples=99)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert any(p.parts[0] == "figures" for p in before)  # the SVG figures too

    def boom(doc):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(render_mod, "latex", boom)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        generate_report(uri, out_dir=out, cutoffs=(5, 10), n_resamples=99)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no temporary folder left behind


def _two_split_cells(pu):
    return [
        FakeCell("ease", "linear", 0, pu["ease"], split_fingerprint="a" * 64),
        FakeCell("itemknn", "neighbourhood", 0, pu["itemknn"], split_fingerprint="b" * 64),
    ]


def test_mixed_split_fingerprints_are_refused_not_merged(tmp_path, capsys):
    pu = _planted()
    good = [FakeCell(m, FAMILY[m], 0, pu[m], dataset="other") for m in ("ease", "toppop")]
    uri = _store(tmp_path, _two_split_cells(pu) + good)
    generate_report(uri, out_dir=tmp_path / "r", cutoffs=(10,), n_resamples=99)
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [t["dataset"] for t in doc["tables"]] == ["other"]
    (refusal,) = doc["refused"]
    assert refusal["dataset"] == "synthetic" and "reprorec.fingerprint.split" in refusal["reason"]
    assert {r["split_fp"] for r in refusal["runs"]} == {"a" * 12, "b" * 12}
    assert "Refused tables" in (tmp_path / "r" / "README.md").read_text()
    assert "refused table synthetic" in capsys.readouterr().err


def test_only_refused_groups_is_an_error_and_split_option_separates_them(tmp_path):
    uri = _store(tmp_path, _two_split_cells(_planted()))
    with pytest.raises(ReportInputError, match="refused") as exc:
        generate_report(uri, out_dir=tmp_path / "r", cutoffs=(10,))
    assert "aaaaaaaaaaaa" in str(exc.value) and "bbbbbbbbbbbb" in str(exc.value)
    assert not (tmp_path / "r").exists()
    generate_report(uri, out_dir=tmp_path / "r", cutoffs=(10,), split_by_fingerprint=True, n_resamples=99)
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert sorted(len(t["rows"]) for t in doc["tables"]) == [1, 1]
    assert all("split fingerprint" in t["notes"][0] for t in doc["tables"])


def _stouffer_by_hand(pairs):
    """Two-sided p of per-seed one-sided Wilcoxon tests combined with weighted Stouffer Z."""
    z = np.array([stats.norm.isf(stats.wilcoxon(a, b, alternative="greater").pvalue) for a, b in pairs])
    w = np.sqrt([len(a) for a, _ in pairs])
    p = stats.norm.sf((w * z).sum() / np.sqrt((w**2).sum()))
    return 2 * min(p, 1 - p)


@pytest.mark.parametrize("n_seeds", [2, 3])
def test_several_seeds_give_in_range_intervals_and_a_per_seed_paired_test(tmp_path, n_seeds):
    rng = np.random.default_rng(1)
    cells = []
    for seed in range(n_seeds):
        # a random split evaluates different users in each seed: 3 users only in this seed
        ids = [f"u{j}" for j in range(N - 3)] + [f"s{seed}-{j}" for j in range(3)]
        for m, shift in (("ease", 0.0), ("toppop", -0.1)):
            # mostly 0 or 1, as recall@k and hit rates are: a t interval over 2 seeds leaves [0, 1]
            v = (rng.uniform(0, 1, N) < 0.75 + shift + 0.1 * seed).astype(float)
            cells.append(FakeCell(m, FAMILY[m], seed, {"ndcg_at_10": v}, user_ids=ids))
    uri = _store(tmp_path, cells)
    generate_report(uri, out_dir=tmp_path / "r", cutoffs=(10,), metrics=("ndcg",))
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    seed_means = np.array([c.per_user["ndcg_at_10"].mean() for c in cells if c.model == "toppop"])
    cell = _row(doc, "toppop")["cells"]["ndcg_at_10"]
    assert cell["method"] == "seeds x users bootstrap" and cell["n"] == n_seeds
    assert cell["mean"] == pytest.approx(seed_means.mean())
    assert cell["std"] == pytest.approx(np.std(seed_means, ddof=1))
    assert 0.0 <= cell["low"] <= cell["mean"] <= cell["high"] <= 1.0
    if n_seeds == 2:  # what the Student-t interval over seeds gave: outside the metric's range
        lo, hi = stats.t.interval(0.95, 1, loc=seed_means.mean(), scale=stats.sem(seed_means))
        assert lo < 0.0 or hi > 1.0
    # paired per seed on the users both models evaluated in it, combined over seeds
    pairs = []
    for seed in range(n_seeds):
        a, b = (next(c for c in cells if c.model == m and c.seed == seed) for m in ("toppop", "ease"))
        pairs.append((a.per_user["ndcg_at_10"], b.per_user["ndcg_at_10"]))
    row = _row(doc, "toppop")
    assert not row["pairing_note"]
    assert row["p_value"] == pytest.approx(_stouffer_by_hand(pairs), rel=1e-9)
    assert "combined over seeds with Stouffer's Z" in (tmp_path / "r" / "README.md").read_text()


def test_different_user_sets_are_not_paired(tmp_path):
    pu = _planted()
    ids = [f"u{j}" for j in range(N)]
    cells = [
        FakeCell("ease", "linear", 0, pu["ease"], user_ids=ids),
        FakeCell("toppop", "non-personalised", 0, pu["toppop"], user_ids=[*ids[:-1], "stranger"]),
    ]
    uri = _store(tmp_path, cells)
    generate_report(uri, out_dir=tmp_path / "r", cutoffs=(10,), n_resamples=99)
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    row = _row(doc, "toppop")
    assert row["p_value"] is None and "user sets differ" in row["pairing_note"]
    assert any("no significance test" in n for n in doc["tables"][0]["notes"])


def test_paired_ttest_option(planted_store, tmp_path):
    uri, pu = planted_store
    generate_report(uri, out_dir=tmp_path / "r", cutoffs=(10,), test="ttest", n_resamples=99)
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    expected = stats.ttest_rel(pu["toppop"]["ndcg_at_10"], pu["ease"]["ndcg_at_10"]).pvalue
    assert _row(doc, "toppop")["p_value"] == pytest.approx(expected)
    assert "--test ttest" in doc["commands"]["report"]


def test_no_finished_runs_says_which_runs_were_skipped(tmp_path):
    pu = _planted()
    uri = _store(tmp_path, [FakeCell("ease", "linear", 0, pu["ease"], status="FAILED")])
    with pytest.raises(ReportInputError, match="no FINISHED cell runs") as exc:
        generate_report(uri, out_dir=tmp_path / "r")
    assert "status FAILED" in str(exc.value) and "ease · synthetic · seed 0" in str(exc.value)


def test_unlogged_metric_is_named_with_what_was_logged(planted_store, tmp_path):
    uri, _ = planted_store
    with pytest.raises(ReportInputError, match="mrr") as exc:
        generate_report(uri, out_dir=tmp_path / "r", metrics=("mrr",), cutoffs=(10,))
    assert "test/ndcg_at_10" in str(exc.value)


def test_unknown_experiment_lists_the_existing_ones(planted_store, tmp_path):
    uri, _ = planted_store
    with pytest.raises(ReportInputError, match=r"'nope' not found.*reprorec"):
        generate_report(uri, experiment="nope", out_dir=tmp_path / "r")


def test_reference_values_are_shown_with_the_difference(planted_store, planted_report, tmp_path):
    uri, pu = planted_store
    ref = tmp_path / "ref.csv"
    ref.write_text(
        "model,metric,cutoff,value,source\n"
        "ease,ndcg,10,0.4,Some et al. 2020 Table 1\n"
        "ghost,ndcg,10,0.9,not in the table\n"
    )
    generate_report(uri, out_dir=tmp_path / "r", cutoffs=(10,), reference=ref, n_resamples=99)
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    (line,) = doc["tables"][0]["references"]
    assert line["ours"] == pytest.approx(pu["ease"]["ndcg_at_10"].mean())
    assert line["difference"] == pytest.approx(pu["ease"]["ndcg_at_10"].mean() - 0.4)
    assert "Published vs reproduced" in (tmp_path / "r" / "README.md").read_text()
    assert doc["tables"][0]["reproduction"]["n"] == 1


def test_reproduction_summary_counts_within_above_below_and_missing():
    from benchmark.reporting.reference import reproduction_summary, summary_line

    diffs = [0.0, 0.002, -0.0019, 0.0101, 0.003, -0.02, float("nan")]
    s = reproduction_summary([{"difference": d} for d in diffs])
    assert (s["n"], s["n_within"], s["n_above"], s["n_below"], s["n_missing"]) == (7, 3, 2, 1, 1)
    assert (s["max_above"], s["max_below"]) == (0.0101, -0.02)
    assert summary_line(s) == (
        "Reproduction: 3 of 7 published values within 0.002; 2 above (ours higher by up to +0.0101); "
        "1 below (ours lower by up to -0.0200); 1 not computed here."
    )


def test_bad_reference_file_names_line_and_field(tmp_path):
    ref = tmp_path / "ref.csv"
    ref.write_text("model,metric,cutoff,value,source\ntoppop,ndcg,ten,0.1,x\n")
    with pytest.raises(DataError, match=r"ref.csv:2.*'cutoff'.*'ten'"):
        read_reference(ref)


def test_shipped_reference_example_names_its_split_and_metric_variant_and_cites_its_sources():
    # the README's example: every row is bound to its split, and Dacrema et al.'s NDCG is the
    # full-IDCG variant (an unbound `ndcg` row once showed a fake 0.085 reproduction gap)
    rows = read_reference(REPO / "reports" / "reference" / "dacrema" / "mcrec_ml100k.csv")
    assert rows and all(r["split"] == "mcrec_ml100k" and "Dacrema" in r["source"] for r in rows)
    assert {r["metric"] for r in rows} == {"precision", "recall", "ndcg_full_idcg"}
    toppop = {(r["metric"], r["cutoff"]): r["value"] for r in rows if r["model"] == "toppop"}
    assert toppop[("precision", 10)] == 0.1907


def test_cli_writes_report_and_fails_cleanly(planted_store, tmp_path, capsys):
    from benchmark.cli.report import main

    uri, _ = planted_store
    assert (
        main(["--tracking-uri", uri, "--out", str(tmp_path / "r"), "--cutoffs", "10", "--resamples", "99"])
        == 0
    )
    assert (tmp_path / "r" / "report.html").exists()
    assert main(["--tracking-uri", uri, "--experiment", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "experiment 'nope' not found" in capsys.readouterr().err


def test_sweep_option_reports_only_that_sweeps_cells(tmp_path):
    pu = _planted()
    uri = new_sqlite_store(tmp_path)
    art = (tmp_path / "artifacts").as_uri()
    log_sweep(uri, [FakeCell("ease", "linear", 0, pu["ease"])], artifact_location=art)
    _, sweep2, ids2 = log_sweep(
        uri, [FakeCell("toppop", "non-personalised", 0, pu["toppop"])], artifact_location=art
    )
    generate_report(uri, sweep_run_id=sweep2, out_dir=tmp_path / "r", cutoffs=(10,), n_resamples=99)
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [r["model"] for r in doc["tables"][0]["rows"]] == ["toppop"]
    assert _row(doc, "toppop")["provenance"][0]["run_id"] == ids2[0]
    assert f"--sweep {sweep2}" in doc["commands"]["report"]


def test_rerun_cells_count_once_the_newest_run_with_one_note(tmp_path):
    from mlflow import MlflowClient

    pu = _planted()
    uri = new_sqlite_store(tmp_path)
    art = (tmp_path / "artifacts").as_uri()
    top = pu["toppop"]["ndcg_at_10"]
    values = [top, np.clip(top + 0.05, 0, 1), np.clip(top - 0.05, 0, 1)]
    ids = [
        log_sweep(uri, [FakeCell("toppop", "non-personalised", 0, {"ndcg_at_10": v})], artifact_location=art)[
            2
        ][0]
        for v in values
    ]
    log_sweep(
        uri, [FakeCell("ease", "linear", 0, {"ndcg_at_10": pu["ease"]["ndcg_at_10"]})], artifact_location=art
    )
    client = MlflowClient(uri)
    for rid, end in zip(ids, (1_700_000_300_000, 1_700_000_500_000, 1_700_000_400_000), strict=True):
        client.set_terminated(rid, "FINISHED", end_time=end)  # the second run is the newest
    generate_report(uri, out_dir=tmp_path / "r", cutoffs=(10,), metrics=("ndcg",), n_resamples=99)
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    row = _row(doc, "toppop")
    assert row["cells"]["ndcg_at_10"]["mean"] == pytest.approx(values[1].mean())
    assert [p["run_id"] for p in row["provenance"]] == [ids[1]]
    notes = [n for n in doc["tables"][0]["notes"] if "FINISHED runs" in n]
    assert notes == [f"toppop seed 0: 3 FINISHED runs, using the newest ({ids[1]}, commit 0123456789ab)"]


def test_runs_from_several_sweeps_list_each_command_with_its_commit(tmp_path):
    pu = _planted()
    uri = new_sqlite_store(tmp_path)
    art = (tmp_path / "artifacts").as_uri()
    cmd_a, cmd_b = "reprorec -m model=ease", "reprorec -m model=toppop"
    log_sweep(uri, [FakeCell("ease", "linear", 0, pu["ease"])], artifact_location=art, command=cmd_a)
    log_sweep(
        uri, [FakeCell("toppop", "non-personalised", 0, pu["toppop"])], artifact_location=art, command=cmd_b
    )
    generate_report(uri, out_dir=tmp_path / "r", cutoffs=(10,), n_resamples=99)
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    commit = "0123456789ab"
    lines = doc["commands"]["sweep"].split("\n")  # both cells started at the same time: any order
    assert sorted(zip(lines[::2], lines[1::2], strict=True)) == [
        (f"# at commit {commit}", c) for c in (cmd_a, cmd_b)
    ]
    md = (tmp_path / "r" / "README.md").read_text()
    assert f"```\n{doc['commands']['sweep']}\n```" in md


def test_different_tie_rules_on_the_same_split_are_refused(tmp_path):
    pu = _planted()
    cells = [
        FakeCell("ease", "linear", 0, pu["ease"]),
        FakeCell(
            "toppop", "non-personalised", 0, pu["toppop"], eval_params={"evaluation.tie_rule": "random"}
        ),
    ]
    uri = _store(tmp_path, cells)
    with pytest.raises(ReportInputError, match=r"evaluation settings differ \(evaluation.tie_rule\)"):
        generate_report(uri, out_dir=tmp_path / "r", cutoffs=(10,))


def test_main_metric_outside_the_requested_columns_is_shown_and_tested(planted_store, tmp_path):
    # a paper's table (Recall@10 here) need not contain the tuned metric (NDCG@10): the report adds
    # it as the first column and runs the significance tests on it, not on a table column
    uri, pu = planted_store
    generate_report(
        uri,
        out_dir=tmp_path / "r",
        metrics=("recall",),
        cutoffs=(10,),
        main_metric="ndcg_at_10",
        n_resamples=99,
    )
    table = json.loads((tmp_path / "r" / "report.json").read_text())["tables"][0]
    assert [c["key"] for c in table["columns"]] == ["ndcg_at_10", "recall_at_10"]
    assert table["reference_model"] == "ease"
    raw = float(stats.wilcoxon(pu["itemknn"]["ndcg_at_10"], pu["ease"]["ndcg_at_10"]).pvalue)
    assert _row({"tables": [table]}, "itemknn")["p_value"] == pytest.approx(raw)
    assert not any("was not logged" in n for n in table["notes"])


def test_tunable_models_run_without_search_are_marked_not_tuned(tmp_path):
    """A tuner=fixed run (empty search space) and a tuner=none run (which logs the space it did not
    search) must not pass for tuned rows; TopPop, which has nothing to tune, even under tuner=none,
    and a tuned ItemKNN are not marked."""
    pu = _planted()
    cells = [
        FakeCell("toppop", "non-personalised", 0, pu["toppop"], tuner="none"),
        FakeCell("itemknn", "neighbourhood", 0, pu["itemknn"]),
        FakeCell("ease", "linear", 0, pu["ease"], tuner="none"),
        FakeCell("neumf", "neural", 0, pu["neumf"], search_space={}, tuner="fixed"),
    ]
    uri = _store(tmp_path, cells)
    out = tmp_path / "report"
    generate_report(uri, out_dir=out, cutoffs=(10,), n_resamples=99)
    doc = json.loads((out / "report.json").read_text())
    assert [(r["model"], r["untuned"]) for r in doc["tables"][0]["rows"]] == [
        ("toppop", False),
        ("itemknn", False),
        ("ease", True),
        ("neumf", True),
    ]
    notes = doc["tables"][0]["notes"]
    n_space = len(yaml.safe_load((REPO / "conf/model/neumf.yaml").read_text())["search_space"])
    assert any(n.startswith("neumf (not tuned)") and "(tuner=fixed), while" in n for n in notes)
    assert any(n.startswith("neumf (not tuned)") and f"searches {n_space} parameters" in n for n in notes)
    assert any(n.startswith("ease (not tuned)") and "(tuner=none)" in n for n in notes)
    assert not any("tuning parity" in n for n in notes)  # the untuned rows are named, not parity breaches
    md = (out / "README.md").read_text()
    assert "| neural | neumf (not tuned) |" in md and "| linear | ease (ref) (not tuned) |" in md
    assert "itemknn (not tuned)" not in md and "toppop (not tuned)" not in md
    assert "neumf (not tuned)" in (out / "report.html").read_text()
    csv = pd.read_csv(out / "leaderboard.csv", comment="#")
    untuned = csv.groupby("model")["untuned"].all().to_dict()
    assert untuned == {"ease": True, "itemknn": False, "neumf": True, "toppop": False}


def test_bibtex_is_latex_safe_p_values_below_float_range_are_bounds_and_the_tie_rule_is_resolved(tmp_path):
    import re

    from benchmark.evaluation.evaluator import DEFAULT_TIE_RULE
    from benchmark.reporting.render import format_p
    from benchmark.tracking import schema as S

    assert S.DEFAULT_TIE_RULE == DEFAULT_TIE_RULE
    pu = _planted()
    # runs logged before the tie rule was resolved say "default"
    cells = [
        FakeCell(m, FAMILY[m], 0, pu[m], eval_params={S.PARAM_TIE_RULE: "default"})
        for m in ("ease", "toppop")
    ]
    uri = _store(tmp_path, cells)
    generate_report(uri, out_dir=tmp_path / "r", cutoffs=(10,), n_resamples=99)
    bib = (tmp_path / "r" / "CITATION.bib").read_text()
    fields = bib.split("\n", 1)[1]  # after the entry key, which may hold underscores
    assert not re.search(r"(?<!\\)[_%&#]", fields)
    from benchmark.reporting.render import _tex_escape

    assert _tex_escape("dacrema/mcrec_ml100k 100% a&b {x} \\") == (
        r"dacrema/mcrec\_ml100k 100\% a\&b \{x\} \textbackslash{}"
    )
    md = (tmp_path / "r" / "README.md").read_text()
    assert "- **Tie rule**: random" in md and "Tie rule**: default" not in md
    assert format_p(0.0) == "< 1e-300" and format_p(2e-5) == "2.00e-05"


def test_every_row_states_its_own_tuning_protocol(planted_report, tmp_path):
    from benchmark.reporting.tables import _row_protocol, _stopping_text

    rows = planted_report["tables"][0]["rows"]
    assert all(set(r["protocol"]) >= {"tuner", "trials", "pruner", "pack_size", "refit"} for r in rows)
    assert all(r["protocol"]["refit"].startswith("train + validation") for r in rows)
    assert _stopping_text('{"every": 5, "patience": 3}') == "validated every 5 epochs, patience 3"

    class Run:  # two seeds that disagree show both values, an iterative model its refit epochs
        def __init__(self, trials: str, epochs: str) -> None:
            self.params = {
                "tuning.n_trials": trials,
                "tuning.best_epoch": epochs,
                "tuning.early_stopping": "{}",
            }
            self.tags = {"reprorec.tuner": "optuna"}

    p = _row_protocol([Run("50", "15"), Run("20", "30")])  # type: ignore[list-item]
    assert p["trials"] == "20 / 50" and p["refit"] == "train + validation, 15 / 30 epochs"


def test_a_published_url_goes_into_the_bibtex_entry_and_the_pages_but_not_into_the_report_id(tmp_path):
    pu = _planted()
    uri = _store(tmp_path, [FakeCell(m, FAMILY[m], 0, pu[m]) for m in ("ease", "toppop")])
    url = "https://example.org/reprorec/reports/default_all/"
    generate_report(uri, out_dir=tmp_path / "plain", cutoffs=(10,), n_resamples=99)
    generate_report(uri, out_dir=tmp_path / "pub", cutoffs=(10,), n_resamples=99, url=url)
    plain = json.loads((tmp_path / "plain" / "report.json").read_text())
    pub = json.loads((tmp_path / "pub" / "report.json").read_text())
    assert pub["report_id"] == plain["report_id"]  # where it is published is not what it says
    bib = (tmp_path / "pub" / "CITATION.bib").read_text()
    tail = f"  howpublished = {{reprorec leaderboard report}},\n  url          = {{{url}}}\n}}\n"
    assert bib.endswith(tail)
    assert "url " not in (tmp_path / "plain" / "CITATION.bib").read_text()  # never invented
    assert f"Published at: <{url}>" in (tmp_path / "pub" / "README.md").read_text()
    assert f'Published at: <a href="{url}">' in (tmp_path / "pub" / "report.html").read_text()
    assert pub["commands"]["report"].endswith(f"--url {url}")  # the regenerate command keeps it


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.org/r", r"not an http\(s\) URL"),
        ("https:///r", r"not an http\(s\) URL"),
        ("https://example.org/a b", "whitespace"),
        ("https://example.org/{r}", "brace"),
        ("https://alice:s3cret@example.org/r", "credentials"),
    ],
)
def test_a_publication_url_a_citation_cannot_carry_is_refused_before_the_store_is_read(tmp_path, url, why):
    with pytest.raises(ReportInputError, match=why) as err:
        generate_report(str(tmp_path / "absent.db"), out_dir=tmp_path / "r", url=url)
    assert "--url=" in str(err.value) and "s3cret" not in str(err.value)
    assert not (tmp_path / "r").exists()
