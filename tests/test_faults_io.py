"""Broken input files (issue 13, cases 1, 2, 6 and the RGB warning of 10): every command
that reads the file ends in one line naming it, exit 2, no traceback, nothing written.

The table: each broken file (:data:`BROKEN`) × each command that reads it
(:data:`COMMANDS`: info, segment, fossils --image --crops, fossils with it as the
labels, train --image). The broken files are made in ``tmp_path`` from a small volume
written with the package's own writer (zarr stores with zarr itself: the package
writes no zarr).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_microfossil.cli import main
from napari_microfossil.errors import InputError
from napari_microfossil.io import META_KEY, ReadError, read_labels, read_volume, write_tiff
from napari_microfossil.io.metadata import ours_document

SHAPE = (16, 64, 64)
CHUNKS = (8, 32, 32)
SPACING = 2.0


def _scan() -> np.ndarray:
    return np.random.default_rng(13).integers(0, 4000, SHAPE).astype(np.uint16)


def _truncate(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _head(path: Path, size: int = 20) -> Path:
    """`head -c 20 chunk > chunk`: what the issue did to a zarr chunk."""
    path.write_bytes(path.read_bytes()[:size])
    return path


def _zarr(path: Path) -> Path:
    """The scan as a zarr store of 8 chunks, with its voxel size (so no warning)."""
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(path, shape=SHAPE, dtype=np.uint16, chunks=CHUNKS)
    z[:] = _scan()
    doc = ours_document(
        spacing=(SPACING,) * 3, unit="µm", axes="ZYX", class_names=None, metadata=None
    )
    z.attrs[META_KEY] = doc[META_KEY]
    return path


# ---------------------------------------------------------------- the broken files


def truncated_tiff(d: Path) -> Path:
    """Case 1: a compressed TIFF cut in half (`head -c`)."""
    return _truncate(write_tiff(d / "trunc.tif", _scan(), spacing=SPACING, compression="zlib"), 0.5)


def truncated_raw_tiff(d: Path) -> Path:
    """An uncompressed TIFF missing its last 3 %: tifffile alone reads it as 1 slice."""
    return _truncate(write_tiff(d / "cut.tif", _scan(), spacing=SPACING, compression=None), 0.97)


def truncated_last_page(d: Path) -> Path:
    """A compressed TIFF with every page header but its last page's pixels cut short."""
    return _truncate(write_tiff(d / "tail.tif", _scan(), spacing=SPACING, compression="zlib"), 0.97)


def corrupt_slice(d: Path) -> Path:
    """A folder of slices, one of them truncated."""
    folder = d / "slices"
    folder.mkdir()
    for z, plane in enumerate(_scan()):
        write_tiff(folder / f"s{z:02d}.tif", plane[None], spacing=SPACING, compression="zlib")
    _truncate(folder / "s07.tif", 0.5)
    return folder


def corrupt_chunk(d: Path) -> Path:
    """Case 2: a zarr store with one chunk file overwritten by its first 20 bytes."""
    store = _zarr(d / "scan.zarr")
    _head(store / "c" / "0" / "1" / "0")
    return store


def named_pipe(d: Path) -> Path:
    """Case 6: `mkfifo p.tif`; reading it would block forever."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    os.mkfifo(d / "p.tif")
    return d / "p.tif"


#: (broken file, words the error must hold besides the file's name)
BROKEN: list[tuple[Callable[[Path], Path], tuple[str, ...]]] = [
    (truncated_tiff, ("corrupt or truncated",)),
    (truncated_raw_tiff, ("corrupt or truncated",)),
    (truncated_last_page, ("corrupt or truncated",)),
    (corrupt_slice, ("s07.tif", "corrupt or truncated")),
    (corrupt_chunk, ("chunk c/0/1/0", "cannot be decoded")),
    (named_pipe, ("named pipe",)),
]


# ---------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny model and labels matching the scan, for segment, fossils and train."""
    import torch

    from napari_microfossil.classes import PHANTOM_CLASS_NAMES
    from napari_microfossil.model import ModelSpec, build_network, save_model

    d = tmp_path_factory.mktemp("inputs")
    spec = ModelSpec(
        class_names=PHANTOM_CLASS_NAMES,
        encoder="resnet18",
        arch_kwargs={"encoder_depth": 3, "decoder_channels": (32, 16, 8)},
        tile_size=64,
    )
    torch.manual_seed(0)
    model = save_model(d / "tiny.safetensors", build_network(spec).eval(), spec)
    labels = np.zeros(SHAPE, np.uint8)
    labels[:, 10:30, 10:30] = 1
    labels[:, 40:50, 40:50] = 2
    write_tiff(d / "labels.tif", labels, spacing=SPACING, class_names=PHANTOM_CLASS_NAMES)
    return {"model": model, "labels": d / "labels.tif"}


