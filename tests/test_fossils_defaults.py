"""`microfossil fossils` with its defaults drops specks (issue 12): a first run should
not need to know --min-voxels."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_microfossil import cli
from napari_microfossil.cli import build_parser
from napari_microfossil.fossils import (
    DEFAULT_MIN_DIAMETER_VOXELS,
    DEFAULT_MIN_VOXELS,
    DEFAULT_SPLIT,
    extract_fossils,
)
from napari_microfossil.io import write_tiff


@pytest.fixture
def labels(tmp_path):
    lab = np.zeros((24, 48, 48), np.uint8)
    z, y, x = np.ogrid[:24, :48, :48]
    for c in ((8, 12, 12), (14, 34, 30)):  # two fossils, radius 6: about 900 voxels
        lab[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= 36] = 1
    rng = np.random.default_rng(0)
    for _ in range(12):  # specks of 1-8 voxels
        a, b, c = rng.integers(0, 22), rng.integers(0, 46), rng.integers(26, 46) % 46
        lab[a : a + 2, b : b + 2, c : c + 2] = 1 if lab[a, b, c] == 0 else lab[a, b, c]
    return write_tiff(tmp_path / "labels.tif", lab, spacing=2.0, class_names=("bg", "fossil"))


def _rows(out):
    with open(out / "fossils.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_default_limit_is_a_ball_eight_voxels_across():
    # 8 voxels across: docs/fossils_defaults.md (66 voxels left most of the network's specks)
    assert DEFAULT_MIN_DIAMETER_VOXELS == 8 and DEFAULT_MIN_VOXELS == 269
    assert DEFAULT_SPLIT is True


def test_defaults_drop_specks_and_say_how_to_keep_them(labels, tmp_path, capsys):
    out = tmp_path / "f"
    assert cli.main(["fossils", str(labels), "-o", str(out), "--mesh", "none", "--quiet"]) == 0
    said = capsys.readouterr().out
    assert said.startswith("Found 2 fossil objects")
    assert "size limit 269 voxels (a ball 8 voxels, about 16 µm, across)" in said
    assert "--min-voxels 0 keeps them" in said and "--min-volume UM3 sets another" in said
    assert "--no-split keeps them as one object" in said
    assert all(int(r["voxels"]) >= DEFAULT_MIN_VOXELS for r in _rows(out))


def test_min_voxels_0_keeps_every_speck(labels, tmp_path, capsys):
    out = tmp_path / "f"
    argv = ["fossils", str(labels), "-o", str(out), "--mesh", "none", "--quiet"]
    assert cli.main([*argv, "--min-voxels", "0"]) == 0
    said = capsys.readouterr().out
    assert len(_rows(out)) > 2 and "size limit" not in said


def test_a_volume_limit_replaces_the_default(labels, tmp_path, capsys):
    out = tmp_path / "f"
    argv = ["fossils", str(labels), "-o", str(out), "--mesh", "none", "--quiet"]
    assert cli.main([*argv, "--min-volume", "1"]) == 0  # 1 µm³: less than a voxel (8 µm³)
    assert len(_rows(out)) > 2 and "size limit" not in capsys.readouterr().out


def _touching_balls(r=8, gap=15):
    """Two balls of radius `r` voxels whose centres are `gap` voxels apart (a neck)."""
    lab = np.zeros((2 * r + 5, 2 * r + 5, 2 * r + gap + 5), np.uint8)
    z, y, x = np.ogrid[: lab.shape[0], : lab.shape[1], : lab.shape[2]]
    c = r + 2
    for cx in (c, c + gap):
        lab[(z - c) ** 2 + (y - c) ** 2 + (x - cx) ** 2 <= r * r] = 1
    return lab


def test_defaults_separate_two_touching_balls(tmp_path, capsys):
    lab = _touching_balls()
    assert extract_fossils(lab).instances.max() == 1  # one connected body
    path = write_tiff(tmp_path / "two.tif", lab, spacing=3.0, class_names=("bg", "fossil"))
    out = tmp_path / "f"
    assert cli.main(["fossils", str(path), "-o", str(out), "--mesh", "none", "--quiet"]) == 0
    rows = _rows(out)
    assert len(rows) == 2 and capsys.readouterr().out.startswith("Found 2 fossil objects")
    # each half: about one ball (2145 voxels), not a sliver of the other
    assert all(1800 < int(r["voxels"]) < 2600 for r in rows)


def test_no_split_keeps_touching_balls_as_one(tmp_path, capsys):
    path = write_tiff(tmp_path / "two.tif", _touching_balls(), class_names=("bg", "fossil"))
    out = tmp_path / "f"
    argv = ["fossils", str(path), "-o", str(out), "--mesh", "none", "--quiet", "--no-split"]
    assert cli.main(argv) == 0
    said = capsys.readouterr().out
    assert len(_rows(out)) == 1 and "--no-split keeps" not in said


def test_demo_flags_still_work(labels, tmp_path):
    # `make demo` passes --split and --min-voxels explicitly
    out = tmp_path / "f"
    argv = ["fossils", str(labels), "-o", str(out), "--mesh", "none", "--quiet"]
    assert cli.main([*argv, "--min-voxels", "200", "--split"]) == 0
    assert len(_rows(out)) == 2


def test_cli_parser_defaults_are_the_engine_defaults():
    args = build_parser().parse_args(["fossils", "l.tif", "-o", "out"])
    assert args.split is DEFAULT_SPLIT and args.min_voxels is None and args.min_volume is None


def test_requests_carry_the_front_ends_neck_ratio(tmp_path):
    from napari_microfossil.errors import InputError
    from napari_microfossil.fossils import DEFAULT_SPLIT_NECK_RATIO
    from napari_microfossil.workflows.fossils import ExtractRequest, FossilsRequest

    lab = _touching_balls()
    assert ExtractRequest(lab).split_neck_ratio == DEFAULT_SPLIT_NECK_RATIO == 0.6
    with pytest.raises(InputError, match="split_neck_ratio: expected a number between 0 and 1"):
        ExtractRequest(lab, split_neck_ratio=1.5)
    path = write_tiff(tmp_path / "l.tif", lab, class_names=("bg", "fossil"))
    with pytest.raises(InputError, match="split_neck_ratio"):
        FossilsRequest(path, tmp_path / "o", split_neck_ratio=0)
