"""Shared machinery of the torch recommenders: epoch loop, device, threads, seeds, sampling.

Every neural model subclasses :class:`TorchRecommender` and follows the same contract as the
baselines: hyperparameters are ``__init__`` keyword arguments, ``fit(train) -> self`` trains for
``epochs`` epochs (the tuner may stop earlier through ``epoch_callback``), and ``score(users)``
returns dense float32 scores; masking, top-k and metrics belong to the shared evaluator.

Threads:
    torch's intra-op thread pool is set at ``fit`` from ``num_threads``; when it is ``None`` the
    environment variable ``REPROREC_TORCH_THREADS`` decides, else torch's own default. A sweep that
    runs ``P`` cells in parallel on a machine with ``C`` cores must keep ``threads x P <= C``
    (e.g. export ``REPROREC_TORCH_THREADS=$((C / P))``, or 1 when ``P >= C``); otherwise the cells
    fight for cores and every one of them becomes slower than running them one after another.

Seeds:
    ``random_state`` seeds the network initialisation, dropout / reparametrisation noise (a
    private torch CPU generator state, restored around every epoch so that anything else using
    torch's global generator between epochs does not change training) and the numpy generator
    used for shuffling and negative sampling. On CPU the same seed gives identical scores.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import psutil
import scipy.sparse as sp
import torch

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError, ModelError
from benchmark.models import IterativeRecommender, Param, batched

#: Environment variable giving torch's intra-op thread count when ``num_threads`` is None.
THREADS_ENV = "REPROREC_TORCH_THREADS"

#: Fraction of the available memory a configuration may plan to use before it is refused.
MEMORY_FRACTION = 0.8

COMMON_PARAMS: dict[str, Param] = {
    "epochs": Param("int", 1, 100_000),
    "batch_size": Param("int", 1, 10_000_000),
    "learning_rate": Param("float", 1e-7, 10.0),
    "device": Param("str"),
    "num_threads": Param("int", 1, 1024, nullable=True),
    "random_state": Param("int", 0, 2**63 - 1),
}


def resolve_device(device: str) -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(
            f"device={device!r} is not a torch device ('auto', 'cpu', 'cuda', 'cuda:0')"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} requested but CUDA is not available; use device='auto'")
    return dev


def resolve_threads(num_threads: int | None) -> int:
    """The intra-op thread count: ``num_threads``, else ``$REPROREC_TORCH_THREADS``, else torch's."""
    if num_threads is not None:
        return int(num_threads)
    env = os.environ.get(THREADS_ENV)
    if env:
        try:
            n = int(env)
        except ValueError as exc:
            raise ConfigError(f"{THREADS_ENV}={env!r} is not an integer") from exc
        if n < 1:
            raise ConfigError(f"{THREADS_ENV}={env!r} must be >= 1")
        return n
    return torch.get_num_threads()


def csr_to_torch(matrix: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    """A scipy CSR matrix as a torch sparse CSR float32 tensor.

    Indices are int32 when they fit: the sparse x dense kernel (MKL on CPU) works on 32-bit
    indices and would otherwise convert the int64 ones on every product.
    """
    m = sp.csr_matrix(matrix, dtype=np.float32)
    itype = np.int32 if max(m.nnz, *m.shape) < 2**31 - 1 else np.int64
    with warnings.catch_warnings():
        # torch flags CSR tensors as beta on every construction; only sparse x dense is used here
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(itype)),
            torch.from_numpy(m.indices.astype(itype)),
            torch.from_numpy(m.data.astype(np.float32)),
            size=m.shape,
            device=device,
            check_invariants=False,  # built from a canonical scipy CSR matrix
        )


