"""Segment a volume slice by slice with a 2D network: tiling, blending, axis fusion.

Each plane is cut into overlapping tiles; tiles of several consecutive planes are packed
into one batch for the predictor; the tile predictions are blended with a Gaussian
window (nnU-Net style, sigma = tile / 8) so that the stitched probabilities have no
seams, and the weighted average is exact wherever the predictor is (an identity
predictor gives back its input for any tiling).

Memory stays bounded whatever the volume size:

* one axis: planes are read one at a time and turned into ``uint8`` labels (and
  ``uint8`` confidence) at once; no float probabilities of the whole volume are held.
* several axes (``"zyx"``): each pass adds its class probabilities, quantised to
  ``uint8`` (0..255), into a ``uint16`` accumulator of shape ``(C, Z, Y, X)`` --
  **2 × C bytes per voxel** -- held in RAM, or in a ``np.memmap`` in a temporary folder
  (under ``accumulator_dir``) when it would exceed ``max_ram_bytes``. The folder is
  removed when the generator finishes, fails or is closed (cancel).

The tiling kernel (:func:`predict_planes`) is numpy only and takes any predictor
callable ``f(batch (B, 1, H, W) float32) -> probabilities (B, C, H, W)``; torch is
imported only to wrap a :class:`~napari_microfossil.model.LoadedModel`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import normalise
from .._progress import Progress, drain
from ..axes import AXES, plane_index, take_plane
from ..errors import InputError
from ..model import SIZE_MULTIPLE, LoadedModel, ModelSpec, Predictor, check_size_multiple

log = logging.getLogger(__name__)

BLEND_KINDS = ("gaussian", "constant")
#: Largest accepted tile overlap (exclusive): more would multiply the work > 100 times.
MAX_OVERLAP = 0.9
#: Weight floor of the Gaussian window, relative to its centre: keeps every pixel's
#: total weight well away from zero so the weighted average stays exact in float32.
_WINDOW_FLOOR = 1e-3
#: Probabilities are quantised to 0..QUANT in multi-axis accumulation.
_QUANT = 255


# --------------------------------------------------------------------------- tiling


def _check_tiling(tile: int, overlap: float, batch_size: int | None = None) -> None:
    check_size_multiple(tile, "tile")
    if not (isinstance(overlap, (int, float, np.floating)) and 0.0 <= overlap < MAX_OVERLAP):
        raise InputError(f"overlap: expected a fraction in [0, {MAX_OVERLAP}), got {overlap!r}")
    if batch_size is not None and (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise InputError(f"batch_size: expected an integer >= 1, got {batch_size!r}")


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles covering ``[0, length)``.

    Parameters
    ----------
    length : int
        Extent of the axis in pixels.
    tile : int
        Tile extent in pixels (>= 1).
    overlap : float
        Fraction of a tile shared with its neighbour, in ``[0, 0.9)``.

    Returns
    -------
    list of int
        Strictly increasing starts ``0, step, 2 step, ..., length - tile`` with
        ``step = round(tile * (1 - overlap))``; the last tile ends flush with the axis
        (so the last step may be shorter). ``[0]`` when ``length <= tile``.

    Raises
    ------
    InputError
        If ``tile < 1`` or ``overlap`` is outside ``[0, 0.9)``.
    """
    if tile < 1:
        raise InputError(f"tile: expected >= 1, got {tile}")
    if not 0.0 <= overlap < MAX_OVERLAP:
        raise InputError(f"overlap: expected a fraction in [0, {MAX_OVERLAP}), got {overlap!r}")
    if length <= tile:
        return [0]
    step = max(1, round(tile * (1.0 - overlap)))
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def blend_window(tile: int | tuple[int, int], *, kind: str = "gaussian") -> np.ndarray:
    """Weights for blending overlapping tile predictions.

    Parameters
    ----------
    tile : int or (int, int)
        Tile shape ``(H, W)``; an int means a square tile.
    kind : {"gaussian", "constant"}
        ``"gaussian"``: separable Gaussian centred on the tile, sigma = edge / 8 (as in
        nnU-Net), so that tile borders -- where a network sees the least context --
        count little; floored at 1e-3 so no pixel has (near) zero weight.
        ``"constant"``: all ones (plain averaging; shows seams, for comparison).

    Returns
    -------
    ndarray, shape (H, W), float32
        Maximum 1 at the centre, strictly positive everywhere.
    """
    th, tw = (tile, tile) if isinstance(tile, (int, np.integer)) else tile
    if th < 1 or tw < 1:
        raise InputError(f"tile: expected a positive tile shape, got {tile!r}")
    if kind == "constant":
        return np.ones((th, tw), dtype=np.float32)
    if kind != "gaussian":
        raise InputError(f"kind: expected one of {', '.join(BLEND_KINDS)}, got {kind!r}")

    def profile(n: int) -> np.ndarray:
        centre = (n - 1) / 2.0
        sigma = n / 8.0
        return np.exp(-0.5 * ((np.arange(n) - centre) / sigma) ** 2)

    w = np.outer(profile(th), profile(tw))
    w /= w.max()
    np.maximum(w, _WINDOW_FLOOR, out=w)
    return w.astype(np.float32)


