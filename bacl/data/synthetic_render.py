"""Drawing the synthetic benchmark: colours, textures, backgrounds, whole images.

Objects are saturated, sharp-edged and textured; backgrounds are desaturated and
smooth (gradients, soft colour blobs, faint stripes, noise). The gap in saturation
and sharpness is what keeps a background from looking like an object of a class,
while still giving the detector something other than a flat colour to reject.
Everything is vectorised numpy on the object's bounding-box window.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from .synthetic_shapes import rasterise_polygon

# Name -> nominal (hue in [0, 1), saturation, value). Hues are at least 25 degrees
# apart, more than four times the per-object hue jitter, and every saturation is far
# above the background's (BACKGROUND_MAX_SATURATION). The first four are the most
# distinct and are what ``num_colours=4`` takes.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0 / 360, 0.85, 0.90),
    "green": (125 / 360, 0.80, 0.72),
    "blue": (222 / 360, 0.82, 0.88),
    "yellow": (54 / 360, 0.88, 0.93),
    "magenta": (308 / 360, 0.78, 0.85),
    "cyan": (186 / 360, 0.85, 0.85),
    "orange": (28 / 360, 0.90, 0.96),
    "purple": (272 / 360, 0.72, 0.78),
}

# Per-object colour jitter: hue +-HUE_JITTER, saturation and value scaled.
HUE_JITTER = 0.012
SATURATION_SCALE = (0.9, 1.05)
VALUE_SCALE = (0.85, 1.08)
# The second colour of a pattern is the object's own colour this much darker, so
# a pattern never brings in another hue.
PATTERN_DARKNESS = 0.3

BACKGROUND_MAX_SATURATION = 0.3


def jittered_colour(colour: str, rng: np.random.Generator) -> np.ndarray:
    """The RGB (0-255, float32 ``(3,)``) of one object of ``colour``, mildly jittered."""
    h, s, v = COLOURS[colour]
    h = (h + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 1.0
    s = min(1.0, s * rng.uniform(*SATURATION_SCALE))
    v = min(1.0, v * rng.uniform(*VALUE_SCALE))
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255.0


def _square_wave(phase: np.ndarray) -> np.ndarray:
    """A square wave in ``[0, 1]`` with soft (about one pixel wide) edges."""
    return np.clip(0.5 + 1.5 * np.sin(phase), 0.0, 1.0)


@dataclass(frozen=True)
class _PatternGrid:
    """Pixel centres of a window in the object's frame: rotated axes ``u, v``, radius ``r``."""

    u: np.ndarray
    v: np.ndarray
    r: np.ndarray
    period: float


def _solid(g: _PatternGrid) -> np.ndarray:
    return np.zeros_like(g.u)


def _striped(g: _PatternGrid) -> np.ndarray:
    return _square_wave(2.0 * math.pi * g.u / g.period)


def _dotted(g: _PatternGrid) -> np.ndarray:
    p = 1.25 * g.period
    du = np.mod(g.u, p) - p / 2.0
    dv = np.mod(g.v, p) - p / 2.0
    return np.clip(0.3 * p - np.hypot(du, dv) + 0.5, 0.0, 1.0)


def _checkered(g: _PatternGrid) -> np.ndarray:
    w = 2.0 * math.pi / (1.2 * g.period)
    return np.clip(0.5 + 3.0 * np.sin(w * g.u) * np.sin(w * g.v), 0.0, 1.0)


def _ringed(g: _PatternGrid) -> np.ndarray:
    return _square_wave(2.0 * math.pi * g.r / g.period)


# Name -> pattern (1 where the darker second colour shows). The order is the order in
# which ``num_textures`` takes them.
TEXTURES: dict[str, Callable[[_PatternGrid], np.ndarray]] = {
    "solid": _solid,
    "striped": _striped,
    "dotted": _dotted,
    "checkered": _checkered,
    "ringed": _ringed,
}