def sample_negatives(
    indptr: np.ndarray, indices: np.ndarray, users: np.ndarray, n_items: int, rng: np.random.Generator
) -> np.ndarray:
    """For each entry of ``users`` one item drawn uniformly among the items the user has NOT seen.

    Exact and without rejection: with the user's positives sorted ``p_0 < p_1 < ...``, the number
    of negatives before ``p_j`` is ``q_j = p_j - j`` (non-decreasing), so the ``r``-th negative is
    ``r + #{j: q_j <= r}``. One global ``np.searchsorted`` over keys ``user * (n_items + 1) + q``
    answers every draw at once; no Python loop per interaction, no resampling.

    Args:
        indptr: CSR row pointers of the training matrix (sorted column indices per row).
        indices: CSR column indices.
        users: user index per requested negative.
        n_items: number of items.
        rng: the numpy generator to draw with.

    Returns:
        int64 item indices, one per entry of ``users``.

    Raises:
        ConfigError: when a requested user has interacted with every item (no negative exists).
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    users = np.asarray(users, dtype=np.int64)
    deg = np.diff(indptr)
    n_neg = n_items - deg[users]
    if len(users) and n_neg.min() <= 0:
        bad = int(users[np.argmin(n_neg)])
        raise ConfigError(f"user {bad} has interacted with all {n_items} items: no negative to sample")
    row = np.repeat(np.arange(len(deg), dtype=np.int64), deg)
    q = np.asarray(indices, dtype=np.int64) - (np.arange(len(row), dtype=np.int64) - indptr[row])
    keys = row * (n_items + 1) + q
    r = (rng.random(len(users)) * n_neg).astype(np.int64)
    r = np.minimum(r, n_neg - 1)  # guard against rounding of random() * n_neg up to n_neg
    k = np.searchsorted(keys, users * (n_items + 1) + r, side="right") - indptr[users]
    return r + k


def parse_layers(value: Any, name: str = "layers") -> list[int]:
    """Layer widths from a list/tuple, one int, or a comma-separated string (``"64,32,16,8"``).

    Strings exist so that a search space can offer architectures as categorical choices (optuna's
    categorical distributions take scalars only); ``""`` means no layer.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        widths = [int(value)]
    elif isinstance(value, str):
        try:
            widths = [int(x) for x in value.replace(" ", "").split(",") if x]
        except ValueError as exc:
            raise ConfigError(f"{name}={value!r} is not a comma-separated list of widths") from exc
    elif isinstance(value, (list, tuple)):
        widths = [int(x) for x in value]
    else:
        raise ConfigError(f"{name}={value!r} must be a list of ints or a string like '64,32,16,8'")
    if any(w < 1 for w in widths):
        raise ConfigError(f"{name}={value!r} has a width below 1")
    return widths


@dataclass(frozen=True)
class RowBatch:
    """Some users' training rows as sparse tensors: the input of the autoencoders.

    The rows are L2-normalised and (in training) dropped out entry-wise with rescaling by
    ``1 / (1 - p)``, as in Mult-VAE's input layer; the first encoder layer is then a sparse x dense
    product (about 20x fewer multiplications than a dense row batch on MovieLens).

    Attributes:
        x: CSR [batch, n_items] of the normalised, dropped-out rows.
        x_t: the transpose of ``x`` as CSR (used by the backward of :func:`sparse_linear`).
        rows: batch row of every interaction (int64), for gathering the likelihood terms.
        cols: item of every interaction (int64).
        counts: interactions per row (float32).
    """

    x: torch.Tensor
    x_t: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    counts: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.counts.shape[0])


def row_batch(train: sp.csr_matrix, users: np.ndarray, dropout: float, device: torch.device) -> RowBatch:
    """Build a :class:`RowBatch`; the dropout mask is drawn from torch's (seeded) CPU generator."""
    sub = sp.csr_matrix(train[np.asarray(users, dtype=np.int64)], dtype=np.float32)
    counts = np.diff(sub.indptr).astype(np.float32)
    rows = np.repeat(np.arange(sub.shape[0], dtype=np.int64), np.diff(sub.indptr))
    values = (1.0 / np.sqrt(np.maximum(counts, 1.0)))[rows].astype(np.float32)
    if dropout > 0:
        keep = (torch.rand(len(values)) >= dropout).numpy()
        values = values * keep / np.float32(1.0 - dropout)
    x = sp.csr_matrix((values, sub.indices, sub.indptr), shape=sub.shape)
    return RowBatch(
        x=csr_to_torch(x, device),
        x_t=csr_to_torch(sp.csr_matrix(x.T), device),
        rows=torch.from_numpy(rows).to(device),
        cols=torch.from_numpy(sub.indices.astype(np.int64)).to(device),
        counts=torch.from_numpy(counts).to(device),
    )


