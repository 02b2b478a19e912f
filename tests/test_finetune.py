"""Fine-tuning helpers: the validation split, the training planes, the output path, and
the training workflow on reviewed slices under a time limit and when closed early."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from napari_microfossil.errors import InputError
from napari_microfossil.training.finetune import (
    count_slices,
    default_output_path,
    describe_slices,
    prepare_slices,
    split_reviewed,
)
from napari_microfossil.workflows.train import TrainRequest, iter_find_lr, iter_run_training


def iter_finetune(image, labels, slices, *, output, **kw):
    """The panel's way into the workflow: arrays, reviewed slices, classes checked."""
    if "class_names" in kw:
        kw["classes"] = kw.pop("class_names")
    return iter_run_training(TrainRequest(image, labels, output, slices=slices, **kw))


def iter_finetune_lr_find(image, labels, slices, *, output, **kw):
    return iter_find_lr(TrainRequest(image, labels, output, slices=slices, **kw))


DAY = datetime.date(2025, 3, 7)


def test_describe_slices():
    assert describe_slices({}) == "no reviewed slices"
    assert describe_slices({"z": [4]}) == "1 reviewed slice (z: 1)"
    assert describe_slices({"y": [1, 2], "z": [3, 4, 5]}) == "5 reviewed slices (z: 3, y: 2)"


@pytest.mark.parametrize("n", [1, 2, 3])
def test_fewer_than_four_slices_all_train(n):
    train, val = split_reviewed({"z": list(range(n))})
    assert train == {"z": list(range(n))} and val == {}


def test_split_holds_out_a_quarter_deterministically():
    slices = {"z": [0, 5, 10, 15, 20, 25], "x": [3, 9]}
    train, val = split_reviewed(slices, seed=1)
    assert count_slices(val) == 2 and count_slices(train) == 6
    for axis in "zx":  # a partition of the input
        got = sorted(train.get(axis, []) + val.get(axis, []))
        assert got == slices[axis]
    assert split_reviewed(slices, seed=1) == (train, val)
    assert count_slices(split_reviewed({"z": [1, 2, 3, 4]})[1]) == 1  # four: one held out
    with pytest.raises(InputError, match="axes"):
        split_reviewed({"w": [1]})


def test_prepare_slices_normalises_and_checks_classes(tiny_spec):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 1000, (6, 40, 48)).astype(np.uint16)
    labels = rng.integers(0, 3, (6, 40, 48)).astype(np.uint8)
    train, val = prepare_slices(image, labels, {"z": [1], "x": [2]}, {"y": [5]}, tiny_spec)
    assert [im.shape for im in train.images] == [(40, 48), (6, 40)]
    np.testing.assert_array_equal(train.labels[1], labels[:, :, 2])
    assert val is not None and val.sources == ["volume y=5"]
    assert train.images[0].dtype == np.float32
    assert prepare_slices(image, labels, {"z": [1]}, {}, tiny_spec)[1] is None
    labels[3, 0, 0] = 7
    with pytest.raises(InputError, match="class id 7"):
        prepare_slices(image, labels, {"z": [3]}, None, tiny_spec)
    with pytest.raises(InputError, match="at least one"):
        prepare_slices(image, labels, {}, None, tiny_spec)
    with pytest.raises(InputError, match="shape"):
        prepare_slices(image, labels[:5], {"z": [1]}, None, tiny_spec)


def test_default_output_path(tmp_path):
    scan = tmp_path / "core A.ome.tif"
    path = default_output_path(scan, today=DAY)
    assert path == tmp_path / "core A_finetuned_20250307.safetensors"
    path.write_bytes(b"")
    second = default_output_path(scan, today=DAY)
    assert second == tmp_path / "core A_finetuned_20250307_2.safetensors"
    # A folder of slices, and an unknown scan (named after the layer).
    assert default_output_path(tmp_path / "slices", today=DAY).name == (
        "slices_finetuned_20250307.safetensors"
    )
    got = default_output_path(None, name="my scan/1", today=DAY, fallback_dir=tmp_path)
    assert got == tmp_path / "my_scan_1_finetuned_20250307.safetensors"


def test_default_output_path_folder_not_writable(tmp_path):
    # The scan's folder is gone (a path recorded on another machine): fall back.
    got = default_output_path(tmp_path / "gone" / "scan.tif", today=DAY, fallback_dir=tmp_path)
    assert got == tmp_path / "scan_finetuned_20250307.safetensors"


@pytest.fixture
def scan_and_base(tmp_path, tiny_model):
    from napari_microfossil.model import save_model
    from napari_microfossil.phantom import make_phantom

    ph = make_phantom((16, 64, 64), seed=2)
    base = save_model(tmp_path / "base.safetensors", tiny_model.network, tiny_model.spec)
    return ph, base


