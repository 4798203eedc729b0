"""The rule "every op is gradient-checked" cannot silently rot:

* every registered Function has a test that claims to check it, and
* every such test fails when that Function's backward is deliberately wrong
  (each gradient scaled by 1.01): the check really checks.
"""
import importlib
import inspect
import pkgutil

import pytest

import minigan.nn  # noqa: F401  (registers every Function)
import minigan.ops  # noqa: F401
import tests.gradcheck as suite
from minigan.gradcheck import GradcheckError
from minigan.tensor import Function
from tests.gradcheck.helpers import COVERED


def _import_suite():
    for info in pkgutil.iter_modules(suite.__path__):
        if info.name.startswith("test_") and info.name != "test_coverage":
            importlib.import_module(f"{suite.__name__}.{info.name}")


_import_suite()


def test_every_function_has_a_gradient_check():
    unchecked = sorted(f"{f.__module__}.{f.__name__}" for f in Function.registry
                       if f not in COVERED and not f.__module__.startswith("tests."))
    assert not unchecked, f"Functions with no gradient check: {unchecked}"


def _first_case(test):
    """Keyword arguments of a test's first parametrization, on the CPU."""
    kwargs = {}
    for mark in getattr(test, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names, values = mark.args[0], mark.args[1]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        first = values[0]
        first = first.values if hasattr(first, "values") else first
        kwargs.update(zip(names, first if len(names) > 1 else (first,)))
    if "device" in inspect.signature(test).parameters:
        kwargs["device"] = "cpu"
    return kwargs


@pytest.mark.parametrize("function", sorted(COVERED, key=lambda f: f.__name__), ids=lambda f: f.__name__)
def test_a_wrong_backward_fails_its_check(function):
    original = function.__dict__["backward"]

    def wrong(ctx, g):
        grads = original.__func__(ctx, g)
        grads = grads if isinstance(grads, tuple) else (grads,)
        return tuple(None if gi is None else gi * 1.01 for gi in grads)

    function.backward = staticmethod(wrong)
    try:
        for test in COVERED[function]:
            with pytest.raises(GradcheckError):
                test(**_first_case(test))
    finally:
        function.backward = original
