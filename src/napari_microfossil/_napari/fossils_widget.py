"""Fossils widget: extract fossils from a segmentation, browse, edit and export them.

Extract runs :func:`~napari_microfossil.workflows.fossils.iter_extract` in a worker and adds
an instance Labels layer ``"<labels> instances"`` with a sortable table of measurements.
A row click goes to that fossil (optionally shown alone, in 3D). Selected fossils can be
deleted or merged (only they are measured again). Export runs
:func:`~napari_microfossil.workflows.fossils.iter_export`; a fault ends in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import fossils
from ..errors import InputError
from ..fossils import FossilTable
from ..workflows.fossils import (
    ExportDone,
    ExportRequest,
    ExtractRequest,
    earlier_export,
    iter_export,
)
from . import layers, store_jobs
from ._common import (
    JobRunner,
    LayerChooser,
    ask_question,
    every_fault_as_line,
    replace_or_add,
    scrolling,
)
from .context import PluginContext
from .fossil_table import TABLE_COLUMNS, FossilsBox, camera_of, go_to, show_features
from .fossils_options import SIZE_UNITS, ExtractOptions
from .stale import SourceWatch, stale_note

if TYPE_CHECKING:
    import napari

__all__ = ["MESH_CHOICES", "SIZE_UNITS", "TABLE_COLUMNS", "FossilsWidget", "camera_of"]

MESH_CHOICES = (*fossils.MESH_FORMATS, "none")
#: Name suffix of the Segment panel's result, whose scan has the name before it.
_RESULT_SUFFIX = " fossils"
log = logging.getLogger(__name__)


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
        self.source_watch = SourceWatch(lambda name: self.summary.setText(stale_note(name)))
        self.instances_layer: Any = None
        self._image: Any = None  # scan data the table was measured with
        self.confirm: Callable[[str, str], bool] = ask_question(self)
        self.choose_folder: Callable[[], str | None] = lambda: (
            QFileDialog.getExistingDirectory(self, "Export fossils to folder") or None
        )
        body = QWidget(self)

        # -- extract
        self.labels = LayerChooser(
            napari_viewer,
            Labels,
            prefer=lambda lyr: (
                bool(layers.class_names_of(lyr)) and not layers.is_instance_layer(lyr)
            ),
            parent=body,
        )
        self.image = LayerChooser(napari_viewer, Image, allow_none="(none)", parent=body)
        self.class_name = QComboBox(body)
        # size limit, splitting, filling: the command line's defaults
        self.options = opts = ExtractOptions(body)
        self.min_size, self.min_unit, self.split, self.fill = (
            opts.min_size,
            opts.min_unit,
            opts.split,
            opts.fill,
        )
        self.extract_button = QPushButton("Extract", body)
        self.cancel_button = QPushButton("Cancel", body)
        self.status = QLabel("", body)
        self.status.setWordWrap(True)

        # -- table and edits
        self.fossils_box = box = FossilsBox(body)
        self.table_widget, self.summary, self.show_alone = box.table, box.summary, box.show_alone
        self.view3d, self.delete_button, self.merge_button = box.view3d, box.delete, box.merge
        self.remeasure_button = box.remeasure

        # -- export
        self.mesh_format = QComboBox(body)
        self.mesh_format.addItems(MESH_CHOICES)
        self.crops = QCheckBox("Cropped TIFFs", body)
        self.gallery = QCheckBox("Gallery", body)
        self.selected_only = QCheckBox("Selected only", body)
        self.export_button = QPushButton("Export…", body)
        for checked in (self.crops, self.gallery):
            checked.setChecked(True)
        for widget, tip in (
            (self.image, "The scan, for the mean-intensity column and the cropped TIFFs"),
            (self.class_name, "The class whose connected bodies are fossils"),
            (self.gallery, "One picture per fossil and an index.html with a size histogram"),
        ):
            widget.setToolTip(tip)
        self._lay_out(body)

        busy = [self.extract_button, self.export_button, self.delete_button, self.merge_button]
        after = self._update_buttons
        busy.append(self.remeasure_button)
        self.runner = JobRunner("Fossils", self.status, busy, self.cancel_button, after=after)
        self.labels.currentIndexChanged.connect(self._on_labels_changed)
        scan = self.options.set_scan
        self.image.currentIndexChanged.connect(lambda _: scan(self.image.layer() is not None))
        scan(self.image.layer() is not None)
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

    def _lay_out(self, body: QWidget) -> None:
        extract_box = QGroupBox("Extract", body)
        form = QFormLayout(extract_box)
        form.addRow("Labels", self.labels)
        form.addRow("Class", self.class_name)
        form.addRow("Min size", self.options.size_row())
        form.addRow("Min confidence", self.options.min_confidence)
        form.addRow("", self.options.object_check)
        form.addRow("", self.split)
        form.addRow("", self.fill)
        form.addRow("Scan", self.image)
        run_row = QHBoxLayout()
        run_row.addWidget(self.extract_button)
        run_row.addWidget(self.cancel_button)
        form.addRow(run_row)

        export_box = QGroupBox("Export", body)
        ef = QFormLayout(export_box)
        ef.addRow("Meshes", self.mesh_format)
        opts = QHBoxLayout()
        for box in (self.crops, self.gallery, self.selected_only):
            opts.addWidget(box)
        ef.addRow(opts)
        ef.addRow(self.export_button)

        inner = QVBoxLayout(body)
        inner.addWidget(extract_box)
        inner.addWidget(self.fossils_box, 1)
        inner.addWidget(export_box)
        inner.addWidget(self.status)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scrolling(body))

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        PluginContext.of(self.viewer).dock_as_tab(self)

    @property
    def worker(self) -> Any:
        """The last worker started (None before the first job)."""
        return self.runner.worker

    # -- extract -------------------------------------------------------------------

    def _on_labels_changed(self, index: int | None = None) -> None:
        layer = self.labels.layer()
        names = layers.class_names_of(layer) if layer is not None else []
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
            src = layers.meta(layer).get(layers.SOURCE_IMAGE)
            base = layer.name[: -len(_RESULT_SUFFIX)] if layer.name.endswith(_RESULT_SUFFIX) else ""
            for name in (src, base):
                if name and name in self.viewer.layers:
                    self.image.set_layer(name)
                    break

    def extract_options(self, *, scan: bool = False) -> dict[str, Any]:
        """Size and confidence limits, splitting, filling, the object check (with a
        `scan`): :class:`ExtractRequest` keywords."""
        return self.options.request_values(self.viewer, self.labels.layer(), scan=scan)

    def _checks_fossils(self) -> bool:
        """The object check knows fossils only: not for another class."""
        return self.class_name.currentText().strip() == "fossil"

    def extract(self) -> Any:
        """Start extracting fossils from the chosen Labels layer; returns the worker."""
        from napari.utils.notifications import show_error, show_info

        if self.runner.running:
            show_info("Fossils: a job is running; cancel it first")
            return self.worker
        layer = self.labels.layer()
        if layer is None:
            show_error("Fossils: choose a Labels layer (run Segment first)")
            return None
        labels = layers.volume_of(layer)
        image_layer = self.image.layer()
        image = None if image_layer is None else layers.volume_of(image_layer)
        if image is not None and tuple(image.shape) != tuple(labels.shape):
            show_info(
                f"Fossils: scan {image_layer.name!r} {tuple(image.shape)} does not match the "
                f"labels {tuple(labels.shape)}; measuring without it"
            )
            image = None
        try:
            request = ExtractRequest(
                labels,
                class_names=tuple(layers.class_names_of(layer)),
                which=self.class_name.currentText().strip(),
                spacing=tuple(float(s) for s in layer.scale[-3:]),
                image=image,
                **self.extract_options(scan=image is not None and self._checks_fossils()),
            )
        except InputError as exc:
            self.status.setText(f"Fossils: {exc}")
            show_error(f"Fossils: {exc}")
            return None
        source = layer.name
        job = {
            "source": source,
            "scale": tuple(layer.scale),
            "translate": tuple(layer.translate),
            "units": getattr(layer, "units", None),
            "image": image,
        }
        note = self.options.summary(request.spacing, request)
        # The engine reads (lazy) arrays when iterated: in the worker, not here.
        return self.runner.start(
            store_jobs.extract_job(request, layer),  # blockwise for labels in a store
            on_result=lambda table: self._show_extracted(table, job),
            done_message=lambda table: "; ".join(
                [f"fossils extracted from {source!r}", *self.options.after(request, table, note)]
            ),
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
            metadata={layers.INSTANCES: True},
            **kwargs,
        )
        self.instances_layer, self._image = layer, job["image"]
        self._set_table(table)
        source = self.viewer.layers[job["source"]] if job["source"] in self.viewer.layers else None
        self.source_watch.follow(source)
        self.viewer.layers.selection.active = layer
        self.status.setText(f"Fossils: {len(table)} fossils in {name!r}")

    # -- table ---------------------------------------------------------------------

    def _set_table(self, table: FossilTable) -> None:
        self.table = table
        self.table_widget.show_table(table)
        if self.instances_layer is not None:
            show_features(self.instances_layer, table)
        total = sum(float(row["volume_um3"]) for row in table.rows)
        self.summary.setText(f"{len(table)} fossils · total volume {total:,.0f} µm³")
        self._update_buttons()

    def _update_buttons(self) -> None:
        has = self.table is not None and len(self.table) > 0
        n = len(self.selected_ids())
        if not self.runner.running:
            self.delete_button.setEnabled(has and n > 0)
            self.merge_button.setEnabled(has and n > 1)
            self.export_button.setEnabled(has)
            self.remeasure_button.setEnabled(self.table is not None)

    def rows_by_id(self) -> dict[int, int]:
        """Table-widget row of each fossil id (rows move when the user sorts)."""
        return self.table_widget.rows_by_id()

    def selected_ids(self) -> list[int]:
        """Ids of the fossils selected in the table, ascending."""
        return self.table_widget.selected_ids()

    def select_rows(self, ids: Sequence[int]) -> None:
        """Select the table rows of these fossil ids (as a user's clicks would)."""
        self.table_widget.select_ids(ids)

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
        go_to(self.viewer, layer, row, alone=self.show_alone.isChecked())

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

    def _edit(
        self, edit: Callable[[FossilTable], FossilTable], ids: Sequence[int], least: int
    ) -> bool:
        """Apply an engine edit to the table and its layer (edited in place)."""
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
        try:
            table = edit(replace(self.table, instances=self.instances_layer.data))
        except InputError as exc:
            show_error(f"Fossils: {exc}")
            return False
        self.instances_layer.refresh()
        self._set_table(table)
        return True

    def delete_selected(self, ids: Sequence[int] | None = None) -> None:
        """Remove fossils (default: the selected rows) from the instance layer and table."""
        ids = self.selected_ids() if not ids else [int(i) for i in ids]
        if self._edit(lambda t: t.delete(ids, copy=False), ids, 1):
            self.table_widget.clearSelection()
            self.status.setText(f"Fossils: deleted {len(ids)}")

    def merge_selected(self, ids: Sequence[int] | None = None) -> None:
        """Join fossils (default: the selected rows) into the one with the smallest id."""
        ids = self.selected_ids() if not ids else sorted({int(i) for i in ids})
        if self._edit(lambda t: t.merge(ids, image=self._image, copy=False), ids, 2):
            self.select_rows([ids[0]])
            self.status.setText(f"Fossils: merged {ids} into {ids[0]}")

    def remeasure(self) -> Any:
        """Measure every fossil of the instance layer again (after painting); returns the worker."""
        if self.table is None or self.instances_layer is None:
            return None
        gen = self.table.iter_remeasure(instances=self.instances_layer.data, image=self._image)
        return self.runner.start(gen, on_result=self._set_table, done_message="measured again")

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

        Runs :func:`~napari_microfossil.workflows.fossils.iter_export` (meshes, crops,
        tables, then the gallery); a fault ends as one notification line.
        """
        from napari.utils.notifications import show_error, show_info

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
        try:
            request = ExportRequest(
                self.table,
                Path(outdir),
                image=self._image,
                ids=None if ids is None else tuple(ids),
                mesh_format=mesh_format,
                crops=crops,
                gallery=gallery,
                overwrite=overwrite,
            )
        except InputError as exc:
            self.status.setText(f"Fossils: {exc}")
            show_error(f"Fossils: {exc}")
            return None
        n, out = request.count, request.outdir

        def done(result: ExportDone) -> None:
            show_info(f"Exported {n} fossils to {out}")

        return self.runner.start(
            every_fault_as_line(iter_export(request), f"export to {out}"),
            on_result=done,
            done_message=f"exported {n} fossils to {out}",
        )

    def _export_clicked(self) -> None:
        folder = self.choose_folder()
        if not folder:
            return
        out = Path(folder)
        earlier = earlier_export(out)
        if earlier is not None and not self.confirm(
            "Replace export?", f"{out} already holds an export ({earlier.name}). Replace its files?"
        ):
            return
        self.export(
            out,
            selected_only=self.selected_only.isChecked(),
            mesh_format=self.mesh_format.currentText(),
            crops=self.crops.isChecked(),
            gallery=self.gallery.isChecked(),
            overwrite=earlier is not None,
        )
