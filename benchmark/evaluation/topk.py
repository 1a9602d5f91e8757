"""Check, mask and top-k of a batch of score rows: the evaluator's hot path.

Two implementations find the same top-k values (which of several tied items is returned, and the
order of :func:`fused_topk`'s output, are unspecified: the evaluator sorts and applies the tie rule
afterwards):

* :func:`fused_topk` (numba, used when numba is importable): per row (while it sits in cache), one
  pass computes the maxima and sums of blocks of 8 scores (a finite sum proves its scores finite),
  the excluded items are set to ``-inf``, and only the items of the blocks that can hold a top-k
  score are selected from. The score matrix is read from memory about once. Blocks are strided
  (block ``j`` holds items ``j, j + nb, ..., j + 7 nb``) so that the pass runs over eight contiguous
  runs and vectorises (a float max and an add per score); super-blocks of 8 blocks (strided the same
  way) give the threshold from a few hundred maxima, and the search for the candidates is
  branch-free (on this hot path mispredicted branches cost more than the arithmetic).
* :func:`topk_desc` (numpy): the same two-stage idea with array operations, after the
  evaluator's separate finiteness check and masking.

Why two stages are exact: with ``k`` blocks whose maxima are ``>= t``, there are ``k`` items scored
``>= t``, so the ``k``-th largest score is ``>= t`` and no item of a block whose maximum is ``< t``
can be in the top ``k``. Any ``t`` with ``k`` such blocks will do (the fused kernel takes the lower
edge of a histogram bucket, not the exact ``k``-th largest maximum). The fused kernel takes ``t``
from super-blocks without excluded items only (their maxima are exact after masking); a block that
lost an item keeps its old maximum, an upper bound, so it is searched whenever it might hold a
score ``>= t``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmark.threads import current_threads

numba: Any
try:  # numba ships with the test dependencies (ranx); without it the numpy path runs.
    import numba
except ImportError:  # pragma: no cover - exercised only in environments without numba
    numba = None

BLOCK = 32  # items per block of topk_desc (contiguous)
FUSED_BLOCK = 8  # items per block of the fused kernel (strided; its pass is written for eight runs)
FUSED_GROUP = 8  # blocks per super-block of the fused kernel (strided)


def topk_desc(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Values and indices of the ``k`` largest scores per row, values descending (numpy).

    Among equal scores the order of the indices is unspecified (as with ``torch.topk``): the
    evaluator's tie rule decides it afterwards.
    """
    b, n = scores.shape
    nb = n // BLOCK
    if nb < 4 * k:
        part = np.argpartition(scores, n - k, axis=1)[:, n - k :] if k < n else np.tile(np.arange(n), (b, 1))
        vals = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        return np.take_along_axis(vals, order, axis=1), np.take_along_axis(part, order, axis=1)
    main = nb * BLOCK
    blocks = scores[:, :main].reshape(b, nb, BLOCK)  # a view: no copy
    bmax = blocks.max(axis=2)
    top_blocks = np.argpartition(bmax, nb - k, axis=1)[:, nb - k :]
    # Whole blocks are copied (numpy fancy indexing moves contiguous runs of BLOCK floats).
    cand = blocks[np.arange(b)[:, None], top_blocks].reshape(b, k * BLOCK)
    c = k * BLOCK
    part = np.argpartition(cand, c - k, axis=1)[:, c - k :]
    vals = np.take_along_axis(cand, part, axis=1)
    cols = np.take_along_axis(top_blocks, part // BLOCK, axis=1) * BLOCK + part % BLOCK
    if main < n:  # the short tail (< BLOCK items) is always a candidate
        vals = np.concatenate([vals, scores[:, main:]], axis=1)
        cols = np.concatenate([cols, np.broadcast_to(np.arange(main, n), (b, n - main))], axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(cols, order, axis=1)


if numba is not None:
    _LOW = np.int32(0x7FFFFFFF)
    _NEG_INF = np.float32(-np.inf)

    @numba.njit(cache=True, inline="always")
    def _key(x):  # pragma: no cover - compiled
        # Order-preserving map of a float32 to int32 (for the integer histogram selection). Adding
        # +0.0 turns -0.0 into +0.0, so equal floats get equal keys.
        bits = np.float32(x + np.float32(0.0)).view(np.int32)
        return bits ^ ((bits >> 31) & _LOW)

    @numba.njit(cache=True, inline="always")
    def _unkey(key):  # pragma: no cover - compiled
        # The inverse of _key (the bit map is an involution).
        return np.int32(key ^ ((key >> 31) & _LOW)).view(np.float32)

    @numba.njit(cache=True)
    def _kth_largest(a, k, hist, buf):  # pragma: no cover - compiled
        # The k-th largest value of `a` (int32, 1 <= k <= a.size) by histogram selection: values are
        # binned into 256 buckets between their min and max and the bucket holding the k-th largest
        # is binned again. A few passes over a few hundred values, without the unpredictable
        # branches of a heap or quickselect. Scratch: `hist` (256 int64), `buf` (>= a.size int32).
        vals = a
        m = a.size
        while True:
            if m <= 16:  # finish with a partial selection sort (in buf)
                v = buf[:m]
                if m == a.size:  # still the input (every later round keeps fewer values)
                    v[:] = a
                for t in range(k):
                    best = t
                    for q in range(t + 1, m):
                        if v[q] > v[best]:
                            best = q
                    v[t], v[best] = v[best], v[t]
                return v[k - 1]
            mx = np.int64(vals[:m].max())
            span = mx - np.int64(vals[:m].min())
            if span == 0:
                return vals[0]
            shift = 0
            while (span >> shift) >= 256:
                shift += 1
            hist[:] = 0
            for q in range(m):
                hist[(mx - vals[q]) >> shift] += 1
            above = 0
            sel = 0
            while above + hist[sel] < k:
                above += hist[sel]
                sel += 1
            c = 0  # keep the bucket's values, compacted into buf (c <= q: safe in place)
            for q in range(m):
                x = vals[q]
                buf[c] = x
                c += (mx - x) >> shift == sel
            vals = buf
            m = c
            k -= above

    @numba.njit(cache=True, inline="always")
    def _kth_bound(vals, k, hist):  # pragma: no cover - compiled
        # A key t with at least k of `vals` (int32 keys, k <= vals.size) >= t, close below their k-th
        # largest: one round of _kth_largest's histogram, returning the lower edge of the bucket that
        # holds the k-th largest (no refinement, no allocation).
        mx = np.int64(vals.max())
        mn = np.int64(vals.min())
        shift = 0
        while ((mx - mn) >> shift) >= 256:
            shift += 1
        hist[:] = 0
        for q in range(vals.size):
            hist[(mx - vals[q]) >> shift] += 1
        above = 0
        sel = 0
        while above + hist[sel] < k:
            above += hist[sel]
            sel += 1
        return np.int32(max(mx - ((sel + 1) << shift) + 1, mn))

    # nogil instead of numba's parallel=True: rows are split over Python threads (fused_topk), which
    # needs no numba threading layer, so the kernel is safe in threaded and forked processes.
    @numba.njit(cache=True, nogil=True)
    def _fused(scores, ex_start, ex_end, ex_indices, k, out_vals, out_idx, bad):  # pragma: no cover
        b, n = scores.shape
        nb = n // FUSED_BLOCK  # block j: items j + s * nb for s < FUSED_BLOCK
        main = nb * FUSED_BLOCK  # items main..n-1 (the tail) are always searched
        ng = nb // FUSED_GROUP  # super-block g: blocks g + h * ng for h < FUSED_GROUP
        mainb = ng * FUSED_GROUP  # blocks mainb..nb-1 are in no super-block: always searched
        # Scratch, allocated once per call.
        bmax = np.empty(nb, np.float32)
        bsum = np.empty(nb, np.float32)
        smax = np.empty(ng, np.float32)
        keys = np.empty(nb + 1, np.int32)
        hist = np.empty(256, np.int64)
        b_touched = np.zeros(nb, np.bool_)
        s_touched = np.zeros(ng, np.bool_)
        touched = np.empty(nb + 1, np.int64)
        glist = np.empty(ng + 1, np.int64)
        blist = np.empty(nb + 1, np.int64)
        ckey = np.empty(n + 1, np.int32)
        cidx = np.empty(n + 1, np.int64)
        kbuf = np.empty(n + 1, np.int32)
        inf = np.float32(np.inf)
        for r in range(b):
            row = scores[r]
            # The one pass over the row (as the model wrote it): eight contiguous runs at a time, a
            # float max and an add per score (vectorised): block maxima and block sums.
            r0, r1 = row[0 * nb : 1 * nb], row[1 * nb : 2 * nb]
            r2, r3 = row[2 * nb : 3 * nb], row[3 * nb : 4 * nb]
            r4, r5 = row[4 * nb : 5 * nb], row[5 * nb : 6 * nb]
            r6, r7 = row[6 * nb : 7 * nb], row[7 * nb : 8 * nb]
            for j in range(nb):
                x0, x1, x2, x3 = r0[j], r1[j], r2[j], r3[j]
                x4, x5, x6, x7 = r4[j], r5[j], r6[j], r7[j]
                a = x0 if x0 > x1 else x1
                c = x2 if x2 > x3 else x3
                d = x4 if x4 > x5 else x5
                e = x6 if x6 > x7 else x7
                a = a if a > c else c
                d = d if d > e else e
                bmax[j] = a if a > d else d
                bsum[j] = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7))
            # Super-block maxima (and sums, folded into bsum[:ng]).
            smax[:] = bmax[:ng]
            for h in range(1, FUSED_GROUP):
                base = h * ng
                for g in range(ng):
                    m = bmax[base + g]
                    smax[g] = m if m > smax[g] else smax[g]
                    bsum[g] += bsum[base + g]
            # Every score is finite if every sum is (NaN and inf propagate); a non-finite sum may
            # also be an overflow, so then the scores decide.
            n_bad = 0
            for g in range(ng):
                n_bad += not abs(bsum[g]) < inf
            for j in range(mainb, nb):
                n_bad += not abs(bsum[j]) < inf
            for i in range(main, n):
                n_bad += not abs(row[i]) < inf
            if n_bad:
                finite = True
                for i in range(n):
                    if not abs(row[i]) < inf:
                        finite = False
                        break
                if not finite:
                    bad[r] = True
                    continue
            # Mask, noting the blocks and super-blocks that lost an item: their maxima are now only
            # upper bounds.
            n_touched = 0
            n_s_touched = 0
            for p in range(ex_start[r], ex_end[r]):
                i = ex_indices[p]
                row[i] = _NEG_INF
                if i < main and not b_touched[i % nb]:
                    j = i % nb
                    b_touched[j] = True
                    touched[n_touched] = j
                    n_touched += 1
                    if j < mainb and not s_touched[j % ng]:
                        s_touched[j % ng] = True
                        n_s_touched += 1
            # The threshold: k untouched super-blocks (exact maxima) with maxima >= thr hold k
            # items >= thr, so nothing below thr is in the top k. With fewer than k untouched
            # super-blocks (many excluded items, narrow rows) the touched blocks' maxima are
            # recomputed and thr comes from all blocks; with at most k blocks everything is searched.
            thr = _NEG_INF
            if ng - n_s_touched >= k:
                c = 0
                for g in range(ng):
                    keys[c] = _key(smax[g])
                    c += not s_touched[g]
                thr = _unkey(_kth_bound(keys[:c], k, hist))
            elif nb > k:
                for q in range(n_touched):
                    j = touched[q]
                    m = _NEG_INF
                    for s in range(FUSED_BLOCK):
                        x = row[s * nb + j]
                        m = x if x > m else m
                    bmax[j] = m
                for j in range(nb):
                    keys[j] = _key(bmax[j])
                thr = _unkey(_kth_bound(keys[:nb], k, hist))
            for q in range(n_touched):
                j = touched[q]
                b_touched[j] = False
                if j < mainb:
                    s_touched[j % ng] = False
            # Search the super-blocks, then the blocks, whose (possibly old, too high) maxima reach
            # thr, then their items. Branch-free: each list grows by a comparison's result, so
            # nothing depends on a mispredicted branch.
            n_sel = 0
            for g in range(ng):
                glist[n_sel] = g
                n_sel += smax[g] >= thr
            n_blk = 0
            for q in range(n_sel):
                for h in range(FUSED_GROUP):
                    j = h * ng + glist[q]
                    blist[n_blk] = j
                    n_blk += bmax[j] >= thr
            for j in range(mainb, nb):
                blist[n_blk] = j
                n_blk += bmax[j] >= thr
            c = 0
            for q in range(n_blk):
                for s in range(FUSED_BLOCK):
                    i = s * nb + blist[q]
                    cidx[c] = i
                    c += row[i] >= thr
            for i in range(main, n):
                cidx[c] = i
                c += row[i] >= thr
            for q in range(c):
                ckey[q] = _key(row[cidx[q]])
            # The k largest candidates, unordered: all above the k-th largest key (fewer than k, so
            # the branch-free writes stay in bounds), then ties.
            kth = _kth_largest(ckey[:c], k, hist, kbuf)
            t = 0
            for q in range(c):
                out_idx[r, t] = cidx[q]
                out_vals[r, t] = row[cidx[q]]
                t += ckey[q] > kth
            for q in range(c):
                if t == k:
                    break
                if ckey[q] == kth:
                    out_idx[r, t] = cidx[q]
                    out_vals[r, t] = row[cidx[q]]
                    t += 1


