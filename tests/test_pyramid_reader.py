"""The napari reader with pyramids and big scans, and the panels given a multiscale scan."""

import numpy as np
import pytest

from napari_microfossil._napari import layers
from napari_microfossil._napari import reader as rd
from napari_microfossil.io import create_output, store, write_tiff
from napari_microfossil.io import pyramid as pyr
from napari_microfossil.io.lazy import LazyArray


@pytest.fixture(autouse=True)
def _tiny_chunks(monkeypatch, tmp_path):
    monkeypatch.setattr(store, "CHUNK_BYTES", 200)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _scan(tmp_path, shape=(8, 40, 30)):
    a = np.random.default_rng(0).integers(0, 4000, shape, dtype=np.uint16)
    write_tiff(tmp_path / "scan.tif", a, spacing=(2.0, 0.5, 0.5))
    return tmp_path / "scan.tif", a


def _read(path):
    return rd.napari_get_reader(str(path))(str(path))


def test_a_scan_with_a_pyramid_opens_as_a_lazy_multiscale_image(tmp_path):
    scan, a = _scan(tmp_path)
    where = pyr.build_pyramid(scan, max_side=10)
    [(data, meta, kind)] = _read(scan)
    assert kind == "image" and meta["multiscale"] is True
    assert [d.shape for d in data] == [(8, 40, 30), (4, 20, 15), (2, 10, 8)]
    assert all(isinstance(d, LazyArray) for d in data)
    np.testing.assert_array_equal(data[0][3], a[3])
    assert meta["scale"] == pytest.approx((2.0, 0.5, 0.5))
    # the layer still belongs to the scan: panels anchor outputs and reviews there
    assert meta["metadata"][layers.PATH] == str(scan)
    assert meta["metadata"][layers.PYRAMID] == str(where)
    # the pyramid store itself opens the same way
    [(data2, meta2, _)] = _read(where)
    assert len(data2) == 3 and meta2["metadata"][layers.PATH] == str(scan.resolve())


def test_a_stale_pyramid_is_not_shown(tmp_path):
    scan, a = _scan(tmp_path)
    pyr.build_pyramid(scan, max_side=10)
    write_tiff(scan, a[:6], spacing=(2.0, 0.5, 0.5), overwrite=True)
    [(data, meta, _)] = _read(scan)
    assert "multiscale" not in meta and data.shape == (6, 40, 30)


def test_a_big_scan_without_pyramid_opens_lazily_and_says_how_to_build_one(tmp_path, monkeypatch):
    scan, a = _scan(tmp_path)
    told = []
    monkeypatch.setattr(rd, "BIG_BYTES", 1000)
    monkeypatch.setattr(rd, "_notify", told.append)
    monkeypatch.setattr(pyr, "MAX_SIDE", 10)
    [(data, _, kind)] = _read(scan)
    assert kind == "image" and not isinstance(data, np.ndarray)
    np.testing.assert_array_equal(data[2], a[2])
    [message] = told
    assert f"microfossil pyramid {scan}" in message
    # a small scan opens in memory as before, without a word
    monkeypatch.setattr(rd, "BIG_BYTES", 1 << 30)
    [(data, _, _)] = _read(scan)
    assert isinstance(data, np.ndarray) and len(told) == 1


def test_a_label_store_of_the_tool_opens_as_lazy_labels(tmp_path):
    lab = np.zeros((6, 10, 12), np.uint8)
    lab[2:4, 3:6, 3:9] = 1
    out = create_output(
        tmp_path / "labels.zarr",
        lab.shape,
        lab.dtype,
        spacing=(2.0, 1.0, 1.0),
        class_names=("background", "fossil", "pore"),
    )
    for z0, z1 in out.todo():
        out.write(z0, lab[z0:z1])
    out.finish()
    [(data, meta, kind)] = _read(tmp_path / "labels.zarr")
    assert kind == "labels" and isinstance(data, LazyArray)
    assert meta["metadata"][layers.CLASS_NAMES] == ["background", "fossil", "pore"]
    np.testing.assert_array_equal(data[...], lab)


class _Multiscale:
    """A stand-in for a multiscale napari layer (no Qt needed)."""

    multiscale = True

    def __init__(self, data, metadata, name="scan"):
        self.data, self.metadata, self.name = data, metadata, name
        self.source = None


def test_volume_of_a_multiscale_layer_is_level_0_and_scan_path_finds_the_scan(tmp_path):
    scan, _ = _scan(tmp_path)
    pyr.build_pyramid(scan, max_side=10)
    [(data, meta, _)] = _read(scan)
    image = _Multiscale(data, meta["metadata"])
    assert layers.is_multiscale(image) and layers.volume_of(image) is data[0]
    assert layers.pyramid_of(image) == str(pyr.beside_path(scan))
    assert layers.source_path(image) == str(scan)


@pytest.mark.gui
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_panels_take_level_0_of_a_multiscale_scan(make_napari_viewer, tmp_path):
    from napari_microfossil._napari.fossils_widget import FossilsWidget
    from napari_microfossil._napari.segment_widget import SegmentWidget

    scan, a = _scan(tmp_path)
    pyr.build_pyramid(scan, max_side=10)
    viewer = make_napari_viewer()
    [image] = viewer.open(str(scan), plugin="napari-microfossil")
    assert image.multiscale and len(image.data) == 3
    assert tuple(image.scale) == pytest.approx((2.0, 0.5, 0.5))
    assert image.data.shape == a.shape  # napari's own view of the multiscale data
    viewer.dims.ndisplay = 3
    assert image.data_level == 2  # 3D draws the coarsest level
    viewer.dims.ndisplay = 2
    lab = np.zeros(a.shape, np.uint8)
    lab[2:5, 10:20, 10:20] = 1
    labels = viewer.add_labels(
        lab, name="scan labels", scale=image.scale, metadata={"class_names": ["bg", "fossil"]}
    )
    segment = SegmentWidget(viewer)
    segment.image.set_layer(image.name)
    request = segment.request()
    assert request.volume is image.data[0] and request.volume.shape == a.shape
    fossils = FossilsWidget(viewer)
    fossils.labels.set_layer(labels.name)
    fossils.image.set_layer(image.name)
    worker = fossils.extract()
    assert worker is not None
    assert layers.scan_path_of(labels, viewer.layers) == str(scan)
    worker.quit()
    # a label store of the tool opens as Labels, and draws, without loading it
    out = create_output(tmp_path / "lab.zarr", lab.shape, lab.dtype, class_names=("bg", "fossil"))
    out.write(0, lab)
    out.finish()
    [opened] = viewer.open(str(tmp_path / "lab.zarr"), plugin="napari-microfossil")
    assert type(opened).__name__ == "Labels" and isinstance(opened.data, LazyArray)
    viewer.dims.set_point(0, 3 * 2.0)
    assert viewer.screenshot(canvas_only=True).size > 0
