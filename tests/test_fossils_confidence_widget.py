"""The Fossils panel's confidence limit: the Segment result's confidence layer, the
command line's default, dropped objects, and a note on how to keep them."""

from __future__ import annotations

import pytest

from napari_microfossil.fossils import DEFAULT_MIN_CONFIDENCE

pytest.importorskip("napari")
pytestmark = [pytest.mark.gui]


@pytest.fixture
def setup(two_balls_panel):
    viewer, widget = two_balls_panel
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
    # the command line's default: this limit, unless the object check runs (unticked here)
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
