"""The one object the plugin's panels share in a viewer: the model registry, the
current review session, and the signals through which panels talk.

No panel imports another panel. A panel asks :meth:`PluginContext.of` for the viewer's
context and connects to its signals; the context lives as a child of the viewer's main
window (found by object name), so it is per viewer, created on first use and gone with
the window — no module-level state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Signal

from ..model import DEFAULT_MODEL_NAME

PLUGIN_NAME = "napari-microfossil"
_OBJECT_NAME = "napari-microfossil-context"


class PluginContext(QObject):
    """Shared state of the plugin's panels in one viewer.

    Signals
    -------
    model_added(str path, bool select)
        A model file was registered (e.g. by Fine-tune); Segment lists it and, with
        ``select``, chooses it.
    review_changed(object layer)
        The review record of a labels layer changed (slices marked, edits, a restore).
    review_layer_changed(object layer)
        The Review panel now reviews another labels layer (or None).
    """

    model_added = Signal(str, bool)
    review_changed = Signal(object)
    review_layer_changed = Signal(object)

    def __init__(self, viewer: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(_OBJECT_NAME)
        self.viewer = viewer
        self._models: list[str] = [DEFAULT_MODEL_NAME]
        self._review_layer: Any = None
        self._segmenter: Callable[[str, str | None], Any] | None = None

    @classmethod
    def of(cls, viewer: Any) -> PluginContext:
        """The viewer's context, created on first use.

        `viewer` may be the proxy napari hands plugin widgets: the context keeps the
        viewer itself, whose Qt window it lives in.
        """
        viewer = getattr(viewer, "__wrapped__", viewer)
        window = getattr(getattr(viewer, "window", None), "_qt_window", None)
        if window is None:
            raise LookupError("the napari-microfossil panels need a viewer with a window")
        found = window.findChild(QObject, _OBJECT_NAME)
        if isinstance(found, cls):
            return found
        return cls(viewer, parent=window)

    # ---------------------------------------------------------------- models

    @property
    def models(self) -> tuple[str, ...]:
        """Registered model files, ``"default"`` first."""
        return tuple(self._models)

    def add_model(self, path: str | Path, *, select: bool = True) -> None:
        """Register a model file (once) and tell the panels; ``select`` asks to choose it."""
        text = str(path)
        if text not in self._models:
            self._models.append(text)
        self.model_added.emit(text, select)

    # ---------------------------------------------------------------- review

    @property
    def review_layer(self) -> Any:
        """The labels layer the Review panel reviews, if it is still in the viewer."""
        layer = self._review_layer
        if layer is not None and layer not in self.viewer.layers:
            return None
        return layer

    def set_review_layer(self, layer: Any) -> None:
        if layer is not self._review_layer:
            self._review_layer = layer
            self.review_layer_changed.emit(layer)

    def notify_review_changed(self, layer: Any) -> None:
        self.review_changed.emit(layer)

    # ---------------------------------------------------------------- docking

    def dock_as_tab(self, panel: Any) -> None:
        """Put `panel`'s dock in a tab beside the plugin's other docked panels.

        Call from the panel's ``showEvent``: napari docks plugin widgets one under
        the other, which with four panels grows the window past a laptop screen.
        Does nothing when the panel is not docked, or is already tabbed with them.
        The dock's Qt title gets its ``&`` doubled: Qt reads ``&`` in a title as a
        mnemonic, so a tab named "Review & correct" would show "Review _correct"
        (napari's name of the dock stays).
        """
        from qtpy.QtWidgets import QDockWidget

        dock = panel.parentWidget()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        if dock is None:
            return
        title = dock.windowTitle()
        if "&" in title and "&&" not in title:
            dock.setWindowTitle(title.replace("&", "&&"))
        window = getattr(getattr(self.viewer, "window", None), "_qt_window", None)
        if window is None or dock.isFloating():
            return
        ours = [
            d
            for d in window.findChildren(QDockWidget)
            if d is not dock
            and d.isVisible()
            and not d.isFloating()
            and type(d.widget()).__module__.startswith(__package__ or "napari_microfossil")
        ]
        if not ours or dock in window.tabifiedDockWidgets(ours[0]):
            return
        window.tabifyDockWidget(ours[0], dock)
        dock.show()
        dock.raise_()

    # ---------------------------------------------------------------- segment

    def provide_segmenter(
        self, segment: Callable[[str, str | None], Any] | None, *, owner: QObject | None = None
    ) -> None:
        """Segment registers how to segment an image layer (by name) with a model file.

        With `owner` (the Segment panel), the registration ends when it is destroyed,
        so a closed panel is never asked to segment.
        """
        self._segmenter = segment
        if owner is not None and segment is not None:
            owner.destroyed.connect(lambda *_: self._drop_segmenter(segment))

    def _drop_segmenter(self, segment: Callable[[str, str | None], Any]) -> None:
        # getattr: when the window closes, the context may be torn down before the panel.
        if getattr(self, "_segmenter", None) is segment:
            self._segmenter = None

    @property
    def can_segment(self) -> bool:
        return self._segmenter is not None

    def segment(self, model: str | Path, image: str | None = None) -> Any:
        """Run Segment with `model` on the named image layer; returns its worker.

        Raises
        ------
        LookupError
            If no Segment panel is open.
        """
        if self._segmenter is None:
            raise LookupError("no Segment panel is open")
        self.add_model(model, select=True)
        return self._segmenter(str(model), image)
