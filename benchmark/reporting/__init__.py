"""Leaderboard reports from MLflow runs: collect -> tables (CIs, significance) -> renderers."""

from benchmark.reporting.collect import ReportInputError, collect_runs
from benchmark.reporting.report import generate_report

__all__ = ["ReportInputError", "collect_runs", "generate_report"]
