"""Separating touching fossils: a distance-transform watershed seeded at narrow necks."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi


def tight_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of the set voxels of a non-empty mask."""
    found = ndi.find_objects(mask.astype(np.uint8))
    assert found and found[0] is not None
    return found[0]


def sub_box(box: tuple[slice, ...], sub: tuple[slice, ...]) -> tuple[slice, ...]:
    """The box `sub`, given within `box`, in the coordinates `box` is given in."""
    return tuple(slice(b.start + t.start, b.start + t.stop) for b, t in zip(box, sub, strict=True))


def box_in(inner: tuple[slice, ...], outer: tuple[slice, ...]) -> tuple[slice, ...]:
    """The box `inner` as slices of an array holding `outer` (both in the same
    coordinates): the inverse of :func:`sub_box`."""
    return tuple(
        slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer, strict=True)
    )


def split_body(
    body: np.ndarray,
    spacing: tuple[float, float, float],
    min_distance_um: float | None,
    neck_ratio: float,
) -> list[np.ndarray]:
    """Split one body into touching parts; returns full-crop masks (one if no split)."""
    from skimage.morphology import local_maxima, reconstruction
    from skimage.segmentation import watershed

    padded = np.pad(body, 1)
    dist = ndi.distance_transform_edt(padded, sampling=spacing)
    # Smoothing by about a voxel removes the ripples a voxel staircase puts on the
    # ridge of an elongated body, which would otherwise become extra seeds.
    sigma = tuple(max(spacing) / s * 0.75 for s in spacing)
    dist = ndi.gaussian_filter(dist, sigma=sigma) * padded
    # Seeds are the plateaus of the h-dome reconstruction of log(distance + 1 voxel):
    # two maxima become two seeds only if the saddle between them (the neck's radius)
    # is below ``neck_ratio`` times the smaller one (its body's radius). A relative
    # depth keeps the wide joints between the chambers of one foraminifer together,
    # the extra voxel keeps staircase ripples on small bodies from counting, and
    # plateaus (not h_maxima's tops) make equally high maxima on one ridge one seed.
    voxel = max(spacing)
    if float(dist.max()) <= voxel:
        return [body]
    f = np.log(dist + voxel)
    h = math.log(1.0 / neck_ratio)
    # Most bodies (no neck at all, or only shallow dips along a ridge) have one seed,
    # which a cheaper test than the reconstruction shows (see `_one_seed`).
    if _one_seed(f, h):
        return [body]
    domes = reconstruction(f - h, f, method="dilation")
    peaks = local_maxima(domes, connectivity=3, allow_borders=True) & padded
    seeds, n_seeds = ndi.label(peaks, structure=np.ones((3, 3, 3), dtype=bool))
    if n_seeds <= 1:
        return [body]
    if min_distance_um:
        seeds, n_seeds = _merge_close_seeds(seeds, n_seeds, dist, spacing, min_distance_um)
        if n_seeds <= 1:
            return [body]
    parts = watershed(-dist, seeds, mask=padded)[1:-1, 1:-1, 1:-1]
    return [parts == k for k in range(1, n_seeds + 1) if np.any(parts == k)]


def _one_seed(f: np.ndarray, h: float) -> bool:
    """Whether the h-dome reconstruction ``reconstruction(f - h, f)`` has one regional
    maximum (26-connected), without computing it.

    True exactly when every regional maximum of `f` lies in ``K``, the 26-connected
    component of ``f >= max(f) - h`` holding the highest voxel. The reconstruction is
    ``max(f) - h`` on ``K``, and from any other voxel a path on which `f` never falls
    leads to a maximum of `f`, hence into ``K``; along it the reconstruction,
    ``min(f, max(f) - h)``, never falls either, so no plateau outside ``K`` is a
    regional maximum. When a maximum lies outside ``K`` the reconstruction decides.
    """
    from skimage.morphology import local_maxima

    top = int(np.argmax(f))
    level = f.flat[top] - h  # the seed's own value there, the same float
    above, _ = ndi.label(f >= level, structure=np.ones((3, 3, 3), dtype=bool))
    peaks = local_maxima(f, connectivity=3, allow_borders=True)
    return bool(np.all(above[peaks] == above.flat[top]))


def _merge_close_seeds(
    seeds: np.ndarray,
    n: int,
    dist: np.ndarray,
    spacing: tuple[float, float, float],
    min_distance_um: float,
) -> tuple[np.ndarray, int]:
    """Merge seeds whose highest points are closer than ``min_distance_um``."""
    idx = range(1, n + 1)
    pos = np.array(ndi.maximum_position(dist, seeds, idx), dtype=float) * np.asarray(spacing)
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a in range(n):
        for b in range(a + 1, n):
            if np.linalg.norm(pos[a] - pos[b]) < min_distance_um:
                parent[find(b)] = find(a)
    roots = sorted({find(a) for a in range(n)})
    lut = np.zeros(n + 1, dtype=np.int32)
    for a in range(n):
        lut[a + 1] = roots.index(find(a)) + 1
    return lut[seeds], len(roots)
