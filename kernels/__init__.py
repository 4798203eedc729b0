"""CUDA C sources of minigan's kernels, shipped as package data (read by minigan.backend.cuda)."""
