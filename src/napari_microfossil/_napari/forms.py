"""Small form builders the panels share: spin boxes, buttons, form layouts, rows."""

from __future__ import annotations

import logging
from typing import Any

import qtpy.QtWidgets as qw

log = logging.getLogger(__name__)


def spin(parent: qw.QWidget, lo: float, hi: float, value: float, tip: str = "", **kw: Any) -> Any:
    """A QSpinBox, or a QDoubleSpinBox with ``decimals``; ``suffix``, ``step``."""
    box = qw.QDoubleSpinBox(parent) if "decimals" in kw else qw.QSpinBox(parent)
    if "decimals" in kw:
        box.setDecimals(kw["decimals"])
    box.setRange(lo, hi)
    box.setValue(value)
    box.setToolTip(tip)
    box.setSuffix(kw.get("suffix", ""))
    box.setSingleStep(kw.get("step", 1))
    return box


def button(parent: qw.QWidget, text: str, tip: str) -> qw.QPushButton:
    button = qw.QPushButton(text, parent)
    button.setToolTip(tip)
    return button


def form(parent: qw.QWidget, *rows: tuple[str, Any]) -> None:
    form = qw.QFormLayout(parent)
    form.setContentsMargins(0, 0, 0, 0)
    for name, field in rows:
        form.addRow(name, field)


def row(*widgets: qw.QWidget, stretch: int = 0) -> qw.QHBoxLayout:
    row = qw.QHBoxLayout()
    for k, w in enumerate(widgets):
        row.addWidget(w, 1 if k == stretch else 0)
    return row


def fill_devices(box: qw.QComboBox) -> None:
    """List ``auto (<best>)`` and each device torch can use (``cpu`` when it cannot say)."""
    from ..device import available_devices

    try:
        found = available_devices()
    except Exception as exc:  # torch missing or broken: still show the panel
        log.warning("could not list devices: %s", exc)
        found = ["cpu"]
    for text, name in [(f"auto ({found[0]})", "auto"), *zip(found, found, strict=True)]:
        box.addItem(text, name)
