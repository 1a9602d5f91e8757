"""Top-k metrics, each variant under its own name, computed vectorised over a batch of users.

Every accuracy metric is a plain function of

* ``hits``: bool ``[n_users, >=k]``, ``hits[u, j]`` is True when the item at rank ``j + 1`` of user
  ``u``'s recommendation list is relevant (binary relevance);
* ``n_relevant``: int ``[n_users]``, the number of relevant items of each user (``|R_u|``), counted
  among the items that can be ranked (never an excluded item);
* ``k``: the cutoff,

and returns one float64 value per user; the evaluator averages them over users. Beyond-accuracy
metrics look at the recommended items themselves (per list: novelty, average popularity) or at the
number of times each item is recommended over all evaluated users (catalog: coverage, Gini, entropy).

Definitions drift between frameworks (the ideal DCG of NDCG, the denominator of MAP), so reprorec
names every variant: ``ndcg`` vs ``ndcg_full_idcg`` and ``map`` vs ``map_full``. ``rel_j`` below is
``hits[:, j - 1]`` and ``rank`` is 1-based.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from benchmark.errors import UnknownNameError

__all__ = [
    "METRICS",
    "Metric",
    "accuracy_at_cutoffs",
    "arhr",
    "auc_from_counts",
    "avg_popularity",
    "coverage",
    "entropy",
    "f1",
    "get_metric",
    "gini",
    "hit_rate",
    "map_full",
    "map_min",
    "mrr",
    "ndcg",
    "ndcg_full_idcg",
    "novelty",
    "precision",
    "recall",
]


# ----------------------------------------------------------------------------- helpers
@lru_cache(maxsize=8)
def _ideal_dcg_table(n: int) -> np.ndarray:
    """``table[m] = sum_{j=1..m} 1 / log2(j + 1)``: the DCG of ``m`` hits at ranks ``1..m``."""
    disc = 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))
    table = np.zeros(n + 1, dtype=np.float64)
    np.cumsum(disc, out=table[1:])
    table.setflags(write=False)
    return table


def _ideal_dcg(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.int64)
    top = int(m.max()) if m.size else 0
    # Round the table size up so that calls with slightly different maxima share one table.
    size = max(128, 1 << int(np.ceil(np.log2(max(top, 1)))))
    return _ideal_dcg_table(size)[m]


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den == 0`` (a user without relevant items scores 0)."""
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _hits(hits: np.ndarray, k: int) -> np.ndarray:
    h = np.asarray(hits, dtype=bool)
    if h.ndim != 2 or h.shape[1] < k:
        raise ValueError(f"hits must be [n_users, >= {k}], got shape {h.shape}")
    return h[:, :k]


# ----------------------------------------------------------------------------- accuracy
def precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Precision@k = ``sum_{j<=k} rel_j / k``.

    The denominator is always ``k``, also when the user has fewer than ``k`` relevant items (so a
    perfect list of a user with 2 relevant items scores 2/k at k > 2).
    """
    return _hits(hits, k).sum(axis=1, dtype=np.float64) / k


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Recall@k = ``sum_{j<=k} rel_j / |R_u|`` (not truncated at ``k``: at most ``k / |R_u|``)."""
    return _safe_div(_hits(hits, k).sum(axis=1, dtype=np.float64), n_relevant)


