"""The Fossils panel's object check: on by default with a scan and the Segment result's
confidence, in place of the confidence limit; unticked, the limit applies again."""

from __future__ import annotations

import pytest

from napari_microfossil.fossils import DEFAULT_MIN_CONFIDENCE

pytest.importorskip("napari")
pytestmark = [pytest.mark.gui]


@pytest.fixture
def setup(two_balls_panel):
    return two_balls_panel


def test_the_check_runs_with_scan_and_confidence_in_place_of_the_limit(setup, qtbot):
    _, widget = setup
    assert widget.options.object_check.isChecked()
    assert not widget.options.min_confidence.isEnabled()  # the check replaces the limit
    opts = widget.extract_options(scan=True)
    assert opts["object_check"] is True and opts["min_confidence"] == 0
    assert widget.extract_options(scan=False)["object_check"] is False
    assert widget.extract() is not None
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    table = widget.table
    assert table is not None and table.dropped_unsure == 0
    assert len(table) + table.dropped_lookalikes == 2
    said = f"object check: {table.dropped_lookalikes} object"
    assert (
        said in widget.status.text() and "unticking Object check keeps them" in widget.status.text()
    )

    widget.options.object_check.setChecked(False)
    assert widget.options.min_confidence.isEnabled()
    opts = widget.extract_options(scan=True)
    assert opts["object_check"] is False and opts["min_confidence"] == DEFAULT_MIN_CONFIDENCE
    assert widget.extract() is not None
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    assert len(widget.table) == 1 and widget.table.dropped_unsure == 1


def test_min_confidence_is_greyed_only_while_the_check_can_run(setup):
    """Without a Scan the check cannot run and the limit applies: the box is not greyed."""
    _, widget = setup
    box = widget.options.min_confidence
    assert widget.image.layer() is not None and not box.isEnabled()
    widget.image.setCurrentIndex(widget.image.findText("(none)"))
    assert widget.image.layer() is None and box.isEnabled()
    opts = widget.extract_options(scan=False)
    assert opts["object_check"] is False and opts["min_confidence"] == DEFAULT_MIN_CONFIDENCE
    widget.options.object_check.setChecked(False)
    assert box.isEnabled()
    widget.image.set_layer("scan")
    assert box.isEnabled()  # unticked: the limit applies with or without a scan
    widget.options.object_check.setChecked(True)
    assert not box.isEnabled()
