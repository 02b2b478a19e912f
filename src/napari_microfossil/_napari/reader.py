"""napari reader: MicroCT scans and label volumes (TIFF, folders of slices, zarr)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import is_supported, read_volume
from .layers import CLASS_NAMES, PATH, SPACING_SOURCE, SPATIAL_UNITS, label_colormap

log = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]


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
    """Layer data for one path: an Image layer, or a Labels layer for our label volumes."""
    vol = read_volume(path)
    name = (
        Path(path).stem
        if Path(path).suffix.lower() in {".tif", ".tiff", ".zarr"}
        else Path(path).name
    )
    meta: dict[str, Any] = {
        "name": name,
        "scale": tuple(vol.spacing),
        "units": SPATIAL_UNITS,
        "metadata": {PATH: str(path), SPACING_SOURCE: vol.spacing_source},
    }
    if vol.class_names:
        meta["metadata"][CLASS_NAMES] = list(vol.class_names)
        meta["colormap"] = label_colormap(vol.class_names)
        return (vol.data, meta, "labels")
    meta["colormap"] = "gray"
    return (vol.data, meta, "image")


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read one path into napari layer data; errors become a napari notification."""
    if isinstance(path, list):
        path = path[0]
    try:
        return [layer_data_for(path)]
    except InputError as exc:
        log.error("%s", exc)
        raise
