"""What the plugin keeps on napari layers: the metadata keys (defined here once), typed
access to them, and the one rule that finds the scan a labels layer belongs to.

Every panel reads and writes layer metadata through this module; no panel spells a
key as a string literal.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..classes import class_colours

# ---------------------------------------------------------------- metadata keys

#: File the layer was read from (set by the reader).
PATH = "path"
#: The multiscale pyramid an Image layer shows (set by the reader; level 0 = the scan).
PYRAMID = "pyramid"
#: Where the voxel size came from: ``"metadata"``, ``"user"`` or ``"default"``.
SPACING_SOURCE = "spacing_source"
#: Class names of a labels layer (index = class id).
CLASS_NAMES = "class_names"
#: The scan file a Segment result was made from.
SOURCE_PATH = "source_path"
#: Name of the Image layer a Segment result was made from; marks the layer as a result.
SOURCE_IMAGE = "source_image"
#: Name of the confidence Image layer of a Segment result.
CONFIDENCE_LAYER = "confidence_layer"
#: On a confidence layer: the name of the labels layer it scores.
LABELS_LAYER = "labels_layer"
#: The model file a Segment result was made with, and the options used.
MODEL = "model"
SEGMENT_OPTIONS = "segment_options"
#: The Review panel's :class:`~napari_microfossil.review.ReviewState` of a labels layer.
REVIEW = "microfossil_review"
#: The folder the review of a labels layer autosaves to.
REVIEW_SIDECAR = "microfossil_review_sidecar"
#: On labels placed on a scan: ``{"scan": name, "planes": [...], "numbers": [...]}``, the
#: scan it was placed on and each placed plane with its slice's number.
PLACED = "placed_slices"
#: Marks the Fossils panel's instance layer (one id per fossil, not classes).
INSTANCES = "fossil_instances"
#: Physical unit of an Image layer's values (``"percent"`` for confidence).
UNIT = "unit"

#: Unit of every spatial axis the plugin draws: scans carry µm voxel sizes.
SPATIAL_UNITS = ("µm", "µm", "µm")


def meta(layer: Any) -> dict[str, Any]:
    """A layer's metadata dict (empty for objects without one)."""
    md = getattr(layer, "metadata", None)
    return md if isinstance(md, dict) else {}


def class_names_of(layer: Any) -> list[str]:
    """The class names recorded on a labels layer (empty if none)."""
    return list(meta(layer).get(CLASS_NAMES) or [])


def has_corrections(layer: Any) -> bool:
    """Whether a Labels layer carries review state (reviewed or edited slices)."""
    state = meta(layer).get(REVIEW)
    if state is None:
        return False
    edited, reviewed = getattr(state, "edited", None), getattr(state, "reviewed", None)
    if edited is not None or reviewed is not None:
        return bool(edited) or bool(reviewed)
    if isinstance(state, dict):
        return any(bool(v) for v in state.values())
    return True


def reviewed_slices_of(layer: Any) -> dict[str, list[int]]:
    """The reviewed slices per axis recorded on a Labels layer (empty if none)."""
    get = getattr(meta(layer).get(REVIEW), "reviewed_slices", None)
    if not callable(get):
        return {}
    return {axis: list(v) for axis, v in get().items() if v}


def is_instance_layer(layer: Any) -> bool:
    """Whether a layer is the Fossils panel's instance layer (ids, not class labels)."""
    return bool(meta(layer).get(INSTANCES))


def is_segment_result(layer: Any) -> bool:
    """Whether a layer is a Segment result (class labels, :data:`SOURCE_IMAGE` set)."""
    return bool(meta(layer).get(SOURCE_IMAGE)) and not is_instance_layer(layer)


def source_path(layer: Any) -> str | None:
    """Where a layer was read from: ``layer.source.path`` or ``metadata["path"]``."""
    src = getattr(getattr(layer, "source", None), "path", None)
    if src:
        return str(src)
    path = meta(layer).get(PATH)
    return str(path) if path else None


def volume_of(layer: Any) -> Any:
    """A layer's full-resolution data: level 0 of a multiscale layer (a pyramid opened
    by the reader), else its data. Panels hand this to the engine."""
    if getattr(layer, "multiscale", False):
        from .levels import full_resolution

        return full_resolution(layer.data[0])
    return layer.data


def store_of(layer: Any) -> str | None:
    """The zarr store a Labels layer's data is kept in (edited in place), or None for
    labels held in memory (or read-only)."""
    from ..review.labels_store import StoreLabels

    data = getattr(layer, "data", None)
    return str(data.path) if isinstance(data, StoreLabels) else None


def labels_store_of(layer: Any) -> str | None:
    """The zarr store holding a Labels layer's labels with every edit in it, or None.

    For engine work that reads the labels from their file, block by block (Fossils
    on a big volume, Segment keeping corrected slices): edits not yet autosaved are
    saved first, through the Review panel's autosave when it follows the layer (so
    its record stays that of the store), else written into the store directly.
    """
    from ..review.labels_store import StoreLabels

    data = getattr(layer, "data", None)
    if not isinstance(data, StoreLabels):
        return None
    if data.dirty and callable(hook := getattr(data, "flush_hook", None)):
        hook()
    if data.dirty:  # through a journal of its own: crash-safe
        from ..review.store_flush import save_store_edits

        save_store_edits(data)
    return str(data.path)