def object_pixels(
    polygon: np.ndarray, colour: str, texture: str, rng: np.random.Generator
) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Colour and coverage of one object over its bounding-box window.

    Returns ``(x0, y0, rgb, alpha)``: ``rgb`` ``(h, w, 3)`` float32 0-255 and ``alpha``
    ``(h, w)`` float32 in ``[0, 1]``, the window's top-left pixel at ``(y0, x0)``.
    """
    x0, y0, alpha = rasterise_polygon(polygon)
    h, w = alpha.shape
    lo, hi = polygon.min(axis=0), polygon.max(axis=0)
    centre = (lo + hi) / 2.0
    size = float((hi - lo).max())
    x = np.arange(w, dtype=np.float32)[None, :] + np.float32(x0 + 0.5 - centre[0])
    y = np.arange(h, dtype=np.float32)[:, None] + np.float32(y0 + 0.5 - centre[1])
    theta = rng.uniform(0.0, math.pi)
    c, s = math.cos(theta), math.sin(theta)
    # Texture period grows with the object but stays >= 4 px, so a 14-px object still
    # shows three to four stripes after JPEG compression.
    period = float(np.clip(size / 3.5, 4.0, 9.0) * rng.uniform(0.9, 1.1))
    grid = _PatternGrid(u=x * c + y * s, v=-x * s + y * c, r=np.hypot(x, y), period=period)
    pattern = np.broadcast_to(TEXTURES[texture](grid), (h, w))[..., None]
    base = jittered_colour(colour, rng)
    rgb = base * (1.0 - pattern) + (PATTERN_DARKNESS * base) * pattern
    # Directional lighting across the object plus faint sensor noise.
    light_dir = rng.uniform(0.0, 2.0 * math.pi)
    shade = 1.0 + 0.12 * (x * math.cos(light_dir) + y * math.sin(light_dir)) / max(size, 1.0)
    rgb = rgb * shade[..., None] + 3.0 * rng.standard_normal(size=(h, w, 1), dtype=np.float32)
    return x0, y0, rgb, alpha


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Vectorised ``colorsys.hsv_to_rgb`` on ``(..., 3)`` arrays in ``[0, 1]``."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    k = np.mod(np.array([5.0, 3.0, 1.0]) + h[..., None] * 6.0, 6.0)
    return v[..., None] - (v * s)[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _muted_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random RGB colours (0-255, float32 ``(n, 3)``) of low saturation: never a class colour."""
    hsv = np.stack([rng.uniform(size=n), rng.uniform(0.0, BACKGROUND_MAX_SATURATION, size=n),
                    rng.uniform(0.3, 0.85, size=n)], axis=1)
    return (_hsv_to_rgb(hsv) * 255.0).astype(np.float32)


def render_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A textured, desaturated background ``(height, width, 3)`` float32 0-255.

    A linear gradient between two muted colours, soft blobs from an upsampled coarse
    grid of muted colours, faint stripes half of the time, and luminance noise.
    """
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    ends = _muted_colours(rng, 2)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    t = xs * math.cos(theta) + ys * math.sin(theta)
    t = ((t - t.min()) / max(float(t.max() - t.min()), 1.0))[..., None]
    image = ends[0] + (ends[1] - ends[0]) * t

    cells = int(rng.integers(3, 7))
    coarse = _muted_colours(rng, cells * cells).reshape(cells, cells, 3)
    blobs = Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
    mix = rng.uniform(0.3, 0.7)
    image = (1.0 - mix) * image + mix * np.asarray(blobs, dtype=np.float32)

    luminance = rng.standard_normal(size=(height, width), dtype=np.float32) * rng.uniform(3.0, 9.0)
    if rng.uniform() < 0.5:
        period = rng.uniform(8.0, 30.0)
        phi = rng.uniform(0.0, math.pi)
        u = xs * math.cos(phi) + ys * math.sin(phi)
        luminance += rng.uniform(6.0, 16.0) * np.sin((2.0 * math.pi / period) * u)
    image += luminance[..., None]
    return image


def render_image(
    *,
    height: int,
    width: int,
    objects: Sequence[tuple[np.ndarray, str, str]],
    rng: np.random.Generator,
) -> np.ndarray:
    """Background plus ``objects`` painted in order (later ones on top).

    Args:
        objects: ``(polygon (K, 2), colour name, texture name)`` per object.

    Returns ``(height, width, 3)`` uint8.
    """
    image = render_background(height, width, rng)
    for polygon, colour, texture in objects:
        x0, y0, rgb, alpha = object_pixels(polygon, colour, texture, rng)
        h, w = alpha.shape
        # Clip the window to the image (objects are placed inside, this is a guard).
        ya, xa = max(y0, 0), max(x0, 0)
        yb, xb = min(y0 + h, height), min(x0 + w, width)
        if ya >= yb or xa >= xb:
            continue
        a = alpha[ya - y0 : yb - y0, xa - x0 : xb - x0, None]
        window = image[ya:yb, xa:xb]
        image[ya:yb, xa:xb] = window * (1.0 - a) + rgb[ya - y0 : yb - y0, xa - x0 : xb - x0] * a
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
