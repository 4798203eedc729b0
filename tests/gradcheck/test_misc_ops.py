"""Upsample, dropout, losses, attention."""
import importlib
from unittest import mock

import numpy as np
import pytest

import minigan.ops as F
from minigan import Tensor, backend
from minigan.ops.attention import Attention
from minigan.ops.dropout import Dropout
from minigan.ops.losses import BCEWithLogits
from minigan.ops.upsample import UpsampleNearest
from tests import reference
from tests.gradcheck.helpers import check, checks, tensor

attention_ops = importlib.import_module("minigan.ops.attention")  # minigan.ops.attention is also the function


@checks(UpsampleNearest)
@pytest.mark.parametrize("shape,scale", [((2, 3, 4, 4), 2), ((1, 2, 3, 5), 3), ((1, 1, 1, 1), 2)])
def test_upsample(device, shape, scale):
    check(lambda x: F.upsample_nearest(x, scale), tensor(shape, device))


def test_upsample_values():
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    y = F.upsample_nearest(Tensor(x), 2).numpy()
    np.testing.assert_array_equal(y, reference.upsample_nearest(x, 2))


@checks(Dropout)
def test_dropout(device):
    x = tensor((4, 5), device)
    mask = backend.to_device((np.random.default_rng(0).random((4, 5)) > 0.3) / 0.7, device)
    check(lambda x: Dropout.apply(x, mask), x)


def test_dropout_statistics():
    rng = np.random.default_rng(0)
    y = F.dropout(Tensor(np.ones((200, 200))), 0.25, rng).numpy()
    assert abs((y == 0).mean() - 0.25) < 0.01
    assert abs(y.mean() - 1.0) < 0.02
    same = Tensor(np.ones(3))
    assert F.dropout(same, 0.5, rng, training=False) is same


@checks(BCEWithLogits)
@pytest.mark.parametrize("target", [0.0, 1.0, "soft"])
def test_bce_with_logits(device, target):
    x = tensor((6, 1), device, 0, scale=3.0)
    t = backend.to_device(np.random.default_rng(1).uniform(0.7, 1.0, (6, 1)), device) if target == "soft" else target
    check(lambda x: F.bce_with_logits(x, t), x)


def test_bce_with_logits_values_and_stability():
    x = np.array([-3.0, 0.0, 2.0])
    t = np.array([0.0, 1.0, 0.9])
    expected = -(t * np.log(1 / (1 + np.exp(-x))) + (1 - t) * np.log(1 - 1 / (1 + np.exp(-x)))).mean()
    np.testing.assert_allclose(F.bce_with_logits(Tensor(x), t).item(), expected, rtol=1e-12)
    big = Tensor(np.array([1e4, -1e4]), requires_grad=True)
    loss = F.bce_with_logits(big, np.array([0.0, 1.0]))
    loss.backward()
    np.testing.assert_allclose(loss.item(), 1e4)
    np.testing.assert_allclose(big.grad, [0.5, -0.5])


def test_hinge_and_l1_values():
    real, fake = Tensor(np.array([2.0, 0.5, -1.0])), Tensor(np.array([-2.0, 0.0, 1.0]))
    np.testing.assert_allclose(F.hinge_d_loss(real, fake).item(), (0 + 0.5 + 2) / 3 + (0 + 1 + 2) / 3)
    np.testing.assert_allclose(F.hinge_g_loss(fake).item(), 1 / 3)
    np.testing.assert_allclose(F.l1_loss(real, fake).item(), (4 + 0.5 + 2) / 3)


# composites of checked ops: their gradients are their parts'
def test_composite_losses(device):
    real, fake = tensor((5, 1), device, 0), tensor((5, 1), device, 1)
    check(F.hinge_d_loss, real, fake)
    check(F.hinge_g_loss, fake)
    check(F.l1_loss, real, fake)
    labels = backend.to_device(np.array([0, 2, 1, 2, 0]), device)
    check(lambda z: F.cross_entropy(z, labels), tensor((5, 3), device, 2))


def test_cross_entropy_value():
    z = np.array([[1.0, 2.0, 0.5], [0.1, 0.2, 3.0]])
    labels = np.array([1, 2])
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    np.testing.assert_allclose(F.cross_entropy(Tensor(z), labels).item(), -logp[[0, 1], labels].mean())


