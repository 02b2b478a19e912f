"""Drawing for the fossil gallery, on Pillow alone: a shaded triangle mesh, a histogram,
and the fonts, colours and number formats the pictures share.

The renderer is a painter's-algorithm rasteriser: no display, no OpenGL, no matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BG = (28, 28, 30)
PANEL = (40, 40, 44)
TEXT = (232, 232, 232)
MUTED = (160, 160, 166)
FOSSIL = np.array([236.0, 214.0, 170.0])  # warm ivory, like a cleaned foraminifer
OUTLINE = (255, 140, 0)
_AXIS_COLOURS = ((235, 80, 80), (90, 200, 90), (90, 140, 255))  # x, y, z
_SUPERSAMPLE = 2
# Fonts with µ, ³ and × (Pillow's built-in font has none of them), tried in order.
_FONT_CANDIDATES = (
    "DejaVuSans.ttf",
    "Arial.ttf",
    "arial.ttf",
    "LiberationSans-Regular.ttf",
    "Helvetica.ttc",
    "segoeui.ttf",
)
_ASCII = str.maketrans({"µ": "u", "³": "^3", "²": "^2", "×": "x", "·": "-", "⌀": "d"})


# -- text ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Font:
    """A Pillow font, and whether it can draw non-ASCII text (else `text` transliterates)."""

    font: Any
    unicode: bool

    def text(self, s: str) -> str:
        return s if self.unicode else s.translate(_ASCII)


@lru_cache(maxsize=8)
def get_font(size: int) -> Font:
    """A font of `size` pixels that has µ, ³ and × if the system has one."""
    for name in _FONT_CANDIDATES:
        try:
            return Font(ImageFont.truetype(name, size), True)
        except OSError:
            continue
    return Font(ImageFont.load_default(size=size), False)


def fmt_number(value: Any, digits: int = 3) -> str:
    """A measurement for people: 3 significant digits, thousands separated, no ``e+05``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "–"
    if v == 0:
        return "0"
    if abs(v) >= 10 ** (digits - 1):
        return f"{round(v):,}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    return f"{v:.{decimals}f}"


def nice_step(value: float) -> float:
    """Largest 1, 2 or 5 × 10^k not above ``value`` (``value`` > 0)."""
    k = math.floor(math.log10(value))
    for m in (5.0, 2.0, 1.0):
        if m * 10**k <= value:
            return m * 10**k
    return 10.0**k  # pragma: no cover - m = 1 always fits


# -- 3D rendering --------------------------------------------------------------------


