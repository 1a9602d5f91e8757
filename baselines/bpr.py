"""BPR matrix factorisation as Dacrema et al.'s reference code trains it (numba, deterministic).

Rendle, Freudenthaler, Gantner & Schmidt-Thieme, "BPR: Bayesian Personalized Ranking from Implicit
Feedback", UAI 2009: maximise ``sum ln sigma(x_ui - x_uj)`` over sampled triples (user ``u``, an
item ``i`` of ``u``, an item ``j`` not of ``u``) with ``x_ui = <w_u, h_i>``, by stochastic gradient
ascent. The training loop follows ``MatrixFactorization_BPR_Cython`` of Ferrari Dacrema et al.
(RecSys 2019, TOIS 2021; ``MatrixFactorization/Cython/MatrixFactorization_Cython_Epoch.pyx`` in
MaurizioFD/RecSys2019_DeepLearning_Evaluation), whose tuned "MF BPR" rows the ``dacrema/*``
protocols compare against; see Milogradskii et al., "Revisiting BPR: A Replicability Study of a
Common Recommender System Baseline", RecSys 2024, on how much implementations called "BPR" differ.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numba
import numpy as np

from benchmark.data.interactions import InteractionMatrix
from benchmark.models import IterativeRecommender, ModelTags, Param

SGD_MODES = ("sgd", "adagrad", "rmsprop", "adam")
_MODE = {name: i for i, name in enumerate(SGD_MODES)}
_RMSPROP_GAMMA, _ADAM_BETA_1, _ADAM_BETA_2, _EPS = 0.995, 0.9, 0.999, 1e-8


@numba.njit(cache=True, nogil=True)
def _adaptive(
    g: float,
    cache: np.ndarray,
    m1: np.ndarray,
    m2: np.ndarray,
    r: int,
    k: int,
    mode: int,
    b1t: float,
    b2t: float,
) -> float:
    """The reference's ``adaptive_gradient``: the step direction for gradient ``g`` of entry (r, k)."""
    if mode == 1:  # adagrad
        cache[r, k] += g * g
        return g / (np.sqrt(cache[r, k]) + _EPS)
    if mode == 2:  # rmsprop
        cache[r, k] = cache[r, k] * _RMSPROP_GAMMA + (1.0 - _RMSPROP_GAMMA) * g * g
        return g / (np.sqrt(cache[r, k]) + _EPS)
    if mode == 3:  # adam, bias-corrected with beta ** t of the current batch
        m1[r, k] = m1[r, k] * _ADAM_BETA_1 + (1.0 - _ADAM_BETA_1) * g
        m2[r, k] = m2[r, k] * _ADAM_BETA_2 + (1.0 - _ADAM_BETA_2) * g * g
        return (m1[r, k] / (1.0 - b1t)) / (np.sqrt(m2[r, k] / (1.0 - b2t)) + _EPS)
    return g


