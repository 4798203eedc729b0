"""Train BEGAN 64x64 (autoencoder discriminator with the k_t balance) on a folder of faces.

    python examples/train_began.py [--data faces/] [--began-gamma 0.5]

The progress bar shows k_t and M_global, the convergence measure that falls as
the samples improve; losses.png plots both.
"""
import sys

from _common import train

if __name__ == "__main__":
    sys.exit(train(["--model", "began", "--out", "runs/began",
                    "--sample-every", "100", "--checkpoint-every", "100"],
                    cpu=["--image-size", "32", "--width", "32", "--iters", "1500"],
                    gpu=["--iters", "3000"]))
