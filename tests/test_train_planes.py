"""Training reads only the planes it trains on: smoothed planes from blocks equal the
whole-volume smoothing, and a zarr scan and labels give the slices the in-memory path
gives, without being read whole."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil._progress import drain
from napari_microfossil.io.lazy import LazyArray
from napari_microfossil.normalise import (
    Normalisation,
    intensity_range,
    iter_presmooth,
    iter_smooth,
    iter_smoothed_planes,
    smoothing_margin,
)
from napari_microfossil.training.slices import iter_slices_from_planes, slices_from_volume
from napari_microfossil.workflows.train import TrainRequest, labelled_z_slices
from napari_microfossil.workflows.train.planes import CappedLabels, labelled_planes
from napari_microfossil.workflows.train.request import unlabelled_ids
from napari_microfossil.workflows.train.run import _prepare

SHAPE = (24, 20, 30)
CHUNKS = (3, 8, 8)


class Reads(LazyArray):
    """A volume that records the box of every read and refuses to be loaded whole."""

    def __init__(self, base) -> None:
        self.base = base
        self.shape = tuple(int(n) for n in base.shape)
        self.dtype = np.dtype(base.dtype)
        self.boxes: list[tuple[tuple[int, int], ...]] = []

    def _read_key(self, key):
        box = tuple(
            (k, k + 1) if isinstance(k, int) else k.indices(n)[:2]
            for k, n in zip(key, self.shape, strict=True)
        )
        assert box != tuple((0, n) for n in self.shape), "the volume was read whole"
        self.boxes.append(box)
        return np.asarray(self.base[key])

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the volume was loaded whole")

    def most_planes(self, axis: int) -> int:
        """The thickest read along `axis`."""
        return max(b[axis][1] - b[axis][0] for b in self.boxes)


@pytest.fixture(scope="module")
def scan():
    """A noisy uint16 scan and uint16 labels: 255 (not labelled) except on some
    z-planes and part of x-plane 4, which hold classes 0-2 and a few ids above 254."""
    rng = np.random.default_rng(3)
    image = (rng.normal(3000, 400, SHAPE) + np.linspace(0, 2000, SHAPE[2])).astype(np.uint16)
    labels = np.full(SHAPE, 255, dtype=np.uint16)
    classes = rng.integers(0, 3, SHAPE, dtype=np.uint16)
    for z in (0, 5, 6, 13, 23):
        labels[z] = classes[z]
    labels[8:12, :, 4] = classes[8:12, :, 4]
    labels[5, 2, :3] = 300
    labels[10, 1, 4] = 1000
    return image, labels


def _zarr(path, data):
    from napari_microfossil.io import create_output

    out = create_output(path, data.shape, data.dtype, chunks=CHUNKS)
    for z0 in range(0, data.shape[0], out.slab):
        out.write(z0, data[z0 : z0 + out.slab])
    return out.finish()


@pytest.fixture
def lazy(tmp_path, scan):
    """The scan and labels as zarr stores, opened lazily and counting their reads."""
    from napari_microfossil.io import read_labels, read_volume

    image, labels = scan
    img = read_volume(_zarr(tmp_path / "scan.zarr", image)).data
    lab = read_labels(_zarr(tmp_path / "labels.zarr", labels)).data
    assert not isinstance(img, np.ndarray) and not isinstance(lab, np.ndarray)
    return Reads(img), Reads(lab)


def _whole(image, labels, slices, norm, name="volume"):
    """The slices as the whole-volume path cuts them (smooth all, range, cut)."""
    labels, _ = unlabelled_ids(labels)
    smoothed, cut = drain(iter_presmooth(image, norm))
    kw = {"normalisation": cut, "value_range": intensity_range(smoothed, cut), "name": name}
    return slices_from_volume(smoothed, labels, slices, **kw)


def _same(got, want):
    assert got.sources == want.sources
    assert len(got.images) == len(want.images) > 0
    for a, b in zip(got.images, want.images, strict=True):
        assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)
    for a, b in zip(got.labels, want.labels, strict=True):
        assert a.dtype == b.dtype == np.uint8 and np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("sigma", [0.0, 0.7, 1.6])
def test_smoothed_planes_equal_the_whole_volume_smoothed(scan, dtype, sigma):
    volume = scan[0].astype(dtype)
    whole = drain(iter_smooth(volume, sigma))
    for axis in range(3):
        n = volume.shape[axis]
        wanted = [n - 1, 0, 1, n // 2, n // 2 + 1, n - 3]
        got = dict(iter_smoothed_planes(volume, axis, wanted, sigma, group=3))
        assert sorted(got) == sorted(set(wanted))
        for i, plane in got.items():
            want = np.take(whole, i, axis=axis)
            assert plane.dtype == want.dtype and np.array_equal(plane, want), (axis, i)


@pytest.mark.parametrize("sigma", [0.0, 0.8])
@pytest.mark.parametrize(
    "slices", [{"z": [0, 6, 13, 23]}, {"x": [4, 0, 29, 17]}, {"z": [5], "x": [4]}]
)
def test_planes_from_a_zarr_store_equal_the_in_memory_slices(scan, lazy, sigma, slices):
    image, labels = scan
    img, lab = lazy
    norm = Normalisation(smooth=sigma)
    capped = CappedLabels(lab)
    got = drain(iter_slices_from_planes(img, capped, slices, normalisation=norm))
    _same(got, _whole(image, labels, slices, norm))
    # Only the chosen labels planes, each read once.
    chosen = sorted(
        tuple((i, i + 1) if ax == a else (0, n) for ax, n in zip("zyx", SHAPE, strict=True))
        for a, idx in slices.items()
        for i in idx
    )
    assert sorted(lab.boxes) == chosen
    assert capped.dropped == sum(
        int(np.count_nonzero(np.take(labels, i, axis="zyx".index(a)) > 255))
        for a, idx in slices.items()
        for i in idx
    )
    # The image in slabs: z-slabs (the cut planes and the range's sample), and along
    # another axis only the planes the Gaussian reaches from the cut ones.
    m = smoothing_margin(sigma)
    for box in img.boxes:
        (ax,) = [a for a in range(3) if box[a] != (0, SHAPE[a])]
        assert box[ax][1] - box[ax][0] <= 2 * m + 8  # a block: up to 8 planes and halo
        if ax > 0:
            near = {j for i in slices["zyx"[ax]] for j in range(i - m, i + m + 1)}
            assert set(range(*box[ax])) <= near


def test_the_workflow_trains_on_planes_of_lazy_inputs_as_on_arrays(scan, lazy, model_file):
    image, labels = scan
    img, lab = lazy
    common = {
        "slices": {"z": [0, 5, 13], "x": [4]},
        "val_slices": {"z": [6]},
        "base": model_file,
        "smooth": 0.8,
        "device": "cpu",
    }
    warned = []

    def prepare(im, la, out):
        req = TrainRequest(im, la, out, **common)
        return drain(_prepare(req, lambda notice: warned.extend(notice.lines)))

    out = model_file.parent
    train, val, spec, *_ = prepare(img, lab, out / "a.safetensors")
    norm = Normalisation(**{**spec.normalisation.to_dict(), "smooth": 0.8})
    _same(train, _whole(image, labels, common["slices"], norm))
    _same(val, _whole(image, labels, common["val_slices"], norm))
    assert len(lab.boxes) == 1 + 5  # check_labelled's first plane, then each plane once
    assert any("4 voxels hold ids above 254" in line for line in warned)
    # The same through numpy arrays with the slices given: the plane path, same planes.
    train2, val2, *_ = prepare(image, labels, out / "b.safetensors")
    _same(train2, train)
    _same(val2, val)


def test_labelled_planes_of_a_lazy_volume_are_searched_in_chunk_slabs(scan, lazy, monkeypatch):
    from napari_microfossil.workflows.train import planes

    _, labels = scan
    _, lab = lazy
    assert planes._chunk_depth(lab.base) == CHUNKS[0]  # found behind the lazy view
    lab.chunks = CHUNKS
    monkeypatch.setattr(planes, "SCAN_BYTES", 5 * lab.base.nbytes // SHAPE[0])
    want = labelled_z_slices(labels, skip=[13])
    assert want == [0, 5, 6, 8, 9, 10, 11, 23]
    assert labelled_planes(lab, skip={"z": [13]}) == want
    # Whole chunks (3 planes: 5 fit the budget), each read once.
    assert [b[0] for b in lab.boxes] == [(z, min(z + 3, SHAPE[0])) for z in range(0, SHAPE[0], 3)]


def test_capped_labels_read_ids_above_254_as_not_labelled(scan):
    _, labels = scan
    capped = CappedLabels(labels)
    assert np.array_equal(capped[5], unlabelled_ids(labels)[0][5])
    assert capped.dropped == 3
    assert capped[10, 1, 4] == 255 and capped.dropped == 4
