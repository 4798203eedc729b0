"""Check a function's analytic gradients against central finite differences (float64).

Usage::

    x = Tensor(np.random.randn(2, 3), requires_grad=True, dtype=np.float64)
    gradcheck(lambda x: (x * x).sum(), [x])

The function may return a tensor of any shape; it is reduced to a scalar with
a fixed random weighting ``L = sum(r * f(inputs))`` so every output element
matters. Two modes:

* ``full``: perturb every element of every input that requires grad, one at a
  time (exact, O(size) evaluations -- for small inputs);
* ``directional``: perturb each input along one random unit direction ``d`` and
  compare ``(L(x + eps d) - L(x - eps d)) / 2 eps`` with ``<grad, d>`` (Chainer's
  check_backward; cheap for big inputs, still fails for a wrong gradient with
  probability ~1).

Raises :class:`GradcheckError` with the worst mismatch on failure, returns True.
"""
from __future__ import annotations

import numpy as np

from minigan import backend
from minigan.tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    pass


def _scalarize(out, weights):
    return float((backend.to_numpy(out.data).astype(np.float64) * weights).sum())


def gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, mode="full", n_directions=3, seed=0):
    inputs = list(inputs)
    checked = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad.")
    for t in checked:
        if t.dtype != np.float64:
            raise ValueError(f"gradcheck needs float64 inputs, got {t.dtype}: finite differences in float32 are noise.")
    rng = np.random.default_rng(seed)

    out = fn(*inputs)
    weights = rng.standard_normal(out.shape)
    for t in checked:
        t.grad = None
    xp = backend.array_module(out.data)
    out.backward(xp.asarray(weights, dtype=out.dtype))
    analytic = [backend.to_numpy(t.grad) if t.grad is not None else np.zeros(t.shape) for t in checked]

    def loss():
        with no_grad():
            return _scalarize(fn(*inputs), weights)

    for index, (t, grad) in enumerate(zip(checked, analytic)):
        if mode == "full":
            numeric = np.zeros(t.shape)
            flat = t.data.reshape(-1)  # a view: perturb in place
            for i in range(flat.size):
                old = float(flat[i])
                flat[i] = old + eps
                plus = loss()
                flat[i] = old - eps
                minus = loss()
                flat[i] = old
                numeric.reshape(-1)[i] = (plus - minus) / (2 * eps)
            _compare(numeric, grad, atol, rtol, f"input {index} {t.shape}")
        elif mode == "directional":
            base = t.data.copy()
            for _ in range(n_directions):
                d = rng.standard_normal(t.shape)
                d /= np.linalg.norm(d)
                dd = xp.asarray(d)
                t.data = base + eps * dd
                plus = loss()
                t.data = base - eps * dd
                minus = loss()
                t.data = base.copy()
                numeric = (plus - minus) / (2 * eps)
                _compare(np.array(numeric), np.array((grad * d).sum()), atol, rtol,
                         f"input {index} {t.shape} along a random direction")
        else:
            raise ValueError(f"gradcheck mode must be 'full' or 'directional', not {mode!r}.")
    return True


def _compare(numeric, analytic, atol, rtol, where):
    err = np.abs(numeric - analytic)
    bound = atol + rtol * np.abs(numeric)
    if np.all(err <= bound):
        return
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.ndim else ()
    raise GradcheckError(
        f"gradient mismatch for {where}: at index {worst} numeric {np.asarray(numeric)[worst]:.8g} "
        f"vs analytic {np.asarray(analytic)[worst]:.8g} (max abs error {err.max():.3g})."
    )
