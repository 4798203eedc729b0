"""load_folder: colour modes, orientation, geometry, labels, errors, cache.

Every image is drawn inside its test with PIL and written to tmp_path. Sizes
are chosen so that the pixels checked sit far from any resize or crop edge,
which lets most checks be exact or within a few levels.
"""
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from minigan.data import DataError, DataWarning, ImageSet, load_folder
from minigan.data import folder as folder_module

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def save(image: Image.Image, path, **kw) -> str:
    """Save under tmp_path, creating folders; return the path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, **kw)
    return str(path)


def halves(size, top, bottom, mode="RGBA") -> Image.Image:
    """A size x size image: the top half one colour, the bottom half another."""
    im = Image.new(mode, (size, size), bottom)
    im.paste(Image.new(mode, (size, size // 2), top), (0, 0))
    return im


def load_quiet(path, size, **kw) -> ImageSet:
    """load_folder, with DataWarnings collected rather than printed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_folder(path, size, **kw)


def data_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DataWarning)]


def assert_close(pixel, expected, tol=2):
    diff = np.abs(np.asarray(pixel, dtype=int) - np.asarray(expected, dtype=int))
    assert diff.max() <= tol, f"pixel {tuple(pixel)} != expected {tuple(expected)}"


# --------------------------------------------------------------------------- #
# Colour modes
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("background", [WHITE, (10, 200, 30)])
def test_rgba_composited_onto_background(tmp_path, background):
    # Transparent pixels hide blue: a loader that drops alpha shows blue.
    im = halves(32, (255, 0, 0, 255), (0, 0, 255, 0))
    im.paste(Image.new("RGBA", (8, 8), (0, 0, 0, 128)), (0, 24))   # half-transparent black
    save(im, tmp_path / "icon.png")
    data = load_folder(tmp_path, 32, background=background)
    img = data.images[0]
    assert data.images.shape == (1, 32, 32, 3) and data.images.dtype == np.uint8
    assert_close(img[4, 16], RED)
    assert_close(img[20, 24], background)
    assert_close(img[28, 4], [round(c * 127 / 255) for c in background], tol=3)


def test_la_composited(tmp_path):
    save(halves(32, (100, 255), (30, 0), mode="LA"), tmp_path / "la.png")
    img = load_folder(tmp_path, 32, background=(200, 0, 0)).images[0]
    assert_close(img[4, 16], (100, 100, 100))
    assert_close(img[28, 16], (200, 0, 0))


def test_grayscale(tmp_path):
    save(halves(32, 40, 220, mode="L"), tmp_path / "g.png")
    img = load_folder(tmp_path, 32).images[0]
    assert_close(img[4, 16], (40, 40, 40))
    assert_close(img[28, 16], (220, 220, 220))


def test_palette_with_transparency(tmp_path):
    im = halves(32, 1, 0, mode="P")
    im.putpalette([9, 9, 9, 250, 120, 0] + [0] * 762)
    save(im, tmp_path / "p.png", transparency=0)              # index 0 is transparent
    img = load_folder(tmp_path, 32, background=(0, 0, 255)).images[0]
    assert_close(img[4, 16], (250, 120, 0))
    assert_close(img[28, 16], (0, 0, 255))                    # not (9, 9, 9)


@pytest.mark.parametrize("ext", ["tif", "jpg"])
def test_cmyk(tmp_path, ext):
    save(halves(32, (0, 255, 255, 0), (0, 0, 0, 255), mode="CMYK"), tmp_path / f"c.{ext}")
    img = load_folder(tmp_path, 32).images[0]
    tol = 2 if ext == "tif" else 12
    assert_close(img[4, 16], RED, tol)                        # cyan 0, magenta+yellow full
    assert_close(img[28, 16], (0, 0, 0), tol)                 # key (black) full


