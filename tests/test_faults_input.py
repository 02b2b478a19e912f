"""Issue 13, cases 4, 5, 7, 8 and 10: bad input ends in one line and exit 2, before any
slow work (the model never loads, the phantom is never drawn) and with nothing written;
valid but suspicious input runs with a one-line warning."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_microfossil.cli import main

SHAPE = (8, 64, 64)


def _scan(path: Path, data: np.ndarray | None = None) -> Path:
    rng = np.random.default_rng(0)
    if data is None:
        data = rng.integers(0, 4000, SHAPE, dtype=np.uint16)
    tifffile.imwrite(path, data)
    return path


def _labels(path: Path, value: int | None = None) -> Path:
    if value is None:
        data = np.zeros(SHAPE, np.uint8)
        data[:, 20:40, 20:40] = 1
    else:
        data = np.full(SHAPE, value, np.uint8)
    tifffile.imwrite(path, data)
    return path


def _read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder this process may not write to (chmod; and, for root, whom chmod does
    not stop, the writability probe says so too)."""
    from napari_microfossil.workflows import outputs

    folder.mkdir()
    folder.chmod(0o555)
    real = outputs.writable
    monkeypatch.setattr(
        outputs, "writable", lambda f: False if Path(f) == folder else real(Path(f))
    )
    return folder


def _model(path: Path) -> Path:
    """A real model file (a copy of the bundled one), to be kept from being overwritten."""
    import shutil

    from napari_microfossil.model import resolve_model_path

    shutil.copyfile(resolve_model_path("default"), path)
    return path


# Each case: (id, builder(tmp, monkeypatch) -> argv, (the option or file the line starts
# with, then words its text must hold, the temporary folder's path taken out)).
Case = tuple[str, Callable[[Path, pytest.MonkeyPatch], list[str]], tuple[str, ...]]


def _seg(t: Path, *extra: str) -> list[str]:
    return ["segment", str(_scan(t / "scan.tif")), *extra]


def _fossils(t: Path, *extra: str) -> list[str]:
    return ["fossils", str(_labels(t / "labels.tif")), *extra]


def _train(t: Path, *extra: str, value: int | None = None) -> list[str]:
    return [
        "train",
        "--image",
        str(_scan(t / "scan.tif")),
        "--labels",
        str(_labels(t / "labels.tif", value)),
        "--epochs",
        "1",
        *extra,
    ]


