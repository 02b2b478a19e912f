"""A full disk: refused up front when the outputs surely do not fit, and a write that
fills the disk half-way leaves nothing half-made (issue 13, case 3)."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

from napari_microfossil import cli
from napari_microfossil._progress import drain
from napari_microfossil.errors import InputError
from napari_microfossil.workflows import outputs, sample
from napari_microfossil.workflows.sample import SampleRequest, iter_write_sample


def _disk_free(monkeypatch, n: int) -> None:
    monkeypatch.setattr(outputs, "free_space", lambda folder: n)


def test_free_space_of_a_folder_still_to_make(tmp_path):
    """The space is that of the nearest existing parent."""
    have = outputs.free_space(tmp_path / "not" / "yet")
    assert have is not None and have > 0


@pytest.mark.parametrize(
    ("voxels", "kinds", "expected"),
    [
        (10**6, ("scan",), 470_000),
        (10**6, ("labels", "confidence"), 60_000),
        (0, ("scan", "labels"), 0),
    ],
)
def test_expected_bytes_adds_the_kinds(voxels, kinds, expected):
    assert outputs.expected_bytes(voxels, *kinds) == expected


def test_check_disk_space_names_option_need_and_free(monkeypatch, tmp_path):
    _disk_free(monkeypatch, 2 * 2**20)
    with pytest.raises(InputError) as err:
        outputs.check_disk_space(tmp_path, 5 * 2**30, "-o", "the labels")
    msg = str(err.value)
    assert msg.startswith("-o: the labels needs at least 5.0 GB of disk space")
    assert "2.0 MB free" in msg and "\n" not in msg
    outputs.check_disk_space(tmp_path, 2**20, "-o", "the labels")  # fits: no error


def test_unknown_free_space_does_not_refuse(monkeypatch, tmp_path):
    _disk_free(monkeypatch, None)
    outputs.check_disk_space(tmp_path, 10**15, "-o", "x")


def test_sample_too_big_for_the_disk_is_refused_before_work(monkeypatch, tmp_path, capsys):
    """A 2 MB disk and a 192³ sample (at least 3.5 MB compressed): one line,
    exit 2, nothing written, no folder made."""
    _disk_free(monkeypatch, 2 * 2**20)
    out = tmp_path / "new"
    assert cli.main(["sample", str(out), "--shape", "192", "192", "192"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "OUTDIR:" in err[0] and "disk space" in err[0], err
    assert not out.exists()


def test_sample_that_fits_is_not_refused(monkeypatch, tmp_path):
    _disk_free(monkeypatch, 10 * 2**20)
    SampleRequest(tmp_path / "s", shape=(32, 32, 32))


@pytest.mark.parametrize("fail_at", [0, 1, 2])
@pytest.mark.parametrize("nested", [False, True])
def test_a_disk_full_during_sample_leaves_nothing(monkeypatch, tmp_path, fail_at, nested):
    """Whichever of the three files fills the disk, the files written before it go and
    so do the folders the run made; a folder that existed stays, with what it held."""
    from napari_microfossil import io

    real = io.write_tiff
    calls = []

    def write(path, *args, **kwargs):
        calls.append(Path(path))
        if len(calls) - 1 == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(io, "write_tiff", write)
    keep = tmp_path / "mine.txt"
    keep.write_text("the user's")
    out = tmp_path / "a" / "b" if nested else tmp_path
    with pytest.raises(OSError) as err:
        drain(iter_write_sample(SampleRequest(out, shape=(16, 32, 32))))
    assert err.value.errno == errno.ENOSPC
    assert len(calls) == fail_at + 1
    assert not any(p.exists() for p in calls)
    assert keep.read_text() == "the user's"
    if nested:
        assert not (tmp_path / "a").exists()


def test_a_disk_full_during_sample_is_one_line_in_the_cli(monkeypatch, tmp_path, capsys):
    from napari_microfossil import io

    def write(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(io, "write_tiff", write)
    out = tmp_path / "s"
    assert cli.main(["sample", str(out), "--shape", "16", "32", "32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"microfossil sample: error: {out / 'scan.tif'}: No space left on device"]
    assert not out.exists()


def test_sample_module_uses_the_shared_check():
    """One place checks the disk: the sample request calls outputs.check_disk_space."""
    assert sample.check_disk_space is outputs.check_disk_space
    assert np.isclose(sum(outputs.COMPRESSED_BYTES_PER_VOXEL.values()), 0.54)


# -- segment: labels and confidence are written both or neither -----------------------


@pytest.fixture
def scan_and_model(tmp_path, model_file):
    from napari_microfossil.io import write_tiff

    data = np.random.default_rng(0).integers(0, 1000, size=(6, 40, 48)).astype(np.uint16)
    return write_tiff(tmp_path / "scan.tif", data), model_file


def test_a_full_disk_while_writing_the_confidence_leaves_no_labels_either(
    tmp_path, scan_and_model, monkeypatch, capsys
):
    """Issue 13, case 3: `segment --confidence` used to leave a complete labels file
    without its confidence. Both TIFFs are complete in their temp files before either is
    renamed, so a full disk leaves neither (and no temp file)."""
    import tifffile

    scan, model = scan_and_model
    real = tifffile.imwrite

    def imwrite(path, data, *args, **kwargs):
        if ".conf." in str(path):
            for _ in data:  # the pages arrive, then the disk is full
                pass
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, *args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", imwrite)
    argv = ["segment", str(scan), "-o", str(tmp_path / "labels.tif"), "--confidence"]
    argv += [str(tmp_path / "conf.tif"), "--model", str(model), "--device", "cpu", "--quiet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.tif", "tiny.safetensors"]


def test_segment_too_big_for_the_disk_is_refused_before_the_model_loads(
    tmp_path, scan_and_model, monkeypatch, capsys
):
    from napari_microfossil import model as models

    scan, model = scan_and_model
    _disk_free(monkeypatch, 100)  # bytes
    loaded = []
    monkeypatch.setattr(models, "load_model", lambda *a, **k: loaded.append(1))
    argv = ["segment", str(scan), "-o", str(tmp_path / "labels.tif"), "--model", str(model)]
    assert cli.main([*argv, "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("microfossil segment: error: -o: the labels of")
    assert "disk space" in err[0] and not loaded
    assert not (tmp_path / "labels.tif").exists()


def test_fossils_too_big_for_the_disk_is_refused_before_work(tmp_path, monkeypatch, capsys):
    from napari_microfossil.io import write_tiff

    labels = np.zeros((8, 32, 32), np.uint8)
    labels[2:6, 5:20, 5:20] = 1
    path = write_tiff(tmp_path / "labels.tif", labels, class_names=("bg", "fossil"))
    _disk_free(monkeypatch, 10)
    assert cli.main(["fossils", str(path), "-o", str(tmp_path / "f"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "-o: the instances of" in err[0] and "disk space" in err[0]
    assert not (tmp_path / "f").exists()
