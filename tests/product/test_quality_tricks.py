"""The small-data additions in a run: the FastGAN model, LeCam regularisation and bCR train, their losses are the
formulas, and a resumed run matches an uninterrupted one bit for bit, their state included."""
import os

import numpy as np
import pytest

from minigan import Tensor, backend, checkpoint
from minigan.augment import consistency_view
from minigan.ops import hinge_d_loss
from minigan.train import ConfigError, Trainer, run
from minigan.train.losses import BCELoss, HingeLoss, top_logits
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
        self.last = None  # the Tensor of the last call (its gradient shows what the loss used)

    def __call__(self, x):
        self.last = Tensor(self.outputs.pop(0), requires_grad=True)
        return self.last


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


@pytest.mark.parametrize("flag,extra", [("--lecam", {"lecam": 0.1}), ("--bcr", {"bcr": 10.0})])
def test_logit_regularisers_on_an_autoencoder_d_are_a_clear_error(tmp_path, flag, extra):
    with pytest.raises(ConfigError, match=flag):
        tiny_config(tmp_path, model="began", **extra)


def test_consistency_view_flips_the_drawn_samples_then_shifts_them():
    a = np.arange(4 * 2 * 8 * 8, dtype=np.float32).reshape(4, 2, 8, 8)
    draws = np.random.default_rng(3)
    flipped = draws.uniform(size=4) < 0.5
    dy, dx = draws.integers(-1, 2, 4), draws.integers(-1, 2, 4)  # 8 px: shifts in [-1, 1]
    out = consistency_view(a, np.random.default_rng(3))
    assert flipped.any() and not flipped.all() and (dy != 0).any()  # this seed exercises every branch
    for n in range(4):
        src = a[n, :, :, ::-1] if flipped[n] else a[n]
        want = np.zeros_like(src)
        for i in range(8):
            for j in range(8):
                if 0 <= i + dy[n] < 8 and 0 <= j + dx[n] < 8:
                    want[:, i, j] = src[:, i + dy[n], j + dx[n]]
        np.testing.assert_array_equal(out[n], want, err_msg=f"sample {n}")
    np.testing.assert_array_equal(a, np.arange(a.size, dtype=np.float32).reshape(a.shape))  # input untouched
    emu = consistency_view(backend.to_device(a, "cuda-emu"), np.random.default_rng(3))  # CuPy's rules
    np.testing.assert_array_equal(backend.to_numpy(emu), out)


def test_bcr_adds_the_squared_logit_gaps_of_both_sides(tmp_path):
    config = tiny_config(tmp_path, bcr=2.0)
    D = _FixedD()
    family = HingeLoss(config, D, lambda x: x)
    images = Tensor(np.zeros((2, 3, 8, 8), dtype=np.float32))
    real, fake = np.array([[0.5], [1.5]]), np.array([[-1.0], [0.2]])
    real_t, fake_t = np.array([[0.1], [1.0]]), np.array([[-0.4], [0.0]])  # D on the transformed copies
    D.outputs = [real, fake, real_t, fake_t]
    loss, stats = family.d_loss(images, images, None, np.random.default_rng(0))
    reg = ((real - real_t) ** 2).sum() / 2 + ((fake - fake_t) ** 2).sum() / 2
    hinge = np.mean(np.maximum(1 - real, 0)) + np.mean(np.maximum(1 + fake, 0))
    assert loss.item() == pytest.approx(hinge + 2.0 * reg) and stats["bcr"] == pytest.approx(reg)
    assert D.outputs == []  # four passes: the two sides and their two transformed copies


def test_bcr_trains_d_towards_agreeing_with_itself(tmp_path):
    # the regulariser alone: its gradient reaches D's parameters, and a small step against it shrinks it
    trainer = Trainer(tiny_config(tmp_path, bcr=1.0))
    real = trainer._tensor(trainer.sampler.next_batch()[0])
    seen = trainer.see(real)
    logits = trainer.D(seen)
    state = trainer.rng.bit_generator.state
    reg = trainer.loss.consistency(seen, logits, trainer.rng)
    trainer.D.zero_grad()
    reg.backward()
    grads = [p.grad for p in trainer.D.parameters()]
    assert reg.item() > 0 and all(g is not None for g in grads) and any(np.abs(g).max() > 0 for g in grads)
    scale = max(float(np.abs(g).max()) for g in grads)
    for p, g in zip(trainer.D.parameters(), grads):
        p.data -= 1e-3 * g / scale
    trainer.rng.bit_generator.state = state
    assert trainer.loss.consistency(seen, trainer.D(seen), trainer.rng).item() < reg.item()


