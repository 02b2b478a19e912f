"""The Fossils panel's view of a fossil table: one sortable row per fossil, selection by
fossil id, the measurements on the instance layer (hover), and going to a fossil.

View code only; the measurements come from the engine's
:class:`~napari_microfossil.fossils.FossilTable`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..fossils import FossilTable

log = logging.getLogger(__name__)

#: Table columns: (header, key in the fossil record, significant digits or None for exact).
TABLE_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("id", "id", None),
    ("volume µm³", "volume_um3", 4),
    ("eq. diameter µm", "equivalent_diameter_um", 3),
    ("length µm", "length_um", 3),
    ("width µm", "width_um", 3),
    ("thickness µm", "thickness_um", 3),
    ("sphericity", "sphericity", 2),
    ("voxels", "voxels", None),
    ("touches border", "touches_border", None),
)
_SORT_ROLE = Qt.ItemDataRole.UserRole
_ID_ROLE = Qt.ItemDataRole.UserRole + 1


class _Item(QTableWidgetItem):
    """A read-only cell that shows formatted text and sorts by its numeric value."""

    def __init__(self, text: str, value: Any, fossil_id: int) -> None:
        super().__init__(text)
        self.setData(_SORT_ROLE, value)
        self.setData(_ID_ROLE, fossil_id)
        self.setFlags(Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a, b = self.data(_SORT_ROLE), other.data(_SORT_ROLE)
        try:
            fa = -math.inf if a is None or a != a else float(a)  # NaN sorts first
            fb = -math.inf if b is None or b != b else float(b)
        except (TypeError, ValueError):
            return str(a) < str(b)
        return fa < fb


def cell(value: Any, digits: int | None) -> tuple[str, Any]:
    """(text shown, value sorted by) of one measurement."""
    if isinstance(value, (bool, np.bool_)):
        return ("yes" if value else "no"), int(bool(value))
    if value is None:
        return "", None
    v = float(value)
    if digits is None:
        return f"{int(v)}", int(v)
    if not math.isfinite(v):
        return "–", v
    if v != 0 and abs(v) >= 10**digits:
        return f"{v:,.0f}", v
    return f"{v:.{digits}g}", v


class FossilTableView(QTableWidget):
    """Rows of a :class:`FossilTable`, sortable by any column (numerically), several
    selectable; rows are found by fossil id whatever the sort order."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(TABLE_COLUMNS), parent)
        self.setHorizontalHeaderLabels([c[0] for c in TABLE_COLUMNS])
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        vheader, hheader = self.verticalHeader(), self.horizontalHeader()
        if vheader is not None:
            vheader.setVisible(False)
        if hheader is not None:
            hheader.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.setMinimumHeight(220)  # about 7 rows
        expanding = QSizePolicy.Policy.Expanding
        self.setSizePolicy(expanding, expanding)
        self.setSortingEnabled(True)
        self.sortByColumn(0, Qt.SortOrder.AscendingOrder)

    def show_table(self, table: FossilTable) -> None:
        """Show `table`'s rows, keeping the selection of fossils still in it."""
        selected = set(self.selected_ids())
        self.blockSignals(True)
        self.setSortingEnabled(False)
        try:
            self.clearContents()
            self.setRowCount(len(table.rows))
            for r, row in enumerate(table.rows):
                fid = int(row["id"])
                for c, (_, key, digits) in enumerate(TABLE_COLUMNS):
                    text, value = cell(row.get(key), digits)
                    self.setItem(r, c, _Item(text, value, fid))
        finally:
            self.setSortingEnabled(True)
            self.blockSignals(False)
        self.select_ids([fid for fid in table.ids if fid in selected])

    def _row_id(self, row: int) -> int | None:
        item = self.item(row, 0)
        return None if item is None else int(item.data(_ID_ROLE))

    def rows_by_id(self) -> dict[int, int]:
        """Table row of each fossil id (rows move when the user sorts)."""
        found = {self._row_id(r): r for r in range(self.rowCount())}
        return {fid: r for fid, r in found.items() if fid is not None}

    def selected_ids(self) -> list[int]:
        """Ids of the selected fossils, ascending."""
        model = self.selectionModel()
        rows = {index.row() for index in model.selectedRows()} if model is not None else set()
        return sorted(fid for fid in map(self._row_id, rows) if fid is not None)

    def select_ids(self, ids: Sequence[int]) -> None:
        """Select the rows of these fossil ids (as a user's clicks would)."""
        where = self.rows_by_id()
        self.clearSelection()
        mode = self.selectionMode()
        self.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for fid in ids:
            if int(fid) in where:
                self.selectRow(where[int(fid)])
        self.setSelectionMode(mode)


class FossilsBox(QGroupBox):
    """The "Fossils" box: a summary line, the table, and the navigation and edit buttons.

    The table takes the dock's spare height. napari adds a stretch under a dock widget
    unless one of its children expands vertically: the box says it does.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Fossils", parent)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self.summary = QLabel("", self)
        self.table = FossilTableView(self)
        self.show_alone = QCheckBox("Show alone", self)
        self.show_alone.setToolTip("Show only the selected fossil in the instance layer")
        self.view3d = QPushButton("View in 3D", self)
        self.delete = QPushButton("Delete selected", self)
        self.merge = QPushButton("Merge selected", self)
        self.remeasure = QPushButton("Re-measure", self)
        self.remeasure.setToolTip("Measure every fossil again after painting on the instance layer")
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        for buttons in (
            (self.show_alone, self.view3d),
            (self.delete, self.merge, self.remeasure),
        ):
            row = QHBoxLayout()
            for b in buttons:
                row.addWidget(b)
            layout.addLayout(row)


def show_features(layer: Any, table: FossilTable) -> None:
    """Put the measurements on the instance layer, so napari shows them on hover."""
    import pandas as pd

    keys = ("volume_um3", "equivalent_diameter_um", "sphericity")
    frame = pd.DataFrame(
        {"index": [0, *table.ids]}
        | {k: [math.nan, *(float(r[k]) for r in table.rows)] for k in keys}
    )
    try:
        layer.features = frame
    except Exception as exc:  # features are a nicety; never fail an edit for them
        log.debug("could not set features: %s", exc)


def camera_of(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def go_to(viewer: Any, layer: Any, row: Mapping[str, Any], *, alone: bool) -> None:
    """Centre the camera and the slice sliders on a fossil's centroid and select its label
    (shown `alone` or with the others)."""
    centroid = [float(row["centroid_z"]), float(row["centroid_y"]), float(row["centroid_x"])]
    data_pos = [0.0] * (layer.ndim - 3) + centroid
    world = np.asarray(layer.data_to_world(data_pos), dtype=float)
    nd = viewer.dims.ndim
    viewer.dims.set_point(list(range(nd - len(world), nd)), tuple(world))
    camera_of(viewer).center = tuple(world[-3:])
    layer.selected_label = int(row["id"])
    layer.show_selected_label = alone
    viewer.layers.selection.active = layer
