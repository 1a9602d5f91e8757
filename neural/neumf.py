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
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
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
    adam,
    memory_available,
    minibatch_epoch,
    param_bytes,
    parse_layers,
    resolve_device,
)
from neural.pack import MemberPack, PackedAdam, take

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

    packable: ClassVar[bool] = True

    @classmethod
    def fit_pack(
        cls, members: Sequence[PackMember], train: InteractionMatrix, *, memory_bytes: int | None = None
    ) -> None:
        """Train the members as batched models (:mod:`neural.pack`), each exactly as its solo run.

        Members with ``pretrain=True`` (NeuMF) run alone: their GMF and MLP pre-training and the
        switch to SGD make a different program. The others are grouped by :meth:`pack_key`, and
        each group of two or more is trained as one stacked model; within a group, negatives per
        positive, learning rates, regularisation and epoch caps always may differ.
        """
        groups: dict[tuple[Any, ...], list[PackMember]] = {}
        alone: list[PackMember] = []
        for member in members:
            model = member.model
            assert isinstance(model, NeuMF)
            try:
                model.validate_params()
                key = model.pack_key()
            except Exception as exc:
                member.error = exc
                continue
            if model.pretrain and model.use_gmf and model.use_mlp:
                alone.append(member)
            else:
                groups.setdefault(key, []).append(member)
        for group in groups.values():
            for part in _fit_in_memory(group, train, memory_bytes):
                if len(part) == 1:
                    alone.extend(part)
                else:
                    _NCFPack(part, train).run()
        super().fit_pack(alone, train)

    def pack_key(self) -> tuple[Any, ...]:
        """Which members may share a stacked model: equal keys are packed together.

        The MLP depth is never padded. On CUDA, where a small step is launch-bound, everything
        else is zero-padded to the group's largest (factors, layer widths, batch size): padding
        costs little there. On CPU, padding costs what it computes: a 128-wide tower padded to
        512, or a batch of 128 padded to 1024, made a pack of 8 sampled NeuMF trials 2.2x slower
        than running them in turn (``scripts/bench_packs.py``), so CPU packs only members of equal
        shapes (factors, layer widths, batch size).
        """
        layers = tuple(self._layers())
        if resolve_device(self.device).type == "cuda":
            return (len(layers), self.device)
        return (layers, int(self.factors) if self.use_gmf else 0, int(self.batch_size), self.device)

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

    def _epoch_pairs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """An epoch's (users, items, labels): every positive and ``n_negatives`` freshly sampled
        unseen items per positive, shuffled (drawn from ``rng_``; a pack member draws the same)."""
        pos_u, pos_i = self._positive_pairs()
        neg_u = np.repeat(pos_u, int(self.n_negatives))
        neg_i = self._sample_negatives(neg_u)
        users = torch.from_numpy(np.concatenate([pos_u, neg_u])).to(self.device_)
        items = torch.from_numpy(np.concatenate([pos_i, neg_i])).to(self.device_)
        labels = torch.cat([torch.ones(len(pos_u)), torch.zeros(len(neg_u))]).to(self.device_)
        perm = torch.from_numpy(self.rng_.permutation(len(users))).to(self.device_)
        return users[perm], items[perm], labels[perm]

    def _run_epoch(self, net: _NCF, opt: torch.optim.Optimizer) -> float:
        """One pass over all positives with freshly sampled negatives, in shuffled mini-batches."""
        users, items, labels = self._epoch_pairs()
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


