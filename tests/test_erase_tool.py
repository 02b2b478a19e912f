"""The Review panel's erase gestures (`_napari.erase_tool.EraseTool`), without the panel."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtWidgets import QApplication

from napari_microfossil._napari.erase_tool import ERASE_KEY, EraseTool

pytestmark = pytest.mark.gui

SHAPE = (8, 32, 32)


class _Click:
    """A mouse press as napari passes it to a viewer callback."""

    type = "mouse_press"

    def __init__(self, position, *, shown=(), direction=None):
        self.position = tuple(float(v) for v in position)
        self.dims_displayed = list(shown)
        self.view_direction = direction


def _tool(viewer):
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:5, 4:9, 4:9] = 1
    layer = viewer.add_labels(labels, name="labels")
    calls, said = [], []
    tool = EraseTool(
        viewer,
        erase_at=lambda point, *, world: calls.append((np.round(point).tolist(), world)),
        say=said.append,
    )
    tool.attach(layer)
    return tool, layer, calls, said


def test_3d_click_erases_the_first_labelled_voxel_on_the_ray(make_napari_viewer):
    viewer = make_napari_viewer()
    tool, layer, calls, said = _tool(viewer)
    viewer.dims.ndisplay = 3
    layer.mode = "paint"
    tool.button.click()
    assert tool.active and layer.mode == "pan_zoom" and said == ["click the object to erase"]
    # looking down z through (y, x) = (6, 6): the object's top face is at z = 2
    tool.on_click(viewer, _Click((0, 6, 6), shown=(0, 1, 2), direction=(1.0, 0.0, 0.0)))
    assert calls == [([2, 6, 6], False)]
    assert not tool.active and not tool.button.isChecked() and layer.mode == "paint"
    QApplication.processEvents()
    assert tool.on_click not in viewer.mouse_drag_callbacks

    tool.set_mode(True)  # a ray that misses the labels' box erases nothing
    tool.on_click(viewer, _Click((0, 60, 60), shown=(0, 1, 2), direction=(1.0, 0.0, 0.0)))
    assert calls == [([2, 6, 6], False)] and said[-1] == "no object under the click"
    assert not tool.active


def test_key_follows_the_attached_layer(make_napari_viewer):
    from napari.utils.key_bindings import coerce_keybinding

    key = coerce_keybinding(ERASE_KEY)
    viewer = make_napari_viewer()
    tool, layer, calls, _ = _tool(viewer)
    other = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="other")
    viewer.cursor.position = (3.0, 6.0, 6.0)
    layer.keymap[key](layer)
    assert calls == [([3, 6, 6], True)]  # the cursor's world position

    layer.mode = "fill"
    tool.set_mode(True)
    tool.attach(other)  # another layer: the mode ends and the first gets its mode back
    assert not tool.active and layer.mode == "fill"
    assert key not in layer.keymap and key in other.keymap
    tool.set_mode(True)
    tool.close()
    QApplication.processEvents()
    assert key not in other.keymap and tool.on_click not in viewer.mouse_drag_callbacks
    assert tool.layer is None and not tool.active
    tool.set_mode(True)  # with no layer, the mode cannot start
    assert not tool.active and not tool.button.isChecked()
