"""Fossils widget: extract fossils from a segmentation, browse, edit and export them.

Extract runs :func:`~napari_microfossil.fossils.iter_extract_fossils` in a worker and
adds an instance Labels layer ``"<labels> instances"`` (one id per fossil) with a
sortable table of the engine's measurements. Clicking a row goes to that fossil
(camera centre, slice sliders, selected label; optionally shown alone, in 3D). Selected
fossils can be deleted or merged; only the changed fossils are measured again. Export
writes meshes, crops, ``fossils.csv`` (:func:`~napari_microfossil.fossils.export.iter_export_fossils`)
and a picture gallery (:func:`~napari_microfossil.fossils.gallery.iter_write_gallery`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
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

from .._progress import Progress
from ..errors import InputError
from ..fossils import FossilTable
from ._common import (
    INSTANCES_KEY,
    SOURCE_IMAGE_KEY,
    JobRunner,
    LayerChooser,
    ask_question,
    is_instance_layer,
    replace_or_add,
    volume_of,
)

if TYPE_CHECKING:
    import napari

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
SIZE_UNITS = ("voxels", "µm³")
MESH_CHOICES = ("stl", "ply", "obj", "none")
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


def _cell(value: Any, digits: int | None) -> tuple[str, Any]:
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


def _measure_one(
    instances: np.ndarray,
    fossil_id: int,
    box: tuple[slice, ...],
    spacing: Sequence[float],
    image: Any,
) -> dict[str, Any] | None:
    """Measure one fossil inside ``box``; the record is in the whole volume's frame."""
    from ..fossils import measure_fossils

    crop = instances[box]
    sub = np.where(crop == fossil_id, crop, 0)
    if not sub.any():
        return None
    img = None if image is None else np.asarray(image[box])
    (row,) = measure_fossils(sub, spacing=spacing, image=img)
    start = [s.start for s in box]
    for k, ax in enumerate("zyx"):
        row[f"bbox_{ax}0"] += start[k]
        row[f"bbox_{ax}1"] += start[k]
        row[f"centroid_{ax}"] += start[k]
        row[f"centroid_{ax}_um"] += start[k] * float(spacing[k])
    lo = [row[f"bbox_{ax}0"] for ax in "zyx"]
    hi = [row[f"bbox_{ax}1"] for ax in "zyx"]
    row["touches_border"] = bool(
        any(v == 0 for v in lo) or any(v == n for v, n in zip(hi, instances.shape, strict=True))
    )
    return row


def _bbox(row: dict[str, Any]) -> tuple[slice, ...]:
    return tuple(slice(int(row[f"bbox_{ax}0"]), int(row[f"bbox_{ax}1"])) for ax in "zyx")


def _union(boxes: Sequence[tuple[slice, ...]]) -> tuple[slice, ...]:
    return tuple(
        slice(min(b[k].start for b in boxes), max(b[k].stop for b in boxes)) for k in range(3)
    )


