"""Images in and out of the engine: float NCHW in [-1, 1] <-> uint8 NHWC, grids, PNG, GIF.

Writes go through a temporary file and a rename, so a crash mid-write never
leaves a half-written image behind.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
from PIL import Image

from minigan import backend
from minigan.tensor import Tensor


def to_uint8(images) -> np.ndarray:
    """Float images (N, 3, H, W) in [-1, 1] (NumPy, CuPy or Tensor) -> uint8 (N, H, W, 3)."""
    data = images.data if isinstance(images, Tensor) else images  # an array's .data is its buffer, not it
    a = backend.to_numpy(data).astype(np.float64)
    a = np.clip((a + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [-1, 1]."""
    a = np.asarray(images, dtype=np.float32).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(a / 127.5 - 1.0)


def make_grid(images: np.ndarray, nrow: int | None = None, padding: int = 2,
              pad_value: int = 255) -> np.ndarray:
    """Tile uint8 images (N, H, W, 3) into one (rows*H', cols*W', 3) picture."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    cols = nrow or max(1, int(np.ceil(np.sqrt(n))))
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c),
                   pad_value, dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[y:y + h, x:x + w] = images[k]
    return grid


def _atomic_save(path, save) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; an image is an ordinary file
    try:
        save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_png(image: np.ndarray, path) -> None:
    """Save one uint8 (H, W, 3) image as PNG, atomically."""
    _atomic_save(path, lambda tmp: Image.fromarray(np.asarray(image)).save(tmp, format="PNG"))


def save_gif(frames, path, duration_ms: int = 80) -> None:
    """Save uint8 (H, W, 3) frames as a looping animated GIF, atomically."""
    pics = [Image.fromarray(np.asarray(f)) for f in frames]
    _atomic_save(path, lambda tmp: pics[0].save(tmp, format="GIF", save_all=True,
                                                append_images=pics[1:], duration=duration_ms,
                                                loop=0))
