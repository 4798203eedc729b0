import numpy as np
import pytest

import minigan.ops as F
from minigan import Tensor
from minigan.ops.activation import Activation
from minigan.ops.softmax import LogSoftmax, Softmax
from tests import reference
from tests.gradcheck.helpers import check, checks, tensor


@checks(Activation)
@pytest.mark.parametrize("name,fn", [
    ("relu", F.relu), ("leaky_relu", lambda x: F.leaky_relu(x, 0.1)), ("elu", F.elu),
    ("elu_alpha", lambda x: F.elu(x, 0.7)), ("tanh", F.tanh), ("sigmoid", F.sigmoid)])
@pytest.mark.parametrize("shape", [(7,), (2, 3, 4, 5)])
def test_activations(device, name, fn, shape):
    check(fn, tensor(shape, device, 3, scale=2.0))


def test_activation_values():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    t = Tensor(x)
    for name, fn, alpha in [("relu", F.relu, 0.0), ("leaky_relu", lambda t: F.leaky_relu(t, 0.1), 0.1),
                            ("elu", F.elu, 1.0), ("tanh", F.tanh, 0.0), ("sigmoid", F.sigmoid, 0.0)]:
        np.testing.assert_allclose(fn(t).numpy(), reference.activation(x, name, alpha), rtol=1e-12, err_msg=name)
    nan = Tensor(np.array([np.nan, -1.0, 1.0]))
    for fn in (F.relu, F.leaky_relu, F.elu, F.tanh, F.sigmoid):  # a NaN must never be laundered into a number
        assert np.isnan(fn(nan).numpy()[0]), fn.__name__
    big = Tensor(np.array([-800.0, 800.0]))
    assert np.all(np.isfinite(F.sigmoid(big).numpy()))


@checks(Softmax, LogSoftmax)
@pytest.mark.parametrize("shape,axis", [((3, 5), -1), ((2, 4, 3), 1), ((2, 3, 4), 0), ((1, 7), 1)])
def test_softmax(device, shape, axis):
    x = tensor(shape, device, 0, scale=2.0)
    check(lambda x: F.softmax(x, axis), x)
    check(lambda x: F.log_softmax(x, axis), x)


def test_softmax_is_stable_and_normalised():
    x = Tensor(np.array([[1000.0, 1001.0, 999.0], [-1e4, 0.0, 1e4]]))
    y = F.softmax(x).numpy()
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(F.log_softmax(x).numpy()), y, atol=1e-15)
