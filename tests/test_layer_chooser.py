"""`_napari._common.LayerChooser`: its default choice rule, and the `keep`/`accept` options."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_microfossil._napari._common import LayerChooser

pytestmark = pytest.mark.gui


def _image(viewer, name):
    return viewer.add_image(np.zeros((4, 4)), name=name)


def test_default_keeps_the_choice_by_name_and_takes_the_last(make_napari_viewer):
    from napari.layers import Image

    viewer = make_napari_viewer()
    _image(viewer, "a")
    chooser = LayerChooser(viewer, Image)
    assert chooser.layer().name == "a"
    _image(viewer, "b")
    assert chooser.layer().name == "a"  # a choice made stays
    viewer.layers["a"].name = "renamed"  # ...by name: a rename loses it
    assert chooser.currentText() == "b"


def test_keep_follows_the_layer_through_renames(make_napari_viewer):
    from napari.layers import Image

    viewer = make_napari_viewer()
    first, second = _image(viewer, "first"), _image(viewer, "second")
    _image(viewer, "skip me")
    changed = []
    chooser = LayerChooser(viewer, Image, accept=lambda ly: ly.name != "skip me", keep=True)
    chooser.currentIndexChanged.connect(lambda i: changed.append(chooser.layer()))
    assert chooser.layer() is first  # with nothing chosen: the first layer
    assert [chooser.itemText(i) for i in range(chooser.count())] == ["first", "second"]
    chooser.set_layer("second")
    assert chooser.layer() is second and changed == [second]
    second.name = "renamed"
    assert chooser.layer() is second and chooser.currentText() == "renamed"
    assert changed == [second]  # the same layer: no change to tell
    viewer.layers.remove(second)
    assert chooser.layer() is first and changed == [second, first]
    chooser.stop()  # the owner closed: the viewer's changes are no longer followed
    viewer.layers.remove(first)
    assert changed == [second, first]


def test_keep_with_none_allowed_prefers_or_chooses_nothing(make_napari_viewer):
    from napari.layers import Image

    viewer = make_napari_viewer()
    _image(viewer, "scan")
    wanted = []
    chooser = LayerChooser(
        viewer, Image, allow_none="(none)", prefer=lambda ly: ly.name in wanted, keep=True
    )
    assert chooser.layer() is None and chooser.currentText() == "(none)"
    wanted.append("confidence")
    conf = _image(viewer, "confidence")
    assert chooser.layer() is conf  # the preferred layer, once it comes
