"""The grids beside the quality table: 64 samples of each run (its checkpoint, the EMA G, latent seed 0),
64 training images spread over the set (by file name), and for one run its nearest training image to each sample.

    python benchmarks/quality/grids.py RUNS_DIR OUT_DIR DATA NAME ...   # RUNS_DIR/NAME (a run folder)
"""
import os
import sys

import numpy as np

from minigan.data import load_folder
from minigan.imageio import make_grid, save_png
from minigan.metrics import nearest_neighbours
from minigan.train import Generator


def main(runs, out, data, names):
    os.makedirs(out, exist_ok=True)
    tag = os.path.basename(os.path.normpath(data))
    real = None
    for name in names:
        G = Generator.load(os.path.join(runs, name))
        if real is None:
            c = G.config
            real = load_folder(data, c.image_size, background=c.background, fit=c.fit).images
            spread = real[np.linspace(0, len(real) - 1, 64).astype(int)]  # every (N/64)-th by file name
            save_png(make_grid(spread, nrow=8), os.path.join(out, f"{tag}_real.png"))
        fake = G.generate(64, seed=0)
        save_png(make_grid(fake, nrow=8), os.path.join(out, f"{tag}_{name}.png"))
        # each sample (odd rows) above its nearest training image (even rows): copies show as identical pairs
        index, _ = nearest_neighbours(real, fake[:32])
        pairs = np.concatenate([np.stack([fake[i:i + 8], real[index[i:i + 8]]]) for i in range(0, 32, 8)])
        save_png(make_grid(pairs.reshape(-1, *fake.shape[1:]), nrow=8), os.path.join(out, f"{tag}_{name}_nn.png"))
        print("wrote", name)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