CASES: list[Case] = [
    # 4: memory known up front
    (
        "sample-shape-too-big",
        lambda t, m: ["sample", str(t / "out"), "--shape", "100000", "100000", "100000"],
        ("--shape", "memory", "PB"),
    ),
    (
        "sample-read-only-folder",
        lambda t, m: ["sample", str(_read_only(t / "ro", m) / "out"), "--shape", "16", "32", "32"],
        ("OUTDIR", "not writable"),
    ),
    # 5: nothing labelled
    (
        "train-all-255",
        lambda t, m: _train(t, "-o", str(t / "m.safetensors"), value=255),
        ("--labels", "no labelled voxels", "--slices"),
    ),
    (
        "train-all-255-given-slices",
        lambda t, m: _train(t, "-o", str(t / "m.safetensors"), "--slices", "z:2,5", value=255),
        ("--labels", "no labelled voxel", "z:2,5"),
    ),
    # 7: every argument and path before any work
    (
        "segment-confidence-is-output",
        lambda t, m: _seg(t, "-o", str(t / "l.tif"), "--confidence", str(t / "l.tif")),
        ("--confidence", "-o"),
    ),
    ("segment-bad-tile", lambda t, m: _seg(t, "-o", str(t / "l.tif"), "--tile", "33"), ("tile",)),
    (
        "segment-bad-overlap",
        lambda t, m: _seg(t, "-o", str(t / "l.tif"), "--overlap", "0.95"),
        ("overlap",),
    ),
    ("segment-bad-axes", lambda t, m: _seg(t, "-o", str(t / "l.tif"), "--axes", "q"), ("axes",)),
    (
        "segment-read-only-folder",
        lambda t, m: _seg(t, "-o", str(_read_only(t / "ro", m) / "l.tif")),
        ("-o", "not writable"),
    ),
    (
        "segment-confidence-read-only-folder",
        lambda t, m: _seg(
            t, "-o", str(t / "l.tif"), "--confidence", str(_read_only(t / "ro", m) / "c.tif")
        ),
        ("--confidence", "not writable"),
    ),
    (
        "fossils-read-only-folder",
        lambda t, m: _fossils(t, "-o", str(_read_only(t / "ro", m) / "out")),
        ("-o", "not writable"),
    ),
    (
        "train-read-only-folder",
        lambda t, m: _train(t, "-o", str(_read_only(t / "ro", m) / "m.safetensors")),
        ("-o", "not writable"),
    ),
    # 8: an output that is an input, a label volume under another format's name
    (
        "segment-output-is-scan",
        lambda t, m: _seg(t, "-o", str(t / "scan.tif"), "--overwrite"),
        ("-o", "scan"),
    ),
    (
        "segment-confidence-is-scan",
        lambda t, m: _seg(
            t, "-o", str(t / "l.tif"), "--confidence", str(t / "scan.tif"), "--overwrite"
        ),
        ("--confidence", "scan"),
    ),
    (
        "segment-output-is-model",
        lambda t, m: _seg(
            t, "-o", str(_model(t / "m.tif")), "--model", str(t / "m.tif"), "--overwrite"
        ),
        ("-o", "input"),
    ),
    ("segment-output-png", lambda t, m: _seg(t, "-o", str(t / "l.png")), ("-o", ".tif", "l.png")),
    (
        "segment-confidence-png",
        lambda t, m: _seg(t, "-o", str(t / "l.tif"), "--confidence", str(t / "c.png")),
        ("--confidence", ".tif", "c.png"),
    ),
    (
        "fossils-export-would-replace-labels",
        lambda t, m: [
            "fossils",
            str(_labels(t / "instances.tif")),
            "-o",
            str(t),
            "--overwrite",
        ],
        ("-o", "input"),
    ),
    (
        "fossils-export-would-replace-scan",
        lambda t, m: _fossils(
            t, "-o", str(t), "--image", str(_scan(t / "instances.tif")), "--overwrite"
        ),
        ("-o", "input"),
    ),
    (
        "train-output-is-labels",
        lambda t, m: _train(t, "-o", str(t / "labels.tif"), "--overwrite"),
        ("-o", "input"),
    ),
    (
        "train-output-is-base",
        lambda t, m: _train(
            t,
            "-o",
            str(_model(t / "b.safetensors")),
            "--base",
            str(t / "b.safetensors"),
            "--overwrite",
        ),
        ("-o", "input"),
    ),
    # 10: silent surprises refused
    (
        "segment-all-nan",
        lambda t, m: [
            "segment",
            str(_scan(t / "nan.tif", np.full(SHAPE, np.nan, np.float32))),
            "-o",
            str(t / "l.tif"),
        ],
        ("scan", "NaN"),
    ),
    (
        "fossils-scan-as-labels",
        lambda t, m: ["fossils", str(_scan(t / "scan.tif")), "-o", str(t / "out")],
        ("LABELS", "scan", "not a class label volume"),
    ),
]


def _files(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
    return out


@pytest.fixture
def no_slow_work(monkeypatch):
    """Loading a model or drawing a phantom fails the test: refusals come first."""
    import napari_microfossil.model as model
    import napari_microfossil.phantom as phantom

    def slow(*args, **kwargs):
        raise AssertionError("slow work started before the input was checked")

    monkeypatch.setattr(model, "load_model", slow)
    monkeypatch.setattr(phantom, "make_phantom", slow)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    case, tmp_path, monkeypatch, capsys, no_slow_work
):
    _, build, words = case
    argv = build(tmp_path, monkeypatch)
    capsys.readouterr()
    before = _files(tmp_path)
    try:
        code = main(argv)
    finally:
        for p in tmp_path.rglob("*"):
            if p.is_dir():
                p.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    option, *rest = words
    assert lines[0].startswith(f"microfossil {argv[0]}: error: {option}: "), lines[0]
    text = lines[0].replace(str(tmp_path), "TMP")
    for word in rest:
        assert word in text, (word, lines[0])
    assert _files(tmp_path) == before  # nothing written, no input replaced


