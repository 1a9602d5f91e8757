"""The LaTeX of every committed report compiles with pdflatex + booktabs inside a standard article.

A headline table that is wider than ``\\textwidth`` (an overfull box) or a float taller than a page
fails; so does any LaTeX error (an unescaped ``_`` in a model name, say). Skipped where pdflatex is
not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmark.reporting import render

REPO = Path(__file__).resolve().parents[2]
REPORTS = sorted(p.parent for p in (REPO / "reports").rglob("report.json"))
PDFLATEX = shutil.which("pdflatex")

DOCUMENT = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage{booktabs}
\begin{document}
\input{leaderboard}
\end{document}
"""


def compile_latex(tex: str, folder: Path) -> str:
    (folder / "leaderboard.tex").write_text(tex, encoding="utf-8")
    (folder / "main.tex").write_text(DOCUMENT, encoding="utf-8")
    proc = subprocess.run(
        [str(PDFLATEX), "-interaction=nonstopmode", "-halt-on-error", "main.tex"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (folder / "main.log").read_text(encoding="utf-8", errors="replace")
    assert proc.returncode == 0, log[-3000:]
    return log


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex is not installed")
@pytest.mark.parametrize("folder", REPORTS, ids=[str(p.relative_to(REPO / "reports")) for p in REPORTS])
def test_committed_report_latex_fits_the_page(folder: Path, tmp_path: Path) -> None:
    doc = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    log = compile_latex(render.latex(doc), tmp_path)
    assert "Overfull \\hbox" not in log, [line for line in log.splitlines() if "Overfull" in line]
    assert "Float too large" not in log


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex is not installed")
def test_the_check_catches_a_table_wider_than_the_page(tmp_path: Path) -> None:
    wide = (
        "\\begin{tabular}{" + "r" * 30 + "}\n" + " & ".join(["0.12345"] * 30) + r" \\" + "\n\\end{tabular}\n"
    )
    assert "Overfull \\hbox" in compile_latex(wide, tmp_path)


def test_the_headline_keeps_the_experiment_columns_or_the_main_cutoff() -> None:
    cols = [{"key": f"{m}_at_{k}", "metric": m, "k": k} for m in ("ndcg", "recall", "map") for k in (5, 10)]
    t = {"columns": cols, "main_key": "recall_at_10"}
    assert [c["key"] for c in render.headline_columns(t)] == [
        "recall_at_10",
        "ndcg_at_10",
        "map_at_10",
        "ndcg_at_5",
    ]
    few = {"columns": cols[:3], "main_key": "ndcg_at_10"}
    assert [c["key"] for c in render.headline_columns(few)] == ["ndcg_at_10", "ndcg_at_5", "recall_at_5"]


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex is not installed")
def test_untuned_rows_are_a_symbol_that_fits_with_the_longest_names(tmp_path: Path) -> None:
    # every row of the 7-column spectralcf_ml1m tables untuned, the longest names included
    doc = json.loads((REPO / "reports/dacrema/spectralcf_ml1m/report.json").read_text(encoding="utf-8"))
    for t in doc["tables"]:
        for r in t["rows"]:
            r["untuned"] = True
    tex = render.latex(doc)
    assert r"\quad userknn\_asymmetric\textsuperscript{\S} &" in tex
    assert "(not tuned)" not in tex
    assert tex.count(r"\S}: not tuned") == len(doc["tables"])  # explained once, in each headline caption
    log = compile_latex(tex, tmp_path)
    assert "Overfull \\hbox" not in log, [line for line in log.splitlines() if "Overfull" in line]