def _info(scan: Path, out: Path, inputs: dict[str, Path]) -> list[str]:
    return ["info", str(scan)]


def _segment(scan: Path, out: Path, inputs: dict[str, Path]) -> list[str]:
    model = str(inputs["model"])
    return ["segment", str(scan), "-o", str(out / "l.tif"), "--model", model, "--quiet"]


def _fossils(scan: Path, out: Path, inputs: dict[str, Path]) -> list[str]:
    labels = str(inputs["labels"])
    return ["fossils", labels, "--image", str(scan), "--crops", "-o", str(out / "f"), "--quiet"]


def _fossils_labels(scan: Path, out: Path, inputs: dict[str, Path]) -> list[str]:
    return ["fossils", str(scan), "-o", str(out / "f"), "--quiet"]  # the file as LABELS


def _train(scan: Path, out: Path, inputs: dict[str, Path]) -> list[str]:
    return [
        "train",
        "--image",
        str(scan),
        "--labels",
        str(inputs["labels"]),
        "--slices",
        "z:2,5,9,12",
        "--base",
        str(inputs["model"]),
        "-o",
        str(out / "m.safetensors"),
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
        "--batch-size",
        "2",
        "--crop-size",
        "32",
        "--device",
        "cpu",
        "--quiet",
    ]


COMMANDS = [_info, _segment, _fossils, _fossils_labels, _train]


@contextmanager
def _unblocked(path: Path, seconds: float = 20.0) -> Iterator[None]:
    """If a reader still blocks on the named pipe `path` after `seconds`, open its
    other end and close it, so the reader sees an empty file: the test fails, never hangs."""
    done = threading.Event()

    def rescue() -> None:
        if done.wait(seconds) or not path.exists():
            return
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass

    thread = threading.Thread(target=rescue, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.__name__.strip("_"))
@pytest.mark.parametrize("broken, words", BROKEN, ids=[b.__name__ for b, _ in BROKEN])
def test_broken_input_is_one_line_exit_2_nothing_written(
    broken, words, command, inputs, tmp_path, capsys, caplog
):
    scan = broken(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    argv = command(scan, out, inputs)
    with caplog.at_level(logging.DEBUG), _unblocked(scan):
        code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"microfossil {argv[0]}: error: {scan}"), err
    for word in words:
        assert word in err, err
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]  # no stray line
    assert sorted(p.name for p in out.rglob("*")) == []


# ---------------------------------------------------------------- the lazy reads


def test_a_late_lazy_read_of_a_corrupt_tiff_names_the_file(tmp_path):
    path = truncated_last_page(tmp_path)
    vol = read_volume(path, lazy=True)  # every page header is there: opens fine
    np.testing.assert_array_equal(vol.data[3], _scan()[3])
    with pytest.raises(ReadError, match=rf"^{path}: cannot read pixels .*corrupt or truncated"):
        vol.data[SHAPE[0] - 1]
    assert issubclass(ReadError, InputError)


def test_a_late_lazy_read_of_a_corrupt_zarr_chunk_names_it(tmp_path):
    store = corrupt_chunk(tmp_path)
    vol = read_volume(store)
    assert vol.lazy
    np.testing.assert_array_equal(vol.data[:8, :32], _scan()[:8, :32])  # chunks (0, 0, *)
    with pytest.raises(ReadError, match=rf"^{store}: chunk c/0/1/0 cannot be decoded"):
        vol.data[4]
    with pytest.raises(ReadError, match="c/0/1/0"):
        np.asarray(vol.data)


