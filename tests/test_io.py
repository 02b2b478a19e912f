"""Readers and writers: TIFF (plain, ImageJ, OME), folders of slices, zarr / OME-Zarr."""

from __future__ import annotations

import gc
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_microfossil import io
from napari_microfossil.errors import InputError
from napari_microfossil.io import (
    SliceStack,
    atomic_path,
    is_supported,
    read_labels,
    read_volume,
    volume_info,
    write_tiff,
)

SANDSTONE = Path(__file__).resolve().parents[2] / "shared/data/sandstone-versa-microct/images"


def _vol(shape=(4, 6, 5), dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return rng.random(shape) > 0.5
    return rng.integers(0, 100, shape).astype(dtype)


def _slices(folder: Path, names, shape=(6, 5), dtype=np.uint8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        value = int("".join(c for c in name if c.isdigit()) or 0)
        a = np.full(shape, value, dtype=dtype)
        if name.lower().endswith(".png"):
            Image.fromarray(a).save(folder / name)
        else:
            tifffile.imwrite(folder / name, a)
    return folder


# ------------------------------------------------------------------ multi-page TIFF


def test_plain_tiff_loads_with_default_spacing_and_logs(tmp_path, caplog):
    a = _vol()
    tifffile.imwrite(tmp_path / "s.tif", a, photometric="minisblack")
    with caplog.at_level(logging.WARNING, logger="napari_microfossil.io"):
        vol = read_volume(tmp_path / "s.tif")
    assert type(vol.data) is np.ndarray and not vol.lazy
    np.testing.assert_array_equal(vol.data, a)
    assert vol.spacing == (1.0, 1.0, 1.0) and vol.spacing_source == "default"
    assert vol.unit == "µm" and vol.class_names is None
    assert "no voxel size" in caplog.text
    assert vol.load() is vol.data


@pytest.mark.parametrize(
    ("unit", "factor"), [("micron", 1.0), ("\\u00B5m", 1.0), ("nm", 1e-3), ("mm", 1e3)]
)
def test_imagej_metadata_spacing(tmp_path, unit, factor):
    a = _vol()
    tifffile.imwrite(
        tmp_path / "ij.tif",
        a,
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.25),
        metadata={"axes": "ZYX", "spacing": 2.0, "unit": unit},
    )
    vol = read_volume(tmp_path / "ij.tif")
    assert vol.spacing_source == "metadata"
    np.testing.assert_allclose(vol.spacing, np.array([2.0, 0.25, 0.5]) * factor)


def test_imagej_singleton_axes_squeezed(tmp_path):
    a = _vol((1, 3, 1, 6, 5))
    tifffile.imwrite(tmp_path / "h.tif", a, imagej=True, metadata={"axes": "TZCYX"})
    vol = read_volume(tmp_path / "h.tif")
    np.testing.assert_array_equal(vol.data, a[0, :, 0])


def test_channels_rejected_with_shape(tmp_path):
    a = _vol((3, 2, 6, 5))
    tifffile.imwrite(tmp_path / "c.tif", a, imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(InputError, match=r"expected a 3D \(Z, Y, X\).*\(3, 2, 6, 5\)"):
        read_volume(tmp_path / "c.tif")


def test_ome_tiff_physical_size(tmp_path):
    a = _vol()
    meta = {"axes": "ZYX", "PhysicalSizeX": 500.0, "PhysicalSizeXUnit": "nm"}
    meta |= {"PhysicalSizeY": 0.75, "PhysicalSizeZ": 3.0}
    tifffile.imwrite(tmp_path / "o.ome.tif", a, ome=True, photometric="minisblack", metadata=meta)
    vol = read_volume(tmp_path / "o.ome.tif")
    np.testing.assert_array_equal(vol.data, a)
    assert vol.spacing_source == "metadata"
    np.testing.assert_allclose(vol.spacing, (3.0, 0.75, 0.5))
    assert volume_info(tmp_path / "o.ome.tif")["format"] == "ome-tiff"


@pytest.mark.parametrize(("resunit", "per_unit"), [("CENTIMETER", 1e4), ("INCH", 25400.0)])
def test_resolution_tags(tmp_path, resunit, per_unit):
    # 2 µm pixels; no z spacing in plain TIFF tags, so z = x is assumed
    res = per_unit / 2.0
    tifffile.imwrite(
        tmp_path / "r.tif",
        _vol(),
        photometric="minisblack",
        resolution=(res, res),
        resolutionunit=resunit,
    )
    vol = read_volume(tmp_path / "r.tif")
    assert vol.spacing_source == "metadata"
    np.testing.assert_allclose(vol.spacing, (2.0, 2.0, 2.0))


def test_image_editor_dpi_is_not_a_voxel_size(tmp_path):
    tifffile.imwrite(
        tmp_path / "r.tif", _vol(), photometric="minisblack", resolution=(72, 72), resolutionunit=2
    )
    assert read_volume(tmp_path / "r.tif").spacing_source == "default"
    # (1, 1) with no ResolutionUnit tag (= inch) is a placeholder, not 25.4 mm pixels
    tifffile.imwrite(tmp_path / "p.tif", _vol(), photometric="minisblack", resolution=(1, 1))
    assert read_volume(tmp_path / "p.tif").spacing_source == "default"


def test_user_spacing_overrides_metadata(tmp_path):
    write_tiff(tmp_path / "a.tif", _vol(), spacing=(3.0, 2.0, 2.0))
    assert read_volume(tmp_path / "a.tif", spacing=1.5).spacing == (1.5, 1.5, 1.5)
    vol = read_volume(tmp_path / "a.tif", spacing=(4, 0.5, 0.25))
    assert vol.spacing == (4.0, 0.5, 0.25) and vol.spacing_source == "user"


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), (1, 2), "2", True, (1, 0, 1)])
def test_invalid_spacing(tmp_path, bad):
    write_tiff(tmp_path / "a.tif", _vol())
    with pytest.raises(InputError, match="spacing"):
        read_volume(tmp_path / "a.tif", spacing=bad)


