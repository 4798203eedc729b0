"""Load a folder of images into one uint8 array: (N, size, size, 3).

The folder is whatever a user points ``--data`` at, so the loader assumes
nothing about it: every file is offered to Pillow (no extension filter), and a
file that is not a readable image is skipped and reported, never fatal. The
steps for one file, in order:

1. ``os.stat``: only regular files are opened (a FIFO named ``x.png`` would
   block ``open`` forever); empty files are skipped without opening.
2. ``Image.open`` reads the header only. Declared sizes above ``MAX_SIDE`` or
   ``MAX_PIXELS`` are refused before any pixel is decoded, and Pillow's own
   decompression-bomb warning is turned into an error.
3. ``Image.draft`` lets the JPEG decoder scale down by 1/2, 1/4 or 1/8 while
   decoding, so a 40-megapixel photo costs about as much as a small one.
4. ``ImageOps.exif_transpose`` applies the camera's orientation tag (a
   broken EXIF block is ignored, not fatal).
5. Colour: alpha (RGBA, LA, palette or colour-key transparency) is composited
   onto ``background``; grayscale, palette and CMYK become RGB; 16-bit and
   float images are scaled to 8 bits (not clipped).
6. Square: ``fit="crop"`` takes the centred square, ``fit="pad"`` pads the short
   side with ``background``; then a Lanczos resize to ``size x size``.

Subfolders become class labels when there are at least two of them and every
image lives in one (see :func:`_class_labels`). With ``cache_dir`` the result is
saved as ``data-<hash>.npz`` keyed on the file list, sizes and mtimes, so a
second run on an unchanged folder skips all decoding.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import warnings
from dataclasses import dataclass, field

import numpy as np
import PIL
from PIL import Image, ImageOps

from minigan.imageio import _atomic_save

MAX_SIDE = 16384                 # refuse a declared width or height above this
MAX_PIXELS = 64 * 1024 * 1024    # ... or a declared area above this (64 Mpixel)
REDUCING_GAP = 3.0               # Pillow: integer box-reduce first, then Lanczos
FITS = ("crop", "pad")
_CACHE_VERSION = 1               # bump when preprocessing changes, to orphan old caches
_NAMES_IN_MESSAGES = 3           # how many skipped files a warning names


class DataError(ValueError):
    """A data folder cannot be used; the message names the folder and the fix."""


class DataWarning(UserWarning):
    """Something in the data was skipped or adjusted; training goes on."""


class _Skip(Exception):
    """One file is not a usable image; the message is the reason reported."""


@dataclass
class ImageSet:
    """A loaded data set.

    images:      uint8 (N, size, size, 3)
    labels:      int64 (N,) class index per image, or None when unlabelled
    class_names: one name per class (sorted subfolder names); empty when unlabelled
    paths:       where each image came from, in the order of ``images``
    skipped:     (path, reason) for every file that was not loaded
    """

    images: np.ndarray
    labels: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        """Number of classes (0 when unlabelled)."""
        return len(self.class_names)


# --------------------------------------------------------------------------- #
# Public entry point
# --------------------------------------------------------------------------- #

def load_folder(path, size: int, background=(255, 255, 255), fit: str = "crop",
                cache_dir=None) -> ImageSet:
    """Load every readable image under ``path`` (recursively) as a square RGB image.

    path:       the folder
    size:       output side in pixels
    background: RGB colour that transparent pixels (and ``fit="pad"`` margins) become
    fit:        "crop" (centre square) or "pad" (whole image, padded to a square)
    cache_dir:  if given, preprocessed arrays are cached there between runs

    Raises DataError when the folder is missing, not a folder, empty, or holds no
    readable image. Skipped files are listed in ``ImageSet.skipped`` and summed up
    in one DataWarning that names the first few, each with why.
    """
    root = os.fspath(path)
    size, background, fit = _check_options(size, background, fit)
    if not os.path.exists(root):
        raise DataError(f"data folder {root!r} does not exist: check the path, or point "
                        f"--data at the folder that holds your images.")
    if not os.path.isdir(root):
        raise DataError(f"{root!r} is a file, not a folder: point --data at the folder "
                        f"that holds your images.")

    files, unlisted = _walk(root)
    if not files and not unlisted:
        raise DataError(f"data folder {root!r} is empty: put PNG or JPEG files there, "
                        f"or point --data at another folder.")

    cache_path = None
    data = None
    if cache_dir is not None:
        key = _cache_key(root, files, unlisted, size, background, fit)
        cache_path = os.path.join(os.fspath(cache_dir), f"data-{key}.npz")
        data = _read_cache(cache_path, size)
    if data is None:
        data = _load_files(root, files, unlisted, size, background, fit)
        if cache_path is not None and len(data.images):
            _write_cache(cache_path, data)

    # Paths are kept relative to the folder (so a cache survives a moved
    # folder) until here, and returned joined to the folder the caller named.
    total, some, why = len(files) + len(unlisted), _name_some(data.skipped), _name_some(data.skipped, True)
    data.paths = [os.path.join(root, rel) for rel in data.paths]
    data.skipped = [(os.path.join(root, rel), why) for rel, why in data.skipped]
    if not len(data.images):
        raise DataError(f"no readable images among the {total} files in {root!r} ({some}): "
                        f"put PNG or JPEG files there, or point --data at another folder.")
    if data.skipped:
        warnings.warn(f"skipped {len(data.skipped)} of {total} files in {root!r} that are not readable "
                      f"images: {why}; they are left out (fix or remove them to silence "
                      "this).", DataWarning, stacklevel=2)
    return data


def _check_options(size, background, fit):
    """Validate the options once, up front, with messages a user can act on."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}.")
    background = tuple(int(c) for c in background)
    if len(background) != 3 or not all(0 <= c <= 255 for c in background):
        raise ValueError(f"background must be three integers in 0..255, got {background!r}.")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}.")
    return int(size), background, fit