def test_attention_values_and_gradient(device):
    q, k, v = tensor((2, 2, 6), device, 0), tensor((2, 2, 6), device, 1), tensor((2, 3, 6), device, 2)
    out = F.attention(q, k, v).numpy()
    np.testing.assert_allclose(out, reference.attention(q.numpy(), k.numpy(), v.numpy()), rtol=1e-10)
    check(F.attention, q, k, v)


def small_blocks():
    """The fused CPU attention on tiny maps: blocks of 2 rows of 6 (three an image, two partial sums)."""
    return mock.patch.object(attention_ops, "ATTENTION_BLOCK", 12)


def _attention_graph(q, k, v):
    """The output and the Function that made it (the inputs are taken as needing gradients)."""
    q, k, v = (Tensor(t.data, requires_grad=True) for t in (q, k, v))
    out = F.attention(q, k, v)
    return out, out._node[0]


@checks(Attention)
def test_fused_attention_values_and_gradient():
    q, k, v = tensor((2, 2, 6), "cpu", 0), tensor((2, 2, 6), "cpu", 1), tensor((2, 3, 6), "cpu", 2)
    with small_blocks():
        out, made_by = _attention_graph(q, k, v)
        assert made_by is Attention
        np.testing.assert_allclose(out.numpy(), reference.attention(q.numpy(), k.numpy(), v.numpy()), rtol=1e-12)
        check(F.attention, q, k, v)


def _values_and_grads(q, k, v, g):
    leaves = [Tensor(a, requires_grad=True) for a in (q, k, v)]
    out = F.attention(*leaves)
    out.backward(g)
    return [out.numpy()] + [t.grad for t in leaves]


def test_fused_attention_equals_the_composed_form_in_float32(monkeypatch):
    """Many blocks an image, an odd batch, uneven parts: the same values and gradients as matmul + softmax."""
    rng = np.random.default_rng(3)
    n, cq, cv, length = 3, 4, 8, 64
    q, k = rng.standard_normal((n, cq, length), np.float32), rng.standard_normal((n, cq, length), np.float32)
    v, g = rng.standard_normal((n, cv, length), np.float32), rng.standard_normal((n, cv, length), np.float32)
    composed = _values_and_grads(q, k, v, g)
    monkeypatch.setattr(attention_ops, "ATTENTION_BLOCK", 5 * length)  # 5 rows a block: 13 blocks, parts of 7 and 6
    assert _attention_graph(Tensor(q), Tensor(k), Tensor(v))[1] is Attention
    for got, want in zip(_values_and_grads(q, k, v, g), composed):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_fused_attention_repeats_its_bits_on_one_and_two_threads(monkeypatch):
    from minigan.backend import threads

    rng = np.random.default_rng(4)
    q, k, v, g = (rng.standard_normal(s, np.float32) for s in [(5, 2, 6), (5, 2, 6), (5, 3, 6), (5, 3, 6)])
    runs = []
    for count in (1, 2, 2):
        monkeypatch.setattr(threads.numba, "get_num_threads", lambda: count)
        monkeypatch.setattr(threads._Health, "skip", 0)
        with small_blocks():
            runs.append(_values_and_grads(q, k, v, g))
    for run in runs[1:]:
        for got, want in zip(run, runs[0]):
            np.testing.assert_array_equal(got, want)


def test_attention_is_fused_only_on_the_cpu_past_one_block_or_on_a_large_batch_of_long_maps(device):
    def fused(n, length):
        x = tensor((n, 1, length), device)
        return _attention_graph(x, x, x)[1] is Attention

    on_cpu = device == "cpu"
    assert fused(1, 1024) == on_cpu  # one image's (L, L) is more than a block
    assert fused(16, 256) == on_cpu  # (N, L, L) of 1M elements, L = 256: the main example's 16x16 map
    assert not fused(1, 256)
    assert not fused(15, 256)  # just under FUSED_MIN_ELEMENTS
    assert not fused(256, 64)  # 1M elements, but L under FUSED_MIN_LENGTH
