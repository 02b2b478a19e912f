"""The Review panel's class chooser: which class the Labels brush paints, with each
class's colour as a legend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import QComboBox

from . import layers

if TYPE_CHECKING:
    from napari.layers import Labels

__all__ = ["ClassPicker", "class_items"]

#: What the picker says of class 0 when napari draws it transparent.
TRANSPARENT_NOTE = "not drawn: label 0 is transparent"


def class_items(layer: Any) -> list[tuple[str, tuple[float, float, float, float]]]:
    """``(text, rgba)`` for each class of a Labels layer, id order: ``"0: pore"``, and
    for a class 0 napari draws transparent ``"0: pore (not drawn: label 0 is
    transparent)"`` (on placed label slices, where unlabelled planes are 0 too)."""
    names = layers.class_names_of(layer)
    colormap = getattr(layer, "colormap", None)
    out = []
    for i, name in enumerate(names):
        rgba = (0.0, 0.0, 0.0, 0.0)
        if colormap is not None:
            try:
                rgba = tuple(float(c) for c in colormap.map(i))  # type: ignore[assignment]
            except (TypeError, ValueError):  # pragma: no cover - napari's own colormaps map
                pass
        text = f"{i}: {name}"
        if i == 0 and rgba[3] == 0 and name.strip().lower() != "background":
            text += f" ({TRANSPARENT_NOTE})"
        out.append((text, rgba))
    return out


def _swatch(rgba: tuple[float, ...]) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor.fromRgbF(*(min(max(c, 0.0), 1.0) for c in rgba)))
    return QIcon(pixmap)


class ClassPicker(QComboBox):
    """A combobox of a Labels layer's classes (``"1: fossil"``, with its colour) tied to
    its brush.

    Choosing a class makes the brush paint it; the combobox follows the layer's own
    label control (napari's ``selected_label``) and lists the classes again when the
    layer is given names (its ``features`` change, e.g. after Fine-tune named them).
    """

    def __init__(self) -> None:
        super().__init__()
        self.layer: Labels | None = None
        self.activated.connect(self._on_choice)

    def show_classes(self, layer: Labels | None) -> None:
        """List `layer`'s classes and follow its brush from now on (None: no layer)."""
        if self.layer is not None:
            self.layer.events.selected_label.disconnect(self._sync)
            self.layer.events.features.disconnect(self._relist)
        self.layer = layer
        if layer is None:
            return
        layer.events.selected_label.connect(self._sync)
        layer.events.features.connect(self._relist)
        self._relist()

    def _relist(self, event: Any = None) -> None:
        if (layer := self.layer) is None:
            return
        items = class_items(layer)
        self.clear()
        for i, (text, rgba) in enumerate(items):
            self.addItem(_swatch(rgba), text, i)
        self.setEnabled(bool(items))
        if not items:
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