def _name_some(skipped, with_reasons=False) -> str:
    """'a.txt, sub/b.png, ...' -- the first few skipped (relative) paths, each with why if asked."""
    names = [f"{rel} ({why})" if with_reasons else rel for rel, why in skipped[:_NAMES_IN_MESSAGES]]
    more = len(skipped) - _NAMES_IN_MESSAGES
    return ", ".join(names) + ((f", ... ({more} more)" if with_reasons else ", ...") if more > 0 else "")


# --------------------------------------------------------------------------- #
# Walking the folder
# --------------------------------------------------------------------------- #

def _walk(root: str):
    """List the files under ``root``: (sorted relative paths, [(rel_dir, reason)]).

    Hidden entries (names starting with '.') are ignored. Symlinked folders are
    followed once: each folder's identity (device, inode) is remembered, so a
    link back to an ancestor (a loop) or to a folder already walked is not
    entered again. The walk keeps its own stack, so no nesting depth can
    overflow Python's.
    Folders that cannot be listed are returned with the reason.
    """
    files: list[str] = []
    unlisted: list[tuple[str, str]] = []
    st = os.stat(root)
    visited: set[tuple[int, int]] = {(st.st_dev, st.st_ino)}
    stack = [""]                             # relative folders still to list
    while stack:
        rel_dir = stack.pop()
        full = os.path.join(root, rel_dir) if rel_dir else root
        try:
            with os.scandir(full) as it:
                # Sorted, so which of two links to one folder wins is deterministic.
                entries = sorted((e for e in it if not e.name.startswith(".")),
                                 key=lambda e: e.name)
        except OSError as exc:
            unlisted.append((rel_dir, f"folder cannot be listed ({_describe(exc)})"))
            continue
        for entry in entries:
            rel = os.path.join(rel_dir, entry.name) if rel_dir else entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                if is_dir:
                    st = entry.stat(follow_symlinks=True)
                    if (st.st_dev, st.st_ino) in visited:
                        continue             # a loop, or a second link to one folder
                    visited.add((st.st_dev, st.st_ino))
            except OSError:                  # e.g. a symlink loop between two links
                is_dir = False
            # Anything that is not a folder goes to the loader, which reports
            # FIFOs, devices and broken links as skipped.
            (stack if is_dir else files).append(rel)
    return sorted(files), sorted(unlisted)


# --------------------------------------------------------------------------- #
# Decoding and preprocessing one image
# --------------------------------------------------------------------------- #

