"""The model registry: architectures, shapes at every size, the discriminator's
tricks, initialisation, and the errors a user can hit."""
import numpy as np
import pytest

import minigan.nn as nn
from minigan import Tensor, manual_seed
from minigan.models import MODELS, GAN, build

SIZES = (32, 64, 128)
SMALL = 8  # width for the shape sweep: the layer stack is the same, the run is cheap


def _weights(module):
    """(name, shape) of every conv/linear weight, in order."""
    return [(n, p.shape) for n, p in module.named_parameters()
            if (n.endswith("weight") or n.endswith("weight_orig")) and p.ndim > 1]


def _z(gan, n=2, seed=0):
    return Tensor(gan.sample_z(n, np.random.default_rng(seed)))


def _images(n, size, seed=0):
    return Tensor(np.random.default_rng(seed).uniform(-1, 1, (n, 3, size, size)).astype(np.float32))


# ---------------------------------------------------------------------------
# the seeds' layer stacks, at their own size and width
# ---------------------------------------------------------------------------
def test_sagan_seed_architecture():
    gan = build("sagan")
    assert (gan.z_dim, gan.z_dist, gan.image_size, gan.loss) == (20, "normal", 64, "hinge")
    g = [shape for name, shape in _weights(gan.G) if ".query." not in name and ".key." not in name
         and ".value." not in name]
    assert g == [(20, 512, 4, 4), (512, 256, 4, 4), (256, 128, 4, 4), (128, 64, 4, 4), (64, 3, 4, 4)]
    attention = [m.value.weight_orig.shape[0] for m in gan.G.modules() if isinstance(m, nn.SelfAttention)]
    assert attention == [128, 64]
    d = [shape for name, shape in _weights(gan.D) if ".query." not in name and ".key." not in name
         and ".value." not in name]
    assert d == [(64, 3, 4, 4), (128, 64, 4, 4), (256, 128, 4, 4), (512, 256, 4, 4), (1, 512 * 4 * 4)]
    attention = [m.value.weight_orig.shape[0] for m in gan.D.modules() if isinstance(m, nn.SelfAttention)]
    assert attention == [256, 512]
    spectral = sum(isinstance(m, nn.SpectralNorm) for m in list(gan.G.modules()) + list(gan.D.modules()))
    assert spectral == 4 + 4 + 3 * 4  # hidden ConvTs, D's convs, the attention 1x1s
    assert gan.defaults == {"lr_d": 4e-4, "lr_g": 1e-4, "betas": (0.0, 0.9), "batch": 5}


