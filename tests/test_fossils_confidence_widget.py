"""The Fossils panel's confidence limit: the Segment result's confidence layer, the
command line's default, dropped objects, and a note on how to keep them."""

from __future__ import annotations

import numpy as np
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


def test_reviewed_slices_count_as_sure_and_unknown_corrections_are_not_judged(setup, qtbot):
    from napari_microfossil.review import ReviewState

    viewer, widget = setup
    layer = viewer.layers["scan fossils"]
    # corrections whose slices are not known: the model's confidence is not used
    layer.metadata["microfossil_review"] = {"edited": {"z": [6]}}
    assert widget.extract_options()["confidence"] is None
    _extract(qtbot, widget)
    assert len(widget.table) == 2
    assert "no confidence map" in widget.status.text()
    # one reviewed slice through the unsure ball: sure there, still unsure on the whole
    state = ReviewState(n_slices=12, reviewed={6}, edited={6})
    layer.metadata["microfossil_review"] = state
    conf = widget.extract_options()["confidence"]
    assert conf is not None and np.all(conf[6] == 100) and conf[5, 12, 36] == 60
    assert viewer.layers["scan confidence"].data[6, 12, 36] == 60  # a copy
    _extract(qtbot, widget)
    assert len(widget.table) == 1
    # the user reviewed every slice of it: the ball is theirs, and kept
    state.reviewed |= set(range(1, 12))
    _extract(qtbot, widget)
    assert len(widget.table) == 2
