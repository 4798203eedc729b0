"""minigan: small GANs for small image sets, on a from-scratch autograd engine."""
__version__ = "0.1.0"