def test_dcgan_seed_architectures():
    gan = build("dcgan")
    assert (gan.z_dim, gan.z_dist, gan.image_size, gan.loss) == (100, "uniform", 64, "bce")
    assert _weights(gan.G) == [("project.weight", (8192, 100)), ("blocks.0.layers.0.weight", (512, 256, 5, 5)),
                               ("blocks.1.layers.0.weight", (256, 128, 5, 5)),
                               ("blocks.2.layers.0.weight", (128, 64, 5, 5)), ("to_rgb.weight", (64, 3, 5, 5))]
    assert [s for _, s in _weights(gan.D)] == [(64, 3, 5, 5), (128, 64, 5, 5), (256, 128, 5, 5),
                                               (512, 256, 5, 5), (1, 8192)]
    batch_norms = [m.weight.shape[0] for m in gan.D.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batch_norms == [128, 256, 512]  # none on D's input layer
    assert gan.defaults == {"lr_d": 2e-4, "lr_g": 2e-4, "betas": (0.5, 0.999), "batch": 64}

    big = build("dcgan128", width=SMALL)  # the seed's width is 64: every channel count / 8
    assert big.image_size == 128
    assert [s for _, s in _weights(big.G)] == [(128 * 8 * 8, 100), (128, 64, 5, 5), (64, 32, 5, 5),
                                               (32, 16, 5, 5), (16, 3, 5, 5)]
    assert [s for _, s in _weights(big.D)] == [(8, 3, 5, 5), (16, 8, 5, 5), (32, 16, 5, 5), (64, 32, 5, 5),
                                               (1, 64 * 8 * 8)]
    assert big.defaults["lr_d"] == 4e-5 and big.defaults["lr_g"] == 4e-4


def test_began_seed_architecture():
    gan = build("began")
    assert (gan.z_dim, gan.z_dist, gan.image_size, gan.loss) == (64, "uniform", 64, "began")
    decoder = [(64 * 8 * 8, 64)] + [(64, 64, 3, 3)] * 8 + [(3, 64, 3, 3)]
    assert [s for _, s in _weights(gan.G)] == decoder
    encoder = ([(64, 3, 3, 3)] + [(64, 64, 3, 3)] * 3 + [(128, 64, 3, 3)] + [(128, 128, 3, 3)] * 2
               + [(192, 128, 3, 3)] + [(192, 192, 3, 3)] * 2 + [(256, 192, 3, 3), (256, 256, 3, 3), (64, 256 * 64)])
    assert [s for n, s in _weights(gan.D) if n.startswith("encoder")] == encoder
    assert [s for n, s in _weights(gan.D) if n.startswith("decoder")] == decoder
    assert gan.defaults == {"lr_d": 1e-4, "lr_g": 1e-4, "betas": (0.5, 0.999), "batch": 16,
                            "gamma": 0.5, "lambda_k": 0.001}


# ---------------------------------------------------------------------------
# every model at every size
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_shapes_at_every_size(name, size):
    manual_seed(0)
    gan = build(name, image_size=size, width=SMALL)
    assert isinstance(gan, GAN) and gan.name == name and gan.image_size == size
    fake = gan.G(_z(gan))
    assert fake.shape == (2, 3, size, size) and fake.dtype == np.float32
    if name == "began":  # D is an autoencoder
        assert gan.D(fake).shape == (2, 3, size, size)
        assert gan.D.encode(fake).shape == (2, gan.z_dim)
        return
    assert np.abs(fake.numpy()).max() <= 1.0  # tanh
    gan.D.eval()  # no power-iteration step between the two calls below: one function
    logits, feats = gan.D(fake, features=True)
    assert logits.shape == (2, 1)
    last_map = 8 if name == "dcgan128" else 4  # D's last feature map, (C, last_map, last_map)
    channels = SMALL * (size // last_map) // 2  # doubling at each of log2(size / last_map) layers
    assert feats.shape == (2, channels * last_map * last_map)
    np.testing.assert_array_equal(gan.D(fake).numpy(), logits.numpy())


@pytest.mark.parametrize("name", ["sagan", "dcgan", "dcgan128"])
def test_semi_supervised_and_minibatch_discrimination(name):
    manual_seed(1)
    gan = build(name, image_size=32, width=SMALL, num_classes=5, minibatch_discrimination=True,
                minibatch_kernels=7, minibatch_kernel_dim=3)
    assert gan.num_classes == 5 and gan.D.out_dim == 6
    x = _images(3, 32)
    logits, feats = gan.D(x, features=True)
    features = feats.shape[1]
    assert logits.shape == (3, 6)
    assert gan.D.minibatch.T.shape == (features, 7 * 3)
    assert gan.D.head.weight.shape == (6, features + 7)  # the minibatch features join the last layer's input
    logits.sum().backward()
    assert gan.D.minibatch.T.grad is not None and np.abs(gan.D.minibatch.T.grad).max() > 0


def test_minibatch_discrimination_sees_the_batch():
    """Without it, D scores each sample alone; with it, the other samples change a sample's score."""
    manual_seed(2)
    plain = build("dcgan", image_size=32, width=SMALL)
    mixed = build("dcgan", image_size=32, width=SMALL, minibatch_discrimination=True)
    plain.D.eval(), mixed.D.eval()  # batch norm on running statistics: samples independent
    x = _images(4, 32)
    y = _images(4, 32, seed=1)
    pair_a = Tensor(np.concatenate([x.numpy()[:1], y.numpy()[1:]]))
    np.testing.assert_allclose(plain.D(x).numpy()[0], plain.D(pair_a).numpy()[0], rtol=1e-6)
    assert abs(mixed.D(x).numpy()[0, 0] - mixed.D(pair_a).numpy()[0, 0]) > 1e-6


def test_began_takes_no_discriminator_tricks():
    with pytest.raises(ValueError, match="autoencoder"):
        build("began", num_classes=3)
    with pytest.raises(ValueError, match="autoencoder"):
        build("began", minibatch_discrimination=True)


# ---------------------------------------------------------------------------
# errors, initialisation, sampling
# ---------------------------------------------------------------------------
def test_unknown_model_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'stylegan'.*sagan, dcgan, dcgan128, began"):
        build("stylegan")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_unsupported_image_size(name):
    with pytest.raises(ValueError, match=f"{name} makes images of size 32, 64, 128, not 48"):
        build(name, image_size=48, width=SMALL)


def test_bad_gan_fields():
    with pytest.raises(ValueError, match="z_dist"):
        GAN("x", nn.Linear(1, 1), nn.Linear(1, 1), z_dim=1, z_dist="cauchy", image_size=32, loss="bce")
    with pytest.raises(ValueError, match="loss"):
        GAN("x", nn.Linear(1, 1), nn.Linear(1, 1), z_dim=1, z_dist="normal", image_size=32, loss="wgan")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_init_is_reproducible_under_manual_seed(name):
    states = []
    for seed in (7, 7, 8):
        manual_seed(seed)
        gan = build(name, image_size=32, width=SMALL)
        states.append({**{f"G.{k}": v for k, v in gan.G.state_dict().items()},
                       **{f"D.{k}": v for k, v in gan.D.state_dict().items()}})
    assert all(np.array_equal(states[0][k], states[1][k]) for k in states[0])
    assert any(not np.array_equal(states[0][k], states[2][k]) for k in states[0])


def _expected_std(name, layer, weight):
    """N(0, 0.02) for the DCGAN-family models; Glorot uniform (std sqrt(2 / (fan_in + fan_out))) for BEGAN."""
    if name != "began":
        return 0.02
    receptive = int(np.prod(weight.shape[2:])) if weight.ndim > 2 else 1
    return float(np.sqrt(2.0 / ((weight.shape[0] + weight.shape[1]) * receptive)))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_init_follows_the_seed(name):
    manual_seed(3)
    gan = build(name)  # the seed's width: enough weights for the statistics
    for net in (gan.G, gan.D):
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                if m.weight.size >= 256:
                    assert abs(m.weight.numpy().mean() - 1.0) < 0.005 and not m.bias.numpy().any()
                continue
            if isinstance(m, nn.SpectralNorm):
                weight, bias = m.weight_orig, m.module.bias
            elif isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)) and m.weight is not None:
                weight, bias = m.weight, m.bias
            else:
                continue  # containers, activations, a layer inside SpectralNorm
            if weight.size >= 10000:
                std = _expected_std(name, m, weight.numpy())
                assert abs(weight.numpy().std() - std) < 0.1 * std and abs(weight.numpy().mean()) < 0.1 * std
            assert bias is None or not bias.numpy().any()


@pytest.mark.parametrize("name,dist", [("sagan", "normal"), ("dcgan", "uniform"), ("began", "uniform")])
def test_sample_z(name, dist):
    gan = build(name, image_size=32, width=SMALL)
    z = gan.sample_z(4000, np.random.default_rng(0))
    assert z.shape == (4000, gan.z_dim) and z.dtype == np.float32
    np.testing.assert_array_equal(z, gan.sample_z(4000, np.random.default_rng(0)))
    if dist == "uniform":
        assert z.min() >= -1 and z.max() <= 1 and abs(z.std() - 1 / np.sqrt(3)) < 0.01
    else:
        assert abs(z.std() - 1) < 0.01 and np.abs(z).max() > 3


@pytest.mark.parametrize("option,value,check", [
    ("z_dim", 33, lambda gan: gan.G(_z(gan)).shape == (2, 3, 32, 32) and gan.z_dim == 33),
    ("width", 4, lambda gan: gan.D.num_parameters() < build(gan.name, image_size=32, width=8).D.num_parameters()),
])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_options(name, option, value, check):
    gan = build(name, image_size=32, **({"width": SMALL} if option != "width" else {}), **{option: value})
    assert check(gan)
