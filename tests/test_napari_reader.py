"""The napari reader and sample data, without a viewer."""

import numpy as np
import pytest

from napari_microfossil._napari.reader import napari_get_reader
from napari_microfossil._napari.sample import make_sample
from napari_microfossil.io import write_tiff


def test_reader_declines_what_it_cannot_read(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) is None


def test_scan_opens_as_image_with_voxel_size(tmp_path):
    data = np.arange(4 * 8 * 9, dtype=np.uint16).reshape(4, 8, 9)
    write_tiff(tmp_path / "scan.tif", data, spacing=(3.0, 1.5, 1.5))
    reader = napari_get_reader(str(tmp_path / "scan.tif"))
    [(arr, meta, kind)] = reader(str(tmp_path / "scan.tif"))
    assert kind == "image"
    assert meta["scale"] == pytest.approx((3.0, 1.5, 1.5))
    np.testing.assert_array_equal(np.asarray(arr), data)


def test_labels_written_by_the_tool_open_as_labels_with_classes(tmp_path):
    lab = np.zeros((3, 8, 8), np.uint8)
    lab[1, 2:4, 2:4] = 1
    write_tiff(
        tmp_path / "labels.tif",
        lab,
        spacing=(2.0, 2.0, 2.0),
        class_names=("background", "fossil", "pore"),
    )
    [(_arr, meta, kind)] = napari_get_reader(str(tmp_path / "labels.tif"))(
        str(tmp_path / "labels.tif")
    )
    assert kind == "labels"
    assert meta["metadata"]["class_names"] == ["background", "fossil", "pore"]
    colour = meta["colormap"].color_dict[1]
    assert colour[0] > 0.9  # fossils are orange


def test_sample_has_scan_and_hidden_truth():
    layers = make_sample()
    (img, img_meta, k1), (lab, lab_meta, k2) = layers
    assert (k1, k2) == ("image", "labels")
    assert img.shape == lab.shape
    assert lab_meta["visible"] is False
    assert img_meta["scale"] == lab_meta["scale"]
    assert set(np.unique(lab)) <= {0, 1, 2}
