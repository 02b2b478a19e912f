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
    assert all(isinstance(layers.volume_of(_Multiscale([d], {})), LazyArray) for d in data)
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


def test_a_deferred_view_reads_only_what_is_finally_asked_for():
    from napari_microfossil._napari.levels import DeferredView, full_resolution

    a = np.arange(6 * 7 * 8).reshape(6, 7, 8)
    reads = []

    class Source:
        shape, dtype = a.shape, a.dtype

        def __getitem__(self, key):
            reads.append(key)
            return a[key]

    view = DeferredView(Source())
    # napari's multiscale slicing: every plane of the region, then one plane
    region = view[:, 2:6, 1:7]
    assert region.shape == (6, 4, 6) and reads == []
    np.testing.assert_array_equal(np.asarray(region[3]), a[3, 2:6, 1:7])
    assert reads == [(3, slice(2, 6, 1), slice(1, 7, 1))]
    for key in [(slice(None, None, -2), 1), (Ellipsis, 5), (slice(1, 5, 2), slice(6, 0, -3))]:
        np.testing.assert_array_equal(np.asarray(view[key]), a[key])
    np.testing.assert_array_equal(view[[0, 2]], a[[0, 2]])
    assert full_resolution(view) is view.source and full_resolution(region) is region


def test_the_pyramid_of_a_label_volume_opens_as_multiscale_labels(tmp_path):
    lab = np.random.default_rng(1).integers(0, 3, (6, 30, 20)).astype(np.uint8)
    write_tiff(tmp_path / "lab.tif", lab, class_names=("background", "fossil", "pore"))
    where = pyr.build_pyramid(tmp_path / "lab.tif", max_side=10)
    [(data, meta, kind)] = _read(where)
    assert kind == "labels" and meta["multiscale"] and len(data) == 3
    assert meta["metadata"][layers.CLASS_NAMES] == ["background", "fossil", "pore"]
    assert set(np.unique(np.asarray(data[2]))) <= {0, 1, 2}
    # the label volume itself still opens whole, editable
    [(_, meta, kind)] = _read(tmp_path / "lab.tif")
    assert kind == "labels" and "multiscale" not in meta


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
    assert layers.is_multiscale(image) and layers.volume_of(image) is data[0].source
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
    assert request.volume is layers.volume_of(image) and request.volume.shape == a.shape
    assert isinstance(request.volume, LazyArray)  # what the engine reads, not napari's view
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


@pytest.mark.gui
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_layers_menu_builds_the_pyramid_and_shows_the_scan_through_it(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    from napari._app_model import get_app_model

    from napari_microfossil._napari import pyramid_menu

    monkeypatch.setattr(pyr, "MAX_SIDE", 10)
    scan, a = _scan(tmp_path)
    viewer = make_napari_viewer()
    viewer.add_points(name="above")
    [image] = viewer.open(str(scan), plugin="napari-microfossil")
    image.contrast_limits = (100, 900)
    viewer.layers.move(viewer.layers.index(image), 0)
    assert not image.multiscale
    viewer.layers.selection.active = image
    # as napari runs it from Layers > Data: the viewer is injected
    worker = get_app_model().commands.execute_command("napari-microfossil.build_pyramid").result()
    with qtbot.waitSignal(worker.finished, timeout=20000):
        pass
    qtbot.waitUntil(lambda: viewer.layers[0].multiscale, timeout=5000)
    shown = viewer.layers[0]
    assert shown.name == "scan" and len(shown.data) == 3
    assert tuple(shown.contrast_limits) == (100, 900)
    assert layers.pyramid_of(shown) == str(pyr.beside_path(scan))
    np.testing.assert_array_equal(layers.volume_of(shown)[...], a)
    # nothing selected: an error, no worker
    viewer.layers.selection.clear()
    assert pyramid_menu.build_pyramid_for_layer(viewer) is None
