"""RecVAE: a VAE for implicit feedback with a composite prior and alternating updates.

Shenbin, Alekseev, Tutubalina, Malykh & Nikolenko, "RecVAE: a New Variational Autoencoder for
Top-N Recommendations with Implicit Feedback", WSDM 2020 (reference code: ilya-shenbin/RecVAE).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.interactions import InteractionMatrix
from benchmark.models import ModelTags, Param, batched
from neural.base import (
    COMMON_PARAMS,
    RowBatch,
    SparseInputLinear,
    TorchRecommender,
    adam,
    minibatch_epoch,
    multinomial_log_likelihood,
    param_bytes,
)

#: The reference code's prior mixture: standard normal, old posterior, wide normal (log-var 10).
MIXTURE_WEIGHTS = (3 / 20, 3 / 4, 1 / 10)


def log_norm_pdf(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return -0.5 * (logvar + math.log(2 * math.pi) + (x - mu).pow(2) / logvar.exp())


class _Encoder(nn.Module):
    """Five dense layers with swish, layer norm and dense skip connections (the paper's Fig. 1)."""

    def __init__(self, hidden: int, latent: int, n_items: int, eps: float = 0.1) -> None:
        super().__init__()
        first = SparseInputLinear.from_linear(nn.Linear(n_items, hidden))  # its input is a sparse RowBatch
        self.fc = nn.ModuleList([first] + [nn.Linear(hidden, hidden) for _ in range(4)])
        self.ln = nn.ModuleList(nn.LayerNorm(hidden, eps=eps) for _ in range(5))
        self.fc_mu = nn.Linear(hidden, latent)
        self.fc_logvar = nn.Linear(hidden, latent)

    def forward(self, batch: RowBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance of normalised (dropped-out) rows."""
        h = skip = self.ln[0](F.silu(self.fc[0](batch)))
        # ``skip``: running sum of the earlier layers' outputs (the dense skip connections), the
        # same additions in the same order as re-summing the list of outputs at every layer
        for k in range(1, len(self.fc)):
            h = self.ln[k](F.silu(self.fc[k](h) + skip))
            if k + 1 < len(self.fc):
                skip = skip + h
        return self.fc_mu(h), self.fc_logvar(h)


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

    def composite_prior(
        self, clean: RowBatch, z: torch.Tensor, post: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Log density of ``z`` under the prior; ``post``: ``encoder_old(clean)`` when known."""
        post_mu, post_logvar = self.encoder_old(clean) if post is None else post
        parts = [
            log_norm_pdf(z, self.mu_prior, self.logvar_prior),
            log_norm_pdf(z, post_mu, post_logvar),
            log_norm_pdf(z, self.mu_prior, self.logvar_uniform),
        ]
        # log sum_k w_k N_k(z) by pairwise logaddexp: a logsumexp over a stacked trailing axis of
        # length 3 is a strided reduction, several times slower on CPU
        a, b, c = (p + math.log(w) for p, w in zip(parts, MIXTURE_WEIGHTS))
        return torch.logaddexp(torch.logaddexp(a, b), c)

    def loss(
        self,
        batch: RowBatch,
        clean: RowBatch,
        gamma: float,
        beta: float | None,
        part: str,
        post: tuple[torch.Tensor, torch.Tensor] | None = None,
        old_is_current: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The negative ELBO of the reference code (``batch`` dropped out, ``clean`` not), and the
        posterior's (mean, log-variance) of ``batch`` (detached).

        ``part`` is what the step updates: for ``"decoder"`` the encoder and the KL term (constant
        for the decoder) run without autograd; for ``"encoder"`` the decoder's weights get no
        gradient. The value is the same either way; only wasted gradients are skipped.
        ``post`` is ``encoder_old(clean)`` when the caller has it; ``old_is_current`` says that
        ``encoder_old`` equals ``encoder`` and ``batch`` is ``clean``, so the posterior is reused.
        """
        with torch.set_grad_enabled(part == "encoder" and torch.is_grad_enabled()):
            mu, logvar = self.encoder(batch)
            if old_is_current:
                post = (mu.detach(), logvar.detach())
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
            kl_weight = gamma * clean.counts if beta is None else torch.full_like(clean.counts, beta)
            prior = self.composite_prior(clean, z, post)
            kld = ((log_norm_pdf(z, mu, logvar) - prior).sum(dim=1) * kl_weight).mean()
        self.decoder.requires_grad_(part == "decoder")
        logits = self.decoder(z)
        mll = multinomial_log_likelihood(logits, clean).mean()
        return -(mll - kld), (mu.detach(), logvar.detach())

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

    tags: ClassVar[ModelTags] = ModelTags(
        test_params={"hidden_dim": 32, "latent_dim": 8, "epochs": 10, "batch_size": 8, "learning_rate": 0.005}
    )

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
        self._next_old_post: tuple[torch.Tensor, torch.Tensor] | None = None

    def _old_posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``encoder_old`` of every training user's clean row (rows in ``_train_users`` order).

        ``encoder_old`` is fixed during the encoder passes, so one forward per epoch serves all of
        them instead of one per pass."""
        net = self.network_
        assert isinstance(net, _RecVAENet)
        mus, logvars = [], []
        with torch.no_grad():
            for sl in batched(len(self._train_users), int(self.batch_size)):
                mu, logvar = net.encoder_old(self._row_batch(self._train_users[sl]))
                mus.append(mu)
                logvars.append(logvar)
        return torch.cat(mus), torch.cat(logvars)

    def _pass(
        self,
        opt: torch.optim.Optimizer,
        dropout: float,
        part: str,
        old_post: tuple[torch.Tensor, torch.Tensor] | None = None,
        keep: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> float:
        """One pass over the training users; ``keep``: (mean, log-variance) tensors over
        ``_train_users`` that receive the posterior of every batch."""
        net = self.network_
        assert isinstance(net, _RecVAENet)

        def steps() -> Iterator[tuple[torch.Tensor, int]]:
            for idx in self._minibatches(len(self._train_users)):
                users = self._train_users[idx]
                clean = self._row_batch(users)
                batch = self._row_batch(users, dropout) if dropout > 0 else clean
                rows = torch.from_numpy(idx).to(self.device_)
                post = None if old_post is None else (old_post[0][rows], old_post[1][rows])
                # the decoder pass follows the refresh of encoder_old and feeds clean rows
                loss, (mu, logvar) = net.loss(
                    batch, clean, float(self.gamma), self.beta, part, post, old_is_current=part == "decoder"
                )
                if keep is not None:
                    keep[0][rows], keep[1][rows] = mu, logvar
                yield loss, len(idx)

        return minibatch_epoch(opt, steps())

    def _train_epoch(self, epoch: int) -> float:
        net = self.network_
        assert isinstance(net, _RecVAENet)
        # the decoder passes of the previous epoch fed every clean row through the encoder, which
        # then became encoder_old and has not changed since: its posterior is this epoch's prior
        old_post = self._next_old_post if self._next_old_post is not None else self._old_posterior()
        self._next_old_post = None
        for _ in range(int(self.n_enc_epochs)):
            self._pass(self.opt_encoder_, float(self.dropout), "encoder", old_post)
        net.encoder_old.load_state_dict(net.encoder.state_dict())  # copies the values
        loss = 0.0
        keep = (torch.empty_like(old_post[0]), torch.empty_like(old_post[1]))
        for _ in range(int(self.n_dec_epochs)):
            loss = self._pass(self.opt_decoder_, 0.0, "decoder", keep=keep)
        net.decoder.requires_grad_(True)
        self._next_old_post = keep
        return loss

    def _set_extra_state(self, state: Any) -> None:
        self._next_old_post = None  # a restored encoder: the cached posterior is stale

    def _score_batch(self, users: torch.Tensor) -> torch.Tensor:
        return self.network_(self._row_batch(users))
