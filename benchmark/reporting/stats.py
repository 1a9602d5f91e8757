"""Uncertainty and significance for leaderboards (thin wrappers around ``scipy.stats``).

* Confidence intervals: a bootstrap over users (one seed); over several seeds a two-level
  (hierarchical) bootstrap, seeds then users within each seed (Davison & Hinkley, "Bootstrap
  Methods and their Application", 1997, Sec. 3.8; Field & Welsh, JRSS B 2007), which keeps both
  sources of variance and, being a percentile interval of means, never leaves the range of the
  observed values (a Student-t interval over 2 seeds has 1 degree of freedom and gave e.g.
  Recall@50 in [-0.077, 1.050]). Without per-user values a t interval over seeds is used only
  from 3 seeds on and is clipped to the metric's range (the clipping is stated in ``method``).
* Paired tests over users: Wilcoxon signed-rank (default) or paired t-test; over several seeds
  one paired test per seed, on the users both models evaluated in that seed, combined with
  Stouffer's weighted Z (weights sqrt(users); Whitlock, J. Evol. Biol. 2005) on the one-sided
  p-values, so that a consistent direction across seeds adds up and opposite ones cancel.
* Holm's step-down correction for the family of comparisons in one table (default; controls the
  family-wise error rate; Holm, "A simple sequentially rejective multiple test procedure", Scand. J.
  Statistics 1979), or Benjamini-Hochberg's step-up procedure (``bh``; controls the false discovery
  rate under independence or positive dependence; Benjamini & Hochberg, J. R. Stat. Soc. B 1995),
  both computed by ``statsmodels.stats.multitest.multipletests``.
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
    method: str  # "bootstrap" | "seeds x users bootstrap" | "seeds" | "seeds (t, clipped to range)" | "none"
    #: standard deviation over seeds of the logged values (ddof 1; several seeds only): the seed
    #: variance of a stochastic model, beside the interval of the mean
    std: float | None = None


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


def hierarchical_bootstrap_ci(
    per_seed: list[np.ndarray],
    *,
    seed: int,
    n_resamples: int = 2000,
    confidence: float = CONFIDENCE,
    mean: float | None = None,
) -> Interval:
    """Two-level percentile bootstrap of the mean over seeds of per-seed user means.

    Each resample draws the seeds with replacement, then, independently for every drawn seed, its
    users with replacement; the statistic is the mean over the drawn seeds of their users' mean.

    Args:
        per_seed: per-user values of each seed (NaN dropped).
        seed: of the resampling generator.
        n_resamples: resamples.
        confidence: of the interval.
        mean: the headline value (default: the mean of the per-seed means).
    """
    samples = [np.asarray(x, dtype=np.float64) for x in per_seed]
    samples = [x[np.isfinite(x)] for x in samples]
    samples = [x for x in samples if x.size]
    if not samples:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "none")
    centre = float(np.mean([x.mean() for x in samples])) if mean is None else float(mean)
    rng = np.random.default_rng(seed)
    n_seeds = len(samples)
    # user-level resampled means of every seed: [n_seeds, n_resamples]
    user_means = np.stack(
        [x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1) for x in samples]
    )
    drawn = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
    stat = user_means[drawn, np.arange(n_resamples)[:, None]].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stat, [alpha, 1 - alpha])
    return Interval(centre, float(low), float(high), n_seeds, "seeds x users bootstrap")


def clipped_seeds_ci(
    values: np.ndarray, *, low: float = 0.0, high: float = 1.0, confidence: float = CONFIDENCE
) -> Interval:
    """:func:`seeds_ci` from 3 seeds on, clipped to the metric's range ``[low, high]``; below 3
    seeds no interval (the t quantile with 1 degree of freedom is 12.7: nothing to cite)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 3:
        return Interval(
            float(x.mean()) if x.size else float("nan"), float("nan"), float("nan"), int(x.size), "none"
        )
    ci = seeds_ci(x, confidence=confidence)
    clipped = ci.low < low or ci.high > high
    return Interval(
        ci.mean,
        max(ci.low, low),
        min(ci.high, high),
        ci.n,
        "seeds (t, clipped to range)" if clipped else "seeds",
    )


def combined_paired_test(pairs: list[tuple[np.ndarray, np.ndarray]], test: str = "wilcoxon") -> float:
    """Two-sided p-value of "a differs from b" over several seeds, one paired test per seed.

    Each seed's one-sided p-value (``a > b``) is combined with Stouffer's weighted Z
    (``scipy.stats.combine_pvalues``, weights ``sqrt(n_users)``); the two-sided value is twice the
    smaller tail. A seed where the two are identical for every user contributes ``p = 0.5``.
    """
    if len(pairs) == 1:
        return paired_test(*pairs[0], test=test)
    one_sided, weights = [], []
    for a, b in pairs:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape or a.size == 0:
            raise ValueError(f"paired test needs aligned, non-empty samples, got {a.shape} and {b.shape}")
        if not np.any(a != b):
            p = 0.5
        elif test == "wilcoxon":
            p = float(stats.wilcoxon(a, b, zero_method="wilcox", alternative="greater").pvalue)
        elif test == "ttest":
            p = float(stats.ttest_rel(a, b, alternative="greater").pvalue)
        else:
            raise ValueError(f"unknown paired test {test!r}; use 'wilcoxon' or 'ttest'")
        one_sided.append(min(max(p, 1e-300), 1 - 1e-16))
        weights.append(np.sqrt(a.size))
    combined = float(stats.combine_pvalues(one_sided, method="stouffer", weights=weights).pvalue)
    return min(1.0, 2 * min(combined, 1 - combined))


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


#: ``correction`` name -> (statsmodels ``multipletests`` method, label in reports).
CORRECTIONS = {"holm": ("holm", "Holm"), "bh": ("fdr_bh", "Benjamini-Hochberg")}


def adjust_pvalues(pvalues: list[float] | np.ndarray, correction: str = "holm") -> np.ndarray:
    """Adjusted p-values of one family (same order; NaN stays NaN and is not counted in it).

    Args:
        pvalues: raw p-values; NaN marks a comparison that could not be run.
        correction: ``holm`` (family-wise error rate) or ``bh`` (false discovery rate).
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction={correction!r} is not one of {sorted(CORRECTIONS)}")
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size:
        out[ok] = multipletests(p[ok], method=CORRECTIONS[correction][0])[1]
    return out


def holm(pvalues: list[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (same order as the input; NaN stays NaN).

    The i-th smallest of m p-values is multiplied by ``m - i`` (i from 0), a running maximum keeps
    the adjusted values monotone, and they are capped at 1 (statsmodels' ``multipletests``, method
    ``holm``, over the finite values). Rejecting where adjusted < alpha controls the family-wise
    error rate at alpha.
    """
    return adjust_pvalues(pvalues, "holm")
