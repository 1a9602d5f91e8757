"""RecVAE: a VAE for implicit feedback with a composite prior and alternating updates.

Shenbin, Alekseev, Tutubalina, Malykh & Nikolenko, "RecVAE: a New Variational Autoencoder for
Top-N Recommendations with Implicit Feedback", WSDM 2020 (reference code: ilya-shenbin/RecVAE).
"""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.interactions import InteractionMatrix
from benchmark.models import Param
from neural.base import (
    COMMON_PARAMS,
    RowBatch,
    TorchRecommender,
    adam,
    multinomial_log_likelihood,
    param_bytes,
    sparse_linear,
)

#: The reference code's prior mixture: standard normal, old posterior, wide normal (log-var 10).
MIXTURE_WEIGHTS = (3 / 20, 3 / 4, 1 / 10)


def log_norm_pdf(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return -0.5 * (logvar + math.log(2 * math.pi) + (x - mu).pow(2) / logvar.exp())


class _Encoder(nn.Module):
    """Five dense layers with swish, layer norm and dense skip connections (the paper's Fig. 1)."""

    def __init__(self, hidden: int, latent: int, n_items: int, eps: float = 0.1) -> None:
        super().__init__()
        self.fc = nn.ModuleList([nn.Linear(n_items, hidden)] + [nn.Linear(hidden, hidden) for _ in range(4)])
        self.ln = nn.ModuleList(nn.LayerNorm(hidden, eps=eps) for _ in range(5))
        self.fc_mu = nn.Linear(hidden, latent)
        self.fc_logvar = nn.Linear(hidden, latent)

    def forward(self, batch: RowBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance of normalised (dropped-out) rows."""
        hs: list[torch.Tensor] = []
        for fc, ln in zip(self.fc, self.ln):
            assert isinstance(fc, nn.Linear)
            pre = sparse_linear(batch, fc) if not hs else fc(hs[-1]) + sum(hs)
            hs.append(ln(F.silu(pre)))
        return self.fc_mu(hs[-1]), self.fc_logvar(hs[-1])


class _RecVAENet(nn.Module):
    mu_prior: torch.Tensor
    logvar_prior: torch.Tensor
    logvar_uniform: torch.Tensor

    def __init__(self, hidden: int, latent: int, n_items: int) -> None:
        super().__init__()
        self.encoder = _Encoder(hidden, latent, n_items)
        self.encoder_old = _Encoder(hidden, latent, n_items)
        self.encoder_old.requires_grad_(False)
        self.decoder = nn.Linear(latent, n_items)
        self.register_buffer("mu_prior", torch.zeros(1, latent))
        self.register_buffer("logvar_prior", torch.zeros(1, latent))
        self.register_buffer("logvar_uniform", torch.full((1, latent), 10.0))

    def composite_prior(self, clean: RowBatch, z: torch.Tensor) -> torch.Tensor:
        post_mu, post_logvar = self.encoder_old(clean)
        parts = [
            log_norm_pdf(z, self.mu_prior, self.logvar_prior),
            log_norm_pdf(z, post_mu, post_logvar),
            log_norm_pdf(z, self.mu_prior, self.logvar_uniform),
        ]
        stacked = torch.stack([p + math.log(w) for p, w in zip(parts, MIXTURE_WEIGHTS)], dim=-1)
        return torch.logsumexp(stacked, dim=-1)

    def loss(
        self, batch: RowBatch, clean: RowBatch, gamma: float, beta: float | None, part: str
    ) -> torch.Tensor:
        """The negative ELBO of the reference code (``batch`` dropped out, ``clean`` not).

        ``part`` is what the step updates: for ``"decoder"`` the encoder and the KL term (constant
        for the decoder) run without autograd; for ``"encoder"`` the decoder's weights get no
        gradient. The value is the same either way; only wasted gradients are skipped.
        """
        with torch.set_grad_enabled(part == "encoder" and torch.is_grad_enabled()):
            mu, logvar = self.encoder(batch)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
            kl_weight = gamma * clean.counts if beta is None else torch.full_like(clean.counts, beta)
            kld = (
                (log_norm_pdf(z, mu, logvar) - self.composite_prior(clean, z)).sum(dim=1) * kl_weight
            ).mean()
        self.decoder.requires_grad_(part == "decoder")
        logits = self.decoder(z)
        mll = multinomial_log_likelihood(logits, clean).mean()
        return -(mll - kld)

    def forward(self, batch: RowBatch) -> torch.Tensor:
        mu, _ = self.encoder(batch)
        return self.decoder(mu)


class RecVAE(TorchRecommender):
    """RecVAE (Shenbin et al., WSDM 2020).

    Mult-VAE with a deeper encoder (5 dense layers, swish, layer norm, dense skips), a composite
    prior (mixture of a standard normal, the previous epoch's posterior and a wide normal with
    weights 3/20, 3/4, 1/10), a KL weight ``beta = gamma * |items of the user|`` and alternating
    updates: per epoch, ``n_enc_epochs`` passes updating the encoder (input dropout), then the
    prior's encoder is refreshed, then ``n_dec_epochs`` passes updating the decoder (no dropout).
    Defaults from the paper / reference code: hidden 600, latent 200, ``gamma=0.005``, dropout 0.5,
    Adam with learning rate 5e-4, batch size 500, 50 epochs, 3 encoder / 1 decoder passes.
    Scores are the decoder's logits at the posterior mean of the user's training row.

    Args:
        hidden_dim: width of the encoder's layers.
        latent_dim: latent size.
        gamma: KL weight per interaction of the user (used when ``beta`` is None).
        beta: a constant KL weight instead of ``gamma`` scaling.
        dropout: input dropout in the encoder passes.
        n_enc_epochs: encoder passes per epoch.
        n_dec_epochs: decoder passes per epoch.
        epochs, batch_size, learning_rate, device, num_threads, random_state: see
            :class:`neural.base.TorchRecommender`.
    """

    param_specs: ClassVar[dict[str, Param]] = {
        **COMMON_PARAMS,
        "hidden_dim": Param("int", 1, 100_000),
        "latent_dim": Param("int", 1, 100_000),
        "gamma": Param("float", 0.0, 100.0),
        "beta": Param("float", 0.0, 100.0, nullable=True),
        "dropout": Param("float", 0.0, 0.99),
        "n_enc_epochs": Param("int", 1, 100),
        "n_dec_epochs": Param("int", 1, 100),
    }

    def __init__(
        self,
        *,
        hidden_dim: int = 600,
        latent_dim: int = 200,
        gamma: float = 0.005,
        beta: float | None = None,
        dropout: float = 0.5,
        n_enc_epochs: int = 3,
        n_dec_epochs: int = 1,
        epochs: int = 50,
        batch_size: int = 500,
        learning_rate: float = 5e-4,
        device: str = "auto",
        num_threads: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.hidden_dim = hidden_dim
        self.latent_dim = latent_dim
        self.gamma = gamma
        self.beta = beta
        self.dropout = dropout
        self.n_enc_epochs = n_enc_epochs
        self.n_dec_epochs = n_dec_epochs
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.device = device
        self.num_threads = num_threads
        self.random_state = random_state

    def _memory_estimate(self) -> int:
        n, h, z = self.n_items_, int(self.hidden_dim), int(self.latent_dim)
        weights = 2 * (n * h + 4 * h * h + 2 * h * z) + z * n
        return param_bytes((4 * weights,), (6 * int(self.batch_size), n))

    def _build(self, train: InteractionMatrix) -> None:
        net = _RecVAENet(int(self.hidden_dim), int(self.latent_dim), self.n_items_).to(self.device_)
        net.encoder_old.load_state_dict(net.encoder.state_dict())
        self.network_ = net
        self.opt_encoder_ = adam(net.encoder.parameters(), lr=self.learning_rate)
        self.opt_decoder_ = adam(net.decoder.parameters(), lr=self.learning_rate)
        self._train_users = np.flatnonzero(np.diff(self.train_.indptr) > 0)

    def _pass(self, opt: torch.optim.Optimizer, dropout: float, part: str) -> float:
        net = self.network_
        assert isinstance(net, _RecVAENet)
        total, n = 0.0, 0
        for idx in self._minibatches(len(self._train_users)):
            users = self._train_users[idx]
            clean = self._row_batch(users)
            batch = self._row_batch(users, dropout) if dropout > 0 else clean
            loss = net.loss(batch, clean, float(self.gamma), self.beta, part)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        return total / max(n, 1)

    def _train_epoch(self, epoch: int) -> float:
        net = self.network_
        assert isinstance(net, _RecVAENet)
        for _ in range(int(self.n_enc_epochs)):
            self._pass(self.opt_encoder_, float(self.dropout), "encoder")
        net.encoder_old.load_state_dict(copy.deepcopy(net.encoder.state_dict()))
        loss = 0.0
        for _ in range(int(self.n_dec_epochs)):
            loss = self._pass(self.opt_decoder_, 0.0, "decoder")
        net.decoder.requires_grad_(True)
        return loss

    def _score_batch(self, users: torch.Tensor) -> torch.Tensor:
        return self.network_(self._row_batch(users))
