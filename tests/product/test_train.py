"""The Trainer and the run loop: every model and trick steps, runs resume exactly."""
import dataclasses
import json
import os

import numpy as np
import pytest

from minigan import checkpoint
from minigan.train import ConfigError, RunError, Trainer, run
from tests.product.conftest import tiny_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.mark.parametrize("model,extra", [
    ("sagan", {}),
    ("sagan", {"recipe": "seed"}),
    ("dcgan", {"label_smoothing": True, "instance_noise": 0.1, "d_steps": 2}),
    ("dcgan", {"feature_matching": True, "minibatch_discrimination": True}),
    ("began", {}),
])
def test_each_model_and_trick_trains_a_few_steps(tmp_path, model, extra):
    trainer = Trainer(tiny_config(tmp_path, model=model, **extra))
    before = {n: p.numpy().copy() for n, p in trainer.G.named_parameters()}
    for _ in range(2):
        stats = trainer.step()
        assert Trainer.losses_finite(stats), stats
    changed = [n for n, p in trainer.G.named_parameters() if not np.array_equal(before[n], p.numpy())]
    assert changed, "G's parameters did not move"
    if model == "began":
        assert 0.0 <= stats["k_t"] <= 1.0 and "M_global" in stats
    images = trainer.generate(trainer.fixed_z)
    assert images.shape == (4, 3, 32, 32) and np.all(np.abs(images) <= 1.0)


def test_dcgan128_steps(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, model="dcgan128", image_size=128, width=4, batch=2))
    assert Trainer.losses_finite(trainer.step())


def test_semi_supervised_uses_labelled_subfolders(tmp_path, icon_folder):
    trainer = Trainer(tiny_config(tmp_path, model="dcgan", data=str(icon_folder), semi_supervised=True))
    assert trainer.num_classes == 2
    logits = trainer.D(trainer._tensor(trainer.sampler.next_batch()[0]))
    assert logits.shape[1] == 3  # two classes + "generated"
    assert Trainer.losses_finite(trainer.step())


def test_semi_supervised_without_labels_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="labelled subfolders"):
        Trainer(tiny_config(tmp_path, model="dcgan", semi_supervised=True))


def test_ema_tracks_g(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, ema=0.5))
    trainer.step()
    (_, g), (_, e) = next(iter(trainer.G.named_parameters())), next(iter(trainer.G_ema.named_parameters()))
    assert not np.array_equal(g.numpy(), e.numpy())  # lags behind G ...
    trainer.config = dataclasses.replace(trainer.config, ema=0.0)  # the config is frozen: a new one
    trainer.step()
    np.testing.assert_array_equal(next(iter(trainer.G_ema.named_parameters()))[1].numpy(),
                                  next(iter(trainer.G.named_parameters()))[1].numpy())  # ... decay 0 copies


def test_instance_noise_anneals_to_zero(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, instance_noise=0.2, noise_anneal=10))
    assert trainer.noise_std() == pytest.approx(0.2)
    trainer.step_count = 5
    assert trainer.noise_std() == pytest.approx(0.1)
    trainer.step_count = 10
    assert trainer.noise_std() == 0.0


def _all_arrays(run_dir):
    arrays, meta = checkpoint.load(os.path.join(run_dir, checkpoint.FILENAME))
    return arrays, meta


@pytest.mark.parametrize("model", ["sagan", "began"])
def test_resume_matches_an_uninterrupted_run_bit_for_bit(tmp_path, model):
    straight = tiny_config(tmp_path / "a", model=model, iters=6)
    run(straight, progress=False, log=lambda *a: None)
    first = tiny_config(tmp_path / "b", model=model, iters=4)
    run(first, progress=False, log=lambda *a: None)
    resumed = tiny_config(tmp_path / "b", model=model, iters=6)
    run(resumed, resume=True, progress=False, log=lambda *a: None)
    a, meta_a = _all_arrays(straight.out)
    b, meta_b = _all_arrays(resumed.out)
    assert meta_a["step"] == meta_b["step"] == 6
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert meta_a["rng"] == meta_b["rng"] and meta_a["k_t"] == meta_b["k_t"]
    with open(os.path.join(straight.out, "log.csv")) as fa, open(os.path.join(resumed.out, "log.csv")) as fb:
        strip = lambda rows: [r.rsplit(",", 1)[0] for r in rows]  # noqa: E731 (drop the wall-clock column)
        assert strip(fa.read().splitlines()) == strip(fb.read().splitlines())


