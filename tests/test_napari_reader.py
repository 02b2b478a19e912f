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


# -- label files made elsewhere (issue 12): few values or a labels name -> Labels layer

SANDSTONE = (
    __import__("pathlib").Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "sandstone-versa-microct"
)


@pytest.mark.parametrize(
    ("name", "values", "kind"),
    [
        ("mask.tif", 200, "labels"),  # named: up to 256 values
        ("phases.tif", 4, "labels"),  # few values, whatever the name
        ("phases.tif", 40, "image"),
        ("scan.tif", 2, "labels"),
    ],
)
def test_integer_volumes_with_few_values_or_a_labels_name_open_as_labels(
    tmp_path, name, values, kind
):
    data = (np.arange(3 * 20 * 20).reshape(3, 20, 20) % values).astype(np.uint8)
    write_tiff(tmp_path / name, data)
    [(_arr, _meta, got)] = napari_get_reader(str(tmp_path / name))(str(tmp_path / name))
    assert got == kind


def test_float_data_is_never_labels(tmp_path):
    write_tiff(tmp_path / "mask.tif", np.zeros((2, 8, 8), np.float32))
    [(_arr, _meta, kind)] = napari_get_reader(str(tmp_path / "mask.tif"))(
        str(tmp_path / "mask.tif")
    )
    assert kind == "image"


@pytest.mark.skipif(not SANDSTONE.exists(), reason="../shared/data not beside the repo")
def test_the_real_sandstone_label_folder_opens_as_labels():
    path = str(SANDSTONE / "labels_index")
    [(arr, _meta, kind)] = napari_get_reader(path)(path)
    assert kind == "labels"
    assert arr.shape == (10, 1024, 996)
    assert set(np.unique(np.asarray(arr[0]))) <= {0, 1, 2, 3}


@pytest.mark.gui
@pytest.mark.skipif(not SANDSTONE.exists(), reason="../shared/data not beside the repo")
def test_labels_without_voxel_size_take_the_open_scans(make_napari_viewer):
    """The sandstone's label slices carry no voxel size; drawn at the scan's 2.23 µm
    they lie over it instead of 2.23x too small."""
    viewer = make_napari_viewer()
    [scan] = viewer.open(str(SANDSTONE / "images"), plugin="napari-microfossil")
    assert scan.scale[-1] == pytest.approx(2.2315, abs=1e-3)
    [labels] = viewer.open(str(SANDSTONE / "labels_index"), plugin="napari-microfossil")
    assert type(labels).__name__ == "Labels"
    assert tuple(labels.scale[-2:]) == pytest.approx(tuple(scan.scale[-2:]))
    assert "from the scan" in labels.metadata["spacing_source"]