class _SparseDenseMM(torch.autograd.Function):
    """``x @ w`` for a constant sparse ``x``; the backward ``x^T @ grad`` uses a given ``x^T``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, x_t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.x_t = x_t
        return x @ w

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        return None, None, ctx.x_t @ grad


def sparse_linear(batch: RowBatch, layer: torch.nn.Linear | SparseInputLinear) -> torch.Tensor:
    """``layer`` applied to the sparse rows of ``batch`` (dense output [batch, out_features])."""
    if isinstance(layer, SparseInputLinear):
        return layer(batch)
    out = _SparseDenseMM.apply(batch.x, batch.x_t, layer.weight.t().contiguous())
    assert isinstance(out, torch.Tensor)
    return out + layer.bias if layer.bias is not None else out


class SparseInputLinear(torch.nn.Module):
    """The input layer of the autoencoders: ``x @ weight + bias`` with ``weight`` [in, out].

    The same map as :class:`torch.nn.Linear` but with the weight stored transposed, so that neither
    the sparse product ``x @ weight`` nor its weight gradient ``x^T @ grad`` needs a transposed copy
    of the ``[n_items, hidden]`` matrix (three of them per training step otherwise). Its input is a
    :class:`RowBatch` (sparse rows) or a dense ``[batch, in_features]`` tensor.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = torch.nn.Parameter(torch.empty(in_features, out_features))
        self.bias = torch.nn.Parameter(torch.empty(out_features))

    @classmethod
    def from_linear(cls, layer: torch.nn.Linear) -> SparseInputLinear:
        """The same map as ``layer`` (its initialised values, transposed)."""
        new = cls(layer.in_features, layer.out_features)
        with torch.no_grad():
            new.weight.copy_(layer.weight.t())
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
            else:
                new.bias.zero_()
        return new.to(layer.weight.device)

    def forward(self, x: RowBatch | torch.Tensor) -> torch.Tensor:
        if isinstance(x, RowBatch):
            out = _SparseDenseMM.apply(x.x, x.x_t, self.weight)
            assert isinstance(out, torch.Tensor)
            return out + self.bias
        return torch.addmm(self.bias, x, self.weight)


class _MultinomialLogLikelihood(torch.autograd.Function):
    """Per-row ``sum_i x_ui log softmax(l_u)_i = sum_{i in u} l_ui - n_u logsumexp(l_u)``, binary ``x``.

    Fused because the generic graph (``log_softmax``, a gather at the interactions, its backward
    scattering into a zeroed ``[batch, n_items]`` tensor, then the softmax backward) makes four
    passes over the dense logits; here the backward is one: ``d/dl_ui = g_u (x_ui - n_u p_ui)``.
    """

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor:
        lse = torch.logsumexp(logits, dim=1)
        picked = torch.zeros(len(counts), device=logits.device, dtype=logits.dtype)
        picked.index_add_(0, rows, logits[rows, cols])
        ctx.save_for_backward(logits, lse, rows, cols, counts)
        return picked - counts.to(logits.dtype) * lse

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        logits, lse, rows, cols, counts = ctx.saved_tensors
        out = torch.sub(logits, lse[:, None]).exp_().mul_((-grad * counts.to(grad.dtype))[:, None])
        # (row, col) pairs are unique (CSR): a plain put, no accumulation needed
        out.index_put_((rows, cols), out[rows, cols] + grad[rows])
        return out, None, None, None


def multinomial_log_likelihood(logits: torch.Tensor, batch: RowBatch) -> torch.Tensor:
    """Per-row ``sum_i x_ui log softmax(logits_u)_i`` for binary rows, gathered at the interactions."""
    out = _MultinomialLogLikelihood.apply(logits, batch.rows, batch.cols, batch.counts)
    assert isinstance(out, torch.Tensor)
    return out


