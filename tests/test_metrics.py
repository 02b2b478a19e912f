import numpy as np
import pytest

from napari_microfossil.metrics import (
    confusion_matrix,
    object_matches,
    object_scores,
    segmentation_scores,
)


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


def test_objects_match_one_to_one_at_half_overlap():
    truth = np.zeros((4, 20, 20), np.uint16)
    truth[:, 0:4, 0:4] = 1  # found exactly
    truth[:, 10:14, 0:4] = 2  # found shifted by a quarter: IoU 3/5
    truth[:, 0:4, 10:12] = 3  # and 4 (touching): one found object covers both
    truth[:, 0:4, 12:14] = 4
    truth[:, 16:20, 16:20] = 7  # missed; ids need not be consecutive
    pred = np.zeros_like(truth)
    pred[:, 0:4, 0:4] = 5
    pred[:, 11:15, 0:4] = 1
    pred[:, 0:4, 10:14] = 2  # IoU 1/2 with 3 and with 4: matches one of them only
    pred[:, 10:13, 16:19] = 9  # beside 7, not on it
    matched, n_pred, n_true = object_matches(pred, truth)
    assert (matched, n_pred, n_true) == (3, 4, 5)
    assert object_scores(matched, n_pred, n_true) == pytest.approx((0.75, 0.6, 2 * 0.45 / 1.35))
    assert object_matches(pred, truth, iou=0.7)[0] == 1  # only the exact one
    assert object_scores(0, 0, 5) == (0.0, 0.0, 0.0)


def test_score_script_reports_objects(tmp_path, capsys):
    import runpy
    import sys
    from pathlib import Path

    from napari_microfossil.io import write_tiff

    truth = np.zeros((4, 16, 16), np.uint8)
    truth[:, 2:8, 2:8] = 1
    inst = (truth == 1).astype(np.uint16)
    paths = [write_tiff(tmp_path / f"{n}.tif", a) for n, a in (("l", truth), ("i", inst))]
    script = Path(__file__).resolve().parents[1] / "scripts" / "score.py"
    argv = [str(script), str(paths[0]), str(paths[0]), "--instances", str(paths[1]), "x.tif"]
    sys_argv, sys.argv = sys.argv, argv
    try:
        with pytest.raises(SystemExit) as bad:
            runpy.run_path(str(script), run_name="__main__")
        assert bad.value.code == 2 and "x.tif" in capsys.readouterr().err
        sys.argv[-1] = str(paths[1])
        with pytest.raises(SystemExit) as good:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = sys_argv
    assert good.value.code == 0
    out = capsys.readouterr().out
    assert "Fossil objects: 1 of the 1 true ones found" in out and "F1 1.00" in out
