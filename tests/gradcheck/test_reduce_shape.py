import numpy as np
import pytest

import minigan.ops as F
from minigan import Tensor, backend
from minigan.ops.reduce import Max, Mean, Sum
from minigan.ops.shape import Concat, GetItem, Pad, Reshape, Transpose
from tests.gradcheck.helpers import check, checks, tensor


@checks(Sum, Mean)
@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (1, True), ((0, 2), False), (-1, True)])
def test_sum_mean(device, axis, keepdims):
    a = tensor((2, 3, 4), device)
    check(lambda a: F.sum(a, axis, keepdims), a)
    check(lambda a: F.mean(a, axis, keepdims), a)


@checks(Max)
@pytest.mark.parametrize("axis", [None, 0, (1, 2), -1])
def test_max(device, axis):
    a = tensor((2, 3, 4), device, 7)
    check(lambda a: F.max(a, axis), a)


def test_max_ties_share_gradient():
    a = Tensor(np.array([1.0, 3.0, 3.0]), requires_grad=True)
    F.max(a).backward()
    np.testing.assert_allclose(a.grad, [0, 0.5, 0.5])


@checks(Reshape, Transpose)
def test_reshape_transpose(device):
    a = tensor((2, 3, 4), device)
    check(lambda a: F.reshape(a, (4, 6)) * 1.0, a)
    check(lambda a: F.transpose(a, 2, 0, 1)[0] * 1.0, a)
    check(lambda a: F.transpose(F.reshape(a, (6, 4))) * 1.0, a)


@checks(Concat)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(device, axis):
    a, b = tensor((2, 3, 4), device, 1), tensor((2, 3, 4), device, 2)
    c = tensor((2, 3, 4), device, 3)
    check(lambda a, b, c: F.concat([a, b, c], axis), a, b, c)


@checks(GetItem)
@pytest.mark.parametrize("index", [
    (slice(None), 1), (slice(0, 2), slice(None), slice(1, 3)), (Ellipsis, 0),
    (np.array([0, 1, 1]),),  # repeated rows must accumulate
])
def test_getitem(device, index):
    a = tensor((3, 4, 5), device)
    if isinstance(index[0], np.ndarray):
        index = (backend.to_device(index[0], device),)
    check(lambda a: a[index], a)


@checks(Pad)
@pytest.mark.parametrize("pads", [(1, 1, 1, 1), (0, 2, 3, 0)])
def test_pad(device, pads):
    a = tensor((2, 2, 3, 4), device)
    check(lambda a: F.pad2d(a, pads), a)


def test_getitem_takes_arrays_and_tensors_as_indices(device):
    a = tensor((3, 4), device, 1)
    rows = backend.to_device(np.array([2, 0, 2]), device)
    cols = backend.to_device(np.array([1, 3, 0]), device)
    want = a.numpy()[[2, 0, 2], [1, 3, 0]]
    np.testing.assert_array_equal(a[rows, cols].numpy(), want)
    np.testing.assert_array_equal(a[Tensor(rows), cols].numpy(), want)
    np.testing.assert_array_equal(a[Tensor(rows)].numpy(), a.numpy()[[2, 0, 2]])