def test_run_folder_contents(tmp_path):
    config = tiny_config(tmp_path, iters=4)
    run(config, progress=False, log=lambda *a: None)
    out = config.out
    for name in ["config.json", checkpoint.FILENAME, "log.csv", "losses.png", "real_vs_fake.png", "progress.png",
                 "mean_image.png", "samples/step_000002.png", "samples/step_000004.png"]:
        assert os.path.exists(os.path.join(out, name)), name
    saved = json.load(open(os.path.join(out, "config.json")))
    assert saved["lr_d"] == 4e-4 and saved["lr_g"] == 1e-4 and saved["betas"] == [0.0, 0.9]


def test_existing_run_needs_resume(tmp_path):
    config = tiny_config(tmp_path, iters=2)
    run(config, progress=False, log=lambda *a: None)
    with pytest.raises(RunError, match="--resume"):
        run(tiny_config(tmp_path, iters=2), progress=False)


def test_resume_with_another_model_is_a_clear_error(tmp_path):
    run(tiny_config(tmp_path, iters=2), progress=False, log=lambda *a: None)
    with pytest.raises(RunError, match="holds a sagan run"):
        run(tiny_config(tmp_path, model="dcgan", iters=4), resume=True, progress=False)


def test_eval_every_logs_and_plots_quality(tmp_path):
    config = tiny_config(tmp_path, iters=4, eval_every=2, eval_n=32)
    run(config, progress=False, log=lambda *a: None)
    with open(os.path.join(config.out, "metrics.csv")) as f:
        rows = f.read().splitlines()
    header = rows[0].split(",")
    assert {"step", "swd_mean", "precision", "recall", "ndb"} <= set(header)
    assert [r.split(",")[header.index("step")] for r in rows[1:]] == ["2", "4"]
    assert os.path.exists(os.path.join(config.out, "metrics.png"))


def test_one_beta_given_keeps_the_models_other_beta(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, betas=(None, 0.99)))  # SAGAN's own betas are (0, 0.9)
    assert trainer.config.betas == (0.0, 0.99)
    assert trainer.opt_d.betas == (0.0, 0.99) and trainer.opt_g.betas == (0.0, 0.99)


@pytest.mark.parametrize("framework", ["minigan", "torch"])
def test_frozen_stops_weight_gradients_and_restores_the_flags(framework):
    """trainer.frozen (around the G step, and around the benchmark's): inside it a module's weights get no
    gradient while the gradient still flows through it to its input; after it every flag is as before,
    a parameter frozen beforehand included. Also for a PyTorch module, whose parameters() is a generator."""
    from minigan.train.trainer import frozen

    if framework == "torch":
        torch = pytest.importorskip("torch")
        layer = torch.nn.Linear(3, 2)
        layer.bias.requires_grad_(False)
        x = torch.ones(4, 3, requires_grad=True)
        run = lambda: layer(x).sum().backward()  # noqa: E731
        weight, bias, x_grad = layer.weight, layer.bias, lambda: x.grad
    else:
        from minigan import Tensor
        from minigan.nn import Linear

        layer = Linear(3, 2)
        layer.bias.requires_grad = False
        x = Tensor(np.ones((4, 3), np.float32), requires_grad=True)
        run = lambda: layer(x).sum().backward()  # noqa: E731
        weight, bias, x_grad = layer.weight, layer.bias, lambda: x.grad
    with frozen(layer):
        assert not weight.requires_grad and not bias.requires_grad
        run()
    assert weight.grad is None and x_grad() is not None
    assert weight.requires_grad and not bias.requires_grad
    run()
    assert weight.grad is not None
