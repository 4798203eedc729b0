"""minigan: small GANs for small image sets, on a from-scratch autograd engine.

    import minigan
    run = minigan.train("icons/", model="sagan", iters=3000)    # -> minigan.train.Run
    G = minigan.load("runs/sagan")                               # -> minigan.train.Generator
    images = G.generate(16, seed=0)                              # uint8 (16, H, W, 3)
"""
from minigan.gradcheck import GradcheckError, gradcheck
from minigan.random import manual_seed
from minigan.tensor import Function, Tensor, no_grad

__version__ = "0.1.0"


def load(path, device=None, ema=True):
    """The Generator of a run folder or checkpoint file (G's moving average when it has one and ``ema``)."""
    from minigan.train.generator import Generator

    return Generator.load(path, device=device, ema=ema)


def __getattr__(name):
    if name == "train":  # the training package, callable: minigan.train(data, model=..., **options) -> Run
        import minigan.train

        return minigan.train
    raise AttributeError(f"module 'minigan' has no attribute {name!r}")


__all__ = ["Function", "GradcheckError", "Tensor", "gradcheck", "load", "manual_seed", "no_grad", "train"]
