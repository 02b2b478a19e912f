"""The dialog of Layers > Data > "Place label slices on the scan (Microfossil)"."""

from __future__ import annotations

import html
from typing import Any

from qtpy import QtWidgets as qw

from ..errors import InputError
from ..io.slices import folder_slice_numbers
from . import layers
from .forms import spin
from .place import place_layer, scans_like


class PlaceDialog(qw.QDialog):
    """Choose the scan and how the slices of `labels` lie on it, then place them.

    By the numbers in the slice files' names when the layer was read from a folder of
    numbered slices (chosen by default), else from a first plane every `step` planes.
    ``placed`` is the new layer once :meth:`place` succeeded.
    """

    def __init__(self, viewer: Any, labels: Any, parent: qw.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Place label slices on the scan")
        self.viewer, self.labels = viewer, labels
        self.placed: Any = None
        depth = int(layers.volume_of(labels).shape[0])
        self.scan = qw.QComboBox(self)
        for scan in scans_like(viewer, tuple(layers.volume_of(labels).shape[-2:])):
            n = int(layers.volume_of(scan).shape[0])
            self.scan.addItem(f"{scan.name} ({n} planes)", scan.name)
        path = layers.source_path(labels)
        numbers = folder_slice_numbers(path) if path else None
        self.by_numbers = qw.QRadioButton("By the numbers in the file names", self)
        self.by_step = qw.QRadioButton("From plane", self)
        self.by_numbers.setEnabled(numbers is not None and len(numbers) == depth)
        if numbers is not None and len(numbers) == depth:
            shown = ", ".join(map(str, numbers[:6])) + (", ..." if len(numbers) > 6 else "")
            self.by_numbers.setToolTip(f"The slices are numbered {shown}")
            self.by_numbers.setChecked(True)
        else:
            self.by_numbers.setToolTip("The layer was not read from numbered slice files")
            self.by_step.setChecked(True)
        self.first = spin(self, 0, 1_000_000, 0, "Scan plane of the first label slice")
        self.step = spin(self, 1, 1_000_000, 1, "Planes between two label slices", suffix="")
        every = qw.QHBoxLayout()
        for w in (self.by_step, self.first, qw.QLabel("every", self), self.step):
            every.addWidget(w)
        every.addWidget(qw.QLabel("planes", self), 1)
        self.message = qw.QLabel(
            f"{labels.name!r}: {depth} slices. The other planes become 0 and not reviewed; "
            "the placed ones are marked reviewed, so Fine-tune trains on them.",
            self,
        )
        self.message.setWordWrap(True)
        buttons = qw.QDialogButtonBox(
            qw.QDialogButtonBox.StandardButton.Ok | qw.QDialogButtonBox.StandardButton.Cancel,
            parent=self,
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = qw.QFormLayout(self)
        form.addRow("Scan", self.scan)
        form.addRow("Positions", self.by_numbers)
        form.addRow("", every)
        form.addRow(self.message)
        form.addRow(buttons)

    def place(self) -> Any:
        """Place the slices as chosen; the new layer, or None (why: in :attr:`message`)."""
        from napari.utils.notifications import show_info

        scan_name = self.scan.currentData()
        if scan_name is None or scan_name not in self.viewer.layers:
            self._say("open the scan first")
            return None
        step = None if self.by_numbers.isChecked() else int(self.step.value())
        first = None if step is None else int(self.first.value())
        try:
            new, placement = place_layer(
                self.viewer, self.labels, self.viewer.layers[scan_name], first=first, step=step
            )
        except InputError as exc:
            self._say(str(exc))
            return None
        self.placed = new
        show_info(f"{new.name}: {placement.describe(repr(scan_name))}; marked reviewed")
        return new

    def accept(self) -> None:
        if self.place() is not None:
            super().accept()

    def _say(self, text: str) -> None:
        self.message.setText(
            f"<span style='color:#e06c6c'>Cannot place: {html.escape(text)}</span>"
        )
