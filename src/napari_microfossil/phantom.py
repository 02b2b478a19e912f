"""Synthetic MicroCT scans of fossiliferous carbonate rock, with exact ground truth.

:func:`make_phantom` draws, from one integer seed, a scan of a carbonate core plug:
micritic mud with grains, ooid-like look-alikes and pores, and foraminifera (spiral
chains of hollow calcite chambers) and ostracods (two-valved hollow carapaces) whose
chambers are empty, spar-cemented or mud-filled. The scan then goes through a crude
model of a lab CT scanner: beam-hardening cupping, ring artefacts, a slow drift along
z, the point-spread function, intensity-dependent noise and a random linear mapping to
``uint16``.

The phantom is the bundled sample scan, the training data of the default model and
test data, so each seed varies widely (every strength is drawn from a range of
:class:`PhantomStyle`) while the truth stays crisp: class boundaries are the analytic
outer surfaces of the bodies, sampled at voxel centres before blur and noise.

Every object is drawn inside its own bounding box, so the cost grows with the volume
and the number of objects, not with their product.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from scipy import ndimage

from .classes import PHANTOM_CLASS_NAMES
from .errors import InputError

logger = logging.getLogger(__name__)

#: Densities below are per this many voxels, i.e. per (100 voxel)^3.
_PER_VOXELS = 1e6
#: Fossils stop being added once they fill this fraction of the volume.
_MAX_FOSSIL_FRACTION = 0.25
#: Matrix attenuation; every other material is relative to it.
_MATRIX = 1.0

_Box = tuple[slice, slice, slice]
_Floats = tuple[float, float]


@dataclass(frozen=True)
class PhantomStyle:
    """Ranges from which each phantom draws its look.

    Every field is a range ``(lo, hi)``; each volume draws one value uniformly from it
    (sizes are drawn per object). Intensities are in units of the calcite-mud matrix
    (matrix = 1, air = about 0).

    Parameters
    ----------
    noise : (float, float)
        Standard deviation of the detector noise, as a fraction of the matrix-to-air
        contrast. Part of it grows with the local intensity (Poisson-like).
    blur : (float, float)
        Sigma of the Gaussian point-spread function, in voxels.
    contrast : (float, float)
        Attenuation of fossil walls (calcite) relative to the matrix (multiplier > 1).
    rings : (float, float)
        Peak amplitude of the ring artefacts, relative to the matrix.
    cupping : (float, float)
        Beam-hardening cupping: how much darker the centre of the core is than its
        edge, relative to the matrix.
    fossil_fraction : (float, float)
        Fraction of the core's volume that fossils fill: fossils of random size are
        added until it is reached (or no free place is found), so their number follows
        from their sizes. At least one fossil is always placed.
    fossil_size : (float, float)
        Overall size of a fossil across, in voxels (log-uniform per fossil; the upper
        bound is reduced to 90 % of the largest side of small volumes).
    wall_thickness : (float, float)
        Thickness of foraminifer chamber walls, in voxels (ostracods draw from the same
        range capped at 2.5 voxels: their shells are thin).
    grain_density : (float, float)
        Grains (bright calcite/dolomite or darker quartz blobs) per (100 voxel)^3.
    grain_size : (float, float)
        Largest semi-axis of a grain, in voxels (log-uniform per grain).
    ooid_density : (float, float)
        Ooid-like rounded grains with a bright rim, per (100 voxel)^3; they are not
        fossils (class ``background``).
    pore_density : (float, float)
        Pores and vugs (class ``pore``) per (100 voxel)^3.
    pore_size : (float, float)
        Largest semi-axis of a pore, in voxels (log-uniform per pore).
    texture : (float, float)
        Amplitude of the low-frequency mottling of the matrix, relative to the matrix.

    Raises
    ------
    InputError
        If a field is not a ``(lo, hi)`` pair of finite numbers with ``lo <= hi``, or is
        out of its physical range (negative, contrast below 1, sizes below 1 voxel).
    """

    noise: _Floats = (0.03, 0.12)
    blur: _Floats = (0.5, 1.3)
    contrast: _Floats = (1.35, 1.8)
    rings: _Floats = (0.0, 0.06)
    cupping: _Floats = (0.0, 0.25)
    fossil_fraction: _Floats = (0.03, 0.15)
    fossil_size: _Floats = (15.0, 90.0)
    wall_thickness: _Floats = (1.5, 4.0)
    grain_density: _Floats = (150.0, 700.0)
    grain_size: _Floats = (1.5, 8.0)
    ooid_density: _Floats = (0.0, 8.0)
    pore_density: _Floats = (20.0, 120.0)
    pore_size: _Floats = (2.0, 11.0)
    texture: _Floats = (0.02, 0.07)

    def __post_init__(self) -> None:
        minimum = {"contrast": 1.0, "fossil_size": 4.0, "grain_size": 1.0, "pore_size": 1.0}
        for f in fields(self):
            value = getattr(self, f.name)
            ok = (
                isinstance(value, (tuple, list))
                and len(value) == 2
                and all(isinstance(v, (int, float, np.integer, np.floating)) for v in value)
                and all(math.isfinite(float(v)) for v in value)
            )
            if not ok or float(value[0]) > float(value[1]):
                raise InputError(
                    f"PhantomStyle.{f.name}: expected a (lo, hi) pair of finite numbers with "
                    f"lo <= hi, got {value!r}"
                )
            lo = minimum.get(f.name, 0.0)
            if float(value[0]) < lo:
                raise InputError(f"PhantomStyle.{f.name}: expected values >= {lo}, got {value!r}")
            object.__setattr__(self, f.name, (float(value[0]), float(value[1])))

    def harder(self) -> PhantomStyle:
        """A harder style, to test fine-tuning on scans unlike the training data.

        Exactly these fields change; all others are kept:

        - ``noise``: both bounds x 1.75;
        - ``blur``: both bounds + 0.5 voxel;
        - ``contrast``: the excess over the matrix shrinks to 60 %, ``c -> 1 + 0.6 (c - 1)``
          (the default 1.35-1.8 becomes 1.21-1.48);
        - ``rings`` and ``cupping``: both bounds x 1.5.

        Returns
        -------
        PhantomStyle
        """
        return replace(
            self,
            noise=(self.noise[0] * 1.75, self.noise[1] * 1.75),
            blur=(self.blur[0] + 0.5, self.blur[1] + 0.5),
            contrast=(1.0 + 0.6 * (self.contrast[0] - 1.0), 1.0 + 0.6 * (self.contrast[1] - 1.0)),
            rings=(self.rings[0] * 1.5, self.rings[1] * 1.5),
            cupping=(self.cupping[0] * 1.5, self.cupping[1] * 1.5),
        )


@dataclass(frozen=True)
class Phantom:
    """A synthetic scan and its truth.

    Attributes
    ----------
    image : ndarray of uint16, shape (Z, Y, X)
        The scan.
    labels : ndarray of uint8, shape (Z, Y, X)
        Class ids: 0 background (matrix, grains, ooids, air), 1 fossil (the whole body,
        walls and chamber interiors whatever fills them), 2 pore.
    instances : ndarray of uint32, shape (Z, Y, X)
        One id per fossil, ``1..N``, 0 elsewhere; ``labels == 1`` exactly where
        ``instances > 0``. Touching fossils keep distinct ids.
    spacing : (float, float, float)
        Voxel size (z, y, x) in µm (isotropic).
    class_names : tuple of str
        :data:`~napari_microfossil.classes.PHANTOM_CLASS_NAMES`.
    fossils : tuple of dict
        One per instance, in id order, with keys ``id``, ``kind`` (``"foraminifer"`` or
        ``"ostracod"``), ``fill`` (``"empty"``, ``"spar"``, ``"mud"`` or ``"mixed"``),
        ``centre`` (z, y, x in voxels), ``size_voxels`` (overall size across, in
        voxels) and ``voxels`` (labelled voxels in the volume).
    """

    image: np.ndarray
    labels: np.ndarray
    instances: np.ndarray
    spacing: tuple[float, float, float]
    class_names: tuple[str, ...]
    fossils: tuple[dict[str, Any], ...]


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Ellipsoid:
    """An ellipsoid in a fossil's frame, with the material inside it."""

    centre: np.ndarray  # (3,) voxels, relative to the fossil centre, world axes
    rot: np.ndarray  # (3, 3) columns: the ellipsoid's axes in world (z, y, x)
    axes: np.ndarray  # (3,) semi-axes in voxels
    fill: str
    bend: float = 0.0  # ostracod: bean-like bending of axis 1 along axis 0
    taper: float = 0.0  # ostracod: one end wider than the other


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
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


