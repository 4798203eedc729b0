"""minigan from Python: train a SAGAN, then sample from the run.  python examples/python_api.py [OUT] [ITERS]"""
import sys

import minigan

out, iters = (sys.argv[1:] + ["runs/api", "300"])[:2]
run = minigan.train(None, model="sagan", out=out, iters=int(iters), image_size=32, width=16)  # None: built-in faces
G = minigan.load(out)                         # a run folder or checkpoint: G (its EMA), no data, no D
images = G.generate(16, seed=0)               # uint8 (16, 32, 32, 3); the same seed, the same images
frames = G.interpolate(points=4, frames=8)    # a closed latent walk, uint8 (32, 32, 32, 3)
print(f"{run.step} steps in '{run.folder}':", images.shape, images.dtype, frames.shape)