def camera_of(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def _choose_folder(parent: QWidget) -> Callable[[], str | None]:
    def choose() -> str | None:
        path = QFileDialog.getExistingDirectory(parent, "Export fossils to folder")
        return path or None

    return choose


class FossilsWidget(QWidget):
    """Extract fossils, browse them in a table, edit and export them.

    Attributes
    ----------
    table : FossilTable or None
        The current fossils (follows deletions and merges).
    instances_layer : napari.layers.Labels or None
        The instance layer the table describes.
    worker : napari worker or None
        The last job started (extract, re-measure or export).
    confirm : callable
        ``confirm(title, text) -> bool`` before replacing files of an earlier export.
    choose_folder : callable
        ``choose_folder() -> str | None``, the export folder dialog.
    """

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        from napari.layers import Image, Labels

        super().__init__(parent)
        self.viewer = napari_viewer
        self.table: FossilTable | None = None
        self.instances_layer: Any = None
        self._image: Any = None  # scan data the table was measured with
        self.confirm: Callable[[str, str], bool] = ask_question(self)
        self.choose_folder: Callable[[], str | None] = _choose_folder(self)

        # -- extract
        self.labels = LayerChooser(
            napari_viewer,
            Labels,
            prefer=lambda lyr: "class_names" in lyr.metadata and not is_instance_layer(lyr),
            parent=self,
        )
        self.image = LayerChooser(napari_viewer, Image, allow_none="(none)", parent=self)
        self.image.setToolTip("The scan, for the mean-intensity column and the cropped TIFFs")
        self.class_name = QComboBox(self)
        self.class_name.setToolTip("The class whose connected bodies are fossils")
        self.min_size = QDoubleSpinBox(self)
        self.min_size.setRange(0, 1e15)
        self.min_size.setDecimals(0)
        self.min_size.setValue(0)
        self.min_unit = QComboBox(self)
        self.min_unit.addItems(SIZE_UNITS)
        self.split = QCheckBox("Split touching fossils", self)
        self.split.setToolTip(
            "Separate bodies joined by a narrow neck (distance-transform watershed)"
        )
        self.fill = QCheckBox("Fill chambers", self)
        self.fill.setChecked(True)
        self.fill.setToolTip("Fill each fossil's enclosed cavities (hollow chambers) into it")
        self.extract_button = QPushButton("Extract", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)

        # -- table and edits
        self.table_widget = QTableWidget(0, len(TABLE_COLUMNS), self)
        self.table_widget.setHorizontalHeaderLabels([c[0] for c in TABLE_COLUMNS])
        self.table_widget.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table_widget.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table_widget.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        vheader, hheader = self.table_widget.verticalHeader(), self.table_widget.horizontalHeader()
        if vheader is not None:
            vheader.setVisible(False)
        if hheader is not None:
            hheader.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table_widget.setMinimumHeight(220)  # about 7 rows
        self.table_widget.setSortingEnabled(True)
        self.table_widget.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.show_alone = QCheckBox("Show alone", self)
        self.show_alone.setToolTip("Show only the selected fossil in the instance layer")
        self.view3d = QPushButton("View in 3D", self)
        self.delete_button = QPushButton("Delete selected", self)
        self.merge_button = QPushButton("Merge selected", self)
        self.remeasure_button = QPushButton("Re-measure", self)
        self.remeasure_button.setToolTip(
            "Measure every fossil again after painting on the instance layer"
        )
        self.summary = QLabel("", self)

        # -- export
        self.mesh_format = QComboBox(self)
        self.mesh_format.addItems(MESH_CHOICES)
        self.crops = QCheckBox("Cropped TIFFs", self)
        self.crops.setChecked(True)
        self.gallery = QCheckBox("Gallery", self)
        self.gallery.setChecked(True)
        self.gallery.setToolTip("One picture per fossil and an index.html with a size histogram")
        self.selected_only = QCheckBox("Selected only", self)
        self.export_button = QPushButton("Export…", self)

        extract_box = QGroupBox("Extract", self)
        form = QFormLayout(extract_box)
        form.addRow("Labels", self.labels)
        form.addRow("Class", self.class_name)
        size_row = QHBoxLayout()
        size_row.addWidget(self.min_size, 1)
        size_row.addWidget(self.min_unit)
        form.addRow("Min size", size_row)
        form.addRow("", self.split)
        form.addRow("", self.fill)
        form.addRow("Scan", self.image)
        run_row = QHBoxLayout()
        run_row.addWidget(self.extract_button)
        run_row.addWidget(self.cancel_button)
        form.addRow(run_row)

        fossils_box = QGroupBox("Fossils", self)
        # The table takes the dock's spare height. napari adds a stretch under a dock
        # widget unless one of its children expands vertically: the box says it does.
        expanding = QSizePolicy.Policy.Expanding
        self.table_widget.setSizePolicy(expanding, expanding)
        fossils_box.setSizePolicy(QSizePolicy.Policy.Preferred, expanding)
        self.fossils_box = fossils_box
        fl = QVBoxLayout(fossils_box)
        fl.addWidget(self.summary)
        fl.addWidget(self.table_widget, 1)
        row1 = QHBoxLayout()
        row1.addWidget(self.show_alone)
        row1.addWidget(self.view3d)
        row2 = QHBoxLayout()
        row2.addWidget(self.delete_button)
        row2.addWidget(self.merge_button)
        row2.addWidget(self.remeasure_button)
        fl.addLayout(row1)
        fl.addLayout(row2)

        export_box = QGroupBox("Export", self)
        ef = QFormLayout(export_box)
        ef.addRow("Meshes", self.mesh_format)
        opts = QHBoxLayout()
        opts.addWidget(self.crops)
        opts.addWidget(self.gallery)
        opts.addWidget(self.selected_only)
        ef.addRow(opts)
        ef.addRow(self.export_button)

        layout = QVBoxLayout(self)
        layout.addWidget(extract_box)
        layout.addWidget(fossils_box, 1)
        layout.addWidget(export_box)
        layout.addWidget(self.status)

        self.runner = JobRunner(
            "Fossils",
            self.status,
            [
                self.extract_button,
                self.export_button,
                self.delete_button,
                self.merge_button,
                self.remeasure_button,
            ],
            self.cancel_button,
            after=self._update_buttons,
        )
        self.labels.currentIndexChanged.connect(self._on_labels_changed)
        self.extract_button.clicked.connect(lambda: self.extract())
        self.table_widget.itemSelectionChanged.connect(self._on_selection)
        self.show_alone.toggled.connect(self._on_show_alone)
        self.view3d.clicked.connect(self.view_in_3d)
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        self.merge_button.clicked.connect(lambda: self.merge_selected())
        self.remeasure_button.clicked.connect(lambda: self.remeasure())
        self.export_button.clicked.connect(self._export_clicked)
        self._on_labels_changed()
        self._update_buttons()

    @property
    def worker(self) -> Any:
        """The last worker started (None before the first job)."""
        return self.runner.worker

    # -- extract -------------------------------------------------------------------

    def _on_labels_changed(self, index: int | None = None) -> None:
        layer = self.labels.layer()
        names = list((layer.metadata.get("class_names") if layer is not None else None) or [])
        current = self.class_name.currentText()
        self.class_name.clear()
        if names:
            self.class_name.setEditable(False)
            self.class_name.addItems([str(n) for n in names[1:]])
            lowered = [str(n).lower() for n in names[1:]]
            pick = current.lower() if current.lower() in lowered else "fossil"
            if pick in lowered:
                self.class_name.setCurrentIndex(lowered.index(pick))
        else:
            # No class names: the user types a class id.
            self.class_name.setEditable(True)
            self.class_name.addItem("1")
        if layer is not None:
            src = layer.metadata.get(SOURCE_IMAGE_KEY)
            base = layer.name[: -len(" fossils")] if layer.name.endswith(" fossils") else None
            for name in (src, base):
                if name and name in self.viewer.layers:
                    self.image.set_layer(name)
                    break

    def extract_options(self) -> dict[str, Any]:
        """Options for :func:`iter_extract_fossils` from the widget (no class or spacing)."""
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

    def extract(self) -> Any:
        """Start extracting fossils from the chosen Labels layer; returns the worker."""
        from napari.utils.notifications import show_error, show_info

        from ..classes import class_index
        from ..fossils import iter_extract_fossils

        if self.runner.running:
            show_info("Fossils: a job is running; cancel it first")
            return self.worker
        layer = self.labels.layer()
        if layer is None:
            show_error("Fossils: choose a Labels layer (run Segment first)")
            return None
        labels = volume_of(layer)
        names = list(layer.metadata.get("class_names") or [])
        try:
            if len(labels.shape) != 3:
                raise InputError(
                    f"labels: expected a 3D layer, got {len(labels.shape)}D {layer.name!r}"
                )
            which = self.class_name.currentText().strip()
            class_id = (
                class_index(names, which)
                if names
                else class_index([str(i) for i in range(256)], which)
            )
            if class_id == 0:
                raise InputError("class: expected a foreground class, got the background (0)")
        except InputError as exc:
            self.status.setText(f"Fossils: {exc}")
            show_error(f"Fossils: {exc}")
            return None
        spacing = tuple(float(s) for s in layer.scale[-3:])
        image_layer = self.image.layer()
        image = None
        if image_layer is not None:
            image = volume_of(image_layer)
            if tuple(image.shape) != tuple(labels.shape):
                show_info(
                    f"Fossils: scan {image_layer.name!r} {tuple(image.shape)} does not match the "
                    f"labels {tuple(labels.shape)}; measuring without it"
                )
                image = None
        source = layer.name
        # The engine reads (lazy) arrays when iterated: in the worker, not here.
        gen = iter_extract_fossils(
            labels,
            class_id=class_id,
            spacing=spacing,
            image=image,
            **self.extract_options(),
        )
        job = {
            "source": source,
            "scale": tuple(layer.scale),
            "translate": tuple(layer.translate),
            "units": getattr(layer, "units", None),
            "class_name": names[class_id] if class_id < len(names) else str(class_id),
            "image": image,
        }
        return self.runner.start(
            gen,
            on_result=lambda table: self._show_extracted(table, job),
            done_message=f"fossils extracted from {source!r}",
        )

    def _show_extracted(self, table: FossilTable, job: dict[str, Any]) -> None:
        name = f"{job['source']} instances"
        kwargs: dict[str, Any] = {"scale": job["scale"], "translate": job["translate"]}
        if job["units"] is not None:
            kwargs["units"] = job["units"]
        layer = replace_or_add(
            self.viewer,
            name,
            "labels",
            table.instances,
            metadata={
                INSTANCES_KEY: True,
                "source_labels": job["source"],
                "class_name": job["class_name"],
            },
            **kwargs,
        )
        self.instances_layer = layer
        self._image = job["image"]
        self._set_table(table)
        self.viewer.layers.selection.active = layer
        self.status.setText(f"Fossils: {len(table)} fossils in {name!r}")

    # -- table ---------------------------------------------------------------------

    def _set_table(self, table: FossilTable) -> None:
        self.table = table
        tw = self.table_widget
        selected = set(self.selected_ids())
        tw.blockSignals(True)
        tw.setSortingEnabled(False)
        try:
            tw.clearContents()
            tw.setRowCount(len(table.rows))
            for r, row in enumerate(table.rows):
                fid = int(row["id"])
                for c, (_, key, digits) in enumerate(TABLE_COLUMNS):
                    text, value = _cell(row.get(key), digits)
                    tw.setItem(r, c, _Item(text, value, fid))
        finally:
            tw.setSortingEnabled(True)
            tw.blockSignals(False)
        self.select_rows([fid for fid in table.ids if fid in selected])
        self._update_features()
        total = sum(float(row["volume_um3"]) for row in table.rows)
        self.summary.setText(f"{len(table)} fossils · total volume {total:,.0f} µm³")
        self._update_buttons()

    def _update_features(self) -> None:
        """Put the measurements on the instance layer, so napari shows them on hover."""
        import pandas as pd

        layer = self.instances_layer
        if layer is None or self.table is None:
            return
        keys = ("volume_um3", "equivalent_diameter_um", "sphericity")
        frame = pd.DataFrame(
            {"index": [0, *self.table.ids]}
            | {k: [math.nan, *(float(r[k]) for r in self.table.rows)] for k in keys}
        )
        try:
            layer.features = frame
        except Exception as exc:  # features are a nicety; never fail an edit for them
            log.debug("could not set features: %s", exc)

    def _update_buttons(self) -> None:
        has = self.table is not None and len(self.table) > 0
        n = len(self.selected_ids())
        if not self.runner.running:
            self.delete_button.setEnabled(has and n > 0)
            self.merge_button.setEnabled(has and n > 1)
            self.export_button.setEnabled(has)
            self.remeasure_button.setEnabled(self.table is not None)

    def _row_id(self, row: int) -> int | None:
        item = self.table_widget.item(row, 0)
        return None if item is None else int(item.data(_ID_ROLE))

    def rows_by_id(self) -> dict[int, int]:
        """Table-widget row of each fossil id (rows move when the user sorts)."""
        found = {self._row_id(r): r for r in range(self.table_widget.rowCount())}
        return {fid: r for fid, r in found.items() if fid is not None}

    def selected_ids(self) -> list[int]:
        """Ids of the fossils selected in the table, ascending."""
        model = self.table_widget.selectionModel()
        rows = {index.row() for index in model.selectedRows()} if model is not None else set()
        return sorted(fid for fid in map(self._row_id, rows) if fid is not None)

    def select_rows(self, ids: Sequence[int]) -> None:
        """Select the table rows of these fossil ids (as a user's clicks would)."""
        tw = self.table_widget
        where = self.rows_by_id()
        tw.clearSelection()
        mode = tw.selectionMode()
        tw.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for fid in ids:
            if int(fid) in where:
                tw.selectRow(where[int(fid)])
        tw.setSelectionMode(mode)

    def _on_selection(self) -> None:
        ids = self.selected_ids()
        self._update_buttons()
        if len(ids) == 1:
            self.select_fossil(ids[0])

    # -- navigation ----------------------------------------------------------------

    def select_fossil(self, fossil_id: int) -> None:
        """Go to a fossil: centre the camera on it, move the sliders, select its label."""
        from napari.utils.notifications import show_error

        layer = self.instances_layer
        if self.table is None or layer is None or layer not in self.viewer.layers:
            show_error("Fossils: extract fossils first")
            return
        try:
            row = self.table.row(fossil_id)
        except InputError as exc:
            show_error(f"Fossils: {exc}")
            return
        centroid = [float(row["centroid_z"]), float(row["centroid_y"]), float(row["centroid_x"])]
        data_pos = [0.0] * (layer.ndim - 3) + centroid
        world = np.asarray(layer.data_to_world(data_pos), dtype=float)
        nd = self.viewer.dims.ndim
        axes = list(range(nd - len(world), nd))
        self.viewer.dims.set_point(axes, tuple(world))
        camera_of(self.viewer).center = tuple(world[-3:])
        layer.selected_label = int(row["id"])
        layer.show_selected_label = self.show_alone.isChecked()
        self.viewer.layers.selection.active = layer

    def _on_show_alone(self, checked: bool) -> None:
        if self.instances_layer is not None:
            self.instances_layer.show_selected_label = bool(checked)

    def view_in_3d(self) -> None:
        """Switch the viewer to 3D, centred on the selected fossil (if one is)."""
        self.viewer.dims.ndisplay = 3
        ids = self.selected_ids()
        if len(ids) == 1:
            self.select_fossil(ids[0])

    # -- edits ---------------------------------------------------------------------

    def _edit_ready(self, ids: Sequence[int], least: int) -> bool:
        from napari.utils.notifications import show_error

        if self.table is None or self.instances_layer is None:
            show_error("Fossils: extract fossils first")
            return False
        if self.runner.running:
            show_error("Fossils: wait for the running job, or cancel it")
            return False
        if len(ids) < least:
            show_error(f"Fossils: select at least {least} fossil{'s' if least > 1 else ''}")
            return False
        return True

    def delete_selected(self, ids: Sequence[int] | None = None) -> None:
        """Remove fossils (default: the selected rows) from the instance layer and table."""
        ids = self.selected_ids() if not ids else [int(i) for i in ids]
        if not self._edit_ready(ids, 1):
            return
        assert self.table is not None
        data = self.instances_layer.data
        for fid in ids:
            box = _bbox(self.table.row(fid))
            crop = data[box]
            crop[crop == fid] = 0
        gone = set(ids)
        rows = tuple(r for r in self.table.rows if int(r["id"]) not in gone)
        self.instances_layer.refresh()
        self.table_widget.clearSelection()
        self._set_table(FossilTable(instances=data, rows=rows, spacing=self.table.spacing))
        self.status.setText(f"Fossils: deleted {len(ids)}")

    def merge_selected(self, ids: Sequence[int] | None = None) -> None:
        """Join fossils (default: the selected rows) into the one with the smallest id."""
        ids = self.selected_ids() if not ids else sorted({int(i) for i in ids})
        if not self._edit_ready(ids, 2):
            return
        assert self.table is not None
        data = self.instances_layer.data
        target, others = ids[0], ids[1:]
        boxes = [_bbox(self.table.row(fid)) for fid in ids]
        for fid, box in zip(others, boxes[1:], strict=True):
            crop = data[box]
            crop[crop == fid] = target
        merged = _measure_one(data, target, _union(boxes), self.table.spacing, self._image)
        gone = set(others)
        rows = []
        for r in self.table.rows:
            fid = int(r["id"])
            if fid == target and merged is not None:
                rows.append(merged)
            elif fid not in gone:
                rows.append(r)
        self.instances_layer.refresh()
        self._set_table(FossilTable(instances=data, rows=tuple(rows), spacing=self.table.spacing))
        self.select_rows([target])
        self.status.setText(f"Fossils: merged {ids} into {target}")

    def remeasure(self) -> Any:
        """Measure every fossil of the instance layer again (after painting); returns the worker."""
        from ..fossils import iter_measure_fossils

        if self.table is None or self.instances_layer is None:
            return None
        data = self.instances_layer.data
        spacing = self.table.spacing
        image = self._image

        def job() -> Generator[Progress, None, FossilTable]:
            rows = yield from iter_measure_fossils(data, spacing=spacing, image=image)
            return FossilTable(instances=data, rows=tuple(rows), spacing=spacing)

        return self.runner.start(job(), on_result=self._set_table, done_message="measured again")

    # -- export --------------------------------------------------------------------

    def export(
        self,
        outdir: str | Path,
        *,
        selected_only: bool = False,
        mesh_format: str = "stl",
        crops: bool = True,
        gallery: bool = True,
        overwrite: bool = False,
    ) -> Any:
        """Export fossils to ``outdir`` in the background; returns the worker.

        Writes meshes, cropped TIFFs, ``fossils.csv`` and ``instances.tif``
        (:func:`~napari_microfossil.fossils.export.iter_export_fossils`), then, with ``gallery``,
        one picture per fossil and ``index.html``
        (:func:`~napari_microfossil.fossils.gallery.iter_write_gallery`).
        """
        from napari.utils.notifications import show_error, show_info

        from ..fossils.export import iter_export_fossils
        from ..fossils.gallery import iter_write_gallery

        if self.table is None:
            show_error("Fossils: extract fossils first")
            return None
        if self.runner.running:
            show_info("Fossils: a job is running; cancel it first")
            return self.worker
        ids = self.selected_ids() if selected_only else None
        if selected_only and not ids:
            show_error("Fossils: select the fossils to export, or untick 'Selected only'")
            return None
        table, image = self.table, self._image
        out = Path(outdir)

        def job() -> Generator[Progress, None, tuple[Any, Any]]:
            result = yield from iter_export_fossils(
                table,
                out,
                image=image,
                mesh_format=mesh_format,
                crops=crops,
                ids=ids,
                overwrite=overwrite,
            )
            pictures = None
            if gallery:
                pictures = yield from iter_write_gallery(
                    table, out, image=image, ids=ids, overwrite=overwrite
                )
            return result, pictures

        n = len(ids) if ids is not None else len(table)

        def done(result: tuple[Any, Any]) -> None:
            show_info(f"Exported {n} fossils to {out}")

        return self.runner.start(
            job(), on_result=done, done_message=f"exported {n} fossils to {out}"
        )

    def _export_clicked(self) -> None:
        folder = self.choose_folder()
        if not folder:
            return
        out = Path(folder)
        overwrite = False
        earlier = [p for p in (out / "fossils.csv", out / "index.html") if p.exists()]
        if earlier:
            if not self.confirm(
                "Replace export?",
                f"{out} already holds an export ({earlier[0].name}). Replace its files?",
            ):
                return
            overwrite = True
        self.export(
            out,
            selected_only=self.selected_only.isChecked(),
            mesh_format=self.mesh_format.currentText(),
            crops=self.crops.isChecked(),
            gallery=self.gallery.isChecked(),
            overwrite=overwrite,
        )
