"""Tests for napari_microfossil.fossils: instances and measurements of analytic shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_microfossil._progress import Progress
from napari_microfossil.errors import InputError
from napari_microfossil.fossils import (
    FOSSIL_COLUMNS,
    FossilTable,
    extract_fossils,
    iter_extract_fossils,
    measure_fossils,
)


def ellipsoid(shape, centre, semi_axes, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Voxels whose centres lie in an axis-aligned ellipsoid (centre in voxels, axes in µm)."""
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    d = sum(
        ((g - c) * s / a) ** 2
        for g, c, s, a in zip((z, y, x), centre, spacing, semi_axes, strict=True)
    )
    return d <= 1.0


def ball(shape, centre, r, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    return ellipsoid(shape, centre, (r, r, r), spacing)


def test_ball_measurements():
    r = 10.0
    mask = ball((26, 26, 26), (12.5, 12.5, 12.5), r)
    table = extract_fossils(mask.astype(np.uint8))
    assert len(table) == 1 and table.ids == (1,)
    row = table.rows[0]
    assert set(row) == set(FOSSIL_COLUMNS) == set(table.columns)
    assert row["voxels"] == mask.sum()
    assert row["volume_um3"] == mask.sum()
    assert row["equivalent_diameter_um"] == pytest.approx(2 * r, rel=0.03)
    assert row["sphericity"] == pytest.approx(1.0, abs=0.1)
    assert row["surface_area_um2"] == pytest.approx(4 * math.pi * r**2, rel=0.08)
    for key in ("length_um", "width_um", "thickness_um"):
        assert row[key] == pytest.approx(2 * r, rel=0.05)
    assert math.isnan(row["mean_intensity"])
    assert row["touches_border"] is False
    assert table.instances.dtype == np.uint16
    np.testing.assert_array_equal(table.instances, mask)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0)])
def test_ellipsoid_principal_lengths(spacing):
    semi = (8.0, 20.0, 12.0)  # z, y, x in µm
    shape = tuple(int(2 * a / s + 6) for a, s in zip(semi, spacing, strict=True))
    centre = tuple((n - 1) / 2 for n in shape)
    mask = ellipsoid(shape, centre, semi, spacing)
    row = extract_fossils(mask.astype(np.uint8), spacing=spacing).rows[0]
    assert row["length_um"] == pytest.approx(2 * 20.0, rel=0.05)
    assert row["width_um"] == pytest.approx(2 * 12.0, rel=0.05)
    assert row["thickness_um"] == pytest.approx(2 * 8.0, rel=0.05)
    assert row["volume_um3"] == pytest.approx(mask.sum() * np.prod(spacing))
    assert row["volume_um3"] == pytest.approx(4 / 3 * math.pi * np.prod(semi), rel=0.03)


def test_hollow_shell_is_filled():
    solid = ball((24, 24, 24), (11.5, 11.5, 11.5), 9.0)
    inner = ball((24, 24, 24), (11.5, 11.5, 11.5), 6.0)
    labels = (solid & ~inner).astype(np.uint8)
    filled = extract_fossils(labels)
    assert filled.rows[0]["voxels"] == solid.sum()
    np.testing.assert_array_equal(filled.instances > 0, solid)
    shell = extract_fossils(labels, fill_cavities=False)
    assert shell.rows[0]["voxels"] == labels.sum()


def test_filling_does_not_steal_another_fossil():
    solid = ball((24, 24, 24), (11.5, 11.5, 11.5), 10.0)
    inner = ball((24, 24, 24), (11.5, 11.5, 11.5), 6.0)
    labels = (solid & ~inner).astype(np.uint8)
    labels[10:13, 10:13, 10:13] = 1  # a small fossil floating in the chamber
    table = extract_fossils(labels)
    assert [r["voxels"] for r in table.rows] == [solid.sum() - 27, 27]
    assert np.all(table.instances[10:13, 10:13, 10:13] == 2)