def _ceil_to(n: int, m: int) -> int:
    return -(-n // m) * m


@dataclass
class _PlaneJob:
    """One plane in flight: its padded input, accumulators and tiles left to predict."""

    shape: tuple[int, int]
    padded: np.ndarray  # (Hp, Wp) float32
    tile: tuple[int, int]
    geometry: _Geometry
    acc: np.ndarray  # (C, Hp, Wp) float32, weighted sum of tile predictions
    remaining: int

    def finish(self) -> np.ndarray:
        h, w = self.shape
        out = self.acc[:, :h, :w]
        out *= self.geometry.inv_weight[:h, :w]
        return np.ascontiguousarray(out)


@dataclass
class _Geometry:
    """Tiling of a padded plane shape, shared by all planes of that shape."""

    tile: tuple[int, int]
    origins: list[tuple[int, int]]
    window: np.ndarray  # (th, tw) float32
    inv_weight: np.ndarray = field(repr=False)  # (Hp, Wp) float32, 1 / sum of windows


def _geometry(
    padded_shape: tuple[int, int], tile: tuple[int, int], overlap: float, kind: str
) -> _Geometry:
    hp, wp = padded_shape
    th, tw = tile
    origins = [(y, x) for y in tile_starts(hp, th, overlap) for x in tile_starts(wp, tw, overlap)]
    window = blend_window((th, tw), kind=kind)
    weight = np.zeros((hp, wp), dtype=np.float32)
    for y, x in origins:
        weight[y : y + th, x : x + tw] += window
    return _Geometry(tile=tile, origins=origins, window=window, inv_weight=1.0 / weight)


def _prepare(
    plane: Any,
    *,
    num_classes: int,
    tile: int,
    overlap: float,
    kind: str,
    cache: dict[Any, _Geometry],
) -> _PlaneJob:
    arr = np.asarray(plane, dtype=np.float32)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"planes: expected non-empty 2D arrays (H, W), got shape {arr.shape}")
    h, w = arr.shape
    # A plane smaller than the tile gets a tile just big enough (next multiple of 32)
    # rather than a full tile of padding.
    th = min(tile, _ceil_to(h, SIZE_MULTIPLE))
    tw = min(tile, _ceil_to(w, SIZE_MULTIPLE))
    hp, wp = max(h, th), max(w, tw)
    if (hp, wp) != (h, w):
        # numpy's reflect mode reflects repeatedly when the pad exceeds the plane and
        # repeats the edge for a single row/column, so it works for any plane size.
        arr = np.pad(arr, ((0, hp - h), (0, wp - w)), mode="reflect")
    key = (hp, wp, th, tw)
    geo = cache.get(key)
    if geo is None:
        geo = cache[key] = _geometry((hp, wp), (th, tw), overlap, kind)
    acc = np.zeros((num_classes, hp, wp), dtype=np.float32)
    return _PlaneJob(
        shape=(h, w), padded=arr, tile=(th, tw), geometry=geo, acc=acc, remaining=len(geo.origins)
    )


def _predict_events(
    planes: Iterable[Any],
    predictor: Predictor,
    *,
    num_classes: int,
    tile: int,
    overlap: float,
    batch_size: int,
    kind: str = "gaussian",
) -> Iterator[tuple[str, Any]]:
    """The tiling kernel as a stream of events (options checked at once, not lazily).

    Yields ``("plane", probs)`` for each finished plane (in input order) and then
    ``("batch", n_tiles)`` after every predictor call, so that a caller can report
    progress -- and be cancelled -- between any two predictor calls. Planes are pulled
    from ``planes`` only when the next batch needs their tiles.
    """
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < 1
    ):
        raise InputError(f"num_classes: expected an integer >= 1, got {num_classes!r}")
    _check_tiling(tile, overlap, batch_size)
    if kind not in BLEND_KINDS:
        raise InputError(f"kind: expected one of {', '.join(BLEND_KINDS)}, got {kind!r}")
    if not callable(predictor):
        raise InputError(f"predictor: expected a callable, got {type(predictor).__name__}")
    return _predict_events_gen(
        iter(planes),
        predictor,
        num_classes=int(num_classes),
        tile=int(tile),
        overlap=float(overlap),
        batch_size=int(batch_size),
        kind=kind,
    )