def test_2d_tiff_is_one_slice(tmp_path):
    a = _vol((6, 5))
    tifffile.imwrite(tmp_path / "one.tif", a)
    vol = read_volume(tmp_path / "one.tif")
    assert vol.data.shape == (1, 6, 5)
    np.testing.assert_array_equal(vol.data[0], a)


def test_rgb_tiff_becomes_grey_with_warning(tmp_path):
    grey = _vol((6, 5), np.uint8)
    rgb = np.stack([grey, grey, grey], axis=-1)
    rgb[0, 0] = (255, 0, 0)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with pytest.warns(UserWarning, match="colour"):
        vol = read_volume(tmp_path / "rgb.tif")
    assert vol.data.shape == (1, 6, 5) and vol.dtype == np.uint8
    assert vol.data[0, 0, 0] == round(255 * 0.2125)
    np.testing.assert_array_equal(vol.data[0, 1:], grey[1:])


@pytest.mark.parametrize(
    "dtype", ["uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
)
def test_accepted_dtypes(tmp_path, dtype):
    a = _vol(dtype=dtype)
    tifffile.imwrite(tmp_path / "d.tif", a, photometric="minisblack")
    vol = read_volume(tmp_path / "d.tif")
    assert vol.dtype == dtype
    np.testing.assert_array_equal(vol.data, a)


@pytest.mark.parametrize("dtype", ["complex64", "int64"])
def test_rejected_dtypes(tmp_path, dtype):
    tifffile.imwrite(tmp_path / "d.tif", np.zeros((2, 4, 4), dtype), photometric="minisblack")
    with pytest.raises(InputError, match=f"d.tif.*{dtype}.*expected one of uint8"):
        read_volume(tmp_path / "d.tif")


def test_garbage_and_truncated_tiff(tmp_path):
    (tmp_path / "g.tif").write_bytes(b"\x00garbage" * 20)
    with pytest.raises(InputError, match=r"g\.tif.*cannot read as TIFF"):
        read_volume(tmp_path / "g.tif")
    tifffile.imwrite(tmp_path / "t.tif", _vol((4, 64, 64)), photometric="minisblack")
    whole = (tmp_path / "t.tif").read_bytes()
    (tmp_path / "t.tif").write_bytes(whole[: len(whole) // 2])
    for lazy in (None, True):
        with pytest.raises(InputError, match=r"t\.tif.*truncated"):
            read_volume(tmp_path / "t.tif", lazy=lazy)


def test_missing_and_unsupported_paths(tmp_path):
    with pytest.raises(InputError, match=r"nope\.tif: no such file"):
        read_volume(tmp_path / "nope.tif")
    for name in ("scan.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
        with pytest.raises(InputError, match=rf"{name}.*unsupported file type.*\.tif/\.tiff.*zarr"):
            read_volume(tmp_path / name)


# ------------------------------------------------------------------ lazy TIFF


def test_lazy_uncompressed_tiff_is_memmap(tmp_path):
    a = _vol((3, 8, 7))
    tifffile.imwrite(tmp_path / "m.tif", a, imagej=True)
    vol = read_volume(tmp_path / "m.tif", lazy_threshold_bytes=10)
    assert isinstance(vol.data, np.memmap) and vol.lazy
    assert vol.data.shape == (3, 8, 7)
    np.testing.assert_array_equal(vol.data[1], a[1])
    loaded = vol.load()
    assert type(loaded) is np.ndarray
    np.testing.assert_array_equal(loaded, a)
    # below the threshold: loaded
    assert type(read_volume(tmp_path / "m.tif").data) is np.ndarray


def test_lazy_compressed_tiff_reads_pages_on_demand(tmp_path):
    a = _vol((3, 8, 7))
    tifffile.imwrite(tmp_path / "z.tif", a, photometric="minisblack", compression="zlib")
    # compressed and small: lazy=None loads even above the threshold
    assert type(read_volume(tmp_path / "z.tif", lazy_threshold_bytes=10).data) is np.ndarray
    vol = read_volume(tmp_path / "z.tif", lazy=True)
    assert vol.lazy and not isinstance(vol.data, np.ndarray)
    assert vol.data.shape == (3, 8, 7) and vol.data.ndim == 3 and vol.data.dtype == np.uint16
    np.testing.assert_array_equal(vol.data[2, 1:3], a[2, 1:3])
    np.testing.assert_array_equal(vol.data[..., -1], a[..., -1])
    np.testing.assert_array_equal(vol.load(), a)
    del vol
    gc.collect()  # the open file is closed with the view: no ResourceWarning


# ------------------------------------------------------------------ folders of slices


def test_slice_folder_natural_sort_and_filters(tmp_path):
    folder = _slices(tmp_path / "s", ["slice_10.tif", "slice_2.TIF", "slice_1.tiff"])
    (folder / "notes.txt").write_text("scan log")
    (folder / ".hidden_5.tif").write_bytes(b"junk")
    (folder / "sub").mkdir()
    vol = read_volume(folder)
    assert type(vol.data) is np.ndarray
    assert vol.data[:, 0, 0].tolist() == [1, 2, 10]
    assert vol.spacing_source == "default"


def test_png_slices_and_rgb_warning(tmp_path):
    folder = _slices(tmp_path / "p", ["b_2.png", "b_1.png"], dtype=np.uint16)
    vol = read_volume(folder)
    assert vol.dtype == np.uint16 and vol.data[:, 0, 0].tolist() == [1, 2]
    rgb_dir = tmp_path / "rgb"
    rgb_dir.mkdir()
    for i in range(2):
        Image.fromarray(np.full((4, 3, 3), 40 + i, np.uint8)).save(rgb_dir / f"c{i}.png")
    with pytest.warns(UserWarning, match="grey"):
        vol = read_volume(rgb_dir)
    assert vol.data.shape == (2, 4, 3) and vol.data[:, 0, 0].tolist() == [40, 41]


@pytest.mark.parametrize(
    ("shape", "dtype", "found"),
    [((7, 5), np.uint8, r"\(7, 5\) and dtype uint8"), ((6, 5), np.uint16, "uint16")],
)
def test_slice_mismatch_names_the_file(tmp_path, shape, dtype, found):
    folder = _slices(tmp_path / "s", ["s1.tif", "s2.tif", "s3.tif"])
    tifffile.imwrite(folder / "s2.tif", np.zeros(shape, dtype))
    with pytest.raises(InputError, match=rf"s2\.tif.*{found}.*expected \(6, 5\) uint8"):
        read_volume(folder)


def test_empty_folder_and_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        read_volume(tmp_path / "empty")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("x")
    with pytest.raises(InputError, match=r"docs.*no \.tif/\.tiff/\.png slices.*readme\.txt"):
        read_volume(tmp_path / "docs")


def test_slice_stack_reads_only_needed_files(tmp_path, monkeypatch):
    folder = _slices(tmp_path / "s", [f"z{i}.tif" for i in range(5)])
    opened: list[str] = []
    real = io.slices.read_image_file

    def counting(path):
        opened.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(io.slices, "read_image_file", counting)
    vol = read_volume(folder, lazy=True)
    assert isinstance(vol.data, SliceStack) and vol.lazy
    assert vol.data.shape == (5, 6, 5) and vol.data.dtype == np.uint8 and len(vol.data) == 5
    assert opened == []  # headers only
    assert vol.data[3].tolist() == np.full((6, 5), 3).tolist()
    assert opened == ["z3.tif"]
    opened.clear()
    assert vol.data[1:4:2, :2, -1].tolist() == [[1, 1], [3, 3]]
    assert opened == ["z1.tif", "z3.tif"]
    assert vol.data[-1, ..., 0].shape == (6,)
    assert vol.data[4:1].shape == (0, 6, 5)
    assert np.asarray(vol.data)[:, 0, 0].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(IndexError):
        vol.data[5]
    # auto: lazy only above the threshold
    assert isinstance(read_volume(folder, lazy_threshold_bytes=10).data, SliceStack)


def test_slice_stack_checks_files_when_read(tmp_path):
    folder = _slices(tmp_path / "s", ["a1.tif", "a2.tif"])
    stack = SliceStack(sorted(folder.iterdir()))
    tifffile.imwrite(folder / "a2.tif", np.zeros((3, 3), np.uint8))
    with pytest.raises(InputError, match=r"a2\.tif"):
        stack[1]
    with pytest.raises(InputError, match="no slice files"):
        SliceStack([])


# ------------------------------------------------------------------ zarr


def test_plain_zarr_array_is_lazy(tmp_path):
    zarr = pytest.importorskip("zarr")
    a = _vol((4, 6, 5))
    z = zarr.create_array(tmp_path / "v.zarr", shape=a.shape, dtype=a.dtype, chunks=(1, 6, 5))
    z[:] = a
    vol = read_volume(tmp_path / "v.zarr")
    assert vol.lazy and vol.spacing_source == "default"
    np.testing.assert_array_equal(vol.data[2], a[2])
    np.testing.assert_array_equal(read_volume(tmp_path / "v.zarr", lazy=False).data, a)
    assert is_supported(tmp_path / "v.zarr")


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ome_zarr_level0_and_spacing(tmp_path, zarr_format):
    zarr = pytest.importorskip("zarr")
    a = _vol((1, 4, 6, 5))
    path = tmp_path / "scan.ome.zarr"
    root = zarr.open_group(path, mode="w", zarr_format=zarr_format)
    root.create_array("0", shape=a.shape, dtype=a.dtype, chunks=(1, 2, 6, 5))[:] = a
    root.create_array("1", shape=(1, 2, 3, 3), dtype=a.dtype)
    axes = [
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "nanometer"},
        {"name": "x", "type": "space", "unit": "nanometer"},
    ]
    datasets = [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 2, 500, 250]}]},
        {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [1, 4, 1e3, 500]}]},
    ]
    ms = {"version": "0.4", "axes": axes, "datasets": datasets}
    if zarr_format == 2:
        root.attrs["multiscales"] = [ms]
    else:
        root.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    vol = read_volume(path)
    assert vol.lazy and vol.data.shape == (4, 6, 5) and vol.data.ndim == 3
    np.testing.assert_array_equal(vol.data[1:3], a[0, 1:3])
    np.testing.assert_array_equal(vol.load(), a[0])
    assert vol.spacing_source == "metadata"
    np.testing.assert_allclose(vol.spacing, (2.0, 0.5, 0.25))
    assert volume_info(path)["format"] == "ome-zarr"


