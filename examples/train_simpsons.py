"""Train the original DCGAN 128x128 (Simpsons faces) on a folder of faces.

    python examples/train_simpsons.py [--data faces/]

The original recipe: 8x8x1024 start, one-sided label smoothing (real labels in
[0.9, 1]), Gaussian noise on D's inputs (annealed to 0), D lr 4e-5 vs G lr
4e-4, and a D:G step ratio (--d-steps). Loss curves and samples are written
as it trains. 128x128 is slow on a CPU: a GPU is recommended.
"""
import sys

from _common import train

if __name__ == "__main__":
    sys.exit(train(["--model", "dcgan128", "--image-size", "128", "--out", "runs/simpsons", "--iters", "1000",
                    "--label-smoothing", "--instance-noise", "0.1", "--recipe", "original",
                    "--sample-every", "100", "--checkpoint-every", "100"],
                    cpu=["--width", "16", "--iters", "300", "--batch", "16"],
                    gpu=["--iters", "3000"]))
