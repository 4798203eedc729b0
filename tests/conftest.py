"""Shared fixtures: the device parametrization (cuda skipped where no GPU is present)."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp: its idle threads must not spin

import numpy as np
import pytest

from minigan import backend

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not backend.cuda_available(), reason="no CUDA GPU (CuPy) on this machine"))]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


requires_torch = pytest.mark.skipif(not has_torch(), reason="PyTorch is not installed")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