def test_bad_zarr(tmp_path):
    pytest.importorskip("zarr")
    (tmp_path / "broken.zarr").mkdir()
    with pytest.raises(InputError, match=r"broken\.zarr"):
        read_volume(tmp_path / "broken.zarr")


# ------------------------------------------------------------------ labels


def test_read_labels_types(tmp_path):
    tifffile.imwrite(
        tmp_path / "i.tif", np.array([[[0, 1, 300]]], np.int16), photometric="minisblack"
    )
    lab = read_labels(tmp_path / "i.tif")
    assert lab.dtype == np.uint16 and lab.data.tolist() == [[[0, 1, 300]]]
    write_tiff(tmp_path / "b.tif", np.array([[[True, False]]]))
    assert read_labels(tmp_path / "b.tif").dtype == np.uint8
    tifffile.imwrite(tmp_path / "n.tif", np.array([[[0, -2]]], np.int32))
    with pytest.raises(InputError, match=r"n\.tif.*non-negative.*-2"):
        read_labels(tmp_path / "n.tif")
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((1, 2, 2), np.float32))
    with pytest.raises(InputError, match=r"f\.tif.*integers.*float32"):
        read_labels(tmp_path / "f.tif")


# ------------------------------------------------------------------ writing


@pytest.mark.parametrize(
    "dtype", ["uint8", "uint16", "float32", "uint32", "int32", "int16", "float64", "int64"]
)
def test_write_tiff_round_trip(tmp_path, dtype):
    a = _vol(dtype=dtype, seed=3)
    spacing = (2.7, 0.448139, 1 / 3)
    names = ("background", "fossil", "pore")
    extra = {"fossil_id": 7, "crop_start_zyx": [1, 2, 3]}
    path = write_tiff(tmp_path / "w.tif", a, spacing=spacing, class_names=names, metadata=extra)
    with tifffile.TiffFile(path) as tif:
        imagej = tif.is_imagej
        assert imagej == (dtype in ("uint8", "uint16", "float32"))
        if imagej:  # Fiji sees the voxel size without our JSON
            assert tif.imagej_metadata["unit"] == "micron"
            assert tif.imagej_metadata["spacing"] == pytest.approx(2.7)
    # int64 is no image type, but fine for labels (read as uint64)
    vol = read_labels(path) if dtype == "int64" else read_volume(path)
    assert vol.dtype == (np.uint64 if dtype == "int64" else dtype)
    np.testing.assert_array_equal(vol.data, a)
    assert vol.spacing == spacing and vol.spacing_source == "metadata"
    assert vol.class_names == names
    assert dict(vol.metadata) == extra
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.tif"]


