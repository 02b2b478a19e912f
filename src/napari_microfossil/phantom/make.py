"""Making a phantom: :func:`make_phantom` draws everything from one seed, in order.

The order of the draws is part of the contract (the same seed gives the same arrays,
which the bundled default model and the documentation's numbers depend on): the look
(:mod:`.style`), the field of view (:mod:`.geometry`), the rock (:mod:`.rock`), the
fossils (:mod:`.fossils`), then the scanner (:mod:`.scanner`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..classes import PHANTOM_CLASS_NAMES
from ..errors import InputError
from .fossils import place_fossils, relabel
from .geometry import Core
from .rock import PORE, draw_rock
from .scanner import scan
from .style import Look, PhantomStyle

logger = logging.getLogger(__name__)

#: Class id of fossils in the labels.
_FOSSIL = PHANTOM_CLASS_NAMES.index("fossil")


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


def validate_shape(shape: Any) -> tuple[int, int, int]:
    """Check a phantom's ``shape``: three ints (Z, Y, X), each at least 16.

    Returns
    -------
    (int, int, int)

    Raises
    ------
    InputError
        Naming ``shape`` and what came.
    """
    ok = isinstance(shape, (tuple, list)) and len(shape) == 3
    if ok:
        ok = all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape)
    if not ok or any(int(n) < 16 for n in shape):
        raise InputError(f"shape: expected 3 positive ints (Z, Y, X), each >= 16, got {shape!r}")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


#: Peak bytes per voxel while :func:`make_phantom` runs (measured: about 25 for a
#: 64x128x128 phantom -- float32 fields, noise and the three outputs -- rounded up).
PEAK_BYTES_PER_VOXEL = 32


def phantom_peak_bytes(shape: tuple[int, int, int]) -> int:
    """Memory (bytes) :func:`make_phantom` needs at its peak for a `shape` phantom.

    An estimate from above, so that a request too large for the machine can be
    refused before any work.
    """
    z, y, x = validate_shape(shape)
    return PEAK_BYTES_PER_VOXEL * z * y * x


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
    nvox = float(shape[0] * shape[1] * shape[2])
    look = Look.draw(rng, style)
    core = Core.draw(rng, shape)
    bg, labels = draw_rock(rng, core, style, look)
    # fossils, drawn last: they cover whatever is under them
    instances, f_cover, f_value, placed = place_fossils(rng, core, style, look.materials)

    # --- clip everything to the core and compose the attenuation map
    in_core = core.in_core
    instances[:, ~in_core] = 0
    labels[instances > 0] = _FOSSIL
    labels[:, ~in_core] = 0
    dens = bg
    dens *= 1.0 - f_cover
    dens += f_value
    del f_cover, f_value
    dens += rng.standard_normal(shape, dtype=np.float32) * np.float32(look.texture * 0.6)
    image = scan(rng, dens, core=core, look=look)
    del dens

    instances, fossils = relabel(instances, placed)
    logger.debug(
        "phantom seed=%s shape=%s: %d fossils (%.1f %%), pores %.1f %%, fov=%s, noise=%.3f, "
        "blur=%.2f, contrast=%.2f",
        seed,
        shape,
        len(fossils),
        100.0 * np.count_nonzero(labels == _FOSSIL) / nvox,
        100.0 * np.count_nonzero(labels == PORE) / nvox,
        core.fov,
        look.noise,
        look.blur,
        look.contrast,
    )
    return Phantom(
        image=image,
        labels=labels,
        instances=instances,
        spacing=(look.spacing, look.spacing, look.spacing),
        class_names=tuple(PHANTOM_CLASS_NAMES),
        fossils=fossils,
    )
