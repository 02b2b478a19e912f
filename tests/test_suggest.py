"""`microfossil suggest` and the batch rule: the next slices worth correcting."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil import cli
from napari_microfossil._progress import drain
from napari_microfossil.errors import InputError
from napari_microfossil.io import write_tiff
from napari_microfossil.review import ReviewState, next_slice_to_review, suggest_slices
from napari_microfossil.workflows.suggest import SuggestRequest, iter_suggest


def _confidence(per_slice, yx=(8, 8)):
    """A (Z, Y, X) uint8 confidence whose slice means are `per_slice`."""
    return np.broadcast_to(
        np.asarray(per_slice, np.uint8)[:, None, None], (len(per_slice), *yx)
    ).copy()


@pytest.fixture
def conf_file(tmp_path):
    per = np.full(96, 90, np.uint8)
    per[[34, 35, 36]] = 40  # one hard spot, three neighbours
    per[62] = 50
    per[88] = 55
    per[20] = 10  # reviewed already: never suggested, however unsure
    path = tmp_path / "confidence.tif"
    write_tiff(path, _confidence(per))
    return path


def test_first_pick_is_the_panels_next_slice():
    rng = np.random.default_rng(0)
    for _ in range(20):
        per = rng.integers(0, 100, 40).astype(float)
        done = set(rng.choice(40, 5, replace=False).tolist())
        panel = next_slice_to_review(ReviewState(n_slices=40, reviewed=set(done)), per)
        assert suggest_slices(per, done, 3)[0] == panel


def test_never_a_reviewed_slice_and_never_twice():
    rng = np.random.default_rng(1)
    for n in (1, 3, 7, 40):
        per = rng.random(30)
        done = {0, 5, 17}
        picks = suggest_slices(per, done, n)
        assert not set(picks) & done
        assert len(picks) == len(set(picks)) == min(n, 30 - len(done))


def test_a_batch_spreads_out_instead_of_taking_three_neighbours():
    per = np.full(96, 90.0)
    per[[34, 35, 36]] = 40
    per[62], per[88] = 50, 55
    assert suggest_slices(per, [20, 48, 76], 3) == [34, 62, 88]
    # with every slice one apart allowed, the neighbours of the hard spot come first
    assert suggest_slices(per, [20, 48, 76], 3, gap=1) == [34, 35, 36]


def test_everything_reviewed_suggests_nothing():
    assert suggest_slices(np.zeros(4), range(4), 2) == []


def test_cli_prints_the_spec_from_the_example_in_the_issue(conf_file, capsys):
    assert cli.main(["suggest", str(conf_file), "--reviewed", "z:20,48,76", "-n", "3"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "z:34,62,88"
    assert "3 of 96 z-slices reviewed" in err


def test_the_spec_feeds_reviewed_back(conf_file, capsys):
    """Round after round: the printed spec plus the old one is the next --reviewed."""
    cli.main(["suggest", str(conf_file), "--reviewed", "z:20,48,76", "-n", "3", "-q"])
    first = capsys.readouterr().out.strip().partition(":")[2]
    cli.main(["suggest", str(conf_file), "--reviewed", f"z:20,48,76,{first}", "-n", "3", "-q"])
    second = capsys.readouterr().out.strip().partition(":")[2].split(",")
    assert not set(second) & set(first.split(",")) and len(second) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reviewed", "q:1"], "--reviewed: expected e.g. 'z:10,40,70'"),
        (["--reviewed", "z:1,x"], "--reviewed: slice numbers must be integers"),
        (["--reviewed", "z:96"], "--reviewed: slice 96 is outside the confidence's 96 z-slices"),
        (["--reviewed", "z:1;y:2"], "--axis: --reviewed lists slices along y, z"),
        (["-n", "0"], "-n: expected an integer >= 1, got 0"),
    ],
)
def test_bad_requests_are_one_line(conf_file, capsys, args, message):
    assert cli.main(["suggest", str(conf_file), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_labels_instead_of_confidence_are_refused(tmp_path):
    path = tmp_path / "labels.tif"
    write_tiff(path, np.zeros((4, 8, 8), np.uint8), class_names=("a", "b"))
    with pytest.raises(InputError, match="is a label volume"):
        drain(iter_suggest(SuggestRequest(path)))


def test_along_y_reads_y_slices(tmp_path):
    conf = np.full((6, 10, 5), 90, np.uint8)
    conf[:, 7, :] = 5
    write_tiff(tmp_path / "c.tif", conf)
    result = drain(iter_suggest(SuggestRequest(tmp_path / "c.tif", reviewed="y:0", n=1)))
    assert result.spec == "y:7" and result.n_slices == 10
