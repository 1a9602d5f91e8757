"""Model-specific checks of the torch recommenders (the shared contract suite covers the rest)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from benchmark.errors import ConfigError
from benchmark.models import IterativeRecommender
from neural.base import TorchRecommender
from neural.lightgcn import LightGCN, layer_mean, normalized_adjacency
from neural.neumf import GMF, MLP, NeuMF
from neural.recvae import RecVAE
from neural.spectralcf import SpectralCF, laplacian_eigenvectors, random_walk_filter
from neural.vae import MultDAE, MultVAE, kl_anneal
from tests.synthetic import dense, planted_blocks

PLANTED = planted_blocks()
USERS = np.arange(PLANTED.train.n_users)

#: Small settings that learn the planted blocks in well under a second each: each model's
#: ``tags.test_params`` (what the contract suite uses too), on CPU with one thread.
SMALL: dict[str, TorchRecommender] = {
    cls.__name__.lower(): cls(**cls.tags.test_params, device="cpu", num_threads=1)  # type: ignore[arg-type]
    for cls in (NeuMF, GMF, MLP, MultVAE, MultDAE, RecVAE, LightGCN, SpectralCF)
}
assert set(SMALL) == {"neumf", "gmf", "mlp", "multvae", "multdae", "recvae", "lightgcn", "spectralcf"}


def heldout_rank_ok(scores: np.ndarray) -> np.ndarray:
    """Per user: is the held-out item strictly first among the unseen items?"""
    s = scores.astype(np.float64)
    s[dense(PLANTED.train) > 0] = -np.inf
    test = dense(PLANTED.test) > 0
    held = s[test]
    s[test] = -np.inf
    return held > s.max(axis=1)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_different_seeds_give_different_scores(name: str) -> None:
    a = SMALL[name].clone(epochs=2).fit(PLANTED.train).score(USERS)
    b = SMALL[name].clone(epochs=2, random_state=1).fit(PLANTED.train).score(USERS)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_seed_survives_other_torch_use_between_epochs(name: str) -> None:
    # a tuner callback (or another model) drawing from torch's global generator must not change training
    def disturb(model: IterativeRecommender, epoch: int) -> bool:
        torch.rand(7)
        np.random.rand(3)  # noqa: NPY002 - the legacy global generator, on purpose
        return False

    plain = SMALL[name].clone(epochs=3).fit(PLANTED.train).score(USERS)
    disturbed = SMALL[name].clone(epochs=3).fit(PLANTED.train, epoch_callback=disturb).score(USERS)
    np.testing.assert_array_equal(plain, disturbed)


@pytest.mark.parametrize("name", ["neumf", "multvae", "lightgcn"])
def test_tuner_style_early_stopping_restores_the_best_epoch_exactly(name: str) -> None:
    """Validate every epoch, patience 3, keep the best state, restore it when stopping."""
    best: dict[str, Any] = {"score": -1.0, "epoch": 0}
    history: list[float] = []

    def callback(model: IterativeRecommender, epoch: int) -> bool:
        scores = model.score(USERS)
        quality = float(heldout_rank_ok(scores).mean()) + 1e-3 * epoch * (epoch <= 4)  # peak at epoch 4
        history.append(quality)
        if quality > best["score"]:
            best.update(score=quality, epoch=epoch, state=model.get_state(), scores=scores)
        if epoch - best["epoch"] >= 3:
            model.set_state(best["state"])
            return True
        return False

    model = SMALL[name].clone(epochs=40)
    model.fit(PLANTED.train, epoch_callback=callback)
    assert model.epochs_run_ == best["epoch"] + 3
    np.testing.assert_array_equal(model.score(USERS), best["scores"])
    # and the refit with the best epoch count reproduces the same model
    refit = SMALL[name].clone(epochs=best["epoch"]).fit(PLANTED.train)
    np.testing.assert_array_equal(refit.score(USERS), best["scores"])


# ----------------------------------------------------------------------------- NeuMF
@pytest.mark.parametrize("cls", [NeuMF, GMF, MLP])
def test_neumf_fast_full_ranking_equals_the_network_on_every_pair(cls: type[NeuMF]) -> None:
    model = cls(layers="16,8", epochs=3, batch_size=64, learning_rate=0.01, device="cpu", num_threads=1).fit(
        PLANTED.train
    )
    n_u, n_i = PLANTED.train.shape
    u = torch.arange(n_u).repeat_interleave(n_i)
    i = torch.arange(n_i).repeat(n_u)
    model.network_.eval()
    with torch.no_grad():
        pairwise = model.network_(u, i).reshape(n_u, n_i).numpy()
    np.testing.assert_allclose(model.score(USERS), pairwise, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [NeuMF, GMF, MLP])
def test_neumf_forward_is_the_papers_concatenation_formula(cls: type[NeuMF]) -> None:
    # the forward avoids concatenations; it must equal out([p*q, MLP([p_u, q_i])]) (paper, Eq. 11-12)
    model = cls(factors=5, layers="8,6,4", epochs=1, device="cpu", num_threads=1).fit(PLANTED.train)
    net = model.network_
    u, i = torch.tensor([0, 3, 3, 17]), torch.tensor([2, 0, 9, 5])
    parts = []
    with torch.no_grad():
        if cls is not MLP:
            parts.append(net.gmf_user(u) * net.gmf_item(i))
        if cls is not GMF:
            h = torch.cat([net.mlp_user(u), net.mlp_item(i)], dim=1)
            for layer in net.mlp:
                h = torch.relu(layer(h))
            parts.append(h)
        expected = net.out(torch.cat(parts, dim=1)).squeeze(1)
        torch.testing.assert_close(net(u, i), expected)


def test_neumf_pretraining_initialises_from_gmf_and_mlp_then_uses_sgd() -> None:
    model = NeuMF(
        layers="16,8",
        epochs=10,
        batch_size=64,
        learning_rate=0.01,
        pretrain=True,
        pretrain_epochs=20,
        device="cpu",
        num_threads=1,
    ).fit(PLANTED.train)
    assert isinstance(model.optimizer_, torch.optim.SGD)
    assert heldout_rank_ok(model.score(USERS)).all()


def test_neumf_one_epoch_sees_every_positive_and_n_negatives_each(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[torch.Tensor] = []
    original = torch.nn.functional.binary_cross_entropy_with_logits

    def spy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seen.append(labels.detach().clone())
        return original(logits, labels)

    monkeypatch.setattr(torch.nn.functional, "binary_cross_entropy_with_logits", spy)
    NeuMF(layers="16,8", epochs=1, n_negatives=3, batch_size=50, device="cpu", num_threads=1).fit(
        PLANTED.train
    )
    labels = torch.cat(seen)
    assert int(labels.sum()) == PLANTED.train.nnz
    assert len(labels) == 4 * PLANTED.train.nnz


# ----------------------------------------------------------------------------- VAEs
def test_kl_annealing_follows_the_papers_linear_schedule_with_cap() -> None:
    assert kl_anneal(0, 200_000, 0.2) == 0.0
    assert kl_anneal(20_000, 200_000, 0.2) == pytest.approx(0.1)
    assert kl_anneal(40_000, 200_000, 0.2) == pytest.approx(0.2)
    assert kl_anneal(150_000, 200_000, 0.2) == pytest.approx(0.2)
    assert kl_anneal(150_000, 200_000, 1.0) == pytest.approx(0.75)


def test_multvae_counts_updates_and_uses_the_last_annealed_beta() -> None:
    # 24 users in batches of 5: 5 updates per epoch; beta of the last update is 14 / 100
    model = MultVAE(
        hidden_dims="8",
        latent_dim=4,
        epochs=3,
        batch_size=5,
        total_anneal_steps=100,
        anneal_cap=0.2,
        device="cpu",
        num_threads=1,
    ).fit(PLANTED.train)
    assert model.updates_ == 15
    assert model.beta_ == pytest.approx(0.14)


def test_multdae_has_no_latent_sampling_so_eval_scores_are_the_decoder_of_the_code() -> None:
    model = MultDAE(latent_dim=8, epochs=2, device="cpu", num_threads=1).fit(PLANTED.train)
    x = torch.from_numpy(dense(PLANTED.train).astype(np.float32))
    net = model.network_
    with torch.no_grad():
        h = torch.tanh(net.encoder[0](x / x.norm(dim=1, keepdim=True)))
        expected = net.decoder[0](h).numpy()
    np.testing.assert_allclose(model.score(USERS), expected, rtol=1e-5, atol=1e-5)


def test_recvae_refreshes_the_prior_encoder_and_decoder_pass_leaves_encoder_alone() -> None:
    model = RecVAE(hidden_dim=16, latent_dim=4, epochs=2, batch_size=8, device="cpu", num_threads=1).fit(
        PLANTED.train
    )
    enc, old = model.network_.encoder.state_dict(), model.network_.encoder_old.state_dict()
    for k in enc:
        torch.testing.assert_close(enc[k], old[k], rtol=0, atol=0)
    # the decoder pass's posterior of every user is kept as the next epoch's prior: it must be
    # encoder_old of the clean rows, as if recomputed
    assert model._next_old_post is not None
    model.network_.train()
    fresh = model._old_posterior()
    for kept, again in zip(model._next_old_post, fresh):
        torch.testing.assert_close(kept, again)
    model.set_state(model.get_state())  # a restored state drops the cache
    assert model._next_old_post is None


# ----------------------------------------------------------------------------- graph models
def test_lightgcn_normalized_adjacency_matches_dense_computation() -> None:
    r = np.array([[1, 1, 0], [0, 1, 0]], dtype=np.float64)  # item 2 isolated
    a = np.block([[np.zeros((2, 2)), r], [r.T, np.zeros((3, 3))]])
    deg = a.sum(1)
    inv = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg), where=deg > 0)
    expected = inv[:, None] * a * inv[None, :]
    got = normalized_adjacency(sp.csr_matrix(r)).toarray()
    np.testing.assert_allclose(got, expected)
    # user 0 (degree 2) - item 1 (degree 2): 1 / sqrt(2 * 2)
    assert got[0, 2 + 1] == pytest.approx(0.5)


def test_lightgcn_final_embedding_is_mean_of_propagated_layers() -> None:
    model = LightGCN(embedding_size=4, n_layers=2, epochs=1, device="cpu", num_threads=1).fit(PLANTED.train)
    e0 = model.network_.embedding.weight.detach().numpy().astype(np.float64)
    a = normalized_adjacency(PLANTED.train.matrix).toarray()
    final = (e0 + a @ e0 + a @ a @ e0) / 3
    n_u = PLANTED.train.n_users
    np.testing.assert_allclose(model.score(USERS), final[:n_u] @ final[n_u:].T, rtol=1e-4, atol=1e-5)


def test_lightgcn_layer_mean_backward_is_the_same_symmetric_map() -> None:
    a = normalized_adjacency(PLANTED.train.matrix)
    adj = torch.sparse_csr_tensor(
        torch.from_numpy(a.indptr),
        torch.from_numpy(a.indices),
        torch.from_numpy(a.data),
        size=a.shape,
        check_invariants=True,
    )
    e = torch.randn(a.shape[0], 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer_mean(adj, x, 2), (e,))
    dense = torch.from_numpy(a.toarray())
    torch.testing.assert_close(layer_mean(adj, e, 2), (e + dense @ e + dense @ dense @ e) / 3)


def test_lightgcn_bpr_loss_equals_the_reference_codes_formula() -> None:
    model = LightGCN(embedding_size=4, n_layers=2, epochs=1, device="cpu", num_threads=1).fit(PLANTED.train)
    net = model.network_
    n_u = PLANTED.train.n_users
    users, pos, neg = torch.tensor([0, 0, 5, 9]), torch.tensor([1, 1, 7, 2]), torch.tensor([3, 4, 3, 3])
    net.embedding.weight.grad = None  # fit leaves the last step's gradient
    loss = net.bpr_loss(torch.stack([users, pos + n_u, neg + n_u]), 0.01)
    loss.backward()
    got_grad = net.embedding.weight.grad.clone()
    net.embedding.weight.grad = None
    # gusye1234/LightGCN-PyTorch: mean softplus(neg - pos) + reg * (|u0|^2 + |i0|^2 + |j0|^2) / 2 / batch
    user_e, item_e = net.propagate()
    e0 = net.embedding.weight
    pos_s = (user_e[users] * item_e[pos]).sum(1)
    neg_s = (user_e[users] * item_e[neg]).sum(1)
    norms = e0[users].norm(2).pow(2) + e0[n_u + pos].norm(2).pow(2) + e0[n_u + neg].norm(2).pow(2)
    expected = torch.nn.functional.softplus(neg_s - pos_s).mean() + 0.01 * norms / 2 / len(users)
    expected.backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(got_grad, net.embedding.weight.grad)


def test_spectralcf_full_filter_equals_eigendecomposition_and_eigsh_finds_smallest() -> None:
    train = PLANTED.train.matrix
    n = sum(train.shape)
    lap = np.eye(n) - normalized_adjacency(train, self_loops=True).toarray()
    lam, u = np.linalg.eigh(lap)
    spectral = u @ np.diag(1 + lam) @ u.T  # U U^T + U Lambda U^T with every eigenvector
    np.testing.assert_allclose(np.eye(n) + lap, spectral, atol=1e-10)
    vals, vecs = laplacian_eigenvectors(train, 6, seed=0)
    np.testing.assert_allclose(np.sort(vals), lam[:6], atol=1e-4)
    # the eigsh vectors span the same low-pass filter as numpy's (4 zero eigenvalues: 4 blocks)
    v = vecs.astype(np.float64)
    np.testing.assert_allclose(v.T @ lap @ v, np.diag(vals), atol=1e-4)


def _reference_random_walk_filter(train: sp.csr_matrix, k: int | None) -> np.ndarray:
    """The reference code (lzheng21/SpectralCF): ``np.linalg.eig`` of the dense random-walk Laplacian."""
    n = sum(train.shape)
    a = np.zeros((n, n))
    a[: train.shape[0], train.shape[0] :] = train.toarray() > 0
    a = a + a.T + np.eye(n)
    lam, u = np.linalg.eig(np.eye(n) - a / a.sum(axis=1, keepdims=True))
    assert np.abs(lam.imag).max() < 1e-10 and np.abs(u.imag).max() < 1e-10
    lam, u = lam.real, u.real
    # distinct eigenvalues: otherwise eig's eigenvectors, and so a non-orthonormal U's filter, are not unique
    assert np.diff(np.sort(lam)).min() > 1e-6
    keep = np.argsort(lam)[: k or n]
    return u[:, keep] @ np.diag(1 + lam[keep]) @ u[:, keep].T


def test_spectralcf_random_walk_filter_is_the_reference_codes_dense_eig_filter() -> None:
    train = sp.random(7, 9, density=0.4, random_state=3, format="csr")
    train.data[:] = 1.0
    n = 16
    for k in (None, 5):
        np.testing.assert_allclose(
            random_walk_filter(train, k), _reference_random_walk_filter(train, k), atol=1e-5
        )
    # not the symmetric variant's I + L_sym: U is not orthonormal, the filter is dense and weights differ
    lap = np.eye(n) - normalized_adjacency(train, self_loops=True).toarray()
    assert np.abs(random_walk_filter(train) - (np.eye(n) + lap)).max() > 0.05
    # decomposed once per graph and spectrum (a study's trials share it), by content
    assert random_walk_filter(train) is random_walk_filter(sp.csr_matrix(train.toarray()))
    assert random_walk_filter(train, 5) is not random_walk_filter(train)
    with pytest.raises(ConfigError, match="n_eigenvectors=16"):
        random_walk_filter(train, 16)


def test_spectralcf_random_walk_filter_learns_the_planted_blocks() -> None:
    model = SpectralCF(laplacian="random_walk", **SpectralCF.tags.test_params, device="cpu", num_threads=1)
    model.fit(PLANTED.train)
    assert (
        model.network_.dense is not None
        and model.network_.dense.shape == (sum(PLANTED.train.matrix.shape),) * 2
    )
    assert heldout_rank_ok(model.score(USERS)).all()


def test_spectralcf_truncated_spectrum_learns_the_planted_blocks() -> None:
    model = SpectralCF(
        n_eigenvectors=8, epochs=50, batch_size=32, learning_rate=0.01, device="cpu", num_threads=1
    )
    assert heldout_rank_ok(model.fit(PLANTED.train).score(USERS)).all()


def test_spectralcf_users_sampling_is_one_step_on_distinct_users_positives_and_unseen_negatives() -> None:
    model = SpectralCF(sampling="users", batch_size=16, epochs=3, device="cpu", num_threads=1)
    model.fit(PLANTED.train)
    train = dense(PLANTED.train) > 0
    users, pos, neg = (t.numpy() for t in model._user_batch())
    assert len(users) == 16 and len(set(users.tolist())) == 16  # distinct users, drawn without replacement
    assert train[users, pos].all() and not train[users, neg].any()
    # the reference code's epoch is one optimiser step: 3 epochs = 3 steps (a pass over the pairs: many)
    steps = {int(s["step"]) for s in model.optimizer_.state.values()}
    assert steps == {3}
    pairs = SpectralCF(batch_size=16, epochs=1, device="cpu", num_threads=1).fit(PLANTED.train)
    assert {int(s["step"]) for s in pairs.optimizer_.state.values()} == {-(-PLANTED.train.matrix.nnz // 16)}


def test_spectralcf_rms_init_starts_rmsprop_like_tensorflow() -> None:
    # square average after one step: alpha * init + (1 - alpha) * g^2 with alpha = 0.9, so >= 0.9 from
    # TensorFlow's 1.0, while from torch's 0 it is 0.1 g^2 (the gradients here are far below 3)
    tf = SpectralCF(rms_init=1.0, sampling="users", batch_size=16, epochs=1, device="cpu", num_threads=1)
    pt = SpectralCF(sampling="users", batch_size=16, epochs=1, device="cpu", num_threads=1)
    for model, check in ((tf, lambda v: (v >= 0.9).all()), (pt, lambda v: (v < 0.9).all())):
        model.fit(PLANTED.train)
        assert all(check(s["square_avg"]) for s in model.optimizer_.state.values())


def test_min_epochs_defers_the_patience_stop_but_keeps_the_best_epoch() -> None:
    from benchmark.tuning.early_stopping import EarlyStopping

    def stopper() -> EarlyStopping:  # a validation value that peaks at epoch 2, then declines
        return EarlyStopping(lambda m: 1.0 / (1 + abs(m.epochs_run_ - 2)), every=1, patience=2)

    base = {"sampling": "users", "batch_size": 8, "epochs": 20, "device": "cpu", "num_threads": 1}
    for min_epochs, stopped_at in ((0, 4), (9, 9)):
        es = stopper()
        SpectralCF(min_epochs=min_epochs, **base).fit(PLANTED.train, epoch_callback=es)  # type: ignore[arg-type]
        assert es.history[-1][0] == stopped_at and es.best_epoch == 2
