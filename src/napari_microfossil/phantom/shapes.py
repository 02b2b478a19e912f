"""Shapes of the phantom's bodies: fossils as sets of ellipsoids, grains as blobs.

A foraminifer is a spiral chain of chambers (:func:`foraminifer`), an ostracod one
bent, tapered carapace (:func:`ostracod`); each part carries what fills it. Grains,
ooids' look-alikes and pores are irregular blobs (:func:`blob`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import (
    Box,
    bounding_box,
    half_extent,
    offsets,
    random_direction,
    random_rotation,
    signed_distance,
)


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid in a fossil's frame, with the material inside it."""

    centre: np.ndarray  # (3,) voxels, relative to the fossil centre, world axes
    rot: np.ndarray  # (3, 3) columns: the ellipsoid's axes in world (z, y, x)
    axes: np.ndarray  # (3,) semi-axes in voxels
    fill: str
    bend: float = 0.0  # ostracod: bean-like bending of axis 1 along axis 0
    taper: float = 0.0  # ostracod: one end wider than the other


def foraminifer(rng: np.random.Generator, size: float, rot: np.ndarray) -> list[Ellipsoid]:
    """Chambers of a foraminifer of overall size ``size`` voxels, oriented by ``rot``.

    Chambers follow a logarithmic spiral: chamber k spans the angle ``dtheta`` and
    reaches radially from the previous whorl to ``R(theta) = exp(b theta)``, so chambers
    grow geometrically and embrace the earlier whorl, and each overlaps its
    predecessor a little. A trochospiral test also climbs along the coiling axis.
    """
    n = int(rng.integers(5, 16))
    dtheta = rng.uniform(0.65, 1.5)
    b = math.log(rng.uniform(1.8, 3.2)) / (2 * math.pi)
    trocho = rng.random() < 0.5
    climb = rng.uniform(0.25, 0.7) if trocho else 0.0
    flat = rng.uniform(0.8, 1.15) if trocho else rng.uniform(0.55, 1.0)
    overlap = rng.uniform(1.3, 1.6)
    embrace = rng.uniform(0.4, 0.65)
    # the proloculus; chambers of the first whorl reach in to it, later ones to the
    # previous whorl, so the test has no hole in its middle
    r0 = math.exp(b * dtheta) * rng.uniform(0.8, 1.1)
    centres, frames, axes = [], [], []
    for k in range(1, n + 1):
        theta = k * dtheta
        r_out = math.exp(b * theta)
        inner_whorl = theta - 2 * math.pi >= dtheta  # a chamber lies inside this one
        # convex chambers only touch a convex inner whorl; reaching into it (hidden
        # there, since earlier chambers win) fills the gaps a real crescent chamber would
        r_in = embrace * math.exp(b * (theta - 2 * math.pi)) if inner_whorl else 0.75 * r0
        rho = 0.5 * (r_out + r_in)
        a_r = max(0.5 * (r_out - r_in) * 1.1, 0.3 * r0)
        a_t = max(rho * math.sin(min(dtheta, 2.5) / 2) * overlap, 0.6 * a_r)
        a_t = min(a_t, 2.2 * a_r)
        phi = theta - dtheta / 2
        c, s = math.cos(phi), math.sin(phi)
        # coil frame: axis 0 = coiling axis, axes 1-2 = coiling plane
        centres.append(np.array([-climb * rho, rho * c, rho * s]))
        frames.append(np.array([[0.0, 0.0, 1.0], [c, -s, 0.0], [s, c, 0.0]]))
        axes.append(np.array([a_r, a_t, a_r * flat]))
    centres.insert(0, np.zeros(3))
    frames.insert(0, np.eye(3))
    axes.insert(0, np.array([r0, r0, r0]))

    # size = diameter of the coil in its plane
    extent = max(
        float(np.linalg.norm(cen[1:])) + float(ax[0]) for cen, ax in zip(centres, axes, strict=True)
    )
    scale = 0.5 * size / extent
    weights = np.array([float(np.prod(a)) for a in axes])
    mid = (np.array(centres) * weights[:, None]).sum(axis=0) / weights.sum()

    fill = pick_fill(rng)
    per_chamber = [pick_fill(rng, mixed=False) for _ in centres] if fill == "mixed" else None
    out = []
    for i, (cen, frame, ax) in enumerate(zip(centres, frames, axes, strict=True)):
        out.append(
            Ellipsoid(
                centre=rot @ ((cen - mid) * scale),
                rot=rot @ frame,
                axes=np.maximum(ax * scale, 0.6),
                fill=per_chamber[i] if per_chamber else fill,
            )
        )
    return out


def ostracod(rng: np.random.Generator, size: float, rot: np.ndarray) -> list[Ellipsoid]:
    """The carapace of an ostracod: one elongated, slightly bent and tapered ellipsoid."""
    length = 0.5 * size
    axes = np.array(
        [length, length * rng.uniform(0.5, 0.7), length * rng.uniform(0.35, 0.55)], dtype=float
    )
    return [
        Ellipsoid(
            centre=np.zeros(3),
            rot=rot,
            axes=axes,
            fill=pick_fill(rng),
            bend=float(rng.uniform(0.0, 0.2)),
            taper=float(rng.uniform(-0.2, 0.2)),
        )
    ]


def pick_fill(rng: np.random.Generator, *, mixed: bool = True) -> str:
    """What fills a fossil (or, with ``mixed=False``, one chamber of a mixed one)."""
    if mixed:
        return str(rng.choice(["empty", "spar", "mud", "mixed"], p=[0.32, 0.24, 0.24, 0.20]))
    return str(rng.choice(["empty", "spar", "mud"], p=[0.4, 0.3, 0.3]))


def fossil_fill(parts: list[Ellipsoid]) -> str:
    """A fossil's fill: that of all its parts, or ``"mixed"`` where they differ."""
    fills = {p.fill for p in parts}
    return fills.pop() if len(fills) == 1 else "mixed"


def blob(
    rng: np.random.Generator,
    centre: np.ndarray,
    radius: float,
    shape: tuple[int, int, int],
    *,
    elongated: float,
) -> tuple[Box, np.ndarray] | None:
    """A randomly shaped irregular blob: its box and signed distance inside it."""
    rot = random_rotation(rng)
    if rng.random() < elongated:
        axes = radius * np.array([1.0, rng.uniform(0.2, 0.55), rng.uniform(0.2, 0.55)])
    else:
        axes = radius * np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)])
    # thinner than two voxels, a blob would vanish under the PSF yet keep its label
    axes = np.maximum(axes, 1.0)
    bumps = []
    for _ in range(2):
        v = random_direction(rng)
        bumps.append((rng.uniform(0.05, 0.2), rng.uniform(2.0, 5.0), v, rng.uniform(0, 2 * np.pi)))
    bbox = bounding_box(centre, half_extent(rot, axes) * 1.45, shape)
    if bbox is None:
        return None
    sdist, _ = signed_distance(offsets(bbox, centre), rot, axes, bumps=bumps)
    return bbox, sdist