def _load_files(root, files, unlisted, size, background, fit) -> ImageSet:
    """Decode every file; collect images, relative paths and skip reasons."""
    images, paths, skipped = [], [], list(unlisted)
    with warnings.catch_warnings():
        # Pillow warns about harmless oddities (bad EXIF, palette transparency);
        # silence those, but make a decompression bomb an error we can catch.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for rel in files:
            try:
                images.append(_load_image(os.path.join(root, rel), size, background, fit))
                paths.append(rel)
            except Exception as exc:     # one bad file must never stop the load
                skipped.append((rel, _describe(exc)))
    stack = (np.stack(images) if images
             else np.zeros((0, size, size, 3), dtype=np.uint8))
    labels, class_names = _class_labels(paths)
    return ImageSet(stack, labels, class_names, paths, skipped)


def _describe(exc: Exception) -> str:
    """A short reason for the skip list."""
    if isinstance(exc, _Skip):
        return str(exc)
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"decompression bomb refused ({exc})"
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image format Pillow can read"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, OSError):
        return exc.strerror.lower() if exc.strerror else f"truncated or corrupt ({exc})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _load_image(path: str, size: int, background, fit: str) -> np.ndarray:
    """One file -> uint8 (size, size, 3), or raise (``_Skip`` or whatever Pillow raises)."""
    try:
        st = os.stat(path)
    except OSError:
        if os.path.islink(path):
            raise _Skip("broken or looping symbolic link") from None
        raise
    if not stat.S_ISREG(st.st_mode):
        raise _Skip("not a regular file")
    if st.st_size == 0:
        raise _Skip("empty file")
    with Image.open(path) as im:             # header only; the first frame of an animation
        w, h = im.size
        if w < 1 or h < 1 or w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
            raise _Skip(f"declared size {w}x{h} is too large (limit {MAX_SIDE} per side, "
                        f"{MAX_PIXELS // 2**20} megapixels)")
        # JPEG only: decode at 1/2..1/8 scale when the image is >= 2x the target.
        im.draft(None, _draft_size(w, h, size, fit))
        im.load()                            # decode now: truncation errors surface here
        rgb = _to_rgb(_apply_orientation(im), background)
    return np.asarray(_to_square(rgb, size, background, fit), dtype=np.uint8)


def _apply_orientation(im: Image.Image) -> Image.Image:
    """Rotate/flip as the EXIF orientation tag says; a broken EXIF block is ignored
    (the pixels decoded fine, so the image is still worth having)."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:
        return im


def _draft_size(w: int, h: int, size: int, fit: str) -> tuple[int, int]:
    """The smallest (w, h) the JPEG decoder may scale to and still leave a 2x margin.

    The side that ends up as ``size`` is the short one for crop and the long one
    for pad; keeping it >= 2 * size lets Lanczos do the final, clean reduction.
    """
    ref = min(w, h) if fit == "crop" else max(w, h)
    scale = min(1.0, 2.0 * size / ref)
    return max(1, int(np.ceil(w * scale))), max(1, int(np.ceil(h * scale)))


def _to_rgb(im: Image.Image, background) -> Image.Image:
    """Any Pillow mode -> RGB; transparency composited onto ``background``."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_bit_depth_to_rgb(im)
    if "A" in im.mode or "a" in im.mode or "transparency" in im.info:
        rgba = im.convert("RGBA")            # handles LA, La, PA, RGBa, P/L/RGB + tRNS
        out = Image.new("RGB", rgba.size, background)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return im.convert("RGB")                 # 1, L, P, CMYK, YCbCr, RGB


