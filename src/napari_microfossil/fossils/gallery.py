"""A picture gallery of fossils: one PNG per fossil and an HTML index page.

Layout written into ``OUTDIR`` (the same folder as an export, see
:mod:`napari_microfossil.fossils.export`)::

    OUTDIR/index.html                     thumbnail grid, summary, size histogram
    OUTDIR/gallery/fossil_NNNN.png        3D rendering + orthogonal views + numbers
    OUTDIR/gallery/size_histogram.png     histogram of equivalent diameters (µm)

Each fossil picture shows, on the left, its surface (marching cubes of its voxels,
lightly smoothed) rendered in an oblique view with Lambert shading, a scale bar in µm
and the scan's x/y/z axes; on the right, three orthogonal slices through its centroid
(the scan with the fossil outlined, or the fossil's silhouettes without a scan) and its
measurements. The renderer is a painter's-algorithm rasteriser on Pillow: no display,
no OpenGL, no matplotlib. Big fossils are meshed from a block-downsampled mask so that
every picture costs about the same.
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .._progress import Progress, drain
from ..errors import InputError
from ..io import atomic_path
from . import FossilTable
from .export import fossil_stem
from .mesh import mask_to_mesh

logger = logging.getLogger(__name__)

#: Sub-folder of OUTDIR holding the pictures.
GALLERY_DIR = "gallery"
#: Largest mesh grid (in blocks along the longest axis) a fossil is rendered from.
MAX_GRID = 48

_BG = (28, 28, 30)
_PANEL = (40, 40, 44)
_TEXT = (232, 232, 232)
_MUTED = (160, 160, 166)
_FOSSIL = np.array([236.0, 214.0, 170.0])  # warm ivory, like a cleaned foraminifer
_OUTLINE = (255, 140, 0)
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


@dataclass(frozen=True)
class GalleryResult:
    """Paths written by :func:`iter_write_gallery`.

    Parameters
    ----------
    outdir : Path
        The folder holding ``index.html``.
    index : Path
        The HTML index page.
    histogram : Path
        The size histogram picture.
    images : dict of int to Path
        Picture of each fossil id.
    """

    outdir: Path
    index: Path
    histogram: Path
    images: Mapping[int, Path] = field(default_factory=dict)

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file written."""
        return (self.index, self.histogram, *self.images.values())


# -- text ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Font:
    font: Any
    unicode: bool

    def text(self, s: str) -> str:
        return s if self.unicode else s.translate(_ASCII)


@lru_cache(maxsize=8)
def _font(size: int) -> _Font:
    for name in _FONT_CANDIDATES:
        try:
            return _Font(ImageFont.truetype(name, size), True)
        except OSError:
            continue
    return _Font(ImageFont.load_default(size=size), False)


def _fmt(value: Any, digits: int = 3) -> str:
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


def _nice(value: float) -> float:
    """Largest 1, 2 or 5 × 10^k not above ``value`` (``value`` > 0)."""
    k = math.floor(math.log10(value))
    for m in (5.0, 2.0, 1.0):
        if m * 10**k <= value:
            return m * 10**k
    return 10.0**k  # pragma: no cover - m = 1 always fits


# -- 3D rendering --------------------------------------------------------------------