if numba is not None:

    @numba.njit(cache=True, nogil=True)  # the evaluator runs row chunks in threads
    def _member_rows(start, end, indices, items, out, seen):  # pragma: no cover - compiled
        # Mark the row's items in a scratch array, look the top-k items up, unmark: O(k + |row|).
        b, k = items.shape
        for r in range(b):
            lo, hi = start[r], end[r]
            for p in range(lo, hi):
                seen[indices[p]] = True
            for t in range(k):
                item = items[r, t]
                out[r, t] = item >= 0 and seen[item]
            for p in range(lo, hi):
                seen[indices[p]] = False


def _row_bounds(indptr: np.ndarray, rows: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets into a CSR matrix's ``indices`` of ``rows`` (default: its first ``n``)."""
    if rows is None:
        ptr = np.asarray(indptr[: n + 1], dtype=np.int64)
        return ptr[:n], ptr[1 : n + 1]
    # Index first, then widen: only the batch's offsets are converted, not the whole indptr.
    r = np.asarray(rows, dtype=np.int64)
    return np.asarray(indptr[r], dtype=np.int64), np.asarray(indptr[r + 1], dtype=np.int64)


def _index_array(a: np.ndarray) -> np.ndarray:
    """CSR column indices as the kernels take them: int32 or int64, contiguous, not copied if already so
    (numba compiles one version per dtype)."""
    a = np.asarray(a)
    return np.ascontiguousarray(a, dtype=a.dtype if a.dtype in (np.int32, np.int64) else np.int64)


def member_rows(matrix: sp.csr_matrix, items: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """``out[r, t]``: whether ``items[r, t]`` is stored in row ``rows[r]`` of ``matrix`` (``-1``: False).

    ``rows`` defaults to ``0..len(items)-1``; passing them avoids slicing ``matrix`` (a copy). Items must
    be ``< matrix.shape[1]``; numba, one scratch array of ``matrix.shape[1]`` flags.
    """
    if numba is None:  # pragma: no cover
        raise RuntimeError("numba is not installed")
    out = np.empty(items.shape, dtype=np.bool_)
    start, end = _row_bounds(matrix.indptr, rows, items.shape[0])
    _member_rows(
        start,
        end,
        _index_array(matrix.indices),
        np.ascontiguousarray(items, dtype=np.int64),
        out,
        np.zeros(matrix.shape[1], dtype=np.bool_),
    )
    return out


def fused_topk(
    scores: np.ndarray,
    ex_indptr: np.ndarray,
    ex_indices: np.ndarray,
    k: int,
    *,
    threads: int | None = None,
    ex_rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check finiteness, mask excluded items in place and take the top ``k`` of every row (numba).

    Args:
        scores: float32 C-contiguous ``[b, n]``, written in place (``-inf`` at excluded items).
        ex_indptr: CSR row pointers of the excluded items (``b + 1``, or see ``ex_rows``).
        ex_indices: CSR column indices of the excluded items (unique per row).
        k: how many to keep, ``1 <= k <= n``.
        ex_rows: score row ``r`` excludes CSR row ``ex_rows[r]`` (default ``r``): lets the evaluator pass
            the whole exclusion matrix instead of slicing (copying) a batch out of it.
        threads: row chunks run in parallel (the kernel releases the GIL); default
            this process's thread share (:func:`benchmark.threads.current_threads`), so one setting
            governs scoring and evaluation.

    Returns:
        values ``[b, k]`` and indices ``[b, k]`` of the top ``k`` in no particular order, and a bool
        ``[b]`` flagging rows with NaN or inf scores (left unmasked; their top-k is undefined).
    """
    if numba is None:  # pragma: no cover
        raise RuntimeError("numba is not installed")
    b = scores.shape[0]
    vals = np.empty((b, k), dtype=np.float32)
    idx = np.empty((b, k), dtype=np.int64)
    bad = np.zeros(b, dtype=np.bool_)
    start, end = _row_bounds(ex_indptr, ex_rows, b)
    indices = _index_array(ex_indices)

    def run(lo: int, hi: int) -> None:
        # Row slices are views; start / end are absolute offsets into indices.
        _fused(scores[lo:hi], start[lo:hi], end[lo:hi], indices, k, vals[lo:hi], idx[lo:hi], bad[lo:hi])

    n_threads = max(1, min(current_threads() if threads is None else threads, b // 64))
    if n_threads == 1:
        run(0, b)
    else:
        bounds = np.linspace(0, b, n_threads + 1).astype(int)
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(run, bounds[:-1], bounds[1:]))
    return vals, idx, bad


HAVE_NUMBA = numba is not None
