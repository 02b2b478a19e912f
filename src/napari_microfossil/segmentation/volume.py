"""Segment a whole volume in memory, along one axis or several fused.

:func:`iter_segment` is the slab engine of :mod:`.stream` run as one slab covering the
volume, with its result returned as a :class:`Segmentation` (for the napari panels and
scripts that hold the volume's labels in memory anyway). Memory stays bounded beyond
the labels themselves:

* one axis: planes are read one at a time and turned into ``uint8`` labels (and
  ``uint8`` confidence) at once; no float probabilities of the whole volume are held.
* several axes (``"zyx"``): each pass adds its class probabilities, quantised to
  ``uint8`` (0..255), into a ``uint16`` accumulator of shape ``(C, Z, Y, X)`` --
  **2 × C bytes per voxel** -- held in RAM, or in a ``np.memmap`` in a temporary folder
  (under ``accumulator_dir``) when it would exceed ``max_ram_bytes``. The folder is
  removed when the generator finishes, fails or is closed (cancel).

For volumes larger than RAM use :func:`~napari_microfossil.segmentation.iter_slabs`.
torch is imported only to wrap a :class:`~napari_microfossil.model.LoadedModel`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import Progress, drain
from ..model import LoadedModel, ModelSpec, Predictor
from .options import SegmentSettings, check_axes, check_settings, flip_averaged
from .stream import Slab, run_ranges

__all__ = ["Segmentation", "check_axes", "flip_averaged", "iter_segment", "segment"]


@dataclass
class Segmentation:
    """Result of :func:`segment`.

    Attributes
    ----------
    labels : ndarray, shape (Z, Y, X), uint8
        Class id of each voxel (argmax of the fused probabilities); 0 = background.
    confidence : ndarray, shape (Z, Y, X), uint8, or None
        Fused probability of the chosen class, in percent (0..100), if asked for.
    class_names : tuple of str
        Name of each class id.
    axes : str
        Axes the volume was sliced along, e.g. ``"z"`` or ``"zyx"``.
    """

    labels: np.ndarray
    confidence: np.ndarray | None
    class_names: tuple[str, ...]
    axes: str


def iter_segment(
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
    spec: ModelSpec | None = None,
    class_names: Sequence[str] | None = None,
) -> Generator[Progress, None, Segmentation]:
    """Segment a volume slice by slice; a generator yielding progress.

    Parameters
    ----------
    volume : array-like, shape (Z, Y, X)
        numpy array, memmap, zarr array or lazy slice stack. Along ``"z"`` it is read
        one plane at a time (``volume[z]``), never whole; along ``"y"``/``"x"`` planes
        are ``volume[:, y, :]``/``volume[:, :, x]`` (slow on readers that store z-slices).
    model : LoadedModel or callable
        A loaded model (its network is wrapped with
        :func:`~napari_microfossil.model.make_predictor` on ``device``), or a predictor
        ``f((B, 1, H, W) float32) -> (B, C, H, W) probabilities``; a predictor needs
        ``spec`` or ``class_names`` for the classes (and uses ``spec``'s normalisation
        and tile size, or the defaults).
    axes : str
        ``"z"`` (default), ``"y"``, ``"x"`` or a combination like ``"zyx"``: the volume
        is sliced along each and the class probabilities are averaged.
    tile : int, optional
        Tile edge in pixels (multiple of 32); default the model's ``tile_size``.
    overlap : float
        Fraction of a tile shared with its neighbour, in ``[0, 0.9)``.
    batch_size : int
        Tiles per network call (tiles of several slices share a batch).
    device : str or torch.device, optional
        ``None``/``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``; for a ``LoadedModel`` only.
    amp : bool, optional
        Mixed precision; default on for CUDA. For a ``LoadedModel`` only.
    confidence : bool
        Also return the per-voxel confidence (fused max probability, percent).
    flips : bool
        Test-time augmentation: average each tile's prediction over its four flips
        (:func:`flip_averaged`); four times slower, usually a little more accurate.
    smooth : float, optional
        Sigma in voxels of the 3D Gaussian applied to the volume first
        (:func:`~napari_microfossil.normalise.iter_smooth`); default the model's own
        (``spec.normalisation.smooth``, 0 for the default model). Costs a copy of the
        volume in memory.
    intensity_range : (float, float), optional
        Raw intensities mapped to -1 and +1; estimated once from the (smoothed) volume
        with the model's normalisation percentiles if omitted.
    accumulator_dir : str or Path, optional
        Where the multi-axis accumulator file goes when it does not fit
        ``max_ram_bytes`` (default: the system temp folder). Removed afterwards, also
        on error or cancel.
    max_ram_bytes : int
        RAM budget of the multi-axis accumulator (2 × C bytes per voxel).
    spec, class_names
        Classes and normalisation for a predictor callable (see ``model``).

    Yields
    ------
    Progress
        ``stage="segment z"`` (``y``, ``x``) with ``done``/``total`` in planes, after
        every predictor call; ``stage="fuse"`` (z-planes) for several axes; first
        ``stage="smooth"`` (z-planes) when smoothing. Closing the generator stops
        before the next predictor call.

    Returns
    -------
    Segmentation

    Raises
    ------
    InputError
        For a volume that is not 3D and any invalid option.
    """
    # Options are checked now, on the caller's thread; the volume is first read, and
    # the network first moved to its device, when iteration starts.
    shape, settings = check_settings(
        volume,
        model,
        axes=axes,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        amp=amp,
        confidence=confidence,
        flips=flips,
        smooth=smooth,
        intensity_range=intensity_range,
        accumulator_dir=accumulator_dir,
        max_ram_bytes=max_ram_bytes,
        spec=spec,
        class_names=class_names,
    )
    return _collect(volume, model, shape, settings)


def _collect(
    volume: Any,
    model: LoadedModel | Predictor,
    shape: tuple[int, int, int],
    settings: SegmentSettings,
) -> Generator[Progress, None, Segmentation]:
    """The slab engine run as one slab covering the volume."""
    result: Slab | None = None
    for item in run_ranges(volume, model, shape, settings, [(0, shape[0])]):
        if isinstance(item, Slab):
            result = item
        else:
            yield item
    assert result is not None
    return Segmentation(
        labels=result.labels,
        confidence=result.confidence,
        class_names=settings.spec.class_names,
        axes=settings.axes,
    )


def segment(volume: Any, model: LoadedModel | Predictor, **kwargs: Any) -> Segmentation:
    """Segment a volume; :func:`iter_segment` run to the end (same parameters)."""
    return drain(iter_segment(volume, model, **kwargs))
