"""The 3D view of labels kept in a zarr store: a small read-only preview, not the volume.

napari draws a Labels layer in 3D from its whole data: for a store-backed 2048³ layer
that is 8 GiB read from the store into one texture (a freeze, then out of memory).
napari 0.9 cannot paint a multiscale Labels layer, so the layer cannot simply be a
pyramid. :class:`Preview3D` instead, when the viewer goes to 3D, hides each visible
store-backed Labels layer larger than `max_side` voxels along an axis and shows in
its place a read-only preview (:func:`~napari_microfossil.review.store_preview.iter_preview`:
the labels 2, 4, 8… times smaller by the most frequent label, at most 512 voxels a
side), built chunk by chunk in a worker thread with a progress bar. Back in 2D the
preview goes and the layer comes back. The preview is kept for the next time: only
the chunks painted since are redone.

Don't tick the hidden layer's eye while in 3D: napari would then draw it whole.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QObject

from ..io.pyramid import MAX_SIDE

if TYPE_CHECKING:
    import napari

    from ..review.store_preview import Preview

log = logging.getLogger(__name__)

__all__ = ["PREVIEW_SUFFIX", "Preview3D", "needs_preview"]

#: Name of a preview layer: the labels layer's name and this.
PREVIEW_SUFFIX = " (3D preview)"


def needs_preview(layer: Any, max_side: int = MAX_SIDE) -> bool:
    """Whether `layer` is a store-backed Labels layer too big to draw whole in 3D."""
    from . import layers

    return layers.store_of(layer) is not None and max(layer.data.shape) > max_side


def _connect_before_slicing(viewer: Any, callback: Any) -> None:
    """Connect `callback` to the viewer's ndisplay event *before* napari slices its
    layers for the new view (napari puts a plugin's callbacks after its own, and its
    slicing would read a big layer whole before the callback hides it).

    Uses the ``before``/``after`` placement of napari's ``EventEmitter.connect``; if
    napari changed and that fails, the callback goes last (logged): the 3D view then
    reads the layer whole once, as without this module.
    """
    import weakref

    emitter = viewer.dims.events.ndisplay
    slicing = (weakref.ref(viewer), "_update_layers")  # how napari keeps the callback
    try:
        at = list(emitter.callbacks).index(slicing)
        after = [emitter.callbacks[at - 1]] if at else None  # None: napari refuses
        emitter.connect(callback, before=[slicing], after=after)
    except (ValueError, RuntimeError, TypeError) as exc:
        log.warning("3D preview: cannot run before napari's slicing (%s)", exc)
        emitter.connect(callback)


class Preview3D(QObject):
    """Shows store-backed Labels layers through a preview while `viewer` is in 3D.

    One per viewer (:meth:`install`), a child of its main window.

    Parameters
    ----------
    viewer : napari.Viewer
    max_side : int
        Largest side of a preview, in voxels; layers no larger are drawn whole.
    """

    NAME = "napari-microfossil-labels-3d"

    def __init__(self, viewer: napari.Viewer, *, max_side: int = MAX_SIDE, parent: Any = None):
        super().__init__(parent)
        self.setObjectName(self.NAME)
        self.viewer, self.max_side = viewer, int(max_side)
        #: id(layer) -> [layer, its preview layer or None, the worker building it or None]
        self._shown: dict[int, list[Any]] = {}
        self._kept: dict[int, Preview] = {}  # id(layer) -> its last preview
        _connect_before_slicing(viewer, self._on_ndisplay)  # hide before a 3D slice
        viewer.dims.events.ndisplay.connect(self._after_ndisplay)  # show after a 2D one
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)
        if viewer.dims.ndisplay == 3:
            self._enter_3d()

    @classmethod
    def install(cls, viewer: napari.Viewer, *, max_side: int = MAX_SIDE) -> Preview3D:
        """The viewer's :class:`Preview3D`, made on the first call."""
        window = viewer.window._qt_window
        found = window.findChild(cls, cls.NAME)
        return found if found is not None else cls(viewer, max_side=max_side, parent=window)

    def preview_of(self, layer: Any) -> Any:
        """The preview layer shown for `layer` now, or None."""
        entry = self._shown.get(id(layer))
        return None if entry is None else entry[1]

    def previews(self) -> list[Any]:
        """The preview layers shown now."""
        return [e[1] for e in self._shown.values() if e[1] is not None]

    def building(self) -> list[Any]:
        """The workers building a preview now."""
        return [e[2] for e in self._shown.values() if e[2] is not None]

    # ------------------------------------------------------------------ events

    def _on_ndisplay(self, event: Any = None) -> None:
        if self.viewer.dims.ndisplay == 3:
            self._enter_3d()

    def _after_ndisplay(self, event: Any = None) -> None:
        # After napari sliced the layers for 2D (a hidden layer's slice too): shown
        # again, the layer reads one plane, not the volume of its last (3D) slice.
        if self.viewer.dims.ndisplay != 3:
            self._leave_3d()

    def _on_inserted(self, event: Any) -> None:
        layer = event.value
        if self.viewer.dims.ndisplay == 3 and layer.visible and needs_preview(layer, self.max_side):
            self._show(layer)

    def _on_removed(self, event: Any) -> None:
        layer = event.value
        self._kept.pop(id(layer), None)
        if (entry := self._shown.pop(id(layer), None)) is not None:
            self._drop(entry)
            return
        for entry in list(self._shown.values()):
            if entry[1] is layer:  # the user removed a preview: the labels stay hidden
                entry[1] = None

    # ------------------------------------------------------------------ showing

    def _enter_3d(self) -> None:
        for layer in list(self.viewer.layers):
            if id(layer) not in self._shown and layer.visible:
                if needs_preview(layer, self.max_side):
                    self._show(layer)

    def _leave_3d(self) -> None:
        for entry in list(self._shown.values()):
            self._drop(entry)
            entry[0].visible = True
        self._shown.clear()

    def _show(self, layer: Any) -> None:
        from napari.qt.threading import create_worker
        from napari.utils import progress

        from ..review.store_preview import iter_preview

        layer.visible = False  # before napari draws it in 3D
        entry: list[Any] = [layer, None, None]
        self._shown[id(layer)] = entry
        bar = progress(total=0, desc=f"3D preview of {layer.name}")
        previous = self._kept.get(id(layer))
        worker = create_worker(iter_preview, layer.data, max_side=self.max_side, previous=previous)

        def on_progress(p: Any) -> None:
            if bar.total != p.total:
                bar.total = p.total
            bar.n = p.done
            bar.refresh()

        def on_built(prev: Preview) -> None:
            bar.close()
            entry[2] = None
            if self._shown.get(id(layer)) is not entry:
                return  # back in 2D, or the layer was removed, meanwhile
            self._kept[id(layer)] = prev
            entry[1] = self._add_preview(layer, prev)

        def on_error(exc: BaseException) -> None:
            from napari.utils.notifications import show_error

            bar.close()
            entry[2] = None
            show_error(f"3D preview of {layer.name!r}: {exc}")

        worker.yielded.connect(on_progress)
        worker.returned.connect(on_built)
        worker.errored.connect(on_error)
        worker.finished.connect(bar.close)
        entry[2] = worker
        worker.start()

    def _add_preview(self, layer: Any, prev: Preview) -> Any:
        scale = np.asarray(layer.scale, dtype=float)
        f = prev.factor
        active = self.viewer.layers.selection.active
        new = self.viewer.add_labels(
            prev.data,
            name=layer.name + PREVIEW_SUFFIX,
            scale=scale * f,
            translate=np.asarray(layer.translate, dtype=float) + scale * (f - 1) / 2,
            opacity=layer.opacity,
            blending=layer.blending,
            colormap=layer.colormap,
        )
        new.editable = False
        new.metadata["preview_of"] = layer.name
        self.viewer.layers.move(self.viewer.layers.index(new), self.viewer.layers.index(layer) + 1)
        if active is not None:
            self.viewer.layers.selection.active = active
        log.info("%s: shown in 3D through a %dx smaller preview", layer.name, f)
        return new

    def _drop(self, entry: list[Any]) -> None:
        _, preview, worker = entry
        if worker is not None:
            worker.quit()
        entry[1] = entry[2] = None
        if preview is not None and preview in self.viewer.layers:
            self.viewer.layers.remove(preview)
