"""The fossils of a phantom: drawing one, placing many, and numbering them.

:func:`place_fossils` adds fossils of random kind, size and place until they fill the
style's fraction of the core; each is drawn by :func:`render_fossil` inside its own
box, over whatever is under it, and keeps its own instance id where fossils touch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .geometry import (
    Box,
    Core,
    bounding_box,
    coverage,
    half_extent,
    offsets,
    random_direction,
    random_rotation,
    signed_distance,
)
from .shapes import Ellipsoid, foraminifer, fossil_fill, ostracod
from .style import Materials, PhantomStyle, log_uniform, uniform

#: Fossils stop being added once they fill this fraction of the volume.
_MAX_FOSSIL_FRACTION = 0.25


def place_fossils(
    rng: np.random.Generator, core: Core, style: PhantomStyle, materials: Materials
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Place fossils in the core until they fill the style's ``fossil_fraction``.

    A fossil whose centre is already inside another, or that would overlap earlier ones
    by more than 4 % of its voxels, is not placed; 50 failures in a row (or 5000
    attempts) stop early, but at least one fossil is placed if any fits.

    Parameters
    ----------
    rng : numpy.random.Generator
        The phantom's generator.
    core : Core
        The plug; fossils are centred inside it.
    style : PhantomStyle
        Fraction, sizes and wall thickness.
    materials : Materials
        The volume's attenuations.

    Returns
    -------
    instances : ndarray of uint32, shape (Z, Y, X)
        Fossil ids ``1..N`` in the order placed, 0 elsewhere.
    cover : ndarray of float32, shape (Z, Y, X)
        Fraction of each voxel covered by fossils (partial volume).
    value : ndarray of float32, shape (Z, Y, X)
        The fossils' attenuation, premultiplied by ``cover``.
    placed : list of dict
        One per fossil: ``id``, ``kind``, ``fill``, ``centre`` and ``size_voxels``.
    """
    shape = core.shape
    _, ny, nx = shape
    core_vox = core.voxels
    instances = np.zeros(shape, dtype=np.uint32)
    cover_all = np.zeros(shape, dtype=np.float32)
    value_all = np.zeros(shape, dtype=np.float32)
    size_hi = min(style.fossil_size[1], 0.9 * max(ny, nx))
    size_lo = min(style.fossil_size[0], size_hi)
    target = min(uniform(rng, style.fossil_fraction), _MAX_FOSSIL_FRACTION) * core_vox
    placed: list[dict[str, Any]] = []
    fossil_vox = 0
    misses = 0
    attempts = 0
    while (not placed or fossil_vox < target) and misses < 50 and attempts < 5000:
        attempts += 1
        kind = "foraminifer" if rng.random() < 0.7 else "ostracod"
        size = log_uniform(rng, size_lo, size_hi)
        rot = random_rotation(rng)
        if placed and rng.random() < 0.15:
            # a neighbour touching an earlier fossil, to exercise instance splitting
            other = placed[int(rng.integers(len(placed)))]
            v = random_direction(rng)
            gap = 0.5 * (other["size_voxels"] + size) * rng.uniform(0.55, 0.8)
            centre = np.asarray(other["centre"]) + v * gap
        else:
            centre = core.random_centre(rng, margin=0.3 * size)
        if kind == "foraminifer":
            parts = foraminifer(rng, size, rot)
            wall_t = min(uniform(rng, style.wall_thickness), 0.3 * size)
        else:
            parts = ostracod(rng, size, rot)
            wall_t = min(
                uniform(rng, (style.wall_thickness[0], min(style.wall_thickness[1], 2.5))),
                0.2 * size,
            )
        fill = fossil_fill(parts)
        geopetal = (float(rng.uniform(-0.5, 0.4)), str(rng.choice(["spar", "empty"])))
        hinge = float(rng.uniform(0.0, 0.35))
        half_ext = np.max(
            [np.abs(p.centre) + half_extent(p.rot, p.axes * 1.3) for p in parts], axis=0
        )
        fbox = bounding_box(centre, half_ext, shape)
        if fbox is None or (fossil_vox > 0 and _crowded(instances[fbox], centre, fbox)):
            misses += 1
            continue
        solid, cover, value = render_fossil(
            parts,
            centre,
            fbox,
            kind=kind,
            wall_t=wall_t,
            mat=materials,
            hinge=hinge,
            geopetal=geopetal,
        )
        inst = instances[fbox]
        n_solid = int(solid.sum())
        clash = int(np.count_nonzero(solid & (inst > 0)))
        if n_solid == 0 or clash > 0.04 * n_solid:
            misses += 1
            continue
        fid = len(placed) + 1
        inst[solid & (inst == 0)] = fid
        _add_under(cover_all, value_all, fbox, cover, value)
        fossil_vox += n_solid - clash
        misses = 0  # count consecutive failures only: a crowded volume stops early
        placed.append(
            {
                "id": fid,
                "kind": kind,
                "fill": fill,
                "centre": tuple(round(float(c), 2) for c in centre),
                "size_voxels": round(float(size), 2),
            }
        )

    return instances, cover_all, value_all, placed


