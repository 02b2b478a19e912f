"""Streaming segmentation: the slab engine against the in-memory one, slab-wise TIFF
and .zarr outputs, cancel and --resume."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil._progress import Progress, drain
from napari_microfossil.classes import PHANTOM_CLASS_NAMES as CLASSES
from napari_microfossil.errors import InputError
from napari_microfossil.segmentation import (
    Slab,
    estimate_intensity_range,
    iter_slabs,
    segment,
)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def context_predictor(batch: np.ndarray) -> np.ndarray:
    """3-class probabilities from each pixel and its neighbours 1-3 pixels away, so that
    what a tile sees around a pixel matters (like a network's receptive field)."""
    x = batch[:, 0]
    near = (np.roll(x, 3, -1) + np.roll(x, -3, -2) + np.roll(x, 1, -2)) / 3
    logits = np.stack([4.0 * x, 4.0 * near, np.full_like(x, 0.5)], axis=1)
    return softmax(logits)


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        return context_predictor(batch)


class PlaneReads:
    """A volume that records its reads and refuses to be loaded whole."""

    def __init__(self, data: np.ndarray) -> None:
        self._data, self.shape, self.dtype = data, data.shape, data.dtype
        self.planes_read = 0
        self.keys: list[object] = []

    def __getitem__(self, key):
        self.keys.append(key)
        out = self._data[key]
        self.planes_read += 1 if out.ndim == 2 else out.shape[0]
        return out

    def __array__(self, *args, **kwargs):
        raise AssertionError("the volume was loaded whole")


@pytest.fixture
def volume() -> np.ndarray:
    """A blobby uint16 phantom (smooth structures plus noise)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(5)
    field = ndi.gaussian_filter(rng.standard_normal((20, 40, 44)), 2.5)
    noisy = field / field.std() + 0.3 * rng.standard_normal(field.shape)
    return np.clip(1000 + 300 * noisy, 0, 65535).astype(np.uint16)


def collect(gen) -> tuple[np.ndarray, np.ndarray | None, list[Progress]]:
    slabs, progress = [], []
    for item in gen:
        (slabs if isinstance(item, Slab) else progress).append(item)
    labels = np.concatenate([s.labels for s in slabs])
    conf = None if slabs[0].confidence is None else np.concatenate([s.confidence for s in slabs])
    assert [s.z0 for s in slabs] == sorted(s.z0 for s in slabs)
    return labels, conf, progress


KW = {"class_names": CLASSES, "tile": 32, "batch_size": 3, "confidence": True}


@pytest.mark.parametrize("smooth", [0.0, 0.8])
@pytest.mark.parametrize("slab", [1, 3, 7])
def test_z_slabs_equal_the_in_memory_segmentation(volume, slab, smooth):
    ref = segment(volume, context_predictor, smooth=smooth, **KW)
    lazy = PlaneReads(volume)
    labels, conf, progress = collect(
        iter_slabs(lazy, context_predictor, slab=slab, smooth=smooth, **KW)
    )
    np.testing.assert_array_equal(labels, ref.labels)
    np.testing.assert_array_equal(conf, ref.confidence)
    assert {p.stage for p in progress} == ({"segment z"} if slab < 20 else {"segment z", "smooth"})
    assert progress[-1].total == 20 and [p.done for p in progress] == sorted(
        p.done for p in progress
    )
    if smooth == 0:
        assert lazy.planes_read <= 20 + 24  # each plane once, plus the intensity sample
        slabs = [k for k in lazy.keys if isinstance(k, slice)]
        assert len(slabs) == -(-20 // slab)  # one read per slab (a chunk decoded once)


def test_intensity_range_of_the_smoothed_volume_from_sampled_planes(volume):
    from napari_microfossil.normalise import Normalisation, intensity_range, iter_smooth

    norm = Normalisation()
    whole = intensity_range(drain(iter_smooth(volume, 1.2)), norm)
    lazy = PlaneReads(volume)
    assert estimate_intensity_range(lazy, norm, smooth=1.2) == whole
    assert lazy.planes_read < volume.shape[0] * 24  # never the whole smoothed volume at once


def test_todo_segments_only_the_ranges_asked_for(volume):
    ref = segment(volume, context_predictor, **KW)
    todo = [(3, 6), (12, 20)]
    slabs = [
        s for s in iter_slabs(volume, context_predictor, todo=todo, **KW) if isinstance(s, Slab)
    ]
    assert [(s.z0, s.z0 + len(s.labels)) for s in slabs] == todo
    for s in slabs:
        np.testing.assert_array_equal(s.labels, ref.labels[s.z0 : s.z0 + len(s.labels)])
    with pytest.raises(InputError, match="todo"):
        iter_slabs(volume, context_predictor, todo=[(5, 9), (8, 12)], **KW)
    with pytest.raises(InputError, match="slab"):
        iter_slabs(volume, context_predictor, slab=0, **KW)


def test_closing_stops_before_the_next_predictor_call(volume):
    pred = Counting()
    gen = iter_slabs(volume, pred, slab=4, axes="zyx", **KW)
    assert pred.calls == 0  # nothing runs before iteration
    first = next(gen)
    assert isinstance(first, Progress) and first.done < first.total
    gen.close()
    assert pred.calls == 1


def test_multi_axis_slabs_with_a_halo_agree_with_the_whole_volume_fusion(volume):
    kw = {**KW, "axes": "zyx", "intensity_range": (600.0, 1400.0)}
    ref = segment(volume, context_predictor, **kw)
    # A halo reaching the volume's ends gives every y/x plane whole: exact.
    labels, conf, _ = collect(iter_slabs(volume, context_predictor, slab=6, halo=20, **kw))
    np.testing.assert_array_equal(labels, ref.labels)
    np.testing.assert_array_equal(conf, ref.confidence)
    # A short halo: the bound the module doc states.
    labels, conf, progress = collect(iter_slabs(volume, context_predictor, slab=4, halo=8, **kw))
    agree = (labels == ref.labels).mean()
    assert 0.99 <= agree < 1.0, agree
    assert np.abs(conf.astype(int) - ref.confidence).mean() < 1.0  # percent
    assert {p.stage for p in progress} == {"segment zyx"}
    # No halo at all is measurably worse: the halo is what makes it close.
    labels0, _, _ = collect(iter_slabs(volume, context_predictor, slab=4, halo=0, **kw))
    assert (labels0 == ref.labels).mean() < agree


# --------------------------------------------------------------------------- writers


def test_tiff_written_slab_by_slab_equals_write_tiff(tmp_path, monkeypatch):
    import napari_microfossil.io.write as write
    from napari_microfossil.io import read_labels, write_tiff
    from napari_microfossil.io.write import TiffSlabWriter

    data = np.random.default_rng(0).integers(0, 3, (7, 30, 20)).astype(np.uint8)
    write_tiff(tmp_path / "a.tif", data, spacing=(2, 0.5, 0.5), class_names=CLASSES)
    with TiffSlabWriter(
        tmp_path / "b.tif", data.shape, np.uint8, spacing=(2, 0.5, 0.5), class_names=CLASSES
    ) as w:
        for z0 in range(0, 7, 3):
            w.write(z0, data[z0 : z0 + 3])
        w.finish()
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()
    # Above the BigTIFF size: a plain BigTIFF, read back alike.
    monkeypatch.setattr(write, "_BIGTIFF_BYTES", 1000)
    with TiffSlabWriter(tmp_path / "c.tif", data.shape, np.uint8, class_names=CLASSES) as w:
        w.write(0, data[:4])
        w.write(4, data[4:])
        w.finish()
    import tifffile

    with tifffile.TiffFile(tmp_path / "c.tif") as tf:
        assert tf.is_bigtiff and not tf.is_imagej
    back = read_labels(tmp_path / "c.tif")
    np.testing.assert_array_equal(np.asarray(back.data), data)
    assert back.class_names == CLASSES
    # Left early: nothing remains, not even a temp file.
    with TiffSlabWriter(tmp_path / "d.tif", data.shape, np.uint8) as w:
        w.write(0, data[:3])
    with pytest.raises(ValueError, match="expected 3"):
        with TiffSlabWriter(tmp_path / "e.tif", data.shape, np.uint8) as w:
            w.write(0, data[:3])
            w.write(4, data[4:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif", "c.tif"]


# --------------------------------------------------------------------------- workflow

SHAPE = (10, 40, 48)


def request(scan, model_file, out, conf=None, **kw):
    from napari_microfossil.workflows.segment import SegmentOptions, SegmentRequest

    options = SegmentOptions(device="cpu", **kw.pop("options", {}))
    return SegmentRequest(scan, out, confidence=conf, model=str(model_file), options=options, **kw)


def test_zarr_run_cancelled_then_resumed_equals_an_uninterrupted_run(
    tmp_path, scan, model_file, small_chunks
):
    from napari_microfossil.io import read_labels, read_volume
    from napari_microfossil.io.store import incomplete
    from napari_microfossil.workflows.segment import iter_segment_scan

    full = drain(
        iter_segment_scan(request(scan, model_file, tmp_path / "f.zarr", tmp_path / "fc.zarr"))
    )
    whole = drain(
        iter_segment_scan(request(scan, model_file, tmp_path / "f.tif", tmp_path / "fc.tif"))
    )
    out, conf = tmp_path / "l.zarr", tmp_path / "c.zarr"
    gen = iter_segment_scan(request(scan, model_file, out, conf))
    for _ in gen:
        state = incomplete(out)
        if state is not None and state.planes_done >= 4:
            break
    gen.close()
    assert incomplete(out).done == [(0, 4)] and incomplete(conf).done == [(0, 4)]
    with pytest.warns(UserWarning, match="incomplete"):
        read_volume(out)
    stages = []
    resumed = drain(
        iter_segment_scan(request(scan, model_file, out, conf, resume=True)), stages.append
    )
    assert incomplete(out) is None and incomplete(conf) is None
    assert stages[0].total == SHAPE[0] - 4  # only the missing slabs were segmented
    a, b = read_labels(out), read_labels(tmp_path / "f.zarr")
    np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))
    np.testing.assert_array_equal(
        np.asarray(a.data), np.asarray(read_labels(tmp_path / "f.tif").data)
    )
    np.testing.assert_array_equal(
        np.asarray(read_volume(conf).data), np.asarray(read_volume(tmp_path / "fc.zarr").data)
    )
    assert a.class_names == full.class_names and a.spacing == (2.0, 0.5, 0.5)
    labels = np.asarray(a.data)
    expected = tuple(np.bincount(labels.ravel(), minlength=3))
    assert resumed.counts == full.counts == whole.counts == expected


def test_a_cancelled_tiff_run_leaves_nothing(tmp_path, scan, model_file, small_chunks):
    from napari_microfossil.workflows.segment import iter_segment_scan

    before = sorted(p.name for p in tmp_path.iterdir())
    gen = iter_segment_scan(request(scan, model_file, tmp_path / "l.tif", tmp_path / "c.tif"))
    for p in gen:
        if p.done >= 4:
            break
    gen.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def refused(build, *needles):
    with pytest.raises(InputError) as exc:
        build()
    message = str(exc.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_resume_and_zarr_outputs_are_checked_up_front(
    tmp_path, scan, model_file, small_chunks, monkeypatch
):
    from napari_microfossil.workflows.segment import iter_segment_scan

    out = tmp_path / "l.zarr"
    refused(lambda: request(scan, model_file, tmp_path / "l.tif", resume=True), "--resume", "TIFF")
    refused(lambda: request(scan, model_file, out, resume=True), "--resume", "does not exist")
    gen = iter_segment_scan(request(scan, model_file, out))
    for p in gen:
        if p.done >= 2:
            break
    gen.close()
    refused(lambda: request(scan, model_file, out), "-o:", "already exists", "--resume")
    refused(
        lambda: request(scan, model_file, out, resume=True, options={"overlap": 0.5}),
        "--resume",
        "overlap",
        "different job",
    )
    refused(
        lambda: request(scan, model_file, out, tmp_path / "c.zarr", resume=True),
        "--resume",
        "confidence=False, now True",
    )
    refused(
        lambda: request(scan, model_file, out, resume=True, overwrite=True),
        "--resume",
        "--overwrite",
    )
    refused(lambda: request(scan, model_file, tmp_path, overwrite=True), "-o:")  # not .zarr/.tif
    (tmp_path / "file.zarr").write_bytes(b"x")
    refused(
        lambda: request(scan, model_file, tmp_path / "file.zarr", overwrite=True),
        "-o:",
        "not a folder",
    )
    # Another intensity range (known only after reading): refused naming --resume too.
    import napari_microfossil.workflows.segment_scan as use_case

    monkeypatch.setattr(use_case, "estimate_intensity_range", lambda *a, **k: (1.0, 2.0))
    with pytest.raises(InputError, match=r"--resume: .*intensity_range"):
        drain(iter_segment_scan(request(scan, model_file, out, resume=True)))
    monkeypatch.undo()
    drain(iter_segment_scan(request(scan, model_file, out, resume=True)))
    refused(lambda: request(scan, model_file, out, resume=True), "--resume", "complete")
    # --overwrite replaces a store
    drain(iter_segment_scan(request(scan, model_file, out, overwrite=True)))


def test_cli_writes_zarr_and_prints_the_summary(tmp_path, scan, model_file, capsys, small_chunks):
    from napari_microfossil.cli import main
    from napari_microfossil.io import read_labels

    out, conf = tmp_path / "l.zarr", tmp_path / "c.zarr"
    argv = ["segment", str(scan), "-o", str(out), "--confidence", str(conf)]
    argv += ["--model", str(model_file), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert said.startswith("Segmented 10x40x48 voxels along z in ")
    assert f"labels     {out}" in said and f"confidence {conf}" in said
    assert read_labels(out).class_names == CLASSES
    assert read_labels(out).metadata["confidence"] == "c.zarr"  # for `fossils` to find
    assert main([*argv, "--resume"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_tiff_labels_name_their_confidence_relative_to_their_folder(
    tmp_path, scan, model_file, capsys
):
    from napari_microfossil.cli import main
    from napari_microfossil.io import read_labels

    (tmp_path / "out").mkdir()
    out, conf = tmp_path / "out" / "l.tif", tmp_path / "maps" / "c.tif"
    (tmp_path / "maps").mkdir()
    argv = ["segment", str(scan), "-o", str(out), "--confidence", str(conf)]
    assert main([*argv, "--model", str(model_file), "--device", "cpu", "--quiet"]) == 0
    assert read_labels(out).metadata["confidence"] == "../maps/c.tif"
    assert (
        main(
            [
                "segment",
                str(scan),
                "-o",
                str(tmp_path / "only.tif"),
                "--quiet",
                "--model",
                str(model_file),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "confidence" not in read_labels(tmp_path / "only.tif").metadata
