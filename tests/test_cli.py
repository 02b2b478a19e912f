"""The command line end to end, on a small phantom the default model never saw."""

import csv
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_microfossil.cli import main
from napari_microfossil.io import read_labels, read_volume
from napari_microfossil.metrics import segmentation_scores

SHAPE = ("40", "160", "160")
UNSEEN_SEED = "3001"  # training seeds are 1000+, validation 2000+


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sample")
    assert main(["sample", str(d), "--seed", UNSEEN_SEED, "--shape", *SHAPE]) == 0
    return d


@pytest.fixture(scope="module")
def segmented(sample_dir):
    out = sample_dir / "labels.tif"
    conf = sample_dir / "conf.tif"
    assert (
        main(
            [
                "segment",
                str(sample_dir / "scan.tif"),
                "-o",
                str(out),
                "--confidence",
                str(conf),
                "--quiet",
            ]
        )
        == 0
    )
    return out, conf


def test_sample_writes_scan_and_truth_with_voxel_size(sample_dir):
    scan = read_volume(sample_dir / "scan.tif")
    truth = read_labels(sample_dir / "truth.tif")
    assert scan.data.shape == (40, 160, 160)
    assert scan.data.dtype == np.uint16
    assert truth.data.dtype == np.uint8
    assert scan.spacing_source == "metadata"
    assert scan.spacing == truth.spacing
    assert truth.class_names == ("background", "fossil", "pore")


def test_segment_default_model_reaches_fossil_iou_on_unseen_seed(sample_dir, segmented):
    out, conf = segmented
    labels = read_labels(out)
    truth = read_labels(sample_dir / "truth.tif")
    assert labels.class_names == ("background", "fossil", "pore")
    assert labels.spacing == pytest.approx(truth.spacing)
    scores = segmentation_scores(labels.load(), truth.load(), truth.class_names)
    assert scores["iou_fossil"] >= 0.85, scores
    c = tifffile.imread(conf)
    assert c.shape == labels.data.shape
    assert 0 <= c.min() and c.max() <= 100


def test_fossils_table_meshes_and_crops(sample_dir, segmented, capsys):
    out, _ = segmented
    fdir = sample_dir / "fossils"
    code = main(
        [
            "fossils",
            str(out),
            "-o",
            str(fdir),
            "--image",
            str(sample_dir / "scan.tif"),
            "--min-voxels",
            "100",
            "--crops",
            "--quiet",
        ]
    )
    assert code == 0
    with open(fdir / "fossils.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    inst = tifffile.imread(fdir / "instances.tif")
    assert len(rows) == int(inst.max()) >= 1
    assert sorted(int(r["id"]) for r in rows) == sorted(np.unique(inst[inst > 0]).tolist())
    assert all(int(r["voxels"]) >= 100 for r in rows)
    assert len(list((fdir / "meshes").glob("fossil_*.stl"))) == len(rows)
    assert len(list((fdir / "crops").glob("fossil_*.tif"))) == len(rows)
    assert "fossils.csv" in capsys.readouterr().out


def test_info_on_model_and_scan(sample_dir, capsys):
    assert main(["info", "default"]) == 0
    text = capsys.readouterr().out
    assert "fossil" in text and "resnet18" in text
    assert main(["info", str(sample_dir / "scan.tif")]) == 0
    text = capsys.readouterr().out
    assert "40, 160, 160" in text and "uint16" in text


def _one_line_error(capsys, argv, *needles):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def test_bad_input_gives_one_line_and_exit_2(tmp_path, sample_dir, segmented, capsys):
    _one_line_error(
        capsys,
        ["segment", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "o.tif")],
        "missing.tif",
    )
    _one_line_error(
        capsys, ["segment", str(sample_dir / "scan.tif"), "-o", str(segmented[0])], "--overwrite"
    )
    _one_line_error(
        capsys,
        ["segment", str(sample_dir / "scan.tif"), "-o", str(tmp_path / "o.tif"), "--axes", "q"],
        "axes",
    )
    _one_line_error(
        capsys,
        [
            "segment",
            str(sample_dir / "scan.tif"),
            "-o",
            str(tmp_path / "o.tif"),
            "--model",
            str(tmp_path / "m.safetensors"),
        ],
        "m.safetensors",
    )
    _one_line_error(
        capsys,
        ["fossils", str(segmented[0]), "-o", str(tmp_path / "f"), "--class", "fosil"],
        "fossil",
    )
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"not a tiff at all" * 10)
    _one_line_error(capsys, ["info", str(garbage)], "garbage.tif")
    assert not (tmp_path / "o.tif").exists()
    assert not (tmp_path / "f").exists()


def test_argparse_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["segment"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "required" in err


def test_train_fine_tunes_and_writes_a_model(sample_dir, tmp_path, capsys):
    out = tmp_path / "tuned.safetensors"
    code = main(
        [
            "train",
            "--image",
            str(sample_dir / "scan.tif"),
            "--labels",
            str(sample_dir / "truth.tif"),
            "--slices",
            "z:5,15,25,35",
            "-o",
            str(out),
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--batch-size",
            "2",
            "--crop-size",
            "96",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code == 0
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "train_slices" in text and "z=5" in text


def test_console_script_is_installed():
    r = subprocess.run(
        [sys.executable, "-m", "napari_microfossil.cli", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0
    for cmd in ("sample", "segment", "fossils", "train", "info"):
        assert cmd in r.stdout
