"""Sparse, blocked, top-k similarity machinery shared by the neighbourhood and graph baselines.

The item x item (or user x user) similarity of a large dataset never exists as a dense matrix: it is
computed one block of *target* rows at a time as a sparse product (scipy), densified for that block
only, turned into similarities with broadcasting, pruned to its ``top_k`` largest entries per row
with :func:`numpy.partition` (no Python loop per row), and the kept entries are assembled into a
CSR matrix. Peak memory is a few dense blocks of about ``DEFAULT_BLOCK_ELEMENTS`` floats plus the
result (``top_k`` entries per row); the result does not depend on the block size.

Conventions: :func:`topk_similarity` returns ``S`` with row ``t`` holding the ``top_k`` neighbours
of column ``t`` of the input, i.e. ``S[t, c] = sim(target t, candidate c)``. Self-similarity is
excluded (the diagonal is 0) and exact zeros are never stored.

The similarity variants, the shrink term, ``normalize`` and the TF-IDF / BM25 feature weighting
follow Dacrema et al.'s reference implementation (``Compute_Similarity_Python`` and
``IR_feature_weighting`` of "Are we really making much progress?", RecSys 2019, and TOIS 2021),
which is the configuration space whose tuned results the suite compares against.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from benchmark.models import Recommender

#: Similarity names accepted by :func:`topk_similarity`.
SIMILARITIES = ("cosine", "adjusted", "asymmetric", "jaccard", "dice", "tversky")
#: Similarities computed on the binary pattern (set overlaps), as in Dacrema et al.
SET_SIMILARITIES = ("jaccard", "dice", "tversky")
#: Feature-weighting names accepted by :func:`weight_features`.
FEATURE_WEIGHTINGS = ("none", "TF-IDF", "BM25")
#: Target number of elements of one dense block (64 MiB of float32).
DEFAULT_BLOCK_ELEMENTS = 1 << 24

BlockFn = Callable[[int, int], "sp.csr_matrix | np.ndarray"]
Transform = Callable[[np.ndarray, int, int], None]


# ---------------------------------------------------------------------------- feature weighting
def tf_idf(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """TF-IDF weighting with rows as documents and columns as terms.

    ``w = sqrt(x) * log(n_rows / (1 + df(column)))`` for every stored entry, as in Dacrema et al.'s
    ``TF_IDF``.

    Raises:
        ValueError: when the matrix has negative values (no square root).
    """
    m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    if m.nnz and m.data.min() < 0:
        raise ValueError(f"TF-IDF needs non-negative values; found {int((m.data < 0).sum())} negative")
    df = np.bincount(m.indices, minlength=m.shape[1])
    idf = np.log(m.shape[0] / (1.0 + df)).astype(np.float32)
    m.data = np.sqrt(m.data) * idf[m.indices]
    return m


def bm25(matrix: sp.csr_matrix, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """Okapi BM25 weighting with rows as documents and columns as terms (Robertson et al., 1995).

    ``w = x (k1 + 1) / (k1 ((1 - b) + b len(row) / mean len) + x) * log(n_rows / (1 + df(column)))``,
    as in Dacrema et al.'s ``okapi_BM_25`` (document length = row sum).
    """
    m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    n_rows = m.shape[0]
    df = np.bincount(m.indices, minlength=m.shape[1])
    idf = np.log(n_rows / (1.0 + df))
    row_sums = np.asarray(m.sum(axis=1), dtype=np.float64).ravel()
    mean_len = row_sums.mean() if n_rows else 0.0
    rel_len = row_sums / mean_len if mean_len > 0 else np.zeros_like(row_sums)
    length_norm = (1.0 - b) + b * rel_len
    rows = np.repeat(np.arange(n_rows), np.diff(m.indptr))
    denominator = k1 * length_norm[rows] + m.data
    denominator[denominator == 0] = 1e-9
    m.data = (m.data * (k1 + 1.0) / denominator * idf[m.indices]).astype(np.float32)
    return m


def weight_features(matrix: sp.csr_matrix, feature_weighting: str) -> sp.csr_matrix:
    """Weight a users x items matrix with items as documents and users as terms.

    This is how Dacrema et al.'s ItemKNN-CF and UserKNN-CF apply ``BM25`` / ``TF-IDF``
    (``weighting(URM.T).T``): the IDF of a user shrinks the weight of very active users and BM25's
    length normalisation that of very popular items.

    Args:
        matrix: users x items CSR.
        feature_weighting: ``none``, ``TF-IDF`` or ``BM25``.
    """
    if feature_weighting == "none":
        return sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    if feature_weighting == "TF-IDF":
        return sp.csr_matrix(tf_idf(sp.csr_matrix(matrix.T)).T)
    if feature_weighting == "BM25":
        return sp.csr_matrix(bm25(sp.csr_matrix(matrix.T)).T)
    raise ValueError(f"unknown feature_weighting {feature_weighting!r}; expected one of {FEATURE_WEIGHTINGS}")


def centre_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Subtract from every stored value the mean of the stored values of its row.

    With users on rows this is the user-mean centring of the adjusted cosine (Sarwar et al., 2001).
    Empty rows stay empty; values equal to the mean become explicit zeros (harmless).
    """
    m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    counts = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0]), counts)
    sums = np.bincount(rows, weights=m.data, minlength=m.shape[0])
    means = np.divide(sums, counts, out=np.zeros(m.shape[0]), where=counts > 0)
    m.data -= means[rows].astype(np.float32)
    return m


