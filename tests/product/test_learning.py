"""Training really learns: a short run on the 169 twemoji smileys lowers the
sliced Wasserstein distance to the data set, compared with the untrained G.

Skipped when ../shared/data (the project's test data, never copied into the
repository) is absent.
"""
import os

import numpy as np
import pytest

from minigan.data import load_folder
from minigan.metrics import sliced_wasserstein
from minigan.train import Trainer
from tests.product.conftest import tiny_config

SMILEYS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "twemoji64", "smileys")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.path.isdir(SMILEYS), reason="shared test data absent")]


def test_a_short_run_on_smileys_lowers_swd(tmp_path):
    """SAGAN, small-data recipe (DiffAugment + EMA), 32x32, narrow: 400 steps take about a minute.

    Seen when written: SWD 175 (untrained) -> 112 after 400 steps; the samples are yellow
    faces with dark eyes and mouths (the untrained G draws grey noise).
    """
    steps = 400
    data = load_folder(SMILEYS, 32)
    config = tiny_config(tmp_path, model="sagan", data=SMILEYS, width=16, batch=16, iters=steps, lr_g=4e-4)
    trainer = Trainer(config, dataset=data)
    z = trainer.gan.sample_z(256, np.random.default_rng(7))
    before = sliced_wasserstein(data.images, trainer.generate(z), seed=0)["mean"]
    for _ in range(steps):
        assert Trainer.losses_finite(trainer.step())
    after = sliced_wasserstein(data.images, trainer.generate(z), seed=0)["mean"]
    assert after < 0.8 * before, f"SWD {before:.1f} -> {after:.1f}: the run did not learn"
