import pytest

import minigan.ops as F
from minigan.ops.matmul import Linear, MatMul
from tests.gradcheck.helpers import check, checks, tensor


@checks(MatMul)
@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 2)), ((2, 3, 4), (4, 5)),
                                   ((5, 4), (3, 4, 2)), ((1, 1, 3), (1, 3, 1))])
def test_matmul(device, sa, sb):
    a, b = tensor(sa, device, 0), tensor(sb, device, 1)
    check(F.matmul, a, b)


@checks(Linear)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [1, 4])
def test_linear(device, bias, batch):
    x, w = tensor((batch, 5), device, 0), tensor((3, 5), device, 1)
    if bias:
        check(F.linear, x, w, tensor((3,), device, 2))
    else:
        check(lambda x, w: F.linear(x, w), x, w)
