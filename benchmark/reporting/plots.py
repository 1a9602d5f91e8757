"""Report figures (matplotlib, Agg backend): PNG at 200 dpi for the HTML page, SVG files for papers.

Every model keeps one style across the figures of a table: a colour of the Okabe-Ito palette (safe
for the common colour-vision deficiencies; its yellow, unreadable as a line on white, replaced by
grey) and a marker that changes every 8 models, so 64 models stay distinct, also in greyscale
print where the markers tell them apart. Legends sit outside the axes; every axis is labelled.
Files are byte-reproducible: no dates, fixed SVG ids.
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

matplotlib.rcParams["svg.hashsalt"] = "reprorec"  # the same SVG bytes for the same numbers

#: Okabe & Ito (2008), yellow replaced by grey.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#000000", "#999999")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
PNG_DPI = 200


def style(index: int) -> dict[str, Any]:
    """Colour and marker of the ``index``-th model of a table (distinct for the first 64)."""
    return {"color": PALETTE[index % len(PALETTE)], "marker": MARKERS[(index // len(PALETTE)) % len(MARKERS)]}


def _styles(table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["model"]: style(i) for i, r in enumerate(table["rows"])}


def _legend_outside(fig: Any, ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)


def metric_vs_cutoff(table: dict[str, Any]) -> Any | None:
    """One panel per metric with several cutoffs: mean (and CI band) vs k, one line per model."""
    by_metric: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in table["columns"]:
        if c["k"] is not None:
            by_metric[c["metric"]].append(c)
    panels = {m: cols for m, cols in by_metric.items() if len(cols) > 1}
    if not panels:
        return None
    styles = _styles(table)
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (_metric, cols) in zip(flat, panels.items(), strict=False):
        for r in table["rows"]:
            pts = [(c["k"], r["cells"][c["key"]]) for c in cols if c["key"] in r["cells"]]
            if not pts:
                continue
            ks = [k for k, _ in pts]
            st = styles[r["model"]]
            ax.plot(ks, [p["mean"] for _, p in pts], label=r["model"], markersize=4, linewidth=1.2, **st)
            if all(p["low"] is not None for _, p in pts):
                lows, highs = [p["low"] for _, p in pts], [p["high"] for _, p in pts]
                ax.fill_between(ks, lows, highs, alpha=0.12, color=st["color"], linewidth=0)
        ax.set_xlabel("cutoff k")
        ax.set_ylabel(cols[0]["label"].split("@")[0] + "@k")
        ax.grid(alpha=0.3)
    _legend_outside(fig, axes[0][0])
    fig.tight_layout()
    return fig


def accuracy_vs_cost(table: dict[str, Any]) -> Any | None:
    """Main metric (with its interval) vs tuning + final fit seconds, log x; a legend, no labels on points."""
    key = table["main_key"]
    styles = _styles(table)
    pts = []
    for r in table["rows"]:
        cost = r["cost"].get("tuning_s", 0.0) + r["cost"].get("fit_s", 0.0)
        if key in r["cells"] and cost > 0:
            pts.append((r["model"], cost, r["cells"][key]))
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for name, cost, cell in pts:
        yerr = None
        if cell["low"] is not None:
            yerr = [[cell["mean"] - cell["low"]], [cell["high"] - cell["mean"]]]
        st = styles[name]
        ax.errorbar(
            [cost],
            [cell["mean"]],
            yerr=yerr,
            fmt=st["marker"],
            color=st["color"],
            capsize=3,
            label=name,
            markersize=5,
        )
    ax.set_xscale("log")
    ax.set_xlabel("tuning + final fit time (s, log scale)")
    ax.set_ylabel(f"{table['main_label']} (test)")
    ax.grid(alpha=0.3)
    _legend_outside(fig, ax)
    fig.tight_layout()
    return fig


def tuning_curves(table: dict[str, Any]) -> Any | None:
    """Best validation value so far vs trial number, one line per (model, seed): the tuning-parity audit."""
    styles = _styles(table)
    lines = [(r["model"], seed, curve) for r in table["rows"] for seed, curve in r["curves"].items() if curve]
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for model, seed, curve in lines:
        label = model if len(table["card"]["seeds"]) <= 1 else f"{model} (seed {seed})"
        st = styles[model]
        ax.step(range(1, len(curve) + 1), curve, where="post", label=label, color=st["color"], linewidth=1.2)
        ax.plot([len(curve)], [curve[-1]], marker=st["marker"], color=st["color"], markersize=4)
    ax.set_xlabel("trial")
    metric = ", ".join(table["card"]["tuning_metric"]) or "validation metric"
    ax.set_ylabel(f"best so far ({metric}, validation)")
    ax.grid(alpha=0.3)
    _legend_outside(fig, ax)
    fig.tight_layout()
    return fig


FIGURES: dict[str, Callable[[dict[str, Any]], Any | None]] = {
    "cutoffs": metric_vs_cutoff,
    "cost": accuracy_vs_cost,
    "tuning": tuning_curves,
}


def _save(fig: Any, fmt: str) -> bytes:
    buf = io.BytesIO()
    meta = {"Software": None} if fmt == "png" else {"Date": None}
    fig.savefig(buf, format=fmt, dpi=PNG_DPI, bbox_inches="tight", metadata=meta)
    return buf.getvalue()


def table_figures(table: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """``name -> (base64 PNG, SVG text)`` of every figure the table has data for."""
    out = {}
    for name, make in FIGURES.items():
        fig = make(table)
        if fig is None:
            continue
        try:
            out[name] = (
                base64.b64encode(_save(fig, "png")).decode("ascii"),
                _save(fig, "svg").decode("utf-8"),
            )
        finally:
            plt.close(fig)
    return out


def table_plots(table: dict[str, Any]) -> dict[str, str]:
    """``name -> base64 PNG`` (the HTML page embeds them)."""
    return {name: png for name, (png, _svg) in table_figures(table).items()}
