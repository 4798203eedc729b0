"""The built-in data set: cartoon-face icons drawn procedurally.

``python examples/train_melicon.py`` with no ``--data`` trains on these, so a
newcomer sees a GAN learn something recognisable in minutes without finding a
data set first. Each face is drawn with PIL.ImageDraw at 4x the output size
and reduced with Lanczos, which gives clean anti-aliased edges.

A face is a stack of independent random choices, each one a small function
picked from a tuple (add a style by adding a function to the tuple):

    background colour -> back hair -> ears -> head -> cheeks -> front hair
    -> eyes -> eyebrows -> nose -> mouth -> glasses -> small tilt

Image ``i`` depends only on ``(seed, i)``, so ``make_faces(n=10)`` is the first
ten of ``make_faces(n=384)``.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from minigan.data.folder import ImageSet

SUPERSAMPLE = 4  # draw at 4x, then Lanczos down: anti-aliasing for free

SKIN_TONES = [(255, 224, 196), (250, 208, 170), (236, 188, 150), (222, 170, 128),
              (198, 142, 102), (160, 108, 72), (120, 80, 56), (255, 214, 150)]
FUN_FACES = [(150, 214, 120), (128, 188, 240), (190, 160, 236), (255, 200, 90),
             (246, 150, 170), (120, 210, 200)]
HAIR_COLOURS = [(30, 26, 28), (74, 48, 32), (120, 78, 44), (168, 100, 50), (226, 190, 110),
                (200, 90, 40), (150, 150, 156), (236, 110, 170), (70, 120, 220),
                (120, 80, 190), (60, 170, 120)]
INK = (44, 34, 40)                 # eyes, mouth lines
MOUTH_INSIDE = (120, 30, 44)
TONGUE = (240, 110, 120)
IRIS_COLOURS = [(60, 110, 200), (60, 150, 90), (120, 80, 40), (150, 70, 170)]


@dataclass
class Face:
    """Where the parts go, in canvas pixels; chosen once per image."""

    draw: ImageDraw.ImageDraw
    rng: np.random.Generator
    cx: float                       # head centre
    cy: float
    rx: float                       # head half-width, half-height
    ry: float
    n: float                        # superellipse exponent: 2 = ellipse, 4+ = rounded square
    skin: tuple
    hair: tuple
    iris: tuple                     # for eye_iris
    line: float                     # stroke width for features

    def outline(self, t0: float, t1: float, scale: float = 1.0, k: int = 64) -> list:
        """Points on the head outline (scaled) for angles t0..t1 (radians, y down)."""
        t = np.linspace(t0, t1, k)
        c, s = np.cos(t), np.sin(t)
        p = 2.0 / self.n
        x = self.cx + self.rx * scale * np.sign(c) * np.abs(c) ** p
        y = self.cy + self.ry * scale * np.sign(s) * np.abs(s) ** p
        return list(zip(x.tolist(), y.tolist()))


def _mix(a, b, t: float) -> tuple:
    """Colour a blended toward b by t."""
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def _ellipse(draw, x, y, rx, ry, **kw) -> None:
    draw.ellipse((x - rx, y - ry, x + rx, y + ry), **kw)


def _pastel(rng) -> tuple:
    h, s, v = rng.random(), rng.uniform(0.10, 0.32), rng.uniform(0.93, 1.0)
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))


# --------------------------------------------------------------------------- #
# Hair. Front hair is a cap: the outline a bit outside the head from one side
# over the top to the other, closed by a hairline curve across the forehead.
# --------------------------------------------------------------------------- #

def _cap(f: Face, hairline, drop: float = 0.0, outer=None) -> None:
    """Fill the hair cap; ``hairline(u)`` gives y for u in [0, 1] left to right.

    drop: how far (radians below horizontal) the cap reaches down the sides
    outer: the cap's outer edge, when not the head outline (spikes)
    """
    top = outer if outer is not None else f.outline(np.pi - drop, 2 * np.pi + drop, 1.07)
    x0, x1 = top[0][0] + 0.10 * f.rx, top[-1][0] - 0.10 * f.rx   # hairline ends, inset
    line = [(x0 + (x1 - x0) * u, hairline(u)) for u in np.linspace(1.0, 0.0, 48)]
    f.draw.polygon(top + line, fill=f.hair)


def _hairline(y_front: float, y_side: float, power: float):
    """Hairline flat at y_front across the forehead, dropping to y_side at the sides."""
    return lambda u: y_front + (y_side - y_front) * abs(2 * u - 1) ** power


def hair_none(f: Face) -> None:
    pass


def hair_bowl(f: Face) -> None:
    drop = f.rng.uniform(0.1, 0.45)
    y_front = f.cy - f.ry * f.rng.uniform(0.25, 0.45)
    _cap(f, _hairline(y_front, f.cy + f.ry * np.sin(drop), 6.0), drop)


def hair_fringe(f: Face) -> None:
    """Scalloped bangs."""
    drop = f.rng.uniform(0.0, 0.3)
    y_front = f.cy - f.ry * f.rng.uniform(0.25, 0.4)
    base = _hairline(y_front, f.cy + f.ry * np.sin(drop), 4.0)
    k, amp = int(f.rng.integers(4, 8)), f.ry * 0.08
    _cap(f, lambda u: base(u) + amp * abs(np.sin(k * np.pi * u)), drop)


def hair_side_part(f: Face) -> None:
    """A swoop: high on one side, low on the other."""
    drop = f.rng.uniform(0.1, 0.35)
    hi, lo = f.cy - f.ry * 0.6, f.cy - f.ry * f.rng.uniform(0.05, 0.25)
    side = f.cy + f.ry * np.sin(drop)
    flip = f.rng.random() < 0.5

    def line(u):
        v = 1 - u if flip else u
        y = hi + (lo - hi) * v ** 1.6
        return y + (side - y) * abs(2 * u - 1) ** 8
    _cap(f, line, drop)


def hair_spiky(f: Face) -> None:
    """Zigzag spikes over the top; the outline alternates two radii."""
    k = int(f.rng.integers(5, 9))
    t = np.linspace(np.pi - 0.1, 2 * np.pi + 0.1, 2 * k + 1)
    r = np.where(np.arange(2 * k + 1) % 2 == 1, f.rng.uniform(1.25, 1.4), 1.05)
    outer = [f.outline(ti, ti, ri, k=1)[0] for ti, ri in zip(t, r)]
    y_front = f.cy - f.ry * f.rng.uniform(0.3, 0.45)
    _cap(f, _hairline(y_front, f.cy, 5.0), outer=outer)


def hair_curly(f: Face) -> None:
    """A ring of overlapping circles over the top of the head."""
    k = int(f.rng.integers(6, 10))
    r = f.rx * f.rng.uniform(0.2, 0.27)
    for x, y in f.outline(np.pi + 0.35, 2 * np.pi - 0.35, 1.0, k=k):
        _ellipse(f.draw, x, y, r, r, fill=f.hair)
    y_front = f.cy - f.ry * f.rng.uniform(0.35, 0.5)
    _cap(f, _hairline(y_front, f.cy - 0.1 * f.ry, 4.0), 0.0)


def hair_bun(f: Face) -> None:
    """A top knot plus a smooth cap with a centre part."""
    r = f.rx * f.rng.uniform(0.3, 0.4)
    _ellipse(f.draw, f.cx, f.cy - f.ry * 1.1, r, r * 0.9, fill=f.hair)
    y_front = f.cy - f.ry * f.rng.uniform(0.35, 0.5)
    part = f.ry * 0.15
    _cap(f, lambda u: y_front - part * (1 - abs(2 * u - 1)) ** 2 + 0.6 * f.ry * abs(2 * u - 1) ** 6,
         0.2)


HAIR_FRONT = (hair_none, hair_bowl, hair_fringe, hair_side_part, hair_spiky, hair_curly,
              hair_bun)


def back_hair_long(f: Face) -> None:
    """Long hair behind the head, down past the chin."""
    w, bottom = f.rx * f.rng.uniform(1.08, 1.2), f.cy + f.ry * f.rng.uniform(0.8, 1.3)
    f.draw.rounded_rectangle((f.cx - w, f.cy - f.ry * 1.05, f.cx + w, bottom),
                             radius=w * 0.55, fill=f.hair)


def back_hair_afro(f: Face) -> None:
    r = f.rng.uniform(1.25, 1.4)
    _ellipse(f.draw, f.cx, f.cy - 0.15 * f.ry, f.rx * r, f.ry * r * 0.95, fill=f.hair)


# --------------------------------------------------------------------------- #
# Eyes: each style draws one eye at (x, y) with radius r; gaze is shared.
# --------------------------------------------------------------------------- #

def _highlight(f: Face, x, y, r) -> None:
    _ellipse(f.draw, x - 0.3 * r, y - 0.35 * r, 0.28 * r, 0.28 * r, fill=(255, 255, 255))


def eye_dot(f: Face, x, y, r, gaze) -> None:
    _ellipse(f.draw, x, y, 0.6 * r, 0.8 * r, fill=INK)
    _highlight(f, x, y, 0.7 * r)


def eye_pupil(f: Face, x, y, r, gaze) -> None:
    _ellipse(f.draw, x, y, r, 1.15 * r, fill=(255, 255, 255), outline=INK, width=int(f.line * 0.6))
    px, py = x + gaze[0] * 0.35 * r, y + gaze[1] * 0.35 * r
    _ellipse(f.draw, px, py, 0.5 * r, 0.55 * r, fill=INK)
    _highlight(f, px, py, 0.5 * r)


def eye_iris(f: Face, x, y, r, gaze) -> None:
    """Big anime eye: dark rim, coloured iris, two highlights."""
    _ellipse(f.draw, x, y, 0.85 * r, 1.25 * r, fill=INK)
    _ellipse(f.draw, x, y + 0.2 * r, 0.6 * r, 0.85 * r, fill=f.iris)
    _highlight(f, x, y, 0.95 * r)
    _ellipse(f.draw, x + 0.3 * r, y + 0.55 * r, 0.12 * r, 0.12 * r, fill=(255, 255, 255))


def eye_happy(f: Face, x, y, r, gaze) -> None:
    """Closed, smiling: an upside-down U."""
    f.draw.arc((x - r, y - 0.6 * r, x + r, y + 1.2 * r), 200, 340, fill=INK, width=int(f.line))


def eye_sleepy(f: Face, x, y, r, gaze) -> None:
    """Closed, relaxed: a U."""
    f.draw.arc((x - r, y - 1.0 * r, x + r, y + 0.6 * r), 20, 160, fill=INK, width=int(f.line))


def eye_line(f: Face, x, y, r, gaze) -> None:
    f.draw.line((x - 0.8 * r, y, x + 0.8 * r, y), fill=INK, width=int(f.line))


OPEN_EYES = (eye_dot, eye_pupil, eye_iris)
CLOSED_EYES = (eye_happy, eye_sleepy, eye_line)


def draw_eyes(f: Face) -> tuple[float, float, float]:
    """Both eyes (sometimes a wink); returns (spacing, height, radius) for glasses."""
    rng = f.rng
    dx, y = f.rx * rng.uniform(0.32, 0.44), f.cy + f.ry * rng.uniform(-0.08, 0.1)
    r = f.rx * rng.uniform(0.1, 0.16)
    gaze = (rng.uniform(-1, 1), rng.uniform(-0.6, 0.6))
    kind = rng.random()
    if kind < 0.72:
        left = right = OPEN_EYES[rng.integers(len(OPEN_EYES))]
    elif kind < 0.86:
        left = right = CLOSED_EYES[rng.integers(len(CLOSED_EYES))]
    else:                                   # wink
        left, right = OPEN_EYES[rng.integers(2)], eye_happy
        if rng.random() < 0.5:
            left, right = right, left
    left(f, f.cx - dx, y, r, gaze)
    right(f, f.cx + dx, y, r, gaze)
    return dx, y, r


def draw_brows(f: Face, dx, y, r) -> None:
    """Short brows: level, cross (inner ends down) or worried (inner ends up)."""
    tilt = float(f.rng.choice([0.0, 0.35, -0.35])) * r
    by = y - r * f.rng.uniform(1.8, 2.3)
    colour = _mix(f.hair, INK, 0.3)
    for side in (-1, 1):
        x = f.cx + side * dx
        outer, inner = (x + side * 0.9 * r, by - tilt), (x - side * 0.9 * r, by + tilt)
        f.draw.line(outer + inner, fill=colour, width=int(f.line))


# --------------------------------------------------------------------------- #
# Mouths: each style draws at (x, y) with half-width w.
# --------------------------------------------------------------------------- #

def mouth_smile(f: Face, x, y, w) -> None:
    h = w * f.rng.uniform(0.4, 0.8)
    f.draw.arc((x - w, y - h, x + w, y + h), 15, 165, fill=INK, width=int(f.line))


def mouth_open(f: Face, x, y, w) -> None:
    """Open grin: a dark half-ellipse with a tongue, sometimes teeth."""
    h = w * f.rng.uniform(0.6, 0.9)
    f.draw.chord((x - w, y - h, x + w, y + h), 0, 180, fill=MOUTH_INSIDE, outline=INK,
                 width=int(f.line * 0.7))
    _ellipse(f.draw, x, y + 0.62 * h, 0.42 * w, 0.28 * h, fill=TONGUE)
    if f.rng.random() < 0.5:
        f.draw.rectangle((x - 0.6 * w, y + f.line * 0.3, x + 0.6 * w, y + 0.22 * h),
                         fill=(255, 255, 255))


def mouth_flat(f: Face, x, y, w) -> None:
    f.draw.line((x - 0.6 * w, y + 0.3 * w, x + 0.6 * w, y + 0.3 * w), fill=INK, width=int(f.line))


def mouth_frown(f: Face, x, y, w) -> None:
    h = w * 0.5
    f.draw.arc((x - 0.8 * w, y + 0.3 * w, x + 0.8 * w, y + 0.3 * w + 2 * h), 200, 340, fill=INK,
               width=int(f.line))


def mouth_tongue(f: Face, x, y, w) -> None:
    """Smile with the tongue poking out below it."""
    h = w * 0.5
    f.draw.chord((x - 0.45 * w, y + 0.05 * h, x + 0.45 * w, y + 1.6 * h), 0, 180, fill=TONGUE,
                 outline=INK, width=int(f.line * 0.6))
    f.draw.line((x, y + 0.9 * h, x, y + 1.4 * h), fill=_mix(TONGUE, INK, 0.4),
                width=int(f.line * 0.5))
    f.draw.arc((x - w, y - h, x + w, y + h), 15, 165, fill=INK, width=int(f.line))


def mouth_o(f: Face, x, y, w) -> None:
    _ellipse(f.draw, x, y + 0.3 * w, 0.28 * w, 0.36 * w, fill=MOUTH_INSIDE, outline=INK,
             width=int(f.line * 0.6))


def mouth_cat(f: Face, x, y, w) -> None:
    """':3' -- two small arcs meeting in the middle."""
    r = 0.35 * w
    for side in (-1, 1):
        f.draw.arc((x + side * r - r, y - r, x + side * r + r, y + r), 0, 180, fill=INK,
                   width=int(f.line))


# mouth_smile is listed twice: smiles are twice as likely as the others.
MOUTHS = (mouth_smile, mouth_smile, mouth_open, mouth_flat, mouth_frown, mouth_tongue, mouth_o,
          mouth_cat)


# --------------------------------------------------------------------------- #
# Extras
# --------------------------------------------------------------------------- #

def draw_cheeks(f: Face) -> None:
    colour = _mix(f.skin, (255, 110, 130), 0.45)
    for side in (-1, 1):
        _ellipse(f.draw, f.cx + side * f.rx * 0.58, f.cy + f.ry * 0.3, f.rx * 0.16, f.ry * 0.1,
                 fill=colour)


def draw_nose(f: Face) -> None:
    y = f.cy + f.ry * 0.22
    if f.rng.random() < 0.5:
        _ellipse(f.draw, f.cx, y, f.rx * 0.07, f.rx * 0.05, fill=_mix(f.skin, INK, 0.35))
    else:
        r = f.rx * 0.08
        f.draw.arc((f.cx - r, y - r, f.cx + r, y + r), 20, 160, fill=_mix(f.skin, INK, 0.5),
                   width=int(f.line * 0.6))


def draw_glasses(f: Face, dx, y, r) -> None:
    """Round glasses, or sunglasses that hide the eyes."""
    g = max(1.9 * r, 0.26 * f.rx)
    frame = (30, 30, 36) if f.rng.random() < 0.6 else (170, 60, 60)
    sun = f.rng.random() < 0.3
    for side in (-1, 1):
        _ellipse(f.draw, f.cx + side * dx, y, g, g * 0.85, outline=frame,
                 fill=(20, 20, 28) if sun else None, width=int(f.line * 0.7))
    f.draw.line((f.cx - dx + g, y, f.cx + dx - g, y), fill=frame, width=int(f.line * 0.7))


# --------------------------------------------------------------------------- #
# One face
# --------------------------------------------------------------------------- #

def _draw_face(rng: np.random.Generator, side: int) -> Image.Image:
    """One face on a side x side canvas (the supersampled size)."""
    bg = _pastel(rng)
    img = Image.new("RGB", (side, side), bg)
    skin = (SKIN_TONES[rng.integers(len(SKIN_TONES))] if rng.random() < 0.7
            else FUN_FACES[rng.integers(len(FUN_FACES))])
    rx = side * rng.uniform(0.27, 0.33)
    f = Face(draw=ImageDraw.Draw(img), rng=rng,
             cx=side * (0.5 + rng.uniform(-0.03, 0.03)),
             cy=side * (0.55 + rng.uniform(-0.03, 0.03)),
             rx=rx, ry=rx * rng.uniform(0.95, 1.15), n=float(rng.choice([2.0, 2.0, 2.5, 3.2, 4.0])),
             skin=skin, hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))],
             iris=IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))], line=side * 0.022)

    front = HAIR_FRONT[rng.integers(len(HAIR_FRONT))]
    if front in (hair_side_part, hair_fringe) and rng.random() < 0.45:
        back_hair_long(f)
    elif front is hair_curly and rng.random() < 0.5:
        back_hair_afro(f)
    if rng.random() < 0.5:                                  # ears
        for s in (-1, 1):
            _ellipse(f.draw, f.cx + s * f.rx * 0.98, f.cy + 0.1 * f.ry, 0.2 * f.rx, 0.26 * f.rx,
                     fill=skin, outline=_mix(skin, INK, 0.5), width=int(f.line * 0.5))
    outlined = rng.random() < 0.6
    f.draw.polygon(f.outline(0, 2 * np.pi, k=96), fill=skin,
                   outline=_mix(skin, INK, 0.55) if outlined else None,
                   width=int(f.line * 0.6) if outlined else 0)
    if rng.random() < 0.4:
        draw_cheeks(f)
    front(f)
    dx, ey, er = draw_eyes(f)
    if rng.random() < 0.35:
        draw_brows(f, dx, ey, er)
    if rng.random() < 0.4:
        draw_nose(f)
    MOUTHS[rng.integers(len(MOUTHS))](f, f.cx, f.cy + f.ry * rng.uniform(0.38, 0.5),
                                      f.rx * rng.uniform(0.25, 0.45))
    if rng.random() < 0.15:
        draw_glasses(f, dx, ey, er)
    tilt = rng.uniform(-10, 10)
    return img.rotate(tilt, resample=Image.BILINEAR, fillcolor=bg)


def make_faces(n: int = 384, size: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` cartoon-face icons, uint8 (n, size, size, 3), deterministic in ``seed``."""
    if n < 0 or size < 1:
        raise ValueError(f"need n >= 0 and size >= 1, got n={n}, size={size}.")
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        rng = np.random.default_rng([seed, i])   # image i depends on (seed, i) only
        big = _draw_face(rng, size * SUPERSAMPLE)
        out[i] = np.asarray(big.resize((size, size), Image.LANCZOS))
    return out


def default_dataset(size: int = 64, seed: int = 0, n: int = 384) -> ImageSet:
    """The faces as an unlabelled ImageSet, for training when no folder is given."""
    images = make_faces(n=n, size=size, seed=seed)
    return ImageSet(images=images, labels=None, class_names=[],
                    paths=[f"<procedural faces #{i}>" for i in range(n)], skipped=[])