def test_16_bit_png_scaled_not_clipped(tmp_path):
    a = np.zeros((32, 48), dtype=np.uint16)
    a[:, 16:32], a[:, 32:] = 32896, 65535                     # 32896 = 128 * 257
    im = Image.fromarray(a)
    assert im.mode == "I;16"
    save(im, tmp_path / "deep.png")
    img = load_folder(tmp_path, 48, fit="pad").images[0]       # pad: 48x32 -> 48 wide, no crop
    row = img[24]
    assert_close(row[8], (0, 0, 0))
    assert_close(row[24], (128, 128, 128))                    # a clip to 255 gives 255 here
    assert_close(row[40], WHITE)


def test_float_tiff_in_unit_range(tmp_path):
    a = np.zeros((32, 32), dtype=np.float32)
    a[16:] = 0.5
    save(Image.fromarray(a, mode="F"), tmp_path / "f.tif")
    img = load_folder(tmp_path, 32).images[0]
    assert_close(img[4, 16], (0, 0, 0))
    assert_close(img[28, 16], (128, 128, 128))


def test_exif_orientation_applied(tmp_path):
    # Stored landscape, red left / blue right. Orientation 6 = "rotate 90 degrees
    # clockwise to display": the viewer sees a portrait, red on top.
    im = Image.new("RGB", (64, 32), BLUE)
    im.paste(Image.new("RGB", (32, 32), RED), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    save(im, tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    img = load_folder(tmp_path, 32, fit="pad").images[0]       # portrait 16 x 32 in a square
    assert_close(img[6, 16], RED, tol=30)
    assert_close(img[26, 16], BLUE, tol=30)
    assert_close(img[16, 2], WHITE, tol=2)                    # padding left and right


def test_corrupt_exif_still_loads_quietly(tmp_path):
    # The EXIF block claims more data than it holds: Pillow warns while parsing.
    bad_exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\xff\xff\xff\xff"
    save(Image.new("RGB", (16, 16), RED), tmp_path / "odd.jpg", exif=bad_exif)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        img = load_folder(tmp_path, 16).images[0]
    assert record == []                                       # Pillow's chatter stays inside
    assert_close(img[8, 8], RED, tol=12)


def test_animated_gif_and_apng_use_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), c) for c in (RED, BLUE, GREEN)]
    save(frames[0], tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    save(frames[0], tmp_path / "anim.png", save_all=True, append_images=frames[1:], duration=50)
    with Image.open(tmp_path / "anim.png") as check:
        assert getattr(check, "n_frames", 1) == 3
    data = load_folder(tmp_path, 16)
    assert len(data) == 2
    for img in data.images:
        assert_close(img.reshape(-1, 3).mean(0), RED, tol=3)


def test_one_pixel_image(tmp_path):
    save(Image.new("RGB", (1, 1), (12, 34, 56)), tmp_path / "dot.png")
    img = load_folder(tmp_path, 8).images[0]
    assert (np.abs(img.astype(int) - (12, 34, 56)) <= 1).all()


# --------------------------------------------------------------------------- #
# Geometry
# --------------------------------------------------------------------------- #

def stripes() -> Image.Image:
    """60 x 20: blue | green | red thirds."""
    im = Image.new("RGB", (60, 20), GREEN)
    im.paste(Image.new("RGB", (20, 20), BLUE), (0, 0))
    im.paste(Image.new("RGB", (20, 20), RED), (40, 0))
    return im


def test_crop_takes_centre_square(tmp_path):
    save(stripes(), tmp_path / "wide.png")
    img = load_folder(tmp_path, 20, fit="crop").images[0]
    inner = img[:, 3:17].reshape(-1, 3)
    assert np.abs(inner.astype(int) - GREEN).max() <= 3     # only the green third survives


def test_pad_keeps_whole_image(tmp_path):
    save(stripes(), tmp_path / "wide.png")
    img = load_folder(tmp_path, 30, fit="pad", background=(7, 7, 7)).images[0]
    # 60x20 -> 30x10, centred: rows 10..19 hold the picture, the rest is background.
    assert np.abs(img[:8].astype(int) - 7).max() <= 2
    assert np.abs(img[22:].astype(int) - 7).max() <= 2
    assert_close(img[15, 4], BLUE, tol=6)
    assert_close(img[15, 15], GREEN, tol=6)
    assert_close(img[15, 26], RED, tol=6)


def test_big_jpeg_uses_draft_and_matches_full_decode(tmp_path):
    # A smooth 2400x1800 gradient: draft decoding must not change the result
    # beyond a few levels compared with decoding at full size.
    y, x = np.mgrid[0:1800, 0:2400]
    a = np.stack([x * 255 // 2399, y * 255 // 1799, (x + y) * 255 // 4198], -1).astype(np.uint8)
    path = save(Image.fromarray(a), tmp_path / "photo.jpg", quality=92)
    got = load_folder(tmp_path, 32).images[0].astype(int)
    with Image.open(path) as im:
        ref = np.asarray(im.convert("RGB").resize((32, 32), Image.LANCZOS,
                                                  box=(300, 0, 2100, 1800))).astype(int)
    assert np.abs(got - ref).max() <= 6


def test_bad_options_rejected(tmp_path):
    save(Image.new("RGB", (4, 4)), tmp_path / "a.png")
    with pytest.raises(ValueError, match="fit"):
        load_folder(tmp_path, 8, fit="stretch")
    with pytest.raises(ValueError, match="background"):
        load_folder(tmp_path, 8, background=(0, 0, 300))
    with pytest.raises(ValueError, match="size"):
        load_folder(tmp_path, 0)


# --------------------------------------------------------------------------- #
# Skipping and errors
# --------------------------------------------------------------------------- #

def test_corrupt_files_skipped_with_one_warning(tmp_path):
    for i in range(3):
        save(Image.new("RGB", (16, 16), (i * 80, 0, 0)), tmp_path / f"ok{i}.png")
    good = (tmp_path / "ok0.png").read_bytes()
    (tmp_path / "broken.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / ".DS_Store").write_bytes(b"\0hidden files are ignored")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        data = load_folder(tmp_path, 16)
    messages = data_warnings(record)
    assert len(messages) == 1, messages
    assert "skipped 2 of 5 files" in messages[0]
    assert "broken.png" in messages[0] and "notes.txt" in messages[0]
    assert len(data) == 3
    assert sorted(os.path.basename(p) for p, _ in data.skipped) == ["broken.png", "notes.txt"]
    assert all(reason for _, reason in data.skipped)


def test_warning_names_at_most_three(tmp_path):
    save(Image.new("RGB", (8, 8)), tmp_path / "ok.png")
    for i in range(5):
        (tmp_path / f"junk{i}.jpg").write_bytes(b"junk")
    with pytest.warns(DataWarning) as record:
        load_folder(tmp_path, 8)
    message = str(record[0].message)
    assert "skipped 5 of 6" in message and message.count("junk") == 3 and "..." in message


def error_message(path, **kw) -> str:
    with pytest.raises(DataError) as info:
        load_folder(path, 16, **kw)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(path) in message and "\n" not in message and message.endswith(".")
    return message


def test_missing_folder_error(tmp_path):
    assert "does not exist" in error_message(tmp_path / "nope")


def test_file_instead_of_folder_error(tmp_path):
    path = save(Image.new("RGB", (8, 8)), tmp_path / "one.png")
    assert "not a folder" in error_message(path)


def test_empty_folder_error(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").write_text("ignored")
    assert "empty" in error_message(tmp_path)


def test_no_readable_images_error(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        message = error_message(tmp_path)
    assert "no readable images" in message and "a.txt" in message
    assert data_warnings(record) == []                       # the error says it all


# --------------------------------------------------------------------------- #
# Labels from subfolders
# --------------------------------------------------------------------------- #

def test_subfolders_become_labels(tmp_path):
    for name, count in (("dogs", 2), ("cats", 3), ("birds", 1)):
        for i in range(count):
            save(Image.new("RGB", (8, 8)), tmp_path / name / f"{i}.png")
    (tmp_path / "README.txt").write_text("loose non-image files do not break labels")
    data = load_quiet(tmp_path, 8)
    assert data.class_names == ["birds", "cats", "dogs"] and data.num_classes == 3
    assert data.labels.dtype == np.int64
    expected = [data.class_names.index(p.split(os.sep)[-2]) for p in data.paths]
    assert data.labels.tolist() == expected == [0, 1, 1, 1, 2, 2]


@pytest.mark.parametrize("layout", [["a/1.png", "b/2.png", "top.png"],    # a loose image
                                    ["only/1.png", "only/2.png"]])         # one subfolder
def test_unlabelled_layouts(tmp_path, layout):
    for rel in layout:
        save(Image.new("RGB", (8, 8)), tmp_path / rel)
    data = load_folder(tmp_path, 8)
    assert data.labels is None and data.class_names == [] and len(data) == len(layout)


# --------------------------------------------------------------------------- #
# Cache
# --------------------------------------------------------------------------- #

def test_cache_is_used_and_invalidated(tmp_path, monkeypatch):
    src, cache = tmp_path / "src", tmp_path / "cache"
    for i, c in enumerate((RED, GREEN)):
        save(Image.new("RGB", (12, 12), c), src / "k" / f"{i}.png")
        save(Image.new("RGB", (12, 12), c), src / "m" / f"{i}.png")
    first = load_folder(src, 8, cache_dir=cache)
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].startswith("data-") and files[0].endswith(".npz")

    # Unchanged inputs: nothing is decoded, the arrays come from the cache.
    real_loader = folder_module._load_image

    def no_decoding(*args):
        raise AssertionError("decoded an image despite a valid cache")
    monkeypatch.setattr(folder_module, "_load_image", no_decoding)
    second = load_folder(src, 8, cache_dir=cache)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert second.class_names == first.class_names and second.paths == first.paths

    # Other options are another cache entry, not a stale hit.
    monkeypatch.setattr(folder_module, "_load_image", real_loader)
    load_folder(src, 8, cache_dir=cache, fit="pad")
    assert len(os.listdir(cache)) == 2

    # A changed file invalidates the cache.
    path = save(Image.new("RGB", (12, 12), BLUE), src / "k" / "0.png")
    os.utime(path, ns=(1, 1))
    third = load_folder(src, 8, cache_dir=cache)
    assert_close(third.images[0, 4, 4], BLUE)
    assert len(os.listdir(cache)) == 3


def test_corrupt_cache_is_rebuilt(tmp_path):
    src, cache = tmp_path / "src", tmp_path / "cache"
    save(Image.new("RGB", (12, 12), RED), src / "a.png")
    first = load_folder(src, 8, cache_dir=cache)
    (entry,) = cache.iterdir()
    entry.write_bytes(b"PK\x03\x04 this is not a valid npz")
    second = load_folder(src, 8, cache_dir=cache)
    np.testing.assert_array_equal(first.images, second.images)
    with np.load(entry, allow_pickle=False) as z:           # rewritten, valid again
        np.testing.assert_array_equal(z["images"], first.images)


def test_cache_keeps_skip_report(tmp_path):
    src, cache = tmp_path / "src", tmp_path / "cache"
    save(Image.new("RGB", (12, 12), RED), src / "a.png")
    (src / "bad.jpg").write_bytes(b"nope")
    for _ in range(2):                                        # built, then from the cache
        with pytest.warns(DataWarning, match="skipped 1 of 2"):
            data = load_folder(src, 8, cache_dir=cache)
        assert [os.path.basename(p) for p, _ in data.skipped] == ["bad.jpg"]
        assert data.paths == [os.path.join(str(src), "a.png")]


def test_skip_warning_speaks_to_command_line_users(tmp_path):
    """Which files and why, in the warning itself: a command-line user has no ImageSet to look into."""
    save(Image.new("RGB", (8, 8)), tmp_path / "ok.png")
    good = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.warns(DataWarning) as record:
        data = load_folder(tmp_path, 8)
    message = str(record[0].message)
    assert "ImageSet" not in message
    why = {os.path.basename(p): reason for p, reason in data.skipped}
    for name, reason in why.items():
        assert f"{name} ({reason})" in message, (name, message)
    assert "empty file" in message and "fix or remove them" in message
