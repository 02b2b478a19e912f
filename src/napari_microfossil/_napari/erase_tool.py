"""The Review panel's "erase object" gestures: a one-click mode and a key.

:class:`EraseTool` owns the napari side of erasing an object: its checkable button, the
viewer mouse callback of the click mode (the layer sits in pan/zoom meanwhile, so the
click cannot paint), the point under a 3D click, and the key bound on the reviewed
layer. What an erase does (the object, the slices it marks, undo) is the panel's
``erase_at``, i.e. :meth:`~napari_microfossil.review.ReviewSession.erase`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QPushButton

from ..review import first_labelled_on_ray

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels

__all__ = ["ERASE_KEY", "EraseTool"]

#: Key, bound on the reviewed Labels layer, that erases the object under the mouse.
ERASE_KEY = "Shift-E"


class EraseTool:
    """Erase-by-click mode and the :data:`ERASE_KEY` key for one Labels layer at a time.

    Parameters
    ----------
    viewer : napari.Viewer
    erase_at : callable
        ``erase_at(position, *, world) -> bool``: erase the object at `position`
        (world coordinates, or the layer's data coordinates with ``world=False``).
    say : callable
        ``say(text)``: show a one-line status to the user.

    Attributes
    ----------
    button : QPushButton
        The checkable "Erase object (click)" button; checked while the mode is on.
    layer : napari.layers.Labels or None
        The layer the gestures act on (see :meth:`attach`).
    """

    def __init__(
        self,
        viewer: napari.Viewer,
        *,
        erase_at: Callable[..., bool],
        say: Callable[[str], None],
    ) -> None:
        self.viewer = viewer
        self.layer: Labels | None = None
        self._erase_at, self._say = erase_at, say
        self._mode_before: str | None = None  # the layer's mode, while the click mode is on
        self.button = QPushButton("Erase object (click)")
        self.button.setCheckable(True)
        self.button.setToolTip(
            "Then click an object on the canvas: its 3D connected body (same label) is "
            f"erased. Or press {ERASE_KEY} with the mouse over it."
        )
        self.button.toggled.connect(self.set_mode)

    def attach(self, layer: Labels | None) -> None:
        """Act on `layer` from now on (None: on no layer); the previous one loses the key."""
        if self.layer is not None:
            self.set_mode(False)
            self.layer.bind_key(ERASE_KEY, None, overwrite=True)
        self.layer = layer
        if layer is not None:
            layer.bind_key(ERASE_KEY, self._on_key, overwrite=True)

    def close(self) -> None:
        """Let go of the layer and of the viewer's mouse callback."""
        self.attach(None)
        self._drop_callback()

    @property
    def active(self) -> bool:
        """Whether the click mode is on."""
        return self._mode_before is not None

    def set_mode(self, on: bool) -> None:
        """While on, the next click on the canvas erases the object under it; the layer
        is in pan/zoom mode meanwhile (the click must not paint), then gets its mode back."""
        layer, was = self.layer, self._mode_before
        on = bool(on) and layer is not None
        if on and was is None and layer is not None:
            if self.on_click not in self.viewer.mouse_drag_callbacks:
                self.viewer.mouse_drag_callbacks.append(self.on_click)
            self._mode_before, layer.mode = str(layer.mode), "pan_zoom"
            self._say("click the object to erase")
        elif not on and was is not None:
            # napari is iterating over the callbacks when a click ends the mode: drop ours
            # after that loop (removing it now would skip the next callback).
            QTimer.singleShot(0, self._drop_callback)
            self._mode_before = None
            if layer is not None and layer.mode == "pan_zoom":
                layer.mode = was
        self.button.blockSignals(True)
        self.button.setChecked(on)
        self.button.blockSignals(False)

    def _drop_callback(self) -> None:
        callbacks = self.viewer.mouse_drag_callbacks
        if self._mode_before is None and self.on_click in callbacks:
            callbacks.remove(self.on_click)

    def on_click(self, viewer: Any, event: Any) -> None:
        """Viewer mouse-press callback of the click mode: erase where the user clicked."""
        if self._mode_before is None or getattr(event, "type", "mouse_press") != "mouse_press":
            return  # the mode ended (the callback goes next), or not a press
        try:
            point = None if self.layer is None else self.clicked_point(self.layer, event)
            if point is None:
                self._say("no object under the click")
            else:
                self._erase_at(point, world=False)
        finally:
            self.set_mode(False)

    def clicked_point(self, layer: Labels, event: Any) -> np.ndarray | None:
        """The clicked voxel (data coordinates, shape ``(3,)``); in 3D, the first
        labelled one on the ray, or None when the ray misses the labels."""
        pos = np.asarray(layer.world_to_data(event.position), dtype=float)
        shown = list(getattr(event, "dims_displayed", []) or [])
        if self.viewer.dims.ndisplay != 3 or len(shown) != 3:
            return pos
        ends = layer.get_ray_intersections(event.position, event.view_direction, shown, world=True)
        if ends[0] is None or ends[1] is None:
            return None
        a, b = pos.copy(), pos.copy()
        a[shown], b[shown] = ends
        return first_labelled_on_ray(layer.data, a, b)

    def _on_key(self, layer: Any = None) -> None:
        # A key press comes with the mouse over the canvas: the cursor is where the user looks.
        self._erase_at(self.viewer.cursor.position, world=True)
