"""Neural Collaborative Filtering: GMF, MLP and their fusion NeuMF.

He, Liao, Zhang, Nie, Hu & Chua, "Neural Collaborative Filtering", WWW 2017 (reference code:
hexiangnan/neural_collaborative_filtering).

Full-ranking scoring avoids pushing ``batch x n_items`` pairs through generic modules: the output
layer is linear, so the GMF part is one matmul ``(p_u * h_gmf) @ Q^T``; the MLP's first layer on
``[p_u, q_i]`` splits into ``W_u p_u + W_i q_i`` with ``W_i Q`` computed once for all items, and only
the remaining (small) layers run on ``[users x items, width]`` chunks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError
from benchmark.models import ModelTags, Param
from neural.base import COMMON_PARAMS, TorchRecommender, adam, minibatch_epoch, param_bytes, parse_layers

#: Elements of the MLP's hidden activations materialised at once while scoring (1 MiB float32):
#: small enough to stay in the CPU's cache between the layers (chunks of ~64 MiB made a full
#: ranking cost more than a training epoch, mostly in page faults and memory traffic).
SCORE_CHUNK_ELEMENTS = 2**18


class _NCF(nn.Module):
    """GMF and/or MLP towers with one linear output on their concatenation."""

    def __init__(
        self, n_users: int, n_items: int, factors: int, layers: list[int], use_gmf: bool, use_mlp: bool
    ) -> None:
        super().__init__()
        self.use_gmf, self.use_mlp = use_gmf, use_mlp
        width = 0
        if use_gmf:
            self.gmf_user = nn.Embedding(n_users, factors)
            self.gmf_item = nn.Embedding(n_items, factors)
            width += factors
        if use_mlp:
            if layers[0] % 2:
                raise ConfigError(f"layers[0]={layers[0]} must be even: it is user + item embedding size")
            half = layers[0] // 2
            self.mlp_user = nn.Embedding(n_users, half)
            self.mlp_item = nn.Embedding(n_items, half)
            self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(layers))
            width += layers[-1]
        self.out = nn.Linear(width, 1)
        # the reference code: embeddings ~ N(0, 0.01), Glorot-uniform dense layers, Lecun output
        for name, p in self.named_parameters():
            if "gmf_" in name or "mlp_user" in name or "mlp_item" in name:
                nn.init.normal_(p, std=0.01)
            elif name.endswith("weight"):
                nn.init.xavier_uniform_(p)
            else:
                nn.init.zeros_(p)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of (user, item) pairs: ``out([p_u * q_i, MLP([p_u, q_i])])``.

        Written without concatenations: the output layer is the sum of its GMF and MLP halves
        (two matrix-vector products) and the first MLP layer on ``[p_u, q_i]`` is ``W_u p_u +
        W_i q_i``; rows are gathered with ``index_select`` (its backward is one scatter-add).
        Concatenating and splitting the small per-batch tensors cost about a tenth of a step.
        """
        w = self.out.weight[0]
        logits = self.out.bias.expand(len(users))
        offset = 0
        if self.use_gmf:
            offset = self.gmf_user.embedding_dim
            g = self.gmf_user.weight.index_select(0, users) * self.gmf_item.weight.index_select(0, items)
            logits = torch.addmv(logits, g, w[:offset])
        if self.use_mlp:
            first = self._linear(0)
            half = self.mlp_user.embedding_dim
            h = torch.addmm(first.bias, self.mlp_user.weight.index_select(0, users), first.weight[:, :half].T)
            h = F.relu(torch.addmm(h, self.mlp_item.weight.index_select(0, items), first.weight[:, half:].T))
            for layer in self.mlp[1:]:
                h = F.relu(layer(h))
            logits = torch.addmv(logits, h, w[offset:])
        return logits

    def score_all(self, users: torch.Tensor, item_proj: torch.Tensor | None) -> torch.Tensor:
        """Logits of every item for ``users`` without materialising generic pair batches."""
        w = self.out.weight[0]
        n_items = self.gmf_item.num_embeddings if self.use_gmf else self.mlp_item.num_embeddings
        logits = self.out.bias.expand(len(users), n_items).clone()
        offset = 0
        if self.use_gmf:
            k = self.gmf_user.embedding_dim
            logits += (self.gmf_user(users) * w[:k]) @ self.gmf_item.weight.T
            offset = k
        if self.use_mlp:
            assert item_proj is not None
            first = self._linear(0)
            half = self.mlp_user.embedding_dim
            user_proj = self.mlp_user(users) @ first.weight[:, :half].T + first.bias  # [B, h1]
            w_mlp = w[offset:]
            widest = max(self._linear(k).out_features for k in range(len(self.mlp)))
            step = max(1, SCORE_CHUNK_ELEMENTS // (n_items * widest))
            for s in range(0, len(users), step):
                h = torch.add(user_proj[s : s + step, None, :], item_proj[None, :, :]).relu_()  # [b, n, h1]
                for layer in self.mlp[1:]:
                    h = layer(h).relu_()
                out = logits[s : s + step].view(-1)
                out.addmv_(h.view(len(out), -1), w_mlp)
        return logits

    def _linear(self, k: int) -> nn.Linear:
        layer = self.mlp[k]
        assert isinstance(layer, nn.Linear)
        return layer

    def item_projection(self) -> torch.Tensor | None:
        if not self.use_mlp:
            return None
        half = self.mlp_user.embedding_dim
        return self.mlp_item.weight @ self._linear(0).weight[:, half:].T  # [n_items, h1]


class NeuMF(TorchRecommender):
    """NeuMF: generalised matrix factorisation fused with an MLP (He et al., WWW 2017).

    Trained with the paper's pointwise log loss on every training interaction plus ``n_negatives``
    items sampled uniformly among the user's unseen items (re-drawn each epoch, vectorised).
    Defaults from the paper / reference code: ``factors=8`` (GMF predictive factors),
    ``layers=[64, 32, 16, 8]`` (MLP tower; user and item embeddings of size 32), 4 negatives per
    positive, Adam with learning rate 1e-3, batch size 256, no regularisation, 100 epochs.

    With ``pretrain=True`` the paper's pre-training is used: a GMF and an MLP are first trained
    for ``pretrain_epochs`` epochs each (Adam), NeuMF is initialised from their weights with the
    output layer ``[alpha * h_GMF, (1 - alpha) * h_MLP]`` (alpha = 0.5) and then trained with
    vanilla SGD at ``learning_rate``, as in Section 3.4.1 of the paper (the reference code's README
    runs the pre-training with 20 epochs each: the ``pretrain_epochs`` default).

    Users without training interactions get the scores of their (untrained) embeddings.

    Args:
        factors: GMF embedding size (predictive factors).
        layers: MLP layer widths (a list or ``"64,32,16,8"``); ``layers[0]`` is the concatenated
            user+item embedding size.
        n_negatives: sampled negatives per positive.
        reg: L2 penalty on the embeddings of a batch (the reference code's ``reg_mf``/``reg_layers``).
        pretrain: pre-train GMF and MLP and initialise NeuMF from them (then SGD).
        pretrain_epochs: epochs of each pre-training run.
        epochs, batch_size, learning_rate, device, num_threads, random_state: see
            :class:`neural.base.TorchRecommender`.
    """

    tags: ClassVar[ModelTags] = ModelTags(
        test_params={"layers": "16,8", "epochs": 30, "batch_size": 64, "learning_rate": 0.01}
    )

    use_gmf: ClassVar[bool] = True
    use_mlp: ClassVar[bool] = True
    param_specs: ClassVar[dict[str, Param]] = {
        **COMMON_PARAMS,
        "factors": Param("int", 1, 100_000),
        "layers": Param("any"),
        "n_negatives": Param("int", 1, 1000),
        "reg": Param("float", 0.0, 100.0),
        "pretrain": Param("bool"),
        "pretrain_epochs": Param("int", 1, 100_000),
    }

    def __init__(
        self,
        *,
        factors: int = 8,
        layers: tuple[int, ...] | list[int] | str = "64,32,16,8",
        n_negatives: int = 4,
        reg: float = 0.0,
        pretrain: bool = False,
        pretrain_epochs: int = 20,
        epochs: int = 100,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        device: str = "auto",
        num_threads: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.layers = layers
        self.n_negatives = n_negatives
        self.reg = reg
        self.pretrain = pretrain
        self.pretrain_epochs = pretrain_epochs
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.device = device
        self.num_threads = num_threads
        self.random_state = random_state

    def _layers(self) -> list[int]:
        layers = parse_layers(self.layers) if self.use_mlp else []
        if self.use_mlp and not layers:
            raise ConfigError(f"{type(self).__name__}: layers={self.layers!r} needs at least one width")
        return layers

    def _memory_estimate(self) -> int:
        n = self.n_users_ + self.n_items_
        layers = self._layers()
        emb = n * ((self.factors if self.use_gmf else 0) + (layers[0] if layers else 0))
        dense = sum(a * b for a, b in itertools.pairwise(layers))
        widest = max(layers) if layers else 1
        # parameters x 4 (weights, grads, Adam moments); scoring chunk; pair arrays of one epoch
        pairs = self.train_.nnz * (1 + int(self.n_negatives)) * 3 * 2  # int64 user/item/label
        return param_bytes((4 * (emb + dense),), (2 * SCORE_CHUNK_ELEMENTS,), (pairs,)) + param_bytes(
            (int(self.batch_size), widest * 4)
        )

    def _new_network(self, use_gmf: bool, use_mlp: bool) -> _NCF:
        return _NCF(self.n_users_, self.n_items_, int(self.factors), self._layers(), use_gmf, use_mlp).to(
            self.device_
        )

    def _build(self, train: InteractionMatrix) -> None:
        self.network_ = self._new_network(self.use_gmf, self.use_mlp)
        if self.pretrain and self.use_gmf and self.use_mlp:
            self._pretrain()
            self.optimizer_: torch.optim.Optimizer = torch.optim.SGD(
                self.network_.parameters(), lr=self.learning_rate
            )
        else:
            self.optimizer_ = adam(self.network_.parameters(), lr=self.learning_rate)

    def _pretrain(self, alpha: float = 0.5) -> None:
        """Train GMF and MLP separately, then copy their weights into NeuMF (paper, Sec. 3.4.1)."""
        parts: dict[str, _NCF] = {}
        for use_gmf in (True, False):
            net = self._new_network(use_gmf, not use_gmf)
            opt = adam(net.parameters(), lr=self.learning_rate)
            for _ in range(int(self.pretrain_epochs)):
                self._run_epoch(net, opt)
            parts["gmf" if use_gmf else "mlp"] = net
        gmf, mlp = parts["gmf"], parts["mlp"]
        target = self.network_
        assert isinstance(target, _NCF)
        net = target
        with torch.no_grad():
            net.gmf_user.weight.copy_(gmf.gmf_user.weight)
            net.gmf_item.weight.copy_(gmf.gmf_item.weight)
            net.mlp_user.weight.copy_(mlp.mlp_user.weight)
            net.mlp_item.weight.copy_(mlp.mlp_item.weight)
            for dst, src in zip(net.mlp, mlp.mlp):
                dst.load_state_dict(src.state_dict())
            net.out.weight.copy_(torch.cat([alpha * gmf.out.weight, (1 - alpha) * mlp.out.weight], dim=1))
            net.out.bias.copy_(alpha * gmf.out.bias + (1 - alpha) * mlp.out.bias)

    def _run_epoch(self, net: _NCF, opt: torch.optim.Optimizer) -> float:
        """One pass over all positives with freshly sampled negatives, in shuffled mini-batches."""
        pos_u, pos_i = self._positive_pairs()
        neg_u = np.repeat(pos_u, int(self.n_negatives))
        neg_i = self._sample_negatives(neg_u)
        users = torch.from_numpy(np.concatenate([pos_u, neg_u])).to(self.device_)
        items = torch.from_numpy(np.concatenate([pos_i, neg_i])).to(self.device_)
        labels = torch.cat([torch.ones(len(pos_u)), torch.zeros(len(neg_u))]).to(self.device_)
        perm = torch.from_numpy(self.rng_.permutation(len(users))).to(self.device_)
        users, items, labels = users[perm], items[perm], labels[perm]
        reg = float(self.reg)
        bs = int(self.batch_size)
        net.train()

        def steps() -> Iterator[tuple[torch.Tensor, int]]:
            for s in range(0, len(users), bs):
                u, i, y = users[s : s + bs], items[s : s + bs], labels[s : s + bs]
                loss = F.binary_cross_entropy_with_logits(net(u, i), y)
                if reg > 0:
                    loss = loss + reg * self._embedding_penalty(net, u, i)
                yield loss, len(u)

        return minibatch_epoch(opt, steps())

    @staticmethod
    def _embedding_penalty(net: _NCF, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        pen = torch.zeros((), device=u.device)
        if net.use_gmf:
            pen = pen + net.gmf_user(u).pow(2).sum() + net.gmf_item(i).pow(2).sum()
        if net.use_mlp:
            pen = pen + net.mlp_user(u).pow(2).sum() + net.mlp_item(i).pow(2).sum()
        return pen / len(u)

    def _train_epoch(self, epoch: int) -> float:
        assert isinstance(self.network_, _NCF)
        return self._run_epoch(self.network_, self.optimizer_)

    def _prepare_scoring(self) -> None:
        assert isinstance(self.network_, _NCF)
        self._item_proj = self.network_.item_projection()

    def _score_batch(self, users: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.network_, _NCF)
        return self.network_.score_all(users, self._item_proj)

    def _extra_state(self) -> Any:
        return None


class GMF(NeuMF):
    """GMF: generalised matrix factorisation, NeuMF's linear part (He et al., WWW 2017).

    Same training and defaults as :class:`NeuMF` (``factors=8``, 4 negatives, Adam 1e-3, batch
    256); ``layers`` and ``pretrain`` are ignored.
    """

    tags: ClassVar[ModelTags] = ModelTags(test_params={"epochs": 30, "batch_size": 64, "learning_rate": 0.01})

    use_mlp: ClassVar[bool] = False


class MLP(NeuMF):
    """MLP: NeuMF's multi-layer perceptron part (He et al., WWW 2017).

    Same training and defaults as :class:`NeuMF` (``layers=[64, 32, 16, 8]``, 4 negatives, Adam
    1e-3, batch 256); ``factors`` and ``pretrain`` are ignored.
    """

    tags: ClassVar[ModelTags] = ModelTags(
        test_params={"layers": "16,8", "epochs": 30, "batch_size": 64, "learning_rate": 0.01}
    )

    use_gmf: ClassVar[bool] = False
