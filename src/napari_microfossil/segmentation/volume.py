"""Segment a volume slice by slice with a 2D network, along one axis or several fused.

Memory stays bounded whatever the volume size:

* one axis: planes are read one at a time and turned into ``uint8`` labels (and
  ``uint8`` confidence) at once; no float probabilities of the whole volume are held.
* several axes (``"zyx"``): each pass adds its class probabilities, quantised to
  ``uint8`` (0..255), into a ``uint16`` accumulator of shape ``(C, Z, Y, X)`` --
  **2 × C bytes per voxel** -- held in RAM, or in a ``np.memmap`` in a temporary folder
  (under ``accumulator_dir``) when it would exceed ``max_ram_bytes``. The folder is
  removed when the generator finishes, fails or is closed (cancel).

torch is imported only to wrap a :class:`~napari_microfossil.model.LoadedModel`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import normalise
from .._progress import Progress, drain
from ..axes import AXES, plane_index, take_plane
from ..errors import InputError
from ..model import LoadedModel, ModelSpec, Predictor
from .predict import predict_events
from .tiling import check_tiling

log = logging.getLogger(__name__)

#: Probabilities are quantised to 0..QUANT in multi-axis accumulation.
_QUANT = 255


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


def _resolve_spec(
    model: LoadedModel | Predictor,
    *,
    spec: ModelSpec | None,
    class_names: Sequence[str] | None,
) -> ModelSpec:
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
    axes = check_axes(axes)
    shape = tuple(int(s) for s in getattr(volume, "shape", ()))
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"volume: expected a non-empty 3D array (Z, Y, X), got shape {shape}")
    if (
        isinstance(max_ram_bytes, bool)
        or not isinstance(max_ram_bytes, (int, np.integer))
        or max_ram_bytes < 0
    ):
        raise InputError(f"max_ram_bytes: expected an integer >= 0, got {max_ram_bytes!r}")
    spec = _resolve_spec(model, spec=spec, class_names=class_names)
    tile = spec.tile_size if tile is None else tile
    check_tiling(tile, overlap, batch_size)
    if spec.num_classes > 256:
        raise InputError(f"model: at most 256 classes fit uint8 labels, got {spec.num_classes}")
    if intensity_range is not None:
        lo, hi = (float(v) for v in intensity_range)
        if not hi > lo:
            raise InputError(
                f"intensity_range: expected (lo, hi) with hi > lo, got {intensity_range!r}"
            )
        intensity_range = (lo, hi)
    sigma = spec.normalisation.smooth if smooth is None else normalise.check_smooth(smooth)
    return _segment(
        volume,
        model,
        spec,
        shape=(shape[0], shape[1], shape[2]),
        axes=axes,
        tile=int(tile),
        overlap=float(overlap),
        batch_size=int(batch_size),
        device=device,
        amp=amp,
        confidence=confidence,
        flips=bool(flips),
        smooth=sigma,
        intensity_range=intensity_range,
        accumulator_dir=accumulator_dir,
        max_ram_bytes=int(max_ram_bytes),
    )


def _segment(
    volume: Any,
    model: LoadedModel | Predictor,
    spec: ModelSpec,
    *,
    shape: tuple[int, int, int],
    axes: str,
    tile: int,
    overlap: float,
    batch_size: int,
    device: Any,
    amp: bool | None,
    confidence: bool,
    flips: bool,
    smooth: float,
    intensity_range: tuple[float, float] | None,
    accumulator_dir: str | Path | None,
    max_ram_bytes: int,
) -> Generator[Progress, None, Segmentation]:
    if smooth > 0:
        volume = yield from normalise.iter_smooth(volume, smooth)
    if isinstance(model, LoadedModel):
        from ..model import make_predictor

        predictor = make_predictor(model.network, device, amp=amp)
    else:
        predictor = model
    if flips:
        predictor = flip_averaged(predictor)
    norm = spec.normalisation
    if intensity_range is None:
        lo, hi = normalise.intensity_range(volume, norm)
    else:
        lo, hi = intensity_range
    num_classes = spec.num_classes
    z, y, x = shape
    labels = np.zeros(shape, dtype=np.uint8)
    conf = np.zeros(shape, dtype=np.uint8) if confidence else None

    def planes(axis: str) -> Iterator[np.ndarray]:
        for i in range(shape[AXES.index(axis)]):
            yield normalise.apply_normalisation(take_plane(volume, axis, i), lo, hi, norm)

    def run(axis: str) -> Iterator[Progress | np.ndarray]:
        """Probabilities of each plane along ``axis``, with progress between batches."""
        total = shape[AXES.index(axis)]
        done = 0
        events = predict_events(
            planes(axis),
            predictor,
            num_classes=num_classes,
            tile=tile,
            overlap=overlap,
            batch_size=batch_size,
        )
        for kind, value in events:
            if kind == "plane":
                done += 1
                yield value
            else:
                yield Progress(stage=f"segment {axis}", done=done, total=total)

    if len(axes) == 1:
        # One axis: each plane goes straight to uint8, no volume of probabilities.
        i = 0
        for item in run(axes):
            if isinstance(item, Progress):
                yield item
                continue
            idx = plane_index(axes, i)
            labels[idx] = item.argmax(axis=0)
            if conf is not None:
                conf[idx] = np.rint(item.max(axis=0) * 100.0)
            i += 1
        return Segmentation(labels=labels, confidence=conf, class_names=spec.class_names, axes=axes)

    acc_bytes = 2 * num_classes * z * y * x
    tmpdir: str | None = None
    acc: np.ndarray | None = None
    try:
        if acc_bytes > max_ram_bytes:
            tmpdir = tempfile.mkdtemp(prefix="microfossil-accumulator-", dir=accumulator_dir)
            log.info("multi-axis accumulator (%.1f MB) on disk in %s", acc_bytes / 1e6, tmpdir)
            acc = np.memmap(
                Path(tmpdir) / "probabilities.u16",
                dtype=np.uint16,
                mode="w+",
                shape=(num_classes, *shape),
            )
        else:
            acc = np.zeros((num_classes, *shape), dtype=np.uint16)
        for axis in axes:
            i = 0
            for item in run(axis):
                if isinstance(item, Progress):
                    yield item
                    continue
                np.clip(item, 0.0, 1.0, out=item)
                acc[(slice(None), *plane_index(axis, i))] += np.rint(item * _QUANT).astype(np.uint8)
                i += 1
        # Fuse a slab of z-planes at a time so that a memmap is never read whole.
        slab = max(1, (64 * 2**20) // (2 * num_classes * y * x))
        scale = 100.0 / (_QUANT * len(axes))
        for z0 in range(0, z, slab):
            part = np.asarray(acc[:, z0 : z0 + slab])
            labels[z0 : z0 + slab] = part.argmax(axis=0)
            if conf is not None:
                conf[z0 : z0 + slab] = np.rint(part.max(axis=0) * scale)
            yield Progress(stage="fuse", done=min(z, z0 + slab), total=z)
    finally:
        if tmpdir is not None:
            acc = None  # drop the memmap before removing its file
            shutil.rmtree(tmpdir, ignore_errors=True)
    return Segmentation(labels=labels, confidence=conf, class_names=spec.class_names, axes=axes)


def segment(volume: Any, model: LoadedModel | Predictor, **kwargs: Any) -> Segmentation:
    """Segment a volume; :func:`iter_segment` run to the end (same parameters)."""
    return drain(iter_segment(volume, model, **kwargs))
