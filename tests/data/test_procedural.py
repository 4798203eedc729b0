"""The built-in faces: deterministic, varied, icon-like, fast enough."""
import time

import numpy as np
import pytest

from minigan.data import ImageSet, default_dataset, make_faces


@pytest.fixture(scope="module")
def faces():
    start = time.perf_counter()
    images = make_faces(n=128, size=64, seed=0)
    return images, time.perf_counter() - start


def test_shape_and_dtype(faces):
    images, _ = faces
    assert images.shape == (128, 64, 64, 3) and images.dtype == np.uint8


def test_deterministic_and_prefix_stable(faces):
    images, _ = faces
    np.testing.assert_array_equal(make_faces(n=12, seed=0), images[:12])


def test_seeds_differ(faces):
    images, _ = faces
    other = make_faces(n=12, seed=1)
    assert all(np.any(a != b) for a, b in zip(images[:12], other))


def test_images_differ_from_each_other(faces):
    images, _ = faces
    flat = images.reshape(len(images), -1).astype(np.float32)
    # Mean absolute difference over all pairs, via a few random pairings.
    diffs = [np.abs(flat - np.roll(flat, k, axis=0)).mean(axis=1) for k in (1, 7, 31)]
    diffs = np.concatenate(diffs)
    assert diffs.min() > 5.0 and diffs.mean() > 25.0
    assert len({img.tobytes() for img in images}) == len(images)


def test_colourful_and_anti_aliased(faces):
    images, _ = faces
    backgrounds = {tuple(img[1, 1] // 16) for img in images}    # plain corners, quantised
    assert len(backgrounds) > 40
    colours_per_image = [len(np.unique(img.reshape(-1, 3), axis=0)) for img in images[:16]]
    assert min(colours_per_image) > 30                          # smooth edges, not flat fills


def test_a_face_in_the_middle(faces):
    images, _ = faces
    corner = images[:, :4, :4].reshape(len(images), -1, 3).mean(1)
    centre = images[:, 24:40, 24:40].reshape(len(images), -1, 3).mean(1)
    corner_flat = images[:, :4, :4].reshape(len(images), -1, 3).std(1).max(1)
    assert np.median(corner_flat) < 2.0                         # plain background
    assert np.median(np.abs(centre - corner).sum(1)) > 40       # something drawn on it


@pytest.mark.parametrize("size", [32, 48])
def test_other_sizes(size):
    assert make_faces(n=3, size=size, seed=5).shape == (3, size, size, 3)


def test_fast(faces):
    _, seconds = faces
    assert seconds < 128 / 384 * 10.0, f"{seconds:.2f} s for 128 faces"   # target: 2 s for 384


def test_default_dataset():
    data = default_dataset(size=32, seed=3, n=10)
    assert isinstance(data, ImageSet) and len(data) == 10
    assert data.labels is None and data.class_names == [] and data.skipped == []
    assert data.paths[4] == "<procedural faces #4>"
    np.testing.assert_array_equal(data.images, make_faces(n=10, size=32, seed=3))