def test_min_voxels_and_min_volume_drop_specks():
    labels = np.zeros((20, 20, 20), dtype=np.uint8)
    labels[2:8, 2:8, 2:8] = 1  # 216 voxels
    labels[15, 15, 15] = 1
    labels[12:14, 2:4, 15] = 1  # 4 voxels
    assert len(extract_fossils(labels)) == 3
    table = extract_fossils(labels, min_voxels=5)
    assert [r["voxels"] for r in table.rows] == [216]
    assert table.instances[15, 15, 15] == 0 and table.instances[12, 2, 15] == 0
    # 2 µm³ voxels: 8 µm³ keeps the 4-voxel speck, 8.1 µm³ does not.
    sp = (2.0, 1.0, 1.0)
    assert len(extract_fossils(labels, spacing=sp, min_volume_um3=8.0)) == 2
    assert len(extract_fossils(labels, spacing=sp, min_volume_um3=8.1)) == 1


def test_connectivity_diagonal_voxels():
    labels = np.zeros((5, 5, 15), dtype=np.uint8)
    labels[1, 1, 1] = labels[2, 2, 2] = 1  # corner-touching
    labels[1, 1, 6] = labels[1, 2, 6] = 1  # face-touching
    labels[1, 1, 11] = labels[2, 2, 11] = 1  # edge-touching
    assert len(extract_fossils(labels, connectivity=26)) == 3
    assert len(extract_fossils(labels, connectivity=18)) == 4
    assert len(extract_fossils(labels, connectivity=6)) == 5


def test_boxes_bbox_centroid_order_and_border():
    labels = np.zeros((10, 12, 14), dtype=np.uint8)
    labels[1:4, 2:6, 3:9] = 1  # 72 voxels
    labels[7:10, 9:12, 0:2] = 1  # 18 voxels, touches three faces
    labels[5:7, 5:7, 10:12] = 2  # other class: ignored
    table = extract_fossils(labels, spacing=(2.0, 0.5, 0.25))
    big, small = table.rows
    assert (big["id"], small["id"]) == (1, 2)  # largest first
    assert [big[f"bbox_{a}"] for a in ("z0", "y0", "x0", "z1", "y1", "x1")] == [1, 2, 3, 4, 6, 9]
    assert [small[f"bbox_{a}"] for a in ("z0", "y0", "x0", "z1", "y1", "x1")] == [
        7,
        9,
        0,
        10,
        12,
        2,
    ]
    assert (big["centroid_z"], big["centroid_y"], big["centroid_x"]) == (2.0, 3.5, 5.5)
    assert (big["centroid_z_um"], big["centroid_y_um"], big["centroid_x_um"]) == (4.0, 1.75, 1.375)
    assert big["voxels"] == 72 and big["volume_um3"] == pytest.approx(72 * 0.25)
    assert big["touches_border"] is False and small["touches_border"] is True
    assert np.all(table.instances[labels == 2] == 0)
    pores = extract_fossils(labels, class_id=2)
    assert pores.rows[0]["voxels"] == 8


