import numpy as np
import pytest

from napari_microfossil.metrics import confusion_matrix, segmentation_scores


def test_scores_of_known_overlap():
    truth = np.zeros((10, 10), np.uint8)
    pred = np.zeros((10, 10), np.uint8)
    truth[:, :4] = 1  # 40 px
    pred[:, 2:6] = 1  # 40 px, 20 overlap
    s = segmentation_scores(pred, truth, ("bg", "fg"))
    assert s["iou_fg"] == pytest.approx(20 / 60)
    assert s["dice_fg"] == pytest.approx(2 * 20 / 80)
    assert s["pixel_error"] == pytest.approx(40 / 100)
    assert s["mean_iou_fg"] == pytest.approx(20 / 60)


def test_ignore_index_is_left_out():
    truth = np.array([0, 1, 255, 255])
    pred = np.array([0, 1, 1, 0])
    cm = confusion_matrix(pred, truth, 2)
    assert cm.sum() == 2
    assert segmentation_scores(pred, truth, ("a", "b"))["pixel_error"] == 0


def test_absent_class_has_no_score():
    s = segmentation_scores(np.zeros(5), np.zeros(5), ("bg", "fossil", "pore"))
    assert "iou_fossil" not in s
    assert np.isnan(s["mean_iou_fg"])
