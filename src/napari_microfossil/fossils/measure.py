"""Measurements of fossils in physical units: volume, surface, shape, position, intensity."""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .._progress import Progress, drain
from ..errors import InputError
from ._checks import check_image, check_labels, check_spacing
from .mesh import mask_surface_area


def iter_measure_fossils(
    instances: np.ndarray,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    image: np.ndarray | None = None,
) -> Generator[Progress, None, list[dict[str, Any]]]:
    """Measure every fossil of an instance volume, yielding progress per fossil.

    Parameters
    ----------
    instances : (Z, Y, X) array of int
        0 = background, ``k > 0`` = fossil ``k``; ids need not be consecutive.
    spacing : 3 floats
        Voxel size ``(z, y, x)`` in µm.
    image : (Z, Y, X) array, optional
        The scan, for ``mean_intensity`` (NaN without an image).

    Yields
    ------
    Progress
        Stage ``"measure"``, one per fossil.

    Returns
    -------
    list of dict
        One record per fossil present, keys :data:`FOSSIL_COLUMNS`, in id order.
        Volume is the voxel count times the voxel volume; surface area is that of the
        smoothed marching-cubes mesh; length >= width >= thickness are the full extents
        of the solid ellipsoid with the same second moments (exact for an ellipsoid).
    """
    inst = check_labels(instances, "instances")
    sp = check_spacing(spacing)
    img = check_image(image, inst.shape)
    if inst.size and inst.min() < 0:
        raise InputError("instances: expected ids >= 0, got negative values")
    slices = ndi.find_objects(inst) if inst.size else []
    present = [(i, s) for i, s in enumerate(slices, start=1) if s is not None]
    total = len(present)
    yield Progress("measure", 0, total)
    rows = []
    for done, (fid, slc) in enumerate(present, start=1):
        body = inst[slc] == fid
        crop = None if img is None else img[slc]
        rows.append(measure_one(fid, body, slc, sp, inst.shape, crop))
        yield Progress("measure", done, total)
    return rows


def measure_fossils(
    instances: np.ndarray,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    image: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Measure every fossil of an instance volume; see :func:`iter_measure_fossils`."""
    return drain(iter_measure_fossils(instances, spacing=spacing, image=image))


def measure_one(
    fid: int,
    body: np.ndarray,
    slc: tuple[slice, ...],
    spacing: tuple[float, float, float],
    shape: tuple[int, ...],
    image_crop: np.ndarray | None,
) -> dict[str, Any]:
    sp = np.asarray(spacing)
    start = np.array([s.start for s in slc])
    stop = np.array([s.stop for s in slc])
    n, centroid, cov = _moments(body, start)
    # Each voxel is a solid box, not a point: its own second moment adds s²/12 per axis,
    # which makes 2 * sqrt(5 * variance) the true diameter of a voxelised ellipsoid.
    cov = cov * np.outer(sp, sp) + np.diag(sp**2 / 12.0)
    eig = np.sort(np.clip(np.linalg.eigvalsh(cov), 0.0, None))[::-1]
    length, width, thickness = (2.0 * np.sqrt(5.0 * eig)).tolist()

    volume = n * float(np.prod(sp))
    area = mask_surface_area(body, spacing=spacing, smooth=True)
    sphericity = (math.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area) if area > 0 else math.nan
    mean_intensity = float(image_crop[body].mean()) if image_crop is not None else math.nan
    touches = bool(np.any(start == 0) or np.any(stop == np.asarray(shape)))
    return {
        "id": int(fid),
        "voxels": int(n),
        "volume_um3": volume,
        "equivalent_diameter_um": (6.0 * volume / math.pi) ** (1 / 3),
        "surface_area_um2": area,
        "sphericity": sphericity,
        "length_um": length,
        "width_um": width,
        "thickness_um": thickness,
        "bbox_z0": int(start[0]),
        "bbox_y0": int(start[1]),
        "bbox_x0": int(start[2]),
        "bbox_z1": int(stop[0]),
        "bbox_y1": int(stop[1]),
        "bbox_x1": int(stop[2]),
        "centroid_z": float(centroid[0]),
        "centroid_y": float(centroid[1]),
        "centroid_x": float(centroid[2]),
        "centroid_z_um": float(centroid[0] * sp[0]),
        "centroid_y_um": float(centroid[1] * sp[1]),
        "centroid_x_um": float(centroid[2] * sp[2]),
        "mean_intensity": mean_intensity,
        "touches_border": touches,
    }


def _moments(body: np.ndarray, start: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Voxel count, centroid ``(3,)`` (voxels, in the volume) and covariance ``(3, 3)``
    (voxels², population) of a mask, from its three 2D projections.

    The same numbers as ``np.cov`` of its voxel indices, with no ``(n, 3)`` array of
    coordinates: sums of integer products, exact, over arrays a crop's face in size.
    """
    b = body if body.dtype == bool else body != 0
    yx = b.sum(axis=0, dtype=np.int64)  # (Y, X)
    zx = b.sum(axis=1, dtype=np.int64)  # (Z, X)
    zy = b.sum(axis=2, dtype=np.int64)  # (Z, Y)
    n = int(yx.sum())
    if n == 0:
        return 0, np.full(3, np.nan), np.zeros((3, 3))
    iz, iy, ix = (np.arange(k, dtype=np.int64) for k in body.shape)
    pz, py, px = zy.sum(axis=1), zy.sum(axis=0), zx.sum(axis=0)  # 1D projections
    first = np.array([iz @ pz, iy @ py, ix @ px], dtype=np.int64)
    second = np.empty((3, 3), dtype=np.int64)
    second[0, 0] = (iz * iz) @ pz
    second[1, 1] = (iy * iy) @ py
    second[2, 2] = (ix * ix) @ px
    second[0, 1] = second[1, 0] = iz @ zy @ iy
    second[0, 2] = second[2, 0] = iz @ zx @ ix
    second[1, 2] = second[2, 1] = iy @ yx @ ix
    mean = first / n
    cov = second / n - np.outer(mean, mean)
    return n, mean + start, cov
