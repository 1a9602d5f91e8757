"""Variational and denoising autoencoders for collaborative filtering (Mult-VAE, Mult-DAE).

Liang, Krishnan, Hoffman & Jebara, "Variational Autoencoders for Collaborative Filtering",
WWW 2018 (reference code: dawenl/vae_cf).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from benchmark.data.interactions import InteractionMatrix
from benchmark.models import ModelTags, Param
from neural.base import (
    COMMON_PARAMS,
    RowBatch,
    SparseInputLinear,
    TorchRecommender,
    adam,
    minibatch_epoch,
    multinomial_log_likelihood,
    param_bytes,
    parse_layers,
)


def kl_anneal(update: int, total_anneal_steps: int, anneal_cap: float) -> float:
    """The paper's KL weight after ``update`` gradient steps: ``min(cap, update / total_steps)``."""
    if total_anneal_steps <= 0:
        return float(anneal_cap)
    return float(min(anneal_cap, update / total_anneal_steps))


def _dims(n_items: int, hidden_dims: Any, latent_dim: int) -> list[int]:
    return [n_items, *parse_layers(hidden_dims, "hidden_dims"), int(latent_dim)]


class _AutoEncoder(nn.Module):
    """Tanh MLP encoder/decoder; input rows come normalised and dropped out (a RowBatch)."""

    def __init__(self, dims: list[int], variational: bool) -> None:
        super().__init__()
        self.variational = variational
        enc = list(dims)
        if variational:
            enc[-1] = 2 * dims[-1]  # mean and log-variance
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(enc))
        rev = dims[::-1]
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(rev))
        self.latent_dim = dims[-1]
        for layer in [*self.encoder, *self.decoder]:
            # the reference code: Xavier weights, biases ~ N(0, 0.001)
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=0.001)
        first = self.encoder[0]
        assert isinstance(first, nn.Linear)
        self.encoder[0] = SparseInputLinear.from_linear(first)  # its input is a sparse RowBatch

    def forward(self, batch: RowBatch) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Logits (and the posterior's mean and log-variance) of normalised, dropped-out rows."""
        h = torch.empty(0)
        for k, layer in enumerate(self.encoder):
            h = layer(batch) if k == 0 else layer(h)
            if k < len(self.encoder) - 1:
                h = torch.tanh(h)
        mu = logvar = None
        if self.variational:
            mu, logvar = h[:, : self.latent_dim], h[:, self.latent_dim :]
            if self.training:
                h = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            else:
                h = mu
        else:
            h = torch.tanh(h)  # the DAE's code layer is tanh too
        for k, layer in enumerate(self.decoder):
            h = layer(h)
            if k < len(self.decoder) - 1:
                h = torch.tanh(h)
        return h, mu, logvar


class MultVAE(TorchRecommender):
    """Mult-VAE^PR: a variational autoencoder with multinomial likelihood and KL annealing.

    Liang et al., "Variational Autoencoders for Collaborative Filtering", WWW 2018. The user's
    whole (L2-normalised, dropped-out) training row is encoded; scores are the decoder's logits at
    the posterior mean. Defaults from the paper and its reference code: architecture
    ``[n_items -> 600 -> 200 -> 600 -> n_items]`` with tanh, input dropout 0.5, Adam with learning
    rate 1e-3, batch size 500 users, 200 epochs, KL weight ``beta = min(anneal_cap,
    updates / total_anneal_steps)`` with ``anneal_cap=0.2`` and ``total_anneal_steps=200000``,
    no weight decay. Users without training interactions get the decoder's output for an empty row.

    Args:
        hidden_dims: encoder hidden sizes (mirrored by the decoder): a list or ``"600,300"``.
        latent_dim: size of the latent code.
        dropout: dropout probability on the input row.
        anneal_cap: the largest KL weight beta.
        total_anneal_steps: gradient updates over which beta grows linearly to 1 (capped).
        weight_decay: L2 penalty on the weights (Adam weight decay).
        epochs, batch_size, learning_rate, device, num_threads, random_state: see
            :class:`neural.base.TorchRecommender`.
    """

    tags: ClassVar[ModelTags] = ModelTags(
        test_params={
            "hidden_dims": "32",
            "latent_dim": 8,
            "epochs": 50,
            "batch_size": 8,
            "learning_rate": 0.01,
            "total_anneal_steps": 200,
        }
    )

    variational: ClassVar[bool] = True
    param_specs: ClassVar[dict[str, Param]] = {
        **COMMON_PARAMS,
        "hidden_dims": Param("any"),
        "latent_dim": Param("int", 1, 100_000),
        "dropout": Param("float", 0.0, 0.99),
        "anneal_cap": Param("float", 0.0, 10.0),
        "total_anneal_steps": Param("int", 0, 10**12),
        "weight_decay": Param("float", 0.0, 10.0),
    }

    def __init__(
        self,
        *,
        hidden_dims: tuple[int, ...] | list[int] | str = "600",
        latent_dim: int = 200,
        dropout: float = 0.5,
        anneal_cap: float = 0.2,
        total_anneal_steps: int = 200_000,
        weight_decay: float = 0.0,
        epochs: int = 200,
        batch_size: int = 500,
        learning_rate: float = 1e-3,
        device: str = "auto",
        num_threads: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.hidden_dims = hidden_dims
        self.latent_dim = latent_dim
        self.dropout = dropout
        self.anneal_cap = anneal_cap
        self.total_anneal_steps = total_anneal_steps
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.device = device
        self.num_threads = num_threads
        self.random_state = random_state

    def _memory_estimate(self) -> int:
        n = getattr(self, "n_items_", 0)
        dims = _dims(n, self.hidden_dims, self.latent_dim)
        weights = sum(a * b for a, b in itertools.pairwise(dims)) * 2
        # weights + grads + 2 Adam moments; input, dropped input, logits, softmax of a batch
        return param_bytes((4 * weights,), (6 * int(self.batch_size), n))

    def _build(self, train: InteractionMatrix) -> None:
        dims = _dims(self.n_items_, self.hidden_dims, self.latent_dim)
        self.network_ = _AutoEncoder(dims, self.variational).to(self.device_)
        self.optimizer_ = adam(
            self.network_.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        self.updates_ = 0
        self.beta_ = 0.0
        # users with no training row contribute nothing to the multinomial likelihood
        self._train_users = np.flatnonzero(np.diff(self.train_.indptr) > 0)

    def _train_epoch(self, epoch: int) -> float:
        def steps() -> Iterator[tuple[torch.Tensor, int]]:
            for idx in self._minibatches(len(self._train_users)):
                batch = self._row_batch(self._train_users[idx], float(self.dropout))
                logits, mu, logvar = self.network_(batch)
                nll = -multinomial_log_likelihood(logits, batch).mean()
                loss = nll
                if self.variational:
                    assert mu is not None and logvar is not None
                    self.beta_ = kl_anneal(self.updates_, self.total_anneal_steps, self.anneal_cap)
                    kl = 0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1).sum(dim=1).mean()
                    loss = nll + self.beta_ * kl
                yield loss, len(idx)
                self.updates_ += 1  # after the step: the KL weight anneals per update

        return minibatch_epoch(self.optimizer_, steps())

    def _score_batch(self, users: torch.Tensor) -> torch.Tensor:
        logits, _, _ = self.network_(self._row_batch(users))
        return logits

    def _extra_state(self) -> Any:
        return {"updates": self.updates_}

    def _set_extra_state(self, state: Any) -> None:
        self.updates_ = state["updates"]


class MultDAE(MultVAE):
    """Mult-DAE: the denoising autoencoder with multinomial likelihood (no KL term).

    Liang et al., WWW 2018. Defaults from the paper's reference code: architecture
    ``[n_items -> 200 -> n_items]`` with tanh, input dropout 0.5, weight decay 0.01 ("lam" in the
    reference code, there an L2 penalty on the weights), Adam with learning rate 1e-3, batch size
    500 users, 200 epochs.

    Args:
        hidden_dims: encoder hidden sizes before the code layer (default none).
        latent_dim: size of the code layer.
        dropout, weight_decay, epochs, batch_size, learning_rate, device, num_threads,
            random_state: as for :class:`MultVAE`.
        anneal_cap, total_anneal_steps: unused (kept so that both share one signature).
    """

    tags: ClassVar[ModelTags] = ModelTags(
        test_params={"latent_dim": 16, "epochs": 50, "batch_size": 8, "learning_rate": 0.01}
    )

    variational: ClassVar[bool] = False

    def __init__(
        self,
        *,
        hidden_dims: tuple[int, ...] | list[int] | str = "",
        latent_dim: int = 200,
        dropout: float = 0.5,
        anneal_cap: float = 0.0,
        total_anneal_steps: int = 0,
        weight_decay: float = 0.01,
        epochs: int = 200,
        batch_size: int = 500,
        learning_rate: float = 1e-3,
        device: str = "auto",
        num_threads: int | None = None,
        random_state: int = 0,
    ) -> None:
        super().__init__(
            hidden_dims=hidden_dims,
            latent_dim=latent_dim,
            dropout=dropout,
            anneal_cap=anneal_cap,
            total_anneal_steps=total_anneal_steps,
            weight_decay=weight_decay,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            device=device,
            num_threads=num_threads,
            random_state=random_state,
        )
