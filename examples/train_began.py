"""Train BEGAN 64x64 (autoencoder discriminator with the k_t balance) on a folder of faces.

    python examples/train_began.py [--data faces/] [--began-gamma 0.5]

The progress bar shows k_t and M_global, the convergence measure that falls as
the samples improve; losses.png plots both.
"""
import sys

from _common import train

if __name__ == "__main__":
    sys.exit(train(["--model", "began", "--out", "runs/began", "--iters", "1500",
                    "--sample-every", "250", "--checkpoint-every", "250"]))
