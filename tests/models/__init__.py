"""Model tests: the registry and shapes (test_shapes), one training step against PyTorch (test_parity)."""
