"""`microfossil fossils` with its defaults drops specks (issue 12): a first run should
not need to know --min-voxels."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_microfossil import cli
from napari_microfossil.fossils import DEFAULT_MIN_DIAMETER_VOXELS, DEFAULT_MIN_VOXELS
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


def test_the_default_limit_is_a_ball_five_voxels_across():
    assert DEFAULT_MIN_DIAMETER_VOXELS == 5 and DEFAULT_MIN_VOXELS == 66


def test_defaults_drop_specks_and_say_how_to_keep_them(labels, tmp_path, capsys):
    out = tmp_path / "f"
    assert cli.main(["fossils", str(labels), "-o", str(out), "--mesh", "none", "--quiet"]) == 0
    said = capsys.readouterr().out
    assert said.startswith("Found 2 fossil objects")
    assert "size limit 66 voxels (a ball 5 voxels, about 10 µm, across)" in said
    assert "--min-voxels 0 keeps them" in said
    assert all(int(r["voxels"]) >= 66 for r in _rows(out))


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
