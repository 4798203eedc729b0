"""The trainer's tricks: DiffAugment (Translate and the composite policies),
minibatch discrimination and feature matching -- gradients against finite
differences, values against the definitions (the authors' formulations)."""
import numpy as np
import pytest

import minigan.augment as A
import minigan.nn as nn
from minigan import Tensor, backend, manual_seed
from minigan.augment import Translate
from minigan.models import feature_matching_loss
from tests.gradcheck.helpers import check, checks, tensor


# ---------------------------------------------------------------------------
# DiffAugment
# ---------------------------------------------------------------------------
SHIFTS = [
    [[1, -2], [0, 0]],  # both directions, and the identity
    [[-3, 2], [2, 3]],
    [[5, 0], [0, -7]],  # shifted out entirely (H = 5, W = 6)
]


@checks(Translate)
@pytest.mark.parametrize("shifts", SHIFTS)
def test_translate_gradient(device, shifts):
    check(lambda x: A.translate(x, shifts), tensor((2, 3, 5, 6), device))


def _translate_as_authors(x, dy, dx):
    """DiffAugment_pytorch.rand_translation's gather: pad by 1, clamp the indices into the pad."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    rows = np.clip(np.arange(h)[None, :] + dy[:, None] + 1, 0, h + 1)  # (N, H)
    cols = np.clip(np.arange(w)[None, :] + dx[:, None] + 1, 0, w + 1)  # (N, W)
    return np.stack([padded[i][:, rows[i]][:, :, cols[i]] for i in range(n)])


def test_translation_matches_the_authors_code():
    x = np.random.default_rng(0).standard_normal((6, 2, 16, 16))
    y = A.translation(Tensor(x), np.random.default_rng(1)).numpy()
    draws = np.random.default_rng(1)
    dy, dx = draws.integers(-2, 3, 6), draws.integers(-2, 3, 6)  # 16 / 8 = 2
    np.testing.assert_array_equal(y, _translate_as_authors(x, dy, dx))


def _cutout_as_authors(n, h, w, rng):
    """DiffAugment_pytorch.rand_cutout: square indices around the offset, clamped into the image."""
    size = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
    oy = rng.integers(0, h + (1 - size[0] % 2), n)
    ox = rng.integers(0, w + (1 - size[1] % 2), n)
    mask = np.ones((n, h, w))
    for i in range(n):
        ys = np.clip(np.arange(size[0]) + oy[i] - size[0] // 2, 0, h - 1)
        xs = np.clip(np.arange(size[1]) + ox[i] - size[1] // 2, 0, w - 1)
        mask[i][np.ix_(ys, xs)] = 0
    return mask[:, None]


@pytest.mark.parametrize("size", [8, 9])
def test_cutout_matches_the_authors_code(size):
    mask = A.cutout_mask(50, size, size, np.random.default_rng(2))
    np.testing.assert_array_equal(mask, _cutout_as_authors(50, size, size, np.random.default_rng(2)))
    half = int(size * 0.5 + 0.5)
    assert (1 - mask).sum(axis=(1, 2, 3)).max() == half * half  # a whole square somewhere...
    assert (1 - mask).sum(axis=(1, 2, 3)).min() < half * half  # ...and clipped squares elsewhere


def test_color_matches_the_definitions():
    x = np.random.default_rng(3).standard_normal((4, 3, 5, 5))
    y = A.diff_augment(Tensor(x), "color", np.random.default_rng(4)).numpy()
    draws = np.random.default_rng(4)
    b, s, c = draws.uniform(-0.5, 0.5, 4), draws.uniform(0, 2, 4), draws.uniform(0.5, 1.5, 4)
    e = x + b[:, None, None, None]
    m = e.mean(axis=1, keepdims=True)
    e = (e - m) * s[:, None, None, None] + m
    m = e.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, (e - m) * c[:, None, None, None] + m, rtol=1e-12)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diff_augment_gradient(device, policy):
    x = tensor((3, 3, 8, 8), device)
    check(lambda x: A.diff_augment(x, policy, np.random.default_rng(5)), x)


def test_diff_augment_is_reproducible_and_keeps_dtype():
    x = Tensor(np.random.default_rng(6).standard_normal((4, 3, 16, 16)).astype(np.float32))
    a = A.diff_augment(x, rng=np.random.default_rng(7))
    b = A.diff_augment(x, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert a.dtype == np.float32 and a.shape == x.shape
    assert A.diff_augment(x, "", np.random.default_rng(7)) is x
    with pytest.raises(ValueError, match="unknown DiffAugment policy 'blur'"):
        A.diff_augment(x, "color,blur", np.random.default_rng(7))


# ---------------------------------------------------------------------------
# minibatch discrimination
# ---------------------------------------------------------------------------
def _minibatch_layer(device, in_features=4, kernels=3, dim=2):
    manual_seed(0)
    layer = nn.MinibatchDiscrimination(in_features, kernels, dim)
    layer.T.data = backend.to_device(np.random.default_rng(1).standard_normal(layer.T.shape) * 0.3, device)
    return layer


def test_minibatch_discrimination_gradient(device):
    layer = _minibatch_layer(device)
    check(lambda f, T: layer(f), tensor((5, 4), device), layer.T)


def test_minibatch_discrimination_values():
    layer = _minibatch_layer("cpu")
    f = np.random.default_rng(2).standard_normal((5, 4))
    out = layer(Tensor(f)).numpy()
    m = (f @ layer.T.numpy()).reshape(5, 3, 2)
    o = np.zeros((5, 3))
    for i in range(5):
        for j in range(5):  # j = i included: it adds exp(0) = 1
            o[i] += np.exp(-np.abs(m[i] - m[j]).sum(axis=1))
    np.testing.assert_allclose(out, np.concatenate([f, o], axis=1), rtol=1e-12)
    assert layer.out_features == 7


def test_minibatch_discrimination_sees_collapse():
    """Identical samples give the largest o (= N per kernel): what lets D spot mode collapse."""
    layer = _minibatch_layer("cpu")
    same = layer(Tensor(np.ones((4, 4)))).numpy()[:, 4:]
    spread = layer(Tensor(np.random.default_rng(3).standard_normal((4, 4)) * 5)).numpy()[:, 4:]
    np.testing.assert_allclose(same, 4.0)
    assert (spread < 4.0).all()


# ---------------------------------------------------------------------------
# feature matching
# ---------------------------------------------------------------------------
def test_feature_matching_gradient(device):
    real, fake = tensor((5, 6), device, 0), tensor((3, 6), device, 1)
    check(lambda fake: feature_matching_loss(real, fake), fake)
    real.grad = None
    feature_matching_loss(real, fake).backward()
    assert real.grad is None  # the real side is a fixed target


def test_feature_matching_value():
    real, fake = np.random.default_rng(0).standard_normal((2, 5, 4))
    expected = ((real.mean(0) - fake.mean(0)) ** 2).sum()
    np.testing.assert_allclose(feature_matching_loss(Tensor(real), Tensor(fake)).item(), expected, rtol=1e-12)


# ---------------------------------------------------------------------------
# adaptive augmentation: each transform applied to each sample with probability p
# ---------------------------------------------------------------------------
def test_diff_augment_with_probability_picks_each_sample_or_its_transform():
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8))
    assert np.array_equal(A.diff_augment(Tensor(x), "translation", np.random.default_rng(1), p=0.0).numpy(), x)
    full = A.diff_augment(Tensor(x), "translation", np.random.default_rng(1)).numpy()
    rng = np.random.default_rng(1)
    chosen = rng.uniform(size=16) < 0.5
    shifted = A.translation(Tensor(x), rng).numpy()  # the same draws diff_augment makes after the mask
    mixed = A.diff_augment(Tensor(x), "translation", np.random.default_rng(1), p=0.5).numpy()
    assert 0 < chosen.sum() < 16
    np.testing.assert_array_equal(mixed[chosen], shifted[chosen])
    np.testing.assert_array_equal(mixed[~chosen], x[~chosen])
    assert not np.array_equal(full, shifted)  # p = 1 draws no mask: the stream is the one it always was


def test_diff_augment_with_probability_gradient(device):
    x = tensor((4, 3, 6, 6), device, 7)
    check(lambda x: A.diff_augment(x, "color,translation", np.random.default_rng(3), p=0.5), x)