@numba.njit(cache=True, nogil=True)
def _epoch(
    indptr: np.ndarray,
    indices: np.ndarray,
    eligible: np.ndarray,
    n_items: int,
    n_batches: int,
    batch_size: int,
    w: np.ndarray,
    h: np.ndarray,
    bias: np.ndarray,
    use_bias: bool,
    learning_rate: float,
    user_reg: float,
    positive_reg: float,
    negative_reg: float,
    mode: int,
    caches: tuple[np.ndarray, ...],
    bias_caches: tuple[np.ndarray, ...],
    powers: np.ndarray,
    seed: int,
) -> None:
    """One epoch: ``n_batches`` minibatches of ``batch_size`` triples, updated at each batch end."""
    # numba's nopython mode only has the legacy np.random API (one state per thread, seeded here
    # at every epoch from random_state and the epoch number)
    np.random.seed(seed)  # noqa: NPY002
    n_factors = w.shape[1]
    acc_w = np.zeros_like(w)
    acc_h = np.zeros_like(h)
    acc_b = np.zeros(bias.shape[0])
    seen_u = np.zeros(w.shape[0], dtype=np.bool_)
    seen_i = np.zeros(h.shape[0], dtype=np.bool_)
    users = np.empty(batch_size, dtype=np.int64)
    items = np.empty(2 * batch_size, dtype=np.int64)
    cw, cw1, cw2, ch, ch1, ch2 = caches
    cb, cb1, cb2 = bias_caches
    for _ in range(n_batches):
        n_u = 0
        n_i = 0
        for _s in range(batch_size):
            # uniform user among those with at least one and not all items, then a uniform
            # positive, then a uniform negative by rejection (the reference's sampleBPR_Cython)
            u = eligible[np.random.randint(0, eligible.shape[0])]  # noqa: NPY002
            start, end = indptr[u], indptr[u + 1]
            i = indices[start + np.random.randint(0, end - start)]  # noqa: NPY002
            while True:
                j = np.random.randint(0, n_items)  # noqa: NPY002
                lo, hi = start, end  # binary search in the sorted row
                while lo < hi:
                    mid = (lo + hi) // 2
                    if indices[mid] < j:
                        lo = mid + 1
                    else:
                        hi = mid
                if lo == end or indices[lo] != j:
                    break
            x = 0.0
            for k in range(n_factors):
                x += w[u, k] * (h[i, k] - h[j, k])
            if use_bias:
                x += bias[i] - bias[j]
            # d/dx ln sigma(x) = 1 / (1 + e^x); clipped so that exp never overflows
            g = 1.0 / (1.0 + np.exp(min(x, 50.0)))
            for k in range(n_factors):
                wu, hi_, hj = w[u, k], h[i, k], h[j, k]
                acc_w[u, k] += g * (hi_ - hj) - user_reg * wu
                acc_h[i, k] += g * wu - positive_reg * hi_
                acc_h[j, k] += -g * wu - negative_reg * hj
            if use_bias:
                acc_b[i] += g - positive_reg * bias[i]
                acc_b[j] += -g - negative_reg * bias[j]
            if not seen_u[u]:
                seen_u[u] = True
                users[n_u] = u
                n_u += 1
            for it in (i, j):
                if not seen_i[it]:
                    seen_i[it] = True
                    items[n_i] = it
                    n_i += 1
        b1t, b2t = powers[0], powers[1]
        # items first, then users, as the reference: gradients averaged over the batch
        for a in range(n_i):
            it = items[a]
            if use_bias:
                step = _adaptive(acc_b[it] / batch_size, cb, cb1, cb2, it, 0, mode, b1t, b2t)
                bias[it] += learning_rate * step
                acc_b[it] = 0.0
            for k in range(n_factors):
                step = _adaptive(acc_h[it, k] / batch_size, ch, ch1, ch2, it, k, mode, b1t, b2t)
                h[it, k] += learning_rate * step
                acc_h[it, k] = 0.0
            seen_i[it] = False
        for a in range(n_u):
            u = users[a]
            for k in range(n_factors):
                step = _adaptive(acc_w[u, k] / batch_size, cw, cw1, cw2, u, k, mode, b1t, b2t)
                w[u, k] += learning_rate * step
                acc_w[u, k] = 0.0
            seen_u[u] = False
        powers[0] *= _ADAM_BETA_1
        powers[1] *= _ADAM_BETA_2


