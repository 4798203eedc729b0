"""The small-data additions in a run: the FastGAN model and LeCam regularisation train, their losses are the
formulas, and a resumed run matches an uninterrupted one bit for bit, their state included."""
import os

import numpy as np
import pytest

from minigan import Tensor, checkpoint
from minigan.ops import hinge_d_loss
from minigan.train import ConfigError, Trainer, run
from minigan.train.losses import HingeLoss
from tests.product.conftest import tiny_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_fastgan_trains_and_its_d_loss_is_hinge_plus_the_reconstructions(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, model="fastgan", lecam=0.0))
    for _ in range(2):
        stats = trainer.step()
        assert Trainer.losses_finite(stats), stats
    assert stats["recon"] > 0
    # the same D loss by hand, from the same random draws
    real = trainer._tensor(trainer.sampler.next_batch()[0])
    fake = trainer._tensor(trainer.generate(trainer.fixed_z[:3]))
    rng_state = trainer.rng.bit_generator.state
    loss, stats = trainer.loss.d_loss(real, fake, None, trainer.rng)
    trainer.rng.bit_generator.state = rng_state
    seen_real = trainer.see(real)
    q = int(trainer.rng.integers(4))
    seen_fake = trainer.see(fake)
    logits, full, part = trainer.D(seen_real, reconstruct=q)
    target_full, target_part = trainer.D.targets(seen_real, q)
    recon = np.abs(full.numpy() - target_full.numpy()).mean() + np.abs(part.numpy() - target_part.numpy()).mean()
    expected = hinge_d_loss(logits, trainer.D(seen_fake)).item() + recon
    assert loss.item() == pytest.approx(expected, rel=1e-5) and stats["recon"] == pytest.approx(recon, rel=1e-5)


class _FixedD:
    """A stand-in D whose logits are given: the loss family's arithmetic alone is tested."""

    def __init__(self):
        self.outputs = []

    def __call__(self, x):
        return Tensor(self.outputs.pop(0))


def test_lecam_adds_its_regulariser_with_moving_averages(tmp_path):
    config = tiny_config(tmp_path, lecam=0.5, lecam_decay=0.9)
    D = _FixedD()
    family = HingeLoss(config, D, lambda x: x)
    rng = np.random.default_rng(0)
    real1, fake1 = np.array([[0.5], [1.5]]), np.array([[-1.0], [0.2]])
    real2, fake2 = np.array([[2.0], [0.0]]), np.array([[0.4], [-2.0]])
    D.outputs = [real1, fake1]
    loss1, stats1 = family.d_loss(None, None, None, rng)
    a_real, a_fake = real1.mean(), fake1.mean()  # the first update copies
    reg1 = np.mean(np.maximum(real1 - a_fake, 0) ** 2) + np.mean(np.maximum(a_real - fake1, 0) ** 2)
    hinge1 = np.mean(np.maximum(1 - real1, 0)) + np.mean(np.maximum(1 + fake1, 0))
    assert loss1.item() == pytest.approx(hinge1 + 0.5 * reg1) and stats1["lecam"] == pytest.approx(reg1)
    D.outputs = [real2, fake2]
    loss2, _ = family.d_loss(None, None, None, rng)
    a_real, a_fake = 0.9 * a_real + 0.1 * real2.mean(), 0.9 * a_fake + 0.1 * fake2.mean()
    reg2 = np.mean(np.maximum(real2 - a_fake, 0) ** 2) + np.mean(np.maximum(a_real - fake2, 0) ** 2)
    hinge2 = np.mean(np.maximum(1 - real2, 0)) + np.mean(np.maximum(1 + fake2, 0))
    assert loss2.item() == pytest.approx(hinge2 + 0.5 * reg2)
    assert family.state_dict()["lecam"] == pytest.approx([a_real, a_fake, 2])
    off = HingeLoss(tiny_config(tmp_path, lecam=0.0), D, lambda x: x)
    D.outputs = [real2, fake2]
    assert off.d_loss(None, None, None, rng)[0].item() == pytest.approx(hinge2)
    assert "lecam" not in off.state_dict()


def test_lecam_on_an_autoencoder_d_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="--lecam"):
        tiny_config(tmp_path, model="began", lecam=0.1)


def test_ada_moves_p_by_the_sign_of_d_on_reals(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, ada_target=0.6, ada_images=30, iters=8))
    assert trainer.ada_p == 0.0
    trainer.ada_signs = [1.0, 0.5, 1.0, 0.9]  # r_t = 0.85 > 0.6: D overfits, p rises by 4 batches of 3 / 30
    trainer.step_count = 4
    trainer._update_ada(stats := {})
    assert trainer.ada_p == pytest.approx(0.4) and stats["ada_p"] == trainer.ada_p and trainer.ada_signs == []
    trainer.ada_signs = [0.0, 0.2, -1.0, 0.4]  # r_t < 0.6: p falls
    trainer.step_count = 8
    trainer._update_ada({})
    assert trainer.ada_p == pytest.approx(0.0)
    trainer.ada_signs = [-1.0]
    trainer.step_count = 12
    trainer._update_ada({})
    assert trainer.ada_p == 0.0  # clipped at 0
    stats = trainer.step()  # a real step logs the signal and p
    assert -1 <= stats["D_real_sign"] <= 1 and trainer.ada_signs == [stats["D_real_sign"]]


def test_ada_on_an_autoencoder_d_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="--ada-target"):
        tiny_config(tmp_path, model="began", ada_target=0.6)


@pytest.mark.parametrize("model,extra", [("fastgan", {"lecam": 0.3}), ("sagan", {"lecam": 0.3}),
                                         ("sagan", {"lecam": 0.3, "ada_target": 0.6, "ada_images": 20, "checkpoint_every": 3})])
def test_resume_matches_an_uninterrupted_run_bit_for_bit(tmp_path, model, extra):
    # stopped at 6, between two ADA adjustments (every 4 steps): the signs of steps 5 and 6 must survive
    straight = tiny_config(tmp_path / "a", model=model, iters=10, **extra)
    run(straight, progress=False, log=lambda *a: None)
    run(tiny_config(tmp_path / "b", model=model, iters=6, **extra), progress=False, log=lambda *a: None)
    resumed = tiny_config(tmp_path / "b", model=model, iters=10, **extra)
    run(resumed, resume=True, progress=False, log=lambda *a: None)
    a, meta_a = checkpoint.load(os.path.join(straight.out, checkpoint.FILENAME))
    b, meta_b = checkpoint.load(os.path.join(resumed.out, checkpoint.FILENAME))
    assert meta_a["step"] == meta_b["step"] == 10 and sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert meta_a["lecam"] == meta_b["lecam"] and meta_a["lecam"][2] == 10
    assert meta_a["rng"] == meta_b["rng"]
    if "ada_target" in extra:
        assert meta_a["ada"] == meta_b["ada"] and len(meta_a["ada"]["signs"]) == 2
