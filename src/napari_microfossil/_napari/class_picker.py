"""The Review panel's class chooser: which class the Labels brush paints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QComboBox

from . import layers

if TYPE_CHECKING:
    from napari.layers import Labels

__all__ = ["ClassPicker"]


class ClassPicker(QComboBox):
    """A combobox of a Labels layer's classes (``"1: fossil"``) tied to its brush.

    Choosing a class makes the brush paint it; the combobox follows the layer's own
    label control (napari's ``selected_label``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.layer: Labels | None = None
        self.activated.connect(self._on_choice)

    def show_classes(self, layer: Labels | None) -> None:
        """List `layer`'s classes and follow its brush from now on (None: no layer)."""
        if self.layer is not None:
            self.layer.events.selected_label.disconnect(self._sync)
        self.layer = layer
        if layer is None:
            return
        layer.events.selected_label.connect(self._sync)
        names = layers.class_names_of(layer)
        self.clear()
        for i, name in enumerate(names):
            self.addItem(f"{i}: {name}", i)
        self.setEnabled(bool(names))
        if not names:
            self.addItem("(no class names on this layer)")
        self._sync()

    def select(self, value: int | str) -> None:
        """Paint with class `value` (an id or a class name)."""
        if (layer := self.layer) is None:
            return
        if isinstance(value, str):
            from ..classes import class_index

            value = class_index(layers.class_names_of(layer), value)
        layer.selected_label = int(value)
        if layer.mode in ("pan_zoom", "erase", "transform"):
            layer.mode = "paint"

    def _on_choice(self, index: int) -> None:
        if (value := self.itemData(index)) is not None:
            self.select(int(value))

    def _sync(self, event: Any = None) -> None:
        if self.layer is not None:
            i = self.findData(int(self.layer.selected_label))
            if i >= 0:
                self.setCurrentIndex(i)
