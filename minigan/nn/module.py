"""Module and Parameter: named parameters, buffers, train/eval, state dicts.

Parameters and sub-modules are found by walking a module's attributes in the
order they were set (lists and tuples of modules included), so a model is
plain Python attributes with no registration calls. Buffers (running
statistics, spectral-norm vectors) are arrays named with ``register_buffer``.
"""
from __future__ import annotations

import numpy as np

from minigan import backend
from minigan.tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates."""

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data, requires_grad=requires_grad)


class StateDictError(ValueError):
    """A state dict does not fit the module it is loaded into."""


class Module:
    training = True

    # -- structure -----------------------------------------------------------
    def register_buffer(self, name: str, array) -> None:
        names = self.__dict__.setdefault("_buffer_names", [])
        if name not in names:
            names.append(name)
        setattr(self, name, array)

    def _children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{i}", item

    def modules(self):
        yield self
        for _, child in self._children():
            yield from child.modules()

    def named_parameters(self, prefix: str = ""):
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self._children():
            yield from child.named_parameters(f"{prefix}{name}.")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = ""):
        for name in self.__dict__.get("_buffer_names", []):
            yield prefix + name, getattr(self, name)
        for name, child in self._children():
            yield from child.named_buffers(f"{prefix}{name}.")

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # -- modes and devices -----------------------------------------------------
    def train(self, mode: bool = True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device: str):
        for m in self.modules():
            for name, value in vars(m).items():
                if isinstance(value, Parameter):
                    value.data = backend.to_device(value.data, device)
                    value.grad = None
            for name in m.__dict__.get("_buffer_names", []):
                setattr(m, name, backend.to_device(getattr(m, name), device))
        return self

    @property
    def device(self) -> str:
        params = self.parameters()
        return params[0].device if params else "cpu"

    # -- state -------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer as a NumPy array (copies), by dotted name."""
        state = {name: backend.to_numpy(p.data).copy() for name, p in self.named_parameters()}
        state.update({name: backend.to_numpy(b).copy() for name, b in self.named_buffers()})
        return state

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into this module's parameters and buffers in place.

        Raises StateDictError naming the first missing, unexpected or
        wrong-shaped entry, before anything is changed.
        """
        targets = dict(self.named_parameters())
        buffers = dict(self.named_buffers())
        expected = set(targets) | set(buffers)
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        if strict and (missing or unexpected):
            what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
            raise StateDictError(f"the weights do not match this {type(self).__name__}: {what}.")
        for name in expected & set(state):
            have = targets[name].shape if name in targets else buffers[name].shape
            if tuple(np.shape(state[name])) != tuple(have):
                raise StateDictError(
                    f"the weights do not match this {type(self).__name__}: {name!r} has shape "
                    f"{tuple(np.shape(state[name]))}, the model needs {tuple(have)}.")
        for name, p in targets.items():
            if name in state:
                p.data[...] = backend.to_device(np.asarray(state[name], dtype=p.dtype), p.device)
        for name, b in buffers.items():
            if name in state:
                b[...] = backend.to_device(np.asarray(state[name], dtype=b.dtype), backend.device_of(b))

    def copy_from(self, other: "Module") -> None:
        """Set this module's parameters and buffers to ``other``'s (same architecture)."""
        for (_, a), (_, b) in zip(self.named_parameters(), other.named_parameters()):
            a.data[...] = b.data
        for (_, a), (_, b) in zip(self.named_buffers(), other.named_buffers()):
            a[...] = b

    # -- calling -----------------------------------------------------------------
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)
