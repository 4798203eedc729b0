"""The synthetic image sets behave as the metric tests assume."""
import numpy as np

from tests.metrics.synthetic import blobs, collapsed, stripes


def test_sets_are_uint8_images_and_reproducible():
    for make in (blobs, stripes):
        a = make(5, size=16, seed=3)
        assert a.shape == (5, 16, 16, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, make(5, size=16, seed=3))
        assert not np.array_equal(a, make(5, size=16, seed=4))
        assert len({img.tobytes() for img in a}) == 5          # all images distinct


def test_families_differ_in_structure():
    # Stripes oscillate across the image; blobs are flat away from their edges.
    def roughness(images):
        f = images.astype(np.float64)
        return np.abs(np.diff(f, axis=2)).mean()
    assert roughness(stripes(50)) > 2 * roughness(blobs(50))


def test_collapsed_repeats_one_image():
    c = collapsed(blobs(1)[0], 4)
    assert c.shape == (4, 32, 32, 3)
    assert all(np.array_equal(c[0], c[i]) for i in range(4))