def _predict_events_gen(
    source: Iterator[Any],
    predictor: Predictor,
    *,
    num_classes: int,
    tile: int,
    overlap: float,
    batch_size: int,
    kind: str,
) -> Iterator[tuple[str, Any]]:
    cache: dict[Any, _Geometry] = {}
    pending: deque[_PlaneJob] = deque()  # planes not yet yielded, in order
    queue: deque[tuple[_PlaneJob, int, int]] = deque()  # tiles not yet predicted
    exhausted = False
    while True:
        while len(queue) < batch_size and not exhausted:
            try:
                plane = next(source)
            except StopIteration:
                exhausted = True
                break
            job = _prepare(
                plane, num_classes=num_classes, tile=tile, overlap=overlap, kind=kind, cache=cache
            )
            pending.append(job)
            queue.extend((job, y, x) for y, x in job.geometry.origins)
        if not queue:
            break
        # A batch holds tiles of one shape only (planes of different shapes may mix).
        shape = queue[0][0].tile
        batch: list[tuple[_PlaneJob, int, int]] = []
        while queue and len(batch) < batch_size and queue[0][0].tile == shape:
            batch.append(queue.popleft())
        th, tw = shape
        x_in = np.empty((len(batch), 1, th, tw), dtype=np.float32)
        for i, (job, y, x) in enumerate(batch):
            x_in[i, 0] = job.padded[y : y + th, x : x + tw]
        out = np.asarray(predictor(x_in))
        expected = (len(batch), num_classes, th, tw)
        if out.shape != expected:
            raise InputError(
                f"predictor: expected output of shape {expected} (batch, num_classes, H, W) "
                f"for input {x_in.shape}, got {out.shape}; check num_classes"
            )
        for i, (job, y, x) in enumerate(batch):
            job.acc[:, y : y + th, x : x + tw] += out[i] * job.geometry.window
            job.remaining -= 1
        while pending and pending[0].remaining == 0:
            yield "plane", pending.popleft().finish()
        yield "batch", len(batch)


def predict_planes(
    planes: Iterable[np.ndarray],
    predictor: Predictor,
    *,
    num_classes: int,
    tile: int = 256,
    overlap: float = 0.25,
    batch_size: int = 8,
) -> Iterator[np.ndarray]:
    """Predict class probabilities for a sequence of planes by blended tiles.

    Parameters
    ----------
    planes : iterable of ndarray, each shape (H, W)
        Already-normalised network input (converted to float32). Read lazily: a plane
        is taken from the iterable only when the next batch needs it, so a generator
        of planes read from disk streams.
    predictor : callable
        ``f(batch)`` with ``batch`` float32 ``(B, 1, th, tw)`` (``th``, ``tw`` multiples
        of 32) returning ``(B, num_classes, th, tw)`` probabilities (or any per-pixel
        values: the blending is a weighted average).
    num_classes : int
        Channels the predictor returns.
    tile : int
        Tile edge in pixels, a multiple of 32. A plane smaller than the tile along an
        axis gets a tile of ``ceil32(size)`` on that axis, and is padded (reflect) to it.
    overlap : float
        Fraction of a tile shared with its neighbour, in ``[0, 0.9)``.
    batch_size : int
        Tiles per predictor call. Tiles of several consecutive planes share a batch.

    Yields
    ------
    ndarray, shape (num_classes, H, W), float32
        Blended probabilities of each plane, in input order.

    Raises
    ------
    InputError
        If ``tile``, ``overlap``, ``batch_size`` or ``num_classes`` is invalid, a plane
        is not 2D, or the predictor returns the wrong shape.
    """
    events = _predict_events(
        planes,
        predictor,
        num_classes=num_classes,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
    )
    return (value for kind, value in events if kind == "plane")


# --------------------------------------------------------------------------- volumes


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


