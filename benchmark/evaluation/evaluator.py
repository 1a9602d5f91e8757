"""The one evaluator every model is judged by: masking, ranking, ties and metrics.

Models only score (:class:`benchmark.models.Recommender`). :class:`Evaluator` asks a model for dense
scores in user batches, masks each user's excluded (seen) items with ``-inf``, takes the top
``max(cutoffs)`` items with a documented tie rule and computes every metric vectorised over the batch.
Peak memory is bounded by ``batch_size x n_items``: no users x items dense matrix is ever built.

Protocols (one engine):

* **full ranking**: every item that is not excluded is a candidate;
* **sampled ranking**: each user's relevant (test) items are ranked together with a set of negatives,
  either fixed by the split (``candidates``, e.g. :attr:`benchmark.splits.split.Split.test_candidates`)
  or ``n_negatives`` drawn per user uniformly without replacement from the items that are neither
  excluded nor test items of that user. Negatives depend only on ``(seed, user, item)`` (a hash), so
  they are the same for every model and every batch size. All of a user's positives are ranked
  together against the negatives (as the Dacrema et al. ``EvaluatorNegativeItemSample``); with one
  positive per user (leave-one-out) this is the usual "1 positive + n negatives" protocol.

Users: a user is evaluated when they have at least one relevant item: a test item that is not
excluded (and, in the sampled protocol with fixed candidates, at least one candidate). Other users are
skipped and counted in :attr:`EvaluationResult.skipped`. Users without training data are evaluated
like everyone else: the model must score them (each model documents its fallback).

Ties (``tie_rule``): items are ordered by score, then by a tie key:

* ``random`` (default): a seeded hash of ``(seed, user, item)``: deterministic for a seed, the same
  for every batch size and model, and unbiased in expectation. Coarse scores (popularity, counts)
  often tie; breaking ties in favour of test items inflates results (Sun et al., "Are we evaluating
  rigorously?", RecSys 2020), so the default favours neither side;
* ``index``: lower item index first (what a stable sort does);
* ``optimistic``: relevant items first among equal scores (an upper bound);
* ``pessimistic``: relevant items last among equal scores (a lower bound).

All rules are exact in both protocols, also when a tie straddles the cutoff. AUC counts a tied
(relevant, non-relevant) pair as 1 (optimistic), 0 (pessimistic) or 0.5 (random, index).

Hot path: every score batch is validated (shape, dtype, NaN / inf: :func:`benchmark.models.check_scores`
names the model and users). With numba installed, full ranking runs
:func:`benchmark.evaluation.topk.fused_topk`, which checks, masks and selects the top ``max_k + 1``
items while each row is in cache; otherwise a row-sum finiteness check, scatter masking and the
numpy two-stage top-k. Both feed the same tie handling and metrics, and the tests run both.
The fused path reads the batch's rows of the exclusion and relevance matrices in place (no per-batch
CSR copies); tie keys are computed only for rows with equal scores, and all accuracy metrics at all
cutoffs come from one :func:`benchmark.evaluation.metrics.accuracy_at_cutoffs` call per batch.
The model scores each batch on the calling thread (with its own BLAS / torch threads); checking,
masking, top-k, ties and metrics then run on row chunks of the batch in ``threads`` threads (the
numba kernels release the GIL). Every value is per row or an integer count, so results do not depend
on the thread count (a test compares 1, 2 and 3 threads).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError, DataError, UnknownNameError
from benchmark.evaluation import metrics as M
from benchmark.evaluation.result import EvaluationResult
from benchmark.evaluation.topk import HAVE_NUMBA, fused_topk, member_rows, topk_desc
from benchmark.models import batched, check_scores
from benchmark.threads import current_threads

TIE_RULES = ("random", "index", "optimistic", "pessimistic")
DEFAULT_TIE_RULE = "random"
_AUC_TIE_CREDIT = {"optimistic": 1.0, "pessimistic": 0.0, "random": 0.5, "index": 0.5}

_U64 = np.uint64
#: Use the fused numba kernel for full ranking (check + mask + top-k in about one pass over the
#: scores); tests switch it off to run the numpy path.
USE_FUSED = HAVE_NUMBA
#: Rows per chunk when ties straddle the cutoff (bounds the padded tie-key matrices).
_STRADDLE_CHUNK = 256
#: Fewest score rows per thread when a batch's ranking and metrics are split over threads (below it,
#: the per-chunk overhead outweighs the parallel work); tests lower it to exercise small batches.
_MIN_CHUNK_ROWS = 64


@dataclass
class _BatchMeasures:
    """What one batch (or row chunk of one) contributes: per-user metric columns, per-item
    recommendation counts per cutoff (catalog metrics) and, if asked for, the top lists."""

    per_user: dict[str, np.ndarray]
    counts: dict[int, np.ndarray]
    recs: pd.DataFrame | None


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele et al. 2014), vectorised on uint64 (wraps around)."""
    x = x + _U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def pair_hash(seed: int, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """A uint64 hash of ``(seed, user, item)``: the random stream of ties and sampled negatives."""
    u = np.asarray(users).astype(_U64)
    i = np.asarray(items).astype(_U64)
    s = _splitmix64(np.asarray([seed & ((1 << 64) - 1)], dtype=_U64))
    return _splitmix64(_splitmix64(u ^ s) + i)


def _row_keys(matrix: sp.csr_matrix, n_items: int) -> np.ndarray:
    """Sorted ``local_row * n_items + item`` keys of a CSR matrix's entries (for membership tests)."""
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return rows * n_items + matrix.indices.astype(np.int64)


def _member(keys: np.ndarray, n_items: int, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Whether each ``(rows, items)`` pair (broadcast) is among the sorted ``keys``; ``items < 0``: no."""
    items = np.asarray(items)
    q = np.asarray(rows, dtype=np.int64) * n_items + items
    if keys.size == 0:
        return np.zeros(q.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, q), keys.size - 1)
    return (keys[pos] == q) & (items >= 0)


def _model_name(model: Any) -> str:
    if hasattr(model, "score"):
        return type(model).__name__
    return str(getattr(model, "__name__", type(model).__name__))


def _binary(m: Any) -> sp.csr_matrix:
    c = sp.csr_matrix(m, dtype=np.float32, copy=True)
    c.sum_duplicates()
    c.eliminate_zeros()
    c.data[:] = 1.0
    c.sort_indices()
    return c


class Evaluator:
    """Evaluate any scoring model on one part of a split (see the module docstring for the rules).

    Args:
        test: the relevant items per user (binary relevance).
        exclude: items never ranked for a user (seen items): the training matrix, or a sequence of
            matrices (``[train, validation]`` after the final refit). None: nothing excluded.
        cutoffs: the ``k`` of the top-k metrics, each in ``1..n_items``.
        metrics: names from :data:`benchmark.evaluation.METRICS`.
        candidates: sampled ranking against fixed negatives: a sparse [n_users, n_items] matrix whose
            row ``u`` lists user ``u``'s negative candidates (:attr:`Split.test_candidates`).
        n_negatives: sampled ranking against ``n_negatives`` negatives drawn per user (see above).
        tie_rule: one of :data:`TIE_RULES` (default ``random``, seeded by ``seed``).
        batch_size: users scored at once; bounds peak memory (``batch_size x n_items`` float32).
        seed: seeds the random tie rule and sampled negatives; pass
            ``benchmark.seeds.derive_seed(...)`` of what is evaluated.
        item_popularity: per-item interaction counts for novelty / avg_popularity; default: the
            item counts of ``exclude`` (the training data).
        name: the part evaluated (``test``, ``val``): the default prefix of
            :meth:`EvaluationResult.metrics`.
        threads: threads for masking, top-k, ties and metrics (row chunks of each score batch);
            default :func:`benchmark.threads.current_threads` at evaluation time, i.e. the cell's thread share
            (:func:`benchmark.threads.limit_threads`). Results do not depend on it.

    The evaluator writes ``-inf`` into the score arrays a model returns (masking without a copy), so
    ``score`` must return a fresh array each call (read-only arrays are copied first).

    Raises:
        ConfigError: a cutoff outside ``1..n_items``, bad ``n_negatives`` / ``batch_size``, or both
            ``candidates`` and ``n_negatives``.
        UnknownNameError: an unknown metric or tie rule (the message lists the known names).
        DataError: ``exclude`` or ``candidates`` not in the id space of ``test``.
    """

    def __init__(
        self,
        test: InteractionMatrix,
        exclude: InteractionMatrix | Sequence[InteractionMatrix] | None = None,
        cutoffs: Sequence[int] = (10,),
        metrics: Sequence[str] = ("precision", "recall", "ndcg"),
        *,
        candidates: sp.spmatrix | sp.sparray | None = None,
        n_negatives: int | None = None,
        tie_rule: str = DEFAULT_TIE_RULE,
        batch_size: int = 1024,
        seed: int = 0,
        item_popularity: np.ndarray | None = None,
        name: str = "test",
        threads: int | None = None,
    ) -> None:
        n_users, n_items = test.shape
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads={threads!r} must be an integer >= 1 or None")
        self.threads = threads
        self.test = test
        self.n_items = n_items
        self.name = name
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be >= 1")
        if isinstance(metrics, str):
            metrics = [metrics]
        self.metrics = [M.get_metric(m) for m in dict.fromkeys(metrics)]
        if tie_rule not in TIE_RULES:
            raise UnknownNameError("tie rule", tie_rule, list(TIE_RULES))
        self.tie_rule = tie_rule
        ks = [cutoffs] if isinstance(cutoffs, (int, np.integer)) else list(cutoffs)
        if not ks:
            raise ConfigError("cutoffs is empty; give at least one k")
        for k in ks:
            if (
                isinstance(k, (bool, np.bool_))
                or not isinstance(k, (int, np.integer))
                or not 1 <= k <= n_items
            ):
                raise ConfigError(f"cutoff {k!r} must be an integer in 1..n_items={n_items}")
        self.cutoffs = sorted({int(k) for k in ks})
        self.max_k = self.cutoffs[-1]

        # ---- excluded items
        parts = (
            [] if exclude is None else [exclude] if isinstance(exclude, InteractionMatrix) else list(exclude)
        )
        for j, part in enumerate(parts):
            if not isinstance(part, InteractionMatrix):
                raise TypeError(f"exclude[{j}] is a {type(part).__name__}, expected InteractionMatrix")
            if not test.same_id_space(part):
                raise DataError(
                    f"exclude matrix {part.name or j!r} {part.shape} does not share the id space of the "
                    f"evaluated matrix {test.name or name!r} {test.shape} (shape / user ids / item ids)"
                )
        self.exclude_description = "+".join(p.name or f"exclude{j}" for j, p in enumerate(parts)) or "none"
        excl: sp.csr_matrix | None = (
            _binary(sum((p.matrix for p in parts[1:]), parts[0].matrix)) if parts else None
        )
        self._exclude = excl
        test_m = _binary(test.matrix)
        relevant = test_m if excl is None else _binary(test_m - test_m.multiply(excl))
        self._n_test_excluded = int(test_m.nnz - relevant.nnz)
        self._relevant = relevant
        self._n_relevant = np.diff(relevant.indptr).astype(np.int64)

        # ---- protocol
        if candidates is not None and n_negatives is not None:
            raise ConfigError("give either candidates (fixed negatives) or n_negatives, not both")
        self._ranked: sp.csr_matrix | None = None
        self.n_negatives = None if n_negatives is None else int(n_negatives)
        if self.n_negatives is not None and self.n_negatives < 1:
            raise ConfigError(f"n_negatives={n_negatives!r} must be >= 1")
        skipped = {"no_relevant_items": int((self._n_relevant == 0).sum())}
        evaluable = self._n_relevant > 0
        if candidates is not None:
            shape = getattr(candidates, "shape", type(candidates).__name__)
            if not sp.issparse(candidates) or shape != test.shape:
                raise DataError(
                    f"candidates {shape} must be a sparse matrix in the id space of {test.name or name!r} "
                    f"{test.shape}"
                )
            cand = _binary(candidates)
            # Excluded or relevant items are never negatives; relevant items are always ranked.
            neg = cand - cand.multiply(test_m)
            if excl is not None:
                neg = neg - neg.multiply(excl)
            neg = _binary(neg)
            no_cand = evaluable & (np.diff(neg.indptr) == 0)
            skipped["no_candidates"] = int(no_cand.sum())
            evaluable &= ~no_cand
            self._ranked = _binary(neg + relevant)
        self.protocol = "full" if candidates is None and n_negatives is None else "sampled"
        self.skipped = skipped
        self.users = np.flatnonzero(evaluable).astype(np.int64)

        # ---- popularity for novelty / avg_popularity
        needs_pop = any(m.kind == "list" for m in self.metrics)
        if item_popularity is not None:
            pop = np.asarray(item_popularity, dtype=np.float64)
            if pop.shape != (n_items,):
                raise DataError(f"item_popularity has shape {pop.shape}, expected ({n_items},)")
        elif excl is not None:
            pop = np.bincount(excl.indices, minlength=n_items).astype(np.float64)
        elif needs_pop:
            raise ConfigError("novelty / avg_popularity need item_popularity or an exclude (training) matrix")
        else:
            pop = np.zeros(n_items)
        self.item_popularity = pop
        self._n_pop_users = n_users

    # ------------------------------------------------------------------ settings
    @property
    def settings(self) -> dict[str, Any]:
        """Everything that defines this evaluation, for logging next to the metrics."""
        return {
            "name": self.name,
            "protocol": self.protocol,
            "candidates": "fixed" if self._ranked is not None else None,
            "n_negatives": self.n_negatives,
            "tie_rule": self.tie_rule,
            "cutoffs": list(self.cutoffs),
            "metrics": [m.name for m in self.metrics],
            "metric_definitions": {m.name: m.definition for m in self.metrics},
            "exclude": self.exclude_description,
            "n_test_items_excluded": self._n_test_excluded,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "n_users": int(self.test.n_users),
            "n_items": int(self.n_items),
            "users_evaluated": len(self.users),
            "users_skipped": dict(self.skipped),
        }

    @property
    def n_relevant(self) -> np.ndarray:
        """Per user (all users): the relevant (test) items that are not excluded, i.e. ranked."""
        return self._n_relevant

    def excluded(self, users: np.ndarray) -> sp.csr_matrix:
        """Binary ``[len(users), n_items]``: the items never ranked for ``users`` (their seen items)."""
        users = np.asarray(users, dtype=np.int64)
        if self._exclude is None:
            empty = (np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(len(users) + 1, np.int32))
            return sp.csr_matrix(empty, shape=(len(users), self.n_items))
        return self._exclude[users]

    def ranked_items(self, users: np.ndarray) -> sp.csr_matrix | None:
        """Binary ``[len(users), n_items]``: the candidates each user's ranking is over.

        None in the full-ranking protocol (every item that is not :meth:`excluded`); in the sampled
        protocol the user's relevant items plus their negatives (fixed or drawn), exactly what
        :meth:`evaluate` ranks.
        """
        if self.protocol == "full":
            return None
        users = np.asarray(users, dtype=np.int64)
        return self._ranked[users] if self._ranked is not None else self._sample(users)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, model: Any, *, recommendations: bool = False) -> EvaluationResult:
        """Score, mask, rank and measure ``model`` on every evaluated user.

        Args:
            model: a fitted recommender (``.score(users) -> float32 [len(users), n_items]``) or such a
                scoring function.
            recommendations: also return the top ``max(cutoffs)`` lists.

        Raises:
            ModelError: wrong score shape, NaN or inf (naming the model and users).
        """
        start = time.perf_counter()
        model_name = _model_name(model)
        score_fn: Callable[[np.ndarray], np.ndarray] = model.score if hasattr(model, "score") else model
        n_threads = max(1, current_threads() if self.threads is None else self.threads)
        parts: list[_BatchMeasures] = []
        # Scoring runs on the calling thread (the model's own BLAS / torch threads); what follows it
        # (check, mask, top-k, ties, metrics) is per row, so row chunks of a batch run in a thread
        # pool (the numba kernels and numpy's sorts release the GIL). Every result is per row or an
        # integer sum, so it is the same for every thread count.
        pool = ThreadPoolExecutor(n_threads) if n_threads > 1 else None
        try:
            for sl in batched(len(self.users), self.batch_size):
                users = self.users[sl]
                scores = self._scores(score_fn, model_name, users, check_finite=not self._fused)
                chunks = max(1, min(n_threads, len(users) // _MIN_CHUNK_ROWS))
                if pool is None or chunks == 1:
                    parts.append(self._measure(model_name, scores, users, recommendations))
                else:
                    bounds = np.linspace(0, len(users), chunks + 1).astype(int)
                    futures = [
                        pool.submit(self._measure, model_name, scores[lo:hi], users[lo:hi], recommendations)
                        for lo, hi in pairwise(bounds)
                    ]
                    parts.extend(f.result() for f in futures)  # in row order
                del scores
        finally:
            if pool is not None:
                pool.shutdown()
        per_user = {
            col: [p.per_user[col] for p in parts]
            for m in self.metrics
            if m.kind != "catalog"
            for col in self._columns(m)
        }
        counts = {k: np.zeros(self.n_items, dtype=np.int64) for k in self.cutoffs}
        for p in parts:
            for k, c in p.counts.items():
                counts[k] += c
        recs = [p.recs for p in parts if p.recs is not None]

        table = pd.DataFrame(
            {
                "user": self.users,
                "user_id": self.test.user_ids[self.users],
                "n_relevant": self._n_relevant[self.users],
                **{
                    col: np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)
                    for col, parts in per_user.items()
                },
            }
        )
        summary: dict[str, float] = {}
        for m in self.metrics:
            for cut, col in zip(self.cutoffs if m.at_k else [0], self._columns(m)):
                if m.kind == "catalog":
                    summary[col] = float(m.fn(counts[cut]))  # type: ignore[arg-type]
                else:
                    vals_col = table[col].to_numpy(dtype=np.float64)
                    ok = ~np.isnan(vals_col)
                    summary[col] = float(vals_col[ok].mean()) if ok.any() else float("nan")
        rec_frame = None
        if recommendations:
            rec_frame = (
                pd.concat(recs, ignore_index=True)
                if recs
                else self._rec_frame(
                    np.zeros(0, np.int64), np.zeros((0, self.max_k), np.int64), np.zeros((0, self.max_k))
                )
            )
        return EvaluationResult(
            per_user=table,
            summary=summary,
            n_users_evaluated=len(self.users),
            skipped=dict(self.skipped),
            settings={**self.settings, "model": model_name},
            recommendations=rec_frame,
            name=self.name,
            seconds=time.perf_counter() - start,
        )

    # ------------------------------------------------------------------ steps
    @property
    def _fused(self) -> bool:
        return USE_FUSED and self.protocol == "full"

    def _measure(
        self, model_name: str, scores: np.ndarray, users: np.ndarray, recommendations: bool
    ) -> _BatchMeasures:
        """Mask, rank and measure the score rows of ``users`` (one batch or a row chunk of one)."""
        kk = min(self.max_k + 1, self.n_items)
        fused = self._fused
        if fused:
            # The kernel reads the users' rows of the exclusion matrix in place (no batch copy).
            ex = self._exclude if self._exclude is not None else sp.csr_matrix((1, self.n_items))
            rows = users if self._exclude is not None else np.zeros(len(users), np.int64)
            top_vals, top_idx, bad = fused_topk(scores, ex.indptr, ex.indices, kk, ex_rows=rows, threads=1)
            if bad.any():  # those rows are left as the model returned them
                check_scores(model_name, users[bad], scores[bad], self.n_items)
        else:
            scores = self._mask(scores, users)
            top_vals, top_idx = topk_desc(scores, kk)
        # (row, item) keys of the relevant items: for the numpy hit lookup and the tie rules that
        # look at relevance; the fused path's hit lookup reads the relevant matrix in place.
        need_keys = not fused or self.tie_rule in ("optimistic", "pessimistic")
        rel_keys = _row_keys(self._relevant[users], self.n_items) if need_keys else np.zeros(0, np.int64)
        items, vals = self._rank(scores, users, rel_keys, top_vals, top_idx)
        if fused:
            hits = member_rows(self._relevant, items, rows=users)
        else:
            hits = _member(rel_keys, self.n_items, np.arange(len(users))[:, None], items)
        n_rel = self._n_relevant[users]
        per_user: dict[str, np.ndarray] = {}
        accuracy = [m.name for m in self.metrics if m.kind == "accuracy"]
        if accuracy:  # all metrics at all cutoffs from shared cumulative sums
            per_user.update(M.accuracy_at_cutoffs(accuracy, hits, n_rel, self.cutoffs))
        for m in self.metrics:
            if m.kind == "list":
                for k in self.cutoffs:
                    col = m.fn(items, self.item_popularity, self._n_pop_users, k)
                    per_user[f"{m.name}_at_{k}"] = np.asarray(col, dtype=np.float64)
            elif m.kind == "auc":
                per_user["auc"] = self._auc(scores, users)
        counts: dict[int, np.ndarray] = {}
        if any(m.kind == "catalog" for m in self.metrics):
            for k in self.cutoffs:
                top = items[:, :k]
                counts[k] = np.bincount(top[top >= 0], minlength=self.n_items)
        return _BatchMeasures(
            per_user, counts, self._rec_frame(users, items, vals) if recommendations else None
        )

    def _columns(self, m: M.Metric) -> list[str]:
        return [f"{m.name}_at_{k}" for k in self.cutoffs] if m.at_k else [m.name]

    def _scores(
        self,
        score_fn: Callable[[np.ndarray], np.ndarray],
        model: str,
        users: np.ndarray,
        *,
        check_finite: bool = True,
    ) -> np.ndarray:
        s = score_fn(users)
        expected = (len(users), self.n_items)
        if not isinstance(s, np.ndarray) or s.shape != expected or s.dtype != np.float32:
            s = check_scores(model, users, s, self.n_items)  # raises on a wrong shape, converts dtype
        if not (s.flags.writeable and s.flags.c_contiguous):
            s = np.array(s, dtype=np.float32, order="C")
        # A finite row sum proves the row finite (NaN / inf propagate) at a third of the cost of
        # np.isfinite; only when a sum is not finite (NaN, inf, or overflow) does check_scores decide.
        if check_finite:
            with np.errstate(over="ignore"):  # an overflowing sum is a case for check_scores, not a warning
                finite = bool(np.isfinite(s.sum(axis=1)).all())
            if not finite:
                s = check_scores(model, users, s, self.n_items)
        return s

    def _mask(self, scores: np.ndarray, users: np.ndarray) -> np.ndarray:
        """``-inf`` for every item the user must not be recommended."""
        if self.protocol == "full":
            if self._exclude is not None:
                e = self._exclude[users]
                scores[np.repeat(np.arange(len(users)), np.diff(e.indptr)), e.indices] = -np.inf
            return scores
        ranked = self._ranked[users] if self._ranked is not None else self._sample(users)
        rows = np.repeat(np.arange(len(users)), np.diff(ranked.indptr))
        out = np.full_like(scores, -np.inf)
        out[rows, ranked.indices] = scores[rows, ranked.indices]
        return out

    def _sample(self, users: np.ndarray) -> sp.csr_matrix:
        """Relevant items + ``n_negatives`` sampled negatives per user (uniform, without replacement)."""
        assert self.n_negatives is not None
        b, n = len(users), self.n_items
        keys = pair_hash(self.seed, users[:, None], np.arange(n)[None, :])
        forbidden = _binary(self.test.matrix[users])
        if self._exclude is not None:
            forbidden = _binary(forbidden + self._exclude[users])
        keys[np.repeat(np.arange(b), np.diff(forbidden.indptr)), forbidden.indices] = np.iinfo(np.uint64).max
        m = min(self.n_negatives, n)
        # The m smallest hash keys are a uniform sample without replacement of the allowed items.
        neg = np.argpartition(keys, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n), (b, 1))
        ok = np.take_along_axis(keys, neg, axis=1) != np.iinfo(np.uint64).max
        rows = np.repeat(np.arange(b), ok.sum(axis=1))
        negm = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, neg[ok])), shape=(b, n))
        return _binary(negm + self._relevant[users])

    def _tie_keys(
        self, users: np.ndarray, rows: np.ndarray, items: np.ndarray, rel_keys: np.ndarray
    ) -> np.ndarray:
        """Secondary sort key (ascending) of ``(users, items)`` pairs under the tie rule."""
        items = np.asarray(items, dtype=np.int64)
        if self.tie_rule == "index":
            return items
        if self.tie_rule == "random":
            return (pair_hash(self.seed, users, items) >> _U64(1)).astype(np.int64)
        rel = _member(rel_keys, self.n_items, rows, items).astype(np.int64)
        first = 1 - rel if self.tie_rule == "optimistic" else rel
        return first * self.n_items + items

    def _rank(
        self,
        scores: np.ndarray,
        users: np.ndarray,
        rel_keys: np.ndarray,
        vals: np.ndarray,
        idx: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top ``max_k`` items per row under the tie rule, from the top ``min(max_k + 1, n)``
        scores of the masked ``scores`` (``vals`` / ``idx`` in any order, tied items arbitrary).

        Item ``-1`` (score ``-inf``) marks an empty slot.
        """
        K = self.max_k
        kk = vals.shape[1]
        idx = idx.astype(np.int64, copy=False)  # the fused kernel already returns int64
        # Any sort will do: rows without equal scores have one order, and rows with equal scores are
        # re-sorted by their (unique) tie keys below. The default (SIMD quicksort) is ~5x a stable one.
        order = np.argsort(-vals, axis=1)
        vals = np.take_along_axis(vals, order, axis=1)
        idx = np.take_along_axis(idx, order, axis=1)
        # Only rows with equal scores need the tie keys (all rows for popularity-like scores, few
        # for continuous ones).
        tied = np.flatnonzero((vals[:, 1:] == vals[:, :-1]).any(axis=1))
        if len(tied):
            keys = self._tie_keys(users[tied][:, None], tied[:, None], idx[tied], rel_keys)
            order = np.lexsort((keys, -vals[tied]), axis=1)
            vals[tied] = np.take_along_axis(vals[tied], order, axis=1)
            idx[tied] = np.take_along_axis(idx[tied], order, axis=1)
        # Rows where the K-th and (K+1)-th scores tie: which tied items make the list depends on
        # the tie rule, and they may lie outside the candidates top-k looked at; resolved below.
        straddle: np.ndarray = (
            np.flatnonzero((vals[:, K - 1] == vals[:, K]) & np.isfinite(vals[:, K - 1]))
            if kk > K
            else np.zeros(0, dtype=np.int64)
        )
        vals, idx = vals[:, :K], idx[:, :K]
        if len(straddle):
            vals[straddle], idx[straddle] = self._resolve_straddle(
                scores, users, straddle, vals, idx, rel_keys
            )
        idx[~np.isfinite(vals)] = -1
        return idx, vals

    def _resolve_straddle(
        self,
        scores: np.ndarray,
        users: np.ndarray,
        rows: np.ndarray,
        vals: np.ndarray,
        idx: np.ndarray,
        rel_keys: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        out_vals, out_idx = vals[rows].copy(), idx[rows].copy()
        # Chunks bound the padded key matrices below (rows x the largest tie group).
        for c in range(0, len(rows), _STRADDLE_CHUNK):
            sl = slice(c, c + _STRADDLE_CHUNK)
            out_vals[sl], out_idx[sl] = self._fill_ties(
                scores, users, rows[sl], out_vals[sl], out_idx[sl], rel_keys
            )
        return out_vals, out_idx

    def _fill_ties(
        self,
        scores: np.ndarray,
        users: np.ndarray,
        rows: np.ndarray,
        vals: np.ndarray,
        idx: np.ndarray,
        rel_keys: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``vals`` / ``idx`` (the rows' sorted top-K) with the slots of the boundary value refilled.

        Items scored above the boundary value ``t`` are all in the top-K already (first, in order);
        every item of the whole row equal to ``t`` competes for the remaining slots, which go to the
        smallest tie keys. Selecting them by partition rather than sorting the whole tie group matters
        when scores tie massively (sparse neighbourhood models: thousands of zero scores per row).
        """
        K = self.max_k
        n = len(rows)
        t = vals[:, K - 1]
        n_above = (vals > t[:, None]).sum(axis=1)
        need = K - n_above  # >= 1 slots per row, fewer than the row's tied items
        er, items_eq = np.nonzero(scores[rows] == t[:, None])  # row-major: er ascending
        keys = self._tie_keys(users[rows][er], rows[er], items_eq, rel_keys)
        counts = np.bincount(er, minlength=n)
        pos = np.arange(er.size) - np.repeat(np.cumsum(counts) - counts, counts)
        width = int(counts.max())
        kmat = np.full((n, width), np.iinfo(np.int64).max, dtype=np.int64)  # keys are < 2**63 - 1
        kmat[er, pos] = keys
        imat = np.zeros((n, width), dtype=np.int64)
        imat[er, pos] = items_eq
        m = int(need.max())
        part = np.argpartition(kmat, m - 1, axis=1)[:, :m] if m < width else np.tile(np.arange(width), (n, 1))
        sel = np.take_along_axis(kmat, part, axis=1)
        part = np.take_along_axis(part, np.argsort(sel, axis=1, kind="stable"), axis=1)
        chosen = np.take_along_axis(imat, part, axis=1)  # each row's tied items by ascending key
        slot = np.arange(K)[None, :] - n_above[:, None]  # position within the tie slots
        fill = slot >= 0
        src = np.take_along_axis(chosen, np.clip(slot, 0, m - 1), axis=1)
        idx = np.where(fill, src, idx)
        vals = np.where(fill, t[:, None], vals)
        return vals, idx

    def _auc(self, scores: np.ndarray, users: np.ndarray) -> np.ndarray:
        """Per-user AUC over the ranked candidates (non ``-inf`` scores)."""
        b, n = scores.shape
        rel = self._relevant[users]
        pr = np.repeat(np.arange(b), np.diff(rel.indptr))
        slot = np.arange(pr.size) - rel.indptr[pr]
        n_pos = np.diff(rel.indptr)
        width = max(int(n_pos.max()) if b else 1, 1)
        padded = np.full((b, width), -np.inf, dtype=np.float32)
        pos = scores[pr, rel.indices]
        padded[pr, slot] = pos
        # Counts of scores above / equal to each positive's, in all its row and among its positives:
        # one searchsorted over all rows at once, on keys that order by (row, score).
        q = _row_score_keys(pos, pr)
        rows = np.arange(b)[:, None]
        all_keys = _row_score_keys(np.sort(scores, axis=1), rows).ravel()
        pos_keys = _row_score_keys(np.sort(padded, axis=1), rows).ravel()
        n_gt = n - (np.searchsorted(all_keys, q, side="right") - pr * n)
        n_ge = n - (np.searchsorted(all_keys, q, side="left") - pr * n)
        p_gt = width - (np.searchsorted(pos_keys, q, side="right") - pr * width)
        p_ge = width - (np.searchsorted(pos_keys, q, side="left") - pr * width)
        above = n_gt - p_gt
        tied = (n_ge - n_gt) - (p_ge - p_gt)
        n_valid = np.isfinite(scores).sum(axis=1)
        return M.auc_from_counts(n_valid - n_pos, above, tied, pr, b, _AUC_TIE_CREDIT[self.tie_rule])

    def _rec_frame(self, users: np.ndarray, items: np.ndarray, vals: np.ndarray) -> pd.DataFrame:
        valid = items >= 0
        rows, cols = np.nonzero(valid)
        return pd.DataFrame(
            {
                "user_id": self.test.user_ids[users[rows]],
                "rank": (cols + 1).astype(np.int64),
                "item_id": self.test.item_ids[items[rows, cols]],
                "score": vals[rows, cols].astype(np.float32),
            }
        )


def _row_score_keys(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """int64 keys ordered as ``(row, value)`` for float32 ``values`` (no NaN; -0.0 equals +0.0), so
    that one sorted array of keys serves a searchsorted per row."""
    bits = (values + np.float32(0.0)).view(np.int32).astype(np.int64)
    order = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits) + (1 << 31)  # float order, in [0, 2^32)
    return np.asarray(rows, dtype=np.int64) * (1 << 32) + order


_WARM = {"done": False}


def warm_up() -> float:
    """Load (or compile) the evaluator's numba kernels once per process; the seconds it took.

    The first evaluation of a process otherwise pays it inside the first tuning trial of the first
    cell, i.e. charges it to that model's cost. Run on a 4-user toy matrix with every metric kind
    and tie rule path; 0.0 once done.
    """
    if _WARM["done"]:
        return 0.0
    start = time.perf_counter()
    users, items = np.array([0, 0, 1, 2, 3, 3]), np.array([0, 1, 2, 3, 4, 5])
    ids_u, ids_i = np.arange(4), np.arange(6)
    train = InteractionMatrix.from_indices(users, items, ids_u, ids_i)
    test = InteractionMatrix.from_indices(np.array([0, 1, 2, 3]), np.array([2, 3, 4, 0]), ids_u, ids_i)
    ev = Evaluator(test, train, cutoffs=[1, 2], metrics=["ndcg", "recall", "coverage", "novelty"], threads=1)
    ev.evaluate(lambda u: np.ones((len(u), 6), dtype=np.float32))
    _WARM["done"] = True
    return time.perf_counter() - start
