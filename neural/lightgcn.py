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
from benchmark.models import Param
from neural.base import COMMON_PARAMS, TorchRecommender, adam, csr_to_torch, param_bytes


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


class _LightGCNNet(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, n_layers: int, adj: torch.Tensor) -> None:
        super().__init__()
        self.n_users = n_users
        self.embedding = nn.Embedding(n_users + n_items, dim)
        nn.init.normal_(self.embedding.weight, std=0.1)  # the reference code's init
        self.n_layers = n_layers
        self.adj = adj

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item embeddings: the mean of layers 0..K (alpha_k = 1 / (K + 1))."""
        e = self.embedding.weight
        acc = e
        for _ in range(self.n_layers):
            e = symmetric_spmm(self.adj, e)
            acc = acc + e
        acc = acc / (self.n_layers + 1)
        return acc[: self.n_users], acc[self.n_users :]


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
        total = torch.zeros((), device=self.device_)
        bs = int(self.batch_size)
        for s in range(0, len(users), bs):
            u, i, j = users[s : s + bs], pos[s : s + bs], neg[s : s + bs]
            user_e, item_e = net.propagate()
            eu, ei, ej = user_e[u], item_e[i], item_e[j]
            loss = F.softplus((eu * ej).sum(1) - (eu * ei).sum(1)).mean()  # -log sigmoid(pos - neg)
            if self.reg > 0:
                e0 = net.embedding.weight
                reg = (
                    0.5
                    * (
                        e0[u].pow(2).sum()
                        + e0[self.n_users_ + i].pow(2).sum()
                        + e0[self.n_users_ + j].pow(2).sum()
                    )
                    / len(u)
                )
                loss = loss + self.reg * reg
            self.optimizer_.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer_.step()
            total += loss.detach() * len(u)
        return float(total) / max(len(users), 1)

    def _prepare_scoring(self) -> None:
        assert isinstance(self.network_, _LightGCNNet)
        self._user_e, self._item_e = self.network_.propagate()

    def _score_batch(self, users: torch.Tensor) -> torch.Tensor:
        return self._user_e[users] @ self._item_e.T
