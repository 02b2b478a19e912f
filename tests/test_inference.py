"""Tests of the tiled, batched, axis-fused inference engine."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from napari_microfossil._progress import Progress
from napari_microfossil.classes import PHANTOM_CLASS_NAMES as CLASSES
from napari_microfossil.errors import InputError
from napari_microfossil.segmentation import (
    Segmentation,
    blend_window,
    flip_averaged,
    iter_segment,
    predict_planes,
    segment,
    tile_starts,
)

# --------------------------------------------------------------------------- helpers
# (``tiny_model``, a random-init 3-class U-Net with a shallow resnet18 encoder, comes
# from conftest.py)


def affine(batch: np.ndarray) -> np.ndarray:
    """Identity-like predictor: channel 0 = x, channel 1 = 2 x + 1 (not probabilities)."""
    return np.concatenate([batch, 2.0 * batch + 1.0], axis=1)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def neighbour_predictor(batch: np.ndarray) -> np.ndarray:
    """Deterministic 3-class probabilities that depend on a horizontal neighbour.

    Looking along the plane's last axis makes the result depend on the slicing axis,
    so that fusing several axes is not trivially equal to any single one.
    """
    x = batch[:, 0]
    logits = np.stack([4.0 * x, 4.0 * np.roll(x, 1, axis=-1), np.full_like(x, 0.3)], axis=1)
    return softmax(logits)


class CountingPredictor:
    def __init__(self, fn=neighbour_predictor):
        self.fn = fn
        self.calls = 0
        self.batch_shapes: list[tuple[int, ...]] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.batch_shapes.append(batch.shape)
        return self.fn(batch)


class LazyVolume:
    """A volume that can only be read plane by plane (like a folder of TIFFs)."""

    def __init__(self, data: np.ndarray):
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.keys: list[object] = []

    def __getitem__(self, key):
        self.keys.append(key)
        return self._data[key]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the volume was loaded whole")


def smooth_image(shape: tuple[int, ...], seed: int) -> np.ndarray:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(rng.standard_normal(shape), 3)
    return (img / img.std()).astype(np.float32)


@pytest.fixture
def volume() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.random((6, 40, 52), dtype=np.float32)


# --------------------------------------------------------------------------- tiling


@pytest.mark.parametrize("length", [1, 31, 32, 33, 64, 100, 257, 1000])
@pytest.mark.parametrize("tile", [32, 64, 256])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.8])
def test_tile_starts_cover_flush_and_monotone(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0
    if length <= tile:
        assert starts == [0]
        return
    assert starts[-1] + tile == length  # flush with the end, never past it
    assert all(b > a for a, b in itertools.pairwise(starts))
    step = round(tile * (1 - overlap))
    assert all(b - a <= step for a, b in itertools.pairwise(starts))
    covered = np.zeros(length, dtype=bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all()


def test_tile_starts_step():
    assert tile_starts(256, 64, 0.0) == [0, 64, 128, 192]
    assert tile_starts(256, 64, 0.5) == [0, 32, 64, 96, 128, 160, 192]
    assert tile_starts(100, 64, 0.25) == [0, 36]


@pytest.mark.parametrize("tile", [32, 64, (32, 96), (7, 5)])
def test_blend_window(tile):
    w = blend_window(tile)
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    assert w.shape == (th, tw)
    assert w.dtype == np.float32
    assert w.max() == pytest.approx(1.0)
    assert w.min() > 0
    assert w[th // 2, tw // 2] == w.max()
    np.testing.assert_allclose(w, w[::-1, ::-1])  # symmetric
    assert w[0, 0] < 0.01 * w.max()  # the borders, where context is poor, count little
    np.testing.assert_array_equal(blend_window(tile, kind="constant"), np.ones((th, tw)))


SHAPES = [(5, 3), (37, 101), (64, 64), (1, 130), (150, 97), (200, 260)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
@pytest.mark.parametrize(("tile", "batch_size"), [(32, 1), (64, 3), (128, 16)])
def test_tiling_is_exact_for_an_affine_predictor(shape, overlap, tile, batch_size):
    rng = np.random.default_rng(sum(shape))
    planes = [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]
    out = list(
        predict_planes(
            planes, affine, num_classes=2, tile=tile, overlap=overlap, batch_size=batch_size
        )
    )
    assert len(out) == len(planes)
    for plane, probs in zip(planes, out, strict=True):
        assert probs.shape == (2, *shape)
        assert probs.dtype == np.float32
        np.testing.assert_allclose(probs[0], plane, atol=1e-5)
        np.testing.assert_allclose(probs[1], 2 * plane + 1, atol=1e-5)


def test_tiles_of_several_planes_share_a_batch():
    pred = CountingPredictor(affine)
    planes = [np.full((40, 52), i, dtype=np.float32) for i in range(10)]
    out = list(predict_planes(planes, pred, num_classes=2, tile=64, batch_size=4))
    # one 64x64 tile per plane (the tile shrinks to the plane, rounded up to 32)
    assert pred.batch_shapes == [(4, 1, 64, 64), (4, 1, 64, 64), (2, 1, 64, 64)]
    for i, probs in enumerate(out):
        np.testing.assert_allclose(probs[0], i, atol=1e-5)


def test_planes_of_different_shapes_are_not_mixed_in_a_batch():
    pred = CountingPredictor(affine)
    rng = np.random.default_rng(0)
    planes = [rng.random(s, dtype=np.float32) for s in [(40, 52), (100, 30), (40, 52), (7, 7)]]
    out = list(predict_planes(planes, pred, num_classes=2, tile=64, overlap=0.25, batch_size=8))
    for plane, probs in zip(planes, out, strict=True):
        np.testing.assert_allclose(probs[1], 2 * plane + 1, atol=1e-5)
    for shape in pred.batch_shapes:
        assert shape[2] % 32 == 0 and shape[3] % 32 == 0


def test_planes_are_read_lazily():
    pulled = []

    def source():
        for i in range(100):
            pulled.append(i)
            yield np.zeros((64, 64), dtype=np.float32)

    out = predict_planes(source(), affine, num_classes=2, tile=64, batch_size=2)
    assert pulled == []  # nothing read before iteration starts
    next(out)
    assert len(pulled) <= 2


def test_blending_removes_seams():
    """A predictor that is wrong near tile borders (like a U-Net without context).

    Plain averaging of overlapping tiles leaves steps at tile borders; the Gaussian
    window hides them.
    """

    def border_biased(batch: np.ndarray) -> np.ndarray:
        _, _, h, w = batch.shape
        yy, xx = np.mgrid[:h, :w]
        dist = np.minimum.reduce([yy, xx, h - 1 - yy, w - 1 - xx])
        bias = (dist < 8).astype(np.float32)  # a band of error along the tile border
        return batch + bias

    plane = np.zeros((256, 256), dtype=np.float32)
    kw = dict(num_classes=1, tile=64, overlap=0.5, batch_size=8)
    blended = next(predict_planes([plane], border_biased, **kw))[0]
    from napari_microfossil.segmentation.predict import predict_events

    events = predict_events([plane], border_biased, kind="constant", **kw)
    naive = next(v for k, v in events if k == "plane")[0]
    inner = (slice(16, -16), slice(16, -16))  # the image border has one tile only
    jump_blended = np.abs(np.diff(blended, axis=1))[inner].max()
    jump_naive = np.abs(np.diff(naive, axis=1))[inner].max()
    assert jump_naive > 0.3
    assert jump_blended < 0.02
    assert np.abs(blended[inner]).max() < 0.05  # and the bias itself is almost gone
    assert np.abs(naive[inner]).max() > 0.3


def test_tiled_and_untiled_unet_agree(tiny_model):
    from napari_microfossil.model import make_predictor

    pred = make_predictor(tiny_model.network, "cpu")
    img = smooth_image((96, 160), seed=1)
    tiled = next(predict_planes([img], pred, num_classes=3, tile=64, overlap=0.5))
    whole = next(predict_planes([img], pred, num_classes=3, tile=160, overlap=0.5))
    no_overlap = next(predict_planes([img], pred, num_classes=3, tile=64, overlap=0.0))
    assert tiled.shape == whole.shape == (3, 96, 160)
    np.testing.assert_allclose(tiled.sum(axis=0), 1.0, atol=1e-5)
    assert (tiled.argmax(0) == whole.argmax(0)).mean() > 0.95
    err = np.abs(tiled - whole)
    assert err.mean() < 0.03
    # overlap + blending is closer to the untiled answer than abutting tiles
    assert err.mean() < np.abs(no_overlap - whole).mean()


def test_flip_averaging_of_a_directional_predictor():
    batch = smooth_image((2, 1, 32, 64), seed=3)
    counting = CountingPredictor()
    out = flip_averaged(counting)(batch)
    # the four flips, each flipped back, averaged
    expected = (
        neighbour_predictor(batch)
        + neighbour_predictor(batch[..., ::-1])[..., ::-1]
        + neighbour_predictor(batch[..., ::-1, :])[..., ::-1, :]
        + neighbour_predictor(batch[..., ::-1, ::-1])[..., ::-1, ::-1]
    ) / 4
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert counting.calls == 4
    # the neighbour predictor looks left; averaged with its mirror image it no longer does
    assert not np.allclose(out, neighbour_predictor(batch), atol=1e-3)
    np.testing.assert_allclose(
        out[:, :, :, ::-1], flip_averaged(neighbour_predictor)(batch[..., ::-1]), atol=1e-6
    )


def test_flip_averaging_keeps_an_equivariant_predictor_exact(volume):
    plain = segment(volume, affine_probs, class_names=("a", "b"), tile=32, confidence=True)
    flipped = segment(
        volume, affine_probs, class_names=("a", "b"), tile=32, confidence=True, flips=True
    )
    np.testing.assert_array_equal(plain.labels, flipped.labels)
    np.testing.assert_array_equal(plain.confidence, flipped.confidence)


def affine_probs(batch: np.ndarray) -> np.ndarray:
    """Per-pixel (flip-equivariant) two-class probabilities."""
    p = 1.0 / (1.0 + np.exp(-3.0 * batch))
    return np.concatenate([p, 1.0 - p], axis=1).astype(np.float32)


def test_predictor_with_wrong_output_shape():
    with pytest.raises(InputError, match="num_classes"):
        next(predict_planes([np.zeros((32, 32))], affine, num_classes=3, tile=32))


# --------------------------------------------------------------------------- volumes


def test_segment_with_a_loaded_model(tiny_model, volume):
    gen = iter_segment(volume, tiny_model, device="cpu", confidence=True, batch_size=4)
    progress = []
    while True:
        try:
            progress.append(next(gen))
        except StopIteration as stop:
            seg = stop.value
            break
    assert isinstance(seg, Segmentation)
    assert seg.labels.shape == volume.shape and seg.labels.dtype == np.uint8
    assert seg.labels.max() < 3
    assert seg.confidence is not None and seg.confidence.dtype == np.uint8
    assert seg.confidence.min() >= 33 and seg.confidence.max() <= 100  # max of 3 probs
    assert seg.class_names == CLASSES and seg.axes == "z"
    assert all(isinstance(p, Progress) and p.stage == "segment z" for p in progress)
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert progress[-1].done == progress[-1].total == volume.shape[0]


def test_single_axis_equals_argmax_of_plane_probabilities(volume):
    seg = segment(
        volume,
        neighbour_predictor,
        class_names=CLASSES,
        axes="y",
        tile=32,
        confidence=True,
        intensity_range=(0.0, 1.0),
    )
    planes = [2 * volume[:, i, :] - 1 for i in range(volume.shape[1])]
    probs = np.stack(list(predict_planes(planes, neighbour_predictor, num_classes=3, tile=32)), 2)
    np.testing.assert_array_equal(seg.labels, probs.argmax(0))
    np.testing.assert_array_equal(seg.confidence, np.rint(probs.max(0) * 100))


def axis_probabilities(volume: np.ndarray, axis: str, **kw) -> np.ndarray:
    """(C, Z, Y, X) probabilities from slicing ``volume`` (already normalised) on ``axis``."""
    ax = "zyx".index(axis)
    planes = [np.take(volume, i, axis=ax) for i in range(volume.shape[ax])]
    out = np.stack(list(predict_planes(planes, neighbour_predictor, num_classes=3, **kw)))
    return np.moveaxis(out, 0, ax + 1)


def test_zyx_fusion_averages_the_axes(volume):
    kw = dict(tile=32, overlap=0.25, batch_size=4)
    seg = segment(
        volume,
        neighbour_predictor,
        class_names=CLASSES,
        axes="zyx",
        confidence=True,
        intensity_range=(0.0, 1.0),
        **kw,
    )
    assert seg.axes == "zyx" and seg.labels.dtype == np.uint8
    per_axis = [axis_probabilities(2 * volume - 1, a, **kw) for a in "zyx"]
    mean = np.mean(per_axis, axis=0)
    top2 = np.sort(mean, axis=0)[-2:]
    clear = top2[1] - top2[0] > 2 / 255  # quantisation to 1/255 cannot flip these
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(seg.labels[clear], mean.argmax(0)[clear])
    assert np.abs(seg.confidence.astype(int) - np.rint(mean.max(0) * 100)).max() <= 1
    # the fusion is not trivially one of the axes
    assert all((p.argmax(0) != seg.labels).any() for p in per_axis)


def test_disk_accumulator_gives_the_same_result_and_is_removed(volume, tmp_path):
    kw = dict(class_names=CLASSES, axes="zx", tile=32, confidence=True, intensity_range=(0.0, 1.0))
    in_ram = segment(volume, neighbour_predictor, **kw)
    gen = iter_segment(volume, neighbour_predictor, accumulator_dir=tmp_path, max_ram_bytes=0, **kw)
    next(gen)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1
    assert files[0].stat().st_size == 2 * 3 * volume.size  # uint16 per class and voxel
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            on_disk = stop.value
            break
    np.testing.assert_array_equal(on_disk.labels, in_ram.labels)
    np.testing.assert_array_equal(on_disk.confidence, in_ram.confidence)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("axes", ["z", "zyx"])
def test_cancel_stops_the_predictor_and_cleans_up(volume, tmp_path, axes):
    pred = CountingPredictor()
    gen = iter_segment(
        volume,
        pred,
        class_names=CLASSES,
        axes=axes,
        tile=32,
        batch_size=2,
        accumulator_dir=tmp_path,
        max_ram_bytes=0,
    )
    assert pred.calls == 0  # nothing runs before iteration
    first = next(gen)
    assert first.done < first.total
    calls = pred.calls
    gen.close()
    assert pred.calls == calls == 1
    assert list(tmp_path.iterdir()) == []


def test_failure_cleans_up(volume, tmp_path):
    def broken(batch):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        segment(
            volume,
            broken,
            class_names=CLASSES,
            axes="zy",
            tile=32,
            accumulator_dir=tmp_path,
            max_ram_bytes=0,
        )
    assert list(tmp_path.iterdir()) == []


def test_z_axis_reads_one_plane_at_a_time(volume):
    lazy = LazyVolume(volume)
    seg = segment(lazy, neighbour_predictor, class_names=CLASSES, tile=32)
    assert all(isinstance(k, int) for k in lazy.keys)
    ref = segment(volume, neighbour_predictor, class_names=CLASSES, tile=32)
    np.testing.assert_array_equal(seg.labels, ref.labels)


def test_normalisation_uses_the_model_spec_and_given_range():
    seen = []

    def recorder(batch):
        seen.append((float(batch.min()), float(batch.max())))
        return neighbour_predictor(batch)

    vol = np.linspace(1000, 3000, 2 * 32 * 32).reshape(2, 32, 32).astype(np.uint16)
    segment(vol, recorder, class_names=CLASSES, tile=32, intensity_range=(1000, 3000))
    assert min(s[0] for s in seen) == pytest.approx(-1, abs=1e-3)
    assert max(s[1] for s in seen) == pytest.approx(1, abs=1e-3)
    seen.clear()
    segment(vol, recorder, class_names=CLASSES, tile=32)  # percentiles 0.5..99.5
    assert min(s[0] for s in seen) < -1 and max(s[1] for s in seen) > 1


def test_smoothing_comes_first_and_defaults_to_the_models():
    from scipy import ndimage as ndi

    from napari_microfossil.model import ModelSpec
    from napari_microfossil.normalise import Normalisation

    rng = np.random.default_rng(3)
    vol = (rng.random((10, 32, 40)) * 4000).astype(np.uint16)
    smoothed = np.rint(ndi.gaussian_filter(vol.astype(np.float32), 0.8, mode="mirror"))
    kw = {"class_names": CLASSES, "tile": 32, "confidence": True}
    ref = segment(smoothed.astype(np.uint16), neighbour_predictor, **kw)
    by_option = segment(vol, neighbour_predictor, smooth=0.8, **kw)
    np.testing.assert_array_equal(by_option.labels, ref.labels)
    np.testing.assert_array_equal(by_option.confidence, ref.confidence)
    plain = segment(vol, neighbour_predictor, **kw)
    assert (plain.labels != ref.labels).mean() > 0.05  # the smoothing mattered

    spec = ModelSpec(class_names=CLASSES, tile_size=32, normalisation=Normalisation(smooth=0.8))
    by_spec = segment(vol, neighbour_predictor, spec=spec, confidence=True)
    np.testing.assert_array_equal(by_spec.labels, ref.labels)
    off = segment(vol, neighbour_predictor, spec=spec, smooth=0, confidence=True)
    np.testing.assert_array_equal(off.labels, plain.labels)
    stages = [p.stage for p in iter_progress(vol, spec)]
    assert stages[0] == "smooth" and "segment z" in stages


def iter_progress(vol, spec):
    gen = iter_segment(vol, neighbour_predictor, spec=spec)
    while True:
        try:
            yield next(gen)
        except StopIteration:
            return


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"smooth": -1}, "smooth"),
        ({"smooth": 9}, "smooth"),
        ({"axes": "w"}, "axes"),
        ({"axes": "zz"}, "axes"),
        ({"axes": ""}, "axes"),
        ({"axes": 3}, "axes"),
        ({"tile": 50}, "tile.*try 32"),
        ({"tile": 0}, "tile"),
        ({"overlap": 0.9}, "overlap"),
        ({"overlap": -0.1}, "overlap"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_ram_bytes": -1}, "max_ram_bytes"),
        ({"intensity_range": (5, 5)}, "intensity_range"),
    ],
)
def test_invalid_options_are_rejected_at_call_time(volume, kwargs, match):
    with pytest.raises(InputError, match=match):
        iter_segment(volume, neighbour_predictor, class_names=CLASSES, **kwargs)


def test_invalid_volume_and_model(volume):
    with pytest.raises(InputError, match="volume"):
        iter_segment(volume[0], neighbour_predictor, class_names=CLASSES)
    with pytest.raises(InputError, match="class_names"):
        iter_segment(volume, neighbour_predictor)
    with pytest.raises(InputError, match="model"):
        iter_segment(volume, "default")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"tile": 48}, "tile"), ({"overlap": 1.0}, "overlap"), ({"batch_size": 0}, "batch_size")],
)
def test_predict_planes_validates(kwargs, match):
    with pytest.raises(InputError, match=match):
        predict_planes([np.zeros((8, 8))], affine, num_classes=2, **kwargs)


def test_engine_does_not_import_torch():
    code = "import sys, napari_microfossil.segmentation; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- smoothing


def test_suggest_smoothing_smooths_a_noisy_scan_and_leaves_a_clean_one():
    # The bundled model on phantoms of the same fossils: the harder style (noise x 1.75,
    # more blur, less contrast) wants smoothing, the style it was trained on does not.
    from napari_microfossil.model import load_model
    from napari_microfossil.phantom import PhantomStyle, make_phantom
    from napari_microfossil.segmentation import SMOOTH_CANDIDATES, iter_suggest_smoothing

    model = load_model("default", device="cpu")
    noisy = make_phantom((32, 128, 128), seed=4000, style=PhantomStyle().harder()).image
    clean = make_phantom((32, 128, 128), seed=4000).image

    events = []
    gen = iter_suggest_smoothing(noisy, model, device="cpu")
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        found = stop.value
    assert found.sigma > 0
    assert tuple(found.confidence) == SMOOTH_CANDIDATES
    assert found.confidence[found.sigma] > found.confidence[0.0]
    assert len(found.planes) == 6 and all(0 < z < 31 for z in found.planes)
    assert [e.done for e in events] == list(range(1, 5 * 6 + 1))
    assert {e.stage for e in events} == {"suggest smoothing"}

    from napari_microfossil.segmentation import suggest_smoothing

    assert suggest_smoothing(clean, model, device="cpu").sigma == 0.0


def test_suggest_smoothing_checks_its_input(tiny_model):
    from napari_microfossil.segmentation import suggest_smoothing

    vol = np.zeros((4, 32, 32), np.uint16)
    with pytest.raises(InputError, match="volume: expected a \\(Z, Y, X\\)"):
        suggest_smoothing(np.zeros((32, 32)), tiny_model)
    with pytest.raises(InputError, match="sigmas: expected a Gaussian sigma"):
        suggest_smoothing(vol, tiny_model, sigmas=(0, 9))
    with pytest.raises(InputError, match="n_planes: expected an integer >= 1"):
        suggest_smoothing(vol, tiny_model, n_planes=0)
    with pytest.raises(InputError, match="model: expected a LoadedModel"):
        suggest_smoothing(vol, affine)  # type: ignore[arg-type]
    # One plane and one sigma: a single-slice volume still gets an answer.
    found = suggest_smoothing(np.ones((1, 32, 32), np.uint16), tiny_model, sigmas=(0.5,))
    assert found.sigma == 0.5 and found.planes == (0,)
