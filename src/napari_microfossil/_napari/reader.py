"""napari reader: MicroCT scans and label volumes (TIFF, folders of slices, zarr)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import is_supported, read_volume
from .layers import (
    CLASS_NAMES,
    PATH,
    PYRAMID,
    SPACING_SOURCE,
    SPATIAL_UNITS,
    class_features,
    editable_labels,
    is_editable_store,
    label_colormap,
)
from .levels import DeferredView
from .place import place_on_open

log = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]

#: Scans larger than this (bytes) stay on disk; without a pyramid, napari says so.
BIG_BYTES = 1 << 30


def napari_get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return a reader for ``path`` if this plugin can open it, else ``None``."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not is_supported(path):
        return None
    return read_layers


def layer_data_for(path: str) -> LayerData:
    """Layer data for one path: an Image layer, or a Labels layer for our label volumes.

    A scan with a fresh pyramid (``microfossil pyramid SCAN``), or a pyramid store
    itself, opens as a multiscale Image layer (levels finest first, all lazy). A scan
    larger than :data:`BIG_BYTES` without one opens lazily at full resolution, with a
    notification saying how to build it. Smaller scans open as before (in memory).
    """
    from ..io import pyramid

    if pyramid.is_pyramid(path):
        pyr = pyramid.open_store(path)
        vol = read_volume(pyr.scan, lazy=True) if pyr.scan.exists() else None
        return _multiscale(pyr, str(pyr.scan), vol)
    vol = _read_lazily(path)
    pyr = pyramid.open_pyramid(path, volume=vol) if not vol.class_names else None
    if pyr is not None and len(pyr.levels) > 1:
        return _multiscale(pyr, path, vol)
    nbytes = int(np.prod(vol.shape)) * vol.dtype.itemsize
    editable = bool(vol.class_names) and is_editable_store(path)  # edited in the store
    if nbytes <= BIG_BYTES and not editable:
        with warnings.catch_warnings():  # already shown
            warnings.simplefilter("ignore")
            vol = read_volume(path)  # small: as before (in memory where the format allows)
    elif not vol.class_names and max(vol.shape) > pyramid.MAX_SIDE:
        _notify(
            f"{path} ({nbytes / 2**30:.1f} GiB) opened at full resolution without a "
            f"pyramid: the 3D view would load all of it. Build one once: Layers > Data > "
            f"Build multiscale pyramid (Microfossil), or `microfossil pyramid {path}`."
        )
    meta = _meta(path, vol)
    if vol.class_names:
        meta["metadata"][CLASS_NAMES] = list(vol.class_names)
        meta["colormap"] = label_colormap(vol.class_names)
        meta["features"] = class_features(vol.class_names)
    elif not looks_like_labels(path, vol):
        meta["colormap"] = "gray"
        return (vol.data, meta, "image")
    # Label slices sparser than the open scan go to their planes (by their file numbers).
    placed = place_on_open(path, vol.data, meta)
    if placed is not None:
        if vol.class_names:  # sparse now: 0 is also "not labelled", so not drawn
            meta["colormap"] = label_colormap(vol.class_names, draw_zero=False)
            meta["features"] = class_features(vol.class_names, sparse=True)
        return (placed, meta, "labels")
    if not vol.class_names:
        _adopt_scan_spacing(meta, vol)
    if editable:
        _watch_stores()
    return (editable_labels(path, vol.data) if editable else vol.data, meta, "labels")


def _watch_stores() -> None:
    """Store-backed labels in the current viewer get a 3D preview and a save on close."""
    try:
        import napari

        from .store_layers import watch_store_layers
    except ImportError:  # pragma: no cover
        return
    if (viewer := napari.current_viewer()) is not None:
        watch_store_layers(viewer)


#: Words in a file or folder name that say it holds labels, not a scan.
LABEL_WORDS = ("label", "mask", "truth", "annot", "segment")
#: At most this many values on the middle plane: labels even without such a name.
FEW_VALUES = 8


def looks_like_labels(path: str | Path, vol: Any) -> bool:
    """Whether a volume without class names is labels: integer data of at most 16 bits
    whose middle plane holds at most :data:`FEW_VALUES` values, or up to 256 when its
    name says labels (``labels_index/``, ``mask.tif``...)."""
    if np.dtype(vol.dtype).kind not in "ui" or np.dtype(vol.dtype).itemsize > 2:
        return False
    named = any(w in part.lower() for part in Path(path).parts[-2:] for w in LABEL_WORDS)
    plane = np.asarray(vol.data[vol.shape[0] // 2])
    return int(np.unique(plane).size) <= (256 if named else FEW_VALUES)


def _adopt_scan_spacing(meta: dict[str, Any], vol: Any) -> None:
    """Labels without a voxel size take that of an open scan with the same plane size,
    so they are drawn over it rather than 2x or 3x too small."""
    if vol.spacing_source != "default":
        return
    try:
        import napari
        from napari.layers import Image

        viewer = napari.current_viewer()
    except ImportError:  # pragma: no cover
        return
    for layer in reversed(list(getattr(viewer, "layers", []))):
        known = layer.metadata.get(SPACING_SOURCE) not in (None, "default")
        if isinstance(layer, Image) and known and tuple(layer.data.shape[-2:]) == vol.shape[-2:]:
            meta["scale"] = tuple(float(s) for s in layer.scale[-3:])
            meta["metadata"][SPACING_SOURCE] = f"from the scan {layer.name!r}"
            _notify(f"{meta['name']}: no voxel size in the file; drawn at that of {layer.name!r}")
            return


def _read_lazily(path: str) -> Any:
    """:func:`read_volume`, lazily; a label volume's missing chunks are background (zarr
    leaves out chunks of zeros), not a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = read_volume(path, lazy=True)
    for w in caught:
        if vol.class_names and "chunks are missing" in str(w.message):
            continue
        warnings.warn(w.message, w.category, stacklevel=3)
    return vol