class MFBPR(IterativeRecommender):
    """BPR matrix factorisation (Rendle et al., UAI 2009), trained as in Dacrema et al.'s "MF BPR".

    Scores are ``<w_u, h_i>`` (plus ``b_i`` with ``item_bias``). Each sampled triple draws a user
    uniformly among those with at least one and not every item, a positive uniformly among the
    user's items, and a negative uniformly among the items the user has not interacted with
    (items without training interactions included). Gradients of ``ln sigma(x_ui - x_uj)`` minus
    the L2 terms (``user_reg`` on ``w_u``, ``positive_reg`` on ``h_i``, ``negative_reg`` on
    ``h_j``) are summed over a minibatch of ``batch_size`` triples and applied, divided by
    ``batch_size``, at its end with plain SGD, AdaGrad, RMSProp (decay 0.995) or Adam (0.9, 0.999);
    ``batch_size=1`` is Rendle's LearnBPR. Factors start from N(0, 0.1^2).

    One epoch is ``n_users // batch_size + 1`` minibatches (about as many triples as users: the
    reference's epoch, so that its epoch counts and its search space of up to 1,500 epochs mean
    the same here); the tuner validates every few epochs and early-stops. Differences from the
    reference: the random streams (seeded from ``random_state`` and the epoch, so the result is
    deterministic and does not depend on thread count), and the optional ``item_bias`` (off
    there). Users without training interactions score 0 (or the item bias); items without
    training interactions keep their initial random factors, as in the reference, but are only
    ever pushed down as negatives.

    Args:
        factors: number of latent factors.
        epochs: maximum number of epochs.
        batch_size: triples per minibatch.
        learning_rate: step size.
        sgd_mode: ``sgd``, ``adagrad``, ``rmsprop`` or ``adam``.
        positive_reg: L2 weight on the positive item's factors (and bias).
        negative_reg: L2 weight on the negative item's factors (and bias).
        user_reg: L2 weight on the user's factors (0 in the reference's MF BPR).
        item_bias: learn an item bias ``b_i`` (Rendle's BPR-MF has none).
        random_state: seed of the initial factors and of every epoch's sampler.
    """

    tags: ClassVar[ModelTags] = ModelTags(
        test_params={"factors": 8, "epochs": 300, "batch_size": 1, "learning_rate": 0.01}
    )

    param_specs: ClassVar[dict[str, Param]] = {
        "factors": Param("int", low=1, high=10_000),
        "epochs": Param("int", low=1, high=100_000),
        "batch_size": Param("int", low=1, high=1_000_000),
        "learning_rate": Param("float", low=1e-12, high=10.0),
        "sgd_mode": Param("str", choices=SGD_MODES),
        "positive_reg": Param("float", low=0.0, high=1e6),
        "negative_reg": Param("float", low=0.0, high=1e6),
        "user_reg": Param("float", low=0.0, high=1e6),
        "item_bias": Param("bool"),
        "random_state": Param("int", low=0, high=2**63 - 1),
    }

    def __init__(
        self,
        factors: int = 64,
        epochs: int = 1500,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        sgd_mode: str = "adam",
        positive_reg: float = 1e-4,
        negative_reg: float = 1e-4,
        user_reg: float = 0.0,
        item_bias: bool = False,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.sgd_mode = sgd_mode
        self.positive_reg = positive_reg
        self.negative_reg = negative_reg
        self.user_reg = user_reg
        self.item_bias = item_bias
        self.random_state = random_state

    def _init_fit(self, train: InteractionMatrix) -> None:
        m = train.matrix.copy()
        m.sort_indices()
        self.indptr_ = m.indptr.astype(np.int64)
        self.indices_ = m.indices.astype(np.int64)
        counts = np.diff(self.indptr_)
        self.eligible_ = np.flatnonzero((counts > 0) & (counts < train.n_items)).astype(np.int64)
        self.n_items_ = train.n_items
        rng = np.random.default_rng([int(self.random_state), 0])
        f = int(self.factors)
        self.user_factors_ = rng.normal(0.0, 0.1, (train.n_users, f))
        self.item_factors_ = rng.normal(0.0, 0.1, (train.n_items, f))
        # users never sampled keep no factors: they score 0 (or the item bias) rather than noise
        self.user_factors_[counts == 0] = 0.0
        self.item_bias_ = np.zeros(train.n_items)
        self._caches = tuple(np.zeros_like(a) for a in (self.user_factors_,) * 3 + (self.item_factors_,) * 3)
        self._bias_caches = tuple(np.zeros((train.n_items, 1)) for _ in range(3))
        self._powers = np.array([_ADAM_BETA_1, _ADAM_BETA_2])

    def _fit_epoch(self, epoch: int) -> None:
        if len(self.eligible_) == 0:
            return  # nothing to rank: every user has no item or every item
        seed = int(np.random.default_rng([int(self.random_state), int(epoch)]).integers(2**31 - 1))
        _epoch(
            self.indptr_,
            self.indices_,
            self.eligible_,
            self.n_items_,
            (len(self.indptr_) - 1) // int(self.batch_size) + 1,  # the reference: n_users // batch + 1
            int(self.batch_size),
            self.user_factors_,
            self.item_factors_,
            self.item_bias_,
            bool(self.item_bias),
            float(self.learning_rate),
            float(self.user_reg),
            float(self.positive_reg),
            float(self.negative_reg),
            _MODE[self.sgd_mode],
            self._caches,
            self._bias_caches,
            self._powers,
            seed,
        )

    def get_state(self) -> Any:
        arrays = (self.user_factors_, self.item_factors_, self.item_bias_, self._powers)
        return tuple(a.copy() for a in arrays), tuple(c.copy() for c in self._caches + self._bias_caches)

    def set_state(self, state: Any) -> None:
        arrays, caches = state
        self.user_factors_, self.item_factors_, self.item_bias_, self._powers = (a.copy() for a in arrays)
        copied = tuple(c.copy() for c in caches)
        self._caches, self._bias_caches = copied[:6], copied[6:]

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted("user_factors_")
        users = np.asarray(users, dtype=np.int64)
        scores = self.user_factors_[users] @ self.item_factors_.T
        if self.item_bias:
            scores += self.item_bias_[None, :]
        return scores.astype(np.float32)