def binarize(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """The same sparsity pattern with every stored value 1.0 (stored zeros dropped first)."""
    m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    m.eliminate_zeros()
    m.data[:] = 1.0
    return m


# ---------------------------------------------------------------------------- blocked top-k
def default_block_size(n_cols: int, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> int:
    """Rows per block so that one dense block holds about ``block_elements`` values."""
    return max(1, block_elements // max(1, n_cols))


def _topk_rows(dense: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column and value of the ``top_k`` largest non-zero entries of each row of ``dense``.

    Ties at the k-th largest value keep the lowest column indices, so the result is fully
    determined by the values. ``np.partition`` finds each row's k-th largest value (no index
    array, no full sort); only entries tied with it need ranking.
    """
    n_cols = dense.shape[1]
    if top_k >= n_cols:
        r, c = np.nonzero(dense)
        return r, c, dense[r, c]
    kth = np.partition(dense, n_cols - top_k, axis=1)[:, n_cols - top_k]
    above = dense > kth[:, None]
    need = top_k - np.count_nonzero(above, axis=1)  # tied entries still to take, per row
    above &= dense != 0
    r, c = np.nonzero(above)
    # Tied entries equal to a non-zero threshold: keep the first ``need`` of each row.
    tied = dense == kth[:, None]
    tied[kth == 0] = False
    eq_r, eq_c = np.nonzero(tied)
    first = np.searchsorted(eq_r, eq_r, side="left")
    keep = (np.arange(len(eq_r)) - first) < need[eq_r]
    r = np.concatenate([r, eq_r[keep]])
    c = np.concatenate([c, eq_c[keep]])
    return r, c, dense[r, c]


def blocked_topk(
    block_fn: BlockFn,
    n_rows: int,
    n_cols: int,
    top_k: int,
    *,
    transform: Transform | None = None,
    exclude_diagonal: bool = True,
    block_size: int | None = None,
) -> sp.csr_matrix:
    """Assemble a ``n_rows x n_cols`` CSR keeping the ``top_k`` largest entries of every row.

    Args:
        block_fn: ``block_fn(start, stop)`` returns rows ``start:stop`` of the full matrix, sparse
            or dense, shape ``[stop - start, n_cols]``. Only one block exists at a time.
        transform: ``transform(dense, start, stop)`` edits the densified block in place before
            selection (cheaper on the dense block than on sparse values: no gathers).
        n_rows: number of rows of the full matrix.
        n_cols: number of columns.
        top_k: entries kept per row (exact zeros are never kept, so rows may hold fewer).
        exclude_diagonal: set entry ``(t, t)`` to 0 before selecting (no self-similarity).
        block_size: rows per block; default :func:`default_block_size`. The result does not
            depend on it.

    Returns:
        float32 CSR with sorted indices. Ties at the k-th value keep the lowest column indices.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    step = default_block_size(n_cols) if block_size is None else int(block_size)
    if step < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    rows, cols, vals = [], [], []
    # One dense buffer reused by every block: fresh 64 MiB arrays per block cost page faults.
    buffer = np.empty((min(step, n_rows), n_cols), dtype=np.float32)
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        block = block_fn(start, stop)
        if block.shape != (stop - start, n_cols):
            raise ValueError(f"block_fn({start}, {stop}) returned shape {block.shape}")
        dense = buffer[: stop - start]
        if sp.issparse(block):
            dense.fill(0.0)
            sp.csr_matrix(block, dtype=np.float32).toarray(out=dense)
        else:
            dense[...] = block
        if transform is not None:
            transform(dense, start, stop)
        if exclude_diagonal:
            diag = np.arange(start, min(stop, n_cols))
            dense[diag - start, diag] = 0.0
        r, c, v = _topk_rows(dense, top_k)
        rows.append(r.astype(np.int64) + start)
        cols.append(c.astype(np.int64))
        vals.append(v.astype(np.float32))
        del dense, block
    if rows:
        r_all, c_all, v_all = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    else:
        r_all = c_all = np.zeros(0, np.int64)
        v_all = np.zeros(0, np.float32)
    out = sp.csr_matrix((v_all, (r_all, c_all)), shape=(n_rows, n_cols), dtype=np.float32)
    out.sort_indices()
    return out


def topk_per_column(matrix: sp.csr_matrix, top_k: int) -> sp.csr_matrix:
    """Keep the ``top_k`` largest non-zero entries of every column (Dacrema's ``similarityMatrixTopK``).

    Vectorised: entries are sorted by (column, value descending, row) and ranked within their
    column, so ties keep the lower row index.
    """
    coo = sp.coo_matrix(matrix, dtype=np.float32)
    nz = coo.data != 0
    row, col, data = coo.row[nz], coo.col[nz], coo.data[nz]
    order = np.lexsort((row, -data, col))
    row, col, data = row[order], col[order], data[order]
    counts = np.bincount(col, minlength=coo.shape[1])
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(len(col)) - starts[col]
    keep = rank < top_k
    out = sp.csr_matrix((data[keep], (row[keep], col[keep])), shape=coo.shape, dtype=np.float32)
    out.sort_indices()
    return out


# ---------------------------------------------------------------------------- similarities
def _column_sums_of_squares(matrix: sp.csr_matrix) -> np.ndarray:
    sq = matrix.copy()
    sq.data = sq.data.astype(np.float64) ** 2
    return np.asarray(sq.sum(axis=0), dtype=np.float64).ravel()


def _to_similarity(
    dots: np.ndarray,
    target_sq: np.ndarray,
    cand_sq: np.ndarray,
    scratch: np.ndarray,
    *,
    similarity: str,
    shrink: float,
    normalize: bool,
    asymmetric_alpha: float,
    tversky_alpha: float,
    tversky_beta: float,
) -> None:
    """Turn a dense block of dot products into similarities, in place.

    ``dots[r, c]`` is the dot product of target ``r`` and candidate ``c``; ``target_sq`` and
    ``cand_sq`` their sums of squares. Works on the dense block with broadcasting (no gathers);
    ``scratch`` (same shape) receives the denominator. Where a denominator is 0 the dot product is
    0 too (an empty column), and the similarity stays 0.
    """
    t, c = target_sq[:, None], cand_sq[None, :]
    if similarity in ("cosine", "adjusted", "asymmetric"):
        if not normalize:
            # As in Dacrema et al.: no norms, only a uniform division by shrink (no ranking change).
            if shrink:
                dots /= np.float32(shrink)
            return
        if similarity == "asymmetric":
            # Empty columns have only zero dot products: base 1 avoids 0 ** negative.
            t_pow = np.power(np.where(target_sq > 0, target_sq, 1.0), asymmetric_alpha)
            c_pow = np.power(np.where(cand_sq > 0, cand_sq, 1.0), 1.0 - asymmetric_alpha)
            np.multiply(t_pow[:, None], c_pow[None, :], out=scratch)
        else:
            np.multiply(np.sqrt(t), np.sqrt(c), out=scratch)
        scratch += np.float32(shrink)
    elif similarity == "jaccard":
        np.negative(dots, out=scratch)
        scratch += t
        scratch += c + np.float32(shrink)
    elif similarity == "dice":
        # 2|A∩B| / (|A| + |B|); Dacrema et al. omit the 2, a uniform factor that changes no ranking.
        dots *= np.float32(2.0)
        np.add(t, c + np.float32(shrink), out=scratch)
    elif similarity == "tversky":
        # d + a (n_t - d) + b (n_c - d) = (1 - a - b) d + a n_t + b n_c
        np.multiply(dots, np.float32(1.0 - tversky_alpha - tversky_beta), out=scratch)
        scratch += np.float32(tversky_alpha) * t
        scratch += np.float32(tversky_beta) * c + np.float32(shrink)
    else:
        raise ValueError(f"unknown similarity {similarity!r}; expected one of {SIMILARITIES}")
    np.divide(dots, scratch, out=dots, where=scratch != 0)


def topk_similarity(
    matrix: sp.csr_matrix,
    *,
    top_k: int,
    similarity: str = "cosine",
    shrink: float = 0.0,
    normalize: bool = True,
    asymmetric_alpha: float = 0.5,
    tversky_alpha: float = 1.0,
    tversky_beta: float = 1.0,
    block_size: int | None = None,
) -> sp.csr_matrix:
    """Top-k similarity between the columns of ``matrix``, computed in sparse blocks.

    For columns ``t`` (target) and ``c`` (candidate) with dot product ``d = x_t . x_c`` and sums of
    squares ``n_t = x_t . x_t``, ``n_c`` (set sizes on binary data):

    * ``cosine``: ``d / (sqrt(n_t) sqrt(n_c) + shrink)``;
    * ``adjusted``: cosine of a matrix the caller has centred (see :func:`centre_rows`);
    * ``asymmetric``: ``d / (n_t^alpha n_c^(1 - alpha) + shrink)`` (Aiolli, 2013); alpha = 0.5 is
      the cosine;
    * ``jaccard``: ``d / (n_t + n_c - d + shrink)``;
    * ``dice``: ``2 d / (n_t + n_c + shrink)``;
    * ``tversky``: ``d / (d + a (n_t - d) + b (n_c - d) + shrink)`` (Tversky, 1977).

    ``normalize=False`` drops the denominator of the cosine family (dot products divided by
    ``shrink`` when it is non-zero, as in Dacrema et al.); the set similarities always use theirs.
    Jaccard, Dice and Tversky are computed on the binary pattern of ``matrix``. A zero denominator
    gives similarity 0.

    Args:
        matrix: ``n_rows x n_cols`` sparse matrix; similarities are between its columns.
        top_k: neighbours kept per target column.
        similarity: one of :data:`SIMILARITIES`.
        shrink: added to the denominator; damps similarities supported by few co-occurrences.
        normalize: cosine family only, see above.
        asymmetric_alpha: exponent of the asymmetric cosine.
        tversky_alpha: Tversky weight of the target's own features.
        tversky_beta: Tversky weight of the candidate's own features.
        block_size: target columns per block (the result does not depend on it).

    Returns:
        float32 CSR ``S`` of shape ``[n_cols, n_cols]``: row ``t`` holds the ``top_k`` largest
        similarities of target ``t`` (``S[t, c] = sim(t, c)``), diagonal 0.
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"unknown similarity {similarity!r}; expected one of {SIMILARITIES}")
    x = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    x.eliminate_zeros()  # stored zeros (e.g. ratings equal to the user mean) carry no signal
    if similarity in SET_SIMILARITIES:
        x = binarize(x)
    xt = sp.csr_matrix(x.T)  # n_cols x n_rows: row slices are cheap
    sq = _column_sums_of_squares(x).astype(np.float32)
    n = x.shape[1]
    step = default_block_size(n) if block_size is None else int(block_size)
    scratch = np.empty((min(step, n), n), dtype=np.float32)

    def block(start: int, stop: int) -> sp.csr_matrix:
        return sp.csr_matrix(xt[start:stop] @ x)  # dot products [targets, candidates]

    def transform(dots: np.ndarray, start: int, stop: int) -> None:
        _to_similarity(
            dots,
            sq[start:stop],
            sq,
            scratch[: stop - start],
            similarity=similarity,
            shrink=float(shrink),
            normalize=normalize,
            asymmetric_alpha=float(asymmetric_alpha),
            tversky_alpha=float(tversky_alpha),
            tversky_beta=float(tversky_beta),
        )

    return blocked_topk(block, n, n, int(top_k), transform=transform, block_size=step)


class ItemSimilarityRecommender(Recommender):
    """Base of the item-item models (ItemKNN, P3alpha, RP3beta): scores are ``X[users] @ W``.

    Subclasses fit ``profiles_`` (users x items, the weighted interactions) and ``similarity_``
    (items x items, column ``j`` holding the neighbours that vote for item ``j``).
    """

    profiles_: sp.csr_matrix
    similarity_: sp.csr_matrix

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted("similarity_")
        users = np.asarray(users, dtype=np.int64)
        return np.asarray((self.profiles_[users] @ self.similarity_).toarray(), dtype=np.float32)
