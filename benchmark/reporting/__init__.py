"""Leaderboard reports from MLflow runs: collect -> tables (CIs, significance) -> renderers.

The public names are imported on first use: :mod:`benchmark.portable` is needed by every
cell (it makes logged command lines portable) without the report's pandas / matplotlib imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmark.reporting.collect import ReportInputError, collect_runs
    from benchmark.reporting.report import generate_report

__all__ = ["ReportInputError", "collect_runs", "generate_report"]


def __getattr__(name: str) -> Any:
    if name in ("ReportInputError", "collect_runs"):
        from benchmark.reporting import collect

        return getattr(collect, name)
    if name == "generate_report":
        from benchmark.reporting.report import generate_report

        return generate_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
