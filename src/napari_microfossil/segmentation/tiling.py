"""Tile maths: where the tiles of a plane start and how their predictions are weighted.

Pure numpy; :mod:`.predict` cuts planes into these tiles and blends the predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..model import check_size_multiple

BLEND_KINDS = ("gaussian", "constant")
#: Largest accepted tile overlap (exclusive): more would multiply the work > 100 times.
MAX_OVERLAP = 0.9
#: Weight floor of the Gaussian window, relative to its centre: keeps every pixel's
#: total weight well away from zero so the weighted average stays exact in float32.
_WINDOW_FLOOR = 1e-3


def check_tiling(tile: Any, overlap: Any, batch_size: Any = None) -> None:
    """Check the tiling options, as every front end gets them.

    Raises
    ------
    InputError
        Naming ``tile`` (not a multiple of 32), ``overlap`` (outside ``[0, 0.9)``) or
        ``batch_size`` (not an integer >= 1). ``tile`` or ``batch_size`` None (the
        model's tile, a default batch) is not checked.
    """
    if tile is not None:
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
