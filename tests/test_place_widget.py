"""Sparse label slices placed on their scan in napari: on File > Open (the reader), from
Layers > Data > Place label slices (the dialog), and fine-tuned on without review."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from test_finetune_widget import tiny_cpu_training

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_microfossil._napari import layers as md
from napari_microfossil._napari.place import PLACED

pytestmark = pytest.mark.gui

PLUGIN = "napari-microfossil"
YX = (64, 64)
SPACING = (2.5, 2.5, 2.5)
SANDSTONE = (
    Path(
        os.environ.get("MICROFOSSIL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    / "sandstone-versa-microct"
)


def _scan_folder(folder: Path, numbers, seed: int = 0) -> np.ndarray:
    """Scan slices ``scan_NNNN.tif`` with a voxel size; returns the volume."""
    from napari_microfossil.io import write_tiff

    folder.mkdir()
    vol = np.random.default_rng(seed).integers(0, 200, (len(numbers), *YX)).astype(np.uint8)
    for n, plane in zip(numbers, vol, strict=True):
        write_tiff(folder / f"scan_{n:04d}.tif", plane[None], spacing=SPACING)
    return vol


def _label_folder(folder: Path, numbers) -> np.ndarray:
    """Label slices ``lab_NNNN.tif`` (classes 0-3, no voxel size); slice k is all-k
    striped with 3, so each can be told where it went."""
    import tifffile

    folder.mkdir()
    stack = np.zeros((len(numbers), *YX), np.uint8)
    for k, n in enumerate(numbers):
        stack[k] = k % 3
        stack[k, ::7] = 3
        tifffile.imwrite(folder / f"lab_{n:04d}.tif", stack[k])
    return stack


@pytest.fixture
def tmp_path(tmp_path):
    """A folder whose name says nothing: the reader reads "label" in a parent folder's
    name (pytest names tmp_path after the test) as a hint that a volume is labels."""
    core = tmp_path / "core"
    core.mkdir()
    return core


def _open(viewer, path):
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    return layer


def test_label_slices_with_one_more_than_the_scan_are_placed_by_number(
    make_napari_viewer, tmp_path, caplog
):
    """The sandstone's layout: scan slices 0, 50, ..., 200; labels at the same numbers
    and at 120, which has no scan slice."""
    viewer = make_napari_viewer()
    _scan_folder(tmp_path / "images", [0, 50, 100, 150, 200])
    scan = _open(viewer, tmp_path / "images")
    numbers = [0, 50, 100, 120, 150, 200]
    stack = _label_folder(tmp_path / "labels", numbers)
    with caplog.at_level(logging.WARNING):
        labels = _open(viewer, tmp_path / "labels")
    assert type(labels).__name__ == "Labels"
    assert labels.data.shape == (5, *YX)
    for plane, k in zip(range(5), (0, 1, 2, 4, 5), strict=True):
        np.testing.assert_array_equal(labels.data[plane], stack[k])
    assert md.reviewed_slices_of(labels) == {"z": [0, 1, 2, 3, 4]}
    assert labels.metadata[PLACED]["numbers"] == [0, 50, 100, 150, 200]
    assert tuple(scan.scale) == pytest.approx(SPACING)
    assert tuple(labels.scale) == pytest.approx(tuple(scan.scale))
    assert "left out (no plane of 'images' numbered so): 120" in caplog.text


def test_sparse_label_slices_on_a_full_scan_leave_the_rest_unreviewed(make_napari_viewer, tmp_path):
    from napari_microfossil.io import write_tiff

    viewer = make_napari_viewer()
    scan = np.random.default_rng(1).integers(0, 999, (41, *YX)).astype(np.uint16)
    write_tiff(tmp_path / "scan.tif", scan, spacing=SPACING)
    _open(viewer, tmp_path / "scan.tif")
    stack = _label_folder(tmp_path / "labels", [0, 10, 20, 30, 40])
    labels = _open(viewer, tmp_path / "labels")
    assert labels.data.shape == (41, *YX)
    assert md.reviewed_slices_of(labels) == {"z": [0, 10, 20, 30, 40]}
    np.testing.assert_array_equal(labels.data[30], stack[3])
    assert not labels.data[5].any()
    state = labels.metadata[md.REVIEW]
    assert state.summary() == "5 of 41 slices reviewed"


def test_label_slices_that_cannot_be_lined_up_open_as_they_are(
    make_napari_viewer, tmp_path, caplog
):
    viewer = make_napari_viewer()
    _scan_folder(tmp_path / "images", [0, 1, 2])
    _open(viewer, tmp_path / "images")
    _label_folder(tmp_path / "labels", [500, 600])
    with caplog.at_level(logging.WARNING):
        labels = _open(viewer, tmp_path / "labels")
    assert labels.data.shape == (2, *YX)
    assert PLACED not in labels.metadata and md.REVIEW not in labels.metadata
    assert "no number in common" in caplog.text and "Place label slices" in caplog.text


def test_the_dialog_places_unnumbered_slices_from_a_first_plane_and_a_step(
    make_napari_viewer, tmp_path
):
    from napari_microfossil._napari.place import place_label_slices
    from napari_microfossil.io import write_tiff

    viewer = make_napari_viewer()
    scan = np.random.default_rng(1).integers(0, 200, (9, *YX)).astype(np.uint8)
    write_tiff(tmp_path / "scan.tif", scan, spacing=SPACING)
    scan = _open(viewer, tmp_path / "scan.tif")
    stack = np.stack([np.full(YX, v, np.uint8) for v in (1, 2, 3)])
    viewer.add_labels(stack, name="three slices")
    viewer.layers.selection.active = scan
    assert place_label_slices(viewer) is None  # an Image layer is selected
    viewer.layers.selection.active = viewer.layers["three slices"]
    dialog = place_label_slices(viewer)
    assert not dialog.by_numbers.isEnabled() and dialog.by_step.isChecked()
    dialog.first.setValue(2)
    dialog.step.setValue(4)  # the last slice would go to plane 10 of 9
    assert dialog.place() is None and "Cannot place" in dialog.message.text()
    assert viewer.layers["three slices"].data.shape == (3, *YX)
    dialog.step.setValue(3)
    dialog.accept()
    placed = viewer.layers["three slices"]
    assert placed is dialog.placed and placed.data.shape == (9, *YX)
    assert [int(placed.data[z, 0, 0]) for z in range(9)] == [0, 0, 1, 0, 0, 2, 0, 0, 3]
    assert md.reviewed_slices_of(placed) == {"z": [2, 5, 8]}
    assert tuple(placed.scale) == pytest.approx(SPACING)
    assert viewer.layers.index(placed) == 1  # where it was


def test_finetune_trains_on_placed_slices_without_a_review(
    make_napari_viewer, qtbot, tmp_path, model_file
):
    """Placed labels (no Review panel ever saw them) with four new class names: the
    panel proposes the layer and its scan, and trains on the placed planes only."""
    from napari_microfossil._napari.finetune_widget import FinetuneWidget
    from napari_microfossil.model import read_spec

    viewer = make_napari_viewer()
    _scan_folder(tmp_path / "images", [0, 50, 100, 150, 200, 250])
    _open(viewer, tmp_path / "images")
    viewer.add_image(np.zeros((6, 8, 8), np.uint8), name="unrelated")
    _label_folder(tmp_path / "labels", [0, 100, 150, 250])
    labels = _open(viewer, tmp_path / "labels")
    assert md.reviewed_slices_of(labels) == {"z": [0, 2, 3, 5]}
    widget = FinetuneWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.labels.layer() is labels
    assert widget.image.layer().name == "images"
    assert widget.slices_label.text().startswith("4 reviewed slices (z: 4); 1 held out")
    assert "placed from the label slices numbered 0, 100, 150, 250" in widget.slices_label.text()
    # A slice that was not placed is refused: its 0s would train as class 0.
    widget.slices.setText("z:0,1")
    assert "z=1 not reviewed" in widget.slices_label.text()
    widget.slices.setText("0,2,5")
    assert widget.slices_label.text().startswith("3 chosen slices (z: 3)")
    widget.classes.setText("pore, clay, grain, dense")
    widget.classes.setModified(True)
    tiny_cpu_training(widget)
    widget.model.addItem("tiny", str(model_file))
    widget.model.setCurrentIndex(widget.model.count() - 1)
    widget.output.setText(str(tmp_path / "placed.safetensors"))
    assert widget.run() is not None, widget.status.text()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    assert "done" in widget.status.text(), widget.status.text()
    run = widget.last_result
    assert run.train_slices == {"z": [0, 2, 5]} and run.val_slices == {}
    assert read_spec(widget.model_path_out).class_names == ("pore", "clay", "grain", "dense")


def test_a_label_volume_without_a_record_trains_on_the_slices_named(
    make_napari_viewer, tmp_path, model_file
):
    from napari_microfossil._napari.finetune_widget import FinetuneWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.ones((5, *YX), np.uint8), name="scan")
    viewer.add_labels(np.ones((5, *YX), np.uint8), name="labels from a file")
    widget = FinetuneWidget(viewer)
    assert "has no review record" in widget.slices_label.text()
    assert widget.run() is None and "no reviewed slices" in widget.status.text()
    widget.slices.setText("z:1,3")
    widget.model.addItem("tiny", str(model_file))
    widget.model.setCurrentIndex(widget.model.count() - 1)
    widget.output.setText(str(tmp_path / "m.safetensors"))
    assert widget.request().slices == {"z": [1, 3]}
    widget.slices.setText("z:1;q:2")
    assert "slices:" in widget.slices_label.text()


@pytest.mark.skipif(not SANDSTONE.exists(), reason="the sandstone data is not here")
def test_the_real_sandstone_labels_are_placed_on_its_scan(make_napari_viewer):
    viewer = make_napari_viewer()
    scan = _open(viewer, SANDSTONE / "images")
    labels = _open(viewer, SANDSTONE / "labels_index")
    assert labels.data.shape == scan.data.shape == (9, 1024, 996)
    assert labels.metadata[PLACED]["numbers"] == list(range(0, 401, 50))
    assert md.reviewed_slices_of(labels) == {"z": list(range(9))}
