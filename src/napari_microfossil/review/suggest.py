"""Where to look next: the unreviewed slice where the model was least confident."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any

import numpy as np

from .._progress import Progress, drain
from ..axes import axis_index
from .state import ReviewState


def iter_slice_confidence(
    confidence: Any, axis: str | int = "z"
) -> Generator[Progress, None, np.ndarray]:
    """:func:`slice_confidence` as a generator: yields ``Progress("read confidence")``
    every 16 slices of a lazy volume (an in-memory one is done in one step)."""
    ax = axis_index(axis)
    if getattr(confidence, "ndim", None) != 3:
        raise ValueError(
            f"confidence: expected a (Z, Y, X) array; got shape "
            f"{getattr(confidence, 'shape', type(confidence))}"
        )
    others = tuple(i for i in range(3) if i != ax)
    if type(confidence) is np.ndarray:
        # float64 accumulation is buffered: no float copy of the volume is made.
        return np.asarray(np.mean(confidence, axis=others, dtype=np.float64))
    n = int(confidence.shape[ax])
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        key: list[Any] = [slice(None)] * 3
        key[ax] = i
        out[i] = float(np.mean(np.asarray(confidence[tuple(key)]), dtype=np.float64))
        if i % 16 == 15 or i == n - 1:
            yield Progress("read confidence", i + 1, n)
    return out


def slice_confidence(confidence: Any, axis: str | int = "z") -> np.ndarray:
    """Mean confidence of each slice along `axis`.

    Parameters
    ----------
    confidence : array-like, shape (Z, Y, X)
        Per-voxel confidence, e.g. ``Segmentation.confidence`` (uint8, percent). Lazy
        arrays (zarr, memory maps) are read one slice at a time.
    axis : {"z", "y", "x"}

    Returns
    -------
    ndarray of float64, shape (n_slices,)
        In the units of `confidence`.
    """
    return drain(iter_slice_confidence(confidence, axis))


def _spread_pick(candidates: np.ndarray, reviewed: Iterable[int], n: int) -> int:
    """The candidate farthest from every reviewed slice (the middle when none is)."""
    done = np.array(sorted(reviewed), dtype=np.int64)
    if done.size == 0:
        return int(candidates[np.argmin(np.abs(candidates - (n - 1) / 2))])
    pos = np.searchsorted(done, candidates)
    left = np.where(pos > 0, candidates - done[np.maximum(pos - 1, 0)], np.iinfo(np.int64).max)
    right = np.where(
        pos < done.size, done[np.minimum(pos, done.size - 1)] - candidates, np.iinfo(np.int64).max
    )
    return int(candidates[np.argmax(np.minimum(left, right))])


def next_slice_to_review(
    state: ReviewState,
    confidence: Any = None,
    *,
    current: int | None = None,
) -> int | None:
    """The unreviewed slice most worth the user's time.

    Parameters
    ----------
    state : ReviewState
    confidence : array-like, optional
        Per-voxel confidence ``(Z, Y, X)``, or per-slice confidence along ``state.axis``
        (1-D, length ``state.n_slices``, e.g. from :func:`slice_confidence`, cached by
        the caller). The unreviewed slice with the lowest mean is chosen.
    current : int, optional
        The slice shown now; breaks ties (and, with no confidence, decides) in favour of
        the nearest unreviewed slice. Without it, ties go to the slice farthest from any
        reviewed one, so the picks spread evenly through the volume.

    Returns
    -------
    int or None
        None when every slice is reviewed.
    """
    n = state.n_slices
    reviewed = np.zeros(n, dtype=bool)
    if state.reviewed:
        reviewed[np.fromiter(state.reviewed, dtype=np.int64)] = True
    candidates = np.flatnonzero(~reviewed)
    if candidates.size == 0:
        return None
    if confidence is not None:
        per = np.asarray(confidence, dtype=np.float64) if np.ndim(confidence) == 1 else None
        if per is None:
            per = slice_confidence(confidence, state.axis)
        if per.shape != (n,):
            raise ValueError(
                f"confidence: expected {n} values along {state.axis!r} (or a volume with "
                f"{n} slices along it); got shape {per.shape}"
            )
        score = per[candidates]
        finite = np.isfinite(score)
        if finite.any():
            low = np.min(score[finite])
            tie = finite & np.isclose(score, low, rtol=0.0, atol=1e-9)
            candidates = candidates[tie]
    if current is not None:
        return int(candidates[np.argmin(np.abs(candidates - int(current)))])
    return _spread_pick(candidates, state.reviewed, n)


def suggest_slices(
    per_slice: Any, reviewed: Iterable[int], n: int, *, gap: int | None = None
) -> list[int]:
    """The `n` unreviewed slices to review next, least confident first.

    The first is what :func:`next_slice_to_review` picks (the panel's "Next slice to
    review"). Each further pick is the least confident slice at least `gap` slices away
    from every reviewed and every picked slice, so one batch does not spend the user's
    time on three neighbours of the same hard spot; when no slice is that far, the gap
    halves until one is.

    Parameters
    ----------
    per_slice : array-like, shape (n_slices,)
        Mean confidence of each slice (:func:`slice_confidence`).
    reviewed : iterable of int
        Slices already reviewed; never suggested.
    n : int
        How many to suggest (fewer when fewer slices are left).
    gap : int, optional
        Default ``n_slices // (2 * (n + number reviewed))``, at least 1: about half the
        spacing the slices would have if spread evenly.

    Returns
    -------
    list of int
        In the order picked.
    """
    score = np.asarray(per_slice, dtype=np.float64)
    total = score.size
    done = {int(i) for i in reviewed}
    if n < 1:
        raise ValueError(f"n: expected an integer >= 1; got {n!r}")
    if gap is None:
        gap = max(1, total // (2 * (n + len(done))))
    first = next_slice_to_review(ReviewState(n_slices=total, reviewed=set(done)), score)
    if first is None:
        return []
    picks = [first]
    while len(picks) < n:
        taken = np.array(sorted(done | set(picks)), dtype=np.int64)
        free = np.setdiff1d(np.arange(total), taken)
        if free.size == 0:
            break
        step = gap
        while True:
            dist = np.min(np.abs(free[:, None] - taken[None, :]), axis=1)
            far = free[dist >= step]
            if far.size or step == 1:
                break
            step = max(1, step // 2)
        far = far if far.size else free
        s = np.where(np.isfinite(score[far]), score[far], np.inf)
        picks.append(int(far[np.argmin(s)]))
    return picks