def _block_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """Downsample a mask by ``factor`` per axis; a block is set if any voxel in it is."""
    if factor == 1:
        return mask
    pad = [(0, (-n) % factor) for n in mask.shape]
    m = np.pad(mask, pad)
    z, y, x = (n // factor for n in m.shape)
    return np.asarray(m.reshape(z, factor, y, factor, x, factor).any(axis=(1, 3, 5)))


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
    base = _FOSSIL if colour is None else np.asarray(colour, dtype=float)
    ss = _SUPERSAMPLE
    big = size * ss
    img = Image.new("RGB", (big, big), _PANEL)
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
    length_um = _nice(0.3 * w * um_per_px)
    length_px = length_um / um_per_px
    draw = ImageDraw.Draw(img)
    font = _font(max(10, w // 24))
    x0, y0 = int(0.06 * w), int(h - 0.07 * h)
    draw.rectangle([x0, y0, x0 + round(length_px), y0 + max(2, h // 100)], fill=_TEXT)
    draw.text((x0, y0 - 4), font.text(f"{length_um:g} µm"), font=font.font, fill=_TEXT, anchor="lb")


def _draw_axes(img: Image.Image, right: np.ndarray, up: np.ndarray) -> None:
    w, h = img.size
    draw = ImageDraw.Draw(img)
    font = _font(max(9, w // 30))
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


# -- orthogonal views ----------------------------------------------------------------


def _to_uint8(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.full(a.shape, 128, dtype=np.uint8)
    return np.clip((a.astype(np.float64) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def _outline(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    return mask & ~ndi.binary_erosion(mask, border_value=0)


def _ortho_views(
    body: np.ndarray, crop: np.ndarray | None, centre: Sequence[int]
) -> list[tuple[str, np.ndarray, int, int]]:
    """(title, RGB view, row axis, column axis) for the xy, xz and yz views of a crop."""
    views = []
    for axis, (title, rows, cols) in enumerate(
        (("xy", 1, 2), ("xz", 0, 2), ("yz", 0, 1)),
    ):
        if crop is None:
            sil = np.asarray(body.any(axis=axis))
            rgb = np.zeros((*sil.shape, 3), dtype=np.uint8)
            rgb[sil] = _FOSSIL.astype(np.uint8)
            rgb[_outline(sil)] = _OUTLINE
            label = f"{title} silhouette"
        else:
            index: list[Any] = [slice(None)] * 3
            index[axis] = int(centre[axis])
            plane = crop[tuple(index)]
            lo, hi = (float(q) for q in np.percentile(crop, (1, 99.5)))
            grey = _to_uint8(plane, lo, hi)
            rgb = np.repeat(grey[..., None], 3, axis=2)
            rgb[_outline(body[tuple(index)])] = _OUTLINE
            label = f"{title} · {'zyx'[axis]} = {int(centre[axis])}"
        views.append((label, rgb, rows, cols))
    return views


def _paste_view(
    canvas: Image.Image,
    box: tuple[int, int, int, int],
    rgb: np.ndarray,
    pixel_um: tuple[float, float],
    title: str,
) -> None:
    """Fit a view into ``box`` (x0, y0, x1, y1) at its physical aspect, voxels kept sharp."""
    x0, y0, x1, y1 = box
    draw = ImageDraw.Draw(canvas)
    draw.rectangle(box, fill=_PANEL)
    font = _font(max(9, (x1 - x0) // 14))
    draw.text((x0 + 4, y0 + 3), font.text(title), font=font.font, fill=_MUTED)
    top = y0 + 6 + (font.font.size if hasattr(font.font, "size") else 12)
    avail_w, avail_h = x1 - x0 - 8, y1 - top - 4
    h_um, w_um = rgb.shape[0] * pixel_um[0], rgb.shape[1] * pixel_um[1]
    k = min(avail_w / w_um, avail_h / h_um)
    w, h = max(1, round(w_um * k)), max(1, round(h_um * k))
    view = Image.fromarray(rgb, "RGB").resize((w, h), Image.Resampling.NEAREST)
    canvas.paste(view, (x0 + 4 + (avail_w - w) // 2, top + (avail_h - h) // 2))


def _caption(row: Mapping[str, Any]) -> list[str]:
    lines = [
        f"volume  {_fmt(row.get('volume_um3'))} µm³",
        f"eq. diameter  {_fmt(row.get('equivalent_diameter_um'))} µm",
        "length × width × thickness",
        "    "
        + " × ".join(_fmt(row.get(k)) for k in ("length_um", "width_um", "thickness_um"))
        + " µm",
        f"sphericity  {_fmt(row.get('sphericity'), 2)}",
        f"voxels  {_fmt(row.get('voxels'))}",
    ]
    if row.get("touches_border"):
        lines.append("cut by the scan's edge")
    return lines


def render_fossil(
    table: FossilTable,
    fossil_id: int,
    *,
    image: Any = None,
    size: int = 320,
    margin: int = 4,
    max_grid: int = MAX_GRID,
) -> Image.Image:
    """The gallery picture of one fossil.

    Parameters
    ----------
    table : FossilTable
        Fossils and their measurements.
    fossil_id : int
        Which fossil.
    image : (Z, Y, X) array-like, optional
        The scan (same shape as ``table.instances``); only the fossil's crop is read.
    size : int
        Height of the picture in pixels; it is twice as wide.
    margin : int
        Voxels of context around the fossil in the orthogonal views.
    max_grid : int
        Fossils longer than this many voxels are meshed from a block-downsampled mask
        (each block set if any voxel in it is, so thin walls survive).

    Returns
    -------
    PIL.Image.Image
        RGB, ``2 size`` × ``size``.

    Raises
    ------
    InputError
        If ``fossil_id`` is not in the table.
    """
    row = table.row(fossil_id)
    fid = int(row["id"])
    sp = np.asarray(table.spacing, dtype=float)
    start = np.array([row["bbox_z0"], row["bbox_y0"], row["bbox_x0"]], dtype=int)
    stop = np.array([row["bbox_z1"], row["bbox_y1"], row["bbox_x1"]], dtype=int)
    body = table.instances[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))] == fid
    if not body.any():
        raise InputError(f"fossil id: fossil {fid} has no voxels in the instance volume")

    factor = max(1, math.ceil(max(body.shape) / max(1, int(max_grid))))
    coarse = _block_any(body, factor)
    mesh = mask_to_mesh(coarse, spacing=tuple(sp * factor), smooth=True)
    canvas = Image.new("RGB", (2 * size, size), _BG)
    canvas.paste(render_mesh(mesh.vertices, mesh.faces, size=size), (0, 0))

    shape = np.asarray(table.instances.shape)
    lo = np.maximum(start - margin, 0)
    hi = np.minimum(stop + margin, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    crop_body = table.instances[box] == fid
    crop = None if image is None else np.asarray(image[box])
    centre = np.clip(
        np.rint([row["centroid_z"], row["centroid_y"], row["centroid_x"]]).astype(int) - lo,
        0,
        np.asarray(crop_body.shape) - 1,
    )
    half = size // 2
    cells = ((size, 0), (size + half, 0), (size, half))
    for (title, rgb, rows, cols), (x0, y0) in zip(
        _ortho_views(crop_body, crop, centre), cells, strict=True
    ):
        _paste_view(
            canvas, (x0 + 2, y0 + 2, x0 + half - 2, y0 + half - 2), rgb, (sp[rows], sp[cols]), title
        )

    draw = ImageDraw.Draw(canvas)
    x0, y0 = size + half + 2, half + 2
    draw.rectangle((x0, y0, 2 * size - 2, size - 2), fill=_PANEL)
    title_font, font = _font(max(11, size // 18)), _font(max(8, size // 30))
    draw.text((x0 + 6, y0 + 4), f"fossil {fid}", font=title_font.font, fill=_TEXT)
    y = y0 + 8 + max(11, size // 18)
    for line in _caption(row):
        draw.text((x0 + 6, y), font.text(line), font=font.font, fill=_TEXT)
        y += max(8, size // 30) + 4
    return canvas


# -- histogram -----------------------------------------------------------------------


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
    img = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(img)
    font = _font(max(10, height // 24))
    left, right, top, bottom = 56, width - 20, 34, height - 52
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=_MUTED, width=1)
    draw.text(
        ((left + right) / 2, height - 8), font.text(label), font=font.font, fill=_TEXT, anchor="mb"
    )
    draw.text((left, 8), "fossils", font=font.font, fill=_TEXT, anchor="lt")
    if vals.size == 0:
        draw.text(
            ((left + right) / 2, (top + bottom) / 2),
            "no fossils",
            font=font.font,
            fill=_MUTED,
            anchor="mm",
        )
        return img
    lo, hi = float(vals.min()), float(vals.max())
    if hi - lo < 1e-9 * max(1.0, abs(hi)):
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.histogram_bin_edges(vals, bins="auto", range=(lo, hi))
    if len(edges) > 41:
        edges = np.linspace(lo, hi, 41)
    counts, edges = np.histogram(vals, bins=edges)
    top_count = max(1, int(counts.max()))

    def xpix(val: float) -> float:
        return left + (val - lo) / (hi - lo) * (right - left)

    def ypix(count: float) -> float:
        return bottom - count / top_count * (bottom - top - 10)

    for n, a, b in zip(counts.tolist(), edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        if n:
            draw.rectangle(
                [xpix(a) + 1, ypix(n), xpix(b) - 1, bottom - 1], fill=tuple(int(c) for c in _FOSSIL)
            )
    step = _nice((hi - lo) / 4)
    for t in np.arange(math.ceil(lo / step) * step, hi + 1e-9 * step, step).tolist():
        x = xpix(t)
        draw.line([(x, bottom), (x, bottom + 5)], fill=_MUTED)
        draw.text((x, bottom + 8), f"{round(t, 9):g}", font=font.font, fill=_TEXT, anchor="mt")
    ystep = max(1, int(_nice(top_count / 4)))
    for t in range(0, top_count + 1, ystep):
        y = ypix(t)
        draw.line([(left - 5, y), (left, y)], fill=_MUTED)
        draw.text((left - 8, y), str(t), font=font.font, fill=_TEXT, anchor="rm")
    return img


# -- the gallery ---------------------------------------------------------------------


def _save_png(img: Image.Image, path: Path, overwrite: bool) -> None:
    with atomic_path(path, overwrite=overwrite) as tmp:
        img.save(tmp, format="PNG", optimize=False)


_CSS = """
body { background: #1c1c1e; color: #e8e8e8; font: 14px/1.4 system-ui, sans-serif; margin: 24px; }
h1 { font-weight: 600; margin: 0 0 4px; }
a { color: #ffb35c; }
.muted { color: #a0a0a6; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 14px; }
figure { margin: 0; background: #28282c; padding: 6px; border-radius: 6px; }
figure img { width: 100%; height: auto; display: block; border-radius: 3px; }
figcaption { padding: 4px 2px 0; }
"""


def _index_html(
    table: FossilTable,
    ids: Sequence[int],
    outdir: Path,
    images: Mapping[int, Path],
    histogram: Path,
) -> str:
    esc = html.escape
    rows = {int(r["id"]): r for r in table.rows}
    total_volume = sum(float(rows[i]["volume_um3"]) for i in ids)
    spacing = " × ".join(_fmt(s) for s in table.spacing)
    extra = []
    if (outdir / "fossils.csv").is_file():
        extra.append('<a href="fossils.csv">fossils.csv</a>')
    if (outdir / "instances.tif").is_file():
        extra.append('<a href="instances.tif">instances.tif</a>')
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Fossil gallery ({len(ids)} fossils)</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{len(ids)} fossil{'s' if len(ids) != 1 else ''}</h1>",
        f'<p class="muted">voxel size (z × y × x) {esc(spacing)} µm · total volume '
        f"{esc(_fmt(total_volume))} µm³ · ids ordered by size, largest first"
        + (f" · {' · '.join(extra)}" if extra else "")
        + "</p>",
        f'<p><img src="{esc(histogram.relative_to(outdir).as_posix())}" width="640" '
        'alt="Histogram of equivalent diameters in µm"></p>',
        '<div class="grid">',
    ]
    for fid in ids:
        row = rows[fid]
        src = esc(images[fid].relative_to(outdir).as_posix())
        stem = fossil_stem(fid)
        links = []
        for folder, exts in (("meshes", ("stl", "ply", "obj")), ("crops", ("tif",))):
            for ext in exts:
                f = outdir / folder / f"{stem}.{ext}"
                if f.is_file():
                    links.append(
                        f'<a href="{esc(f.relative_to(outdir).as_posix())}">{folder[:-1] if folder == "meshes" else "crop"} ({ext})</a>'
                    )
        edge = ' · <span class="muted">cut by the edge</span>' if row.get("touches_border") else ""
        parts.append(
            f'<figure id="{stem}"><a href="{src}"><img src="{src}" loading="lazy" '
            f'alt="fossil {fid}"></a><figcaption><b>#{fid}</b> · '
            f"{esc(_fmt(row['volume_um3']))} µm³ · ⌀ {esc(_fmt(row['equivalent_diameter_um']))} µm"
            f"{edge}" + (f"<br>{' · '.join(links)}" if links else "") + "</figcaption></figure>"
        )
    parts += ["</div>", "</body></html>", ""]
    return "\n".join(parts)


def iter_write_gallery(
    table: FossilTable,
    outdir: str | Path,
    *,
    image: Any = None,
    ids: Sequence[int] | None = None,
    overwrite: bool = False,
    size: int = 320,
    max_grid: int = MAX_GRID,
) -> Generator[Progress, None, GalleryResult]:
    """Write a picture of every fossil and an HTML index page, yielding progress.

    Parameters
    ----------
    table : FossilTable
        Fossils from :func:`~napari_microfossil.fossils.extract_fossils`.
    outdir : path
        Folder for ``index.html`` (pictures go to ``OUTDIR/gallery/``); created if
        missing. Use the export folder so the page links each fossil's mesh and crop.
    image : (Z, Y, X) array-like, optional
        The scan, same shape as ``table.instances``, for the orthogonal slices; only
        each fossil's crop is read (works on lazy arrays).
    ids : sequence of int, optional
        Only these fossils (in this order). Default: all, in id order.
    overwrite : bool
        Replace existing files; otherwise an existing output file is an error raised
        before anything is written.
    size : int
        Picture height in pixels (width is twice that).
    max_grid : int
        See :func:`render_fossil`.

    Yields
    ------
    Progress
        Stage ``"gallery"``, one per fossil; then ``"gallery index"``.

    Returns
    -------
    GalleryResult

    Raises
    ------
    InputError
        On unknown ``ids``, an ``image`` of another shape, a bad ``size``, or existing
        files without ``overwrite`` -- when called, before anything is written; the
        pictures are made as the generator is iterated.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 64:
        raise InputError(f"size: expected an integer >= 64 (pixels), got {size!r}")
    if image is not None and tuple(getattr(image, "shape", ())) != table.instances.shape:
        raise InputError(
            f"image: expected the shape of the instances {table.instances.shape}, "
            f"got {tuple(getattr(image, 'shape', ()))}"
        )
    all_ids = table.ids
    if ids is None:
        selected = list(all_ids)
    else:
        known = set(all_ids)
        selected = list(dict.fromkeys(int(i) for i in ids))
        unknown = [i for i in selected if i not in known]
        if unknown:
            raise InputError(
                f"ids: expected fossil ids of the table (1..{max(all_ids, default=0)}), "
                f"got unknown {unknown[:5]}"
            )
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise InputError(f"outdir: expected a folder, got the file {str(out)!r}")
    gdir = out / GALLERY_DIR
    index = out / "index.html"
    histogram = gdir / "size_histogram.png"
    images = {fid: gdir / f"{fossil_stem(fid)}.png" for fid in selected}
    if not overwrite:
        existing = [p for p in (index, histogram, *images.values()) if p.exists()]
        if existing:
            raise InputError(
                f"outdir: {str(existing[0])!r} already exists"
                f"{f' (and {len(existing) - 1} more)' if len(existing) > 1 else ''}; "
                "choose another folder or pass overwrite=True"
            )
    return _write_gallery(
        table, out, image=image, selected=selected, size=int(size), max_grid=max_grid
    )


def _write_gallery(
    table: FossilTable,
    out: Path,
    *,
    image: Any,
    selected: list[int],
    size: int,
    max_grid: int,
) -> Generator[Progress, None, GalleryResult]:
    gdir = out / GALLERY_DIR
    index = out / "index.html"
    histogram = gdir / "size_histogram.png"
    images = {fid: gdir / f"{fossil_stem(fid)}.png" for fid in selected}
    gdir.mkdir(parents=True, exist_ok=True)

    total = len(selected)
    yield Progress("gallery", 0, total)
    for done, fid in enumerate(selected, start=1):
        pic = render_fossil(table, fid, image=image, size=size, max_grid=max_grid)
        _save_png(pic, images[fid], overwrite=True)
        yield Progress("gallery", done, total)

    yield Progress("gallery index", 0, 1)
    diameters = [float(table.row(fid)["equivalent_diameter_um"]) for fid in selected]
    _save_png(
        render_histogram(diameters, label="equivalent diameter (µm)"), histogram, overwrite=True
    )
    page = _index_html(table, selected, out, images, histogram)
    with atomic_path(index) as tmp:
        tmp.write_text(page, encoding="utf-8")
    yield Progress("gallery index", 1, 1)
    logger.info("gallery of %d fossils written to %s", total, index)
    return GalleryResult(outdir=out, index=index, histogram=histogram, images=images)


def write_gallery(table: FossilTable, outdir: str | Path, **kwargs: Any) -> GalleryResult:
    """Write the fossil gallery; see :func:`iter_write_gallery` for parameters."""
    return drain(iter_write_gallery(table, outdir, **kwargs))


__all__ = [
    "GALLERY_DIR",
    "GalleryResult",
    "iter_write_gallery",
    "render_fossil",
    "render_histogram",
    "render_mesh",
    "write_gallery",
]
