"""Train the seed's SAGAN ("mel icon" generator) on a folder of icons.

    python examples/train_melicon.py                 # the built-in procedural faces
    python examples/train_melicon.py --data icons/   # your own folder (~100+ images)

The small-data recipe is on by default: the seed's SAGAN (hinge loss, spectral
norm, self-attention, Adam (0, 0.9), D lr 4e-4, G lr 1e-4, batch 5) plus
DiffAugment and an EMA of G's weights, which keep ~100 images from collapsing
to a few modes. Pass --recipe seed for the seed's recipe alone. Every
`minigan train` option works here (see `minigan train --help`).
Outputs go to runs/melicon/: samples/, real_vs_fake.png, progress.png,
mean_image.png, losses.png, log.csv, checkpoint.npz.
"""
import sys

from _common import train

if __name__ == "__main__":
    sys.exit(train(["--model", "sagan", "--out", "runs/melicon", "--iters", "1500", "--batch", "16",
                    "--sample-every", "250", "--checkpoint-every", "250"]))
