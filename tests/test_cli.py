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


# --- train: splits, cancel, LR finder, new classes ---------------------------------------


@pytest.fixture
def tiny_base(tmp_path, tiny_model):
    from napari_microfossil.model import save_model

    return save_model(tmp_path / "tiny.safetensors", tiny_model.network, tiny_model.spec)


def _train_args(sample_dir, base, out, *extra, labels=None):
    return [
        "train",
        "--image",
        str(sample_dir / "scan.tif"),
        "--labels",
        str(labels or sample_dir / "truth.tif"),
        "--base",
        str(base),
        "-o",
        str(out),
        "--epochs",
        "2",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "2",
        "--crop-size",
        "64",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]


def _spy_on_training(monkeypatch, stop_after_epoch=None):
    """Record what cmd_train hands to the engine; optionally press Ctrl-C after an epoch."""
    import napari_microfossil.training as training

    seen = {}
    real = training.iter_train

    def spy(train, val, spec, **kw):
        seen.update(train=train, val=val, spec=spec, config=kw["config"])
        gen = real(train, val, spec, **kw)
        try:
            while True:
                try:
                    p = next(gen)
                except StopIteration as stop:
                    return stop.value
                yield p
                if p.stage == "validate" and p.done == stop_after_epoch:
                    raise KeyboardInterrupt
        finally:
            gen.close()

    monkeypatch.setattr(training, "iter_train", spy)
    return seen


def test_train_never_validates_on_training_slices(sample_dir, tiny_base, tmp_path, monkeypatch):
    from napari_microfossil.model import read_spec

    seen = _spy_on_training(monkeypatch)
    out = tmp_path / "m.safetensors"
    asked = [3, 8, 13, 18, 23, 28, 33, 38]
    slices = "z:" + ",".join(map(str, asked))
    assert main(_train_args(sample_dir, tiny_base, out, "--slices", slices, "--epochs", "1")) == 0
    train, val = seen["train"], seen["val"]
    assert val is not None and len(val) == 2 and len(train) == 6
    assert set(train.sources).isdisjoint(val.sources)
    assert sorted(train.sources + val.sources, key=lambda s: int(s.split("=")[1])) == [
        f"scan.tif z={z}" for z in asked
    ]
    # Not only the names: no validation plane's pixels are among the training planes.
    for v in val.images:
        assert not any(np.array_equal(v, t) for t in train.images)
    prov = read_spec(out).provenance
    assert prov["train_slices"] == train.sources and prov["val_slices"] == val.sources


def test_train_validates_on_the_given_slices_only(sample_dir, tiny_base, tmp_path, monkeypatch):
    from napari_microfossil.model import read_spec

    seen = _spy_on_training(monkeypatch)
    out = tmp_path / "m.safetensors"
    args = _train_args(
        sample_dir, tiny_base, out, "--slices", "z:4,9", "--val-slices", "z:20;x:7", "--epochs", "1"
    )
    assert main(args) == 0
    train, val = seen["train"], seen["val"]
    assert train.sources == ["scan.tif z=4", "scan.tif z=9"]
    assert val.sources == ["scan.tif z=20", "scan.tif x=7"]
    prov = read_spec(out).provenance
    assert prov["val_slices"] == val.sources and "iou_fossil" in read_spec(out).metrics


