"""The Fossils panel's extraction options: size limit, splitting, cavity filling.

Starts at the same defaults as ``microfossil fossils``
(:mod:`napari_microfossil.fossils.defaults`), and says after an extraction what the
size limit was and how to change it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QHBoxLayout, QWidget

from ..fossils import defaults

SIZE_UNITS = ("voxels", "µm³")


class ExtractOptions:
    """The option widgets of the panel's Extract box (children of `parent`).

    Attributes
    ----------
    min_size : QDoubleSpinBox
        The size limit, in :attr:`min_unit`; starts at
        :data:`~napari_microfossil.fossils.defaults.DEFAULT_MIN_VOXELS` voxels.
    min_unit : QComboBox
        ``"voxels"`` or ``"µm³"``.
    split, fill : QCheckBox
        Separate touching fossils (on by default, as the command line); fill chambers.
    """

    def __init__(self, parent: QWidget) -> None:
        self.min_size = QDoubleSpinBox(parent, decimals=0, minimum=0, maximum=1e15)
        self.min_size.setValue(defaults.DEFAULT_MIN_VOXELS)
        self.min_unit = QComboBox(parent)
        self.min_unit.addItems(SIZE_UNITS)
        self.split = QCheckBox("Split touching fossils", parent)
        self.split.setChecked(defaults.DEFAULT_SPLIT)
        self.fill = QCheckBox("Fill chambers", parent)
        self.fill.setChecked(True)
        self.min_size.setToolTip(
            f"Smaller objects are dropped. Default {defaults.DEFAULT_MIN_VOXELS} voxels, a "
            f"ball {defaults.DEFAULT_MIN_DIAMETER_VOXELS} voxels across; 0 keeps every speck"
        )
        self.split.setToolTip(
            "Separate bodies joined by a narrow neck (distance-transform watershed)"
        )
        self.fill.setToolTip("Fill each fossil's enclosed cavities (hollow chambers) into it")

    def size_row(self) -> QHBoxLayout:
        """The size limit and its unit, side by side."""
        row = QHBoxLayout()
        row.addWidget(self.min_size, 1)
        row.addWidget(self.min_unit)
        return row

    def values(self) -> dict[str, Any]:
        """Size limit, splitting and filling as :class:`ExtractRequest` keywords."""
        value = float(self.min_size.value())
        opts: dict[str, Any] = {
            "split": self.split.isChecked(),
            "fill_cavities": self.fill.isChecked(),
        }
        if self.min_unit.currentText() == "voxels":
            opts["min_voxels"] = round(value)
        else:
            opts["min_volume_um3"] = value
        return opts

    def is_default_size(self) -> bool:
        """Whether the size limit is the default one."""
        return (
            self.min_unit.currentText() == "voxels"
            and round(self.min_size.value()) == defaults.DEFAULT_MIN_VOXELS
        )

    def note(self, spacing: Sequence[float]) -> str:
        """What the size limit was and how to change it, or "" for another limit."""
        if not self.is_default_size():
            return ""
        return defaults.size_limit_note(
            spacing, keep_all="Min size 0", other="another Min size (voxels or µm³)"
        )