def _view_basis(azimuth: float, elevation: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors (towards the camera, screen right, screen up) in (x, y, z)."""
    az, el = math.radians(azimuth), math.radians(elevation)
    towards = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    right = np.array([-math.sin(az), math.cos(az), 0.0])
    up = np.cross(towards, right)
    return towards, right, up / np.linalg.norm(up)


def render_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    size: int = 320,
    azimuth: float = -60.0,
    elevation: float = 25.0,
    colour: Sequence[float] | None = None,
    scale_bar: bool = True,
) -> Image.Image:
    """Render a closed triangle mesh in an oblique orthographic view.

    Parameters
    ----------
    vertices : (V, 3) float array
        Vertex positions **(x, y, z) in µm**, as :func:`~napari_microfossil.fossils.mesh.mask_to_mesh`
        makes them; z is drawn up.
    faces : (F, 3) int array
        Triangles, wound counter-clockwise seen from outside (outward normals).
    size : int
        Edge of the square picture in pixels.
    azimuth, elevation : float
        Camera direction in degrees: azimuth about z from +x, elevation above the x-y plane.
    colour : 3 floats, optional
        Surface RGB in 0..255.
    scale_bar : bool
        Draw a scale bar in µm and the x/y/z axes.

    Returns
    -------
    PIL.Image.Image
        RGB, ``size`` × ``size``. Faces are back-face culled and drawn far to near
        (painter's algorithm), shaded with one light above-left of the camera, and
        anti-aliased by supersampling.
    """
    verts = np.asarray(vertices, dtype=np.float64)
    tri = np.asarray(faces, dtype=np.int64)
    base = FOSSIL if colour is None else np.asarray(colour, dtype=float)
    ss = _SUPERSAMPLE
    big = size * ss
    img = Image.new("RGB", (big, big), PANEL)
    draw = ImageDraw.Draw(img)
    towards, right, up = _view_basis(azimuth, elevation)

    centre = (verts.min(axis=0) + verts.max(axis=0)) / 2.0
    p = verts - centre
    sx, sy, depth = p @ right, p @ up, p @ towards
    extent = max(float(np.ptp(sx)), float(np.ptp(sy)), 1e-9)
    px_per_um = 0.78 * big / extent
    u = big / 2.0 + sx * px_per_um
    v = big / 2.0 - sy * px_per_um - 0.03 * big  # room for the scale bar below

    a, b, c = verts[tri[:, 0]], verts[tri[:, 1]], verts[tri[:, 2]]
    normals = np.cross(b - a, c - a)
    norm = np.linalg.norm(normals, axis=1)
    ok = norm > 0
    normals[ok] /= norm[ok, None]
    facing = normals @ towards
    visible = np.nonzero(ok & (facing > 0))[0]
    light = towards + 0.6 * up - 0.45 * right
    light /= np.linalg.norm(light)
    lambert = np.clip(normals[visible] @ light, 0.0, 1.0)
    # A little rim from the view direction keeps silhouettes readable on dark ground.
    shade = 0.22 + 0.68 * lambert + 0.10 * facing[visible]
    rgb = np.clip(base[None, :] * shade[:, None], 0, 255).astype(np.uint8)
    order = np.argsort(depth[tri[visible]].mean(axis=1), kind="stable")
    corners = np.stack([u, v], axis=1)[tri[visible[order]]]  # (F, 3, 2)
    for pts, fill in zip(corners.tolist(), rgb[order].tolist(), strict=True):
        draw.polygon([tuple(q) for q in pts], fill=tuple(fill))
    out = img.resize((size, size), Image.Resampling.LANCZOS)
    if scale_bar:
        _draw_scale_bar(out, um_per_px=ss / px_per_um)
        _draw_axes(out, right, up)
    return out


def _draw_scale_bar(img: Image.Image, *, um_per_px: float) -> None:
    w, h = img.size
    length_um = nice_step(0.3 * w * um_per_px)
    length_px = length_um / um_per_px
    draw = ImageDraw.Draw(img)
    font = get_font(max(10, w // 24))
    x0, y0 = int(0.06 * w), int(h - 0.07 * h)
    draw.rectangle([x0, y0, x0 + round(length_px), y0 + max(2, h // 100)], fill=TEXT)
    draw.text((x0, y0 - 4), font.text(f"{length_um:g} µm"), font=font.font, fill=TEXT, anchor="lb")


def _draw_axes(img: Image.Image, right: np.ndarray, up: np.ndarray) -> None:
    w, h = img.size
    draw = ImageDraw.Draw(img)
    font = get_font(max(9, w // 30))
    cx, cy, r = w - 0.12 * w, h - 0.12 * h, 0.07 * w
    for axis, (name, col) in enumerate(zip("xyz", _AXIS_COLOURS, strict=True)):
        e = np.zeros(3)
        e[axis] = 1.0
        tx, ty = cx + r * float(e @ right), cy - r * float(e @ up)
        draw.line([(cx, cy), (tx, ty)], fill=col, width=max(1, w // 160))
        draw.text(
            (cx + 1.35 * (tx - cx), cy + 1.35 * (ty - cy)),
            name,
            font=font.font,
            fill=col,
            anchor="mm",
        )


# -- histogram -----------------------------------------------------------------------


def _bin_count(vals: np.ndarray, lo: float, hi: float, *, most: int = 40) -> int:
    """numpy's ``bins="auto"`` (the finer of Freedman-Diaconis and Sturges), at most `most`.

    Computed here rather than by ``np.histogram_bin_edges``, which allocates every edge
    first: a tight cluster beside one outlier would ask it for billions of bins.
    """
    n = vals.size
    sturges = math.ceil(math.log2(n)) + 1 if n > 1 else 1
    q75, q25 = np.percentile(vals, [75, 25])
    iqr = float(q75 - q25)
    if iqr > 0 and hi > lo:
        fd = (hi - lo) / (2.0 * iqr * n ** (-1.0 / 3.0))
        if math.isfinite(fd):
            sturges = max(sturges, math.ceil(fd))
    return int(min(max(sturges, 1), most))


def render_histogram(
    values: Sequence[float], *, width: int = 640, height: int = 320, label: str = ""
) -> Image.Image:
    """A histogram as a picture: bars, nice ticks, axis labels.

    Parameters
    ----------
    values : sequence of float
        The sample (NaNs are ignored); may be empty.
    width, height : int
        Picture size in pixels.
    label : str
        Title of the x axis.

    Returns
    -------
    PIL.Image.Image
        RGB.
    """
    vals = np.asarray([v for v in values if v is not None and math.isfinite(float(v))], dtype=float)
    img = Image.new("RGB", (width, height), BG)
    draw = ImageDraw.Draw(img)
    font = get_font(max(10, height // 24))
    left, right, top, bottom = 56, width - 20, 34, height - 52
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=MUTED, width=1)
    draw.text(
        ((left + right) / 2, height - 8), font.text(label), font=font.font, fill=TEXT, anchor="mb"
    )
    draw.text((left, 8), "fossils", font=font.font, fill=TEXT, anchor="lt")
    lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 0.0)
    if vals.size == 0 or not math.isfinite(hi - lo):
        draw.text(
            ((left + right) / 2, (top + bottom) / 2),
            "no fossils" if vals.size == 0 else "values too far apart to draw",
            font=font.font,
            fill=MUTED,
            anchor="mm",
        )
        return img
    if hi - lo < 1e-9 * max(1.0, abs(hi)):
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(vals, bins=_bin_count(vals, lo, hi), range=(lo, hi))
    top_count = max(1, int(counts.max()))

    def xpix(val: float) -> float:
        return left + (val - lo) / (hi - lo) * (right - left)

    def ypix(count: float) -> float:
        return bottom - count / top_count * (bottom - top - 10)

    for n, a, b in zip(counts.tolist(), edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        if n:
            # Pillow wants x1 >= x0 and y1 >= y0: a bin narrower than 2 px, or a count
            # far below the tallest (1 fossil beside 263 specks), is still drawn, 1 px.
            x0, x1 = xpix(a) + 1, xpix(b) - 1
            x1 = max(x0, x1)
            y0 = min(ypix(n), bottom - 2)
            draw.rectangle([x0, y0, x1, bottom - 1], fill=tuple(int(c) for c in FOSSIL))
    step = nice_step((hi - lo) / 4)
    for t in np.arange(math.ceil(lo / step) * step, hi + 1e-9 * step, step).tolist():
        x = xpix(t)
        draw.line([(x, bottom), (x, bottom + 5)], fill=MUTED)
        draw.text((x, bottom + 8), f"{round(t, 9):g}", font=font.font, fill=TEXT, anchor="mt")
    ystep = max(1, int(nice_step(top_count / 4)))
    for t in range(0, top_count + 1, ystep):
        y = ypix(t)
        draw.line([(left - 5, y), (left, y)], fill=MUTED)
        draw.text((left - 8, y), str(t), font=font.font, fill=TEXT, anchor="rm")
    return img
