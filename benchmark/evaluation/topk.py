"""Check, mask and top-k of a batch of score rows: the evaluator's hot path.

Two implementations find the same top-k values (which of several tied items is returned, and the
order of :func:`fused_topk`'s output, are unspecified: the evaluator sorts and applies the tie rule
afterwards):

* :func:`fused_topk` (numba, used when numba is importable): per row (while it sits in cache), one
  pass checks finiteness and computes block maxima, the excluded items are set to ``-inf`` and their
  blocks recomputed, and only the items of the blocks that can hold a top-k score are selected from.
  The score matrix is read from memory about once. Blocks are strided (block ``j`` holds items
  ``j, j + nb, j + 2 nb, ...``) so that the pass runs over contiguous memory and vectorises.
* :func:`topk_desc` (numpy / torch): the same two-stage idea with array operations, after the
  evaluator's separate finiteness check and masking.

Why two stages are exact: with ``k`` blocks whose maxima are ``>= t``, there are ``k`` items scored
``>= t``, so the ``k``-th largest score is ``>= t`` and no item of a block whose maximum is ``< t``
can be in the top ``k``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

numba: Any
try:  # numba ships with the test dependencies (ranx); without it the numpy path runs.
    import numba
except ImportError:  # pragma: no cover - exercised only in environments without numba
    numba = None

BLOCK = 32


def topk_desc(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Values and indices of the ``k`` largest scores per row, values descending (numpy / torch)."""
    b, n = scores.shape
    nb = n // BLOCK
    if nb < 4 * k:
        v, i = torch.topk(torch.from_numpy(scores), k, dim=1, sorted=True)
        return v.numpy(), i.numpy()
    main = nb * BLOCK
    blocks = scores[:, :main].reshape(b, nb, BLOCK)  # a view: no copy
    bmax = torch.from_numpy(blocks).amax(dim=2).numpy()
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
    _INT_MIN = np.int32(-(2**31))
    _EXP = np.int32(0x7F800000)
    _LOW = np.int32(0x7FFFFFFF)

    @numba.njit(cache=True, inline="always")
    def _key(bits: np.int32) -> np.int32:  # pragma: no cover - compiled
        # Order-preserving map of float32 bit patterns to int32 (an integer max vectorises without
        # fastmath, a float max does not). The order agrees with float order except that -0.0 sorts
        # just below +0.0, which only breaks a tie between equal values.
        return bits ^ ((bits >> 31) & _LOW)

    @numba.njit(cache=True, inline="always")
    def _block_max(bits, j, nb):  # pragma: no cover - compiled
        m = _INT_MIN
        for s in range(BLOCK):
            m = max(m, _key(bits[s * nb + j]))
        return m

    @numba.njit(cache=True)
    def _kth_largest(a, k):  # pragma: no cover - compiled
        # The k-th largest value of `a` (int32, 1 <= k <= a.size) by histogram selection: values are
        # binned into 256 buckets between their min and max and the bucket holding the k-th largest
        # is binned again. A few passes over a few hundred values, without the unpredictable
        # branches of a heap or quickselect.
        vals = a
        while True:
            if vals.size <= 16:  # finish with a partial selection sort
                v = vals.copy()
                for t in range(k):
                    best = t
                    for q in range(t + 1, v.size):
                        if v[q] > v[best]:
                            best = q
                    v[t], v[best] = v[best], v[t]
                return v[k - 1]
            mx = np.int64(vals.max())
            span = mx - np.int64(vals.min())
            if span == 0:
                return vals[0]
            shift = 0
            while (span >> shift) >= 256:
                shift += 1
            hist = np.zeros(256, np.int64)
            for q in range(vals.size):
                hist[(mx - vals[q]) >> shift] += 1
            above = 0
            sel = 0
            while above + hist[sel] < k:
                above += hist[sel]
                sel += 1
            sub = np.empty(hist[sel], np.int32)
            c = 0
            for q in range(vals.size):
                if (mx - vals[q]) >> shift == sel:
                    sub[c] = vals[q]
                    c += 1
            vals = sub
            k -= above

    # nogil instead of numba's parallel=True: rows are split over Python threads (fused_topk), which
    # needs no numba threading layer, so the kernel is safe in threaded and forked processes.
    @numba.njit(cache=True, nogil=True)
    def _fused(scores, ex_start, ex_end, ex_indices, k, out_vals, out_idx, bad):  # pragma: no cover
        b, n = scores.shape
        nb = n // BLOCK  # block j holds the items j, j + nb, j + 2 nb, ... (BLOCK of them)
        main = nb * BLOCK  # items main..n-1 (fewer than BLOCK) are checked one by one
        for r in range(b):
            row = scores[r]
            bits = row.view(np.int32)
            # One pass, contiguous inner loops (they vectorise): block maxima and the largest
            # exponent field per block (all ones <=> NaN or inf).
            bkey = np.full(nb, _INT_MIN, np.int32)
            bexp = np.zeros(nb, np.int32)
            for s in range(BLOCK):
                base = s * nb
                for j in range(nb):
                    x = bits[base + j]
                    bexp[j] = max(bexp[j], x & _EXP)
                    bkey[j] = max(bkey[j], _key(x))
            exp = bexp.max() if nb else np.int32(0)
            for i in range(main, n):
                exp = max(exp, bits[i] & _EXP)
            if exp == _EXP:
                bad[r] = True
                continue
            lo, hi = ex_start[r], ex_end[r]
            for p in range(lo, hi):
                row[ex_indices[p]] = -np.inf
            for p in range(lo, hi):
                i = ex_indices[p]
                if i < main:
                    bkey[i % nb] = _block_max(bits, i % nb, nb)
            # k blocks with maxima >= thr hold k items >= thr: nothing below thr is in the top k.
            thr = _kth_largest(bkey, k) if nb > k else _INT_MIN
            count = n - main
            for j in range(nb):
                if bkey[j] >= thr:
                    count += BLOCK
            ckey = np.empty(count, np.int32)
            cidx = np.empty(count, np.int64)
            c = 0
            for j in range(nb):
                if bkey[j] >= thr:
                    for s in range(BLOCK):
                        i = s * nb + j
                        kx = _key(bits[i])
                        if kx >= thr:
                            ckey[c] = kx
                            cidx[c] = i
                            c += 1
            for i in range(main, n):
                kx = _key(bits[i])
                if kx >= thr:
                    ckey[c] = kx
                    cidx[c] = i
                    c += 1
            # The k largest candidates, unordered: all above the k-th largest key, then ties.
            kth = _kth_largest(ckey[:c], k)
            t = 0
            for q in range(c):
                if ckey[q] > kth:
                    out_idx[r, t] = cidx[q]
                    out_vals[r, t] = row[cidx[q]]
                    t += 1
            for q in range(c):
                if t == k:
                    break
                if ckey[q] == kth:
                    out_idx[r, t] = cidx[q]
                    out_vals[r, t] = row[cidx[q]]
                    t += 1


if numba is not None:

    @numba.njit(cache=True)
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
    ptr = np.asarray(indptr, dtype=np.int64)
    if rows is None:
        return ptr[:n], ptr[1 : n + 1]
    r = np.asarray(rows, dtype=np.int64)
    return ptr[r], ptr[r + 1]


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
            ``torch.get_num_threads()``, so one setting governs scoring and evaluation.

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

    n_threads = max(1, min(torch.get_num_threads() if threads is None else threads, b // 64))
    if n_threads == 1:
        run(0, b)
    else:
        bounds = np.linspace(0, b, n_threads + 1).astype(int)
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(run, bounds[:-1], bounds[1:]))
    return vals, idx, bad


HAVE_NUMBA = numba is not None
