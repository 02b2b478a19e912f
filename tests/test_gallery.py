"""Tests for napari_microfossil.fossils.gallery: one picture per fossil, a histogram, an index page."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_microfossil._progress import Progress
from napari_microfossil.errors import InputError
from napari_microfossil.fossils import FossilTable, extract_fossils
from napari_microfossil.fossils.gallery import GALLERY_DIR, iter_write_gallery, write_gallery
from napari_microfossil.fossils.mesh import mask_to_mesh
from napari_microfossil.fossils.picture import render_fossil
from napari_microfossil.fossils.render import render_histogram, render_mesh

SPACING = (2.0, 1.0, 1.0)


def ball(shape, centre, r_um, spacing=SPACING) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    d = sum(((g - c) * s) ** 2 for g, c, s in zip((z, y, x), centre, spacing, strict=True))
    return d <= r_um**2


@pytest.fixture(scope="module")
def scene():
    """Three balls of different sizes and a uint16 scan where they are bright."""
    shape = (16, 40, 70)
    labels = (
        ball(shape, (7, 20, 12), 9.0)
        | ball(shape, (8, 18, 38), 6.0)
        | ball(shape, (6, 22, 58), 4.0)
    ).astype(np.uint8)
    rng = np.random.default_rng(1)
    image = rng.normal(300, 30, size=shape).clip(0).astype(np.uint16)
    image[labels == 1] += 500
    table = extract_fossils(labels, spacing=SPACING, image=image)
    assert len(table) == 3
    return table, image


def test_write_gallery_files(scene, tmp_path):
    table, image = scene
    gen = iter_write_gallery(table, tmp_path, image=image)
    records = []
    while True:
        try:
            records.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert all(isinstance(p, Progress) for p in records)
    assert [p.done for p in records if p.stage == "gallery"] == [0, 1, 2, 3]
    assert records[-1] == Progress("gallery index", 1, 1)

    assert result.index == tmp_path / "index.html"
    assert result.histogram == tmp_path / GALLERY_DIR / "size_histogram.png"
    assert set(result.images) == {1, 2, 3}
    for fid, path in result.images.items():
        assert path == tmp_path / GALLERY_DIR / f"fossil_{fid:04d}.png"
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size == (640, 320)
            # The 3D view is not blank: the fossil is drawn in its light colour.
            left = np.asarray(im.convert("RGB"))[:, :320]
            assert (left.mean(axis=2) > 150).sum() > 1000
    with Image.open(result.histogram) as im:
        assert im.size == (640, 320)
    assert not list(tmp_path.rglob(".*tmp*"))  # no temp files left

    page = result.index.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert "3 fossils" in page
    for fid in (1, 2, 3):
        assert f'src="gallery/fossil_{fid:04d}.png"' in page
        assert f"<b>#{fid}</b>" in page
    assert 'src="gallery/size_histogram.png"' in page
    vol = table.row(1)["volume_um3"]
    assert f"{round(vol):,}" in page


def test_index_links_export_files(scene, tmp_path):
    from napari_microfossil.fossils.export import export_fossils

    table, image = scene
    export_fossils(table, tmp_path, image=image, mesh_format="ply")
    write_gallery(table, tmp_path, image=image)
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'href="fossils.csv"' in page
    assert 'href="meshes/fossil_0002.ply"' in page
    assert 'href="crops/fossil_0003.tif"' in page


def test_selected_ids_without_image(scene, tmp_path):
    table, _ = scene
    result = write_gallery(table, tmp_path, ids=[3, 1])
    assert list(result.images) == [3, 1]
    assert not (tmp_path / GALLERY_DIR / "fossil_0002.png").exists()
    page = result.index.read_text(encoding="utf-8")
    assert "2 fossils" in page
    assert page.index("fossil_0003.png") < page.index("fossil_0001.png")


def test_existing_files_need_overwrite(scene, tmp_path):
    table, _ = scene
    write_gallery(table, tmp_path, ids=[1])
    before = (tmp_path / "index.html").stat().st_mtime_ns
    with pytest.raises(InputError, match=r"already exists.*overwrite"):
        iter_write_gallery(table, tmp_path, ids=[1])
    assert (tmp_path / "index.html").stat().st_mtime_ns == before
    write_gallery(table, tmp_path, ids=[1], overwrite=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ids": [1, 9]}, r"ids: .*unknown \[9\]"),
        ({"image": np.zeros((2, 2, 2))}, r"image: expected the shape"),
        ({"size": 10}, r"size: expected an integer >= 64"),
    ],
)
def test_bad_input_is_reported_before_writing(scene, tmp_path, kwargs, match):
    table, _ = scene
    with pytest.raises(InputError, match=match):
        iter_write_gallery(table, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_outdir_is_a_file(scene, tmp_path):
    table, _ = scene
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="outdir: expected a folder"):
        iter_write_gallery(table, f)


def test_no_fossils(tmp_path):
    table = FossilTable.from_instances(np.zeros((4, 5, 6), np.uint16))
    result = write_gallery(table, tmp_path)
    assert result.images == {}
    assert "0 fossils" in result.index.read_text(encoding="utf-8")
    assert result.histogram.is_file()


def test_big_and_thin_fossils_are_downsampled_but_kept():
    # A one-voxel-thick plate: sampling every k-th voxel could miss it; block "any" keeps it.
    inst = np.zeros((9, 120, 120), np.uint16)
    inst[4, 5:115, 5:115] = 1
    table = FossilTable.from_instances(inst, spacing=(1.0, 1.0, 1.0))
    pic = render_fossil(table, 1, max_grid=16, size=128)
    assert pic.size == (256, 128)
    assert (np.asarray(pic)[:, :128].mean(axis=2) > 150).any()
    with pytest.raises(InputError, match="fossil id"):
        render_fossil(table, 2)


def test_render_mesh_view_and_culling():
    # A box long along x: seen from the side (azimuth -90°, looking along +y) it is wide.
    mask = np.zeros((6, 6, 30), bool)
    mask[1:5, 1:5, 1:29] = True
    mesh = mask_to_mesh(mask)
    side = np.asarray(
        render_mesh(mesh.vertices, mesh.faces, size=100, azimuth=-90, elevation=0, scale_bar=False)
    )
    lit = side.mean(axis=2) > 60
    rows, cols = np.nonzero(lit)
    assert np.ptp(cols) > 4 * np.ptp(rows)
    # Looking down the x axis it is a small square.
    end = np.asarray(
        render_mesh(mesh.vertices, mesh.faces, size=100, azimuth=0, elevation=0, scale_bar=False)
    )
    rows, cols = np.nonzero(end.mean(axis=2) > 60)
    assert abs(np.ptp(cols) - np.ptp(rows)) <= 3


def test_histogram_picture():
    img = render_histogram([10.0, 12.0, 12.5, 30.0, float("nan")], label="d (µm)")
    assert img.size == (640, 320)
    assert render_histogram([], label="x").size == (640, 320)
    assert render_histogram([5.0, 5.0]).size == (640, 320)


def test_gallery_does_not_import_ui_libraries():
    import napari_microfossil.fossils.gallery as g

    src = Path(g.__file__).read_text(encoding="utf-8")
    assert not re.search(r"^\s*(import|from)\s+(matplotlib|napari|qtpy|PyQt5)", src, re.M)
