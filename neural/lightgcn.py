"""LightGCN: simplified graph convolution for collaborative filtering.

He, Deng, Wang, Li, Zhang & Wang, "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation", SIGIR 2020 (reference code: gusye1234/LightGCN-PyTorch).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.interactions import InteractionMatrix
from benchmark.models import ModelTags, Param
from neural.base import COMMON_PARAMS, TorchRecommender, adam, csr_to_torch, minibatch_epoch, param_bytes


def normalized_adjacency(train: sp.csr_matrix, *, self_loops: bool = False) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` of the user-item bipartite graph (users first, then items).

    ``A = [[0, R], [R^T, 0]]`` with ``R`` the binary interaction matrix (plus the identity when
    ``self_loops``); isolated nodes get zero rows (their degree's inverse square root is taken as 0).
    """
    r = sp.csr_matrix(train, dtype=np.float64)
    r.data[:] = 1.0
    blocks: list[list[Any]] = [[None, r], [r.T, None]]
    a = sp.csr_matrix(sp.bmat(blocks))
    if self_loops:
        a = sp.csr_matrix(a + sp.identity(a.shape[0], format="csr"))
    deg = np.asarray(a.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(deg), 0.0)
    d = sp.diags(inv_sqrt)
    return sp.csr_matrix(d @ a @ d)


