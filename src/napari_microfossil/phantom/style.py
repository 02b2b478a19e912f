"""The look of a phantom: the ranges it is drawn from, and one volume's draw.

:class:`PhantomStyle` holds a ``(lo, hi)`` range per property; :meth:`Look.draw` draws
one volume's values (scanner settings and material attenuations) from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from ..errors import InputError

Floats = tuple[float, float]


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

    noise: Floats = (0.03, 0.12)
    blur: Floats = (0.5, 1.3)
    contrast: Floats = (1.35, 1.8)
    rings: Floats = (0.0, 0.06)
    cupping: Floats = (0.0, 0.25)
    fossil_fraction: Floats = (0.03, 0.15)
    fossil_size: Floats = (15.0, 90.0)
    wall_thickness: Floats = (1.5, 4.0)
    grain_density: Floats = (150.0, 700.0)
    grain_size: Floats = (1.5, 8.0)
    ooid_density: Floats = (0.0, 8.0)
    pore_density: Floats = (20.0, 120.0)
    pore_size: Floats = (2.0, 11.0)
    texture: Floats = (0.02, 0.07)

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


def uniform(rng: np.random.Generator, r: Floats) -> float:
    """One value drawn uniformly from the range ``r = (lo, hi)`` (``lo`` if empty)."""
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One value drawn log-uniformly from ``[lo, hi]`` (``lo`` if empty)."""
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)


@dataclass(frozen=True)
class Materials:
    """Attenuations of one volume, in matrix units.

    The field names are also the names of the fills a chamber can have (``wall``
    aside), so a fill is looked up with ``getattr(materials, fill)``.
    """

    wall: float
    spar: float
    mud: float
    empty: float


@dataclass(frozen=True)
class Look:
    """The values one volume draws from a :class:`PhantomStyle`.

    Attributes
    ----------
    spacing : float
        Voxel size in µm (isotropic).
    noise, blur, rings, cupping, texture : float
        As in :class:`PhantomStyle` (``blur`` in voxels).
    air : float
        Attenuation of the air around the core, in matrix units.
    materials : Materials
        ``wall`` is the drawn ``contrast``; ``empty`` is the attenuation of pores and
        empty chambers.
    """

    spacing: float
    noise: float
    blur: float
    rings: float
    cupping: float
    texture: float
    air: float
    materials: Materials

    @property
    def contrast(self) -> float:
        """Attenuation of fossil walls, in matrix units."""
        return self.materials.wall

    @classmethod
    def draw(cls, rng: np.random.Generator, style: PhantomStyle) -> Look:
        """Draw one volume's look from ``style`` (the first draws of a phantom's ``rng``)."""
        spacing = round(float(rng.uniform(2.0, 6.0)), 2)
        noise = uniform(rng, style.noise)
        blur = uniform(rng, style.blur)
        contrast = uniform(rng, style.contrast)
        rings = uniform(rng, style.rings)
        cupping = uniform(rng, style.cupping)
        texture = uniform(rng, style.texture)
        air = float(rng.uniform(0.0, 0.15))
        pore_val = float(rng.uniform(0.05, 0.3))
        materials = Materials(
            wall=contrast,
            spar=contrast * float(rng.uniform(0.75, 0.92)),
            mud=float(rng.uniform(0.9, 1.05)),
            empty=pore_val,
        )
        return cls(
            spacing=spacing,
            noise=noise,
            blur=blur,
            rings=rings,
            cupping=cupping,
            texture=texture,
            air=air,
            materials=materials,
        )