def render_fossil(
    parts: list[Ellipsoid],
    centre: np.ndarray,
    bbox: Box,
    *,
    kind: str,
    wall_t: float,
    mat: Materials,
    hinge: float,
    geopetal: tuple[float, str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one fossil inside ``bbox``.

    Chambers are added in growth order and never overwrite an earlier chamber, so the
    walls of earlier chambers stay as septa between them.

    Parameters
    ----------
    parts : list of Ellipsoid
        The fossil's chambers (or carapace), relative to ``centre``.
    centre : ndarray, shape (3,)
        The fossil's centre (z, y, x) in the volume, in voxels.
    bbox : (slice, slice, slice)
        The box of the volume to draw in.
    kind : str
        ``"foraminifer"`` or ``"ostracod"`` (only ostracods have a hinge).
    wall_t : float
        Wall thickness, in voxels.
    mat : Materials
        The volume's attenuations.
    hinge : float
        Ostracods: how much fainter the wall is along the dorsal hinge (0 to 1).
    geopetal : (float, str)
        For ``"mixed"`` chambers: the level of the settled mud, as a fraction of the
        chamber's smallest semi-axis from its centre along z, and the fill above it.

    Returns
    -------
    solid : ndarray of bool, shape of ``bbox``
        Voxel centres inside the outer surface (the truth).
    cover : ndarray of float32, shape of ``bbox``
        Partial coverage of each voxel.
    value : ndarray of float32, shape of ``bbox``
        Attenuation, premultiplied by ``cover``.
    """
    shape = tuple(s.stop - s.start for s in bbox)
    solid = np.zeros(shape, dtype=bool)
    cover = np.zeros(shape, dtype=np.float32)
    value = np.zeros(shape, dtype=np.float32)  # premultiplied by cover
    origin = np.array([s.start for s in bbox], dtype=float)
    for part in parts:
        c_world = centre + part.centre
        sub = bounding_box(c_world - origin, half_extent(part.rot, part.axes * 1.25), shape)
        if sub is None:
            continue
        d = offsets(sub, c_world - origin)
        sdist, u = signed_distance(d, part.rot, part.axes, bend=part.bend, taper=part.taper)
        c_out = coverage(sdist)
        c_in = coverage(sdist + np.float32(wall_t))
        wall: Any = np.float32(mat.wall)
        if kind == "ostracod" and hinge > 0:
            # the hinge between the two valves: a faint gap along the dorsal margin
            wall = wall * (1.0 - np.float32(hinge) * ((np.abs(u[2]) < 0.75) & (u[1] > 0)))
        level, upper = geopetal
        fill: Any
        if part.fill == "mixed":
            # geopetal fill: mud settled at the bottom, cement or void above
            dz = d[0] + np.zeros_like(sdist)
            below = dz < level * float(part.axes.min())
            fill = np.where(below, np.float32(mat.mud), np.float32(getattr(mat, upper)))
        else:
            fill = np.float32(getattr(mat, part.fill))
        v = wall * (c_out - c_in) + fill * c_in
        _add_under(cover, value, sub, c_out, v)
        solid[sub] |= sdist <= 0
    return solid, cover, value


def _add_under(
    cover: np.ndarray, value: np.ndarray, where: Box, c: np.ndarray, v: np.ndarray
) -> None:
    """Add a body of coverage ``c`` and premultiplied value ``v`` under what is drawn.

    Whatever is already drawn wins: the body shows only in the part of each voxel that
    ``cover`` leaves free.
    """
    free = 1.0 - cover[where]
    value[where] += v * free
    cover[where] += c * free


def _crowded(inst: np.ndarray, centre: np.ndarray, bbox: Box) -> bool:
    """Cheap test before drawing a fossil: is its centre already inside another one?"""
    c = tuple(
        min(max(round(float(v)) - s.start, 0), s.stop - s.start - 1)
        for v, s in zip(centre, bbox, strict=True)
    )
    return bool(inst[c] > 0)


def relabel(
    instances: np.ndarray, placed: list[dict[str, Any]]
) -> tuple[np.ndarray, tuple[dict[str, Any], ...]]:
    """Renumber the fossils left after clipping to consecutive ids 1..N."""
    counts = np.bincount(instances.ravel(), minlength=len(placed) + 1)
    lut = np.zeros(len(counts), dtype=np.uint32)
    fossils: list[dict[str, Any]] = []
    for info in placed:
        n = int(counts[info["id"]])
        if n == 0:
            continue
        new = len(fossils) + 1
        lut[info["id"]] = new
        fossils.append({**info, "id": new, "voxels": n})
    if len(fossils) != len(placed):
        instances = lut[instances]
    return instances, tuple(fossils)
