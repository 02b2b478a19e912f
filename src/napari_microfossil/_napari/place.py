"""Label slices placed on the planes of their scan, in napari.

A folder of label slices sparser than the scan (``Sandstone_Versa0000.tif``,
``..0050.tif``, ... beside a scan of every slice, or one slice more than the scan
holds) is placed when it is opened over its scan (:func:`place_on_open`, called by the
reader), by the numbers in the file names. Layers > Data > "Place label slices on the
scan (Microfossil)" (:func:`place_label_slices`) does it for a labels layer already
open: by those numbers, or from a first plane and a step the user gives.

The placed layer has the scan's shape, voxel size and position; its other planes are 0
and *not reviewed*; the placed planes are marked reviewed (:data:`layers.REVIEW`), so
Review & correct shows them as done and Fine-tune trains on them, and on no other.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..io.place import Placement, line_up, line_up_evenly, place
from ..io.slices import folder_slice_numbers
from . import layers
from .layers import PLACED

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

#: Placed labels are held in memory (to be painted in): refused above this (bytes).
MAX_PLACED_BYTES = 4 << 30


def scan_numbers(scan: Any) -> list[int]:
    """The number of each plane of a scan layer: its slice files' numbers when it was
    read from a folder of numbered slices, else ``0..Z-1``."""
    depth = int(layers.volume_of(scan).shape[0])
    path = layers.source_path(scan)
    numbers = folder_slice_numbers(path) if path else None
    return numbers if numbers is not None and len(numbers) == depth else list(range(depth))


def scans_like(viewer: Any, plane_shape: tuple[int, ...]) -> list[Any]:
    """The viewer's scan layers whose planes are `plane_shape` ``(Y, X)``, last added
    first (confidence maps and other results left out)."""
    from napari.layers import Image

    found = [
        lyr
        for lyr in getattr(viewer, "layers", [])
        if isinstance(lyr, Image)
        and not layers.meta(lyr).get(layers.LABELS_LAYER)
        and len(layers.volume_of(lyr).shape) == 3
        and tuple(layers.volume_of(lyr).shape[-2:]) == tuple(plane_shape)
    ]
    return found[::-1]


def placed_metadata(placement: Placement, scan: Any, shape: tuple[int, ...]) -> dict[str, Any]:
    """Layer metadata of placed labels: the review record with the placed planes
    reviewed, and where they came from (:data:`PLACED`)."""
    from ..review import ReviewState

    state = ReviewState.for_volume(shape)
    for z in placement.planes:
        state.mark_reviewed(z)
    return {
        layers.REVIEW: state,
        PLACED: {
            "scan": scan.name,
            "planes": list(placement.planes),
            "numbers": list(placement.numbers),
        },
    }


def placed_scan(layer: Any) -> str | None:
    """The name of the scan a labels layer was placed on, if it was."""
    info = layers.meta(layer).get(PLACED)
    return str(info["scan"]) if isinstance(info, dict) and info.get("scan") else None


def place_on_open(path: str, data: Any, meta: dict[str, Any]) -> Any:
    """The reader's hook for label data: placed on an open scan when it can be.

    When the viewer holds a scan with planes of the same size but another number of
    them, the label slices are placed by the numbers in their file names; `meta` (the
    reader's layer keywords) gets the scan's voxel size and position and the placed
    metadata. Returns the placed array, or None (opened as it is; the user is told why
    when a scan is there but the slices cannot be lined up).
    """
    viewer = _current_viewer()
    scans = scans_like(viewer, tuple(data.shape[-2:])) if viewer is not None else []
    if not scans or any(layers.volume_of(s).shape[0] == data.shape[0] for s in scans):
        return None  # no scan open, or one of the same depth: nothing to place
    scan, name = scans[0], meta["name"]
    numbers = folder_slice_numbers(path)
    try:
        if numbers is None:
            raise InputError(
                f"its {data.shape[0]} slices carry no numbers in their file names to place "
                f"them on the {layers.volume_of(scan).shape[0]} planes of {scan.name!r}"
            )
        placement = line_up(numbers, scan_numbers(scan))
        placed = place(data, placement, max_bytes=MAX_PLACED_BYTES)
    except InputError as exc:
        notify(
            f"{name}: {exc}. Opened as it is; select it and use Layers > Data > Place label "
            "slices on the scan to place it"
        )
        return None
    meta["scale"] = tuple(float(s) for s in scan.scale[-3:])
    meta["translate"] = tuple(float(t) for t in scan.translate[-3:])
    meta["metadata"][layers.SPACING_SOURCE] = f"from the scan {scan.name!r}"
    meta["metadata"].update(placed_metadata(placement, scan, placed.shape))
    notify(f"{name}: {placement.describe(repr(scan.name))}; {_reviewed_note(placement)}")
    return placed


def place_layer(
    viewer: Any, labels: Any, scan: Any, *, first: int | None = None, step: int | None = None
) -> tuple[Any, Placement]:
    """Place the slices of a labels layer on the planes of `scan`; returns the new layer
    (same name, place in the layer list and colours; the old one is removed) and the
    placement.

    With `first` and `step`, label slice ``k`` goes to plane ``first + k * step``;
    without, by the numbers in the file names the layer was read from.

    Raises
    ------
    InputError
        If the slices cannot be lined up, or their planes differ from the scan's.
    """
    stack, target = layers.volume_of(labels), layers.volume_of(scan)
    if tuple(stack.shape[-2:]) != tuple(target.shape[-2:]) or len(stack.shape) != 3:
        raise InputError(
            f"{labels.name!r} has planes of {tuple(stack.shape[-2:])} voxels, {scan.name!r} "
            f"of {tuple(target.shape[-2:])}: they cannot lie on each other"
        )
    if first is not None or step is not None:
        placement = line_up_evenly(
            int(stack.shape[0]), int(target.shape[0]), first=int(first or 0), step=int(step or 1)
        )
    else:
        path = layers.source_path(labels)
        numbers = folder_slice_numbers(path) if path else None
        if numbers is None or len(numbers) != stack.shape[0]:
            raise InputError(
                f"{labels.name!r} was not read from a folder of numbered slice files: give "
                "the plane of its first slice and the step between slices"
            )
        placement = line_up(numbers, scan_numbers(scan))
    data = place(stack, placement, max_bytes=MAX_PLACED_BYTES)
    metadata = {**labels.metadata, **placed_metadata(placement, scan, data.shape)}
    metadata[layers.SPACING_SOURCE] = f"from the scan {scan.name!r}"
    index = viewer.layers.index(labels)
    name, colormap, opacity = labels.name, labels.colormap, labels.opacity
    viewer.layers.remove(labels)
    new = viewer.add_labels(
        data,
        name=name,
        scale=tuple(scan.scale[-3:]),
        translate=tuple(scan.translate[-3:]),
        units=layers.SPATIAL_UNITS,
        colormap=colormap,
        opacity=opacity,
        metadata=metadata,
    )
    viewer.layers.move(viewer.layers.index(new), index)
    return new, placement


def place_label_slices(viewer: napari.viewer.Viewer) -> Any:
    """Layers > Data > "Place label slices on the scan (Microfossil)": ask for the scan
    and how, for the selected labels layer; returns the dialog (shown, not modal)."""
    from napari.layers import Labels
    from napari.utils.notifications import show_error

    from .place_dialog import PlaceDialog

    layer = viewer.layers.selection.active
    if not isinstance(layer, Labels):
        show_error("Place label slices: select the labels layer of the slices first")
        return None
    if not scans_like(viewer, tuple(layers.volume_of(layer).shape[-2:])):
        show_error(
            f"Place label slices: open the scan first; no Image layer has planes of "
            f"{tuple(layers.volume_of(layer).shape[-2:])} voxels like {layer.name!r}"
        )
        return None
    dialog = PlaceDialog(viewer, layer, parent=viewer.window._qt_window)
    dialog.show()
    return dialog


def _reviewed_note(placement: Placement) -> str:
    return (
        f"those {len(placement.planes)} planes are marked reviewed (Fine-tune trains on them), "
        "the other planes are 0 and not reviewed"
    )


def _current_viewer() -> Any:
    try:
        import napari
    except ImportError:  # pragma: no cover - napari is there when napari calls us
        return None
    return napari.current_viewer()


def notify(message: str) -> None:
    log.warning("%s", message)
    try:
        from napari.utils.notifications import show_info
    except ImportError:  # pragma: no cover
        return
    show_info(message)
