"""What a run folder holds besides checkpoints: sample grids, the seeds' figures,
the loss log and its plot.

    RUN/config.json              everything needed to reproduce the run
    RUN/samples/step_XXXXXX.png  the fixed-z grid at each sample step
    RUN/real_vs_fake.png         real images (top) above generated ones (the DCGAN seed's figure)
    RUN/progress.png             the same fixed z across training, one row per sample step (BEGAN seed)
    RUN/mean_image.png           the mean of all training images (the SAGAN seed's figure)
    RUN/log.csv, RUN/losses.png  every loss per step, and its plot
    RUN/metrics.csv, RUN/metrics.png   quality figures every --eval-every steps
"""
from __future__ import annotations

import csv
import glob
import json
import os

import numpy as np

from minigan.imageio import make_grid, save_png, to_uint8


class CsvLog:
    """Append-only CSV whose columns grow as new keys appear; survives resume."""

    def __init__(self, path: str):
        self.path = path
        self.rows: list[dict] = []
        if os.path.exists(path):
            with open(path, newline="") as f:
                self.rows = [dict(r) for r in csv.DictReader(f)]

    def truncate_after(self, step: int) -> None:
        """Forget rows past ``step`` (written after the checkpoint a resume starts from)."""
        kept = [r for r in self.rows if int(float(r["step"])) <= step]
        if len(kept) != len(self.rows):
            self.rows = kept
            self.flush()

    def append(self, row: dict) -> None:
        self.rows.append({k: v for k, v in row.items()})
        self._pending = True

    def flush(self) -> None:
        columns = []
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        tmp = self.path + ".tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns or ["step"])
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.path)

    def column(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(float(r["step"]), float(r[name])) for r in self.rows if r.get(name) not in (None, "")]
        if not pairs:
            return np.zeros(0), np.zeros(0)
        a = np.array(pairs)
        return a[:, 0], a[:, 1]


def write_config(out: str, config_dict: dict) -> None:
    tmp = os.path.join(out, ".config.json.tmp")
    with open(tmp, "w") as f:
        json.dump(config_dict, f, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(out, "config.json"))


def save_samples(out: str, step: int, images: np.ndarray) -> str:
    path = os.path.join(out, "samples", f"step_{step:06d}.png")
    save_png(make_grid(to_uint8(images)), path)
    return path


def save_real_vs_fake(out: str, real_uint8: np.ndarray, fake: np.ndarray, n: int = 16) -> None:
    real = real_uint8[:n]
    fake = to_uint8(fake[:n])
    cols = min(n, 8)
    top, bottom = make_grid(real, nrow=cols), make_grid(fake, nrow=cols)
    gap = np.full((8, top.shape[1], 3), 255, np.uint8)
    save_png(np.concatenate([top, gap, bottom]), os.path.join(out, "real_vs_fake.png"))


def save_progress(out: str, image_size: int, n: int = 8, max_rows: int = 12) -> None:
    """A strip of the first ``n`` fixed-z samples at evenly spaced sample steps, oldest on top.

    Cuts the first row out of each ``samples/step_*.png`` grid (make_grid's
    layout: padding 2 around square cells of ``image_size``).
    """
    from PIL import Image

    paths = sorted(glob.glob(os.path.join(out, "samples", "step_*.png")))
    if not paths:
        return
    if len(paths) > max_rows:
        idx = np.linspace(0, len(paths) - 1, max_rows).round().astype(int)
        paths = [paths[i] for i in idx]
    cell = image_size + 2
    rows = [np.asarray(Image.open(p).convert("RGB"))[: cell + 2, : 2 + n * cell] for p in paths]
    width = min(r.shape[1] for r in rows)
    save_png(np.concatenate([r[:, :width] for r in rows]), os.path.join(out, "progress.png"))


def save_mean_image(out: str, images_uint8: np.ndarray) -> None:
    mean = images_uint8.astype(np.float64).mean(axis=0).round().astype(np.uint8)
    save_png(mean, os.path.join(out, "mean_image.png"))


def plot_curves(log: CsvLog, path: str, names: list[str], title: str) -> None:
    """Plot the named columns of a log against step (one panel each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in names if log.column(n)[0].size]
    if not names:
        return
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.2 * len(names)), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        steps, values = log.column(name)
        ax.plot(steps, values, lw=0.8)
        if values.size > 20:
            k = max(5, values.size // 50)
            smooth = np.convolve(values, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], smooth, lw=1.6)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