def pack_bytes(models: Sequence[NeuMF], train: InteractionMatrix) -> int:
    """Peak bytes of a stacked model of ``models``, padded to their largest shapes.

    Parameters, gradients and Adam's two moments of the stack (4 copies), the members' epoch
    buffers (user, item and label of every example, 12 bytes each) and one step's activations.
    """
    k, n = len(models), train.n_users + train.n_items
    factors = max(int(m.factors) if m.use_gmf else 0 for m in models)
    layers = [m._layers() for m in models]
    widths = [max(col) for col in zip(*layers)] if models[0].use_mlp else []
    dense = sum(a * b for a, b in itertools.pairwise(widths))
    params = k * (n * (factors + (widths[0] // 2 if widths else 0)) + dense + factors + sum(widths) + 1)
    batch = max(int(m.batch_size) for m in models)
    examples = max(train.nnz * (1 + int(m.n_negatives)) for m in models) + batch
    activations = k * batch * (2 * factors + widths[0] + sum(widths) if widths else 2 * factors + 8) * 4
    return 4 * 4 * params + 12 * k * examples + 4 * activations


def _fit_in_memory(
    group: list[PackMember], train: InteractionMatrix, memory_bytes: int | None
) -> list[list[PackMember]]:
    """``group`` cut into packs that each fit ``memory_bytes`` (None: MEMORY_FRACTION of what the
    device has available): the pack size is chosen by memory, never more than the tuner asked."""
    if len(group) <= 1:
        return [group]
    models = [m.model for m in group if isinstance(m.model, NeuMF)]
    if memory_bytes is None:
        memory_bytes = int(MEMORY_FRACTION * memory_available(resolve_device(models[0].device)))
    if pack_bytes(models, train) <= memory_bytes:
        return [group]
    half = len(group) // 2
    return _fit_in_memory(group[:half], train, memory_bytes) + _fit_in_memory(
        group[half:], train, memory_bytes
    )


#: The stacked embedding tables of a pack (their gradients are scattered by hand, see _forward).
TABLES = ("gmf_user", "gmf_item", "mlp_user", "mlp_item")


class _NCFPack(MemberPack):
    """NCF members (GMF, MLP or NeuMF, one class, one MLP depth) trained as one stacked model.

    The stacked parameters, for ``K`` members, padded to the pack's largest sizes:
    ``gmf_user [K, n_users, F]``, ``gmf_item [K, n_items, F]``, ``mlp_user/mlp_item [K, n, H0 / 2]``,
    the first MLP layer split into its user and item halves ``[K, H0 / 2, H1]`` (as in
    :meth:`_NCF.forward`), the other layers ``[K, H_j, H_j+1]`` with biases ``[K, H_j+1]``, and the
    output layer's GMF and MLP halves ``[K, F]``, ``[K, H_last]`` and bias ``[K]``.
    """

    def __init__(self, members: Sequence[PackMember], train: InteractionMatrix) -> None:
        super().__init__(members, train)
        self.models: list[NeuMF]
        if not self.models:
            return
        first = self.models[0]
        self.device = first.device_
        self.use_gmf, self.use_mlp = first.use_gmf, first.use_mlp
        self.factors = [int(m.factors) if self.use_gmf else 0 for m in self.models]
        self.layers = [m._layers() for m in self.models]
        widths = [max(col) for col in zip(*self.layers)] if self.use_mlp else []
        self.params: dict[str, torch.Tensor] = {}
        k, nu, ni = len(self.models), first.n_users_, first.n_items_
        dev = self.device

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(shape, device=dev)

        if self.use_gmf:
            f = max(self.factors)
            self.params.update(gmf_user=zeros(k, nu, f), gmf_item=zeros(k, ni, f), out_gmf=zeros(k, f))
        if self.use_mlp:
            h = widths[0] // 2
            self.params.update(mlp_user=zeros(k, nu, h), mlp_item=zeros(k, ni, h))
            self.params.update(
                w0_user=zeros(k, h, widths[1]), w0_item=zeros(k, h, widths[1]), b0=zeros(k, widths[1])
            )
            for j in range(1, len(widths) - 1):
                self.params[f"w{j}"] = zeros(k, widths[j], widths[j + 1])
                self.params[f"b{j}"] = zeros(k, widths[j + 1])
            self.params["out_mlp"] = zeros(k, widths[-1])
        self.params["out_bias"] = zeros(k)
        #: the member number of each row of the stack (members leave, rows are compacted)
        self._rows = list(range(k))
        with torch.no_grad():
            for i in range(k):
                for solo, name, block, transposed in self._pairs(i):
                    self.params[name][(slice(i, i + 1), *block)] = (solo.t() if transposed else solo)[None]
        # embedding tables get their gradient outside autograd, into buffers kept across steps
        # (see _forward); the dense layers through autograd
        for name, p in self.params.items():
            p.requires_grad_(name not in TABLES)
        self.table_grads = {name: torch.zeros_like(p) for name, p in self.params.items() if name in TABLES}
        self.optimizer = PackedAdam(list(self.params.values()), [float(m.learning_rate) for m in self.models])
        self.reg = torch.tensor([float(m.reg) for m in self.models], device=dev)
        self.clock.lap()  # building the stack is the pack's setup, nobody's training

    # ----------------------------------------------------------------- member <-> stack
    def _pairs(self, i: int) -> list[tuple[torch.Tensor, str, tuple[slice, ...], bool]]:
        """(solo tensor, stacked name, the member's block in the stack, transposed?) of member ``i``."""
        net = self.models[i].network_
        assert isinstance(net, _NCF)
        f, layers = self.factors[i], self.layers[i]
        out = net.out.weight[0]
        pairs: list[tuple[torch.Tensor, str, tuple[slice, ...], bool]] = [
            (net.out.bias.view(()), "out_bias", (), False)
        ]
        if self.use_gmf:
            pairs += [
                (net.gmf_user.weight, "gmf_user", (slice(None), slice(0, f)), False),
                (net.gmf_item.weight, "gmf_item", (slice(None), slice(0, f)), False),
                (out[:f], "out_gmf", (slice(0, f),), False),
            ]
        if self.use_mlp:
            h = layers[0] // 2
            first = net._linear(0)
            pairs += [
                (net.mlp_user.weight, "mlp_user", (slice(None), slice(0, h)), False),
                (net.mlp_item.weight, "mlp_item", (slice(None), slice(0, h)), False),
                (first.weight[:, :h], "w0_user", (slice(0, h), slice(0, layers[1])), True),
                (first.weight[:, h:], "w0_item", (slice(0, h), slice(0, layers[1])), True),
                (first.bias, "b0", (slice(0, layers[1]),), False),
                (out[f:], "out_mlp", (slice(0, layers[-1]),), False),
            ]
            for j in range(1, len(layers) - 1):
                lin = net._linear(j)
                pairs += [
                    (lin.weight, f"w{j}", (slice(0, layers[j]), slice(0, layers[j + 1])), True),
                    (lin.bias, f"b{j}", (slice(0, layers[j + 1]),), False),
                ]
        return pairs

    @torch.no_grad()
    def _sync(self, i: int) -> None:
        """Copy member ``i``'s block of the stack into its own network (for its callback)."""
        row = self._rows.index(i)
        for solo, name, block, transposed in self._pairs(i):
            value = self.params[name][(slice(row, row + 1), *block)][0]
            solo.copy_(value.t() if transposed else value)

    # ----------------------------------------------------------------- training
    def _forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits ``[K, B]`` of the members' (user, item) pairs.

        Embedding rows are gathered as leaves of the graph: after ``backward`` their gradients are
        scattered into the tables' gradient buffers by :meth:`_table_gradients`. Letting autograd
        do it allocates a fresh dense ``[K, n, F]`` gradient per table and step, and on CPU the
        page faults of touching that new memory cost more than the step's arithmetic.
        """
        p = self.params
        self._gathered: list[tuple[str, torch.Tensor, torch.Tensor]] = []

        def rows(name: str, index: torch.Tensor) -> torch.Tensor:
            out = take(p[name], index).requires_grad_(True)
            self._gathered.append((name, index, out))
            return out

        logits = p["out_bias"][:, None].expand(users.shape)
        if self.use_gmf:
            eu, ei = rows("gmf_user", users), rows("gmf_item", items)
            logits = logits + torch.bmm(eu * ei, p["out_gmf"][:, :, None])[:, :, 0]
        if self.use_mlp:
            eu, ei = rows("mlp_user", users), rows("mlp_item", items)
            h = torch.baddbmm(p["b0"][:, None, :], eu, p["w0_user"])
            h = torch.relu(torch.baddbmm(h, ei, p["w0_item"]))
            for j in range(1, len(self.layers[0]) - 1):
                h = torch.relu(torch.baddbmm(p[f"b{j}"][:, None, :], h, p[f"w{j}"]))
            logits = logits + torch.bmm(h, p["out_mlp"][:, :, None])[:, :, 0]
        return logits

    @torch.no_grad()
    def _table_gradients(self) -> None:
        """The tables' gradients from their gathered rows' (one scatter-add each, as autograd's)."""
        for grad in self.table_grads.values():
            grad.zero_()
        for name, index, gathered in self._gathered:
            grad, k = self.table_grads[name], index.shape[0]
            n, f = grad.shape[1], grad.shape[2]
            flat = (index + torch.arange(k, device=index.device)[:, None] * n).reshape(-1)
            assert gathered.grad is not None
            grad.view(k * n, f).index_add_(0, flat, gathered.grad.reshape(-1, f))
        self._gathered = []

    def run(self) -> None:
        """Train until every member has stopped (its callback, its epoch cap or its error)."""
        if not self.models:
            return
        n_members = len(self.members)
        alive = list(range(n_members))  # member numbers, in stack order
        batch = [int(m.batch_size) for m in self.models]
        epoch, pos = [1] * n_members, [0] * n_members
        # examples per epoch: every positive and its negatives (what _epoch_pairs draws)
        length = [self.models[i].train_.nnz * (1 + int(self.models[i].n_negatives)) for i in alive]
        loss_sum: list[torch.Tensor | float] = [0.0] * n_members
        # every member's epoch of (user, item, label) in one row of a buffer, so that a step's
        # batches are three gathers rather than three slices per member
        width = max(length) + max(batch)
        self.buffers = (
            torch.zeros((n_members, width), dtype=torch.int32, device=self.device),
            torch.zeros((n_members, width), dtype=torch.int32, device=self.device),
            torch.zeros((n_members, width), dtype=torch.float32, device=self.device),
        )
        for i in alive:
            self._next_epoch(i, i)
        use_reg = bool((self.reg > 0).any())
        while alive:
            widest = max(batch[i] for i in alive)
            sizes = [min(batch[i], length[i] - pos[i]) for i in alive]
            offsets = torch.arange(widest, device=self.device)
            index = torch.tensor([pos[i] for i in alive], device=self.device)[:, None] + offsets
            users, items, labels = (b.gather(1, index) for b in self.buffers)
            n = torch.tensor(sizes, dtype=torch.float32, device=self.device)
            mask = (offsets[None, :] < n[:, None]).float()
            logits = self._forward(users.long(), items.long())
            bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
            total = (bce * mask).sum(1) / n
            if use_reg:
                # the squared norm of the embedding rows each example used (NeuMF._embedding_penalty)
                norms = sum(rows.pow(2).sum(2) for _, _, rows in self._gathered)
                total = total + self.reg * (norms * mask).sum(1) / n
            self.optimizer.zero_grad()
            total.sum().backward()
            self._table_gradients()
            self.optimizer.step([self.table_grads.get(name, p.grad) for name, p in self.params.items()])
            contrib = total.detach() * n
            ended = []
            for row, i in enumerate(alive):
                loss_sum[i] = loss_sum[i] + contrib[row]
                pos[i] += sizes[row]
                if pos[i] >= length[i]:
                    ended.append(row)
            self.clock.shared(alive)
            leaving = set()
            for row in ended:
                i = alive[row]
                if self._end_epoch(i, epoch[i], loss_sum[i], length[i]):
                    leaving.add(row)
                else:  # its next epoch: fresh negatives and shuffle
                    epoch[i] += 1
                    pos[i], loss_sum[i] = 0, 0.0
                    self._next_epoch(i, row)
            if leaving:
                keep = [row for row in range(len(alive)) if row not in leaving]
                self._compact(keep)
                alive = [alive[row] for row in keep]
        for member, seconds in zip(self.members, self.clock.seconds):
            member.seconds = seconds

    def _next_epoch(self, i: int, row: int) -> None:
        """Draw member ``i``'s next epoch (its own generator) into its buffer row."""
        for buffer, values in zip(self.buffers, self.models[i]._epoch_pairs()):
            buffer[row, : len(values)] = values
        self.clock.own(i)

    def _compact(self, keep: list[int]) -> None:
        index = torch.tensor(keep, dtype=torch.int64, device=self.device)
        with torch.no_grad():
            self.params = {
                name: p[index].clone().requires_grad_(name not in TABLES) for name, p in self.params.items()
            }
            self.table_grads = {name: g[index].clone() for name, g in self.table_grads.items()}
        self.optimizer.keep(keep, list(self.params.values()))
        self.reg = self.reg[index]
        self.buffers = tuple(b[index] for b in self.buffers)  # type: ignore[assignment]
        self._rows = [self._rows[row] for row in keep]
