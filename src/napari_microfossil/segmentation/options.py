"""The options of a segmentation, checked once for every entry point.

:func:`check_settings` turns the keyword arguments of
:func:`~napari_microfossil.segmentation.iter_segment` and
:func:`~napari_microfossil.segmentation.iter_slabs` into one frozen
:class:`SegmentSettings`, raising an :class:`~napari_microfossil.errors.InputError`
that names the first bad option -- on the caller's thread, before any plane is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import normalise
from ..axes import AXES
from ..errors import InputError
from ..model import LoadedModel, ModelSpec, Predictor
from .tiling import check_tiling

#: Planes read on each side of a z-slab for the y- and x-passes of a slab-wise
#: multi-axis segmentation (:func:`~napari_microfossil.segmentation.iter_slabs`).
DEFAULT_HALO = 32


@dataclass(frozen=True)
class SegmentSettings:
    """Checked, resolved options of one segmentation (see ``iter_segment``).

    ``smooth`` is the sigma in voxels (the model's own when none was given), ``tile``
    the tile edge (the model's when none was given), ``halo`` planes on each side of a
    slab for the y/x passes.
    """

    spec: ModelSpec
    axes: str
    tile: int
    overlap: float
    batch_size: int
    flips: bool
    smooth: float
    intensity_range: tuple[float, float] | None
    confidence: bool
    halo: int
    max_ram_bytes: int
    accumulator_dir: str | Path | None
    device: Any
    amp: bool | None


def flip_averaged(predictor: Predictor) -> Predictor:
    """Test-time augmentation: average ``predictor`` over the four flips of each tile.

    Each batch is predicted as it is, flipped left-right, flipped up-down and both
    (a half turn), and every prediction is flipped back before averaging. The result is
    symmetric under those flips and usually a little more accurate, at four times the
    cost. A flip-equivariant predictor (an identity, say) gives back its own output.
    """

    def predict(batch: np.ndarray) -> np.ndarray:
        out = np.array(predictor(batch), dtype=np.float32)
        for axes in ((-1,), (-2,), (-2, -1)):
            flipped = np.ascontiguousarray(np.flip(batch, axis=axes))
            out += np.flip(np.asarray(predictor(flipped), dtype=np.float32), axis=axes)
        out *= np.float32(0.25)
        return out

    return predict


def check_axes(axes: Any) -> str:
    """``axes`` normalised (lower case, stripped), e.g. ``"zyx"``.

    Raises
    ------
    InputError
        Unless it is a non-empty combination of ``z``, ``y``, ``x`` without repeats.
    """
    ok = isinstance(axes, str) and len(axes) > 0
    norm = axes.strip().lower() if isinstance(axes, str) else ""
    ok = ok and len(norm) > 0 and set(norm) <= set(AXES) and len(set(norm)) == len(norm)
    if not ok:
        raise InputError(
            "axes: expected 'z', 'y', 'x' or a combination of them without repeats "
            f"such as 'zyx', got {axes!r}"
        )
    return norm


def resolve_spec(
    model: LoadedModel | Predictor,
    *,
    spec: ModelSpec | None,
    class_names: Sequence[str] | None,
) -> ModelSpec:
    """The classes and normalisation of `model` (a plain predictor needs `spec` or
    `class_names`)."""
    if isinstance(model, LoadedModel):
        return spec or model.spec
    if not callable(model):
        raise InputError(
            f"model: expected a LoadedModel (see model.load_model) or a predictor callable, "
            f"got {type(model).__name__}"
        )
    if spec is not None:
        return spec
    if class_names is None:
        raise InputError(
            "model: a plain predictor needs spec=ModelSpec(...) or class_names=(...) "
            "to know its classes"
        )
    return ModelSpec(class_names=tuple(class_names))


def _count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def check_settings(
    volume: Any,
    model: LoadedModel | Predictor,
    *,
    axes: str = "z",
    tile: int | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    device: Any = None,
    amp: bool | None = None,
    confidence: bool = False,
    flips: bool = False,
    smooth: float | None = None,
    intensity_range: tuple[float, float] | None = None,
    accumulator_dir: str | Path | None = None,
    max_ram_bytes: int = 2**30,
    halo: int = DEFAULT_HALO,
    spec: ModelSpec | None = None,
    class_names: Sequence[str] | None = None,
) -> tuple[tuple[int, int, int], SegmentSettings]:
    """The volume's ``(Z, Y, X)`` and the checked settings; see ``iter_segment``.

    Raises
    ------
    InputError
        For a volume that is not 3D and any invalid option, naming it.
    """
    axes = check_axes(axes)
    shape = tuple(int(s) for s in getattr(volume, "shape", ()))
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"volume: expected a non-empty 3D array (Z, Y, X), got shape {shape}")
    max_ram = _count(max_ram_bytes, "max_ram_bytes", 0)
    halo = _count(halo, "halo", 0)
    spec = resolve_spec(model, spec=spec, class_names=class_names)
    tile = spec.tile_size if tile is None else tile
    check_tiling(tile, overlap, batch_size)
    if spec.num_classes > 256:
        raise InputError(f"model: at most 256 classes fit uint8 labels, got {spec.num_classes}")
    rng: tuple[float, float] | None = None
    if intensity_range is not None:
        lo, hi = (float(v) for v in intensity_range)
        if not hi > lo:
            raise InputError(
                f"intensity_range: expected (lo, hi) with hi > lo, got {intensity_range!r}"
            )
        rng = (lo, hi)
    sigma = spec.normalisation.smooth if smooth is None else normalise.check_smooth(smooth)
    settings = SegmentSettings(
        spec=spec,
        axes=axes,
        tile=int(tile),
        overlap=float(overlap),
        batch_size=int(batch_size),
        flips=bool(flips),
        smooth=float(sigma),
        intensity_range=rng,
        confidence=bool(confidence),
        halo=halo,
        max_ram_bytes=max_ram,
        accumulator_dir=accumulator_dir,
        device=device,
        amp=amp,
    )
    return (shape[0], shape[1], shape[2]), settings