def test_written_imagej_spacing_readable_without_our_json(tmp_path, monkeypatch):
    write_tiff(tmp_path / "w.tif", _vol(dtype=np.uint8), spacing=(3.0, 2.0, 0.5))
    monkeypatch.setattr(io.metadata, "ours", lambda text: None)
    vol = read_volume(tmp_path / "w.tif")
    np.testing.assert_allclose(vol.spacing, (3.0, 2.0, 0.5))


def test_write_zcyx_two_channel_crop(tmp_path):
    a = _vol((3, 2, 6, 5))
    write_tiff(tmp_path / "crop.tif", a, spacing=2.0, axes="ZCYX")
    with tifffile.TiffFile(tmp_path / "crop.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZCYX"
        np.testing.assert_array_equal(tif.asarray(), a)
    with pytest.raises(ValueError, match="ZCYX"):
        write_tiff(tmp_path / "x.tif", a[:, 0], axes="ZCYX")
    with pytest.raises(ValueError, match="axes"):
        write_tiff(tmp_path / "x.tif", a, axes="CZYX")


def test_write_tiff_refuses_overwrite(tmp_path):
    path = write_tiff(tmp_path / "w.tif", _vol(seed=1))
    with pytest.raises(InputError, match=r"w\.tif.*--overwrite"):
        write_tiff(path, _vol(seed=2))
    np.testing.assert_array_equal(read_volume(path).data, _vol(seed=1))
    write_tiff(path, _vol(seed=2), overwrite=True, compression=None)
    np.testing.assert_array_equal(read_volume(path).data, _vol(seed=2))


def test_write_tiff_is_atomic(tmp_path, monkeypatch):
    path = write_tiff(tmp_path / "w.tif", _vol(seed=1))

    def failing(file, *args, **kwargs):
        Path(file).write_bytes(b"half a tiff")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", failing)
    with pytest.raises(OSError, match="disk full"):
        write_tiff(path, _vol(seed=2), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.tif"]
    np.testing.assert_array_equal(read_volume(path).data, _vol(seed=1))


def test_atomic_path_other_files(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".csv" and tmp.name.startswith(".")
        tmp.write_text("a,b\n")
    assert target.read_text() == "a,b\n"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError
    assert target.read_text() == "a,b\n"
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]
    with pytest.raises(InputError, match="--overwrite"), atomic_path(target, overwrite=False):
        pass


# ------------------------------------------------------------------ info and support


def test_volume_info(tmp_path):
    a = _vol((5, 6, 5))
    a[2, 3, 3] = 999
    write_tiff(tmp_path / "v.tif", a, spacing=(2.0, 1.0, 1.0), class_names=("bg", "x"))
    info = volume_info(tmp_path / "v.tif")
    assert info["shape"] == (5, 6, 5) and info["dtype"] == "uint16"
    assert info["spacing"] == (2.0, 1.0, 1.0) and info["spacing_source"] == "metadata"
    assert info["unit"] == "µm" and info["format"] == "imagej-tiff"
    assert (info["min"], info["max"], info["range_exact"]) == (int(a.min()), 999, True)
    assert info["size_mb"] == pytest.approx(a.nbytes / 1e6)
    assert info["extent_um"] == (10.0, 6.0, 5.0) and info["class_names"] == ("bg", "x")
    folder = _slices(tmp_path / "s", [f"z{i}.tif" for i in range(1, 7)])
    info = volume_info(folder, sample_slices=2, max_exact_mb=0)
    assert info["format"] == "slices" and info["n_files"] == 6 and info["lazy"]
    assert (info["min"], info["max"], info["range_exact"]) == (1, 6, False)


def test_is_supported_never_raises(tmp_path):
    write_tiff(tmp_path / "a.TIF", _vol())
    (tmp_path / "a.jpg").write_bytes(b"x")
    folder = _slices(tmp_path / "s", ["z1.png"])
    (tmp_path / "empty").mkdir()
    assert is_supported(tmp_path / "a.TIF") and is_supported(str(folder))
    assert is_supported([str(tmp_path / "a.TIF"), folder])
    for bad in (tmp_path / "a.jpg", tmp_path / "missing.tif", tmp_path / "empty", None, 3, []):
        assert not is_supported(bad)


def test_real_versa_slice_calibration():
    files = sorted(SANDSTONE.glob("*.tif")) if SANDSTONE.is_dir() else []
    if not files:
        pytest.skip(f"{SANDSTONE} is absent")
    vol = read_volume(files[0])
    assert vol.data.shape == (1, 1024, 996) and vol.dtype == np.uint8
    assert vol.spacing_source == "metadata"
    np.testing.assert_allclose(vol.spacing, (1 / 0.448139,) * 3, rtol=1e-6)


def test_json_description_is_ours(tmp_path):
    write_tiff(tmp_path / "u.tif", _vol(dtype=np.uint32), spacing=0.5, class_names=("a",))
    with tifffile.TiffFile(tmp_path / "u.tif") as tif:
        doc = json.loads(tif.pages[0].description)
        assert tif.pages[0].tags["ResolutionUnit"].value == 3
    assert doc[io.META_KEY]["spacing"] == [0.5, 0.5, 0.5]
    assert doc[io.META_KEY]["class_names"] == ["a"]
