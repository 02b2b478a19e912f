"""Placing sparse label slices on their scan's planes (io.place, io.slices numbers)."""

import numpy as np
import pytest

from napari_microfossil.errors import InputError
from napari_microfossil.io.place import line_up, line_up_evenly, place
from napari_microfossil.io.slices import folder_slice_numbers, slice_numbers

SANDSTONE_LABELS = [0, 50, 100, 150, 180, 200, 250, 300, 350, 400]
SANDSTONE_SCAN = [0, 50, 100, 150, 200, 250, 300, 350, 400]


@pytest.mark.parametrize(
    ("names", "numbers"),
    [
        (["Sandstone_Versa0150.tif", "Sandstone_Versa0180.tif"], [150, 180]),
        (["slice_0007_mask.png", "slice_0012_mask.png"], [7, 12]),  # the last digits count
        (["a.tif", "b3.tif"], None),  # a name without a number
        (["x_10.tif", "y_010.tif"], None),  # two files, one number
    ],
)
def test_slice_numbers_come_from_the_file_names(names, numbers):
    assert slice_numbers(names) == numbers


def test_folder_slice_numbers_follow_the_folders_order(tmp_path):
    import tifffile

    for n in (100, 5, 20):
        tifffile.imwrite(tmp_path / f"lab_{n:04d}.tif", np.zeros((4, 4), np.uint8))
    assert folder_slice_numbers(tmp_path) == [5, 20, 100]
    assert folder_slice_numbers(tmp_path / "lab_0005.tif") is None  # not a folder


def test_the_sandstone_layout_lines_up_by_number_and_leaves_out_180():
    """Labels at z = 0, 50, ..., 400 and 180; scan slices at the same z but 180."""
    p = line_up(SANDSTONE_LABELS, SANDSTONE_SCAN)
    assert p.planes == tuple(range(9))
    assert p.slices == (0, 1, 2, 3, 5, 6, 7, 8, 9)  # stack index 4 (z = 180) is out
    assert p.numbers == tuple(SANDSTONE_SCAN)
    assert p.left_out == (180,)
    text = p.describe("'images'")
    assert "9 of 10 label slices" in text and "9 planes of 'images'" in text
    assert text.endswith("numbered so): 180")


def test_sparse_labels_on_a_full_scan_go_to_their_planes():
    p = line_up([0, 50, 100], range(101))
    assert p.planes == (0, 50, 100) and p.left_out == () and p.n_planes == 101


def test_no_number_in_common_is_refused_with_what_to_do():
    with pytest.raises(InputError, match="no number in common") as err:
        line_up([500, 550], SANDSTONE_SCAN)
    assert "500, 550" in str(err.value) and "step" in str(err.value)


def test_line_up_evenly_and_its_refusals():
    p = line_up_evenly(3, 9, first=2, step=3)
    assert p.planes == (2, 5, 8) and p.slices == (0, 1, 2) and "every 3 planes" in p.how
    with pytest.raises(InputError, match=r"plane 10, but the scan has 9 \(0..8\)"):
        line_up_evenly(3, 9, first=2, step=4)
    with pytest.raises(InputError, match="step >= 1"):
        line_up_evenly(3, 9, first=0, step=0)


def test_place_puts_each_slice_at_its_plane_and_zeros_elsewhere():
    rng = np.random.default_rng(0)
    stack = rng.integers(1, 4, size=(3, 5, 6)).astype(np.uint16)
    p = line_up([10, 30, 99], [0, 10, 20, 30])
    out = place(stack, p)
    assert out.shape == (4, 5, 6) and out.dtype == np.uint16
    np.testing.assert_array_equal(out[1], stack[0])
    np.testing.assert_array_equal(out[3], stack[1])
    assert not out[0].any() and not out[2].any()
    assert p.left_out == (99,)
    with pytest.raises(InputError, match="GiB"):
        place(stack, p, max_bytes=100)
