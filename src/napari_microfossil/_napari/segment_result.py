"""What the Segment panel puts in the viewer, and where a big result is kept.

A result goes into ``"<image> fossils"`` (and ``"<image> confidence"``), keeping the
slices the user corrected in the layer it replaces. A scan whose labels would not fit
comfortably in memory (more than :data:`STORE_BYTES`, or a scan napari shows lazily:
a pyramid, a big TIFF or zarr) is segmented from its file by the streaming use case
(:func:`~napari_microfossil.workflows.segment.iter_segment_scan`) into a zarr store
beside the scan (:func:`store_paths`), and the labels layer is backed by that store
(:class:`~napari_microfossil.review.labels_store.StoreLabels`): painting and the
review autosave write into it, nothing holds the volume in memory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import QHBoxLayout, QWidget

from ..model import DEFAULT_MODEL_NAME
from ..review import ReviewState
from ..workflows.keep import keep_planes
from . import carry
from . import layers as md
from ._common import replace_or_add

#: Labels larger than this (bytes, uint8: voxels) are segmented into a zarr store.
STORE_BYTES = 1 << 30
#: Suffixes of the stores beside the scan (``core.tif.labels.zarr``).
LABELS_SUFFIX, CONFIDENCE_SUFFIX = ".labels", ".confidence"


def wants_store(layer: Any, *, limit: int = STORE_BYTES) -> bool:
    """Whether Segment should write the labels of the Image `layer` to a zarr store:
    it was read from a file, and its labels (one byte a voxel) exceed `limit` bytes or
    napari shows it lazily (a pyramid, or a scan too big to read whole)."""
    if not md.source_path(layer):
        return False
    volume = md.volume_of(layer)
    lazy = md.is_multiscale(layer) or not isinstance(volume, np.ndarray)
    return lazy or int(np.prod(volume.shape[-3:])) > limit


def store_paths(scan: str | Path, *, taken: Iterable[str | Path] = ()) -> tuple[Path, Path]:
    """Where a Segment result of `scan` goes: ``<scan>.labels.zarr`` and
    ``<scan>.confidence.zarr`` beside it, in the cache folder if the scan's folder is
    read-only; ``.labels-1.zarr``... when a store in `taken` (layers shown now) has the
    name, so a new result never overwrites labels still on screen."""
    from ..cache import cache_root

    scan = Path(os.path.abspath(scan))
    folder = scan.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        digest = hashlib.sha256(str(scan).encode()).hexdigest()[:16]
        folder = cache_root() / "labels" / digest
        folder.mkdir(parents=True, exist_ok=True)
    used = {Path(os.path.abspath(p)) for p in taken}
    n = 0
    while True:
        tag = "" if n == 0 else f"-{n}"
        labels = folder / f"{scan.name}{LABELS_SUFFIX}{tag}.zarr"
        conf = folder / f"{scan.name}{CONFIDENCE_SUFFIX}{tag}.zarr"
        if labels not in used and conf not in used:
            return labels, conf
        n += 1


def stores_shown(viewer: Any) -> list[str]:
    """The zarr stores that layers of `viewer` show (labels kept in a store, lazy images)."""
    out = []
    for layer in viewer.layers:
        store = md.store_of(layer)
        if store is not None:
            out.append(store)
        elif str(md.source_path(layer) or "").endswith(".zarr"):
            out.append(str(md.source_path(layer)))
    return out


def open_stored(result: Any) -> tuple[Any, Any]:
    """The labels (editable, in their store) and confidence (lazy) of a
    :class:`~napari_microfossil.workflows.segment.SegmentResult`."""
    from ..io import read_volume
    from ..review.labels_store import open_store_labels

    labels = open_store_labels(result.labels_path)
    conf = None
    if result.confidence_path is not None:
        conf = read_volume(result.confidence_path, lazy=True).data
    return labels, conf


def show_result(
    viewer: Any,
    labels: Any,
    confidence: Any,
    class_names: Iterable[str],
    names: tuple[str, str],
    common: dict[str, Any],
    metadata: dict[str, Any],
    *,
    kept: int | None = None,
) -> int:
    """Show a Segment result; returns how many corrected slices were kept.

    Corrected slices of the labels layer it replaces are ground truth: copied into
    `labels` verbatim (unless `kept` says the use case copied them already), with
    their record. So are the reviewed planes of labels placed on the same scan
    (:mod:`.carry`), which the result's record then counts as reviewed too. Another
    shape's record is dropped now (not after: Review may restore on insertion).
    """
    from napari.layers import Labels

    target, conf_name = names
    layers = viewer.layers
    shape = tuple(int(n) for n in labels.shape)
    placed = carry.placed_sources(viewer, metadata.get(md.SOURCE_IMAGE), shape, skip=target)
    old = layers[target] if target in layers and isinstance(layers[target], Labels) else None
    taken: carry.Planes = set()
    record = None
    if old is not None:
        if md.has_corrections(old) and tuple(old.data.shape) == shape:
            slices = md.reviewed_slices_of(old)
            if kept is None:
                keep_planes(labels, old.data, slices)
            taken = carry.planes_of(slices)
            record = old.metadata.get(md.REVIEW)
        elif tuple(old.data.shape) != shape or not placed:
            old.metadata.pop(md.REVIEW, None)
        else:
            record = old.metadata.get(md.REVIEW)
    taken |= carry.carry_placed(labels, placed, taken=taken)
    if placed:
        sources = [md.meta(p).get(md.REVIEW) for p in placed]
        if isinstance(record, ReviewState) and record.shape in (None, shape):
            carry.merge_record(record, sources)  # in place: Review follows this object
        else:
            metadata[md.REVIEW] = carry.new_record(shape, placed)
    done = len(taken)
    conf = None
    if confidence is not None:
        # First, so that the labels' CONFIDENCE_LAYER names a layer when they appear.
        style = {"colormap": "viridis", "contrast_limits": (0, 100), "opacity": 0.6}
        about = {md.UNIT: "percent", md.LABELS_LAYER: target}
        conf = replace_or_add(
            viewer, conf_name, "image", confidence, metadata=about, **style, **common
        )
    metadata[md.CLASS_NAMES] = list(class_names)
    colormap = md.label_colormap(tuple(class_names))
    shown = replace_or_add(
        viewer, target, "labels", labels, colormap=colormap, metadata=metadata, **common
    )
    md.show_class_names(shown, class_names)  # the status bar names the class under the mouse
    if md.store_of(shown) is not None:  # a 3D preview instead of a whole read; saved on close
        from .store_layers import watch_store_layers

        watch_store_layers(viewer)
    if conf is not None and layers.index(conf) > layers.index(shown):
        layers.move(layers.index(conf), layers.index(shown))  # labels drawn over it
    layers.selection.active = shown
    return done


def spin(box: Any, lo: float, hi: float, step: float, value: float) -> Any:
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setValue(value)
    return box


def row(*widgets: QWidget, stretch_first: bool = True) -> QHBoxLayout:
    out = QHBoxLayout()
    for i, widget in enumerate(widgets):
        out.addWidget(widget, 1 if stretch_first and i == 0 else 0)
    return out


def model_key(path: str | Path) -> str:
    """``"default"``, or the model file's absolute path (one entry per file)."""
    if str(path) == DEFAULT_MODEL_NAME:
        return DEFAULT_MODEL_NAME
    return str(Path(path).expanduser().resolve())


def result_names(image: str) -> tuple[str, str]:
    """The labels and confidence layers Segment makes from the image layer `image`."""
    return f"{image} fossils", f"{image} confidence"


def split_values(text: str) -> list[str]:
    """The values typed in the voxel-size field (commas or spaces between them)."""
    return text.replace(",", " ").split()
