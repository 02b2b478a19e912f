"""The corrections a new Segment result carries over: round after round, nothing the
user labelled is lost.

A Segment result ``"<image> fossils"`` keeps the reviewed planes of the layer it
replaces (:func:`~.segment_result.show_result`) and, from this module, those of every
labels layer *placed* on the same scan (:data:`~.layers.PLACED`: label slices from
elsewhere, e.g. the sandstone's). Those planes are copied in verbatim and stay
reviewed in the result's record, so Review's "Next slice to review" skips them and the
next Fine-tune trains on them with the slices corrected since. Where the replaced
layer and a placed one both reviewed a plane, the replaced layer's (newer) plane wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..axes import AXES
from ..workflows.keep import keep_planes
from . import layers
from .place import placed_scan

Planes = set[tuple[str, int]]


def placed_sources(viewer: Any, image: str | None, shape: tuple[int, ...], *, skip: str) -> list:
    """The labels layers placed on the scan layer named `image`, of the result's
    `shape`, with reviewed planes (the layer named `skip`, the one replaced, left out)."""
    from napari.layers import Labels

    if not image:
        return []
    return [
        lyr
        for lyr in viewer.layers
        if isinstance(lyr, Labels)
        and lyr.name != skip
        and placed_scan(lyr) == image
        and tuple(layers.volume_of(lyr).shape) == tuple(shape)
        and layers.reviewed_slices_of(lyr)
    ]


def planes_of(slices: dict[str, list[int]]) -> Planes:
    """``{"z": [1, 3]}`` as ``{("z", 1), ("z", 3)}``."""
    return {(a, int(i)) for a, idx in slices.items() for i in idx}


def carry_placed(labels: Any, sources: Iterable[Any], *, taken: Planes) -> Planes:
    """Copy the reviewed planes of `sources` into `labels` verbatim, except the planes in
    `taken` (kept from the replaced layer, which wins); returns the planes copied."""
    done: Planes = set()
    for src in sources:
        wanted = planes_of(layers.reviewed_slices_of(src)) - taken - done
        slices: dict[str, list[int]] = {}
        for axis, i in sorted(wanted):
            slices.setdefault(axis, []).append(i)
        keep_planes(labels, layers.volume_of(src), slices)
        done |= wanted
    return done


def merge_record(state: Any, others: Iterable[Any]) -> None:
    """Add the reviewed and edited slices of the review records `others` to `state`,
    in place (every axis; `state` keeps its own). Records that are not
    :class:`~napari_microfossil.review.ReviewState` are passed over."""
    from ..review import ReviewState

    if not isinstance(state, ReviewState):
        return
    for other in others:
        if not isinstance(other, ReviewState) or other is state:
            continue
        for axis in AXES:
            got = _axis_marks(other, axis)
            if not got["reviewed"]:
                continue
            if axis == state.axis:
                state.edited |= set(got["edited"])
                state.reviewed |= set(got["reviewed"]) | set(got["edited"])
            else:
                mine = state.other_axes.setdefault(axis, {"reviewed": [], "edited": []})
                mine["reviewed"] = sorted({*mine.get("reviewed", []), *got["reviewed"]})
                mine["edited"] = sorted({*mine.get("edited", []), *got["edited"]})


def new_record(shape: tuple[int, ...], sources: Iterable[Any]) -> Any:
    """A review record of a volume of `shape` with the reviewed slices of `sources`."""
    from ..review import ReviewState

    state = ReviewState.for_volume(shape)
    merge_record(state, [layers.meta(s).get(layers.REVIEW) for s in sources])
    return state


def _axis_marks(state: Any, axis: str) -> dict[str, list[int]]:
    if axis == state.axis:
        return {"reviewed": sorted(state.reviewed), "edited": sorted(state.edited)}
    saved = state.other_axes.get(axis, {})
    return {
        "reviewed": [int(i) for i in saved.get("reviewed", [])],
        "edited": [int(i) for i in saved.get("edited", [])],
    }
