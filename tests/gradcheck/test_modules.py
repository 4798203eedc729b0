"""Spectral norm, self-attention, Adam: values against references and gradients."""
import numpy as np
import pytest

import minigan.nn as nn
from minigan import Tensor, backend, manual_seed
from minigan.optim import Adam
from tests import reference
from tests.conftest import requires_torch
from tests.gradcheck.helpers import check, tensor


def _to64(module, device):
    for _, p in module.named_parameters():
        p.data = backend.to_device(p.data.astype(np.float64), device)
    for m in module.modules():
        for name in m.__dict__.get("_buffer_names", []):
            setattr(m, name, backend.to_device(getattr(m, name).astype(np.float64), device))
    return module


@pytest.mark.parametrize("kind", ["linear", "conv", "convt"])
def test_spectral_norm_converges_to_largest_singular_value(kind):
    manual_seed(0)
    layer = {"linear": nn.Linear(6, 4), "conv": nn.Conv2d(3, 5, 3), "convt": nn.ConvTranspose2d(3, 5, 4)}[kind]
    sn = nn.SpectralNorm(layer)
    for _ in range(200):
        sn.power_iteration()
    w = sn.weight_orig.numpy()
    mat = (np.moveaxis(w, 1, 0) if kind == "convt" else w).reshape(w.shape[1 if kind == "convt" else 0], -1)
    np.testing.assert_allclose(sn.sigma().item(), np.linalg.svd(mat, compute_uv=False)[0], rtol=1e-4)
    assert np.linalg.norm(sn.normalized_weight().numpy().reshape(mat.shape[0], -1) if kind != "convt" else 1) > 0


def test_spectral_norm_gradient_through_weight_not_u(device):
    manual_seed(1)
    sn = _to64(nn.SpectralNorm(nn.Conv2d(2, 3, 3, padding=1)), device)
    sn.eval()  # freeze u, v so finite differences see one function
    sn.power_iteration()
    x = tensor((2, 2, 5, 5), device, 0)
    check(lambda x, w: sn(x), x, sn.weight_orig)
    assert not hasattr(sn.u, "requires_grad")


@requires_torch
def test_spectral_norm_matches_torch():
    import torch

    manual_seed(2)
    conv = nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1)
    sn = nn.SpectralNorm(conv)
    ref = torch.nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(sn.weight_orig.numpy()))
        ref.bias.copy_(torch.from_numpy(conv.bias.numpy()))
    ref = torch.nn.utils.spectral_norm(ref)
    with torch.no_grad():
        ref.weight_u.copy_(torch.from_numpy(sn.u))
        ref.weight_v.copy_(torch.from_numpy(sn.v))
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3)).astype(np.float32)
    for _ in range(3):
        np.testing.assert_allclose(sn(Tensor(x)).numpy(), ref(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sn.u, ref.weight_u.numpy(), rtol=1e-4, atol=1e-6)


def test_self_attention_module_gradients(device):
    manual_seed(3)
    att = _to64(nn.SelfAttention(16, spectral=False), device)
    att.gamma.data[...] = 0.7  # at gamma = 0 the attention path gets no input gradient
    x = tensor((2, 16, 3, 4), device, 0)
    check(lambda x, g, wq: att(x), x, att.gamma, att.query.weight, mode="directional")


def test_self_attention_starts_as_identity():
    manual_seed(4)
    att = nn.SelfAttention(8)
    x = Tensor(np.random.default_rng(0).standard_normal((1, 8, 4, 4)).astype(np.float32))
    np.testing.assert_array_equal(att(x).numpy(), x.numpy())


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_matches_algorithm(device, weight_decay):
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(5)]
    p = nn.Parameter(backend.to_device(p0.copy(), device))
    opt = Adam([p], lr=0.01, betas=(0.5, 0.9), weight_decay=weight_decay)
    for g in grads:
        p.grad = backend.to_device(g, device)
        opt.step()
    expected = reference.adam(p0, grads, 0.01, (0.5, 0.9), 1e-8, weight_decay)
    np.testing.assert_allclose(p.numpy(), expected, rtol=1e-12, atol=1e-12)


@requires_torch
def test_adam_matches_torch():
    import torch

    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(10).astype(np.float32)
    ours = nn.Parameter(p0.copy())
    theirs = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    a = Adam([ours], lr=4e-4, betas=(0.0, 0.9))
    b = torch.optim.Adam([theirs], lr=4e-4, betas=(0.0, 0.9))
    for _ in range(10):
        g = rng.standard_normal(10).astype(np.float32)
        ours.grad = g
        theirs.grad = torch.from_numpy(g.copy())
        a.step()
        b.step()
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-6, atol=1e-7)
