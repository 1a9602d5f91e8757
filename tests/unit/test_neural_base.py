"""Shared torch machinery: negative sampling, devices, threads, seeds, failure modes."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import neural.base as base
from benchmark.errors import ConfigError, ModelError
from neural.base import parse_layers, resolve_device, resolve_threads, sample_negatives
from neural.neumf import NeuMF
from neural.vae import MultDAE
from tests.synthetic import planted_blocks, random_matrix

PLANTED = planted_blocks()


# ----------------------------------------------------------------------------- negative sampling
@st.composite
def sparse_rows(draw: st.DrawFn) -> tuple[sp.csr_matrix, np.ndarray]:
    n_users = draw(st.integers(1, 12))
    n_items = draw(st.integers(2, 15))
    dense = np.array(
        draw(
            st.lists(
                st.lists(st.booleans(), min_size=n_items, max_size=n_items),
                min_size=n_users,
                max_size=n_users,
            )
        )
    )
    dense[:, 0] = False  # every user keeps at least one negative
    users = np.array(draw(st.lists(st.integers(0, n_users - 1), min_size=1, max_size=200)))
    return sp.csr_matrix(dense.astype(np.float32)), users


@settings(max_examples=100, deadline=None)
@given(data=sparse_rows(), seed=st.integers(0, 2**32 - 1))
def test_sampled_negative_is_never_a_positive_and_in_range(
    data: tuple[sp.csr_matrix, np.ndarray], seed: int
) -> None:
    m, users = data
    m.sort_indices()
    neg = sample_negatives(m.indptr, m.indices, users, m.shape[1], np.random.default_rng(seed))
    assert neg.shape == users.shape
    assert ((neg >= 0) & (neg < m.shape[1])).all()
    assert (m.toarray()[users, neg] == 0).all()


def test_sampled_negatives_are_uniform_over_the_unseen_items() -> None:
    # user 0 saw items 0, 2 and 5 of 7: the unseen 1, 3, 4, 6 each get a quarter of the draws
    m = sp.csr_matrix(np.array([[1, 0, 1, 0, 0, 1, 0], [0, 1, 0, 0, 0, 0, 0]], dtype=np.float32))
    neg = sample_negatives(m.indptr, m.indices, np.zeros(40_000, dtype=np.int64), 7, np.random.default_rng(1))
    freq = np.bincount(neg, minlength=7) / len(neg)
    np.testing.assert_allclose(freq[[1, 3, 4, 6]], 0.25, atol=0.01)
    assert freq[[0, 2, 5]].sum() == 0


def test_user_who_saw_every_item_has_no_negative_and_raises() -> None:
    m = sp.csr_matrix(np.array([[1, 1], [1, 0]], dtype=np.float32))
    with pytest.raises(ConfigError, match="user 0 has interacted with all 2 items"):
        sample_negatives(m.indptr, m.indices, np.array([1, 0]), 2, np.random.default_rng(0))


# ----------------------------------------------------------------------------- device, threads
def test_device_auto_is_cpu_without_cuda_and_cuda_when_available() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_explicit_cuda_without_gpu_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")


def test_threads_come_from_param_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(base.THREADS_ENV, "3")
    assert resolve_threads(2) == 2
    assert resolve_threads(None) == 3
    monkeypatch.setenv(base.THREADS_ENV, "zero")
    with pytest.raises(ConfigError, match="REPROREC_TORCH_THREADS='zero'"):
        resolve_threads(None)


def test_fit_sets_torch_threads_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.setenv(base.THREADS_ENV, "1")
    try:
        MultDAE(epochs=1, latent_dim=4, device="cpu").fit(PLANTED.train)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        os.environ.pop(base.THREADS_ENV, None)


def test_parse_layers_accepts_lists_ints_and_strings() -> None:
    assert parse_layers("64,32, 16,8") == [64, 32, 16, 8]
    assert parse_layers((600,)) == [600]
    assert parse_layers(200) == [200]
    assert parse_layers("") == []
    with pytest.raises(ConfigError, match="'64,x'"):
        parse_layers("64,x")
    with pytest.raises(ConfigError, match="width below 1"):
        parse_layers([8, 0])


# ----------------------------------------------------------------------------- failure modes
class _DivergingDAE(MultDAE):
    """A DAE whose loss becomes NaN at epoch 3 (what an exploding learning rate produces)."""

    def _train_epoch(self, epoch: int) -> float:
        loss = super()._train_epoch(epoch)
        return math.nan if epoch == 3 else loss


def test_nan_loss_raises_model_error_naming_epoch_and_last_finite_loss() -> None:
    model = _DivergingDAE(epochs=10, latent_dim=4, batch_size=8, device="cpu")
    with pytest.raises(ModelError, match=r"became nan at epoch 3 \(last finite loss: [0-9.]+\)") as info:
        model.fit(PLANTED.train)
    assert f"{model.losses_[-1]:.6g}" in str(info.value)
    assert len(model.losses_) == 2


def test_really_exploding_learning_rate_is_reported_as_model_error() -> None:
    # pre-trained NeuMF continues with plain SGD (as in the paper): at learning rate 1 it diverges
    model = NeuMF(
        epochs=5,
        layers="16,8",
        batch_size=8,
        learning_rate=1.0,
        pretrain=True,
        pretrain_epochs=1,
        device="cpu",
        num_threads=1,
    )
    with pytest.raises(
        ModelError, match=r"NeuMF: training loss became nan at epoch 1 \(last finite loss: None\)"
    ):
        model.fit(random_matrix(30, 25, density=0.3, seed=3))


def test_configuration_larger_than_memory_raises_config_error_with_estimate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(base, "memory_available", lambda device: 2**20)
    model = MultDAE(latent_dim=4, batch_size=100_000, device="cpu")
    with pytest.raises(
        ConfigError, match=r"MultDAE: this configuration needs about [0-9.]+ GiB .* 0\.00 GiB"
    ):
        model.fit(PLANTED.train)


# ----------------------------------------------------------------------------- sparse row batches
def test_sparse_first_layer_and_likelihood_equal_the_dense_computation() -> None:
    train = random_matrix(12, 9, density=0.3, seed=5).matrix
    users = np.array([3, 0, 7, 7])
    dense_x = torch.from_numpy(train[users].toarray())
    layer_a = torch.nn.Linear(9, 4)
    layer_b = torch.nn.Linear(9, 4)
    layer_b.load_state_dict(layer_a.state_dict())
    batch = base.row_batch(train, users, dropout=0.0, device=torch.device("cpu"))
    out_sparse = base.sparse_linear(batch, layer_a)
    out_dense = layer_b(torch.nn.functional.normalize(dense_x, dim=1))
    torch.testing.assert_close(out_sparse, out_dense)
    logits = torch.randn(4, 9)
    expected = (torch.log_softmax(logits, dim=1) * dense_x).sum(dim=1)
    torch.testing.assert_close(base.multinomial_log_likelihood(logits, batch), expected)
    # the backward through the sparse product gives the dense gradient of the weights
    (out_sparse**2).sum().backward()
    (out_dense**2).sum().backward()
    assert layer_a.weight.grad is not None and layer_b.weight.grad is not None
    torch.testing.assert_close(layer_a.weight.grad, layer_b.weight.grad)
    torch.testing.assert_close(batch.counts, dense_x.sum(dim=1))


def test_row_batch_dropout_zeroes_entries_and_rescales_the_kept_ones() -> None:
    train = sp.csr_matrix(np.ones((2, 400), dtype=np.float32))
    torch.manual_seed(0)
    batch = base.row_batch(train, np.array([0, 1]), dropout=0.5, device=torch.device("cpu"))
    values = batch.x.values().numpy()
    kept = values[values > 0]
    np.testing.assert_allclose(kept, (1 / np.sqrt(400)) / 0.5)  # normalised, then scaled by 1/(1-p)
    assert 0.4 < len(kept) / len(values) < 0.6


def test_fused_multinomial_likelihood_gradient_equals_log_softmax_autograd() -> None:
    train = random_matrix(10, 13, density=0.35, seed=11).matrix
    users = np.array([4, 1, 9, 1, 0])
    batch = base.row_batch(train, users, dropout=0.0, device=torch.device("cpu"))
    dense_x = torch.from_numpy(train[users].toarray())
    upstream = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.25])  # a different weight per row
    fused = (3 * torch.randn(5, 13)).requires_grad_(True)
    reference = fused.detach().clone().requires_grad_(True)
    (base.multinomial_log_likelihood(fused, batch) * upstream).sum().backward()
    ((torch.log_softmax(reference, dim=1) * dense_x).sum(dim=1) * upstream).sum().backward()
    assert fused.grad is not None and reference.grad is not None
    torch.testing.assert_close(fused.grad, reference.grad)
    # d/dl_ui = g_u (x_ui - n_u softmax_ui): each row's gradient sums to zero
    torch.testing.assert_close(fused.grad.sum(dim=1), torch.zeros(5), atol=1e-5, rtol=0)


def test_sparse_input_linear_is_the_linear_map_with_transposed_weight_and_gradient() -> None:
    train = random_matrix(9, 11, density=0.4, seed=3).matrix
    users = np.array([0, 5, 8])
    linear = torch.nn.Linear(11, 6)
    layer = base.SparseInputLinear.from_linear(linear)
    torch.testing.assert_close(layer.weight, linear.weight.detach().T, rtol=0, atol=0)
    batch = base.row_batch(train, users, dropout=0.0, device=torch.device("cpu"))
    x = torch.nn.functional.normalize(torch.from_numpy(train[users].toarray()), dim=1)
    out_sparse, out_dense, out_linear = layer(batch), layer(x), linear(x)
    torch.testing.assert_close(out_sparse, out_linear)
    torch.testing.assert_close(out_dense, out_linear)
    (out_sparse**2).sum().backward()
    (out_linear**2).sum().backward()
    assert layer.weight.grad is not None and linear.weight.grad is not None
    torch.testing.assert_close(layer.weight.grad, linear.weight.grad.T)
    torch.testing.assert_close(layer.bias.grad, linear.bias.grad)
