"""SpectralCF: spectral graph convolution over the user-item bipartite graph.

Zheng, Lu, Jiang, Zhang & Yu, "Spectral Collaborative Filtering", RecSys 2018 (reference code:
lzheng21/SpectralCF).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError
from benchmark.models import ModelTags, PackMember, Param
from neural.base import (
    COMMON_PARAMS,
    MEMORY_FRACTION,
    TorchRecommender,
    csr_to_torch,
    memory_available,
    minibatch_epoch,
    param_bytes,
    resolve_device,
)
from neural.lightgcn import normalized_adjacency, symmetric_spmm
from neural.pack import MemberPack

#: ``sampling``: an epoch over every training pair, or the reference code's one step on sampled users
SAMPLINGS = ("pairs", "users")
#: ``laplacian``: whose eigenvectors make the filter (see :class:`SpectralCF`)
LAPLACIANS = ("symmetric", "random_walk")


def laplacian_eigenvectors(train: sp.csr_matrix, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest eigenvalues and their eigenvectors of ``L = I - D^-1/2 (A + I) D^-1/2``.

    ``A + I`` is the bipartite graph with self-connections and ``D`` its degrees, as in the
    reference code.

    Computed as the largest algebraic eigenpairs of the normalised adjacency with
    ``scipy.sparse.linalg.eigsh`` (starting vector from ``seed``, so results are reproducible).
    """
    s = normalized_adjacency(train, self_loops=True)
    n = s.shape[0]
    if not 1 <= k < n:
        raise ConfigError(f"SpectralCF: n_eigenvectors={k} must be in [1, {n - 1}] for a graph of {n} nodes")
    v0 = np.random.default_rng(seed).random(n)
    mu, vecs = spla.eigsh(s, k=k, which="LA", v0=v0)
    return (1.0 - mu).astype(np.float32), vecs.astype(np.float32)


def _graph_degrees(train: sp.csr_matrix) -> np.ndarray:
    """Node degrees of ``A + I`` (users first, then items; every stored entry an edge, as in
    :func:`neural.lightgcn.normalized_adjacency`)."""
    users = np.diff(train.indptr)
    items = np.bincount(train.indices, minlength=train.shape[1])
    return np.concatenate([users, items]).astype(np.float64) + 1.0


#: The last dense filters built, by graph and spectrum: a tuning study fits the same graph in every
#: trial, and one decomposition of ML-1M's 9,246-node graph takes minutes. Two entries: the tuning
#: graph and the refit one (train + validation); each holds ``4 n^2`` bytes.
_DENSE_FILTERS: OrderedDict[str, np.ndarray] = OrderedDict()
_DENSE_FILTERS_KEPT = 2