def test_mean_intensity():
    labels = np.zeros((6, 6, 6), dtype=np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    image = np.arange(216, dtype=np.uint16).reshape(6, 6, 6)
    row = extract_fossils(labels, image=image).rows[0]
    assert row["mean_intensity"] == pytest.approx(image[1:3, 1:3, 1:3].mean())


def test_split_two_balls_joined_by_a_neck():
    shape = (24, 24, 44)
    a = ball(shape, (11.5, 11.5, 12.0), 8.0)
    b = ball(shape, (11.5, 11.5, 26.0), 8.0)  # centres 14 apart: a neck of radius ~3.9
    labels = (a | b).astype(np.uint8)
    assert len(extract_fossils(labels)) == 1
    table = extract_fossils(labels, split=True)
    assert len(table) == 2
    assert sum(r["voxels"] for r in table.rows) == labels.sum()
    xs = sorted(r["centroid_x"] for r in table.rows)
    assert xs[0] == pytest.approx(12.0, abs=1.0) and xs[1] == pytest.approx(26.0, abs=1.0)
    # Seeds closer than the given distance are kept together.
    assert len(extract_fossils(labels, split=True, split_min_distance_um=20.0)) == 1


def test_split_anisotropic():
    sp = (2.0, 1.0, 1.0)
    shape = (12, 24, 44)
    labels = ball(shape, (5.5, 11.5, 12.0), 8.0, sp) | ball(shape, (5.5, 11.5, 26.0), 8.0, sp)
    assert len(extract_fossils(labels.astype(np.uint8), split=True, spacing=sp)) == 2


def test_split_keeps_chambers_of_one_foraminifer_together():
    # A chain of overlapping chambers: the joints are wide, so it stays one fossil.
    shape = (22, 22, 44)
    chambers = [ball(shape, (10.5, 10.5, x), r) for x, r in ((10.0, 6.0), (18.0, 7.0), (27.0, 8.0))]
    labels = np.logical_or.reduce(chambers).astype(np.uint8)
    assert len(extract_fossils(labels, split=True)) == 1
    # A stricter-than-default neck ratio does not change that; a laxer one splits.
    assert len(extract_fossils(labels, split=True, split_neck_ratio=0.5)) == 1
    assert len(extract_fossils(labels, split=True, split_neck_ratio=0.95)) > 1


@pytest.mark.parametrize(
    "semi",
    [(9.0, 9.0, 9.0), (6.0, 8.0, 22.0), (5.0, 14.0, 13.0)],
    ids=["ball", "prolate", "oblate"],
)
def test_split_does_not_oversplit_single_bodies(semi):
    shape = tuple(int(2 * a + 5) for a in semi)
    centre = tuple((n - 1) / 2 for n in shape)
    labels = ellipsoid(shape, centre, semi).astype(np.uint8)
    assert len(extract_fossils(labels, split=True)) == 1


def test_progress_and_generator_result():
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    labels[6:9, 6:9, 6:9] = 1
    gen = iter_extract_fossils(labels)
    records = []
    while True:
        try:
            records.append(next(gen))
        except StopIteration as stop:
            table = stop.value
            break
    assert all(isinstance(p, Progress) for p in records)
    assert {p.stage for p in records} == {"label", "measure"}
    measure = [p for p in records if p.stage == "measure"]
    assert [p.done for p in measure] == [0, 1, 2] and measure[-1].total == 2
    assert isinstance(table, FossilTable) and len(table) == 2


def test_measure_after_edits_keeps_ids():
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    labels[6:9, 6:9, 6:9] = 1
    labels[1:3, 6:9, 6:9] = 1
    table = extract_fossils(labels)
    inst = table.instances.copy()
    inst[inst == 2] = 3  # merge fossil 2 into 3, leaving a gap at 2
    rows = measure_fossils(inst, spacing=(1.0, 1.0, 1.0))
    assert [r["id"] for r in rows] == [1, 3]
    assert rows[1]["voxels"] == 18 + 8
    edited = FossilTable.from_instances(inst, spacing=(1.0, 1.0, 1.0))
    assert edited.ids == (1, 3) and edited.row(3)["voxels"] == 26
    with pytest.raises(InputError, match="fossil id"):
        edited.row(2)


def test_empty_labels_give_empty_table():
    table = extract_fossils(np.zeros((4, 4, 4), dtype=np.uint8))
    assert len(table) == 0 and table.rows == ()
    assert not table.instances.any()


def test_bad_inputs():
    good = np.zeros((4, 4, 4), dtype=np.uint8)
    with pytest.raises(InputError, match=r"labels.*3D.*got shape \(4, 4\)"):
        extract_fossils(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(InputError, match=r"labels.*float"):
        extract_fossils(good.astype(np.float32))
    with pytest.raises(InputError, match="spacing"):
        extract_fossils(good, spacing=(1.0, -1.0, 1.0))
    with pytest.raises(InputError, match="spacing"):
        extract_fossils(good, spacing=(1.0, 1.0))
    with pytest.raises(InputError, match="connectivity"):
        extract_fossils(good, connectivity=8)
    with pytest.raises(InputError, match="image"):
        extract_fossils(good, image=np.zeros((4, 4, 5)))
    with pytest.raises(InputError, match="min_voxels"):
        extract_fossils(good, min_voxels=-1)
    with pytest.raises(InputError, match="split_neck_ratio"):
        extract_fossils(good, split=True, split_neck_ratio=1.5)
    with pytest.raises(InputError, match="min_volume_um3"):
        extract_fossils(good, min_volume_um3=float("nan"))