def _high_bit_depth_to_rgb(im: Image.Image) -> Image.Image:
    """16-bit integer or float grayscale -> 8-bit RGB, scaled rather than clipped.

    I;16* holds 0..65535: divide by 257 (65535 -> 255). Mode "I" (32-bit) is how
    some formats hand over 16-bit data: treat it as 16-bit when any value exceeds
    255, else as 8-bit. Mode "F": 0..1 data is scaled by 255, anything else is
    treated like "I".
    """
    a = np.asarray(im, dtype=np.float64)
    peak = float(np.nanmax(a)) if a.size else 0.0
    if im.mode.startswith("I;16") or peak > 255.0:
        a = a / 257.0
    elif im.mode == "F" and peak <= 1.0:
        a = a * 255.0
    a = np.clip(np.nan_to_num(a) + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(a, mode="L").convert("RGB")


def _to_square(im: Image.Image, size: int, background, fit: str) -> Image.Image:
    """RGB image -> size x size: centre crop or pad, then Lanczos."""
    w, h = im.size
    if fit == "crop":
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        return im.resize((size, size), Image.LANCZOS, box=(left, top, left + side, top + side),
                         reducing_gap=REDUCING_GAP)
    # Pad: resize so the long side is `size`, then centre on a background square.
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = im.resize(new, Image.LANCZOS, reducing_gap=REDUCING_GAP)
    out = Image.new("RGB", (size, size), background)
    out.paste(small, ((size - new[0]) // 2, (size - new[1]) // 2))
    return out


def _class_labels(paths: list[str]):
    """Labels from immediate subfolders: (int64 (N,), names) or (None, []).

    A data set is labelled when every image sits inside a subfolder and at least
    two subfolders hold images; the label is the index of the subfolder's name in
    sorted order. Subfolders without a readable image are not classes (a class
    with no example would only waste a discriminator output).
    """
    parts = [p.split(os.sep, 1) for p in paths]
    if not parts or any(len(p) < 2 for p in parts):
        return None, []
    names = sorted({p[0] for p in parts})
    if len(names) < 2:
        return None, []
    index = {name: k for k, name in enumerate(names)}
    return np.array([index[p[0]] for p in parts], dtype=np.int64), names


# --------------------------------------------------------------------------- #
# Cache
# --------------------------------------------------------------------------- #

def _cache_key(root, files, unlisted, size, background, fit) -> str:
    """Hash of everything the result depends on: file list, sizes, mtimes, options."""
    listing = []
    for rel in files:
        full = os.path.join(root, rel)
        try:
            st = os.stat(full)
        except OSError:                      # broken or looping symlink
            try:
                st = os.lstat(full)
            except OSError:
                listing.append([rel, -1, -1])
                continue
        listing.append([rel, st.st_size, st.st_mtime_ns])
    blob = json.dumps({"version": _CACHE_VERSION, "pillow": PIL.__version__, "files": listing,
                       "unlisted": [rel for rel, _ in unlisted], "size": size,
                       "background": list(background), "fit": fit}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _read_cache(cache_path: str, size: int) -> ImageSet | None:
    """The cached ImageSet, or None when there is none or it cannot be trusted."""
    if not os.path.isfile(cache_path):
        return None
    try:
        with np.load(cache_path, allow_pickle=False) as z:
            images = z["images"]
            labels = z["labels"] if bool(z["has_labels"]) else None
            class_names = [str(s) for s in z["class_names"]]
            paths = [str(s) for s in z["paths"]]
            skipped = [(str(p), str(r)) for p, r in zip(z["skipped_paths"], z["skipped_reasons"])]
        n = len(paths)
        if (images.dtype != np.uint8 or images.shape != (n, size, size, 3)
                or (labels is not None and labels.shape != (n,))):
            return None
    except Exception:                        # corrupt or foreign file: rebuild it
        return None
    return ImageSet(images, labels, class_names, paths, skipped)


def _write_cache(cache_path: str, data: ImageSet) -> None:
    """Save ``data`` atomically (temp file + rename); a failure only warns."""
    arrays = dict(
        images=data.images,
        has_labels=np.array(data.labels is not None),
        labels=data.labels if data.labels is not None else np.zeros(0, np.int64),
        class_names=np.array(data.class_names, dtype=str),
        paths=np.array(data.paths, dtype=str),
        skipped_paths=np.array([p for p, _ in data.skipped], dtype=str),
        skipped_reasons=np.array([r for _, r in data.skipped], dtype=str),
    )
    try:
        _atomic_save(cache_path, lambda tmp: np.savez(tmp, **arrays))
    except OSError as exc:
        warnings.warn(f"could not write the data cache {cache_path!r} ({_describe(exc)}); "
                      f"images will be decoded again next time.", DataWarning, stacklevel=3)
