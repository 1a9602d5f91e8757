"""The outcome of one evaluation: per-user metrics, their summary, the top-k lists, the settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.io import atomic_path
from benchmark.tracking.schema import ART_PER_USER, ART_RECOMMENDATIONS, metric_key

_AT_K = re.compile(r"^(?P<metric>.+)_at_(?P<k>\d+)$")


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """What :meth:`benchmark.evaluation.Evaluator.evaluate` returns.

    Attributes:
        per_user: one row per evaluated user: ``user`` (index), ``user_id`` (external id),
            ``n_relevant`` and one column per per-user metric (``ndcg_at_10``, ``auc``, ...).
        summary: ``"<metric>_at_<k>"`` (``"auc"``) -> mean over evaluated users of the per-user
            values (NaN values, e.g. novelty of an empty list, are left out of the mean); catalog
            metrics (coverage, gini, entropy) are computed once over all evaluated users' top-k.
        n_users_evaluated: users with at least one relevant item (and candidates when sampled).
        skipped: reason -> number of users not evaluated.
        recommendations: ``user_id, rank (1-based), item_id, score`` of the top ``max(cutoffs)``
            items per evaluated user, or None when not requested.
        settings: the evaluation settings, for logging.
        name: the phase / part evaluated (``test``, ``validation``).
    """

    per_user: pd.DataFrame
    summary: Mapping[str, float]
    n_users_evaluated: int
    skipped: Mapping[str, int]
    settings: Mapping[str, Any]
    recommendations: pd.DataFrame | None = None
    name: str = "test"
    seconds: float = field(default=0.0, compare=False)

    @property
    def n_users_skipped(self) -> int:
        """Users not evaluated, all reasons together (see :attr:`skipped`)."""
        return int(sum(self.skipped.values()))

    def metrics(self, prefix: str | None = None) -> dict[str, float]:
        """The summary as ``{"test/ndcg_at_10": value}`` (keys from ``tracking.schema.metric_key``).

        Args:
            prefix: the phase (``test``, ``val``); defaults to :attr:`name`. A trailing ``/`` is
                ignored.
        """
        phase = (self.name if prefix is None else prefix).rstrip("/")
        out: dict[str, float] = {}
        for key, value in self.summary.items():
            m = _AT_K.match(key)
            out[metric_key(phase, m["metric"], int(m["k"])) if m else metric_key(phase, key, None)] = float(
                value
            )
        return out

    def write(self, folder: str | Path) -> dict[str, Path]:
        """Write ``per_user_metrics.parquet`` and (if present) ``recommendations.parquet`` atomically.

        Returns:
            artifact name -> path written.
        """
        folder = Path(folder)
        written: dict[str, Path] = {}
        tables = {ART_PER_USER: self.per_user, ART_RECOMMENDATIONS: self.recommendations}
        for art, frame in tables.items():
            if frame is None:
                continue
            dest = folder / art
            with atomic_path(dest) as tmp:
                frame.to_parquet(tmp, index=False)
            written[art] = dest
        return written

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in list(self.summary.items())[:4])
        return (
            f"EvaluationResult({self.name}: {self.n_users_evaluated} users evaluated, "
            f"{self.n_users_skipped} skipped; {shown}{', ...' if len(self.summary) > 4 else ''})"
        )
