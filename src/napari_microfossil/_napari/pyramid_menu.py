"""Layers > Data > "Build multiscale pyramid (Microfossil)": ``microfossil pyramid`` from
napari, for the selected scan, with a progress bar in napari's activity dock; when it is
built the layer is shown through it (same name, place, contrast and colormap)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from . import layers

if TYPE_CHECKING:
    import napari.viewer

log = logging.getLogger(__name__)


def build_pyramid_for_layer(viewer: napari.viewer.Viewer) -> Any:
    """Build the pyramid of the selected Image layer's scan in a worker thread.

    Returns the worker (None if there is nothing to do). The layer is replaced by the
    multiscale one on the main thread once the pyramid is built.
    """
    from napari.layers import Image
    from napari.qt.threading import create_worker
    from napari.utils import progress
    from napari.utils.notifications import show_error, show_info

    from ..io.pyramid import iter_build_pyramid

    layer = viewer.layers.selection.active
    if not isinstance(layer, Image):  # napari may hand over proxies: no type() here
        show_error("Build pyramid: select the Image layer of a scan opened from a file")
        return None
    if layers.is_multiscale(layer):
        show_info(f"Build pyramid: {layer.name!r} is already shown through a pyramid")
        return None
    path = layers.source_path(layer)
    if path is None:
        show_error(f"Build pyramid: {layer.name!r} was not read from a file")
        return None
    bar = progress(total=0, desc=f"pyramid of {layer.name}")
    worker = create_worker(iter_build_pyramid, path)

    def on_progress(p: Any) -> None:
        if bar.total != p.total:
            bar.total = p.total
        bar.set_description(f"pyramid of {layer.name}: {p.stage}")
        bar.n = p.done
        bar.refresh()

    def on_built(where: Any) -> None:
        bar.close()
        try:
            _show_through(viewer, layer, path)
        except InputError as exc:
            show_error(f"Build pyramid: {exc}")
            return
        show_info(f"Pyramid of {layer.name!r} built: {where}")

    def on_error(exc: BaseException) -> None:
        bar.close()
        show_error(f"Build pyramid: {exc}")

    worker.yielded.connect(on_progress)
    worker.returned.connect(on_built)
    worker.errored.connect(on_error)
    worker.start()
    return worker


def _show_through(viewer: Any, old: Any, path: str) -> Any:
    """Replace `old` by the multiscale layer of `path`, keeping what the user set."""
    from .reader import layer_data_for

    data, meta, _ = layer_data_for(path)
    if not meta.get("multiscale"):
        return old  # a scan too small for more than one level
    if old not in viewer.layers:
        return None  # the user removed it meanwhile
    index = viewer.layers.index(old)
    meta.update(
        name=old.name,
        colormap=old.colormap,
        contrast_limits=tuple(old.contrast_limits),
        scale=tuple(old.scale),
        visible=old.visible,
        opacity=old.opacity,
    )
    meta["metadata"] = {**old.metadata, **meta["metadata"]}
    viewer.layers.remove(old)
    new = viewer.add_image(data, **meta)
    viewer.layers.move(viewer.layers.index(new), index)
    return new
