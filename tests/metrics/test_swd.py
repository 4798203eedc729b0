"""Sliced Wasserstein distance: the pyramid, the pieces, and the whole metric against
an independent slow implementation written straight from the ProGAN recipe."""
import numpy as np
import pytest

from minigan.imageio import to_float
from minigan.metrics.features import as_float_images, canonical_order
from minigan.metrics.swd import (descriptor_owners, draw_swd_randomness, laplacian_pyramid,
                                 normalize_descriptors, pyr_down, pyr_up, pyramid_resolutions,
                                 random_directions, reconstruct_laplacian_pyramid,
                                 sliced_wasserstein, sliced_wasserstein_distance)
from tests.metrics.synthetic import blobs, collapsed, stripes

# ---------------------------------------------------------------------------
# The slow reference: direct loops, float64, no code shared with minigan.
# ---------------------------------------------------------------------------
BINOMIAL = np.array([1, 4, 6, 4, 1]) / 16.0


def mirror(i, n):
    """Border mirrored without repeating the edge sample: index -1 -> 1, n -> n - 2."""
    return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)


def slow_blur(x, gain=1.0):
    """5x5 binomial filter of x (N, C, H, W) with mirrored borders, one output pixel at a time."""
    _, _, h, w = x.shape
    out = np.zeros(x.shape)
    for y in range(h):
        for xx in range(w):
            for a in range(5):
                for b in range(5):
                    out[:, :, y, xx] += (gain * BINOMIAL[a] * BINOMIAL[b]
                                         * x[:, :, mirror(y + a - 2, h), mirror(xx + b - 2, w)])
    return out


def slow_pyr_down(x):
    return slow_blur(x)[:, :, ::2, ::2]


def slow_pyr_up(x):
    n, c, h, w = x.shape
    stuffed = np.zeros((n, c, 2 * h, 2 * w))
    stuffed[:, :, ::2, ::2] = x                  # a zero after every sample
    return slow_blur(stuffed, gain=4.0)


def slow_sliced_wasserstein(real, fake, draws, patch=7):
    """The recipe, with every patch, projection and sort written out."""
    def pyramid(x):
        levels, g = [], np.asarray(x, np.float64)
        for _ in draws[1:]:
            coarser = slow_pyr_down(g)
            levels.append(g - slow_pyr_up(coarser))
            g = coarser
        return levels + [g]

    def descriptors(level, corners):
        owners = descriptor_owners(level.shape[0], len(corners))
        desc = np.array([level[owners[j], :, y:y + patch, x:x + patch]
                         for j, (y, x) in enumerate(corners)])           # (M, 3, 7, 7)
        for c in range(3):                                               # per-channel normalise
            desc[:, c] = (desc[:, c] - desc[:, c].mean()) / desc[:, c].std()
        return desc.reshape(len(corners), -1)

    result = {}
    for d, level_r, level_f in zip(draws, pyramid(real), pyramid(fake)):
        a, b = descriptors(level_r, d.real_corners), descriptors(level_f, d.fake_corners)
        per_repeat = []
        for dirs in d.directions:
            gaps = []
            for w in dirs:
                pa = sorted(float(np.dot(row, w)) for row in a)
                pb = sorted(float(np.dot(row, w)) for row in b)
                gaps += [abs(u - v) for u, v in zip(pa, pb)]
            per_repeat.append(np.mean(gaps))
        result[d.resolution] = 1e3 * np.mean(per_repeat)
    return result


# ---------------------------------------------------------------------------
# The pyramid
# ---------------------------------------------------------------------------

def test_pyr_down_and_up_match_the_direct_definitions():
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 12)).astype(np.float32)  # not square
    np.testing.assert_allclose(pyr_down(x), slow_pyr_down(x), atol=1e-6)
    np.testing.assert_allclose(pyr_up(x), slow_pyr_up(x), atol=1e-6)
    assert pyr_down(x).shape == (2, 3, 4, 6) and pyr_up(x).shape == (2, 3, 16, 24)


def test_constant_image_has_no_detail():
    x = np.full((1, 3, 64, 64), 0.3, np.float32)
    levels = laplacian_pyramid(x)
    assert [lv.shape[2] for lv in levels] == [64, 32, 16]
    for detail in levels[:-1]:
        np.testing.assert_allclose(detail, 0.0, atol=1e-6)
    np.testing.assert_allclose(levels[-1], 0.3, atol=1e-6)


def test_reconstruction_inverts_the_pyramid():
    x = as_float_images(blobs(3, size=64, seed=1))
    levels = laplacian_pyramid(x)
    assert float(np.abs(levels[0]).max()) > 0.05          # real detail, not a trivial pass
    np.testing.assert_allclose(reconstruct_laplacian_pyramid(levels), x, atol=1e-5)


