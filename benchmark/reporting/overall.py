"""The overall page: models ranked across the leaderboards of several reports (datasets, protocols).

A result that holds on one dataset may not transfer; the overall page says how a model fares over
every (dataset, protocol) table of the reports it is given, each on that table's own main metric:

1. **the matrix**: one column per table, one row per model, the main metric's test mean. A model
   missing from a table is a visible hole (listed with its table), never dropped silently;
2. **named variants** (``itemknn_cosine`` ... of ``itemknn``, registry ``variant_of``) of a base model
   that a table does not have are folded into it *by validation*: the variant with the best
   validation value (the tuning objective) stands for the base model, as a combined search over the
   similarity would have chosen; never by test;
3. **average ranks** (1 = best, ties averaged) over the tables where every compared model has a
   value (complete cases): Friedman's test of equal ranks, then the Nemenyi post-hoc test and its
   critical difference CD = q_alpha * sqrt(k (k + 1) / (6 N)) (Demšar, "Statistical Comparisons of
   Classifiers over Multiple Data Sets", JMLR 7, 2006), computed with scipy and scikit-posthocs and
   drawn as a critical-difference diagram (models joined by a bar are not significantly different).
   Models with holes are ranked over the tables they appear in, shown apart, and not tested;
4. **wins / ties / losses against the best baseline** of each table, from that table's own paired
   test over users (the report's † and * marks, under its multiple-testing correction): a win is
   significantly better, a loss significantly worse, a tie neither.

With fewer than 3 complete models or 2 complete tables there is no test, and the page says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.errors import DataError
from benchmark.reporting.render import format_p

#: Significance level of Friedman's test and of the Nemenyi post-hoc test.
ALPHA = 0.05


@dataclass
class Table:
    """One leaderboard of one report: its label and each model's main-metric mean."""

    report: str
    label: str
    main_key: str
    values: dict[str, float]
    marks: dict[str, str]
    tested: set[str] = field(default_factory=set)  # models with a paired test against the best baseline
    untuned: set[str] = field(default_factory=set)
    folded: dict[str, str] = field(default_factory=dict)  # base model -> the variant that stands for it


def _report_file(path: Path) -> Path:
    f = path / "report.json" if path.is_dir() else path
    if not f.is_file():
        raise DataError(f"{path}: no report.json (give report folders written by reprorec-report)")
    return f


