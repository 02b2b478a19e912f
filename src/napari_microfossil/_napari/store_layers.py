"""What a viewer showing labels kept in a zarr store needs, whichever panel is open.

:func:`watch_store_layers` installs, once per viewer:

- :class:`~.labels_3d.Preview3D`: the 3D view shows such layers through a small
  preview instead of reading them whole;
- :class:`SaveOnClose`: edits not saved yet are saved into the store when the layer
  is removed, the viewer's window closes or the application quits, through the
  Review panel's autosave when it follows the layer, else through a journal of
  their own (:func:`~napari_microfossil.review.store_flush.save_store_edits`),
  crash-safe either way. (The interpreter's exit saves them too, without Qt:
  :func:`~napari_microfossil.review.store_flush.save_at_exit`.)

Whoever adds a store-backed Labels layer to a viewer (the reader's caller, Segment)
calls :func:`watch_store_layers` with it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QApplication

from ..io.pyramid import MAX_SIDE
from .labels_3d import Preview3D

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

__all__ = ["SaveOnClose", "save_layer_edits", "watch_store_layers"]


def watch_store_layers(viewer: napari.Viewer, *, max_side: int = MAX_SIDE) -> Preview3D:
    """Install :class:`Preview3D` and :class:`SaveOnClose` on `viewer` (once); returns
    the former."""
    SaveOnClose.install(viewer)
    return Preview3D.install(viewer, max_side=max_side)


def save_layer_edits(layer: Any) -> int:
    """Save the unsaved edits of a store-backed Labels layer into its store; returns
    the chunks written by this call's own journal (0 when a review's autosave saved,
    or nothing was unsaved). Failures are shown, not raised."""
    from ..review.labels_store import StoreLabels
    from ..review.store_flush import save_store_edits

    data = getattr(layer, "data", None)
    if not isinstance(data, StoreLabels) or not data.dirty:
        return 0
    try:
        if callable(data.flush_hook):
            data.flush_hook()  # the review's autosave: its record stays the store's
            return 0
        return save_store_edits(data)
    except (OSError, ValueError) as exc:
        from napari.utils.notifications import show_error

        show_error(f"{layer.name}: edits not saved into {data.path} ({exc})")
        return 0


class SaveOnClose(QObject):
    """Saves the edits of a viewer's store-backed Labels layers when they go away.

    One per viewer (:meth:`install`), a child of its main window: on a layer's
    removal, the window's Close and the application's ``aboutToQuit``.
    """

    NAME = "napari-microfossil-save-on-close"

    def __init__(self, viewer: napari.Viewer, *, parent: Any = None) -> None:
        super().__init__(parent)
        self.setObjectName(self.NAME)
        self.viewer = viewer
        viewer.layers.events.removed.connect(self._on_removed)
        if parent is not None:
            parent.installEventFilter(self)
        if (app := QApplication.instance()) is not None:
            app.aboutToQuit.connect(self.save_all)

    @classmethod
    def install(cls, viewer: napari.Viewer) -> SaveOnClose:
        """The viewer's :class:`SaveOnClose`, made on the first call."""
        window = viewer.window._qt_window
        found = window.findChild(cls, cls.NAME)
        return found if found is not None else cls(viewer, parent=window)

    def save_all(self) -> int:
        """Save every store-backed layer of the viewer; chunks written by own journals."""
        with contextlib.suppress(RuntimeError):  # the viewer is half torn down
            return sum(save_layer_edits(layer) for layer in list(self.viewer.layers))
        return 0

    def _on_removed(self, event: Any) -> None:
        save_layer_edits(event.value)

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:
        # getattr: Qt may deliver events while the Python side is torn down.
        if event is not None and event.type() == QEvent.Type.Close and obj is self.parent():
            self.save_all()
        return False
