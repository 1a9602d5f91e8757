"""The overall page (``reprorec-report --overall``): ranks across reports, Friedman + Nemenyi, holes.

Reports are written by hand as report.json files with known values, so every rank, statistic and
count below is computable on paper.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from benchmark.errors import DataError
from benchmark.reporting.overall import load_tables, rank_tables, write_overall


def row(
    model: str, value: float, *, mark: str = "", p: float | None = 0.5, best_val: float | None = None
) -> dict:
    return {
        "model": model,
        "family": "linear",
        "cells": {"m_at_10": {"mean": value}},
        "mark": mark,
        "p_value": p,
        "cost": {} if best_val is None else {"best_val": best_val},
        "untuned": False,
    }


def report(folder: Path, dataset: str, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True)
    doc = {
        "report_id": f"sha256:{dataset}",
        "date": "2026-12-07",
        "tables": [{"dataset": dataset, "split": "s", "main_key": "m_at_10", "rows": rows}],
    }
    (folder / "report.json").write_text(json.dumps(doc))
    return folder


# four models, ranks by hand: d1 a>b>c>d, d2 b>a>c>d, d3 a>c>b>d (d always last)
VALUES = {
    "d1": {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1},
    "d2": {"a": 0.3, "b": 0.4, "c": 0.2, "d": 0.1},
    "d3": {"a": 0.4, "b": 0.2, "c": 0.3, "d": 0.1},
}


def three_reports(tmp_path: Path) -> list[Path]:
    out = []
    for ds, vals in VALUES.items():
        best = max(vals, key=vals.__getitem__)
        rows = [
            row(m, v, mark="ref" if m == best else "*" if m == "d" else "", p=None if m == best else 0.01)
            for m, v in vals.items()
        ]
        out.append(report(tmp_path / ds, ds, rows))
    return out


def test_average_ranks_friedman_and_critical_difference_by_hand(tmp_path: Path) -> None:
    tables, sources = load_tables(three_reports(tmp_path))
    assert [s["report"] for s in sources] == ["d1", "d2", "d3"]
    o = rank_tables(tables)
    assert o.average_rank.to_dict() == pytest.approx({"a": 4 / 3, "b": 2.0, "c": 8 / 3, "d": 4.0})
    # Friedman: chi2 = 12 N / (k (k+1)) * (sum R_j^2 - k (k+1)^2 / 4), N = 3, k = 4
    r = np.array([4 / 3, 2.0, 8 / 3, 4.0])
    chi2 = 12 * 3 / (4 * 5) * (np.sum(r**2) - 4 * 25 / 4)
    assert o.friedman is not None
    assert o.friedman["statistic"] == pytest.approx(chi2)
    assert o.friedman["p_value"] == pytest.approx(stats.chi2.sf(chi2, 3))
    # Demšar (2006), Table 5: q_0.05 = 2.569 for k = 4
    assert o.critical_difference == pytest.approx(2.569 * math.sqrt(4 * 5 / (6 * 3)), abs=1e-3)
    assert o.nemenyi is not None and o.nemenyi.shape == (4, 4)
    assert o.missing == []
    # marks: d is significantly worse everywhere; b and c are tested ties; a is the reference twice
    assert o.wtl.loc["d", ["wins", "ties", "losses"]].tolist() == [0, 0, 3]
    assert o.wtl.loc["a", "reference"] == 2 and o.wtl.loc["b", "reference"] == 1
    assert o.wtl.loc["c", "ties"] == 3


def test_a_missing_model_is_listed_ranked_apart_and_not_tested(tmp_path: Path) -> None:
    paths = three_reports(tmp_path)
    paths.append(
        report(
            tmp_path / "d4", "d4", [row("a", 0.5), row("b", 0.4), row("c", 0.3), row("d", 0.2), row("e", 0.9)]
        )
    )
    o = rank_tables(load_tables(paths)[0])
    assert o.missing == [("e", "d1 · s"), ("e", "d2 · s"), ("e", "d3 · s")]
    assert "e" not in o.complete_models and o.partial_rank.to_dict() == {"e": 1.0}
    assert o.friedman is not None and o.friedman["k"] == 4 and o.friedman["n"] == 4
    assert "3 (model, table) cells are missing" in o.notes[0]


def test_a_variant_stands_for_its_base_model_by_validation_not_by_test(tmp_path: Path) -> None:
    rows = [
        row("itemknn_cosine", 0.30, best_val=0.20),  # better on test
        row("itemknn_jaccard", 0.25, best_val=0.21),  # better on validation: chosen
        row("ease", 0.35),
    ]
    (table,) = load_tables([report(tmp_path / "x", "x", rows)])[0]
    assert table.folded == {"itemknn": "itemknn_jaccard"}
    assert table.values == {"itemknn": 0.25, "ease": 0.35}


def test_too_few_complete_models_means_no_test_and_the_page_says_why(tmp_path: Path) -> None:
    paths = [
        report(tmp_path / "y", "y", [row("a", 0.2), row("b", 0.1)]),
        report(tmp_path / "z", "z", [row("a", 0.3), row("b", 0.2)]),
    ]
    out = write_overall(paths, tmp_path / "overall", command="reprorec-report --overall y z --out overall")
    o = rank_tables(load_tables(paths)[0])
    assert o.friedman is None and o.critical_difference is None
    text = (out / "README.md").read_text()
    assert "Friedman's test needs at least 3 models and 2 tables" in text
    assert not (out / "cd_diagram.svg").exists()


def test_the_page_and_its_diagram_are_written_and_regenerate_identically(tmp_path: Path) -> None:
    paths = three_reports(tmp_path)
    a = write_overall(paths, tmp_path / "a", command="c")
    b = write_overall(paths, tmp_path / "b", command="c")
    for name in ("README.md", "overall.json", "main_metric.csv", "cd_diagram.svg"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # another process with another string-hash salt draws the same diagram (its crossbars are sets)
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from benchmark.reporting.overall import write_overall; "
        "write_overall([Path(p) for p in sys.argv[2:]], Path(sys.argv[1]), command='c')"
    )
    for seed in ("1", "2"):
        out = tmp_path / f"p{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [sys.executable, "-c", code, str(out), *map(str, paths)], check=True, env=env, timeout=120
        )
        for name in ("cd_diagram.svg", "cd_diagram.pdf", "cd_diagram.png"):
            assert (out / name).read_bytes() == (a / name).read_bytes(), (seed, name)
    assert (a / "cd_diagram.pdf").stat().st_size > 0 and (a / "cd_diagram.png").stat().st_size > 0
    doc = json.loads((a / "overall.json").read_text())
    assert doc["average_rank"]["a"] == pytest.approx(4 / 3)
    assert "| a | 1.33 | 3 |" in (a / "README.md").read_text()


def test_a_folder_without_report_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no report\.json"):
        load_tables([tmp_path / "empty"])