def memory_available(device: torch.device) -> int:
    """Bytes a model may plan to use on ``device``."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return int(psutil.virtual_memory().available)


def minibatch_epoch(optimizer: torch.optim.Optimizer, losses: Iterable[tuple[torch.Tensor, int]]) -> float:
    """One epoch of minibatch gradient descent: the loop every SGD-trained torch model shares.

    Args:
        optimizer: steps the parameters after each minibatch.
        losses: yields, minibatch by minibatch, the loss of the next one (a scalar tensor) and its
            number of examples. It is a generator, so each loss is computed after the previous
            step (code after its ``yield`` runs after the step, e.g. counting updates).

    Returns:
        The mean loss per example, accumulated on the device (one synchronisation per epoch).
    """
    total: torch.Tensor | None = None
    n = 0
    for loss, size in losses:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        part = loss.detach() * size
        total = part if total is None else total + part
        n += size
    return 0.0 if total is None else float(total) / max(n, 1)


class TorchRecommender(IterativeRecommender):
    """Base of the torch recommenders: epoch loop, device, threads, seeds, state, scoring batches.

    Subclasses set ``param_specs`` (usually ``{**COMMON_PARAMS, ...}``) and implement:

    * ``_build(train)``: create ``self.network_`` (a ``torch.nn.Module`` on ``self.device_``) and
      the optimiser(s), from ``train`` (the :class:`InteractionMatrix`);
    * ``_train_epoch(epoch) -> float``: one pass over the data, returning the mean training loss;
    * ``_score_batch(users) -> torch.Tensor``: scores ``[len(users), n_items]`` of a user batch
      (``users`` an int64 tensor on the device), called under ``torch.no_grad`` in eval mode;
    * optionally ``_memory_estimate() -> int`` (bytes; the fit is refused with a ConfigError when it
      exceeds the available memory) and ``_prepare_scoring()`` (cache final embeddings).

    Attributes set by ``fit``: ``device_``, ``n_users_``, ``n_items_``, ``network_``, ``losses_``
    (mean training loss per epoch) and ``epochs_run_``.
    """

    param_specs: ClassVar[dict[str, Param]] = COMMON_PARAMS
    #: Users per batch in ``score``.
    score_batch_size: ClassVar[int] = 1024

    epochs: int
    batch_size: int
    learning_rate: float
    device: str
    num_threads: int | None
    random_state: int

    network_: torch.nn.Module

    # ----------------------------------------------------------------- epoch loop
    def _init_fit(self, train: InteractionMatrix) -> None:
        self.device_ = resolve_device(self.device)
        torch.set_num_threads(resolve_threads(self.num_threads))
        self.n_users_, self.n_items_ = train.n_users, train.n_items
        self.train_ = train.matrix
        self.rng_ = np.random.default_rng(self.random_state)
        self.losses_: list[float] = []
        self._scoring_ready = False
        need = self._memory_estimate()
        have = memory_available(self.device_)
        if need > MEMORY_FRACTION * have:
            raise ConfigError(
                f"{type(self).__name__}: this configuration needs about {need / 2**30:.2f} GiB on "
                f"{self.device_} but only {have / 2**30:.2f} GiB are available "
                f"({self._memory_detail()}); lower batch_size or the layer sizes"
            )
        devices = [self.device_] if self.device_.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.random_state)  # also seeds CUDA
            self._build(train)
            self.torch_rng_state_ = torch.get_rng_state()
            self.cuda_rng_state_ = torch.cuda.get_rng_state(self.device_) if devices else None

    def _fit_epoch(self, epoch: int) -> None:
        self._scoring_ready = False
        devices = [self.device_] if self.device_.type == "cuda" else []
        # the model's own generator states, so that other torch users between epochs change nothing
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.torch_rng_state_)
            if self.cuda_rng_state_ is not None:
                torch.cuda.set_rng_state(self.cuda_rng_state_, self.device_)
            self.network_.train()
            loss = float(self._train_epoch(epoch))
            self.torch_rng_state_ = torch.get_rng_state()
            if self.cuda_rng_state_ is not None:
                self.cuda_rng_state_ = torch.cuda.get_rng_state(self.device_)
        self._record_loss(loss, epoch)

    def _record_loss(self, loss: float, epoch: int) -> None:
        """Append an epoch's mean training loss; a non-finite one ends the fit with a ModelError."""
        if not math.isfinite(loss):
            last = next((x for x in reversed(self.losses_) if math.isfinite(x)), None)
            raise ModelError(
                f"{type(self).__name__}: training loss became {loss} at epoch {epoch} "
                f"(last finite loss: {last if last is None else f'{last:.6g}'}); "
                "lower learning_rate or raise regularisation"
            )
        self.losses_.append(loss)

    # ----------------------------------------------------------------- scoring
    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted("network_")
        users = np.asarray(users, dtype=np.int64)
        out = np.empty((len(users), self.n_items_), dtype=np.float32)
        was_training = self.network_.training
        self.network_.eval()
        try:
            with torch.no_grad():
                if not self._scoring_ready:
                    self._prepare_scoring()
                    self._scoring_ready = True
                for sl in batched(len(users), self.score_batch_size):
                    u = torch.from_numpy(users[sl]).to(self.device_)
                    out[sl] = self._score_batch(u).float().cpu().numpy()
        finally:
            self.network_.train(was_training)
        return out

    # ----------------------------------------------------------------- early-stopping state
    def get_state(self) -> dict[str, Any]:
        """A deep copy of the network's parameters and buffers (what scoring needs)."""
        self._check_fitted("network_")
        return {"network": copy.deepcopy(self.network_.state_dict()), "extra": self._extra_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self._check_fitted("network_")
        self.network_.load_state_dict(copy.deepcopy(state["network"]))
        self._set_extra_state(copy.deepcopy(state["extra"]))
        self._scoring_ready = False

    # ----------------------------------------------------------------- helpers for subclasses
    def _row_batch(self, users: torch.Tensor | np.ndarray, dropout: float = 0.0) -> RowBatch:
        """The training rows of ``users`` as a sparse :class:`RowBatch` (dropout only in training)."""
        idx = users.cpu().numpy() if isinstance(users, torch.Tensor) else np.asarray(users)
        return row_batch(self.train_, idx, dropout if self.network_.training else 0.0, self.device_)

    def _minibatches(self, n: int, batch_size: int | None = None) -> Iterator[np.ndarray]:
        """A fresh random permutation of ``range(n)`` cut into batches (drawn from ``rng_``)."""
        perm = self.rng_.permutation(n)
        bs = int(batch_size or self.batch_size)
        for sl in batched(n, bs):
            yield perm[sl]

    def _positive_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) int64 arrays of the training interactions, in CSR order."""
        m = self.train_
        users = np.repeat(np.arange(self.n_users_, dtype=np.int64), np.diff(m.indptr))
        return users, m.indices.astype(np.int64)

    def _bpr_triples(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every training (user, positive) pair once, in a fresh random order, with one sampled
        negative each: the epoch of a BPR model, as int64 tensors on the device."""
        users, pos = self._positive_pairs()
        perm = self.rng_.permutation(len(users))
        users, pos = users[perm], pos[perm]
        neg = self._sample_negatives(users)
        return tuple(torch.from_numpy(a).to(self.device_) for a in (users, pos, neg))  # type: ignore[return-value]

    def _sample_negatives(self, users: np.ndarray) -> np.ndarray:
        return sample_negatives(self.train_.indptr, self.train_.indices, users, self.n_items_, self.rng_)

    # ----------------------------------------------------------------- hooks
    def _build(self, train: InteractionMatrix) -> None:
        raise NotImplementedError

    def _train_epoch(self, epoch: int) -> float:
        raise NotImplementedError

    def _score_batch(self, users: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _prepare_scoring(self) -> None:
        """Called once before scoring after training changed (e.g. cache propagated embeddings)."""

    def _memory_estimate(self) -> int:
        """Bytes the configuration needs at its peak (parameters, optimiser, activations)."""
        return 0

    def _memory_detail(self) -> str:
        return "parameters, optimiser state and one batch of activations"

    def _extra_state(self) -> Any:
        """Non-network state needed for scoring (e.g. counters); deep-copied by ``get_state``."""
        return None

    def _set_extra_state(self, state: Any) -> None:
        pass


def adam(params: Any, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam with the fused kernel (one kernel per step instead of several per parameter tensor:
    about 30% of a small-batch NeuMF epoch on CPU)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)


def param_bytes(*shapes: tuple[int, ...]) -> int:
    """float32 bytes of tensors of the given shapes."""
    return 4 * sum(int(np.prod(s)) for s in shapes)
