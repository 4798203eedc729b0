"""BatchSampler: shapes and range, epochs without replacement, flips, labels,
exact resume from a JSON round trip, and the with-replacement fallback."""
import json
import warnings

import numpy as np
import pytest

from minigan.data import BatchSampler, DataWarning
from minigan.imageio import to_uint8


def indexed_images(n, h=4, w=6):
    """uint8 (n, h, w, 3): image i has value i in its left column, 255 - i on the right,
    so an image's index and whether it was mirrored can be read back from a batch."""
    images = np.full((n, h, w, 3), 128, dtype=np.uint8)
    images[:, :, 0] = np.arange(n, dtype=np.uint8)[:, None, None]
    images[:, :, -1] = 255 - np.arange(n, dtype=np.uint8)[:, None, None]
    return images


def decode(batch):
    """float batch (B, 3, H, W) -> (indices (B,), mirrored (B,) bool)."""
    u8 = np.rint((batch + 1.0) * 127.5).astype(int)             # back to 0..255
    left, right = u8[:, 0, 0, 0], u8[:, 0, 0, -1]
    mirrored = left > 127
    return np.where(mirrored, right, left), mirrored


def test_shapes_dtype_range():
    images = indexed_images(10)
    images[0, 0, 1], images[1, 0, 1] = 0, 255
    x, y = BatchSampler(images, 10).next_batch()
    assert x.shape == (10, 3, 4, 6) and x.dtype == np.float32 and y is None
    assert x.min() == -1.0 and x.max() == 1.0


def test_each_epoch_covers_every_image_once():
    n, b = 10, 4
    sampler = BatchSampler(indexed_images(n), b, seed=3)
    assert len(sampler) == 3
    batches = -(-2 * n // b)                                     # enough for two epochs
    stream = np.concatenate([decode(sampler.next_batch()[0])[0] for _ in range(batches)])
    epochs = stream[:2 * n].reshape(2, n)
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(n))
    assert epochs[0].tolist() != list(range(n))                  # shuffled
    assert epochs[0].tolist() != epochs[1].tolist()              # reshuffled each epoch
    assert sampler.epoch == 2


def test_labels_follow_images():
    n = 9
    labels = np.arange(n) % 3
    sampler = BatchSampler(indexed_images(n), 4, labels=labels)
    for _ in range(5):
        x, y = sampler.next_batch()
        assert y.dtype == np.int64
        np.testing.assert_array_equal(y, decode(x)[0] % 3)


@pytest.mark.parametrize("flip", [False, True])
def test_flip(flip):
    sampler = BatchSampler(indexed_images(8), 8, seed=1, flip=flip)
    mirrored = np.concatenate([decode(sampler.next_batch()[0])[1] for _ in range(20)])
    if flip:
        assert 0.3 < mirrored.mean() < 0.7
    else:
        assert not mirrored.any()


def test_flip_mirrors_width_axis_only():
    images = np.random.default_rng(0).integers(0, 256, (1, 5, 7, 3), dtype=np.uint8)
    sampler = BatchSampler(images, 1, flip=True)
    expected = {images[0].tobytes(), images[0, :, ::-1].tobytes()}
    seen = {to_uint8(sampler.next_batch()[0])[0].tobytes() for _ in range(30)}
    assert seen == expected


@pytest.mark.parametrize("n, b, flip", [(10, 4, True), (7, 7, False), (3, 5, True)])
def test_resume_is_exact(n, b, flip):
    labels = np.arange(n) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        first = BatchSampler(indexed_images(n), b, seed=11, flip=flip, labels=labels)
        for _ in range(3):                                      # mid-epoch for n=10
            first.next_batch()
        state = json.loads(json.dumps(first.state_dict()))      # what a checkpoint stores
        expected = [first.next_batch() for _ in range(6)]
        resumed = BatchSampler(indexed_images(n), b, seed=999, flip=flip, labels=labels)
    resumed.load_state_dict(state)
    for (x0, y0), (x1, y1) in zip(expected, [resumed.next_batch() for _ in range(6)]):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
    assert resumed.epoch == first.epoch


def test_state_for_other_data_rejected():
    state = BatchSampler(indexed_images(5), 2).state_dict()
    with pytest.raises(ValueError, match="5 images"):
        BatchSampler(indexed_images(6), 2).load_state_dict(state)


def test_fewer_images_than_batch_warns_once_and_samples_with_replacement():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sampler = BatchSampler(indexed_images(3), 5, seed=0)
        batches = [sampler.next_batch()[0] for _ in range(20)]
    messages = [str(w.message) for w in record if issubclass(w.category, DataWarning)]
    assert len(messages) == 1 and "replacement" in messages[0]
    indices = np.concatenate([decode(x)[0] for x in batches])
    assert all(x.shape[0] == 5 for x in batches)
    assert set(indices.tolist()) == {0, 1, 2}
    assert len({x.tobytes() for x in batches}) > 1              # random draws, not a fixed cycle


def test_bad_inputs():
    with pytest.raises(ValueError, match="uint8"):
        BatchSampler(np.zeros((2, 4, 4, 3), np.float32), 2)
    with pytest.raises(ValueError, match="empty"):
        BatchSampler(np.zeros((0, 4, 4, 3), np.uint8), 2)
    with pytest.raises(ValueError, match="labels"):
        BatchSampler(indexed_images(4), 2, labels=[0, 1])
