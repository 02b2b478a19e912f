"""Fossils widget: extract, table ↔ instance layer, go to a fossil, delete, merge, export."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_microfossil.fossils import DEFAULT_MIN_VOXELS, DEFAULT_SPLIT

pytest.importorskip("napari")
pytestmark = [
    pytest.mark.gui,
]

SHAPE = (12, 40, 64)
SCALE = (2.0, 1.0, 1.0)
TRANSLATE = (10.0, 0.0, 5.0)
CLASSES = ["background", "fossil", "pore"]
TIMEOUT_MS = 60_000


def ball(centre, r_vox):
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    return ((z - centre[0]) * 2) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= r_vox**2


@pytest.fixture
def setup(make_napari_viewer):
    from napari_microfossil._napari.fossils_widget import FossilsWidget

    viewer = make_napari_viewer()
    labels = np.zeros(SHAPE, np.uint8)
    # Sizes chosen so that sorting voxel counts as text would give another order.
    for centre, r in (((6, 20, 10), 8.5), ((6, 20, 32), 5.0), ((6, 20, 52), 3.0)):
        labels[ball(centre, r)] = 1
    labels[0, 0, 0:3] = 2  # a pore: not a fossil
    scan = np.where(labels == 1, 800, 200).astype(np.uint16)
    viewer.add_image(scan, name="scan", scale=SCALE, translate=TRANSLATE)
    viewer.add_labels(
        labels,
        name="scan fossils",
        scale=SCALE,
        translate=TRANSLATE,
        metadata={"class_names": CLASSES, "source_image": "scan"},
    )
    widget = FossilsWidget(viewer)
    # the default size limit (a ball 8 voxels across) would drop the smallest ball
    assert widget.min_size.value() == DEFAULT_MIN_VOXELS
    assert widget.min_unit.currentText() == "voxels"
    widget.min_size.setValue(0)
    return viewer, widget


def camera_of(viewer):
    from napari_microfossil._napari.fossils_widget import camera_of

    return camera_of(viewer)


def wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=TIMEOUT_MS)


def extract(qtbot, widget):
    assert widget.extract() is widget.worker is not None
    wait_idle(qtbot, widget)
    assert widget.table is not None, widget.status.text()


def column(widget, header):
    from napari_microfossil._napari.fossils_widget import TABLE_COLUMNS

    c = [h for h, _, _ in TABLE_COLUMNS].index(header)
    tw = widget.table_widget
    return [tw.item(r, c).text() for r in range(tw.rowCount())]


def test_defaults_follow_the_labels_layer(setup):
    _, widget = setup
    assert widget.labels.layer().name == "scan fossils"
    assert [widget.class_name.itemText(i) for i in range(widget.class_name.count())] == [
        "fossil",
        "pore",
    ]
    assert widget.class_name.currentText() == "fossil"
    assert widget.image.layer().name == "scan"
    assert not widget.export_button.isEnabled()


def test_extract_table_matches_instances(setup, qtbot):
    viewer, widget = setup
    extract(qtbot, widget)
    layer = viewer.layers["scan fossils instances"]
    assert widget.instances_layer is layer
    assert tuple(layer.scale) == SCALE and tuple(layer.translate) == TRANSLATE
    ids, counts = np.unique(layer.data[layer.data > 0], return_counts=True)
    assert ids.tolist() == [1, 2, 3]
    assert widget.table_widget.rowCount() == 3
    assert [int(t) for t in column(widget, "id")] == [1, 2, 3]
    assert [int(t.replace(",", "")) for t in column(widget, "voxels")] == counts.tolist()
    for row in widget.table.rows:
        assert row["volume_um3"] == pytest.approx(row["voxels"] * 2.0)
        assert row["mean_intensity"] == pytest.approx(800)
    assert "3 fossils" in widget.summary.text()
    # Hovering shows the measurements: they are the layer's features.
    assert layer.features["index"].tolist() == [0, 1, 2, 3]

    # Sorting is numeric: ascending volume puts the smallest fossil (id 3) first.
    widget.table_widget.sortByColumn(7, Qt.SortOrder.AscendingOrder)  # voxels
    assert [int(t) for t in column(widget, "id")] == [3, 2, 1]
    voxels = [int(t.replace(",", "")) for t in column(widget, "voxels")]
    assert voxels == sorted(voxels) and sorted(map(str, voxels)) != [str(v) for v in voxels]


def test_min_size_in_um3_and_voxels(setup, qtbot):
    viewer, widget = setup
    extract(qtbot, widget)
    small = min(r["voxels"] for r in widget.table.rows)
    widget.min_unit.setCurrentText("µm³")
    widget.min_size.setValue(small * 2.0 + 1)  # 2 µm³ per voxel
    extract(qtbot, widget)
    assert len(widget.table) == 2
    assert len(viewer.layers) == 3  # the instance layer was replaced, not added again
    widget.min_unit.setCurrentText("voxels")
    widget.min_size.setValue(1e6)
    extract(qtbot, widget)
    assert len(widget.table) == 0 and widget.table_widget.rowCount() == 0


def test_row_click_goes_to_the_fossil(setup, qtbot):
    viewer, widget = setup
    extract(qtbot, widget)
    layer = widget.instances_layer
    row = widget.table.row(2)
    centroid = np.array([row["centroid_z"], row["centroid_y"], row["centroid_x"]])
    world = centroid * SCALE + TRANSLATE

    widget.select_fossil(2)
    np.testing.assert_allclose(camera_of(viewer).center, world, atol=1e-6)
    assert viewer.dims.point[0] == pytest.approx(world[0], abs=SCALE[0] / 2 + 1e-6)
    assert viewer.dims.current_step[0] == round(centroid[0])
    assert layer.selected_label == 2
    assert not layer.show_selected_label
    assert viewer.layers.selection.active is layer

    # Clicking a row in the table does the same (through the selection signal).
    widget.show_alone.setChecked(True)
    widget.select_rows([3])
    assert widget.selected_ids() == [3]
    assert layer.selected_label == 3 and layer.show_selected_label
    r3 = widget.table.row(3)
    assert camera_of(viewer).center[2] == pytest.approx(r3["centroid_x"] + TRANSLATE[2])
    widget.view_in_3d()
    assert viewer.dims.ndisplay == 3
    np.testing.assert_allclose(
        camera_of(viewer).center,
        np.array([r3["centroid_z"], r3["centroid_y"], r3["centroid_x"]]) * SCALE + TRANSLATE,
        atol=1e-6,
    )


def test_delete_and_merge_update_the_table(setup, qtbot):
    _, widget = setup
    extract(qtbot, widget)
    layer = widget.instances_layer
    voxels = {r["id"]: r["voxels"] for r in widget.table.rows}

    widget.select_rows([3])
    assert widget.delete_button.isEnabled() and not widget.merge_button.isEnabled()
    widget.delete_selected()
    assert widget.table.ids == (1, 2)
    assert 3 not in np.unique(layer.data)
    assert widget.table_widget.rowCount() == 2

    widget.select_rows([1, 2])
    assert widget.merge_button.isEnabled()
    widget.merge_selected()
    assert widget.table.ids == (1,)
    assert np.unique(layer.data).tolist() == [0, 1]
    (row,) = widget.table.rows
    assert row["voxels"] == voxels[1] + voxels[2] == int((layer.data == 1).sum())
    # The merged record is in the volume's frame, as a fresh measurement would be.
    from napari_microfossil.fossils import measure_fossils

    (fresh,) = measure_fossils(layer.data, spacing=SCALE, image=np.asarray(widget._image))
    for key in ("bbox_z0", "bbox_x1", "centroid_x", "centroid_y_um", "touches_border"):
        assert row[key] == pytest.approx(fresh[key]), key
    assert column(widget, "voxels") == [str(row["voxels"])]
    assert layer.selected_label == 1


def test_remeasure_after_painting(setup, qtbot):
    _, widget = setup
    extract(qtbot, widget)
    layer = widget.instances_layer
    layer.data[layer.data == 2] = 0  # as if erased with the brush
    widget.remeasure()
    wait_idle(qtbot, widget)
    assert widget.table.ids == (1, 3)


def test_export_and_read_back(setup, qtbot, tmp_path):
    import tifffile
    import trimesh
    from PIL import Image

    _, widget = setup
    extract(qtbot, widget)
    out = tmp_path / "export"
    widget.export(out, mesh_format="stl", crops=True, gallery=True)
    wait_idle(qtbot, widget)
    assert "exported 3" in widget.status.text()

    with open(out / "fossils.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["id"]) for r in rows] == [1, 2, 3]
    for r, rec in zip(rows, widget.table.rows, strict=True):
        assert int(r["voxels"]) == rec["voxels"]
        mesh = trimesh.load(out / r["mesh_file"], force="mesh")
        assert mesh.is_watertight
        assert mesh.volume == pytest.approx(rec["volume_um3"], rel=0.1)
        with tifffile.TiffFile(out / r["crop_file"]) as tif:
            crop = tif.asarray()
        assert crop.ndim == 4 and crop.shape[1] == 2  # (Z, scan + mask, Y, X)
        assert int((crop[:, 1] > 0).sum()) == rec["voxels"]
    page = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="meshes/fossil_0001.stl"' in page
    for fid in (1, 2, 3):
        with Image.open(out / "gallery" / f"fossil_{fid:04d}.png") as im:
            assert im.size == (640, 320)
    assert (out / "gallery" / "size_histogram.png").is_file()


def test_export_selected_via_button(setup, qtbot, tmp_path):
    _, widget = setup
    extract(qtbot, widget)
    out = tmp_path / "sel"
    widget.choose_folder = lambda: str(out)
    widget.select_rows([2])
    widget.selected_only.setChecked(True)
    widget.mesh_format.setCurrentText("ply")
    widget.gallery.setChecked(False)
    widget.export_button.click()
    wait_idle(qtbot, widget)
    assert sorted(p.name for p in (out / "meshes").iterdir()) == ["fossil_0002.ply"]
    assert not (out / "index.html").exists()

    # A second export into the same folder asks first; "no" leaves it alone.
    asked = []
    widget.confirm = lambda title, text: asked.append(text) or False
    before = (out / "fossils.csv").stat().st_mtime_ns
    widget.export_button.click()
    assert asked and not widget.runner.running
    assert (out / "fossils.csv").stat().st_mtime_ns == before
    widget.confirm = lambda title, text: True
    widget.export_button.click()
    wait_idle(qtbot, widget)
    assert "exported 1" in widget.status.text()


def test_existing_export_is_an_error_not_a_crash(setup, qtbot, tmp_path):
    _, widget = setup
    extract(qtbot, widget)
    widget.export(tmp_path, gallery=False, crops=False)
    wait_idle(qtbot, widget)
    widget.export(tmp_path, gallery=False, crops=False)
    wait_idle(qtbot, widget)
    assert "already exists" in widget.status.text()


def test_table_takes_the_dock_height(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QApplication, QLabel, QSizePolicy, QVBoxLayout, QWidget

    from napari_microfossil._napari.fossils_widget import FossilsWidget

    viewer = make_napari_viewer(show=True)
    labels = np.zeros(SHAPE, np.uint8)
    for k in range(12):  # 12 small fossils: more rows than a squeezed table shows
        labels[6, 3 + 3 * k : 5 + 3 * k, 3:5] = 1
    viewer.add_labels(labels, name="scan fossils", metadata={"class_names": CLASSES})
    widget = FossilsWidget(viewer)
    widget.min_size.setValue(0)  # the 4-voxel fossils are below the default limit
    assert widget.table_widget.sizePolicy().verticalPolicy() == QSizePolicy.Policy.Expanding
    box = widget.table_widget.parentWidget()  # the "Fossils" group box
    assert box.sizePolicy().verticalPolicy() == QSizePolicy.Policy.Expanding
    for name in ("a", "b"):  # docks added before (napari's stretch grows with each dock)
        other = QWidget()
        QVBoxLayout(other).addWidget(QLabel(name))
        viewer.window.add_dock_widget(other, name=name, area="left")
    dock = viewer.window.add_dock_widget(widget, area="right")
    extract(qtbot, widget)
    assert widget.table_widget.rowCount() == 12
    viewer.window._qt_window.resize(1200, 1400)
    dock.resize(500, 1300)
    QApplication.processEvents()
    tw = widget.table_widget
    row = tw.rowHeight(0)
    # what napari gives the dock, less the other boxes, goes to the table
    assert tw.viewport().height() >= 10 * row, (tw.viewport().height(), row, dock.height())


def test_panel_fits_a_laptop_screen(setup):
    _, widget = setup
    # The form scrolls: the panel's minimum height is not the sum of its boxes.
    assert widget.minimumSizeHint().height() <= 600
    assert widget.fossils_box.minimumSizeHint().height() > 200  # the table keeps its rows


def test_bad_class_is_reported_not_run(setup):
    viewer, widget = setup
    viewer.layers["scan fossils"].metadata.pop("class_names")
    widget._on_labels_changed()
    assert widget.class_name.isEditable() and widget.class_name.currentText() == "1"
    widget.class_name.setEditText("0")
    assert widget.extract() is None
    assert "background" in widget.status.text()
    assert widget.table is None


def test_edits_need_a_selection(setup, qtbot):
    _, widget = setup
    extract(qtbot, widget)
    widget.select_rows([1])
    widget.merge_selected()  # one fossil: nothing to merge
    assert widget.table.ids == (1, 2, 3)
    widget.delete_selected([2, 3])
    assert widget.table.ids == (1,)
    assert np.unique(widget.instances_layer.data).tolist() == [0, 1]


# -- out of date (issue 12): the table no longer describes the labels ------------


def test_segment_again_marks_the_table_out_of_date(setup, qtbot):
    viewer, widget = setup
    extract(qtbot, widget)
    assert widget.summary.text().startswith("3 fossils")
    labels = viewer.layers["scan fossils"]
    labels.data = np.zeros_like(labels.data)  # what Segment again does
    assert "'scan fossils' has changed since these fossils were extracted" in widget.summary.text()
    extract(qtbot, widget)  # extracting again clears the note
    assert widget.summary.text().startswith("0 fossils")
    assert not widget.source_watch.stale


def test_painting_the_labels_marks_it_too(setup, qtbot):
    viewer, widget = setup
    extract(qtbot, widget)
    labels = viewer.layers["scan fossils"]
    labels.paint((6, 20, 10), 0, refresh=True)
    assert widget.source_watch.stale and "Extract again" in widget.summary.text()


def test_a_change_to_another_layer_is_not_noticed(setup, qtbot):
    viewer, widget = setup
    extract(qtbot, widget)
    viewer.layers["scan"].data = np.zeros_like(viewer.layers["scan"].data)
    assert not widget.source_watch.stale
    assert widget.summary.text().startswith("3 fossils")


def test_panel_starts_at_the_command_lines_defaults(setup):
    from napari_microfossil.cli import build_parser
    from napari_microfossil.fossils import DEFAULT_MIN_DIAMETER_VOXELS
    from napari_microfossil.workflows.fossils import FossilsRequest

    viewer, _ = setup
    from napari_microfossil._napari.fossils_widget import FossilsWidget

    widget = FossilsWidget(viewer)  # a fresh panel, as a user first sees it
    args = build_parser().parse_args(["fossils", "l.tif", "-o", "out"])
    opts = widget.extract_options()
    assert opts["split"] is args.split is DEFAULT_SPLIT is True
    assert opts["min_voxels"] == DEFAULT_MIN_VOXELS and "min_volume_um3" not in opts
    assert opts["fill_cavities"] is (not args.no_fill_cavities)
    assert FossilsRequest.__dataclass_fields__["fill_cavities"].default is True
    note = widget.options.note((2.0, 2.0, 2.0))
    assert f"size limit {DEFAULT_MIN_VOXELS} voxels" in note and "Min size 0 keeps" in note
    assert f"a ball {DEFAULT_MIN_DIAMETER_VOXELS} voxels" in note
    widget.min_size.setValue(10)
    assert widget.options.note((2.0, 2.0, 2.0)) == ""  # another limit: nothing to explain


def test_default_size_limit_is_explained_after_extracting(setup, qtbot):
    _, widget = setup
    widget.min_size.setValue(DEFAULT_MIN_VOXELS)
    extract(qtbot, widget)
    # the r=3 ball (about 56 voxels) is below the default limit, the two others not
    assert len(widget.table) == 2
    assert f"size limit {DEFAULT_MIN_VOXELS} voxels" in widget.status.text()
    assert "Min size 0 keeps them" in widget.status.text()