def random_walk_filter(train: sp.csr_matrix, k: int | None = None) -> np.ndarray:
    """The reference code's dense filter ``U U^T + U Lambda U^T`` (float32, ``n x n``).

    ``U, Lambda``: the eigenvectors (each scaled to unit length, as ``np.linalg.eig`` returns them)
    and eigenvalues of the random-walk Laplacian ``L_rw = I - D^-1 (A + I)`` of the bipartite
    graph with self-connections, all of them or the ``k`` with the smallest eigenvalues. ``L_rw`` is
    not symmetric, so ``U`` is not orthonormal and the filter is not ``I + L``: it weights the high
    frequencies more. ``L_rw = D^-1/2 L_sym D^1/2``, so its eigenvectors are ``D^-1/2 v`` for the
    eigenvectors ``v`` of the symmetric ``L_sym``, which are computed instead (``numpy.linalg.eigh``,
    real and exact where ``eig`` of the non-symmetric matrix is neither). Where an eigenvalue is
    repeated, any basis of its eigenspace is an eigenvector matrix, and with a non-orthonormal ``U``
    the filter depends on the basis: there the reference's (whatever LAPACK's ``geev`` returned) and
    this one (``syevd``'s) may differ.

    Results are cached for the last two graphs (by content): a tuning study decomposes once.
    """
    n = sum(train.shape)
    if k is not None and not 1 <= k < n:
        raise ConfigError(f"SpectralCF: n_eigenvectors={k} must be in [1, {n - 1}] for a graph of {n} nodes")
    csr = sp.csr_matrix(train)
    digest = hashlib.sha256()
    for part in (csr.shape, csr.indptr, csr.indices):
        digest.update(np.asarray(part, dtype=np.int64).tobytes())
    key = f"{digest.hexdigest()}:{k}"
    if key in _DENSE_FILTERS:
        _DENSE_FILTERS.move_to_end(key)
        return _DENSE_FILTERS[key]
    # numpy's eigh, not scipy's: scipy's LAPACK wrappers keep the GIL for the whole decomposition
    # (minutes), which stalls every other thread of the process (the tracking lease's heartbeat)
    mu, u = np.linalg.eigh(normalized_adjacency(csr, self_loops=True).toarray())
    if k is not None:  # the smallest eigenvalues of L_sym = I - S are the largest of S (eigh: ascending)
        mu, u = mu[n - k :], np.ascontiguousarray(u[:, n - k :])
    u /= np.sqrt(_graph_degrees(csr))[:, None]  # L_rw's eigenvectors (in place: n^2 floats each)
    u /= np.linalg.norm(u, axis=0, keepdims=True)
    u32 = u.astype(np.float32)
    del u
    filt = (u32 * (2.0 - mu).astype(np.float32)) @ u32.T  # U diag(1 + lambda) U^T, lambda = 1 - mu
    _DENSE_FILTERS[key] = filt
    while len(_DENSE_FILTERS) > _DENSE_FILTERS_KEPT:
        _DENSE_FILTERS.popitem(last=False)
    return filt


