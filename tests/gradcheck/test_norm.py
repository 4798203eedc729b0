"""Batch norm: gradients in both modes, forward values, running statistics."""
import numpy as np
import pytest

import minigan.nn as nn
import minigan.ops as F
from minigan import Tensor, backend
from minigan.ops.norm import BatchNorm2d, BatchNormEval
from tests import reference
from tests.conftest import requires_torch
from tests.gradcheck.helpers import check, checks, tensor


@checks(BatchNorm2d)
@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (1, 2, 3, 5), (5, 1, 1, 1), (3, 4, 2, 1)])
def test_batch_norm_train(device, shape):
    x = tensor(shape, device, 0, scale=2.0, offset=1.0)
    g = tensor((shape[1],), device, 1, offset=1.0)
    b = tensor((shape[1],), device, 2)
    check(lambda x, g, b: F.batch_norm2d(x, g, b, training=True), x, g, b)


@checks(BatchNormEval)
def test_batch_norm_eval(device):
    x = tensor((2, 3, 4, 4), device, 0)
    g, b = tensor((3,), device, 1, offset=1.0), tensor((3,), device, 2)
    rm = backend.to_device(np.array([0.1, -0.2, 0.3]), device)
    rv = backend.to_device(np.array([1.5, 0.5, 2.0]), device)
    check(lambda x, g, b: F.batch_norm2d(x, g, b, rm, rv, training=False), x, g, b)


def test_batch_norm_forward_matches_reference(device):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5, 5)) * 3 + 2
    g, b = rng.standard_normal(3), rng.standard_normal(3)
    y = F.batch_norm2d(*(Tensor(backend.to_device(a, device)) for a in (x, g, b)), training=True)
    np.testing.assert_allclose(y.numpy(), reference.batch_norm(x, g, b, 1e-5)[0], rtol=1e-10, atol=1e-10)


@requires_torch
def test_batch_norm_module_matches_torch_running_stats():
    import torch

    rng = np.random.default_rng(0)
    ours, theirs = nn.BatchNorm2d(3, momentum=0.1), torch.nn.BatchNorm2d(3, momentum=0.1)
    for step in range(3):
        x = (rng.standard_normal((4, 3, 5, 5)) * (step + 1)).astype(np.float32)
        y_ours = ours(Tensor(x)).numpy()
        y_theirs = theirs(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(y_ours, y_theirs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-5, atol=1e-6)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(ours(Tensor(x)).numpy(), theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)
