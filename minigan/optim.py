"""Adam (Kingma & Ba 2015), by hand: one kernel-contract call updates every parameter.

    g <- g + weight_decay * p                     (L2, as torch.optim.Adam)
    m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
    p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
"""
from __future__ import annotations

import numpy as np

from minigan import backend


class Adam:
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params = list(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.step_count = 0
        self.m = [backend.array_module(p.data).zeros_like(p.data) for p in self.params]
        self.v = [backend.array_module(p.data).zeros_like(p.data) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        self.step_count += 1
        b1, b2 = self.betas
        live = [(p, m, v) for p, m, v in zip(self.params, self.m, self.v) if p.grad is not None]
        if not live:
            return
        params, ms, vs = zip(*live)
        # one call for every parameter: a single fused launch on the GPU
        backend.kernels_for(params[0].data).adam_step_multi(
            [p.data for p in params], [p.grad for p in params], list(ms), list(vs), self.lr, b1, b2, self.eps,
            self.weight_decay, self.step_count)

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {"step": np.array(self.step_count, dtype=np.int64),
                 "lr": np.array(self.lr, dtype=np.float64)}
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            state[f"m.{i}"] = backend.to_numpy(m).copy()
            state[f"v.{i}"] = backend.to_numpy(v).copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            for name, target in ((f"m.{i}", m), (f"v.{i}", v)):
                if name not in state or tuple(state[name].shape) != target.shape:
                    raise ValueError(f"the optimizer state does not match the model ({name}).")
                target[...] = backend.to_device(state[name].astype(target.dtype), backend.device_of(target))
        self.step_count = int(state["step"])
        self.lr = float(state["lr"])
