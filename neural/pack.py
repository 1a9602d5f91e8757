"""Trial packs: K tuning trials of one model trained as one batched model (issue 17).

A small-batch training step of the NCF family is a few dozen tiny kernels, so its cost is per-op
overhead rather than arithmetic (0.81 ms per step at batch 256 vs 2.6 ms at batch 4096 for NeuMF
on this project's CPU). Stacking the weights of K trials along a leading *member* axis runs one
batched kernel per op for all of them. What each member keeps of its own, so that it ends exactly
as its solo run would (within float tolerance; the contract suite checks it):

* its initialisation (built by its own seeded ``_init_fit``, then copied into the stack);
* its data stream (its own numpy generator draws its negatives and its shuffle, batch by batch, at
  its own batch size: members advance through their epochs independently);
* its optimiser state and learning rate (:class:`PackedAdam`: its own fused Adam on its block);
* its early stopping: at the end of each of its epochs its weights are copied into its own model,
  its callback runs exactly as under ``fit``, and a member that stops leaves the pack (the stack is
  compacted: nobody keeps computing a finished trial).

Hyperparameters that change shapes (embedding sizes, layer widths) are handled by zero-padding to
the pack's largest: padded weights start at zero, their gradient is exactly zero (zero inputs, and
ReLU's derivative at 0 is 0), and Adam's update of a zero gradient with zero moments is exactly
zero, so they stay zero and never touch the member's outputs (tests check both). Hyperparameters
that change the data stream (batch size, negatives per positive) need no grouping: every member
draws its own batches, padded to the largest batch of the pack with a mask in the loss.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from benchmark.data.interactions import InteractionMatrix
from benchmark.models import PackMember


class PackedAdam:
    """Adam (Kingma & Ba, ICLR 2015) per member on stacked parameters, each with its own rate.

    Member ``k`` is stepped by torch's fused Adam kernel (``torch.optim.adam.adam(fused=True)``,
    what its solo run's ``torch.optim.Adam(fused=True)`` calls) on *its block* of every stacked
    parameter and of the stacked moments, in place: one kernel per member and step. Measured on
    CPU, one set of elementwise ops over the whole ``[K, ...]`` stack with a per-member rate was
    3-4x slower per step (about ten passes over tensors too large for the cache, where the fused
    kernel makes one), and ``Optimizer.step``'s own per-call overhead about doubled the cost of
    the kernels; hence the functional call.

    Args:
        params: leaf tensors ``[K, ...]`` with ``requires_grad``.
        lr: learning rate of each member.
        betas, eps: Adam's (torch's defaults, as in the solo runs).
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        lr: Sequence[float],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.betas, self.eps = betas, eps
        self._set(list(params), [float(x) for x in lr], None)

    def _set(self, params: list[torch.Tensor], lr: list[float], old: PackedAdam | None) -> None:
        self.params, self.lr = params, lr
        if old is None:
            self.exp_avg = [torch.zeros_like(p) for p in params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in params]
            # one step counter per member and tensor (the fused kernel increments each it is given)
            self.steps = [[torch.zeros((), dtype=torch.float32, device=p.device) for p in params] for _ in lr]
        # each member's blocks, as views made once (the stacks are updated in place)
        self.blocks = [[p.detach()[k] for p in params] for k in range(len(lr))]
        self.avg_blocks = [[m[k] for m in self.exp_avg] for k in range(len(lr))]
        self.sq_blocks = [[v[k] for v in self.exp_avg_sq] for k in range(len(lr))]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor | None]) -> None:
        """One Adam step of every member, from ``grads`` (one per parameter, stacked like it)."""
        from torch.optim.adam import adam

        for k, rate in enumerate(self.lr):
            adam(
                self.blocks[k],
                [torch.zeros_like(p[k]) if g is None else g[k] for p, g in zip(self.params, grads)],
                self.avg_blocks[k],
                self.sq_blocks[k],
                [],
                self.steps[k],
                fused=True,
                amsgrad=False,
                beta1=self.betas[0],
                beta2=self.betas[1],
                lr=rate,
                weight_decay=0.0,
                eps=self.eps,
                maximize=False,
            )

    def keep(self, index: Sequence[int], params: Sequence[torch.Tensor]) -> None:
        """Keep the members at ``index``, whose blocks now live in the compacted ``params``."""
        rows = torch.tensor(list(index), dtype=torch.int64, device=params[0].device if params else None)
        self.exp_avg = [m[rows].clone() for m in self.exp_avg]
        self.exp_avg_sq = [v[rows].clone() for v in self.exp_avg_sq]
        self.steps = [self.steps[k] for k in index]
        self._set(list(params), [self.lr[k] for k in index], self)


def take(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of a stacked table: ``table [K, N, F]``, ``index [K, B]`` -> ``[K, B, F]``.

    One ``index_select`` on the flattened table (its backward is one scatter-add), rather than
    advanced indexing with a member index.
    """
    k, n, f = table.shape
    offsets = torch.arange(k, device=index.device)[:, None] * n
    return table.reshape(k * n, f).index_select(0, (index + offsets).reshape(-1)).view(k, -1, f)


class ShareClock:
    """Charges the pack's time to its members: a shared step divided among the members it trained,
    a member's own work (its data, its validations) to it alone."""

    def __init__(self, n: int) -> None:
        self.seconds = [0.0] * n
        self._t = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        dt, self._t = now - self._t, now
        return dt

    def shared(self, members: Sequence[int]) -> None:
        dt = self.lap()
        for k in members:
            self.seconds[k] += dt / max(len(members), 1)

    def own(self, member: int) -> None:
        self.seconds[member] += self.lap()


class MemberPack:
    """What every batched pack does for its members, whatever it stacks: start each member's model
    (``_init_fit``: its seed, its data, its optimiser; a member that fails there gets its error and
    stays out), and at the end of each of a member's epochs record its loss and run its callback
    exactly as ``fit`` would. Subclasses train (``run``) and, where the member's own model is not the
    one trained, copy its state back before the callback (:meth:`_sync`)."""

    def __init__(self, members: Sequence[PackMember], train: InteractionMatrix) -> None:
        self.members: list[PackMember] = []
        for member in members:
            try:
                member.model._init_fit(train)
                member.model.epochs_run_ = 0
            except Exception as exc:
                member.error = exc
                continue
            member.packed = True
            self.members.append(member)
        self.models: list[Any] = [m.model for m in self.members]
        self.clock = ShareClock(len(self.members))

    def _sync(self, i: int) -> None:
        """Make member ``i``'s own model hold its current state (nothing to do by default)."""

    def _end_epoch(self, i: int, e: int, loss_sum: torch.Tensor | float, n: int) -> bool:
        """Member ``i`` finished epoch ``e``: record it, run its callback; True if it leaves the pack."""
        member, model = self.members[i], self.models[i]
        try:
            model._record_loss(float(loss_sum) / max(n, 1), e)  # raises as in a solo run
            self._sync(i)
            model._scoring_ready = False
            model.epochs_run_ = e
            stop = member.callback is not None and member.callback(model, e)
            if stop or e >= int(model.epochs):
                model._end_fit()
                stop = True
        except Exception as exc:
            member.error = exc
            stop = True
        self.clock.own(i)
        return bool(stop)
