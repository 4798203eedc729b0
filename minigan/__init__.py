"""minigan: small GANs for small image sets, on a from-scratch autograd engine."""
from minigan.gradcheck import GradcheckError, gradcheck
from minigan.random import manual_seed
from minigan.tensor import Function, Tensor, no_grad

__version__ = "0.1.0"
__all__ = ["Function", "GradcheckError", "Tensor", "gradcheck", "manual_seed", "no_grad"]
