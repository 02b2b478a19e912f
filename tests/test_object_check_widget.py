"""The Fossils panel's object check: on by default with a scan and the Segment result's
confidence, in place of the confidence limit; unticked, the limit applies again."""

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
    scan = (20000 + 6000.0 * labels).astype(np.uint16)
    viewer.add_image(scan, name="scan")
    viewer.add_image(conf, name="scan confidence", metadata={"labels_layer": "scan fossils"})
    viewer.add_labels(
        labels,
        name="scan fossils",
        metadata={"class_names": ["background", "fossil"], "confidence_layer": "scan confidence"},
    )
    widget = FossilsWidget(viewer)
    widget.min_size.setValue(0)
    widget.image.set_layer("scan")
    return viewer, widget


def test_the_check_runs_with_scan_and_confidence_in_place_of_the_limit(setup, qtbot):
    _, widget = setup
    assert widget.options.object_check.isChecked()
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
    opts = widget.extract_options(scan=True)
    assert opts["object_check"] is False and opts["min_confidence"] == DEFAULT_MIN_CONFIDENCE
    assert widget.extract() is not None
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    assert len(widget.table) == 1 and widget.table.dropped_unsure == 1
