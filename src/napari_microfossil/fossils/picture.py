"""The gallery picture of one fossil: its rendered surface, three orthogonal slices
through its centroid and its measurements.

On the left, the fossil's surface (marching cubes of its voxels, lightly smoothed) in an
oblique view with a scale bar in µm and the scan's axes; on the right, three orthogonal
slices (the scan with the fossil outlined, or the fossil's silhouettes without a scan)
and its numbers. Big fossils are meshed from a block-downsampled mask so that every
picture costs about the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..errors import InputError
from .mesh import mask_to_mesh
from .render import BG, FOSSIL, MUTED, OUTLINE, PANEL, TEXT, fmt_number, get_font, render_mesh
from .table import FossilTable

#: Largest mesh grid (in blocks along the longest axis) a fossil is rendered from.
MAX_GRID = 48


def _block_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """Downsample a mask by ``factor`` per axis; a block is set if any voxel in it is."""
    if factor == 1:
        return mask
    pad = [(0, (-n) % factor) for n in mask.shape]
    m = np.pad(mask, pad)
    z, y, x = (n // factor for n in m.shape)
    return np.asarray(m.reshape(z, factor, y, factor, x, factor).any(axis=(1, 3, 5)))


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
            rgb[sil] = FOSSIL.astype(np.uint8)
            rgb[_outline(sil)] = OUTLINE
            label = f"{title} silhouette"
        else:
            index: list[Any] = [slice(None)] * 3
            index[axis] = int(centre[axis])
            plane = crop[tuple(index)]
            lo, hi = (float(q) for q in np.percentile(crop, (1, 99.5)))
            grey = _to_uint8(plane, lo, hi)
            rgb = np.repeat(grey[..., None], 3, axis=2)
            rgb[_outline(body[tuple(index)])] = OUTLINE
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
    draw.rectangle(box, fill=PANEL)
    font = get_font(max(9, (x1 - x0) // 14))
    draw.text((x0 + 4, y0 + 3), font.text(title), font=font.font, fill=MUTED)
    top = y0 + 6 + (font.font.size if hasattr(font.font, "size") else 12)
    avail_w, avail_h = x1 - x0 - 8, y1 - top - 4
    h_um, w_um = rgb.shape[0] * pixel_um[0], rgb.shape[1] * pixel_um[1]
    k = min(avail_w / w_um, avail_h / h_um)
    w, h = max(1, round(w_um * k)), max(1, round(h_um * k))
    view = Image.fromarray(rgb, "RGB").resize((w, h), Image.Resampling.NEAREST)
    canvas.paste(view, (x0 + 4 + (avail_w - w) // 2, top + (avail_h - h) // 2))


def _caption(row: Mapping[str, Any]) -> list[str]:
    lines = [
        f"volume  {fmt_number(row.get('volume_um3'))} µm³",
        f"eq. diameter  {fmt_number(row.get('equivalent_diameter_um'))} µm",
        "length × width × thickness",
        "    "
        + " × ".join(fmt_number(row.get(k)) for k in ("length_um", "width_um", "thickness_um"))
        + " µm",
        f"sphericity  {fmt_number(row.get('sphericity'), 2)}",
        f"voxels  {fmt_number(row.get('voxels'))}",
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
    canvas = Image.new("RGB", (2 * size, size), BG)
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
    draw.rectangle((x0, y0, 2 * size - 2, size - 2), fill=PANEL)
    title_font, font = get_font(max(11, size // 18)), get_font(max(8, size // 30))
    draw.text((x0 + 6, y0 + 4), f"fossil {fid}", font=title_font.font, fill=TEXT)
    y = y0 + 8 + max(11, size // 18)
    for line in _caption(row):
        draw.text((x0 + 6, y), font.text(line), font=font.font, fill=TEXT)
        y += max(8, size // 30) + 4
    return canvas