def test_iter_finetune_refuses_bad_input(tmp_path, scan_and_base):
    ph, base = scan_and_base
    out = tmp_path / "out.safetensors"
    with pytest.raises(InputError, match="no reviewed slices"):
        next(iter_finetune(ph.image, ph.labels, {}, output=out, base=base))
    with pytest.raises(InputError, match="safetensors"):
        next(iter_finetune(ph.image, ph.labels, {"z": [1]}, output=tmp_path / "m.pt", base=base))
    # Two class names for labels with ids up to 2: refused before any work.
    with pytest.raises(InputError, match="classes"):
        list(
            iter_finetune(
                ph.image, ph.labels, {"z": [1]}, output=out, base=base, class_names=("bg", "shell")
            )
        )
    assert not out.exists()


def test_iter_finetune_time_limit_counts_seconds(tmp_path, scan_and_base):
    from napari_microfossil._progress import drain
    from napari_microfossil.model import load_model
    from napari_microfossil.training import TrainConfig

    ph, base = scan_and_base
    out = tmp_path / "out.safetensors"
    cfg = TrainConfig(epochs=1000, steps_per_epoch=2, batch_size=1, crop_size=64, time_limit_s=1.0)
    seen = []
    result = drain(
        iter_finetune(
            ph.image,
            ph.labels,
            {"z": [2, 6, 9, 13]},
            output=out,
            base=base,
            config=cfg,
            device="cpu",
        ),
        seen.append,
    )
    assert result.stopped == "time-limit" and len(result.history) < 1000
    train = [p for p in seen if p.stage == "train"]
    assert train and all(p.total == 1 and 0 <= p.done <= 1 for p in train)
    assert set(train[0].info) == {"epoch", "loss", "lr"}
    assert count_slices(result.val_slices) == 1 and result.before is not None
    assert result.after == pytest.approx(result.spec.metrics["iou_fossil"])
    assert not hasattr(result, "network")
    assert load_model(out).spec.provenance["val_slices"] == [
        f"volume z={result.val_slices['z'][0]}"
    ]


def test_closing_early_leaves_no_file(tmp_path, scan_and_base):
    from napari_microfossil.training import TrainConfig

    ph, base = scan_and_base
    out = tmp_path / "out.safetensors"
    cfg = TrainConfig(epochs=1, steps_per_epoch=50, batch_size=1, crop_size=64)
    gen = iter_finetune(ph.image, ph.labels, {"z": [3]}, output=out, base=base, config=cfg)
    stages = [next(gen).stage for _ in range(6)]
    # one slice: no validation; the base is scored on the training slice instead
    scored = ["score base model"] * 2
    assert stages == ["load model", "load model", *scored, "train", "train"]
    gen.close()
    assert not out.exists() and not list(tmp_path.glob(".out.safetensors*"))


def test_lr_finder_sweeps_the_training_slices_only_and_leaves_the_base(
    tmp_path, scan_and_base, monkeypatch
):
    import napari_microfossil.training as training
    from napari_microfossil._progress import drain
    from napari_microfossil.training import TrainConfig

    ph, base = scan_and_base
    before = base.read_bytes()
    swept = []
    real = training.iter_lr_find

    def spy(train, spec, **kw):
        swept.extend(train.sources)
        return (yield from real(train, spec, **kw))

    monkeypatch.setattr(training, "iter_lr_find", spy)
    cfg = TrainConfig(batch_size=1, crop_size=64)
    slices = {"z": [2, 6, 9, 13]}
    stages = []
    found = drain(
        iter_finetune_lr_find(
            ph.image,
            ph.labels,
            slices,
            output=tmp_path / "unused.safetensors",
            base=base,
            config=cfg,
            device="cpu",
            lr_find_steps=10,
        ),
        lambda p: stages.append(p.stage),
    )
    train, val = split_reviewed(slices)
    assert swept == [f"volume z={z}" for z in train["z"]] and len(swept) == 3
    assert not set(swept) & {f"volume z={z}" for z in val["z"]}
    assert stages[:2] == ["load model", "load model"] and stages.count("lr-find") == len(found.lrs)
    assert found.suggestion == pytest.approx(max(found.min_loss_lr / 10, 1e-6))
    assert base.read_bytes() == before  # the base model file is never touched
    assert not (tmp_path / "unused.safetensors").exists()
    with pytest.raises(InputError, match="no reviewed slices"):
        next(iter_finetune_lr_find(ph.image, ph.labels, {}, output=tmp_path / "u.safetensors"))
