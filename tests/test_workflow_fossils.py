"""Tests for napari_microfossil.workflows.fossils: checked requests, extract, export, files."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_microfossil._progress import Progress, drain
from napari_microfossil.errors import InputError
from napari_microfossil.io import read_volume, write_tiff
from napari_microfossil.workflows.fossils import (
    ExportRequest,
    ExtractRequest,
    FossilsRequest,
    earlier_export,
    fossil_class,
    iter_export,
    iter_extract,
    iter_fossils,
)

CLASSES = ("background", "fossil", "pore")
SPACING = (2.0, 1.0, 1.0)


def scene():
    labels = np.zeros((10, 20, 30), np.uint8)
    labels[2:6, 2:8, 2:10] = 1  # 192 voxels
    labels[2:6, 2:8, 12:16] = 1  # 96 voxels
    labels[0, 0, 0:3] = 2  # a pore
    return labels, (labels * 100 + 7).astype(np.uint16)


@pytest.fixture
def files(tmp_path):
    labels, scan = scene()
    write_tiff(tmp_path / "lab.tif", labels, spacing=SPACING, class_names=CLASSES)
    write_tiff(tmp_path / "scan.tif", scan, spacing=SPACING)
    return tmp_path


def test_fossil_class_by_name_id_and_without_names():
    assert fossil_class(CLASSES, "Fossil") == (1, "fossil")
    assert fossil_class(CLASSES, 2) == (2, "pore")
    assert fossil_class((), "fossil") == (1, "fossil")  # the sample's names
    assert fossil_class((), "7") == (7, "7")
    with pytest.raises(InputError, match="did you mean 'fossil'"):
        fossil_class(CLASSES, "fosil")
    with pytest.raises(InputError, match="background"):
        fossil_class(CLASSES, "background")
    with pytest.raises(InputError, match="background"):
        fossil_class((), 0)
    with pytest.raises(InputError, match=r"0\.\.2"):
        fossil_class(CLASSES, 5)


def test_extract_request_and_use_case():
    labels, scan = scene()
    req = ExtractRequest(
        labels, class_names=CLASSES, which="fossil", spacing=SPACING, image=scan, min_voxels=100
    )
    assert (req.class_id, req.class_label) == (1, "fossil")
    stages = set()
    table = drain(iter_extract(req), lambda p: stages.add(p.stage))
    assert stages == {"label", "measure"}
    assert table.ids == (1,) and table.rows[0]["voxels"] == 192
    assert table.rows[0]["volume_um3"] == 192 * 2.0
    assert table.rows[0]["mean_intensity"] == 107.0
    pores = drain(iter_extract(ExtractRequest(labels, class_names=CLASSES, which="pore")))
    assert pores.ids == (1,) and pores.rows[0]["voxels"] == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"which": "nope"}, "class"),
        ({"which": 0}, "background"),
        ({"spacing": (1.0, -1.0, 1.0)}, "spacing"),
        ({"image": np.zeros((2, 2, 2))}, "image"),
        ({"min_voxels": -1}, "min_voxels"),
        ({"min_voxels": True}, "min_voxels"),
        ({"min_volume_um3": float("nan")}, "min_volume_um3"),
        ({"split": "yes"}, "split"),
    ],
)
def test_extract_request_checks_every_option(kwargs, match):
    labels, _ = scene()
    with pytest.raises(InputError, match=match):
        ExtractRequest(labels, class_names=CLASSES, **kwargs)


def test_extract_request_needs_3d_labels():
    with pytest.raises(InputError, match="3D"):
        ExtractRequest(np.zeros((4, 4), np.uint8))


def test_export_request_and_gallery(tmp_path):
    labels, scan = scene()
    table = drain(iter_extract(ExtractRequest(labels, class_names=CLASSES, spacing=SPACING)))
    out = tmp_path / "out"
    assert earlier_export(out) is None
    req = ExportRequest(table, out, image=scan, ids=[2, 2], mesh_format="PLY", gallery=True)
    assert req.ids == (2,) and req.mesh_format == "ply" and req.count == 1
    done = drain(iter_export(req))
    assert sorted(done.export.meshes) == [2] and done.export.meshes[2].suffix == ".ply"
    assert done.gallery is not None and sorted(done.gallery.images) == [2]
    assert earlier_export(out) == out / "fossils.csv"
    with open(out / "fossils.csv", newline="") as fh:
        assert [int(r["id"]) for r in csv.DictReader(fh)] == [2]
    # No gallery: no index page.
    plain = drain(iter_export(ExportRequest(table, tmp_path / "plain", mesh_format="none")))
    assert plain.gallery is None and not plain.export.meshes
    assert not (tmp_path / "plain" / "index.html").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mesh_format": "stll"}, "did you mean 'stl'"),
        ({"ids": []}, "at least one"),
        ({"ids": [9]}, "unknown"),
        ({"gallery": 1}, "gallery"),
    ],
)
def test_export_request_checks(tmp_path, kwargs, match):
    labels, _ = scene()
    table = drain(iter_extract(ExtractRequest(labels, class_names=CLASSES)))
    with pytest.raises(InputError, match=match):
        ExportRequest(table, tmp_path, **kwargs)


def test_export_request_refuses_a_file_as_folder(tmp_path):
    labels, _ = scene()
    table = drain(iter_extract(ExtractRequest(labels, class_names=CLASSES)))
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        ExportRequest(table, tmp_path / "f")


def test_fossils_from_files(files):
    out = files / "out"
    req = FossilsRequest(
        files / "lab.tif", out, image=files / "scan.tif", crops=True, min_voxels=100
    )
    records = []
    result = drain(iter_fossils(req), records.append)
    assert all(isinstance(p, Progress) for p in records)
    assert (result.class_id, result.class_name) == (1, "fossil")
    assert result.spacing == SPACING
    assert result.table.ids == (1,)
    assert result.table.rows[0]["mean_intensity"] == 107.0
    assert sorted(p.name for p in (out / "crops").iterdir()) == ["fossil_0001.tif"]
    inst = read_volume(out / "instances.tif")
    assert inst.spacing == SPACING and int(inst.load().max()) == 1


def test_fossils_takes_the_scans_voxel_size_when_labels_have_none(tmp_path):
    import tifffile

    labels, scan = scene()
    tifffile.imwrite(tmp_path / "lab.tif", labels)  # no voxel size at all
    write_tiff(tmp_path / "scan.tif", scan, spacing=SPACING)
    req = FossilsRequest(tmp_path / "lab.tif", tmp_path / "o", image=tmp_path / "scan.tif")
    result = drain(iter_fossils(req))
    assert result.spacing == SPACING
    assert result.table.rows[0]["volume_um3"] == 192 * 2.0
    assert result.class_name == "fossil"  # unnamed labels: the sample's class names


def test_fossils_request_checks_before_reading(files):
    lab = files / "lab.tif"
    with pytest.raises(InputError, match="no such file"):
        FossilsRequest(files / "missing.tif", files / "o")
    with pytest.raises(InputError, match=r"image: .*no such file"):
        FossilsRequest(lab, files / "o", image=files / "missing.tif")
    with pytest.raises(InputError, match="not a folder"):
        FossilsRequest(lab, lab)
    with pytest.raises(InputError, match="mesh_format"):
        FossilsRequest(lab, files / "o", mesh_format="vtk")
    with pytest.raises(InputError, match="spacing"):
        FossilsRequest(lab, files / "o", voxel_size=(1.0, 0.0, 1.0))
    with pytest.raises(InputError, match="min_voxels"):
        FossilsRequest(lab, files / "o", min_voxels=-3)
    assert FossilsRequest(lab, files / "o", voxel_size=2.0).voxel_size == (2.0, 2.0, 2.0)
    assert FossilsRequest(lab, files / "o", mesh_format="none").mesh_format is None
    assert not (files / "o").exists()


def test_fossils_refuses_an_earlier_export_before_work(files):
    out = files / "out"
    drain(iter_fossils(FossilsRequest(files / "lab.tif", out)))
    with pytest.raises(InputError, match=r"already exists.*--overwrite"):
        FossilsRequest(files / "lab.tif", out)
    again = drain(iter_fossils(FossilsRequest(files / "lab.tif", out, overwrite=True)))
    assert again.table.ids == (1, 2)


def test_fossils_class_and_scan_shape_are_checked_before_extracting(files):
    write_tiff(files / "small.tif", np.zeros((3, 3, 3), np.uint16))
    gen = iter_fossils(FossilsRequest(files / "lab.tif", files / "o", which="fosil"))
    with pytest.raises(InputError, match="did you mean 'fossil'"):
        next(gen)
    gen = iter_fossils(FossilsRequest(files / "lab.tif", files / "o", image=files / "small.tif"))
    with pytest.raises(InputError, match=r"image: expected the labels' shape \(10, 20, 30\)"):
        next(gen)
    assert not (files / "o").exists()
