"""Train the original SAGAN ("mel icon" generator) on a folder of icons.

    python examples/train_melicon.py                 # the built-in procedural faces
    python examples/train_melicon.py --data icons/   # your own folder (~100+ images)

The small-data recipe is on by default: the original SAGAN (hinge loss, spectral
norm, self-attention, Adam (0, 0.9), D lr 4e-4, G lr 1e-4, batch 5) plus
DiffAugment and an EMA of G's weights, which keep ~100 images from collapsing
to a few modes. Pass --recipe original for the original project's recipe alone.

On a GPU it trains the original full model (64x64, width 64) for 3000 steps. On
a CPU it trains the same architecture at 32x32, half width, with G's learning
rate raised to D's (4e-4) for up to 4000 steps, as many as fit in 3.5 minutes
(--minutes 3.5: a few steps are timed, undone, and the count is fixed and printed
at the start, then looked at once more from the run's own pace half way), both
rates falling linearly to 0 over the second half, so a first
run, install included, shows icons within 5 minutes on 2 cores. On the idle 2-core
AMD EPYC with AVX-512 the recipe was measured on (52 ms a step) that is 3900-4000
of them (all 4000 took 3 min 20 s for a first run there, pip install and numba's
compilation included); on a 2-core Zen 3 guest without AVX-512, where PyTorch is
about 2x slower too, 1700-2550 (a first run: 3 min 34 s to 4 min 23 s in all; all 4000
took 8 min 9 s). Pass --iters 4000 to train them all whatever the time (a
count of your own turns the budget off), and --image-size 64 --width 64 --lr-g 1e-4 for the original full
recipe. On the CPU the augmentation is adaptive (ADA): DiffAugment's
translation and cutout, each applied with a probability p that starts at 0 and
rises while D is sure of the real images (E[sign D(real)] above 0.6). Against
the previous always-on colour + translation + cutout at 3000 steps, on 500
emoji, 3 seeds: SWD 48.0 -> 32.1, recall 0.21 -> 0.33, precision 0.45 -> 0.66;
on 169 smileys, 6 seeds: SWD 40.9 -> 32.3, recall 0.14 -> 0.46 (the tables and
grids are in benchmarks/quality/README.md). Pass --iters 3000 --lr-decay 0 for
the previous ADA default, and --ada-target 0 --diffaugment color,translation,cutout
as well for the one before it. With --iters N the rates fall over the last N/2
steps unless --lr-decay is given. --recipe original trains 3000 steps at
constant rates.
Every `minigan train` option works here (see `minigan train --help`).
Outputs go to runs/melicon/: samples/, real_vs_fake.png, progress.png,
mean_image.png, losses.png, log.csv, checkpoint.safetensors.
"""
import sys

from _common import train

CPU = ["--image-size", "32", "--width", "32", "--lr-g", "4e-4"]
ORIGINAL_ITERS = 3000
# measured on 169 and 500 emoji (benchmarks/quality/README.md); not with --recipe original, which has no augmentation
CPU_SMALL_DATA = ["--diffaugment", "translation,cutout", "--ada-target", "0.6", "--ada-images", "5000"]
#: the small-data recipe's steps; its learning rates fall linearly to 0 over the second half of the run
SMALL_DATA_ITERS = 4000
#: ... or fewer: as many as fit in this many minutes of training (the first run, install included, in 5)
SMALL_DATA_MINUTES = 3.5


def _given(argv, flag):
    """The value the user gave ``flag`` (``--flag V`` or ``--flag=V``; the last wins, as in argparse), else None."""
    value = None
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(flag + "="):
            value = a[len(flag) + 1:]
    return value


def original_recipe(argv) -> bool:
    return _given(argv, "--recipe") in ("original", "seed")


def cpu_defaults(argv) -> list:
    """The CPU's defaults for these command-line flags (the user's own flags still come after them)."""
    if original_recipe(argv):
        return CPU + ["--iters", str(ORIGINAL_ITERS)]
    iters = _given(argv, "--iters")
    # the user's own --iters is a count: no time budget unless they also give --minutes
    budget = ["--minutes", str(SMALL_DATA_MINUTES)] if iters is None else []
    iters = int(iters) if iters is not None and iters.isdigit() else SMALL_DATA_ITERS
    decay = [] if _given(argv, "--lr-decay") is not None else ["--lr-decay", str(max(1, iters // 2))]
    return CPU + ["--iters", str(SMALL_DATA_ITERS)] + budget + CPU_SMALL_DATA + decay


if __name__ == "__main__":
    sys.exit(train(["--model", "sagan", "--out", "runs/melicon", "--batch", "16",
                    "--sample-every", "100", "--checkpoint-every", "100"],
                    cpu=cpu_defaults(sys.argv[1:]), gpu=["--iters", "3000"]))