def is_editable_store(path: str) -> bool:
    """Whether `path` is a writable zarr store written by this tool (labels in it are
    edited in place: :func:`editable_labels`)."""
    import os

    from ..io.store import is_own_store

    return is_own_store(path) and os.access(path, os.W_OK)


def editable_labels(path: str, data: Any) -> Any:
    """A Labels layer's data for labels read from `path`: a writable zarr store written
    by this tool opens for editing in place (painting goes into the store through the
    review autosave, see :mod:`napari_microfossil.review.labels_store`); anything else
    is `data` as read."""
    from ..review.labels_store import open_store_labels

    return open_store_labels(path) if is_editable_store(path) else data


def is_multiscale(layer: Any) -> bool:
    """Whether a layer shows a multiscale pyramid (its ``data`` is a list of levels)."""
    return bool(getattr(layer, "multiscale", False))


def pyramid_of(layer: Any) -> str | None:
    """The pyramid store a layer was opened from, or None."""
    path = meta(layer).get(PYRAMID)
    return str(path) if path else None


def _shape(layer: Any) -> tuple[int, ...]:
    return tuple(getattr(volume_of(layer), "shape", ()))


def scan_path_of(layer: Any, layers: Iterable[Any] = (), *, image: Any = None) -> str | None:
    """The scan file a labels layer belongs to, or None.

    The one rule every panel uses (the review autosave is anchored there, the
    Fine-tune output goes beside it). In order: the `image` the user chose, if it was
    read from a file; the scan a Segment result records; the Image layer it was made
    from (by name); an Image layer of the same shape that is not its confidence
    map; the file the labels layer itself was read from.

    Parameters
    ----------
    layer : napari layer
        The labels layer.
    layers : iterable of napari layers
        The viewer's layers, searched for the Image layers above.
    image : napari layer, optional
        An Image layer chosen explicitly (e.g. in the Fine-tune panel).
    """
    if image is not None and source_path(image):
        return source_path(image)
    md = meta(layer)
    if md.get(SOURCE_PATH):
        return str(md[SOURCE_PATH])
    images = [lyr for lyr in layers if _is_image(lyr)]
    wanted = md.get(SOURCE_IMAGE)
    for img in images:
        if wanted and img.name == wanted and source_path(img):
            return source_path(img)
    conf = md.get(CONFIDENCE_LAYER)
    for img in images:
        if img.name != conf and _shape(img) == _shape(layer) and source_path(img):
            return source_path(img)
    return source_path(layer)


def _is_image(layer: Any) -> bool:
    return type(layer).__name__ == "Image"


#: The colour of class 0 where it is drawn and its name has none of its own.
ZERO_COLOUR = (0.55, 0.85, 1.0, 1.0)


def draws_zero(class_names: Iterable[str], *, sparse: bool = False) -> bool:
    """Whether label 0 is drawn in a colour: when class 0 is a class of its own (named
    other than "background", e.g. the sandstone's "pore") on labels where every voxel
    has a class (a Segment result, a label volume). Never on `sparse` labels (placed
    label slices): their unlabelled planes are 0 too and would show as that class."""
    names = list(class_names)
    return bool(names) and names[0].strip().lower() != "background" and not sparse


def label_colormap(class_names: Iterable[str], *, draw_zero: bool | None = None) -> Any:
    """napari colormap giving each class its colour (unknown ids grey).

    Label 0 is transparent (napari's habit, right for "background") unless `draw_zero`
    (default :func:`draws_zero`): then class 0 gets its named colour, else
    :data:`ZERO_COLOUR`.
    """
    from napari.utils.colormaps import DirectLabelColormap

    from ..classes import _NAMED_COLOURS

    names = tuple(class_names)
    colours: dict[int | None, Any] = dict(class_colours(names))
    if names and (draws_zero(names) if draw_zero is None else draw_zero):
        colours[0] = _NAMED_COLOURS.get(names[0].strip().lower(), ZERO_COLOUR)
        if colours[0][3] == 0:
            colours[0] = ZERO_COLOUR
    colours[None] = (0.6, 0.6, 0.6, 1.0)
    return DirectLabelColormap(color_dict=colours)


def class_features(class_names: Iterable[str], *, sparse: bool = False) -> dict[str, list[Any]]:
    """A Labels layer's ``features`` table naming its classes: napari's status bar then
    says ``class: pore`` under the mouse. On `sparse` labels class 0 is
    ``"pore (or unlabelled)"``: an unreviewed plane is 0 too."""
    names = [str(n) for n in class_names]
    if sparse and names:
        names[0] = f"{names[0]} (or unlabelled)"
    return {"index": list(range(len(names))), "class": names}


def show_class_names(layer: Any, class_names: Iterable[str]) -> None:
    """Put class names on a Labels layer: its metadata (Review's class picker, the
    writer, Fine-tune), its colours, and the status bar's class under the mouse."""
    names = [str(n) for n in class_names]
    sparse = bool(meta(layer).get(PLACED))
    layer.metadata[CLASS_NAMES] = names
    layer.colormap = label_colormap(names, draw_zero=draws_zero(names, sparse=sparse))
    layer.features = class_features(names, sparse=sparse)
