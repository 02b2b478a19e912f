"""Tests for napari_microfossil.fossils.edit: delete, merge and re-measure, exact answers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil._progress import Progress, drain
from napari_microfossil.errors import InputError
from napari_microfossil.fossils import (
    FossilTable,
    delete_fossils,
    extract_fossils,
    measure_fossils,
    merge_fossils,
)

SPACING = (2.0, 1.0, 0.5)
SHAPE = (10, 12, 30)


@pytest.fixture
def boxes():
    """Three boxes: 1 (largest) and 2 are separated by one empty column; 3 is apart."""
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:6, 2:8, 2:10] = 1  # 4*6*8 = 192 voxels
    labels[2:6, 2:8, 11:16] = 1  # 4*6*5 = 120 voxels
    labels[7:9, 9:11, 20:24] = 1  # 2*2*4 = 16 voxels
    rng = np.random.default_rng(0)
    image = rng.integers(0, 1000, SHAPE).astype(np.uint16)
    return extract_fossils(labels, spacing=SPACING, image=image), image


def assert_rows_equal(got, want):
    assert set(got) == set(want)
    for key, value in want.items():
        if isinstance(value, float) and np.isnan(value):
            assert np.isnan(got[key]), key
        else:
            assert got[key] == value, key


def test_fixture_ids_by_size(boxes):
    table, _ = boxes
    assert table.ids == (1, 2, 3)
    assert [r["voxels"] for r in table.rows] == [192, 120, 16]


def test_delete_removes_rows_and_zeroes_voxels(boxes):
    table, _ = boxes
    before = table.instances.copy()
    out = delete_fossils(table, [2])
    assert out.ids == (1, 3)
    assert not np.any(out.instances == 2)
    np.testing.assert_array_equal(out.instances, np.where(before == 2, 0, before))
    assert out.rows[0] is table.rows[0] and out.rows[1] is table.rows[2]
    np.testing.assert_array_equal(table.instances, before)  # a copy was edited
    assert out.spacing == table.spacing and out.columns == table.columns


def test_delete_in_place_and_as_a_method(boxes):
    table, _ = boxes
    out = table.delete([3, 1], copy=False)
    assert out.instances is table.instances
    assert out.ids == (2,)
    assert np.unique(table.instances).tolist() == [0, 2]


def test_merge_two_boxes_measures_their_union(boxes):
    table, image = boxes
    out = merge_fossils(table, [2, 1], image=image)
    assert out.ids == (1, 3)
    assert np.unique(out.instances).tolist() == [0, 1, 3]
    row = out.row(1)
    assert row["voxels"] == 192 + 120
    assert row["volume_um3"] == (192 + 120) * 2.0 * 1.0 * 0.5
    assert (row["bbox_z0"], row["bbox_y0"], row["bbox_x0"]) == (2, 2, 2)
    assert (row["bbox_z1"], row["bbox_y1"], row["bbox_x1"]) == (6, 8, 16)
    assert row["mean_intensity"] == pytest.approx(image[out.instances == 1].mean())
    # Exactly what measuring the edited volume from scratch gives.
    fresh = {r["id"]: r for r in measure_fossils(out.instances, spacing=SPACING, image=image)}
    assert_rows_equal(row, fresh[1])
    assert out.row(3) is table.row(3)


def test_merge_of_touching_boxes_is_one_box(boxes):
    labels = np.zeros(SHAPE, np.uint8)
    labels[1:5, 1:5, 1:5] = 1
    table = extract_fossils(labels, spacing=SPACING, min_voxels=1)
    # Split the cube by hand into two touching halves, as a watershed would.
    inst = table.instances.copy()
    inst[1:5, 1:5, 3:5] = 2
    halves = FossilTable.from_instances(inst, spacing=SPACING)
    assert halves.ids == (1, 2)
    merged = halves.merge([1, 2])
    whole = table.row(1)
    for key in ("voxels", "volume_um3", "surface_area_um2", "length_um", "centroid_x_um"):
        assert merged.row(1)[key] == pytest.approx(whole[key], rel=1e-12), key
    np.testing.assert_array_equal(merged.instances, table.instances)


def test_merge_without_image_and_touching_border():
    labels = np.zeros((4, 4, 8), np.uint8)
    labels[0:2, 0:2, 0:2] = 1  # touches the border
    labels[0:2, 0:2, 4:6] = 1
    table = extract_fossils(labels)
    assert [r["touches_border"] for r in table.rows] == [True, True]
    out = table.merge([1, 2])
    assert out.row(1)["touches_border"] is True and np.isnan(out.row(1)["mean_intensity"])
    assert out.row(1)["voxels"] == 16


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.delete([]), "at least 1"),
        (lambda t: t.delete([9]), "unknown"),
        (lambda t: t.merge([1]), "at least 2"),
        (lambda t: t.merge([1, 1]), "at least 2"),
        (lambda t: t.merge([1, 7]), "unknown"),
        (lambda t: t.merge([1, 2], image=np.zeros((2, 2, 2))), "image"),
        (lambda t: t.delete(["a"]), "integers"),
        (lambda t: t.remeasure(ids=[42]), "unknown"),
    ],
)
def test_bad_edits_change_nothing(boxes, edit, match):
    table, _ = boxes
    before = table.instances.copy()
    with pytest.raises(InputError, match=match):
        edit(table)
    np.testing.assert_array_equal(table.instances, before)


def test_remeasure_all_after_painting(boxes):
    table, image = boxes
    inst = table.instances.copy()
    inst[inst == 3] = 0  # erased
    inst[0, 0, 25:28] = 5  # a new fossil painted
    inst[2:6, 2:8, 10] = 2  # fossil 2 grew by one column
    out = table.remeasure(instances=inst, image=image)
    assert out.ids == (1, 2, 5)
    assert out.row(2)["voxels"] == 120 + 24 and out.row(5)["voxels"] == 3
    want = measure_fossils(inst, spacing=SPACING, image=image)
    for got, w in zip(out.rows, want, strict=True):
        assert_rows_equal(got, w)


def test_remeasure_given_ids_keeps_the_other_rows(boxes):
    table, _ = boxes
    table.instances[2:6, 2:8, 10] = 2  # painted in place: the table's rows are stale
    table.instances[table.instances == 3] = 0
    records = []
    out = drain(table.iter_remeasure(ids=[2, 3]), records.append)
    assert all(isinstance(p, Progress) and p.stage == "measure" for p in records)
    assert (records[0].done, records[-1].done, records[-1].total) == (0, 2, 2)
    assert out.ids == (1, 2)
    assert out.row(1) is table.row(1)  # not asked for: kept
    assert out.row(2)["voxels"] == 144 and out.row(2)["bbox_x1"] == 16
    assert out.instances is table.instances
