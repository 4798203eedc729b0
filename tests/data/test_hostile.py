"""load_folder on a folder built to break it: it must load exactly the good
images, report every bad file, warn once, and never crash or hang.

The folder mixes a few dozen good images (many formats and modes, 1x1 pixels,
animations, a symlink to a good file, a folder named like an image, a folder
nested 1200 deep) with a few
hundred hostile entries: truncated PNG/JPEG/GIF/WebP at random cut points,
zero-byte files, random bytes with and without a PNG signature, headers that
declare decompression bombs or huge sizes, a symlink loop, dangling and
looping file links, a FIFO (opening it would block forever) and, when not
running as root, files and folders without read permission.
"""
import io
import os
import stat
import struct
import threading
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from minigan.data import DataWarning, load_folder

SIZE = 16
DEEP = 1200                                 # folder nesting depth, > sys.getrecursionlimit()
HANG_GUARD_S = 60.0


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise(rng, w, h, mode="RGB") -> Image.Image:
    """Incompressible content, so a cut point always lands inside pixel data."""
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)


def png_declaring(w: int, h: int) -> bytes:
    """A valid small PNG whose IHDR is rewritten to declare w x h (CRC fixed)."""
    data = bytearray(encode(Image.new("RGB", (8, 8), (1, 2, 3)), "PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", w, h)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    return bytes(data)


def jpeg_declaring(w: int, h: int) -> bytes:
    """A valid small JPEG whose SOF0 marker is rewritten to declare w x h."""
    data = bytearray(encode(Image.new("RGB", (8, 8), (1, 2, 3)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def build_folder(root, rng):
    """Write the mixed folder; return (good relative paths, bad relative paths, colours).

    colours maps a good path to the solid colour its loaded image must have
    (checked for the 1x1 and animated files).
    """
    good, bad, colours = set(), set(), {}

    def write(rel, data: bytes, ok):
        """Write a file; ok: True = must load, False = must be skipped, None = ignored."""
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        if ok is not None:
            (good if ok else bad).add(rel)
        return path

    # Good images: formats and modes Pillow writes.
    formats = [("PNG", "RGB", "png"), ("PNG", "RGBA", "png"), ("PNG", "L", "png"),
               ("PNG", "P", "png"), ("JPEG", "RGB", "jpg"), ("JPEG", "L", "jpeg"),
               ("BMP", "RGB", "bmp"), ("GIF", "P", "gif"), ("TIFF", "RGB", "tif"),
               ("WEBP", "RGB", "webp"), ("PNG", "LA", "png"), ("TIFF", "CMYK", "tiff")]
    for i, (fmt, mode, ext) in enumerate(formats * 2):
        w, h = (int(v) for v in rng.integers(4, 90, 2))
        write(f"good/{i:02d}.{ext}", encode(noise(rng, w, h, mode), fmt), True)
    write("good/no_extension", encode(noise(rng, 20, 30), "PNG"), True)
    write("good/misnamed.gif", encode(noise(rng, 20, 30), "JPEG"), True)
    for k, (fmt, ext) in enumerate((("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"))):
        colour = (40 + 60 * k, 200 - 50 * k, 90)
        rel = f"tiny/1x1_{k}.{ext}"
        write(rel, encode(Image.new("RGB", (1, 1), colour), fmt), True)
        colours[rel] = colour
    frames = [Image.new("RGB", (24, 24), c) for c in ((250, 10, 10), (10, 10, 250), (10, 250, 10))]
    for fmt, ext in (("GIF", "gif"), ("PNG", "png")):
        rel = f"anim/anim.{ext}"
        write(rel, encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=40),
              True)
        colours[rel] = (250, 10, 10)
    write("looks_like.png/inside.png", encode(noise(rng, 10, 10), "PNG"), True)
    # Nested deeper than Python's recursion limit (a recursive walk would crash).
    # Built with a loop: os.makedirs itself recurses.
    path = root
    for name in ["deep"] + ["d"] * DEEP:
        path = os.path.join(path, name)
        os.mkdir(path)
    write(os.path.relpath(os.path.join(path, "bottom.png"), root), encode(noise(rng, 6, 6), "PNG"),
          True)
    os.mkdir(os.path.join(root, "empty_dir.jpg"))

    # Truncated files, cut strictly inside the compressed pixel data. (Cutting
    # only the trailer of a PNG or GIF leaves a decodable image, hence the margins.)
    for i in range(240):
        fmt, ext, margin = [("PNG", "png", 32), ("JPEG", "jpg", 2), ("GIF", "gif", 16),
                            ("WEBP", "webp", 2)][i % 4]
        data = encode(noise(rng, 40, 40), fmt)
        write(f"truncated/{i:03d}.{ext}", data[:int(rng.integers(0, len(data) - margin))], False)
    for i in range(24):
        write(f"zero/{i:02d}.{('png', 'jpg', 'gif', 'bmp')[i % 4]}", b"", False)
    for i in range(60):
        blob = rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()
        if i % 3 == 0:
            blob = b"\x89PNG\r\n\x1a\n" + blob                # right signature, garbage after
        write(f"random/{i:02d}.{('png', 'jpg', 'gif', 'webp', 'ico')[i % 5]}", blob, False)
    write("text/notes.txt", b"just some notes\n" * 10, False)
    write("text/page.jpg", b"<html><body>not a jpeg</body></html>", False)
    write("text/drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', False)

    # Bombs and huge declared sizes: refused before any pixel is decoded.
    for rel, data in (("bomb/png_30000.png", png_declaring(30000, 30000)),
                      ("bomb/png_9000.png", png_declaring(9000, 9000)),
                      ("bomb/png_wide.png", png_declaring(40000, 8)),
                      ("bomb/jpeg_30000.jpg", jpeg_declaring(30000, 30000)),
                      ("bomb/jpeg_9000.jpg", jpeg_declaring(9000, 9000))):
        write(rel, data, False)

    # Links: a folder loop, a file loop, a dangling link, a link to a good file.
    os.symlink(os.path.abspath(root), os.path.join(root, "links_loop"))
    os.makedirs(os.path.join(root, "links"))
    os.symlink("l2.png", os.path.join(root, "links", "l1.png"))
    os.symlink("l1.png", os.path.join(root, "links", "l2.png"))
    os.symlink("missing.jpg", os.path.join(root, "links", "dangling.jpg"))
    os.symlink(os.path.abspath(os.path.join(root, "good", "00.png")),
               os.path.join(root, "links", "alias.png"))
    bad |= {"links/l1.png", "links/l2.png", "links/dangling.jpg"}
    good.add("links/alias.png")

    if hasattr(os, "mkfifo"):
        os.makedirs(os.path.join(root, "special"))
        os.mkfifo(os.path.join(root, "special", "pipe.png"))
        bad.add("special/pipe.png")

    # Hidden entries are ignored entirely: neither loaded nor reported.
    write(".hidden/secret.png", encode(noise(rng, 8, 8), "PNG"), None)
    write(".DS_Store", b"\0\0\0\1Bud1", None)

    # No read permission: skipped unless we run as root (root reads anyway).
    locked = write("locked/private.png", encode(noise(rng, 8, 8), "PNG"), True)
    os.chmod(locked, 0)
    locked_dir = os.path.join(root, "locked_dir")
    write("locked_dir/inside.png", encode(noise(rng, 8, 8), "PNG"), True)
    os.chmod(locked_dir, 0)
    if not os.access(locked, os.R_OK):
        good -= {"locked/private.png", "locked_dir/inside.png"}
        bad |= {"locked/private.png", "locked_dir"}
    return good, bad, colours


def run_with_hang_guard(fn):
    """Run fn in a daemon thread; fail (instead of hanging the suite) if it never returns."""
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # re-raised in the test thread
            out["error"] = exc
    thread = threading.Thread(target=target, daemon=True)
    start = time.perf_counter()
    thread.start()
    thread.join(HANG_GUARD_S)
    assert not thread.is_alive(), f"load_folder still running after {HANG_GUARD_S:.0f} s"
    if "error" in out:
        raise out["error"]
    return out["value"], time.perf_counter() - start


def remove_deep(top):
    """Delete the deep chain bottom-up with a loop."""
    path = os.path.join(top, *["d"] * DEEP)
    os.remove(os.path.join(path, "bottom.png"))
    while path != os.path.dirname(str(top)):
        os.rmdir(path)
        path = os.path.dirname(path)


@pytest.fixture
def hostile_folder(tmp_path):
    root = tmp_path / "hostile"
    root.mkdir()
    good, bad, colours = build_folder(str(root), np.random.default_rng(2024))
    yield root, good, bad, colours
    remove_deep(root / "deep")                                # shutil.rmtree recurses too
    os.chmod(root / "locked_dir", stat.S_IRWXU)               # so tmp_path can be removed
    os.chmod(root / "locked" / "private.png", stat.S_IRUSR | stat.S_IWUSR)


def test_hostile_folder(hostile_folder):
    root, good, bad, colours = hostile_folder
    assert len(bad) > 300
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        data, seconds = run_with_hang_guard(lambda: load_folder(root, SIZE))

    loaded = {os.path.relpath(p, root) for p in data.paths}
    skipped = {os.path.relpath(p, root): reason for p, reason in data.skipped}
    assert loaded == good
    assert set(skipped) == bad
    assert all(isinstance(r, str) and r for r in skipped.values())
    assert data.images.shape == (len(good), SIZE, SIZE, 3) and data.images.dtype == np.uint8
    # Every good image sits in a subfolder, so the subfolders are the classes.
    assert data.class_names == sorted({rel.split("/")[0] for rel in good})

    messages = [str(w.message) for w in record if issubclass(w.category, DataWarning)]
    assert len(messages) == 1, messages
    assert f"skipped {len(bad)} of {len(good) + len(bad)} files" in messages[0]

    assert all(skipped[r] == "empty file" for r in skipped if r.startswith("zero/"))
    if "special/pipe.png" in skipped:
        assert "regular" in skipped["special/pipe.png"]
    for rel in [r for r in skipped if r.startswith("bomb/")]:
        assert "bomb" in skipped[rel] or "too large" in skipped[rel], skipped[rel]
    for rel, colour in colours.items():
        img = data.images[data.paths.index(os.path.join(str(root), rel))]
        assert np.abs(img.astype(int) - colour).max() <= 3, rel
    assert seconds < HANG_GUARD_S
