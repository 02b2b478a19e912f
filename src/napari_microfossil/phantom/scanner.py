"""A crude model of a lab MicroCT scanner, applied to an attenuation map.

:func:`scan` turns the phantom's attenuation (matrix units) into the ``uint16`` image a
scanner would give: beam-hardening cupping, air around the core, ring artefacts, a
slow drift along z, the point-spread function, intensity-dependent noise and a random
linear mapping to ``uint16``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .geometry import Core
from .style import Look, log_uniform


def scan(rng: np.random.Generator, dens: np.ndarray, *, core: Core, look: Look) -> np.ndarray:
    """Scan the attenuation map ``dens``.

    Parameters
    ----------
    rng : numpy.random.Generator
        The phantom's generator.
    dens : ndarray of float32, shape (Z, Y, X)
        Attenuation in matrix units; overwritten.
    core : Core
        The plug: cupping, rings and the air around it follow its axis.
    look : Look
        Noise, blur, rings, cupping, air and contrast of this volume.

    Returns
    -------
    ndarray of uint16, shape (Z, Y, X)
    """
    nz, ny, nx = dens.shape
    r2d, inside2d = core.r2d, core.inside2d
    # beam hardening: the centre of the core looks darker than its rim
    dens *= 1.0 - np.float32(look.cupping) * np.clip(1.0 - (r2d / core.radius) ** 2, 0.0, 1.0)
    dens *= inside2d
    dens += np.float32(look.air) * (1.0 - inside2d)
    # rings: concentric around the rotation axis, the same in every slice
    ring = np.zeros((ny, nx), dtype=np.float32)
    r_max = float(r2d.max())
    for _ in range(int(rng.integers(4, 26))):
        amp = look.rings * rng.uniform(-1.0, 1.0)
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
    dens = ndimage.gaussian_filter(dens, look.blur, mode="nearest", truncate=3.0)
    poisson = rng.uniform(0.2, 0.6)
    sigma = np.float32(look.noise) * np.maximum((1.0 - poisson) + poisson * dens, 0.2)
    dens += sigma * rng.standard_normal(dens.shape, dtype=np.float32)
    return _to_uint16(rng, dens, look=look)


def _to_uint16(rng: np.random.Generator, dens: np.ndarray, *, look: Look) -> np.ndarray:
    """A random linear map to ``uint16``, sometimes using only a few thousand levels.

    ``dens`` is overwritten.
    """
    span = log_uniform(rng, 1500.0, 60000.0)
    offset = rng.uniform(0.0, 65535.0 - span)
    lo = look.air - rng.uniform(0.1, 0.5)
    hi = look.contrast * (1.0 + rng.uniform(0.15, 0.8))
    gain = np.float32(span / (hi - lo))
    dens -= np.float32(lo)
    dens *= gain
    dens += np.float32(offset)
    return np.clip(np.rint(dens), 0, 65535).astype(np.uint16)
