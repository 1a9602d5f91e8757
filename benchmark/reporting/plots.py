"""Report figures (matplotlib, Agg backend) as base64 PNG strings for the self-contained HTML page."""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    # No metadata: identical numbers give identical bytes (the report id hashes the document, not
    # the PNGs, but reproducible files are easier to diff).
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def metric_vs_cutoff(table: dict[str, Any]) -> str | None:
    """One panel per metric with several cutoffs: mean (and CI band) vs k, one line per model."""
    by_metric: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in table["columns"]:
        if c["k"] is not None:
            by_metric[c["metric"]].append(c)
    panels = {m: cols for m, cols in by_metric.items() if len(cols) > 1}
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    for ax, (_metric, cols) in zip(axes[0], panels.items()):
        for r in table["rows"]:
            pts = [(c["k"], r["cells"][c["key"]]) for c in cols if c["key"] in r["cells"]]
            if not pts:
                continue
            ks = [k for k, _ in pts]
            ax.plot(ks, [p["mean"] for _, p in pts], marker="o", label=r["model"])
            if all(p["low"] is not None for _, p in pts):
                ax.fill_between(ks, [p["low"] for _, p in pts], [p["high"] for _, p in pts], alpha=0.15)
        ax.set_xlabel("cutoff k")
        ax.set_title(cols[0]["label"].split("@")[0])
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _png(fig)


def accuracy_vs_cost(table: dict[str, Any]) -> str | None:
    """Main metric vs total compute (tuning + final fit seconds), log x."""
    key = table["main_key"]
    pts = []
    for r in table["rows"]:
        cost = r["cost"].get("tuning_s", 0.0) + r["cost"].get("fit_s", 0.0)
        if key in r["cells"] and cost > 0:
            pts.append((r["model"], cost, r["cells"][key]))
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, cost, cell in pts:
        yerr = None
        if cell["low"] is not None:
            yerr = [[cell["mean"] - cell["low"]], [cell["high"] - cell["mean"]]]
        ax.errorbar([cost], [cell["mean"]], yerr=yerr, fmt="o", capsize=3)
        ax.annotate(name, (cost, cell["mean"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("tuning + final fit time (s, log)")
    ax.set_ylabel(table["main_label"])
    ax.grid(alpha=0.3)
    return _png(fig)


def tuning_curves(table: dict[str, Any]) -> str | None:
    """Best validation value so far vs trial number, one line per (model, seed)."""
    lines = [(r["model"], seed, curve) for r in table["rows"] for seed, curve in r["curves"].items() if curve]
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for model, seed, curve in lines:
        label = model if len(table["card"]["seeds"]) <= 1 else f"{model} (seed {seed})"
        ax.step(range(1, len(curve) + 1), curve, where="post", label=label)
    ax.set_xlabel("trial")
    metric = ", ".join(table["card"]["tuning_metric"]) or "validation metric"
    ax.set_ylabel(f"best so far ({metric})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def table_plots(table: dict[str, Any]) -> dict[str, str]:
    out = {
        "cutoffs": metric_vs_cutoff(table),
        "cost": accuracy_vs_cost(table),
        "tuning": tuning_curves(table),
    }
    return {k: v for k, v in out.items() if v}