def _check_axes(axes: Any) -> str:
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
    axes = _check_axes(axes)
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
    _check_tiling(tile, overlap, batch_size)
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
        events = _predict_events(
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


#: Sigmas (voxels) that :func:`iter_suggest_smoothing` tries.
SMOOTH_CANDIDATES = (0.0, 0.5, 0.7, 1.0, 1.5)


@dataclass(frozen=True)
class SmoothingSuggestion:
    """What :func:`iter_suggest_smoothing` found.

    Attributes
    ----------
    sigma : float
        The suggested smoothing (0 = none).
    confidence : dict
        Sigma -> the model's mean confidence (0..1) on the sampled planes.
    planes : tuple of int
        The z-planes sampled.
    """

    sigma: float
    confidence: dict[float, float]
    planes: tuple[int, ...]

    def describe(self) -> str:
        """One line for a user: the choice, and the confidence each sigma got."""

        def name(sigma: float) -> str:
            return "none" if sigma == 0 else f"{sigma:g}"

        tried = ", ".join(f"{name(s)} {100 * c:.1f} %" for s, c in self.confidence.items())
        return (
            f"Smoothing {self.sigma:g} chosen; the model's mean confidence on z-slices "
            f"{', '.join(map(str, self.planes))} with each smoothing: {tried}"
        )


def iter_suggest_smoothing(
    volume: Any,
    model: LoadedModel,
    *,
    sigmas: Sequence[float] = SMOOTH_CANDIDATES,
    n_planes: int = 6,
    tolerance: float = 0.002,
    device: Any = None,
) -> Generator[Progress, None, SmoothingSuggestion]:
    """Suggest a smoothing for a scan: the one the model is most confident with.

    Segments ``n_planes`` z-planes spread over the scan after each candidate smoothing
    and averages the model's confidence (the probability of the class it chose). A
    noisy scan makes a model unsure, and smoothing helps until it blurs away what the
    model needs, so the confidence peaks near the best sigma. Of the sigmas within
    ``tolerance`` of the best confidence the smallest wins (usually no smoothing on a
    clean scan). On the synthetic scans of docs/fine_tuning.md it picked 1.0 on three of
    the four noisy ones (one step above the best, 0.7, on two) and none on the fourth and
    on all clean ones; the measured IoUs are in the table there.

    Each plane is smoothed as :func:`~napari_microfossil.normalise.iter_smooth` would
    smooth the whole scan, from a slab of :func:`~napari_microfossil.normalise.smoothing_margin`
    planes on each side, so the sample costs a few planes per sigma, not a smoothed
    copy of the scan.

    Yields
    ------
    Progress
        ``stage="suggest smoothing"``, one per (sigma, plane).
    """
    from ..model import make_predictor

    shape = tuple(int(n) for n in volume.shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"volume: expected a (Z, Y, X) volume, got shape {shape}")
    if not isinstance(model, LoadedModel):
        raise InputError(f"model: expected a LoadedModel, got {type(model).__name__}")
    cands = sorted({normalise.check_smooth(s, "sigmas") for s in sigmas})
    if not cands:
        raise InputError("sigmas: expected at least one sigma")
    if isinstance(n_planes, bool) or not isinstance(n_planes, (int, np.integer)) or n_planes < 1:
        raise InputError(f"n_planes: expected an integer >= 1, got {n_planes!r}")
    nz = shape[0]
    spread = np.linspace(0, nz - 1, int(n_planes) + 2)[1:-1].round().astype(int)
    planes = tuple(sorted(set(spread.tolist()))) or (nz // 2,)
    spec = model.spec
    predictor = make_predictor(model.network, device)
    total = len(cands) * len(planes)
    done = 0
    confidence: dict[float, float] = {}
    for sigma in cands:
        margin = normalise.smoothing_margin(sigma)
        cut = []
        for z in planes:
            z0, z1 = max(0, z - margin), min(nz, z + margin + 1)
            cut.append(drain(normalise.iter_smooth(volume[z0:z1], sigma))[z - z0])
        sample = np.stack(cut)
        lo, hi = normalise.intensity_range(sample, spec.normalisation)
        means = []
        inputs = (normalise.apply_normalisation(p, lo, hi, spec.normalisation) for p in cut)
        for probs in predict_planes(
            inputs, predictor, num_classes=spec.num_classes, tile=spec.tile_size
        ):
            means.append(float(probs.max(axis=0).mean()))
            done += 1
            yield Progress("suggest smoothing", done, total, {"sigma": sigma})
        confidence[sigma] = float(np.mean(means))
    best = max(confidence.values())
    sigma = min(s for s, c in confidence.items() if c >= best - tolerance)
    return SmoothingSuggestion(sigma=sigma, confidence=confidence, planes=planes)


def suggest_smoothing(volume: Any, model: LoadedModel, **kwargs: Any) -> SmoothingSuggestion:
    """:func:`iter_suggest_smoothing` run to the end (same parameters)."""
    return drain(iter_suggest_smoothing(volume, model, **kwargs))


def segment(volume: Any, model: LoadedModel | Predictor, **kwargs: Any) -> Segmentation:
    """Segment a volume; :func:`iter_segment` run to the end (same parameters)."""
    return drain(iter_segment(volume, model, **kwargs))


__all__ = [
    "SMOOTH_CANDIDATES",
    "Segmentation",
    "SmoothingSuggestion",
    "blend_window",
    "flip_averaged",
    "iter_segment",
    "iter_suggest_smoothing",
    "predict_planes",
    "segment",
    "suggest_smoothing",
    "tile_starts",
]
