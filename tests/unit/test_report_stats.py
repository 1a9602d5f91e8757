"""Statistics of the leaderboard report: Holm and Benjamini-Hochberg corrections, intervals, tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from benchmark.reporting.stats import (
    adjust_pvalues,
    bootstrap_ci,
    clipped_seeds_ci,
    combined_paired_test,
    hierarchical_bootstrap_ci,
    holm,
    paired_test,
    seeds_ci,
)


def test_holm_hand_example_four_pvalues():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.02 0.03 0.06 0.06
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])


def test_benjamini_hochberg_hand_example_and_statsmodels():
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): x 4/1, 4/2, 4/3, 4/4 = 0.02, 0.02, 0.04, 0.04;
    # running minimum from the largest: 0.02 0.02 0.04 0.04
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(adjust_pvalues(p, "bh"), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(adjust_pvalues(p, "bh"), multipletests(p, method="fdr_bh")[1])
    np.testing.assert_allclose(adjust_pvalues(p, "holm"), multipletests(p, method="holm")[1])
    adjusted = adjust_pvalues([0.6, math.nan, 0.2], "bh")  # NaN is not in the family: m = 2
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.6, 0.4])
    with pytest.raises(ValueError, match="correction='bonferroni'"):
        adjust_pvalues(p, "bonferroni")


def test_holm_caps_at_one_and_keeps_nan_out_of_the_family():
    # NaN (a comparison that could not be run) does not count in m: m = 2 here.
    adjusted = holm([0.6, math.nan, 0.2])
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.6, 0.4])
    np.testing.assert_allclose(holm([0.7, 0.9]), [1.0, 1.0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12))
def test_holm_is_between_raw_and_bonferroni_and_preserves_order(ps):
    p = np.array(ps)
    adj = holm(p)
    assert np.all(adj >= p - 1e-12)
    assert np.all(adj <= np.minimum(p * len(p), 1.0) + 1e-12)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adj[order]) >= -1e-12)


def test_bootstrap_ci_equals_scipy_percentile_bootstrap_with_same_seed():
    x = np.random.default_rng(3).random(80)
    ci = bootstrap_ci(x, seed=42, n_resamples=999)
    ref = stats.bootstrap(
        (x,), np.mean, n_resamples=999, method="percentile", rng=np.random.default_rng(42)
    ).confidence_interval
    assert ci.mean == pytest.approx(x.mean())
    assert (ci.low, ci.high) == pytest.approx((ref.low, ref.high))
    assert ci.n == 80 and ci.method == "bootstrap"


def test_bootstrap_ci_of_constant_users_has_zero_width():
    ci = bootstrap_ci(np.zeros(30), seed=1)
    assert (ci.mean, ci.low, ci.high) == (0.0, 0.0, 0.0)


def test_seeds_ci_is_student_t_with_n_minus_one_dof():
    v = np.array([0.30, 0.32, 0.35])
    ci = seeds_ci(v)
    half = stats.t.ppf(0.975, 2) * v.std(ddof=1) / np.sqrt(3)
    assert ci.mean == pytest.approx(v.mean())
    assert (ci.low, ci.high) == pytest.approx((v.mean() - half, v.mean() + half))
    assert ci.n == 3 and ci.method == "seeds"


def test_paired_test_wilcoxon_and_ttest_match_scipy():
    rng = np.random.default_rng(0)
    a = rng.random(50)
    b = a + rng.normal(0.05, 0.1, 50)
    assert paired_test(a, b) == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert paired_test(a, b, "ttest") == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert paired_test(a, a.copy()) == 1.0
    with pytest.raises(ValueError, match="aligned"):
        paired_test(a, b[:-1])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30), min_size=1, max_size=4),
    st.integers(0, 2**16),
)
def test_hierarchical_interval_stays_inside_the_observed_range(per_seed, seed):
    samples = [np.array(x) for x in per_seed]
    ci = hierarchical_bootstrap_ci(samples, seed=seed, n_resamples=200)
    lo, hi = min(x.min() for x in samples), max(x.max() for x in samples)
    assert lo - 1e-12 <= ci.low <= ci.high <= hi + 1e-12
    assert ci.n == len(samples)


def test_hierarchical_interval_widens_with_the_spread_between_seeds():
    rng = np.random.default_rng(0)
    same = [rng.uniform(0.3, 0.5, 200) for _ in range(3)]
    apart = [x + d for x, d in zip(same, (-0.2, 0.0, 0.2))]
    narrow = hierarchical_bootstrap_ci(same, seed=1)
    wide = hierarchical_bootstrap_ci(apart, seed=1)
    assert (wide.high - wide.low) > 3 * (narrow.high - narrow.low)


def test_seed_interval_without_per_user_values_needs_three_seeds_and_is_clipped():
    assert clipped_seeds_ci(np.array([0.2, 0.9])).method == "none"
    ci = clipped_seeds_ci(np.array([0.05, 0.9, 0.95]))
    raw = seeds_ci(np.array([0.05, 0.9, 0.95]))
    assert raw.low < 0 and raw.high > 1
    assert (ci.low, ci.high, ci.method) == (0.0, 1.0, "seeds (t, clipped to range)")


def test_combined_test_of_one_seed_is_the_paired_test_and_opposite_seeds_cancel():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(size=80), rng.uniform(size=80)
    assert combined_paired_test([(a, b)]) == paired_test(a, b)
    # the same difference in opposite directions in two equal seeds: no evidence either way
    assert combined_paired_test([(a, b), (b, a)]) == pytest.approx(1.0)
    # the same direction twice: stronger than one seed alone
    assert combined_paired_test([(a + 0.05, b), (a + 0.05, b)]) < paired_test(a + 0.05, b)
