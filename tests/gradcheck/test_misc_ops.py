"""Upsample, dropout, losses, attention."""
import numpy as np
import pytest

import minigan.ops as F
from minigan import Tensor, backend
from minigan.ops.dropout import Dropout
from minigan.ops.losses import BCEWithLogits
from minigan.ops.upsample import UpsampleNearest
from tests import reference
from tests.gradcheck.helpers import check, checks, tensor


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