def _half_extent(rot: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Half size along each world axis of the box around a rotated ellipsoid."""
    return np.sqrt(((rot * axes[None, :]) ** 2).sum(axis=1))


def _box(
    centre: np.ndarray, half: np.ndarray, shape: tuple[int, ...], pad: float = 1.5
) -> _Box | None:
    """Integer box around ``centre +- half`` clipped to ``shape``; None if empty."""
    lo = [max(0, math.floor(c - h - pad)) for c, h in zip(centre, half, strict=True)]
    hi = [min(n, math.ceil(c + h + pad) + 1) for c, h, n in zip(centre, half, shape, strict=True)]
    if any(h <= lo_ for lo_, h in zip(lo, hi, strict=True)):
        return None
    return (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))


def _offsets(box: _Box, centre: np.ndarray) -> list[np.ndarray]:
    """Broadcastable voxel-centre offsets (dz, dy, dx) from ``centre`` over ``box``."""
    out = []
    for axis, (s, c) in enumerate(zip(box, centre, strict=True)):
        d = np.arange(s.start, s.stop, dtype=np.float32) - np.float32(c)
        shape = [1, 1, 1]
        shape[axis] = d.size
        out.append(d.reshape(shape))
    return out


def _signed_distance(
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


def _coverage(s: np.ndarray) -> np.ndarray:
    """Fraction of a voxel inside a surface at signed distance ``s`` (partial volume)."""
    return np.clip(0.5 - s, 0.0, 1.0)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)


# ---------------------------------------------------------------------------- fossils


def _foraminifer(rng: np.random.Generator, size: float, rot: np.ndarray) -> list[_Ellipsoid]:
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

    fill = _pick_fill(rng)
    per_chamber = [_pick_fill(rng, mixed=False) for _ in centres] if fill == "mixed" else None
    out = []
    for i, (cen, frame, ax) in enumerate(zip(centres, frames, axes, strict=True)):
        out.append(
            _Ellipsoid(
                centre=rot @ ((cen - mid) * scale),
                rot=rot @ frame,
                axes=np.maximum(ax * scale, 0.6),
                fill=per_chamber[i] if per_chamber else fill,
            )
        )
    return out


def _ostracod(rng: np.random.Generator, size: float, rot: np.ndarray) -> list[_Ellipsoid]:
    """The carapace of an ostracod: one elongated, slightly bent and tapered ellipsoid."""
    length = 0.5 * size
    axes = np.array(
        [length, length * rng.uniform(0.5, 0.7), length * rng.uniform(0.35, 0.55)], dtype=float
    )
    return [
        _Ellipsoid(
            centre=np.zeros(3),
            rot=rot,
            axes=axes,
            fill=_pick_fill(rng),
            bend=float(rng.uniform(0.0, 0.2)),
            taper=float(rng.uniform(-0.2, 0.2)),
        )
    ]


def _pick_fill(rng: np.random.Generator, *, mixed: bool = True) -> str:
    if mixed:
        return str(rng.choice(["empty", "spar", "mud", "mixed"], p=[0.32, 0.24, 0.24, 0.20]))
    return str(rng.choice(["empty", "spar", "mud"], p=[0.4, 0.3, 0.3]))


@dataclass(frozen=True)
class _Materials:
    """Attenuations of one volume, in matrix units."""

    wall: float
    spar: float
    mud: float
    empty: float


def _render_fossil(
    parts: list[_Ellipsoid],
    centre: np.ndarray,
    box: _Box,
    *,
    kind: str,
    wall_t: float,
    mat: _Materials,
    hinge: float,
    geopetal: tuple[float, str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one fossil inside ``box``.

    Returns the crisp body mask (voxel centres inside the outer surface), the partial
    coverage and the coverage-weighted attenuation. Chambers are added in growth order
    and never overwrite an earlier chamber, so the walls of earlier chambers stay as
    septa between them.
    """
    shape = tuple(s.stop - s.start for s in box)
    solid = np.zeros(shape, dtype=bool)
    cover = np.zeros(shape, dtype=np.float32)
    value = np.zeros(shape, dtype=np.float32)  # premultiplied by cover
    origin = np.array([s.start for s in box], dtype=float)
    for part in parts:
        c_world = centre + part.centre
        sub = _box(c_world - origin, _half_extent(part.rot, part.axes * 1.25), shape)
        if sub is None:
            continue
        d = _offsets(sub, c_world - origin)
        sdist, u = _signed_distance(d, part.rot, part.axes, bend=part.bend, taper=part.taper)
        c_out = _coverage(sdist)
        c_in = _coverage(sdist + np.float32(wall_t))
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
        free = 1.0 - cover[sub]
        value[sub] += v * free
        cover[sub] += c_out * free
        solid[sub] |= sdist <= 0
    return solid, cover, value


# ------------------------------------------------------------------------ the volume


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


def _blob(
    rng: np.random.Generator,
    centre: np.ndarray,
    radius: float,
    shape: tuple[int, int, int],
    *,
    elongated: float,
) -> tuple[_Box, np.ndarray] | None:
    """A randomly shaped irregular blob: its box and signed distance inside it."""
    rot = _random_rotation(rng)
    if rng.random() < elongated:
        axes = radius * np.array([1.0, rng.uniform(0.2, 0.55), rng.uniform(0.2, 0.55)])
    else:
        axes = radius * np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)])
    # thinner than two voxels, a blob would vanish under the PSF yet keep its label
    axes = np.maximum(axes, 1.0)
    bumps = []
    for _ in range(2):
        v = rng.standard_normal(3)
        v /= np.linalg.norm(v) or 1.0
        bumps.append((rng.uniform(0.05, 0.2), rng.uniform(2.0, 5.0), v, rng.uniform(0, 2 * np.pi)))
    box = _box(centre, _half_extent(rot, axes) * 1.45, shape)
    if box is None:
        return None
    sdist, _ = _signed_distance(_offsets(box, centre), rot, axes, bumps=bumps)
    return box, sdist


