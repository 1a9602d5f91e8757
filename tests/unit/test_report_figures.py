"""Report figures: distinct styles for many models, vector files, reproducible bytes, labelled axes."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

from benchmark.reporting import plots
from benchmark.reporting.report import render_all

REPO = Path(__file__).resolve().parents[2]


def test_styles_stay_distinct_for_many_models_and_avoid_yellow() -> None:
    styles = [plots.style(i) for i in range(64)]
    assert len({(s["color"], s["marker"]) for s in styles}) == 64
    assert "#F0E442" not in plots.PALETTE  # Okabe-Ito's yellow is unreadable as a line on white


def test_a_report_writes_svg_figures_reproducibly_and_links_them() -> None:
    doc = json.loads((REPO / "reports" / "default" / "report.json").read_text(encoding="utf-8"))
    doc.pop("generated", None)
    a, b = render_all(doc), render_all(doc)
    svgs = sorted(k for k in a if k.startswith("figures/") and k.endswith(".svg"))
    assert len(svgs) == 3
    for name in svgs:
        assert a[name] == b[name]  # the same numbers give the same bytes
        assert a[name].lstrip().startswith("<?xml") and "<svg" in a[name]
        assert name.removeprefix("figures/") in a["README.md"]
    labels = {"cutoffs": "cutoff k", "cost": "tuning + final fit time", "tuning": "best so far"}
    for name in svgs:  # every axis is labelled (matplotlib keeps each text as a comment in the SVG)
        kind = name.removesuffix(".svg").rsplit("-", 1)[1]
        assert labels[kind] in a[name], name


def test_png_figures_are_at_least_200_dpi() -> None:
    doc = json.loads((REPO / "reports" / "default" / "report.json").read_text(encoding="utf-8"))
    png = base64.b64decode(plots.table_plots(doc["tables"][0])["cost"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    i = png.index(b"pHYs")
    ppm_x = struct.unpack(">I", png[i + 4 : i + 8])[0]
    assert round(ppm_x * 0.0254) >= 200