class _SpectralNet(nn.Module):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        n_layers: int,
        conv: torch.Tensor | None,
        eigvecs: torch.Tensor | None,
        eigvals: torch.Tensor | None,
        dense: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.n_users = n_users
        # the reference code draws embeddings and filters from N(0.01, 0.02)
        self.embedding = nn.Parameter(torch.empty(n_users + n_items, dim).normal_(0.01, 0.02))
        self.filters = nn.ParameterList(
            nn.Parameter(torch.empty(dim, dim).normal_(0.01, 0.02)) for _ in range(n_layers)
        )
        self.conv, self.eigvecs, self.eigvals, self.dense = conv, eigvecs, eigvals, dense

    def _filter(self, x: torch.Tensor) -> torch.Tensor:
        """``(U U^T + U diag(lambda) U^T) x``."""
        if self.dense is not None:
            return self.dense @ x
        if self.conv is not None:
            return symmetric_spmm(self.conv, x)
        assert self.eigvecs is not None and self.eigvals is not None
        return self.eigvecs @ ((1.0 + self.eigvals)[:, None] * (self.eigvecs.T @ x))

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item representations: layers 0..K concatenated (a pack of one)."""
        return _propagate_together([self])[0]


class SpectralCF(TorchRecommender):
    """SpectralCF (Zheng et al., RecSys 2018): K spectral convolutions, BPR loss.

    Each layer computes ``X <- sigmoid((U U^T + U Lambda U^T) X Theta_k)`` with ``U, Lambda`` the
    eigenvectors/values of the bipartite graph's Laplacian; the final user/item representation is
    the concatenation of layers 0..K and the score their dot product. Defaults from the paper and
    its reference code (lzheng21/SpectralCF): K=3 layers, 16-dimensional embeddings, RMSProp with
    learning rate 1e-3, batch size 1024, ``reg=0.001`` times the L2 loss of the batch's final
    representations divided by the batch size, 200 epochs, initialisation N(0.01, 0.02), graph
    with self-connections.

    Deviations from the reference code, as named options (``conf/experiment/dacrema/spectralcf_ml1m``
    pins the reference's where one exists):

    - ``sampling``: ``"pairs"`` (default) visits every training pair once per epoch with one sampled
      unseen item, as every other BPR model here. ``"users"`` is the reference code's training unit
      (``main.py`` and Dacrema et al.'s wrapper ``_run_epoch``): an "epoch" is **one** optimiser
      step on ``batch_size`` distinct users drawn uniformly among those with training items, one
      uniform positive and one uniform unseen negative each. Dacrema et al. ran up to 1,000 such
      epochs with ``min_epochs`` 400; on ML-1M one ``"pairs"`` epoch is about 175 ``"users"`` ones.
    - ``rms_init``: RMSProp's initial square average: torch's 0 (default) or TensorFlow 1's 1.0
      (the reference code's ``tf.train.RMSPropOptimizer``), which makes the first hundreds of
      steps close to plain SGD at the learning rate instead of steps of about ``3 * lr``.
    - ``min_epochs``: early stopping never stops before this epoch (Dacrema et al.'s
      ``epochs_min``; see :class:`benchmark.tuning.early_stopping.EarlyStopping`).
    - ``laplacian``: whose eigenvectors make the filter. ``"symmetric"`` (default): the symmetric
      normalised Laplacian ``L = I - D^-1/2 (A + I) D^-1/2``; with ``n_eigenvectors=None`` (all of
      them) the filter ``U (I + Lambda) U^T`` equals ``I + L`` exactly and is applied as a sparse
      matrix, no decomposition needed; with ``n_eigenvectors=k`` only the ``k`` smallest-eigenvalue
      (smoothest) eigenvectors from ``scipy.sparse.linalg.eigsh`` are used (a low-pass filter).
      ``"random_walk"``: the reference code's, which takes ``np.linalg.eig`` of the dense
      random-walk Laplacian ``I - D^-1 (A + I)`` (same eigenvalues; non-symmetric, so its unit-norm
      ``U`` is not orthonormal and the filter is a dense matrix that weights high frequencies more;
      :func:`random_walk_filter`). It costs a dense ``n x n`` decomposition (``n`` users + items:
      minutes on ML-1M, cached across the trials of a study) and a dense product per layer and
      step. It matters: on the SpectralCF ML-1M split with the reference training loop and the
      published configuration, test Recall@100 / MAP@100 were 0.3456 / 0.0933 with it against
      0.2810 / 0.0183 with ``"symmetric"`` (published: 0.3337 / 0.0689; ``reports/dacrema``).

    Args:
        embedding_size: embedding dimension C.
        n_layers: convolution layers K.
        reg: weight of the L2 loss of the batch's final user / positive / negative representations.
        n_eigenvectors: eigenvectors kept (None: all; with ``laplacian="symmetric"`` exact and sparse).
        laplacian: ``"symmetric"`` or ``"random_walk"`` (the reference code's dense filter).
        sampling: ``"pairs"`` (an epoch visits every training pair) or ``"users"`` (the reference
            code's: an epoch is one step on ``batch_size`` uniformly drawn users).
        rms_init: RMSProp's initial square average (0: torch; 1.0: TensorFlow 1, the reference).
        min_epochs: the earliest epoch at which early stopping may stop training.
        epochs, batch_size, learning_rate, device, num_threads, random_state: see
            :class:`neural.base.TorchRecommender`.
    """

    tags: ClassVar[ModelTags] = ModelTags(test_params={"epochs": 50, "batch_size": 32, "learning_rate": 0.01})

    param_specs: ClassVar[dict[str, Param]] = {
        **COMMON_PARAMS,
        "embedding_size": Param("int", 1, 100_000),
        "n_layers": Param("int", 1, 100),
        "reg": Param("float", 0.0, 100.0),
        "n_eigenvectors": Param("int", 1, 10**7, nullable=True),
        "laplacian": Param("str", choices=LAPLACIANS),
        "sampling": Param("str", choices=SAMPLINGS),
        "rms_init": Param("float", 0.0, 1e6),
        "min_epochs": Param("int", 0, 10**9),
    }

    def __init__(
        self,
        *,
        embedding_size: int = 16,
        n_layers: int = 3,
        reg: float = 0.001,
        n_eigenvectors: int | None = None,
        laplacian: str = "symmetric",
        sampling: str = "pairs",
        rms_init: float = 0.0,
        min_epochs: int = 0,
        epochs: int = 200,
        batch_size: int = 1024,
        learning_rate: float = 1e-3,
        device: str = "auto",
        num_threads: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.embedding_size = embedding_size
        self.n_layers = n_layers
        self.reg = reg
        self.n_eigenvectors = n_eigenvectors
        self.laplacian = laplacian
        self.sampling = sampling
        self.rms_init = rms_init
        self.min_epochs = min_epochs
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.device = device
        self.num_threads = num_threads
        self.random_state = random_state

    packable: ClassVar[bool] = True

    @classmethod
    def fit_pack(
        cls, members: Sequence[PackMember], train: InteractionMatrix, *, memory_bytes: int | None = None
    ) -> None:
        """Train members that share a graph filter as one pack (:class:`_SpectralPack`).

        A step's cost is the filter product of every layer (a dense ``n x n`` one with
        ``laplacian="random_walk"``), and it is linear in the embeddings: the members' embeddings are
        concatenated along the feature axis and filtered by one product per layer, everything else
        (filters Theta, batches, loss, RMSProp state, learning rate, early stopping) stays each
        member's own, so any embedding sizes, depths, batch sizes and samplings pack together
        without padding and each member ends as its solo run. Grouped by :meth:`pack_key`; a group
        is split where its members' memory would pass ``memory_bytes``.
        """
        groups: dict[tuple[Any, ...], list[PackMember]] = {}
        alone: list[PackMember] = []
        for member in members:
            model = member.model
            assert isinstance(model, SpectralCF)
            try:
                model.validate_params()
                key = model.pack_key()
            except Exception as exc:
                member.error = exc
                continue
            if key is None:
                alone.append(member)
            else:
                groups.setdefault(key, []).append(member)
        for group in groups.values():
            budget = memory_bytes
            if budget is None:
                device = resolve_device(str(getattr(group[0].model, "device", "auto")))
                budget = int(MEMORY_FRACTION * memory_available(device))
            for part in _split_by_memory(group, train, budget):
                if len(part) == 1:
                    alone.extend(part)
                else:
                    _SpectralPack(part, train).run()
        super().fit_pack(alone, train)

    def pack_key(self) -> tuple[Any, ...] | None:
        """Members with equal keys share one filter product per layer: the same filter (Laplacian and
        spectrum) on the same device. None (train alone): the symmetric low-pass filter
        (``n_eigenvectors=k``), whose eigenvectors come from an iterative solver started from each
        member's seed, and on CPU the sparse symmetric filter, whose product costs the same per
        column in a pack (``scripts/bench_packs.py``, K=8 sampled trials, one thread, ml-100k: 0.88x,
        slower; the dense ``random_walk`` filter: 1.57x on ml-100k and 1.67x on ML-1M, one wide matrix
        product instead of K narrow ones).
        """
        device = resolve_device(self.device)
        if self.laplacian == "symmetric" and (self.n_eigenvectors is not None or device.type == "cpu"):
            return None
        return (self.laplacian, self.n_eigenvectors, str(device))

    def _member_bytes(self, n: int) -> int:
        """Bytes of one pack member: embeddings, filters and their RMSProp state, one step's layer
        outputs and gradients (the shared filter is counted once, by the pack)."""
        dim, layers = int(self.embedding_size), int(self.n_layers)
        return param_bytes((n, dim, 3 + 3 * (layers + 1)), (layers, dim, dim, 3))

    def _memory_estimate(self) -> int:
        n = self.n_users_ + self.n_items_
        k = self.n_eigenvectors or 0
        # the random-walk filter while it is built: the float64 matrix, eigenvectors and LAPACK's
        # divide-and-conquer workspace (about 4 x 8 n^2 bytes)
        dense = (n, n, 8) if self.laplacian == "random_walk" else (0,)
        emb = (n, int(self.embedding_size), 4 + 2 * (int(self.n_layers) + 1))
        return param_bytes(emb, (n, k), (3 * self.train_.nnz, 5), dense)

    def _build(self, train: InteractionMatrix) -> None:
        conv = vecs = vals = dense = None
        if self.laplacian == "random_walk":
            k = None if self.n_eigenvectors is None else int(self.n_eigenvectors)
            dense = torch.from_numpy(random_walk_filter(train.matrix, k)).to(self.device_)
        elif self.n_eigenvectors is None:
            n = self.n_users_ + self.n_items_
            lap = sp.identity(n, format="csr") - normalized_adjacency(train.matrix, self_loops=True)
            conv = csr_to_torch(sp.identity(n, format="csr") + lap, self.device_)
        else:
            lam, u = laplacian_eigenvectors(train.matrix, int(self.n_eigenvectors), int(self.random_state))
            vals, vecs = torch.from_numpy(lam).to(self.device_), torch.from_numpy(u).to(self.device_)
        dims = int(self.embedding_size), int(self.n_layers)
        net = _SpectralNet(self.n_users_, self.n_items_, *dims, conv, vecs, vals, dense)
        self.network_ = net.to(self.device_)
        # the reference code's optimiser: RMSProp (TensorFlow's decay 0.9 and epsilon 1e-10)
        self.optimizer_ = torch.optim.RMSprop(
            self.network_.parameters(), lr=self.learning_rate, alpha=0.9, eps=1e-10
        )
        if self.rms_init:  # TensorFlow 1 starts the square average at 1 (torch: 0, lazily)
            for p in self.network_.parameters():
                self.optimizer_.state[p] = {
                    "step": torch.zeros(()),
                    "square_avg": torch.full_like(p, float(self.rms_init)),
                }

    def _train_epoch(self, epoch: int) -> float:
        net = self.network_
        assert isinstance(net, _SpectralNet)
        users, pos, neg = self._epoch_triples()
        bs = int(self.batch_size)

        def steps() -> Iterator[tuple[torch.Tensor, int]]:
            for s in range(0, len(users), bs):
                u, i, j = users[s : s + bs], pos[s : s + bs], neg[s : s + bs]
                user_e, item_e = net.propagate()  # the graph filters change with every step
                yield self._loss(user_e, item_e, u, i, j), len(u)

        return minibatch_epoch(self.optimizer_, steps())

    def _epoch_triples(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """An epoch's (user, positive, negative) triples, from this model's generator."""
        return self._user_batch() if self.sampling == "users" else self._bpr_triples()

    def _loss(
        self, user_e: torch.Tensor, item_e: torch.Tensor, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor
    ) -> torch.Tensor:
        """BPR loss of a batch, plus ``reg`` times the L2 loss of its final representations / batch size."""
        eu, ei, ej = user_e[u], item_e[i], item_e[j]
        loss = F.softplus((eu * ej).sum(1) - (eu * ei).sum(1)).mean()
        if self.reg > 0:
            l2 = 0.5 * (eu.pow(2).sum() + ei.pow(2).sum() + ej.pow(2).sum())
            loss = loss + self.reg * l2 / len(u)
        return loss

    def _user_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The reference code's batch (``sampling="users"``): ``batch_size`` distinct users drawn
        uniformly among those with training items, one uniform positive and one uniform unseen
        negative each."""
        indptr, indices = self.train_.indptr, self.train_.indices
        degree = np.diff(indptr)
        active = np.flatnonzero(degree)
        users = self.rng_.choice(active, size=min(int(self.batch_size), len(active)), replace=False)
        pos = indices[indptr[users] + self.rng_.integers(0, degree[users])]
        neg = self._sample_negatives(users)
        u, i, j = (torch.from_numpy(a.astype(np.int64)).to(self.device_) for a in (users, pos, neg))
        return u, i, j

    def _prepare_scoring(self) -> None:
        assert isinstance(self.network_, _SpectralNet)
        self._user_e, self._item_e = self.network_.propagate()

    def _score_batch(self, users: torch.Tensor) -> torch.Tensor:
        return self._user_e[users] @ self._item_e.T


def _split_by_memory(
    group: list[PackMember], train: InteractionMatrix, budget: int
) -> list[list[PackMember]]:
    """Consecutive parts of ``group`` whose members' bytes (:meth:`SpectralCF._member_bytes`) fit
    ``budget``."""
    n = train.n_users + train.n_items
    parts: list[list[PackMember]] = []
    used = 0
    for member in group:
        model = member.model
        assert isinstance(model, SpectralCF)
        need = model._member_bytes(n)
        if parts and used + need <= budget:
            parts[-1].append(member)
            used += need
        else:
            parts.append([member])
            used = need
    return parts


def _propagate_together(nets: Sequence[_SpectralNet]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every net's :meth:`_SpectralNet.propagate`, with one filter product per layer for all of them.

    The filter is linear and acts on each embedding column alone, so filtering the concatenation of
    the members' layer inputs gives each member its own product (the nets share one filter: see
    :meth:`SpectralCF.pack_key`); the nonlinearity and each member's Theta follow on its own columns.
    """
    xs: list[torch.Tensor] = [net.embedding for net in nets]
    outs: list[list[torch.Tensor]] = [[x] for x in xs]
    for layer in range(max(len(net.filters) for net in nets)):
        live = [k for k, net in enumerate(nets) if len(net.filters) > layer]
        filtered = nets[live[0]]._filter(torch.cat([xs[k] for k in live], dim=1))
        for k, part in zip(live, torch.split(filtered, [xs[k].shape[1] for k in live], dim=1)):
            xs[k] = torch.sigmoid(part @ nets[k].filters[layer])
            outs[k].append(xs[k])
    out = []
    for net, layers in zip(nets, outs):
        e = torch.cat(layers, dim=1)
        out.append((e[: net.n_users], e[net.n_users :]))
    return out


class _SpectralPack(MemberPack):
    """SpectralCF members trained in lock-step, one optimiser step each per pack step.

    Each member draws its epochs from its own generator (at its own batch size and sampling), steps
    its own RMSProp on its own loss (the pack's loss is their sum, whose gradient for a member's
    parameters is its own loss's), and at the end of each of its epochs records its loss and runs
    its callback exactly as under ``fit``; a member that stops leaves the pack.
    """

    models: list[SpectralCF]

    def run(self) -> None:
        """Train until every member has stopped (its callback, its epoch cap or its error)."""
        n_members = len(self.members)
        alive = list(range(n_members))
        epoch, pos = [1] * n_members, [0] * n_members
        loss_sum: list[torch.Tensor | float] = [0.0] * n_members
        triples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for i in alive:
            triples.append(self.models[i]._epoch_triples())
            self.clock.own(i)
        for model in self.models:
            model.network_.train()
        while alive:
            nets = [self.models[i].network_ for i in alive]
            embeddings = _propagate_together(nets)  # type: ignore[arg-type]
            losses, sizes = [], []
            for i, (user_e, item_e) in zip(alive, embeddings):
                model, bs = self.models[i], int(self.models[i].batch_size)
                u, p, q = (t[pos[i] : pos[i] + bs] for t in triples[i])
                losses.append(model._loss(user_e, item_e, u, p, q))
                sizes.append(len(u))
            for i in alive:
                self.models[i].optimizer_.zero_grad(set_to_none=True)
            torch.stack(losses).sum().backward()
            for i in alive:
                self.models[i].optimizer_.step()
            leaving = set()
            ended = []
            for row, i in enumerate(alive):
                loss_sum[i] = loss_sum[i] + losses[row].detach() * sizes[row]
                pos[i] += sizes[row]
                if pos[i] >= len(triples[i][0]):
                    ended.append(i)
            self.clock.shared(alive)
            for i in ended:
                if self._end_epoch(i, epoch[i], loss_sum[i], pos[i]):
                    leaving.add(i)
                else:  # its next epoch, from its own generator
                    epoch[i] += 1
                    pos[i], loss_sum[i] = 0, 0.0
                    triples[i] = self.models[i]._epoch_triples()
                    self.clock.own(i)
            alive = [i for i in alive if i not in leaving]
        for member, seconds in zip(self.members, self.clock.seconds):
            member.seconds = seconds