@pytest.mark.parametrize("family", [HingeLoss, BCELoss])
def test_top_k_g_loss_learns_from_the_highest_logits_only(tmp_path, family):
    D = _FixedD()
    loss_family = family(tiny_config(tmp_path, top_k=0.5), D, lambda x: x)
    logits = np.array([[0.3], [-1.0], [2.0], [0.3], [-0.2]])
    D.outputs = [logits]
    loss, _ = loss_family.g_loss(None, None, keep=3)  # rows 2, 0 and 3 (the tie keeps both 0.3s)
    loss.backward()
    kept = logits[[2, 0, 3]]
    want = -kept.mean() if family is HingeLoss else np.mean(np.log1p(np.exp(-kept)))
    assert loss.item() == pytest.approx(want)
    grad = D.last.grad.ravel()
    assert grad[1] == grad[4] == 0 and np.all(grad[[0, 2, 3]] != 0)
    D.outputs = [logits]
    full, _ = loss_family.g_loss(None, None, keep=None)  # off: the whole batch
    assert full.item() == pytest.approx(-logits.mean() if family is HingeLoss
                                        else np.mean(np.log1p(np.exp(-logits))))
    D.outputs = [logits]
    assert loss_family.g_loss(None, None, keep=5)[0].item() == pytest.approx(full.item())


def test_top_logits_ranks_patch_logits_by_their_mean_on_every_device():
    logits = np.array([[[1.0, -3.0]], [[0.5, 0.4]], [[-2.0, 5.0]]])  # means -1, 0.45, 1.5
    for device in ("cpu", "cuda-emu"):
        picked = top_logits(Tensor(backend.to_device(logits, device)), 2)
        np.testing.assert_array_equal(backend.to_numpy(picked.data), logits[[2, 1]], err_msg=device)


def test_top_k_keeps_a_share_that_decays_every_epoch_to_its_floor(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, batch=10, top_k=0.5, top_k_decay=0.8))
    n = len(trainer.data.images)
    first, last = {}, {}  # kept at the first and the last step of each epoch
    for epoch in (0, 1, 2, 3, 4, 5, 50):
        trainer.step_count = -(-epoch * n // 10)  # ceil(epoch * n / batch)
        first[epoch] = trainer.top_k_kept()
        trainer.step_count = -(-(epoch + 1) * n // 10) - 1
        last[epoch] = trainer.top_k_kept()
    assert first == last == {0: 10, 1: 8, 2: 7, 3: 6, 4: 5, 5: 5, 50: 5}  # ceil(10 * max(0.8^e, 0.5))
    assert Trainer(tiny_config(tmp_path / "off")).top_k_kept() is None
    trainer.step_count = 0
    stats = trainer.step()  # a real step takes it
    assert Trainer.losses_finite(stats)


@pytest.mark.parametrize("extra", [dict(model="began"), dict(feature_matching=True), dict(semi_supervised=True)])
def test_top_k_without_one_logit_per_fake_is_a_clear_error(tmp_path, extra):
    with pytest.raises(ConfigError, match="--top-k"):
        tiny_config(tmp_path, top_k=0.5, **extra)


def test_lr_decay_falls_linearly_over_the_last_iterations(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, iters=10, lr_decay=4, lr_d=4e-4, lr_g=1e-4))
    scales = []
    for _ in range(10):
        scales.append(trainer.lr_scale())
        trainer.step()
        assert (trainer.opt_d.lr, trainer.opt_g.lr) == pytest.approx((4e-4 * scales[-1], 1e-4 * scales[-1]))
    assert scales == pytest.approx([1] * 6 + [1.0, 0.75, 0.5, 0.25])
    constant = Trainer(tiny_config(tmp_path / "c", iters=10, lr_d=4e-4))
    constant.step_count = 9
    assert constant.lr_scale() == 1.0
    constant.step()
    assert constant.opt_d.lr == 4e-4


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
                                         ("sagan", {"lecam": 0.3, "ada_target": 0.6, "ada_images": 20, "checkpoint_every": 3}),
                                         ("sagan", {"lecam": 0.3, "bcr": 10.0}),
                                         ("sagan", {"lecam": 0.3, "top_k": 0.5, "top_k_decay": 0.5})])
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


def test_lr_decay_resumes_after_an_interruption_bit_for_bit(tmp_path, monkeypatch):
    # the schedule is relative to --iters, so the run is interrupted (Ctrl-C at step 8, after the checkpoint of
    # step 6, inside the decay) rather than shortened
    extra = dict(iters=10, lr_decay=5, checkpoint_every=3)
    straight = tiny_config(tmp_path / "a", **extra)
    run(straight, progress=False, log=lambda *a: None)
    step = Trainer.step

    def interrupted(self):
        if self.step_count == 7:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_config(tmp_path / "b", **extra), progress=False, log=lambda *a: None)
    monkeypatch.setattr(Trainer, "step", step)
    resumed = tiny_config(tmp_path / "b", **extra)
    run(resumed, resume=True, progress=False, log=lambda *a: None)
    a, meta_a = checkpoint.load(os.path.join(straight.out, checkpoint.FILENAME))
    b, meta_b = checkpoint.load(os.path.join(resumed.out, checkpoint.FILENAME))
    assert meta_a["step"] == meta_b["step"] == 10
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
