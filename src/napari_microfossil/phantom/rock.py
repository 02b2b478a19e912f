"""The rock around the fossils: micritic mud with grains, ooid-like look-alikes and pores.

:func:`draw_rock` gives the attenuation of the matrix (in matrix units) and the labels
of the pores; the fossils are drawn over it later.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..classes import PHANTOM_CLASS_NAMES
from .geometry import (
    Box,
    Core,
    bounding_box,
    coverage,
    half_extent,
    offsets,
    random_rotation,
    signed_distance,
)
from .shapes import blob
from .style import Look, PhantomStyle, log_uniform, uniform

#: Densities are per this many voxels, i.e. per (100 voxel)^3.
_PER_VOXELS = 1e6
#: Matrix attenuation; every other material is relative to it.
_MATRIX = 1.0
#: Class id of pores in the labels.
PORE = PHANTOM_CLASS_NAMES.index("pore")


def draw_rock(
    rng: np.random.Generator, core: Core, style: PhantomStyle, look: Look
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the matrix of the core: mottled mud, then grains, ooids and pores.

    Parameters
    ----------
    rng : numpy.random.Generator
        The phantom's generator.
    core : Core
        The plug; objects are centred inside it.
    style, look : PhantomStyle, Look
        Densities and sizes; the volume's drawn look.

    Returns
    -------
    attenuation : ndarray of float32, shape (Z, Y, X)
        In matrix units, before the scanner.
    labels : ndarray of uint8, shape (Z, Y, X)
        :data:`PORE` inside pores, 0 elsewhere.
    """
    shape = core.shape
    labels = np.zeros(shape, dtype=np.uint8)
    bg = np.full(shape, _MATRIX, dtype=np.float32)
    bg += np.float32(look.texture) * (
        0.7 * _smooth_noise(rng, shape, rng.uniform(16, 32))
        + 0.5 * _smooth_noise(rng, shape, rng.uniform(4, 8))
    )
    core_vox = core.voxels
    n_grains = _count(rng, uniform(rng, style.grain_density), core_vox)
    for _ in range(n_grains):
        radius_g = log_uniform(rng, *style.grain_size)
        grain = blob(rng, core.random_centre(rng), radius_g, shape, elongated=0.3)
        quartz = rng.random() < 0.25
        val = rng.uniform(0.8, 0.93) if quartz else rng.uniform(1.06, 1.3)
        if grain is None:
            continue
        bbox, sdist = grain
        _paint(bg, bbox, sdist, val)

    n_ooids = _count(rng, uniform(rng, style.ooid_density), core_vox)
    for _ in range(n_ooids):
        _add_ooid(rng, bg, core.random_centre(rng), contrast=look.contrast)

    n_pores = _count(rng, uniform(rng, style.pore_density), core_vox)
    for _ in range(n_pores):
        radius_p = log_uniform(rng, *style.pore_size)
        pore = blob(rng, core.random_centre(rng), radius_p, shape, elongated=0.4)
        val = look.materials.empty * rng.uniform(0.8, 1.2)
        if pore is None:
            continue
        bbox, sdist = pore
        _paint(bg, bbox, sdist, val)
        lab = labels[bbox]
        lab[sdist <= 0] = PORE
    return bg, labels


def _paint(bg: np.ndarray, bbox: Box, sdist: np.ndarray, value: float) -> None:
    """Replace the matrix by ``value`` inside a blob, by the part of each voxel it covers."""
    bg[bbox] += (np.float32(value) - bg[bbox]) * coverage(sdist)


def _add_ooid(
    rng: np.random.Generator, bg: np.ndarray, centre: np.ndarray, *, contrast: float
) -> None:
    """Draw into ``bg`` one ooid: concentric laminae around a nucleus, bright cortex."""
    r = rng.uniform(3.0, 8.0)
    rot = random_rotation(rng)
    axes = r * np.array([1.0, rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.0)])
    box_o = bounding_box(centre, half_extent(rot, axes), bg.shape)
    if box_o is None:
        return
    sdist, _ = signed_distance(offsets(box_o, centre), rot, axes)
    rim = rng.uniform(1.0, 2.2)
    core = rng.uniform(1.05, 1.22)
    lam = np.float32(core) * (
        1.0 + 0.06 * np.cos(np.float32(2 * np.pi / rng.uniform(1.8, 3.0)) * sdist)
    )
    c_out = coverage(sdist)
    c_in = coverage(sdist + np.float32(rim))
    v = np.float32(contrast * rng.uniform(0.85, 1.0)) * (c_out - c_in) + lam * c_in
    bg[box_o] = bg[box_o] * (1.0 - c_out) + v


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int, int], scale: float
) -> np.ndarray:
    """Zero-mean, unit-ish variance noise varying over about ``scale`` voxels.

    Drawn on a coarse grid and linearly interpolated, which is much cheaper than
    filtering white noise at full resolution.
    """
    coarse_shape = tuple(math.ceil(n / scale) + 3 for n in shape)
    out = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), 0.7)
    out /= out.std() or 1.0
    out = out.astype(np.float32)
    for axis, n in enumerate(shape):
        pos = np.arange(n, dtype=np.float64) / scale + 1.0
        i0 = np.floor(pos).astype(np.intp)
        w = (pos - i0).astype(np.float32)
        wshape = [1, 1, 1]
        wshape[axis] = n
        w = w.reshape(wshape)
        out = np.take(out, i0, axis=axis) * (1 - w) + np.take(out, i0 + 1, axis=axis) * w
    return out


def _count(rng: np.random.Generator, density: float, voxels: float) -> int:
    """How many objects at ``density`` per (100 voxel)^3 fall in ``voxels`` (Poisson)."""
    return int(rng.poisson(max(density, 0.0) * voxels / _PER_VOXELS))
