"""Uncertainty and significance for leaderboards (thin wrappers around ``scipy.stats``).

* Confidence intervals: a bootstrap over users (one seed) or a Student-t interval over seeds.
* Paired tests over users: Wilcoxon signed-rank (default) or paired t-test.
* Holm's step-down correction for the family of comparisons in one table
  (Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Statistics 1979).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval; ``method`` says how it was obtained."""

    mean: float
    low: float
    high: float
    n: int  # users (bootstrap) or seeds (t over seeds)
    method: str  # "bootstrap" | "seeds" | "none"


def bootstrap_ci(
    values: np.ndarray,
    *,
    seed: int,
    n_resamples: int = 2000,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Percentile bootstrap CI of the mean of per-user values (``scipy.stats.bootstrap``).

    The percentile method is used (not BCa) because top-k metrics are often zero for most users,
    where BCa's jackknife acceleration is degenerate. A constant sample gets a zero-width interval.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "none")
    mean = float(x.mean())
    if x.size == 1 or np.all(x == x[0]):
        return Interval(mean, mean, mean, int(x.size), "bootstrap")
    res = stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
        vectorized=True,
    )
    ci = res.confidence_interval
    return Interval(mean, float(ci.low), float(ci.high), int(x.size), "bootstrap")


def seeds_ci(values: np.ndarray, *, confidence: float = CONFIDENCE) -> Interval:
    """Mean over seeds with a Student-t interval (``n - 1`` degrees of freedom)."""
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, float("nan"), float("nan"), n, "none")
    sem = float(stats.sem(x))
    if sem == 0.0:
        return Interval(mean, mean, mean, n, "seeds")
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), n, "seeds")


def paired_test(a: np.ndarray, b: np.ndarray, test: str = "wilcoxon") -> float:
    """Two-sided p-value of a paired test between per-user values ``a`` and ``b``.

    Args:
        a: one model's per-user values, aligned with ``b`` (same users, same order).
        b: the other model's per-user values.
        test: ``"wilcoxon"`` (signed-rank, zero differences dropped) or ``"ttest"`` (paired t).

    Returns:
        The p-value; 1.0 when the two are identical for every user (no evidence of a difference).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs aligned samples, got shapes {a.shape} and {b.shape}")
    d = a - b
    if not np.any(d != 0):
        return 1.0
    if test == "wilcoxon":
        return float(stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue)
    if test == "ttest":
        return float(stats.ttest_rel(a, b).pvalue)
    raise ValueError(f"unknown paired test {test!r}; use 'wilcoxon' or 'ttest'")


def holm(pvalues: list[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (same order as the input; NaN stays NaN).

    The i-th smallest of m p-values is multiplied by ``m - i`` (i from 0), a running maximum keeps
    the adjusted values monotone, and they are capped at 1. Rejecting where adjusted < alpha
    controls the family-wise error rate at alpha.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adjusted, 1.0)
    return out