def _count(rng: np.random.Generator, density: float, voxels: float) -> int:
    return int(rng.poisson(max(density, 0.0) * voxels / _PER_VOXELS))


def validate_shape(shape: Any) -> tuple[int, int, int]:
    ok = isinstance(shape, (tuple, list)) and len(shape) == 3
    if ok:
        ok = all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape)
    if not ok or any(int(n) < 16 for n in shape):
        raise InputError(f"shape: expected 3 positive ints (Z, Y, X), each >= 16, got {shape!r}")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def make_phantom(
    shape: tuple[int, int, int] = (128, 256, 256),
    *,
    seed: int = 0,
    style: PhantomStyle | None = None,
) -> Phantom:
    """Make a synthetic MicroCT scan of a fossiliferous carbonate, with its truth.

    Parameters
    ----------
    shape : (int, int, int)
        Volume shape (Z, Y, X), each side at least 16 voxels. The core's axis is z.
    seed : int
        Seed of the only random generator used; the same seed, shape and style give
        byte-identical output.
    style : PhantomStyle, optional
        Ranges the look is drawn from; ``PhantomStyle()`` if omitted.

    Returns
    -------
    Phantom
        ``image`` (uint16), ``labels`` (uint8, classes background/fossil/pore),
        ``instances`` (uint32 fossil ids), ``spacing`` (µm), ``class_names`` and one
        description per fossil.

    Raises
    ------
    InputError
        If ``shape`` is not three ints >= 16, ``seed`` is not a non-negative int, or
        ``style`` is not a :class:`PhantomStyle`.

    Examples
    --------
    >>> ph = make_phantom((32, 64, 64), seed=3)
    >>> ph.image.dtype, ph.labels.shape
    (dtype('uint16'), (32, 64, 64))
    """
    shape = validate_shape(shape)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed: expected a non-negative int, got {seed!r}")
    if style is None:
        style = PhantomStyle()
    elif not isinstance(style, PhantomStyle):
        raise InputError(f"style: expected a PhantomStyle or None, got {type(style).__name__}")
    rng = np.random.default_rng(int(seed))
    nz, ny, nx = shape
    nvox = float(nz * ny * nx)

    def draw(r: _Floats) -> float:
        return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])

    # --- per-volume look
    spacing = round(float(rng.uniform(2.0, 6.0)), 2)
    noise = draw(style.noise)
    blur = draw(style.blur)
    contrast = draw(style.contrast)
    rings = draw(style.rings)
    cupping = draw(style.cupping)
    texture = draw(style.texture)
    air = float(rng.uniform(0.0, 0.15))
    pore_val = float(rng.uniform(0.05, 0.3))
    mat = _Materials(
        wall=contrast,
        spar=contrast * float(rng.uniform(0.75, 0.92)),
        mud=float(rng.uniform(0.9, 1.05)),
        empty=pore_val,
    )

    # --- field of view: the core plug (axis along z) or a crop of its interior
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
    core_fraction = float(in_core.mean())

    def random_centre(margin: float = 0.0) -> np.ndarray:
        z = rng.uniform(0, nz - 1)
        for _ in range(20):
            y, x = rng.uniform(0, ny - 1), rng.uniform(0, nx - 1)
            if math.hypot(y - cy, x - cx) <= max(radius - margin, 0.3 * radius):
                break
        return np.array([z, y, x])

    labels = np.zeros(shape, dtype=np.uint8)

    # --- matrix with grains, ooids and pores
    bg = np.full(shape, _MATRIX, dtype=np.float32)
    bg += np.float32(texture) * (
        0.7 * _smooth_noise(rng, shape, rng.uniform(16, 32))
        + 0.5 * _smooth_noise(rng, shape, rng.uniform(4, 8))
    )
    core_vox = nvox * core_fraction
    n_grains = _count(rng, draw(style.grain_density), core_vox)
    for _ in range(n_grains):
        radius_g = _log_uniform(rng, *style.grain_size)
        blob = _blob(rng, random_centre(), radius_g, shape, elongated=0.3)
        quartz = rng.random() < 0.25
        val = rng.uniform(0.8, 0.93) if quartz else rng.uniform(1.06, 1.3)
        if blob is None:
            continue
        box, sdist = blob
        c = _coverage(sdist)
        bg[box] += (np.float32(val) - bg[box]) * c

    n_ooids = _count(rng, draw(style.ooid_density), core_vox)
    for _ in range(n_ooids):
        centre = random_centre()
        r = rng.uniform(3.0, 8.0)
        rot = _random_rotation(rng)
        axes = r * np.array([1.0, rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.0)])
        box_o = _box(centre, _half_extent(rot, axes), shape)
        if box_o is None:
            continue
        sdist, _ = _signed_distance(_offsets(box_o, centre), rot, axes)
        rim = rng.uniform(1.0, 2.2)
        core = rng.uniform(1.05, 1.22)
        # concentric laminae around a nucleus, bright cortex
        lam = np.float32(core) * (
            1.0 + 0.06 * np.cos(np.float32(2 * np.pi / rng.uniform(1.8, 3.0)) * sdist)
        )
        c_out = _coverage(sdist)
        c_in = _coverage(sdist + np.float32(rim))
        v = np.float32(contrast * rng.uniform(0.85, 1.0)) * (c_out - c_in) + lam * c_in
        bg[box_o] = bg[box_o] * (1.0 - c_out) + v

    n_pores = _count(rng, draw(style.pore_density), core_vox)
    for _ in range(n_pores):
        radius_p = _log_uniform(rng, *style.pore_size)
        blob = _blob(rng, random_centre(), radius_p, shape, elongated=0.4)
        val = pore_val * rng.uniform(0.8, 1.2)
        if blob is None:
            continue
        box, sdist = blob
        c = _coverage(sdist)
        bg[box] += (np.float32(val) - bg[box]) * c
        lab = labels[box]
        lab[sdist <= 0] = 2

    # --- fossils, drawn last: they cover whatever is under them
    instances = np.zeros(shape, dtype=np.uint32)
    f_cover = np.zeros(shape, dtype=np.float32)
    f_value = np.zeros(shape, dtype=np.float32)
    size_hi = min(style.fossil_size[1], 0.9 * max(ny, nx))
    size_lo = min(style.fossil_size[0], size_hi)
    target = min(draw(style.fossil_fraction), _MAX_FOSSIL_FRACTION) * core_vox
    placed: list[dict[str, Any]] = []
    fossil_vox = 0
    misses = 0
    attempts = 0
    while (not placed or fossil_vox < target) and misses < 50 and attempts < 5000:
        attempts += 1
        kind = "foraminifer" if rng.random() < 0.7 else "ostracod"
        size = _log_uniform(rng, size_lo, size_hi)
        rot = _random_rotation(rng)
        if placed and rng.random() < 0.15:
            # a neighbour touching an earlier fossil, to exercise instance splitting
            other = placed[int(rng.integers(len(placed)))]
            v = rng.standard_normal(3)
            v /= np.linalg.norm(v) or 1.0
            gap = 0.5 * (other["size_voxels"] + size) * rng.uniform(0.55, 0.8)
            centre = np.asarray(other["centre"]) + v * gap
        else:
            centre = random_centre(margin=0.3 * size)
        if kind == "foraminifer":
            parts = _foraminifer(rng, size, rot)
            wall_t = min(draw(style.wall_thickness), 0.3 * size)
        else:
            parts = _ostracod(rng, size, rot)
            wall_t = min(
                draw((style.wall_thickness[0], min(style.wall_thickness[1], 2.5))), 0.2 * size
            )
        fill = parts[0].fill if kind == "ostracod" else _fossil_fill(parts)
        geopetal = (float(rng.uniform(-0.5, 0.4)), str(rng.choice(["spar", "empty"])))
        hinge = float(rng.uniform(0.0, 0.35))
        half_ext = np.max(
            [np.abs(p.centre) + _half_extent(p.rot, p.axes * 1.3) for p in parts], axis=0
        )
        fbox = _box(centre, half_ext, shape)
        if fbox is None or (fossil_vox > 0 and _crowded(instances[fbox], centre, fbox)):
            misses += 1
            continue
        solid, cover, value = _render_fossil(
            parts, centre, fbox, kind=kind, wall_t=wall_t, mat=mat, hinge=hinge, geopetal=geopetal
        )
        inst = instances[fbox]
        n_solid = int(solid.sum())
        clash = int(np.count_nonzero(solid & (inst > 0)))
        if n_solid == 0 or clash > 0.04 * n_solid:
            misses += 1
            continue
        fid = len(placed) + 1
        inst[solid & (inst == 0)] = fid
        free = 1.0 - f_cover[fbox]
        f_value[fbox] += value * free
        f_cover[fbox] += cover * free
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

    # --- clip everything to the core and compose the attenuation map
    instances[:, ~in_core] = 0
    labels[instances > 0] = 1
    labels[:, ~in_core] = 0
    dens = bg
    dens *= 1.0 - f_cover
    dens += f_value
    del f_cover, f_value
    dens += rng.standard_normal(shape, dtype=np.float32) * np.float32(texture * 0.6)
    # beam hardening: the centre of the core looks darker than its rim
    dens *= 1.0 - np.float32(cupping) * np.clip(1.0 - (r2d / radius) ** 2, 0.0, 1.0)
    dens *= inside2d
    dens += np.float32(air) * (1.0 - inside2d)
    # rings: concentric around the rotation axis, the same in every slice
    ring = np.zeros((ny, nx), dtype=np.float32)
    r_max = float(r2d.max())
    for _ in range(int(rng.integers(4, 26))):
        amp = rings * rng.uniform(-1.0, 1.0)
        r0 = rng.uniform(0.0, r_max)
        w = rng.uniform(0.4, 1.3)
        ring += np.float32(amp) * np.exp(-((r2d - np.float32(r0)) ** 2) / np.float32(2 * w * w))
    dens += ring
    # slow drift of the intensity along z (source and detector warm up)
    zz = np.linspace(-1.0, 1.0, nz, dtype=np.float32)
    drift = (
        1.0
        + rng.uniform(-0.04, 0.04) * zz
        + rng.uniform(0, 0.02)
        * np.sin(np.float32(rng.uniform(1, 4)) * zz + np.float32(rng.uniform(0, 2 * np.pi)))
    )
    dens *= drift.astype(np.float32)[:, None, None]
    dens = ndimage.gaussian_filter(dens, blur, mode="nearest", truncate=3.0)
    poisson = rng.uniform(0.2, 0.6)
    sigma = np.float32(noise) * np.maximum((1.0 - poisson) + poisson * dens, 0.2)
    dens += sigma * rng.standard_normal(shape, dtype=np.float32)

    # --- a random linear map to uint16, sometimes using only a few thousand levels
    span = _log_uniform(rng, 1500.0, 60000.0)
    offset = rng.uniform(0.0, 65535.0 - span)
    lo = air - rng.uniform(0.1, 0.5)
    hi = contrast * (1.0 + rng.uniform(0.15, 0.8))
    gain = np.float32(span / (hi - lo))
    dens -= np.float32(lo)
    dens *= gain
    dens += np.float32(offset)
    image = np.clip(np.rint(dens), 0, 65535).astype(np.uint16)
    del dens

    instances, fossils = _relabel(instances, placed)
    logger.debug(
        "phantom seed=%s shape=%s: %d fossils (%.1f %%), pores %.1f %%, fov=%s, noise=%.3f, "
        "blur=%.2f, contrast=%.2f",
        seed,
        shape,
        len(fossils),
        100.0 * np.count_nonzero(labels == 1) / nvox,
        100.0 * np.count_nonzero(labels == 2) / nvox,
        fov,
        noise,
        blur,
        contrast,
    )
    return Phantom(
        image=image,
        labels=labels,
        instances=instances,
        spacing=(spacing, spacing, spacing),
        class_names=tuple(PHANTOM_CLASS_NAMES),
        fossils=fossils,
    )


def _crowded(inst: np.ndarray, centre: np.ndarray, box: _Box) -> bool:
    """Cheap test before drawing a fossil: is its centre already inside another one?"""
    c = tuple(
        min(max(round(float(v)) - s.start, 0), s.stop - s.start - 1)
        for v, s in zip(centre, box, strict=True)
    )
    return bool(inst[c] > 0)


def _fossil_fill(parts: list[_Ellipsoid]) -> str:
    fills = {p.fill for p in parts}
    return fills.pop() if len(fills) == 1 else "mixed"


def _relabel(
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
