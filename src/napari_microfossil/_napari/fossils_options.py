"""The Fossils panel's extraction options: size and confidence limits, splitting, filling.

Starts at the same defaults as ``microfossil fossils``
(:mod:`napari_microfossil.fossils.defaults`), and says after an extraction what the
limits were and how to change them. The confidence limit applies with the Segment
result's confidence layer (the labels layer names it), as ``fossils --confidence``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QHBoxLayout, QWidget

from ..fossils import defaults
from ..fossils.evidence import sure_where_reviewed
from . import layers

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
    min_confidence : QDoubleSpinBox
        The confidence limit, percent; starts at
        :data:`~napari_microfossil.fossils.defaults.DEFAULT_MIN_CONFIDENCE`. Applied when
        the object check is off or cannot run.
    object_check : QCheckBox
        Drop the objects the object check judges look-alikes (on by default, as the
        command line); runs with a scan and the Segment result's confidence layer.
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
        self.min_confidence = QDoubleSpinBox(parent, decimals=0, minimum=0, maximum=100)
        self.min_confidence.setSuffix(" %")
        self.min_confidence.setValue(defaults.DEFAULT_MIN_CONFIDENCE)
        self.min_confidence.setToolTip(
            "With the Segment result's confidence layer: objects the model was on average "
            f"less sure of are dropped. Default {defaults.DEFAULT_MIN_CONFIDENCE:g} %; 0 "
            "keeps every object. Slices you reviewed or corrected count as sure (100 %). "
            "Greyed while Object check is ticked and a Scan is chosen: the check replaces "
            "it (without a Scan the check cannot run, and this limit applies)"
        )
        self.object_check = QCheckBox("Object check (drop look-alikes)", parent)
        self.object_check.setChecked(True)
        self.object_check.setToolTip(
            "A 3D network judges each object: grain clusters and ooids that look like "
            "fossils are dropped. Needs the Scan and the Segment result's confidence "
            "layer; replaces the Min confidence limit when it runs"
        )
        # The check replaces the limit when it runs: the limit is greyed while it is
        # ticked and can run (a scan chosen: :meth:`set_scan`).
        self.has_scan = True
        self.object_check.toggled.connect(lambda _: self.set_scan(self.has_scan))
        self.set_scan(True)
        self.min_size.setToolTip(
            f"Smaller objects are dropped. Default {defaults.DEFAULT_MIN_VOXELS} voxels, a "
            f"ball {defaults.DEFAULT_MIN_DIAMETER_VOXELS} voxels across; 0 keeps every speck"
        )
        self.split.setToolTip(
            "Separate bodies joined by a narrow neck (distance-transform watershed)"
        )
        self.fill.setToolTip("Fill each fossil's enclosed cavities (hollow chambers) into it")

    def set_scan(self, chosen: bool) -> None:
        """Whether a Scan is chosen: without one the check cannot run, and Min
        confidence, which then applies, is not greyed."""
        self.has_scan = bool(chosen)
        self.min_confidence.setEnabled(not (self.object_check.isChecked() and self.has_scan))

    def size_row(self) -> QHBoxLayout:
        """The size limit and its unit, side by side."""
        row = QHBoxLayout()
        row.addWidget(self.min_size, 1)
        row.addWidget(self.min_unit)
        return row

    def values(self, confidence: Any = None, *, scan: bool = False) -> dict[str, Any]:
        """Size and confidence limits, splitting, filling and the object check as
        :class:`ExtractRequest` keywords; `confidence`: the labels' confidence volume,
        or None; `scan`: whether the request has the scan (the check needs both)."""
        value = float(self.min_size.value())
        check = self.object_check.isChecked() and scan and confidence is not None
        opts: dict[str, Any] = {
            "split": self.split.isChecked(),
            "fill_cavities": self.fill.isChecked(),
            "min_confidence": 0.0 if check else float(self.min_confidence.value()),
            "confidence": confidence,
            "object_check": check,
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

    def request_values(self, viewer: Any, layer: Any, *, scan: bool = False) -> dict[str, Any]:
        """:meth:`values` with the confidence of the Labels `layer` (see
        :func:`confidence_for`), in memory or block by block alike."""
        return self.values(confidence_for(viewer, layer), scan=scan and layer is not None)

    def summary(self, spacing: Sequence[float], request: Any) -> str:
        """What the size limit (when the default) and the confidence limit did, and how
        to change them, for an :class:`ExtractRequest` `request`."""
        if request.object_check:
            conf = ""  # said with the result (:meth:`after`)
        elif request.confidence is None:
            conf = defaults.confidence_note(
                None, give="extract from an uncorrected Segment result (it has a confidence layer)"
            )
        elif request.min_confidence > 0:
            conf = (
                f"objects under {request.min_confidence:g} % mean confidence dropped; "
                "Min confidence 0 keeps them"
            )
        else:
            conf = ""
        return "; ".join(n for n in (self.note(spacing), conf) if n)

    def after(self, request: Any, table: Any, note: str) -> list[str]:
        """The :meth:`summary` `note` and what the object check dropped (when it ran)."""
        said = [note] if note else []
        if request.object_check:
            said.append(
                defaults.object_check_note(
                    table.dropped_lookalikes,
                    split=table.split_by_check,
                    keep_all="unticking Object check",
                )
            )
        return said


def confidence_for(viewer: Any, layer: Any) -> Any:
    """The confidence volume of a Segment result's Labels `layer` (its confidence
    layer), or of labels read from a file that names its confidence map (as
    ``microfossil segment --confidence`` writes them; read lazily), or None: none
    named, not found, or of another shape.

    For labels with corrections, the confidence with every reviewed slice at 100 %
    (:func:`~napari_microfossil.fossils.evidence.sure_where_reviewed`: a copy, or a lazy
    view of a store's): the user is sure of what they checked or painted. None when
    which slices were reviewed is unknown.
    """
    if layer is None:
        return None
    name = layers.meta(layer).get(layers.CONFIDENCE_LAYER)
    if name and name in viewer.layers:
        data = layers.volume_of(viewer.layers[name])
    else:
        data = recorded_confidence(layer)
    if data is None or tuple(data.shape) != tuple(layer.data.shape):
        return None
    if not layers.has_corrections(layer):
        return data
    reviewed = layers.reviewed_slices_of(layer)
    if not reviewed:
        return None
    return sure_where_reviewed(data, reviewed)


def recorded_confidence(layer: Any) -> Any:
    """The confidence map the file of a Labels `layer` names (``segment --confidence``
    records it in the labels it writes), read lazily; None if there is none."""
    from pathlib import Path

    from ..errors import InputError
    from ..io import read_volume
    from ..workflows.segment_outputs import CONFIDENCE_KEY, inputs_named_by

    path = layers.store_of(layer) or layers.source_path(layer)
    if not path or not Path(path).exists():
        return None
    try:
        found = inputs_named_by(Path(path)).get(CONFIDENCE_KEY)
        return None if found is None else read_volume(found, lazy=True).data
    except InputError:  # not readable as labels, or the map is not: as if none were named
        return None
