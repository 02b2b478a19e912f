"""The tiling kernel: predict class probabilities of planes by blended tiles.

Each plane is cut into overlapping tiles (:mod:`.tiling`); tiles of several consecutive
planes are packed into one batch for the predictor; the tile predictions are blended
with a Gaussian window (nnU-Net style, sigma = tile / 8) so that the stitched
probabilities have no seams, and the weighted average is exact wherever the predictor
is (an identity predictor gives back its input for any tiling).

Numpy only: the predictor is any callable
``f(batch (B, 1, H, W) float32) -> probabilities (B, C, H, W)``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..model import SIZE_MULTIPLE, Predictor
from .tiling import BLEND_KINDS, blend_window, check_tiling, tile_starts


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


def predict_events(
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
    check_tiling(tile, overlap, batch_size)
    if kind not in BLEND_KINDS:
        raise InputError(f"kind: expected one of {', '.join(BLEND_KINDS)}, got {kind!r}")
    if not callable(predictor):
        raise InputError(f"predictor: expected a callable, got {type(predictor).__name__}")
    return _events_gen(
        iter(planes),
        predictor,
        num_classes=int(num_classes),
        tile=int(tile),
        overlap=float(overlap),
        batch_size=int(batch_size),
        kind=kind,
    )


def _events_gen(
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
    events = predict_events(
        planes,
        predictor,
        num_classes=num_classes,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
    )
    return (value for kind, value in events if kind == "plane")