class SymmetricSpMM(torch.autograd.Function):
    """``A @ x`` for a constant symmetric sparse ``A``, whose backward is ``A @ grad`` again.

    torch's generic sparse matmul backward transposes and re-coalesces ``A`` on every call, which
    dominates a LightGCN epoch; the normalised adjacency is symmetric, so the same CSR matrix
    serves both directions.
    """

    @staticmethod
    def forward(ctx: Any, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adj @ grad


def symmetric_spmm(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    out = SymmetricSpMM.apply(adj, x)
    assert isinstance(out, torch.Tensor)
    return out


class LayerMean(torch.autograd.Function):
    """``(E + A E + ... + A^K E) / (K + 1)`` for a constant symmetric sparse ``A``, as one node.

    The map is linear and symmetric (``A`` is), so its backward is the same map applied to the
    incoming gradient. One node instead of K sparse products, K additions and a division: autograd
    keeps no intermediate layers and allocates no gradient buffer per layer, and the sums run in
    place (each product takes well under a millisecond on ml-100k, so such overheads matter).
    """

    @staticmethod
    def forward(ctx: Any, adj: torch.Tensor, e: torch.Tensor, n_layers: int) -> torch.Tensor:
        ctx.adj, ctx.n_layers = adj, n_layers
        return _layer_mean(adj, e, n_layers)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        return None, _layer_mean(ctx.adj, grad, ctx.n_layers), None


def _layer_mean(adj: torch.Tensor, e: torch.Tensor, n_layers: int) -> torch.Tensor:
    acc = e.clone()
    for _ in range(n_layers):
        e = adj @ e
        acc += e
    return acc.div_(n_layers + 1)


def layer_mean(adj: torch.Tensor, e: torch.Tensor, n_layers: int) -> torch.Tensor:
    out = LayerMean.apply(adj, e, n_layers)
    assert isinstance(out, torch.Tensor)
    return out


class _LightGCNNet(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, n_layers: int, adj: torch.Tensor) -> None:
        super().__init__()
        self.n_users = n_users
        self.embedding = nn.Embedding(n_users + n_items, dim)
        nn.init.normal_(self.embedding.weight, std=0.1)  # the reference code's init
        self.n_layers = n_layers
        self.adj = adj

    def propagate_all(self) -> torch.Tensor:
        """Final embeddings of every node (users, then items): the mean of layers 0..K
        (alpha_k = 1 / (K + 1))."""
        return layer_mean(self.adj, self.embedding.weight, self.n_layers)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item embeddings."""
        acc = self.propagate_all()
        return acc[: self.n_users], acc[self.n_users :]

    def bpr_loss(self, nodes: torch.Tensor, reg: float) -> torch.Tensor:
        """Mean BPR loss of a batch plus ``reg`` x the reference code's embedding penalty.

        Args:
            nodes: [3, batch] graph node ids of (user, positive item, negative item) triples
                (items are numbered after the users).
            reg: weight of ``||e0_u||^2 + ||e0_i||^2 + ||e0_j||^2`` summed over the batch, halved
                and divided by the batch size (layer-0 embeddings).
        """
        b = nodes.shape[1]
        flat = nodes.reshape(-1)
        # index_select and unbind: their backwards scatter-add and stack, no zero-filled copies
        eu, ei, ej = self.propagate_all().index_select(0, flat).view(3, b, -1).unbind(0)
        # -log sigmoid(x_ui - x_uj) = softplus(x_uj - x_ui), with x_uj - x_ui = e_u . (e_j - e_i)
        loss = F.softplus((eu * (ej - ei)).sum(1)).mean()
        if reg > 0:
            # the batch rows' squared norms as occurrence counts x the table's squared norms: no
            # gather of the rows and no scatter of their gradients
            e0 = self.embedding.weight
            counts = torch.bincount(flat, minlength=e0.shape[0]).to(e0.dtype)
            loss = loss + reg * (0.5 * torch.dot(counts, e0.pow(2).sum(1)) / b)
        return loss


class LightGCN(TorchRecommender):
    """LightGCN (He et al., SIGIR 2020): linear propagation over the normalised user-item graph.

    Embeddings ``E^(k+1) = D^-1/2 A D^-1/2 E^(k)`` (a torch sparse matmul), final embedding the mean
    of layers 0..K, score the dot product; trained with BPR on every training pair once per epoch
    (shuffled) with one uniformly sampled unseen item each, plus ``reg`` times the L2 norm of the
    batch's layer-0 embeddings divided by the batch size (as in the reference code). Defaults from
    the paper: 64-dimensional embeddings, 3 layers, Adam with learning rate 1e-3, batch size 2048,
    ``reg=1e-4``, 1000 epochs (early-stopped in practice). Scores use cached final embeddings; users
    without interactions keep their layer-0 embedding / (K + 1).

    Args:
        embedding_size: embedding dimension.
        n_layers: propagation layers K.
        reg: L2 regularisation weight on the layer-0 embeddings of a batch.
        epochs, batch_size, learning_rate, device, num_threads, random_state: see
            :class:`neural.base.TorchRecommender`.
    """

    tags: ClassVar[ModelTags] = ModelTags(
        test_params={"embedding_size": 16, "epochs": 50, "batch_size": 32, "learning_rate": 0.01}
    )

    param_specs: ClassVar[dict[str, Param]] = {
        **COMMON_PARAMS,
        "embedding_size": Param("int", 1, 100_000),
        "n_layers": Param("int", 0, 100),
        "reg": Param("float", 0.0, 100.0),
    }

    def __init__(
        self,
        *,
        embedding_size: int = 64,
        n_layers: int = 3,
        reg: float = 1e-4,
        epochs: int = 1000,
        batch_size: int = 2048,
        learning_rate: float = 1e-3,
        device: str = "auto",
        num_threads: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.embedding_size = embedding_size
        self.n_layers = n_layers
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.device = device
        self.num_threads = num_threads
        self.random_state = random_state

    def _memory_estimate(self) -> int:
        n = self.n_users_ + self.n_items_
        # embeddings x 4 (weights, grads, Adam), K+2 propagated copies, adjacency (2 nnz, coo)
        return param_bytes(
            (n, int(self.embedding_size), 4 + int(self.n_layers) + 2), (2 * self.train_.nnz, 5)
        )

    def _build(self, train: InteractionMatrix) -> None:
        adj = csr_to_torch(normalized_adjacency(train.matrix), self.device_)
        self.network_ = _LightGCNNet(
            self.n_users_, self.n_items_, int(self.embedding_size), int(self.n_layers), adj
        ).to(self.device_)
        self.optimizer_ = adam(self.network_.parameters(), lr=self.learning_rate)

    def _train_epoch(self, epoch: int) -> float:
        net = self.network_
        assert isinstance(net, _LightGCNNet)
        users, pos, neg = self._bpr_triples()
        # node ids: items follow the users in the graph; one gather (and one scatter back) per step
        nodes = torch.stack([users, pos + self.n_users_, neg + self.n_users_])
        bs = int(self.batch_size)
        steps = (
            (net.bpr_loss(nodes[:, s : s + bs], float(self.reg)), nodes[:, s : s + bs].shape[1])
            for s in range(0, len(users), bs)
        )
        return minibatch_epoch(self.optimizer_, steps)

    def _prepare_scoring(self) -> None:
        assert isinstance(self.network_, _LightGCNNet)
        self._user_e, self._item_e = self.network_.propagate()

    def _score_batch(self, users: torch.Tensor) -> torch.Tensor:
        return self._user_e[users] @ self._item_e.T
