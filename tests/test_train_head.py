"""The class head fitted in closed form, the CPU-time budget and training on every
reviewed slice."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil._progress import drain
from napari_microfossil.errors import InputError
from napari_microfossil.training import SliceSet, TrainConfig, decoder_features, fit_head
from napari_microfossil.workflows.train import TrainRequest, iter_run_training


def _plane_and_labels(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    image = np.where((yy - 32) ** 2 + (xx - 32) ** 2 < 200, 1.0, -1.0)
    image = (image + 0.2 * rng.standard_normal((64, 64))).astype(np.float32)
    labels = (image > 0).astype(np.uint8)
    labels[:4] = 255  # unlabelled rows are skipped
    return image, labels


def test_fit_head_sets_the_kernel_the_regression_found(tiny_model):
    import torch

    net = tiny_model.network
    image, labels = _plane_and_labels()
    enc_before = {k: v.clone() for k, v in net.encoder.state_dict().items()}
    with torch.no_grad():
        before = net(torch.from_numpy(image)[None, None])[0, :2].argmax(0).numpy()
    fit = fit_head(net, SliceSet([image], [labels], ["p"]), 3, pixels_per_plane=64 * 64)
    with torch.no_grad():
        after = net(torch.from_numpy(image)[None, None])[0].argmax(0).numpy()
    ok = labels != 255
    # The network's own prediction is the regression's: the taps map onto the kernel.
    assert np.mean(after[ok] == labels[ok]) == pytest.approx(fit["accuracy"], abs=1e-3)
    assert fit["pixels"] == int(ok.sum()) and fit["accuracy"] > 0.7
    assert np.mean(before[ok] == labels[ok]) < fit["accuracy"]
    for k, v in net.encoder.state_dict().items():
        assert torch.equal(v, enc_before[k])


def test_decoder_features_tiles_agree_with_one_pass(tiny_model):
    image = np.random.default_rng(1).standard_normal((96, 80)).astype(np.float32)
    whole = decoder_features(tiny_model.network, image, tile=512)
    tiled = decoder_features(tiny_model.network, image, tile=128)
    assert whole.shape == (8, 96, 80)
    # Away from the tile seams the margins hide the tile edges.
    assert np.allclose(whole[:, 40:56, 20:60], tiled[:, 40:56, 20:60], atol=1e-4)


def _request(tmp_path, ph, base, **kw):
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=1, crop_size=64)
    return TrainRequest(
        ph.image, ph.labels, tmp_path / "out.safetensors", base=base, config=cfg,
        device="cpu", **kw,
    )  # fmt: skip


def test_a_new_class_gets_a_fitted_head_unless_asked_for_random(tmp_path, model_file):
    from napari_microfossil.phantom import make_phantom

    ph = make_phantom((16, 64, 64), seed=3)
    ph.labels[ph.labels == 2] = 3  # pores become a class the model lacks
    names = ("background", "fossil", "pore", "cavity")
    stages: list[str] = []
    drain(
        iter_run_training(_request(tmp_path, ph, model_file, slices={"z": [2]}, classes=names)),
        lambda p: stages.append(p.stage),
    )
    assert stages.count("fit head") == 2
    stages.clear()
    req = _request(
        tmp_path, ph, model_file, slices={"z": [2]}, classes=names, new_head="random",
        overwrite=True,
    )  # fmt: skip
    drain(iter_run_training(req), lambda p: stages.append(p.stage))
    assert "fit head" not in stages
    with pytest.raises(InputError, match="new_head"):
        _request(tmp_path, ph, model_file, new_head="linear", overwrite=True)


def test_hold_out_false_trains_on_every_reviewed_slice(tmp_path, model_file):
    from napari_microfossil.phantom import make_phantom

    ph = make_phantom((16, 64, 64), seed=3)
    slices = {"z": [1, 4, 7, 10]}
    run = drain(iter_run_training(_request(tmp_path, ph, model_file, slices=slices)))
    assert sum(map(len, run.val_slices.values())) == 1
    req = _request(tmp_path, ph, model_file, slices=slices, hold_out=False, overwrite=True)
    run = drain(iter_run_training(req))
    assert run.train_slices == slices and run.val_slices == {}


def test_cpu_clock_budget(tmp_path, model_file):
    from napari_microfossil.phantom import make_phantom

    with pytest.raises(InputError, match="time_clock"):
        TrainConfig(time_clock="gpu")
    ph = make_phantom((16, 64, 64), seed=3)
    cfg = TrainConfig(
        epochs=1000, steps_per_epoch=2, batch_size=1, crop_size=64, time_limit_s=0.5,
        time_clock="cpu",
    )  # fmt: skip
    req = TrainRequest(
        ph.image, ph.labels, tmp_path / "o.safetensors", slices={"z": [2]}, base=model_file,
        config=cfg, device="cpu",
    )  # fmt: skip
    run = drain(iter_run_training(req))
    assert run.stopped == "time-limit" and len(run.history) < 1000
    assert all(h["cpu_seconds"] >= 0 for h in run.history)
    assert run.spec.provenance["recipe"]["time_clock"] == "cpu"


def test_train_command_maps_the_new_options(tmp_path):
    import argparse

    from napari_microfossil.cli import train as cli_train

    parser = argparse.ArgumentParser()
    cli_train.add_parser(parser.add_subparsers())
    base = ["train", "--image", "a.tif", "--labels", "b.tif", "-o", "m.safetensors"]
    args = parser.parse_args(base)
    recipe = cli_train.recipe_from_args(args)
    assert args.hold_out is True and recipe["pixel_features"] is None
    assert recipe["config"].time_clock == "wall"
    more = ["--no-hold-out", "--time-clock", "cpu", "--pixel-features", "1,2,4"]
    args = parser.parse_args(base + more)
    recipe = cli_train.recipe_from_args(args)
    assert args.hold_out is False and recipe["pixel_features"] == (1.0, 2.0, 4.0)
    assert recipe["config"].time_clock == "cpu"
    args = parser.parse_args([*base, "--pixel-features", "4,1"])
    with pytest.raises(InputError, match="--pixel-features: expected increasing"):
        cli_train.recipe_from_args(args)