def test_train_default_slices_leave_out_the_validation_ones(
    sample_dir, tiny_base, tmp_path, monkeypatch
):
    from napari_microfossil.io import read_labels, write_tiff

    lab = read_labels(sample_dir / "truth.tif").load()
    sparse = np.full_like(lab, 0)
    for z in (2, 6, 10):
        sparse[z] = lab[z]
    labels = write_tiff(tmp_path / "sparse.tif", sparse)
    seen = _spy_on_training(monkeypatch)
    out = tmp_path / "m.safetensors"
    args = _train_args(sample_dir, tiny_base, out, "--val-slices", "z:6", "--epochs", "1")
    assert main([*args[:4], str(labels), *args[5:]]) == 0
    assert seen["train"].sources == ["scan.tif z=2", "scan.tif z=10"]
    assert seen["val"].sources == ["scan.tif z=6"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--slices", "z:4,9", "--val-slices", "z:9,12"],
            "--val-slices: expected slices not in --slices, got z:9",
        ),
        (["--val-slices", "z:a"], "--val-slices: slice numbers must be integers"),
        (["--smooth", "-1"], "--smooth: expected a Gaussian sigma in voxels from 0 to 5"),
        (["--resolutions", "0.25,half,1"], "--resolutions: expected comma-separated scales"),
        (["--resolutions", "1,0.5"], "--resolutions: expected increasing scales in (0, 1]"),
        (["--resolutions", "0.5,2"], "--resolutions: expected increasing scales in (0, 1]"),
    ],
)
def test_train_bad_slices_and_smoothing(sample_dir, tiny_base, tmp_path, capsys, extra, message):
    out = tmp_path / "m.safetensors"
    assert main(_train_args(sample_dir, tiny_base, out, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_train_smoothing_and_augmentation_are_recorded(
    sample_dir, tiny_base, tmp_path, monkeypatch, capsys
):
    from napari_microfossil.model import read_spec

    seen = _spy_on_training(monkeypatch)
    out = tmp_path / "m.safetensors"
    args = _train_args(
        sample_dir, tiny_base, out, "--slices", "z:4,9", "--smooth", "0.8", "--epochs", "1"
    )
    assert main(args) == 0
    spec = read_spec(out)
    assert spec.normalisation.smooth == pytest.approx(0.8)  # segment will smooth alike
    assert main(["info", str(out)]) == 0
    assert "3D smoothing sigma 0.8 voxels" in capsys.readouterr().out
    assert spec.provenance["recipe"]["augment"] == "light"
    assert seen["config"].augment == "light"
    assert main([*args, "--augment", "full", "--overwrite"]) == 0
    assert read_spec(out).provenance["recipe"]["augment"] == "full"


def test_train_progressive_resolution(sample_dir, tiny_base, tmp_path, monkeypatch):
    import napari_microfossil.training as training
    from napari_microfossil.model import read_spec

    scales = []
    real = training.iter_train

    def spy(*a, **kw):
        result = yield from real(*a, **kw)
        scales.extend(h["scale"] for h in result.history)
        return result

    monkeypatch.setattr(training, "iter_train", spy)
    out = tmp_path / "m.safetensors"
    args = _train_args(
        sample_dir, tiny_base, out, "--slices", "z:4,9", "--epochs", "4", "--resolutions", "0.5,1"
    )
    assert main(args) == 0
    assert read_spec(out).provenance["recipe"]["resolutions"] == [0.5, 1.0]
    assert scales == [0.5, 0.5, 1.0, 1.0]


def test_segment_smoothing_option(sample_dir, tmp_path, capsys):
    out = tmp_path / "seg.tif"
    args = ["segment", str(sample_dir / "scan.tif"), "-o", str(out), "--device", "cpu", "--quiet"]
    assert main([*args, "--smooth", "9"]) == 2
    assert "--smooth: expected a Gaussian sigma" in capsys.readouterr().err
    assert main([*args, "--smooth", "soft"]) == 2
    assert "--smooth: expected a Gaussian sigma" in capsys.readouterr().err
    assert not out.exists()


def test_segment_auto_smoothing(sample_dir, tmp_path, capsys):
    from napari_microfossil.io import read_volume
    from napari_microfossil.model import load_model
    from napari_microfossil.segmentation import suggest_smoothing

    out = tmp_path / "seg.tif"
    scan = sample_dir / "scan.tif"
    assert (
        main(
            ["segment", str(scan), "-o", str(out), "--device", "cpu", "--quiet", "--smooth", "AUTO"]
        )
        == 0
    )
    said = capsys.readouterr().out
    found = suggest_smoothing(
        read_volume(scan).data, load_model("default", device="cpu"), device="cpu"
    )
    assert f"Smoothing {found.sigma:g} chosen" in said and "mean confidence" in said
    assert out.exists()


def test_train_cancelled_or_out_of_time_leaves_a_loadable_model(
    sample_dir, tiny_base, tmp_path, monkeypatch, capsys
):
    from napari_microfossil.model import load_model

    out = tmp_path / "out" / "m.safetensors"
    out.parent.mkdir()
    _spy_on_training(monkeypatch, stop_after_epoch=1)
    args = _train_args(sample_dir, tiny_base, out, "--slices", "z:5,15,25,35", "--epochs", "5")
    assert main(args) == 130
    assert "best model so far (epoch 1 of 1 run)" in capsys.readouterr().err
    assert load_model(out).spec.provenance["epochs_run"] == 1
    assert [p.name for p in out.parent.iterdir()] == ["m.safetensors"]  # no temp files

    monkeypatch.undo()
    timed = tmp_path / "out" / "t.safetensors"
    args = _train_args(sample_dir, tiny_base, timed, "--slices", "z:5,15,25,35", "--epochs", "1000")
    assert main([*args, "--time-limit", "1.5"]) == 0
    assert "(time-limit)" in capsys.readouterr().out
    assert load_model(timed).spec.provenance["epochs_run"] < 1000


def test_train_lr_find_uses_its_suggestion_unless_lr_is_given(
    sample_dir, tiny_base, tmp_path, monkeypatch, capsys
):
    from napari_microfossil.model import read_spec

    seen = _spy_on_training(monkeypatch)
    out = tmp_path / "m.safetensors"
    find = ["--slices", "z:5,15,25", "--epochs", "1", "--lr-find", "--lr-find-steps", "8"]
    assert main(_train_args(sample_dir, tiny_base, out, *find)) == 0
    text = capsys.readouterr().out
    assert "LR finder: 8 steps" in text and "training with it" in text
    found = read_spec(out).provenance["lr_find"]
    assert found["used"] is True
    assert seen["config"].lr == pytest.approx(found["suggestion"])
    assert 1e-6 <= found["suggestion"] <= 1.0

    out2 = tmp_path / "m2.safetensors"
    assert main(_train_args(sample_dir, tiny_base, out2, *find, "--lr", "0.0123")) == 0
    assert "training with --lr 0.0123 as given" in capsys.readouterr().out
    assert seen["config"].lr == 0.0123
    assert read_spec(out2).provenance["lr_find"]["used"] is False


def test_train_gives_new_label_ids_a_new_head(sample_dir, tiny_base, tmp_path, capsys):
    from napari_microfossil.model import load_model

    truth = tifffile.imread(sample_dir / "truth.tif")
    labels = truth.copy()
    labels[:20][truth[:20] == 2] = 3  # pores in the upper half become a new class
    path = tmp_path / "labels4.tif"
    tifffile.imwrite(path, labels)
    out = tmp_path / "m.safetensors"
    args = _train_args(sample_dir, tiny_base, out, "--slices", "z:5,15,25", labels=path)
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "model tiny.safetensors has classes ['background', 'fossil', 'pore']" in err
    assert "labels have 4 classes: new head for classes ['class_3']" in err
    assert err.count("new head") == 1
    model = load_model(out)
    assert model.spec.class_names == ("background", "fossil", "pore", "class_3")

    named = tmp_path / "named.safetensors"
    classes = ["--classes", "background,fossil,pore,ostracod"]
    named_args = _train_args(sample_dir, tiny_base, named, "--slices", "z:5,15,25", labels=path)
    assert main([*named_args, *classes]) == 0
    assert load_model(named).spec.class_names[3] == "ostracod"
    assert "new head for classes ['ostracod']" in capsys.readouterr().err
    _one_line_error(capsys, [*args, "--overwrite", "--classes", "background,fossil"], "--classes")


def test_train_from_imagenet_offline_is_a_one_line_error(sample_dir, tmp_path):
    # HF_HUB_OFFLINE makes "no network" certain and quick (no retries); the download
    # cache is an empty folder, so the weights cannot come from there either.
    import os
    import subprocess
    import sys

    out = tmp_path / "m.safetensors"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env["TORCH_HOME"] = str(tmp_path / "torch")
    args = _train_args(sample_dir, "imagenet", out, "--slices", "z:4,9")
    proc = subprocess.run(
        [sys.executable, "-m", "napari_microfossil.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.startswith("microfossil")]
    assert "getting ImageNet weights for resnet18" in err[0]
    assert "no network, and they are not in the download cache" in err[-1]
    assert "Traceback" not in proc.stderr and not out.exists()