def _meta(path: str | Path, vol: Any) -> dict[str, Any]:
    p = Path(path)
    name = p.stem if p.suffix.lower() in {".tif", ".tiff", ".zarr"} else p.name
    return {
        "name": name,
        "scale": tuple(vol.spacing),
        "units": SPATIAL_UNITS,
        "metadata": {PATH: str(path), SPACING_SOURCE: vol.spacing_source},
    }


def _multiscale(pyr: Any, scan: str, vol: Any) -> LayerData:
    """A multiscale Image layer: level 0 at the scan's voxel size, the rest scaled by
    napari from their shapes."""
    meta = _meta(scan, vol) if vol is not None else _meta(scan, _Scaled(pyr.scales[0]))
    meta["metadata"][PYRAMID] = str(pyr.path)
    meta["multiscale"] = True
    # napari reads the whole depth of a level it indexes unless indexing is lazy
    levels = [DeferredView(level) for level in pyr.levels]
    names = read_volume(pyr.path).class_names if pyr.labels else None
    if names:  # the pyramid of a label volume, opened as such
        meta["metadata"][CLASS_NAMES] = list(names)
        meta["colormap"] = label_colormap(names)
        meta["features"] = class_features(names)
        return (levels, meta, "labels")
    meta["colormap"] = "gray"
    return (levels, meta, "image")


class _Scaled:
    """Stands in for a Volume where only the voxel size is known."""

    def __init__(self, spacing: tuple[float, float, float]) -> None:
        self.spacing = spacing
        self.spacing_source = "metadata"


def _notify(message: str) -> None:
    log.warning("%s", message)
    try:
        from napari.utils.notifications import show_info
    except ImportError:  # pragma: no cover - napari is there when napari calls us
        return
    show_info(message)


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read one path into napari layer data; errors become a napari notification."""
    if isinstance(path, list):
        path = path[0]
    try:
        return [layer_data_for(path)]
    except InputError as exc:
        log.error("%s", exc)
        raise
