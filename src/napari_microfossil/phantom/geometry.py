"""Geometry of the phantom: rotations, boxes, ellipsoid distances and the core plug.

Every body is drawn inside its own bounding box (:func:`bounding_box`), from voxel-centre
offsets (:func:`offsets`) and an approximate signed distance to its surface
(:func:`signed_distance`), which gives both the crisp truth (``<= 0``) and the partial
volume of the image (:func:`coverage`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Box = tuple[slice, slice, slice]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random 3D rotation matrix (from a normalised Gaussian quaternion)."""
    w, x, y, z = rng.standard_normal(4) / 1.0
    n = math.sqrt(w * w + x * x + y * y + z * z) or 1.0
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def random_direction(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random unit vector (z, y, x)."""
    v = rng.standard_normal(3)
    v /= np.linalg.norm(v) or 1.0
    return v


def half_extent(rot: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Half size along each world axis of the box around a rotated ellipsoid."""
    return np.sqrt(((rot * axes[None, :]) ** 2).sum(axis=1))


def bounding_box(
    centre: np.ndarray, half: np.ndarray, shape: tuple[int, ...], pad: float = 1.5
) -> Box | None:
    """Integer box around ``centre +- half`` clipped to ``shape``; None if empty."""
    lo = [max(0, math.floor(c - h - pad)) for c, h in zip(centre, half, strict=True)]
    hi = [min(n, math.ceil(c + h + pad) + 1) for c, h, n in zip(centre, half, shape, strict=True)]
    if any(h <= lo_ for lo_, h in zip(lo, hi, strict=True)):
        return None
    return (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))


def offsets(box: Box, centre: np.ndarray) -> list[np.ndarray]:
    """Broadcastable voxel-centre offsets (dz, dy, dx) from ``centre`` over ``box``."""
    out = []
    for axis, (s, c) in enumerate(zip(box, centre, strict=True)):
        d = np.arange(s.start, s.stop, dtype=np.float32) - np.float32(c)
        shape = [1, 1, 1]
        shape[axis] = d.size
        out.append(d.reshape(shape))
    return out


def signed_distance(
    d: list[np.ndarray],
    rot: np.ndarray,
    axes: np.ndarray,
    *,
    bend: float = 0.0,
    taper: float = 0.0,
    bumps: list[tuple[float, float, np.ndarray, float]] | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Approximate signed distance to an ellipsoid surface (negative inside).

    The distance is measured along the ray from the centre, which is exact for a
    sphere and close for the mildly elongated bodies drawn here; ``<= 0`` is the
    crisp inside test at voxel centres. Returns the distance and the offsets in the
    ellipsoid's own frame.
    """
    u = [rot[0, i] * d[0] + rot[1, i] * d[1] + rot[2, i] * d[2] for i in range(3)]
    u = [np.asarray(v, dtype=np.float32) for v in u]
    a0, a1, a2 = (float(a) for a in axes)
    if bend or taper:
        t = u[0] / a0
        u1 = u[1] - np.float32(bend * a1) * t * t
        scale = np.maximum(1.0 + np.float32(taper) * t, 0.3)
        q2 = t * t + (u1 / (a1 * scale)) ** 2 + (u[2] / (a2 * scale)) ** 2
        r = np.sqrt(u[0] ** 2 + u1**2 + u[2] ** 2)
    else:
        q2 = (u[0] / a0) ** 2 + (u[1] / a1) ** 2 + (u[2] / a2) ** 2
        r = np.sqrt(u[0] ** 2 + u[1] ** 2 + u[2] ** 2)
    q = np.sqrt(q2)
    if bumps:
        # irregular outline: the radius depends smoothly on the direction
        inv_r = 1.0 / np.maximum(r, 1e-3)
        wobble = np.ones_like(q)
        for amp, freq, v, phase in bumps:
            proj = (u[0] * v[0] + u[1] * v[1] + u[2] * v[2]) * inv_r
            wobble += np.float32(amp) * np.cos(np.float32(freq) * proj + np.float32(phase))
        q = q / np.maximum(wobble, 0.3)
    rq = np.where(q > 1e-6, r / np.maximum(q, 1e-6), np.float32(min(a0, a1, a2)))
    return ((q - 1.0) * rq).astype(np.float32, copy=False), u


def coverage(s: np.ndarray) -> np.ndarray:
    """Fraction of a voxel inside a surface at signed distance ``s`` (partial volume)."""
    return np.clip(0.5 - s, 0.0, 1.0)


@dataclass(frozen=True)
class Core:
    """The core plug (a cylinder along z) as the field of view shows it.

    Attributes
    ----------
    shape : (int, int, int)
        Volume shape (Z, Y, X).
    fov : str
        ``"full"`` (the whole plug in view), ``"small"`` (a thinner plug) or ``"none"``
        (a crop of the interior: the plug's edge is off-frame).
    cy, cx : float
        The plug's axis, in voxels.
    radius : float
        The plug's radius, in voxels.
    r2d : ndarray of float32, shape (Y, X)
        Distance of each pixel from the axis, in voxels.
    inside2d : ndarray of float32, shape (Y, X)
        Fraction of each pixel inside the plug (partial volume at its surface).
    in_core : ndarray of bool, shape (Y, X)
        Pixel centres inside the plug.
    """

    shape: tuple[int, int, int]
    fov: str
    cy: float
    cx: float
    radius: float
    r2d: np.ndarray
    inside2d: np.ndarray
    in_core: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, shape: tuple[int, int, int]) -> Core:
        """Draw the field of view: the plug's axis and radius."""
        _, ny, nx = shape
        fov = str(rng.choice(["full", "small", "none"], p=[0.45, 0.3, 0.25]))
        cy = (ny - 1) / 2 + rng.uniform(-0.04, 0.04) * ny
        cx = (nx - 1) / 2 + rng.uniform(-0.04, 0.04) * nx
        half = 0.5 * min(ny, nx)
        if fov == "full":
            radius = half * rng.uniform(0.9, 1.06)
        elif fov == "small":
            radius = half * rng.uniform(0.55, 0.88)
        else:
            radius = math.hypot(ny, nx) * rng.uniform(0.7, 2.0)  # the core edge is off-frame
        yy = np.arange(ny, dtype=np.float32)[:, None] - np.float32(cy)
        xx = np.arange(nx, dtype=np.float32)[None, :] - np.float32(cx)
        r2d = np.sqrt(yy * yy + xx * xx)
        inside2d = np.clip(radius + 0.5 - r2d, 0.0, 1.0)  # partial volume at the core surface
        in_core = r2d <= radius
        return cls(shape, fov, cy, cx, radius, r2d, inside2d, in_core)

    @property
    def voxels(self) -> float:
        """Number of voxels (centres) inside the plug."""
        nz, ny, nx = self.shape
        return float(nz * ny * nx) * float(self.in_core.mean())

    def random_centre(self, rng: np.random.Generator, margin: float = 0.0) -> np.ndarray:
        """A random point (z, y, x) inside the plug, ``margin`` voxels from its edge.

        The margin shrinks to keep at least 30 % of the radius; after 20 tries the
        last point is kept even if it lies outside.
        """
        nz, ny, nx = self.shape
        z = rng.uniform(0, nz - 1)
        for _ in range(20):
            y, x = rng.uniform(0, ny - 1), rng.uniform(0, nx - 1)
            if math.hypot(y - self.cy, x - self.cx) <= max(self.radius - margin, 0.3 * self.radius):
                break
        return np.array([z, y, x])
