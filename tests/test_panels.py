"""The four panels together, opened as a user opens them: from the Plugins menu."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QDockWidget, QLayout, QScrollArea, QWidget

pytestmark = [
    pytest.mark.gui,
    # napari's dock menus warn about their own deprecated API; not ours.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

PLUGIN = "napari-microfossil"
PANELS = ("Segment", "Review & correct", "Fossils", "Fine-tune")


def _open_all(viewer):
    """Each panel from the Plugins menu (napari hands it a viewer proxy), not tabified."""
    return [viewer.window.add_plugin_dock_widget(PLUGIN, name) for name in PANELS]


def _laid_out(layout: QLayout) -> set[QWidget]:
    found: set[QWidget] = set()
    for i in range(layout.count()):
        item = layout.itemAt(i)
        if item.widget() is not None:
            found.add(item.widget())
        elif item.layout() is not None:
            found |= _laid_out(item.layout())
    return found


def test_panels_from_the_plugins_menu_share_the_dock_as_tabs(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    opened = _open_all(viewer)
    window = opened[0][0].window()
    qtbot.waitUntil(lambda: all(dock.isVisible() for dock, _ in opened))
    first = opened[0][0]
    tabbed = set(window.tabifiedDockWidgets(first))
    assert {dock for dock, _ in opened[1:]} <= tabbed
    # One set of tabs: the window does not grow past a 1366 x 768 laptop screen.
    for dock, panel in opened:
        assert isinstance(dock, QDockWidget)
        assert panel.minimumSizeHint().height() <= 600, dock.windowTitle()
    # Nothing is cut off on the right: the dock is as wide as the widest form.
    for dock, panel in opened:
        dock.raise_()
        qtbot.waitUntil(panel.isVisible)
        for area in panel.findChildren(QScrollArea):
            form = area.widget()
            if form is not None:
                assert area.viewport().width() >= form.minimumSizeHint().width(), dock.windowTitle()


def test_every_visible_field_is_in_its_panels_layout(make_napari_viewer, qtbot):
    """A widget made with the form as parent but never laid out is drawn over the
    form's first rows (a stray spin box once covered Fine-tune's "Image" label)."""
    viewer = make_napari_viewer(show=True)
    opened = _open_all(viewer)
    qtbot.waitUntil(lambda: all(panel.isVisible() for _, panel in opened))
    for dock, panel in opened:
        forms = [a.widget() for a in panel.findChildren(QScrollArea) if a.widget() is not None]
        assert forms, f"{dock.windowTitle()}: the form is not in a scroll area"
        for form in forms:
            for box in [form, *form.findChildren(QWidget)]:
                if box.layout() is None:
                    continue  # a composite Qt widget (spin box, combo box, curve)
                placed = _laid_out(box.layout())
                stray = [
                    type(child).__name__
                    for child in box.children()
                    if isinstance(child, QWidget) and child.isVisible() and child not in placed
                ]
                assert not stray, f"{dock.windowTitle()}: {stray} not in a layout"
