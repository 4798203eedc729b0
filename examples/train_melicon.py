"""Train the original SAGAN ("mel icon" generator) on a folder of icons.

    python examples/train_melicon.py                 # the built-in procedural faces
    python examples/train_melicon.py --data icons/   # your own folder (~100+ images)

The small-data recipe is on by default: the original SAGAN (hinge loss, spectral
norm, self-attention, Adam (0, 0.9), D lr 4e-4, G lr 1e-4, batch 5) plus
DiffAugment and an EMA of G's weights, which keep ~100 images from collapsing
to a few modes. Pass --recipe original for the original project's recipe alone.

On a GPU it trains the original full model (64x64, width 64) for 3000 steps. On
a CPU it trains the same architecture at 32x32, half width, with G's learning
rate raised to D's (4e-4) for 3000 steps (about 3 minutes), so a first run shows faces in
minutes; pass --image-size 64 --width 64 --lr-g 1e-4 --iters 3000 for the
original full recipe. Every
`minigan train` option works here (see `minigan train --help`).
Outputs go to runs/melicon/: samples/, real_vs_fake.png, progress.png,
mean_image.png, losses.png, log.csv, checkpoint.safetensors.
"""
import sys

from _common import train

if __name__ == "__main__":
    sys.exit(train(["--model", "sagan", "--out", "runs/melicon", "--batch", "16",
                    "--sample-every", "100", "--checkpoint-every", "100"],
                    cpu=["--image-size", "32", "--width", "32", "--lr-g", "4e-4", "--iters", "3000"],
                    gpu=["--iters", "3000"]))
