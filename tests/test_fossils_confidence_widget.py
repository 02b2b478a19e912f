"""The Fossils panel's confidence limit: the Segment result's confidence layer, the
command line's default, dropped objects, and a note on how to keep them."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import two_balls
from napari_microfossil.fossils import DEFAULT_MIN_CONFIDENCE

pytest.importorskip("napari")
pytestmark = [pytest.mark.gui]


@pytest.fixture
def setup(two_balls_panel):
    viewer, widget = two_balls_panel
    widget.options.object_check.setChecked(False)  # the limit alone (test_object_check_widget)
    return viewer, widget


def _store(path, data, **meta):
    """`data` as an OME-Zarr store of tiny chunks (many blocks), as segment writes it."""
    from napari_microfossil.io.store import create_output

    out = create_output(path, data.shape, data.dtype, chunks=(4, 8, 16), **meta)
    for z0, z1 in out.todo():
        out.write(z0, data[z0:z1])
    out.finish()


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


def test_a_store_backed_result_is_judged_block_by_block_with_its_corrections(
    make_napari_viewer, qtbot, tmp_path
):
    """Labels and confidence in zarr stores (a big scan's Segment result): the panel
    extracts block by block, reads the confidence lazily with the reviewed slices
    sure, and runs the object check there too."""
    from napari_microfossil._napari.fossils_widget import FossilsWidget
    from napari_microfossil.io import read_volume
    from napari_microfossil.review import ReviewState
    from napari_microfossil.review.labels_store import open_store_labels

    labels, conf = two_balls()
    _store(tmp_path / "l.zarr", labels, class_names=["background", "fossil"])
    _store(tmp_path / "c.zarr", conf)
    viewer = make_napari_viewer()
    viewer.add_image((20000 + 6000.0 * labels).astype(np.uint16), name="scan")
    viewer.add_image(read_volume(tmp_path / "c.zarr", lazy=True).data, name="scan confidence")
    layer = viewer.add_labels(
        open_store_labels(tmp_path / "l.zarr"),
        name="scan fossils",
        metadata={"class_names": ["background", "fossil"], "confidence_layer": "scan confidence"},
    )
    widget = FossilsWidget(viewer)
    widget.min_size.setValue(0)
    widget.image.set_layer("scan")
    widget.options.object_check.setChecked(False)
    state = ReviewState(n_slices=12, reviewed={6}, edited={6})
    layer.metadata["microfossil_review"] = state
    got = widget.extract_options()["confidence"]
    assert not isinstance(got, np.ndarray)  # a lazy view, not a copy of the volume
    assert np.all(got[6] == 100) and got[5, 12, 36] == 60
    _extract(qtbot, widget)
    assert len(widget.table) == 1 and widget.table.dropped_unsure == 1
    assert (tmp_path / "l.instances.zarr").is_dir()  # block by block, beside the store
    state.reviewed |= set(range(1, 12))
    _extract(qtbot, widget)
    assert len(widget.table) == 2

    widget.options.object_check.setChecked(True)
    assert widget.extract_options(scan=True)["object_check"] is True
    _extract(qtbot, widget)
    table = widget.table
    assert len(table) + table.dropped_lookalikes == 2
    assert f"object check: {table.dropped_lookalikes} object" in widget.status.text()


@pytest.mark.parametrize("kind", ["zarr", "tif"])
def test_labels_opened_from_a_file_use_the_confidence_map_they_name(
    make_napari_viewer, qtbot, tmp_path, kind
):
    """``segment -o labels.zarr --confidence conf.zarr`` (or TIFFs) from the command
    line, then the labels opened in napari: the panel finds the map the labels name (no
    confidence layer needed) and the object check runs, block by block or in memory."""
    from napari_microfossil._napari.fossils_widget import FossilsWidget
    from napari_microfossil.io import write_tiff

    labels, conf = two_balls()
    named = {"confidence": f"c.{kind}"}
    write = _store if kind == "zarr" else write_tiff
    write(tmp_path / f"l.{kind}", labels, class_names=["background", "fossil"], metadata=named)
    write(tmp_path / f"c.{kind}", conf)
    viewer = make_napari_viewer()
    viewer.add_image((20000 + 6000.0 * labels).astype(np.uint16), name="scan")
    [layer] = viewer.open(str(tmp_path / f"l.{kind}"), plugin="napari-microfossil")
    widget = FossilsWidget(viewer)
    widget.min_size.setValue(0)
    widget.image.set_layer("scan")
    widget.labels.set_layer(layer.name)
    got = widget.extract_options()["confidence"]
    assert got is not None and got[6, 12, 36] == 60
    _extract(qtbot, widget)
    table = widget.table
    assert len(table) + table.dropped_lookalikes == 2
    assert f"object check: {table.dropped_lookalikes} object" in widget.status.text()
    assert (tmp_path / "l.instances.zarr").is_dir() == (kind == "zarr")
    widget.options.object_check.setChecked(False)
    _extract(qtbot, widget)
    assert len(widget.table) == 1 and widget.table.dropped_unsure == 1  # the 85 % limit
