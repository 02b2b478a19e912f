"""workflows.segment: every option and path checked once, before any read or model load;
the use case's result; the command line and the panel refuse alike."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_microfossil.cli import main
from napari_microfossil.errors import InputError
from napari_microfossil.workflows.segment import (
    SegmentImageRequest,
    SegmentOptions,
    SegmentRequest,
    iter_segment_image,
    iter_segment_scan,
    parse_voxel_size,
    voxel_size_text,
)

SHAPE = (4, 40, 48)


@pytest.fixture
def scan(tmp_path):
    from napari_microfossil.io import write_tiff

    data = np.random.default_rng(0).integers(0, 1000, size=SHAPE).astype(np.uint16)
    return write_tiff(tmp_path / "scan.tif", data, spacing=(2.0, 0.5, 0.5))


@pytest.fixture
def no_work(monkeypatch):
    """Reading a scan or loading a model fails the test: checks must come first."""
    import napari_microfossil.io as io
    import napari_microfossil.model as model

    def fail(*args, **kwargs):
        raise AssertionError("work started before the request was checked")

    monkeypatch.setattr(model, "load_model", fail)
    monkeypatch.setattr(io, "read_volume", fail)


def refused(build, *needles):
    with pytest.raises(InputError) as exc:
        build()
    message = str(exc.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        ({"axes": "q"}, ("axes:", "'q'")),
        ({"axes": "zz"}, ("axes:", "without repeats")),
        ({"tile": 48}, ("tile:", "multiple of 32", "try 32")),
        ({"tile": 64.0}, ("tile:", "integer")),
        ({"overlap": 0.95}, ("overlap:", "0.95")),
        ({"overlap": -0.1}, ("overlap:",)),
        ({"batch_size": 0}, ("batch_size:", ">= 1")),
        ({"smooth": 9}, ("smooth:", "Gaussian sigma", "9")),
        ({"smooth": "soft"}, ("smooth:", "'soft'")),
        ({"flips": "yes"}, ("flips:",)),
        ({"device": "gpu"}, ("device:", "'gpu'")),
    ],
)
def test_each_option_is_refused_in_one_line_naming_it(options, needles, no_work):
    refused(lambda: SegmentOptions(**options), *needles)


def test_options_are_normalised():
    o = SegmentOptions(axes=" ZyX ", smooth=" AUTO ", device="cpu")
    assert o.axes == "zyx" and o.smooth == "auto" and o.auto_smooth
    assert SegmentOptions(smooth="0.5").smooth == 0.5
    assert not SegmentOptions().auto_smooth and SegmentOptions().smooth is None
    kw = SegmentOptions(tile=64, device="cpu").engine_options(0.7)
    assert kw == {
        "axes": "z",
        "tile": 64,
        "overlap": 0.25,
        "batch_size": 4,
        "device": "cpu",
        "flips": False,
        "smooth": 0.7,
    }


def test_paths_are_checked_before_any_work(tmp_path, scan, model_file, no_work):
    out = tmp_path / "labels.tif"
    ok = {"scan": scan, "output": out, "model": str(model_file)}

    def request(**kw):
        return lambda: SegmentRequest(**{**ok, **kw})

    existing = tmp_path / "old.tif"
    existing.write_bytes(b"x")
    refused(request(output=existing), "-o:", "already exists", "--overwrite")
    refused(request(output=tmp_path / "nope" / "l.tif"), "-o:", "folder", "nope")
    refused(request(confidence=existing), "--confidence:", "already exists")
    refused(request(confidence=out), "--confidence:", "-o")
    refused(request(output=scan, overwrite=True), "-o:", "scan itself")
    refused(request(scan=tmp_path / "missing.tif"), "scan:", "missing.tif")
    refused(request(model=str(tmp_path / "m.safetensors")), "model:", "m.safetensors")
    refused(request(voxel_size=(1.0, -1.0, 1.0)), "spacing:")
    # Accepted: an existing output with overwrite, the voxel size normalised.
    r = SegmentRequest(**{**ok, "output": existing, "overwrite": True, "voxel_size": 0.5})
    assert r.voxel_size == (0.5, 0.5, 0.5) and r.options == SegmentOptions()


def test_a_bad_tile_is_reported_before_a_missing_model(tmp_path, scan, capsys, no_work):
    missing = tmp_path / "m.safetensors"
    argv = ["segment", str(scan), "-o", str(tmp_path / "o.tif"), "--model", str(missing)]
    assert main([*argv, "--tile", "48"]) == 2
    err = capsys.readouterr().err.strip()
    assert "tile: expected a multiple of 32" in err and "m.safetensors" not in err
    assert main(argv) == 2
    assert "m.safetensors" in capsys.readouterr().err


def test_image_request_checks_the_volume_and_model(tmp_path, model_file, no_work):
    vol = np.zeros(SHAPE, np.uint16)
    refused(lambda: SegmentImageRequest(vol[0], model=str(model_file)), "image:", "(Z, Y, X)")
    refused(lambda: SegmentImageRequest(vol, model=str(tmp_path / "x.safetensors")), "model:")
    r = SegmentImageRequest(vol, model=str(model_file), options=SegmentOptions(device="cpu"))
    assert r.spec.class_names == ("background", "fossil", "pore") and r.spec.tile_size == 64


def test_scan_use_case_writes_and_summarises(tmp_path, scan, model_file):
    from napari_microfossil._progress import drain
    from napari_microfossil.io import read_labels, read_volume
    from napari_microfossil.model import load_model
    from napari_microfossil.segmentation import segment

    out, conf = tmp_path / "labels.tif", tmp_path / "conf.tif"
    options = SegmentOptions(device="cpu", smooth=0.0)
    request = SegmentRequest(scan, out, confidence=conf, model=str(model_file), options=options)
    stages = []
    result = drain(iter_segment_scan(request), lambda p: stages.append(p.stage))
    assert "segment z" in stages
    model = load_model(model_file, device="cpu")  # the file's weights (half precision)
    expected = segment(read_volume(scan).data, model, device="cpu", smooth=0.0).labels
    labels = read_labels(out)
    np.testing.assert_array_equal(labels.data, expected)
    assert labels.spacing == (2.0, 0.5, 0.5) and labels.class_names == result.class_names
    assert read_volume(conf).data.max() <= 100
    assert result.labels_path == out and result.confidence_path == conf
    assert result.shape == SHAPE and result.axes == "z" and result.voxels == np.prod(SHAPE)
    assert result.counts == tuple(np.bincount(expected.ravel(), minlength=3))
    assert sum(result.shares.values()) == pytest.approx(1.0)
    assert result.seconds > 0 and result.load_seconds > 0 and result.smoothing is None


def test_scan_use_case_writes_nothing_when_cancelled(tmp_path, scan, model_file):
    request = SegmentRequest(
        scan, tmp_path / "l.tif", model=str(model_file), options=SegmentOptions(device="cpu")
    )
    gen = iter_segment_scan(request)
    next(gen)
    gen.close()
    assert not (tmp_path / "l.tif").exists()


def test_auto_smoothing_is_suggested_then_used(tmp_path, model_file):
    from napari_microfossil._progress import drain
    from napari_microfossil.model import load_model
    from napari_microfossil.segmentation import segment, suggest_smoothing

    vol = np.random.default_rng(1).integers(0, 1000, size=SHAPE).astype(np.uint16)
    options = SegmentOptions(device="cpu", smooth="auto")
    seg = drain(iter_segment_image(SegmentImageRequest(vol, str(model_file), options)))
    model = load_model(model_file, device="cpu")
    sigma = suggest_smoothing(vol, model, device="cpu").sigma
    expected = segment(vol, model, device="cpu", smooth=sigma).labels
    np.testing.assert_array_equal(seg.labels, expected)


def test_cli_prints_the_summary_line(tmp_path, scan, model_file, capsys):
    out = tmp_path / "l.tif"
    argv = ["segment", str(scan), "-o", str(out), "--model", str(model_file), "--quiet"]
    assert main([*argv, "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    assert said.startswith("Segmented 4x40x48 voxels along z in ")
    assert re.search(r"Mvoxel/s\): background \d+\.\d%, fossil \d+\.\d%, pore \d+\.\d%", said)
    assert said.rstrip().endswith(f"labels     {out}")


def test_voxel_size_text_round_trips():
    assert voxel_size_text((2.0, 2.0, 2.0)) == "2"
    assert voxel_size_text((2, 0.5, 0.5)) == "2, 0.5, 0.5"
    assert parse_voxel_size(" 2, 0.5 0.5 ") == (2.0, 0.5, 0.5)
    assert parse_voxel_size("0.8") == (0.8, 0.8, 0.8)
    refused(lambda: parse_voxel_size("abc"), "spacing:", "'abc'")
    refused(lambda: parse_voxel_size("1 2"), "spacing:")


@pytest.mark.gui
@pytest.mark.parametrize(
    ("field", "value", "cli"),
    [("tile", 48, ["--tile", "48"]), ("overlap", 0.95, ["--overlap", "0.95"])],
)
def test_cli_and_panel_refuse_alike(
    make_napari_viewer, tmp_path, scan, model_file, capsys, field, value, cli
):
    pytest.importorskip("napari")
    from napari_microfossil._napari.segment_widget import SegmentWidget

    argv = ["segment", str(scan), "-o", str(tmp_path / "o.tif"), "--model", str(model_file)]
    assert main([*argv, "--device", "cpu", *cli]) == 2
    cli_message = capsys.readouterr().err.strip().removeprefix("microfossil segment: error: ")

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros(SHAPE, np.uint16), name="scan")
    panel = SegmentWidget(viewer)
    panel.add_model(model_file)
    panel.device.setCurrentIndex(panel.device.findData("cpu"))
    if field == "tile":
        panel.tile.setValue(value)
    else:  # the overlap box stops at 0.85: a value only a changed widget would give
        fields = panel.options()
        panel.options = lambda: {**fields, field: value}
    assert panel.run() is None
    assert panel.status.text() == f"Segment: {cli_message}"
    assert "scan fossils" not in viewer.layers
