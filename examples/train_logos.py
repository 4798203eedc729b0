"""Train the original DCGAN 64x64 (logo generator) on a folder of logos.

    python examples/train_logos.py [--data logos/] [--feature-matching] [--minibatch-discrimination]

The original recipe: z of 100 uniform values, 5x5 stride-2 (transposed) convs,
BCE with the non-saturating G loss, Adam 2e-4 with beta1 0.5. The original tricks
are options: --feature-matching, --minibatch-discrimination, and
--semi-supervised for a folder of K labelled subfolders (a K+1-class D).
"""
import sys

from _common import train

if __name__ == "__main__":
    sys.exit(train(["--model", "dcgan", "--out", "runs/logos", "--batch", "32",
                    "--sample-every", "100", "--checkpoint-every", "100"],
                    cpu=["--image-size", "32", "--width", "32", "--iters", "1500"],
                    gpu=["--iters", "3000"]))