@pytest.mark.filterwarnings("default::UserWarning")
@pytest.mark.parametrize(
    "zarr_format, first, second", [(2, "0/0.0.1", "0/0.1.0"), (3, "0/c/0/0/1", "0/c/0/1/0")]
)
def test_ome_zarr_chunks_are_named_from_the_store_root(tmp_path, zarr_format, first, second):
    zarr = pytest.importorskip("zarr")
    store = tmp_path / "scan.ome.zarr"
    root = zarr.open_group(store, mode="w", zarr_format=zarr_format)
    # zstd (zarr 3's default), not zarr 2's Blosc: numcodecs' Blosc decodes a cut
    # incompressible chunk from past its end without an error (numcodecs#228)
    codec = {"compressors": pytest.importorskip("numcodecs").Zstd()} if zarr_format == 2 else {}
    arr = root.create_array("0", shape=SHAPE, dtype=np.uint16, chunks=CHUNKS, **codec)
    arr[:] = _scan()
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]
    scale = [{"type": "scale", "scale": [SPACING] * 3}]
    ms = {
        "version": "0.4",
        "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": scale}],
    }
    root.attrs.update(
        {"multiscales": [ms]}
        if zarr_format == 2
        else {"ome": {"version": "0.5", "multiscales": [ms]}}
    )
    (store / first).unlink()
    _head(store / second)
    with pytest.warns(
        UserWarning, match=rf"{store}: 1 of 8 chunks are missing \(the first: {first}\)"
    ):
        vol = read_volume(store)
    with pytest.raises(ReadError, match=rf"{store}: chunk {second} cannot be decoded"):
        vol.load()


def test_a_truncated_tiff_is_never_read_short(tmp_path):
    # tifffile alone reads this file as one slice, logging an error nobody sees
    path = truncated_raw_tiff(tmp_path)
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].shape != SHAPE
    for read in (read_volume, read_labels):
        with pytest.raises(ReadError, match=rf"{path}: .*invalid page offset"):
            read(path)


# ---------------------------------------------------------------- warnings


@pytest.mark.filterwarnings("default::UserWarning")  # shown, as outside pytest
def test_missing_zarr_chunk_warns_naming_store_and_chunk(tmp_path, capsys):
    # zarr leaves out chunks of only the fill value, so a missing chunk may be valid
    # (an empty corner of the scan): a warning, not an error
    store = _zarr(tmp_path / "scan.zarr")
    (store / "c" / "0" / "1" / "0").unlink()
    assert main(["info", str(store)]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == (
        f"microfossil info: warning: {store}: 1 of 8 chunks are missing (the first: "
        "c/0/1/0) and read as the fill value 0; fine where the scan is empty (zarr leaves "
        "out chunks of only the fill value), else the store is incomplete"
    )
    assert "min            0" in out
    with pytest.warns(UserWarning, match=r"1 of 8 chunks are missing"):
        read_volume(store)


def test_labels_with_missing_chunks_are_read_without_a_warning(tmp_path, recwarn):
    store = _zarr(tmp_path / "labels.zarr")
    (store / "c" / "1" / "1" / "1").unlink()
    labels = read_labels(store).data
    assert not labels[8:, 32:, 32:].any()
    assert not [w for w in recwarn if "chunks are missing" in str(w.message)]


def _rgb(d: Path) -> Path:
    rgb = np.zeros((2, 8, 9, 3), np.uint8)
    rgb[..., 0] = 200
    tifffile.imwrite(d / "rgb.tif", rgb, photometric="rgb")
    return d / "rgb.tif"


@pytest.mark.filterwarnings("default::UserWarning")
def test_cli_shows_a_warning_as_one_plain_line(tmp_path, capsys):
    path = _rgb(tmp_path)
    assert main(["info", str(path)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    rgb = [line for line in err if "colour" in line]
    assert rgb == [
        f"microfossil info: warning: {path}: colour image with shape (2, 8, 9, 3); converted "
        "to grey (luminance)"
    ]


@pytest.mark.parametrize(
    "make, code, expected",
    [
        (truncated_tiff, 2, "microfossil info: error: {}: cannot read as TIFF"),
        (_rgb, 0, "microfossil info: warning: {}: colour image"),
    ],
    ids=["truncated", "rgb"],
)
def test_the_installed_command_prints_one_line(tmp_path, make, code, expected):
    """The real process: its logging and warnings set up by the CLI, not by pytest."""
    path = make(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "napari_microfossil.cli", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == code, r.stderr
    lines = r.stderr.splitlines()  # log records too: "no voxel size found" for the RGB file
    assert all(line.startswith("microfossil info: ") for line in lines), r.stderr
    lines = [line for line in lines if "no voxel size" not in line]
    assert len(lines) == 1 and lines[0].startswith(expected.format(path)), r.stderr
    assert "Traceback" not in r.stderr and "UserWarning" not in r.stderr
