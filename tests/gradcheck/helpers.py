"""The gradient-check bookkeeping: which Function each test checks, proven at run time.

``@checks(Conv2d, ...)`` records that a test gradient-checks those Functions
(``test_coverage.py`` fails for any registered Function that no test claims),
and when the test runs it asserts that each claimed Function's backward was
really called, so a claim cannot outlive the check it names.
"""
from __future__ import annotations

import contextlib
import functools

import numpy as np

from minigan import Tensor, backend, gradcheck

COVERED: dict[type, list] = {}  # Function -> the test functions that check it


@contextlib.contextmanager
def _record_backward(functions):
    seen = set()
    originals = {f: f.__dict__["backward"] for f in functions}

    def recorder(f, original):
        def backward(ctx, g):
            seen.add(f)
            return original.__func__(ctx, g)
        return staticmethod(backward)

    for f, original in originals.items():
        f.backward = recorder(f, original)
    try:
        yield seen
    finally:
        for f, original in originals.items():
            f.backward = original


def checks(*functions):
    def decorate(test):
        @functools.wraps(test)
        def wrapper(*args, **kwargs):
            with _record_backward(functions) as seen:
                result = test(*args, **kwargs)
            missing = [f.__name__ for f in functions if f not in seen]
            assert not missing, f"{test.__name__} claims to check {missing} but never ran their backward"
            return result

        for f in functions:
            COVERED.setdefault(f, []).append(wrapper)
        return wrapper
    return decorate


def tensor(shape, device, seed=0, scale=1.0, offset=0.0, grad=True):
    """A float64 Tensor of N(offset, scale^2) values on ``device``."""
    data = np.random.default_rng(seed).standard_normal(shape) * scale + offset
    return Tensor(backend.to_device(data, device), requires_grad=grad)


def check(fn, *inputs, mode="full", **kwargs):
    """gradcheck with tolerances suited to float64 central differences."""
    return gradcheck(fn, list(inputs), mode=mode, **kwargs)


@contextlib.contextmanager
def settings(module, **values):
    """The module's attributes set to ``values`` for the length of the block, then put back."""
    saved = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)