def load_tables(paths: Sequence[Path]) -> tuple[list[Table], list[dict[str, Any]]]:
    """The tables of every report (folder or report.json), and each report's identity."""
    from benchmark.registry import model_specs

    variants = {name: spec.variant_of for name, spec in model_specs().items() if spec.variant_of}
    tables, sources = [], []
    for path in paths:
        f = _report_file(path)
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
            raw_tables = doc["tables"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{f}: not a reprorec report.json ({exc})") from exc
        name = f.parent.name
        sources.append(
            {
                "report": name,
                "report_id": doc.get("report_id"),
                "date": doc.get("date"),
                "tables": len(raw_tables),
            }
        )
        for t in raw_tables:
            key = t.get("main_key")
            rows = t.get("rows", [])
            values = {r["model"]: float(r["cells"][key]["mean"]) for r in rows if key in r.get("cells", {})}
            marks = {r["model"]: r.get("mark") or "" for r in rows}
            best_val = {r["model"]: (r.get("cost") or {}).get("best_val") for r in rows}
            table = Table(
                report=name,
                label=f"{t['dataset']} · {t['split']}",
                main_key=key,
                values=values,
                marks=marks,
                tested={r["model"] for r in rows if r.get("p_value") is not None or r.get("mark") == "ref"},
                untuned={r["model"] for r in rows if r.get("untuned")},
            )
            _fold_variants(table, variants, best_val)
            tables.append(table)
    if not tables:
        raise DataError("the reports hold no leaderboard table")
    return tables, sources


def _fold_variants(table: Table, variants: dict[str, str], best_val: dict[str, Any]) -> None:
    """Let the best-on-validation variant stand for a base model the table does not have."""
    by_base: dict[str, list[str]] = {}
    for model in table.values:
        base = variants.get(model)
        if base is not None and base not in table.values:
            by_base.setdefault(base, []).append(model)
    for base, members in sorted(by_base.items()):
        scored = [
            m for m in members if isinstance(best_val.get(m), (int, float)) and math.isfinite(best_val[m])
        ]
        if len(scored) != len(members):
            continue  # no validation value to choose by: the variants stay separate rows
        chosen = max(sorted(scored), key=lambda m: float(best_val[m]))
        table.values[base] = table.values[chosen]
        table.marks[base] = table.marks.get(chosen, "")
        table.folded[base] = chosen
        for flags in (table.tested, table.untuned):
            if chosen in flags:
                flags.add(base)
        for m in members:
            del table.values[m]


@dataclass
class Overall:
    """Everything the overall page shows."""

    matrix: pd.DataFrame  # models x tables, NaN where a model did not run
    complete_models: list[str]  # the models that ran on every table: ranked together and tested
    average_rank: pd.Series
    partial_rank: pd.Series  # models with holes: mean rank over the tables they appear in
    missing: list[tuple[str, str]]
    friedman: dict[str, Any] | None
    nemenyi: pd.DataFrame | None
    critical_difference: float | None
    wtl: pd.DataFrame  # model x (wins, ties, losses, reference, tables)
    notes: list[str]


def rank_tables(tables: Sequence[Table], *, alpha: float = ALPHA) -> Overall:
    """Ranks, Friedman + Nemenyi over the complete cases, and wins/ties/losses (module docstring)."""
    from scipy import stats

    labels = _unique_labels(tables)
    matrix = pd.DataFrame(
        {lab: pd.Series(t.values, dtype=float) for lab, t in zip(labels, tables, strict=True)}
    )
    matrix = matrix.sort_index()
    notes: list[str] = []
    holes = np.argwhere(matrix.isna().to_numpy())
    missing = [(str(matrix.index[i]), str(matrix.columns[j])) for i, j in holes]
    complete_models = [m for m in matrix.index if matrix.loc[m].notna().all()]
    ranks_all = matrix.rank(axis=0, ascending=False, method="average")  # per table, among its models
    ranks = matrix.loc[complete_models].rank(axis=0, ascending=False, method="average")
    average = ranks.mean(axis=1).sort_values()
    partial = ranks_all.loc[[m for m in matrix.index if m not in complete_models]].mean(axis=1).sort_values()
    if missing:
        notes.append(
            f"{len(missing)} (model, table) cells are missing (the model did not run there): those "
            f"{len(partial)} models are ranked over the tables they appear in, apart, and not tested"
        )
    friedman = nemenyi = cd = None
    k, n = len(complete_models), len(matrix.columns)
    if k >= 3 and n >= 2:
        block = matrix.loc[complete_models].T.to_numpy()  # tables x models
        stat, p = stats.friedmanchisquare(*block.T)
        friedman = {"statistic": float(stat), "p_value": float(p), "k": k, "n": n, "alpha": alpha}
        import scikit_posthocs as sp

        nemenyi = sp.posthoc_nemenyi_friedman(pd.DataFrame(block, columns=complete_models))
        q = float(stats.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
        cd = q * math.sqrt(k * (k + 1) / (6.0 * n))
    else:
        notes.append(
            f"{k} models ran on all {n} tables: Friedman's test needs at least 3 models and 2 tables, "
            "so no test and no critical-difference diagram"
        )
    wtl_rows: dict[str, dict[str, int]] = {}
    for t in tables:
        for model in t.values:
            row = wtl_rows.setdefault(
                model, {"wins": 0, "ties": 0, "losses": 0, "reference": 0, "not_tested": 0, "tables": 0}
            )
            row["tables"] += 1
            mark = t.marks.get(model, "")
            if model not in t.tested:
                row["not_tested"] += 1
            elif mark == "ref":
                row["reference"] += 1
            elif mark == "†":
                row["wins"] += 1
            elif mark == "*":
                row["losses"] += 1
            else:
                row["ties"] += 1
    wtl = pd.DataFrame.from_records(
        [{"model": m, **r} for m, r in wtl_rows.items()], index="model"
    ).sort_index()
    return Overall(
        matrix=matrix,
        complete_models=complete_models,
        average_rank=average,
        partial_rank=partial,
        missing=missing,
        friedman=friedman,
        nemenyi=nemenyi,
        critical_difference=cd,
        wtl=wtl,
        notes=notes,
    )


def _unique_labels(tables: Sequence[Table]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for t in tables:
        label = t.label
        if label in seen:  # the same (dataset, split) in two reports
            label = f"{label} ({t.report})"
        seen[label] = 1
        out.append(label)
    return out


def cd_diagram(overall: Overall, out_stem: Path) -> list[Path]:
    """The critical-difference diagram as PDF, SVG and 200 dpi PNG; [] without a test."""
    if overall.nemenyi is None:
        return []
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "reprorec"  # the same SVG bytes on every regeneration
    import matplotlib.pyplot as plt
    import scikit_posthocs as sp

    k = len(overall.complete_models)
    # scikit-posthocs groups the crossbars in sets of labels; with model names their order would
    # follow Python's per-process string hashing, so it draws integers (hashed as themselves) and
    # the names are put on afterwards: the same figure in every process
    models = list(overall.average_rank.index)
    ranks = overall.average_rank.set_axis(range(k))
    nemenyi = overall.nemenyi.loc[models, models].set_axis(range(k), axis=0).set_axis(range(k), axis=1)
    fig, ax = plt.subplots(figsize=(7.0, 0.9 + 0.28 * k))
    drawn = sp.critical_difference_diagram(
        ranks,
        nemenyi,
        ax=ax,
        alpha=ALPHA,
        label_fmt_left="{label}",
        label_fmt_right="{label}",
        label_props={"fontsize": 8},
        # one colour: the diagram is read through its labels, and colour-blind readers and
        # black-and-white prints see the same figure
        color_palette=dict.fromkeys(range(k), "#222222"),
    )
    for text in drawn["labels"]:
        i = int(text.get_text())
        name, rank = models[i], float(ranks.iloc[i])
        text.set_text(f"{name} ({rank:.2g})" if text.get_ha() == "right" else f"({rank:.2g}) {name}")
    ax.set_title(
        f"Average rank over {len(overall.matrix.columns)} tables (1 = best); bars join models the "
        f"Nemenyi test does not separate (alpha = {ALPHA}, CD = {overall.critical_difference:.2f})",
        fontsize=8,
    )
    fig.tight_layout()
    written = []
    for ext, kw in ((".pdf", {}), (".svg", {}), (".png", {"dpi": 200})):
        path = out_stem.with_suffix(ext)
        stamp = {".svg": {"Date": None}, ".pdf": {"CreationDate": None}}.get(ext)
        fig.savefig(path, metadata=stamp, **kw)  # type: ignore[arg-type]
        written.append(path)
    plt.close(fig)
    return written


def render_markdown(
    tables: Sequence[Table], overall: Overall, sources: list[dict[str, Any]], command: str
) -> str:
    """The overall page as Markdown."""
    labels = list(overall.matrix.columns)
    out = [
        f"<!-- generated by reprorec-report --overall, do not edit; regenerate with: {command} -->",
        "# reprorec overall ranking",
        "",
        f"Regenerate: `{command}`",
        "",
        "Inputs (each a report generated from its tracking store):",
        "",
        "| Report | Report id | Date | Tables |",
        "|---|---|---|---|",
        *[f"| {s['report']} | `{s['report_id']}` | {s['date']} | {s['tables']} |" for s in sources],
        "",
        "Each table is ranked on its own main metric (1 = best, ties averaged). Named variants that a "
        "table has instead of their base model are folded into it by the best validation value "
        "(the tuning objective), never by test. Average ranks are over the tables where every ranked "
        "model ran; Friedman's test, then the Nemenyi post-hoc test (Demšar, JMLR 2006; scipy and "
        "scikit-posthocs). Wins / ties / losses count each table's own paired test over users against "
        "its best baseline (under each report's own correction, Holm unless it says otherwise); "
        "reports without those tests count as not tested.",
        "",
        "## Average ranks",
        "",
    ]
    if overall.friedman is not None:
        f = overall.friedman
        verdict = "reject" if f["p_value"] < f["alpha"] else "do not reject"
        out += [
            f"Friedman test over {f['n']} tables and {f['k']} models: chi2 = {f['statistic']:.2f}, "
            f"p = {format_p(f['p_value'])} ({verdict} equal ranks at alpha = {f['alpha']}); Nemenyi critical "
            f"difference CD = {overall.critical_difference:.2f} ranks.",
            "",
            "![critical-difference diagram](cd_diagram.svg)",
            "",
        ]
    out += ["| Model | Average rank | Tables |", "|---|---|---|"]
    out += [f"| {m} | {r:.2f} | {len(overall.matrix.columns)} |" for m, r in overall.average_rank.items()]
    present = {str(m): int(c) for m, c in overall.matrix.notna().sum(axis=1).items()}
    for m, r in overall.partial_rank.items():
        n = present[str(m)]
        out.append(f"| {m} (missing on {len(labels) - n}) | {r:.2f} (not comparable) | {n} |")
    out += [
        "",
        "## Main metric per table",
        "",
        "Test mean of each table's main metric, with the rank among the models of that table in brackets.",
        "",
    ]
    heads = [f"{lab} ({t.main_key})" for lab, t in zip(labels, tables, strict=True)]
    out += ["| Model | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    values = overall.matrix.to_numpy(dtype=np.float64)
    ranks = overall.matrix.rank(axis=0, ascending=False, method="average").to_numpy(dtype=np.float64)
    order = [*overall.average_rank.index, *overall.partial_rank.index]
    for i, m in sorted(enumerate(overall.matrix.index), key=lambda im: order.index(im[1])):
        cells = []
        for j, t in enumerate(tables):
            v, rank = values[i, j], ranks[i, j]
            if not np.isfinite(v):
                cells.append("missing")
                continue
            via = f" via {t.folded[m]}" if m in t.folded else ""
            untuned = " not tuned" if m in t.untuned else ""
            cells.append(f"{v:.4f} ({rank:g}){via}{untuned}")
        out.append(f"| {m!s} | " + " | ".join(cells) + " |")
    out += [
        "",
        "## Wins / ties / losses against each table's best baseline",
        "",
        "| Model | Wins | Ties | Losses | Is the best baseline | Not tested | Tables |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, r in overall.wtl.iterrows():
        out.append(
            f"| {m} | {r['wins']} | {r['ties']} | {r['losses']} | {r['reference']} | {r['not_tested']} "
            f"| {r['tables']} |"
        )
    if overall.missing:
        out += ["", "## Missing cells", ""]
        out += [f"- {m}: not run on {c}" for m, c in overall.missing]
    if overall.notes:
        out += ["", *[f"- Note: {n}" for n in overall.notes]]
    return "\n".join(out) + "\n"


def write_overall(paths: Sequence[Path], out_dir: Path, *, command: str) -> Path:
    """Rank the tables of the reports at ``paths`` and write the overall page into ``out_dir``."""
    from benchmark.io import atomic_write_text

    tables, sources = load_tables(paths)
    overall = rank_tables(tables)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = cd_diagram(overall, out_dir / "cd_diagram")
    atomic_write_text(out_dir / "README.md", render_markdown(tables, overall, sources, command))
    doc = {
        "sources": sources,
        "command": command,
        "alpha": ALPHA,
        "tables": [
            {"label": lab, "report": t.report, "main_key": t.main_key, "folded": t.folded}
            for lab, t in zip(overall.matrix.columns, tables, strict=True)
        ],
        "matrix": {
            m: {c: (None if not np.isfinite(v) else v) for c, v in row.items()}
            for m, row in overall.matrix.iterrows()
        },
        "average_rank": overall.average_rank.to_dict(),
        "partial_rank": overall.partial_rank.to_dict(),
        "missing": overall.missing,
        "friedman": overall.friedman,
        "critical_difference": overall.critical_difference,
        "nemenyi_p": None if overall.nemenyi is None else overall.nemenyi.to_dict(),
        "wins_ties_losses": overall.wtl.to_dict(orient="index"),
        "figures": [p.name for p in figures],
        "notes": overall.notes,
    }
    atomic_write_text(
        out_dir / "overall.json", json.dumps(doc, indent=2, sort_keys=True, default=float) + "\n"
    )
    overall.matrix.to_csv(out_dir / "main_metric.csv", float_format="%.6f")
    return out_dir
