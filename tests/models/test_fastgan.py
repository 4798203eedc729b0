"""The FastGAN-style model: shapes at every size, its pieces against their definitions, the registry."""
import numpy as np
import pytest

from minigan import Tensor, manual_seed
from minigan.models import MODELS, build
from minigan.models.fastgan import QUADRANTS, avg_pool, glu, quadrant


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_at_every_size(size):
    manual_seed(0)
    gan = build("fastgan", image_size=size, width=8)
    z = Tensor(gan.sample_z(2, np.random.default_rng(0)))
    x = gan.G(z)
    assert x.shape == (2, 3, size, size) and np.all(np.abs(x.numpy()) <= 1)
    assert gan.D(x).shape == (2, 1)
    for q in range(4):
        logits, full, part = gan.D(x, reconstruct=q)
        target_full, target_part = gan.D.targets(x, q)
        assert logits.shape == (2, 1)
        recon = min(size // 2, 32)
        assert full.shape == target_full.shape == part.shape == target_part.shape == (2, 3, recon, recon)


def test_registered_with_the_papers_recipe():
    entry = MODELS["fastgan"]
    assert entry.recipe == {"lr_d": 2e-4, "lr_g": 2e-4, "betas": (0.5, 0.999), "batch": 8}
    assert 32 in entry.sizes and 128 in entry.sizes and not entry.classifier and entry.logits
    assert build("fastgan", discriminator=False).D is None
    with pytest.raises(ValueError, match="fastgan"):
        build("fastgan", num_classes=3)


def test_glu_avg_pool_quadrant_match_their_definitions():
    a = np.random.default_rng(0).standard_normal((2, 6, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(glu(Tensor(a)).numpy(), a[:, :3] / (1 + np.exp(-a[:, 3:])), rtol=1e-6)
    pooled = avg_pool(Tensor(a), 4).numpy()
    np.testing.assert_allclose(pooled[1, 2, 3, 1], a[1, 2, 6:8, 2:4].mean(), rtol=1e-6)
    assert avg_pool(Tensor(a), 8).numpy() is not None and np.array_equal(avg_pool(Tensor(a), 8).numpy(), a)
    for q, (row, col) in enumerate(QUADRANTS):
        np.testing.assert_array_equal(quadrant(Tensor(a), q).numpy(), a[:, :, row * 4:row * 4 + 4, col * 4:col * 4 + 4])


def test_skip_excitation_gates_the_fine_map_from_the_coarse_one():
    manual_seed(1)
    G = build("fastgan", image_size=32, width=8, discriminator=False).G
    sle = G.sles[0]  # gates 16x16 from 4x4
    low = Tensor(np.random.default_rng(0).standard_normal((2, G.channels[0], 4, 4)).astype(np.float32))
    high = Tensor(np.ones((2, G.channels[2], 16, 16), np.float32))
    gated = sle(low, high).numpy()
    assert np.all((gated > 0) & (gated < 1))  # sigmoid gates in (0, 1) ...
    assert np.ptp(gated[:, :, 0, 0], axis=1).min() > 0  # ... one per channel ...
    np.testing.assert_array_equal(gated, gated[:, :, :1, :1] * np.ones((1, 1, 16, 16)))  # ... constant over space
    other = Tensor(low.numpy()[::-1].copy())
    assert not np.allclose(sle(other, high).numpy()[0], gated[0])  # and it depends on the coarse map


def test_generator_uses_its_skip_excitations():
    manual_seed(2)
    G = build("fastgan", image_size=32, width=8, discriminator=False).G
    z = Tensor(np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32))
    before = G(z).numpy()
    G.sles[1].excite.weight.data[...] += 1.0  # change the 8x8 -> 32x32 gate
    assert not np.allclose(G(z).numpy(), before)