def test_cases_cover_the_issue():
    assert len(CASES) == 23  # the count the issue's closing note gives


def test_phantom_memory_estimate_grows_with_the_volume():
    from napari_microfossil.phantom.make import phantom_peak_bytes

    small = phantom_peak_bytes((16, 32, 32))
    assert phantom_peak_bytes((32, 32, 32)) == 2 * small
    assert small >= 16 * 32 * 32 * (2 + 1 + 4)  # at least the three outputs


def test_sample_that_fits_is_not_refused(tmp_path, monkeypatch):
    from napari_microfossil.workflows import outputs
    from napari_microfossil.workflows.sample import SampleRequest

    monkeypatch.setattr(outputs, "available_memory", lambda: 10**9)
    SampleRequest(tmp_path / "s", shape=(16, 32, 32))
    monkeypatch.setattr(outputs, "available_memory", lambda: 10**3)
    with pytest.raises(ValueError, match="--shape: a 16x32x32 phantom needs about"):
        SampleRequest(tmp_path / "s", shape=(16, 32, 32))


def test_finite_check_costs_one_plane_on_a_normal_scan():
    from napari_microfossil.workflows.segment import check_finite

    class Planes:
        shape, dtype, reads = (50, 4, 4), np.dtype(np.float32), 0

        def __getitem__(self, z):
            self.reads += 1
            return np.ones((4, 4), np.float32)

    vol = Planes()
    check_finite(vol, "scan")
    assert vol.reads == 1
    data = np.full((3, 4, 4), np.nan, np.float32)
    data[2, 1, 1] = 5.0  # one finite voxel is a scan
    check_finite(data, "scan")
    check_finite(np.zeros((3, 4, 4), np.uint16), "scan")  # integers are always finite


def test_slices_all_not_labelled_are_not_training_slices():
    from napari_microfossil.workflows.train import labelled_z_slices

    labels = np.full((4, 8, 8), 255, np.uint8)
    labels[1, 2, 2] = 1
    labels[3] = 0
    labels[3, 0, 0] = 2
    assert labelled_z_slices(labels) == [1, 3]


def test_unknown_label_ids_are_dropped_with_a_count():
    from napari_microfossil.workflows.train.request import unlabelled_ids

    labels = np.zeros((2, 4, 4), np.uint16)
    labels[0, 0, :3] = 300
    labels[1, 0, 0] = 255
    fixed, n = unlabelled_ids(labels)
    assert n == 3
    assert fixed[0, 0, :3].tolist() == [255] * 3 and labels[0, 0, 0] == 300
    _, n = unlabelled_ids(labels.astype(np.uint8))
    assert n == 0


def test_train_warns_in_one_line_about_ids_no_class_can_have(tmp_path, tiny_model, capsys):
    from napari_microfossil.model import save_model

    base = save_model(tmp_path / "tiny.safetensors", tiny_model.network, tiny_model.spec)
    labels = np.zeros(SHAPE, np.uint16)
    labels[:, 20:40, 20:40] = 1
    labels[:, :4, :4] = 300  # would wrap to 44 as uint8
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    argv = [
        "train",
        "--image",
        str(_scan(tmp_path / "scan.tif")),
        "--labels",
        str(tmp_path / "labels.tif"),
        "--base",
        str(base),
        "-o",
        str(tmp_path / "m.safetensors"),
        "--slices",
        "z:1,3",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
        "--batch-size",
        "1",
        "--quiet",
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "ids above 254" in line]
    assert len(warned) == 1 and warned[0].startswith("microfossil train: warning: --labels:")
    assert "Traceback" not in err
    from napari_microfossil.model import read_spec

    assert read_spec(tmp_path / "m.safetensors").num_classes == 3  # no class_44 head
    assert os.path.exists(tmp_path / "m.safetensors")
