import numpy as np
import pytest

import minigan.ops as F
from minigan.ops.elementwise import Abs, Add, Cast, Div, Exp, Log, Mul, Neg, Pow, Sqrt, Sub
from tests.gradcheck.helpers import check, checks, tensor

BROADCASTS = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (2, 3))]


@checks(Add, Sub, Mul, Div)
@pytest.mark.parametrize("sa,sb", BROADCASTS)
def test_binary_broadcast(device, sa, sb):
    a, b = tensor(sa, device, 0), tensor(sb, device, 1, offset=3.0)  # b away from 0 for div
    check(lambda a, b: a + b, a, b)
    check(lambda a, b: a - b, a, b)
    check(lambda a, b: a * b, a, b)
    check(lambda a, b: a / b, a, b)


@checks(Add, Mul, Sub, Div)
def test_scalar_operands(device):
    a = tensor((2, 3), device, 2, offset=2.0)
    check(lambda a: 2.0 * a + 1.0 - a / 3.0 + 1.0 / a, a)


@checks(Neg, Pow, Exp, Log, Sqrt, Abs)
@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_unary(device, shape):
    a = tensor(shape, device, 3)
    pos = tensor(shape, device, 4, scale=0.3, offset=2.0)
    check(lambda a: -a, a)
    check(lambda a: a ** 3, a)
    check(lambda p: p ** -0.5, pos)
    check(F.exp, a)
    check(F.log, pos)
    check(F.sqrt, pos)
    check(F.abs, a)  # N(0,1) values are never within eps of the kink


@checks(Cast)
def test_cast(device):
    a = tensor((3, 2), device, 5)
    check(lambda a: a.astype(np.float32).astype(np.float64) * 2.0, a, atol=1e-5, rtol=1e-4, eps=1e-3)