def test_pyramid_resolutions():
    assert pyramid_resolutions(64) == [64, 32, 16]
    assert pyramid_resolutions(16) == [16]
    for bad in (8, 48, 100):
        with pytest.raises(ValueError, match="power of two"):
            pyramid_resolutions(bad)


# ---------------------------------------------------------------------------
# The pieces
# ---------------------------------------------------------------------------

def test_normalize_descriptors_per_channel():
    rng = np.random.default_rng(0)
    desc = (rng.standard_normal((500, 3, 49)) * [[2.0], [0.5], [0.0]] + [[3.0], [-1.0], [7.0]])
    desc = normalize_descriptors(desc.reshape(500, -1).astype(np.float32)).reshape(500, 3, 49)
    np.testing.assert_allclose(desc[:, :2].mean(axis=(0, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(desc[:, :2].std(axis=(0, 2)), 1.0, atol=1e-5)
    np.testing.assert_allclose(desc[:, 2], 0.0, atol=1e-6)     # a constant channel: only centred


def test_distance_of_a_shifted_set_is_the_mean_projected_shift():
    # Shifting every point by s moves each direction's sorted projections by s.w,
    # so the sliced distance is mean |s.w| exactly.
    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 147)).astype(np.float32)
    shift = rng.standard_normal(147).astype(np.float32) * 0.1
    dirs = random_directions(rng, 3, 16, 147)                  # (3, 16, 147)
    expected = np.abs(dirs @ shift).mean()
    assert sliced_wasserstein_distance(a, a + shift, dirs) == pytest.approx(expected, rel=1e-4)
    assert sliced_wasserstein_distance(a, a[::-1].copy(), dirs) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="equal-size"):
        sliced_wasserstein_distance(a, a[:10], dirs)


def test_descriptor_owners_spread_evenly():
    owners = descriptor_owners(7, 40)
    counts = np.bincount(owners, minlength=7)
    assert counts.sum() == 40 and counts.min() >= 5 and counts.max() <= 6
    np.testing.assert_array_equal(descriptor_owners(3, 12), np.repeat(np.arange(3), 4))


@pytest.mark.parametrize("n_real, n_fake", [(3, 3), (4, 3)])
def test_matches_slow_reference(n_real, n_fake):
    real = as_float_images(blobs(n_real, size=32, seed=1))
    fake = as_float_images(stripes(n_fake, size=32, seed=2))
    # In canonical order the draws' ranks are positions, so the reference needs no mapping.
    real, fake = real[canonical_order(real)], fake[canonical_order(fake)]
    kwargs = dict(patches_per_image=4, n_directions=5, n_repeats=2)
    fast = sliced_wasserstein(real, fake, seed=7, **kwargs)
    draws = draw_swd_randomness(7, n_real, n_fake, [32, 16], **kwargs)
    slow = slow_sliced_wasserstein(real, fake, draws)
    assert list(fast["levels"]) == [32, 16]
    for r in (32, 16):
        assert fast["levels"][r] == pytest.approx(slow[r], rel=1e-4)
    assert fast["mean"] == pytest.approx(np.mean(list(slow.values())), rel=1e-4)


# ---------------------------------------------------------------------------
# The metric on image sets
# ---------------------------------------------------------------------------
N = 150
REAL = blobs(N, seed=1)


def swd_mean(fake, **kwargs):
    return sliced_wasserstein(REAL, fake, **kwargs)["mean"]


def test_floor_disjoint_and_collapsed():
    same = swd_mean(blobs(N, seed=2))
    disjoint = swd_mean(stripes(N, seed=3))
    mode_collapse = swd_mean(collapsed(blobs(1, seed=4)[0], N))
    assert same < 40
    assert disjoint > 2.5 * same and mode_collapse > 2.5 * same


def test_order_invariance_and_determinism():
    fake = stripes(N, seed=3)
    rng = np.random.default_rng(0)
    reference = sliced_wasserstein(REAL, fake, seed=5)
    assert sliced_wasserstein(REAL[rng.permutation(N)], fake[rng.permutation(N)],
                              seed=5) == reference
    assert sliced_wasserstein(REAL, fake, seed=5) == reference
    other_seed = sliced_wasserstein(REAL, fake, seed=6)
    assert other_seed != reference
    assert other_seed["mean"] == pytest.approx(reference["mean"], rel=0.2)


def test_uint8_and_float_inputs_give_the_same_result():
    fake = blobs(40, seed=2)
    assert (sliced_wasserstein(REAL[:40], fake) ==
            sliced_wasserstein(to_float(REAL[:40]), to_float(fake)))


def test_sizes_must_match():
    with pytest.raises(ValueError, match="differ in size"):
        sliced_wasserstein(REAL, blobs(10, size=64))
