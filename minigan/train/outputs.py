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
    """A CSV log written as it goes: one line appended per row (no rewrite of the
    whole file per save), rewritten only when a new column appears (the first
    eval row, say) or when a resume or rollback cuts it back to a step."""

    def __init__(self, path: str):
        self.path = path
        self.columns: list[str] = []
        self._file = None
        if os.path.exists(path):
            with open(path, newline="") as f:
                self.columns = list(csv.DictReader(f).fieldnames or [])

    @property
    def rows(self) -> list[dict]:
        self.flush()
        if not os.path.exists(self.path):
            return []
        with open(self.path, newline="") as f:
            return [dict(r) for r in csv.DictReader(f)]

    def _rewrite(self, rows: list[dict]) -> None:
        self.close()
        tmp = self.path + ".tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns or ["step"])
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.path)

    def truncate_after(self, step: int) -> None:
        """Forget rows past ``step`` (written after the checkpoint a resume starts from)."""
        rows = self.rows
        kept = [r for r in rows if int(float(r["step"])) <= step]
        if len(kept) != len(rows):
            self._rewrite(kept)

    def append(self, row: dict) -> None:
        new = [k for k in row if k not in self.columns]
        if new:
            rows = self.rows
            self.columns += new
            self._rewrite(rows)
        if self._file is None:
            self._file = open(self.path, "a", newline="")
        csv.DictWriter(self._file, fieldnames=self.columns).writerow(row)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def series(self, names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(steps, values) of each named column that has values, reading the file once."""
        rows = self.rows
        found = {}
        for name in names:
            pairs = [(float(r["step"]), float(r[name])) for r in rows if r.get(name) not in (None, "")]
            if pairs:
                a = np.array(pairs)
                found[name] = (a[:, 0], a[:, 1])
        return found


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

    series = log.series(names)
    if not series:
        return
    fig, axes = plt.subplots(len(series), 1, figsize=(7, 2.2 * len(series)), sharex=True, squeeze=False)
    for ax, (name, (steps, values)) in zip(axes[:, 0], series.items()):
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