def hit_rate(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """HitRate@k (HR@k) = 1 if at least one relevant item is in the top k, else 0."""
    return np.asarray(_hits(hits, k).any(axis=1), dtype=np.float64)


def f1(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """F1@k = ``2 * P@k * R@k / (P@k + R@k)`` per user (0 when both are 0)."""
    p = precision(hits, n_relevant, k)
    r = recall(hits, n_relevant, k)
    return _safe_div(2.0 * p * r, p + r)


def mrr(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """MRR@k = ``1 / rank`` of the first relevant item within the top k (0 if none).

    Averaged over users this is the mean reciprocal rank.
    """
    h = _hits(hits, k)
    first = h.argmax(axis=1)
    return np.asarray(np.where(h.any(axis=1), 1.0 / (first + 1.0), 0.0), dtype=np.float64)


def arhr(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """ARHR@k = ``sum_{j<=k} rel_j / j``: the average reciprocal hit rank.

    Deshpande & Karypis, "Item-based top-N recommendation algorithms", TOIS 2004. Unlike MRR every
    hit counts, so it can exceed 1 for users with several relevant items.
    """
    h = _hits(hits, k)
    return h @ (1.0 / np.arange(1, k + 1, dtype=np.float64))


def _average_precision_sum(h: np.ndarray) -> np.ndarray:
    """``sum_{j<=k} rel_j * P@j``."""
    ranks = np.arange(1, h.shape[1] + 1, dtype=np.float64)
    prec_at_j = np.cumsum(h, axis=1, dtype=np.float64) / ranks
    return (prec_at_j * h).sum(axis=1)


def map_min(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """MAP@k (``map``) = ``sum_{j<=k} rel_j * P@j / min(k, |R_u|)``.

    The denominator ``min(k, |R_u|)`` makes a perfect top-k list score 1 (the usual AP@k, as in
    RecBole and the Dacrema et al. code).
    """
    h = _hits(hits, k)
    return _safe_div(_average_precision_sum(h), np.minimum(np.asarray(n_relevant), k))


def map_full(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """MAP@k with denominator ``|R_u|`` (``map_full``) = ``sum_{j<=k} rel_j * P@j / |R_u|``.

    The truncated TREC-style average precision (``ranx``'s ``map@k``): relevant items that did not
    make it into the top k count as misses, so a user with more than k relevant items can't reach 1.
    """
    h = _hits(hits, k)
    return _safe_div(_average_precision_sum(h), n_relevant)


def _dcg(h: np.ndarray) -> np.ndarray:
    disc = 1.0 / np.log2(np.arange(2, h.shape[1] + 2, dtype=np.float64))
    return h @ disc


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k (``ndcg``) = ``DCG@k / IDCG@k`` with ``DCG@k = sum_{j<=k} rel_j / log2(j + 1)``.

    The ideal DCG is that of the ideal top-k list: ``IDCG@k = sum_{j<=min(k, |R_u|)} 1/log2(j+1)``
    (Järvelin & Kekäläinen, TOIS 2002; RecBole, ranx), so a perfect top-k list scores 1. Binary gain
    (``2^rel - 1 = rel`` for ``rel`` in {0, 1}).
    """
    h = _hits(hits, k)
    return _safe_div(_dcg(h), _ideal_dcg(np.minimum(np.asarray(n_relevant), k)))


def ndcg_full_idcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k with the ideal DCG over all relevant items (``ndcg_full_idcg``).

    ``DCG@k / IDCG(|R_u|)`` with ``IDCG(m) = sum_{j<=m} 1/log2(j+1)`` **not** truncated at ``k``, as in
    the Dacrema et al. (RecSys 2019 / TOIS 2021) evaluation code: a user with more than ``k``
    relevant items can't reach 1, so values are lower than ``ndcg``.
    """
    h = _hits(hits, k)
    return _safe_div(_dcg(h), _ideal_dcg(np.asarray(n_relevant)))


def accuracy_at_cutoffs(
    names: Sequence[str], hits: np.ndarray, n_relevant: np.ndarray, cutoffs: Sequence[int]
) -> dict[str, np.ndarray]:
    """Every accuracy metric of ``names`` at every cutoff in one pass: ``{"ndcg_at_10": values}``.

    The values are bit-for-bit those of the single-metric functions (:func:`precision`, ...): the hit
    counts of all cutoffs come from one cumulative sum (exact small integers), and the DCG and the
    average-precision sums are computed once per cutoff by the same expressions and shared between
    ``ndcg`` / ``ndcg_full_idcg`` and ``map`` / ``map_full``.
    """
    ks = list(cutoffs)
    h = _hits(hits, max(ks)) if ks else np.asarray(hits, dtype=bool)
    n_rel = np.asarray(n_relevant)
    want = set(names)
    counts = np.cumsum(h, axis=1, dtype=np.int64)
    first = h.argmax(axis=1)  # the first hit (0 for a row without hits: see has_hit)
    has_hit = counts[:, -1] > 0 if h.shape[1] else np.zeros(h.shape[0], dtype=bool)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hk = h[:, :k]
        c = counts[:, k - 1].astype(np.float64)
        p, r = c / k, _safe_div(c, n_rel)
        dcg = _dcg(hk) if want & {"ndcg", "ndcg_full_idcg"} else np.zeros(0)
        ap = _average_precision_sum(hk) if want & {"map", "map_full"} else np.zeros(0)
        for name in names:
            if name == "precision":
                v = p
            elif name == "recall":
                v = r
            elif name == "hit_rate":
                v = (c > 0).astype(np.float64)
            elif name == "f1":
                v = _safe_div(2.0 * p * r, p + r)
            elif name == "mrr":
                v = np.where(has_hit & (first < k), 1.0 / (first + 1.0), 0.0)
            elif name == "arhr":
                v = arhr(hk, n_rel, k)
            elif name == "map":
                v = _safe_div(ap, np.minimum(n_rel, k))
            elif name == "map_full":
                v = _safe_div(ap, n_rel)
            elif name == "ndcg":
                v = _safe_div(dcg, _ideal_dcg(np.minimum(n_rel, k)))
            elif name == "ndcg_full_idcg":
                v = _safe_div(dcg, _ideal_dcg(n_rel))
            else:
                v = np.asarray(get_metric(name).fn(hits, n_rel, k), dtype=np.float64)
            out[f"{name}_at_{k}"] = v
    return out


def auc_from_counts(
    n_negatives: np.ndarray,
    n_negatives_above: np.ndarray,
    n_negatives_tied: np.ndarray,
    positive_user: np.ndarray,
    n_users: int,
    tie_credit: float = 0.5,
) -> np.ndarray:
    """AUC per user = the fraction of (relevant, non-relevant) candidate pairs ranked correctly.

    ``AUC_u = 1 / (|R_u| * |N_u|) * sum_{p in R_u} (|N_u| - above_p - tied_p + c * tied_p)`` where
    ``N_u`` are the user's ranked non-relevant candidates (all non-excluded items in full ranking,
    the sampled negatives otherwise), ``above_p`` / ``tied_p`` the negatives scored above / equal to
    positive ``p``, and ``c`` the credit of a tie (1 optimistic, 0 pessimistic, 0.5 otherwise: the
    expected value of a random order). The value is not truncated at a cutoff. NaN when ``N_u`` is
    empty.

    Args:
        n_negatives: ``|N_u|`` per user ``[n_users]``.
        n_negatives_above: per positive.
        n_negatives_tied: per positive.
        positive_user: the (batch-local) user of each positive.
        n_users: number of users in the batch.
        tie_credit: ``c``.
    """
    n_neg = np.asarray(n_negatives, dtype=np.float64)
    pos_user = np.asarray(positive_user, dtype=np.int64)
    above = np.asarray(n_negatives_above, dtype=np.float64)
    tied = np.asarray(n_negatives_tied, dtype=np.float64)
    correct = n_neg[pos_user] - above - tied + tie_credit * tied
    total = np.bincount(pos_user, weights=correct, minlength=n_users)
    n_pos = np.bincount(pos_user, minlength=n_users).astype(np.float64)
    den = n_pos * n_neg
    out = np.full(n_users, np.nan)
    np.divide(total, den, out=out, where=den > 0)
    return out


# ----------------------------------------------------------------------------- beyond accuracy
def novelty(items: np.ndarray, popularity: np.ndarray, n_users: int, k: int) -> np.ndarray:
    """Novelty@k per list = mean self-information ``-log2(pop_i / n_users)`` of the recommended items.

    Zhou et al., "Solving the apparent diversity-accuracy dilemma of recommender systems", PNAS 2010.
    ``pop_i`` is the item's number of (training) interactions, clipped below at 1 so that items
    nobody interacted with have a finite self-information ``log2(n_users)``. ``items`` is
    ``[n_users, >=k]`` with ``-1`` for empty slots (not counted). NaN for an empty list.
    """
    it = np.asarray(items)[:, :k]
    pop = np.maximum(np.asarray(popularity, dtype=np.float64), 1.0)
    info = -np.log2(pop / float(n_users))
    valid = it >= 0
    vals = np.where(valid, info[np.where(valid, it, 0)], 0.0)
    return _nan_div(vals.sum(axis=1), valid.sum(axis=1))


def avg_popularity(items: np.ndarray, popularity: np.ndarray, n_users: int, k: int) -> np.ndarray:
    """Average recommendation popularity@k (ARP) per list = mean ``pop_i`` of the recommended items.

    Abdollahpouri et al., "Managing popularity bias in recommender systems with personalized
    re-ranking", FLAIRS 2019. ``pop_i`` is the item's raw interaction count. NaN for an empty list.
    """
    it = np.asarray(items)[:, :k]
    pop = np.asarray(popularity, dtype=np.float64)
    valid = it >= 0
    vals = np.where(valid, pop[np.where(valid, it, 0)], 0.0)
    return _nan_div(vals.sum(axis=1), valid.sum(axis=1))


def _nan_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def coverage(counts: np.ndarray) -> float:
    """Item coverage@k = fraction of all items recommended to at least one evaluated user.

    ``counts[i]`` is how many of the evaluated users' top-k lists contain item ``i``.
    """
    c = np.asarray(counts)
    return float((c > 0).sum() / c.size) if c.size else 0.0


def gini(counts: np.ndarray) -> float:
    """Gini index@k of the recommendation counts over all items (0 = equal exposure, ->1 = one item).

    ``G = sum_{i=1..n} (2i - n - 1) c_(i) / (n * sum c)`` with ``c_(1) <= ... <= c_(n)`` the sorted
    counts of all ``n`` items, recommended or not (the ``gini_index`` formula of the Dacrema et al.
    code, without its ``+1e-7`` smoothing). 0 when nothing was recommended.
    """
    c = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = c.size, c.sum()
    if n == 0 or total == 0:
        return 0.0
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(((2.0 * i - n - 1.0) * c).sum() / (n * total))


def entropy(counts: np.ndarray) -> float:
    """Shannon entropy@k (bits) of the recommendation-count distribution ``p_i = c_i / sum c``.

    ``H = -sum_i p_i log2 p_i`` (over items with ``c_i > 0``); at most ``log2(n_items)``.
    """
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if total == 0:
        return 0.0
    p = c[c > 0] / total
    return float(-(p * np.log2(p)).sum())


# ----------------------------------------------------------------------------- registry
MetricKind = Literal["accuracy", "auc", "list", "catalog"]


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    Attributes:
        name: the registry name (``ndcg``); logged as ``{phase}/{name}_at_{k}``.
        kind: ``accuracy`` (per user from hits, ``fn(hits, n_relevant, k)``), ``auc`` (per user,
            over all ranked candidates, no cutoff: logged as ``{phase}/auc``), ``list`` (per user
            from the recommended items, ``fn(items, popularity, n_users, k)``) or ``catalog`` (one
            value from the recommendation counts of all evaluated users, ``fn(counts)``).
        fn: the implementation.
        definition: the formula, recorded in the evaluation settings.
    """

    name: str
    kind: MetricKind
    fn: Callable[..., object]
    definition: str

    @property
    def at_k(self) -> bool:
        return self.kind != "auc"


METRICS: Mapping[str, Metric] = {
    m.name: m
    for m in (
        Metric("precision", "accuracy", precision, "sum_{j<=k} rel_j / k"),
        Metric("recall", "accuracy", recall, "sum_{j<=k} rel_j / |R_u|"),
        Metric("hit_rate", "accuracy", hit_rate, "1[sum_{j<=k} rel_j > 0]"),
        Metric("f1", "accuracy", f1, "2 P@k R@k / (P@k + R@k)"),
        Metric("mrr", "accuracy", mrr, "1 / rank of the first hit within k (0 if none)"),
        Metric("arhr", "accuracy", arhr, "sum_{j<=k} rel_j / j"),
        Metric("map", "accuracy", map_min, "sum_{j<=k} rel_j P@j / min(k, |R_u|)"),
        Metric("map_full", "accuracy", map_full, "sum_{j<=k} rel_j P@j / |R_u|"),
        Metric(
            "ndcg",
            "accuracy",
            ndcg,
            "sum_{j<=k} rel_j/log2(j+1) / sum_{j<=min(k,|R_u|)} 1/log2(j+1)",
        ),
        Metric(
            "ndcg_full_idcg",
            "accuracy",
            ndcg_full_idcg,
            "sum_{j<=k} rel_j/log2(j+1) / sum_{j<=|R_u|} 1/log2(j+1)",
        ),
        Metric(
            "auc",
            "auc",
            auc_from_counts,
            "fraction of (relevant, ranked non-relevant) pairs ordered correctly; ties per tie rule",
        ),
        Metric("novelty", "list", novelty, "mean_{i in top-k} -log2(max(pop_i, 1) / n_users)"),
        Metric("avg_popularity", "list", avg_popularity, "mean_{i in top-k} pop_i"),
        Metric("coverage", "catalog", coverage, "|{i : c_i > 0}| / n_items, c_i = #top-k lists with i"),
        Metric("gini", "catalog", gini, "sum_i (2i - n - 1) c_(i) / (n sum c), counts sorted ascending"),
        Metric("entropy", "catalog", entropy, "-sum_i p_i log2 p_i, p_i = c_i / sum c"),
    )
}


def get_metric(name: str) -> Metric:
    """The registered metric ``name``; :class:`UnknownNameError` listing the known names otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise UnknownNameError("metric", name, list(METRICS)) from None
