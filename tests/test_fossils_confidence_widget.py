"""The Fossils panel's confidence limit: the Segment result's confidence layer, the
command line's default, dropped objects, and a note on how to keep them."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil.fossils import DEFAULT_MIN_CONFIDENCE

pytest.importorskip("napari")
pytestmark = [pytest.mark.gui]

SHAPE = (12, 24, 48)


@pytest.fixture
def setup(make_napari_viewer):
    from napari_microfossil._napari.fossils_widget import FossilsWidget

    viewer = make_napari_viewer()
    labels = np.zeros(SHAPE, np.uint8)
    conf = np.full(SHAPE, 99, np.uint8)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    for cx, c in ((12, 97), (36, 60)):  # a sure ball and an unsure one
        ball = (z - 6) ** 2 + (y - 12) ** 2 + (x - cx) ** 2 <= 25
        labels[ball] = 1
        conf[ball] = c
    viewer.add_image(conf, name="scan confidence", metadata={"labels_layer": "scan fossils"})
    viewer.add_labels(
        labels,
        name="scan fossils",
        metadata={
            "class_names": ["background", "fossil"],
            "confidence_layer": "scan confidence",
        },
    )
    widget = FossilsWidget(viewer)
    widget.min_size.setValue(0)
    widget.options.object_check.setChecked(False)  # the limit alone (test_object_check_widget)
    return viewer, widget


def _extract(qtbot, widget):
    assert widget.extract() is not None
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    assert widget.table is not None, widget.status.text()


def test_panel_drops_unsure_objects_with_the_results_confidence(setup, qtbot):
    from napari_microfossil.cli import build_parser

    _, widget = setup
    args = build_parser().parse_args(["fossils", "l.tif", "-o", "out"])
    # the command line's default: this limit, unless the object check runs (no scan here)
    assert widget.options.min_confidence.value() == DEFAULT_MIN_CONFIDENCE
    assert args.min_confidence is None
    opts = widget.extract_options()
    assert opts["confidence"] is not None and opts["min_confidence"] == DEFAULT_MIN_CONFIDENCE
    _extract(qtbot, widget)
    assert len(widget.table) == 1 and widget.table.dropped_unsure == 1
    assert "Min confidence 0 keeps them" in widget.status.text()
    widget.options.min_confidence.setValue(0)
    _extract(qtbot, widget)
    assert len(widget.table) == 2


def test_corrected_labels_are_not_judged_by_the_models_confidence(setup, qtbot):
    viewer, widget = setup
    viewer.layers["scan fossils"].metadata["microfossil_review"] = {"edited": {"z": [6]}}
    assert widget.extract_options()["confidence"] is None
    _extract(qtbot, widget)
    assert len(widget.table) == 2
    assert "no confidence map" in widget.status.text()
