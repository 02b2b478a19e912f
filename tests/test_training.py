import math

import numpy as np
import pytest
import torch

from napari_microfossil.errors import InputError
from napari_microfossil.model import load_model
from napari_microfossil.training import (
    SliceSet,
    TrainConfig,
    augment_batch,
    auto_class_weights,
    class_names_for_labels,
    dice_ce_loss,
    expand_classes,
    iter_train,
    lr_find,
    parse_slices,
    slices_from_volume,
    split_slices,
    suggest_lr,
    train,
)


def _disc_planes(n, size=64, seed=0):
    """Bright discs (class 1) and dark squares (class 2) on grey: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    data = SliceSet()
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        img = rng.normal(0, 0.1, (size, size)).astype(np.float32)
        lab = np.zeros((size, size), np.uint8)
        cy, cx, r = [*rng.integers(16, size - 16, 2).tolist(), int(rng.integers(6, 12))]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img[disc] += 1.0
        lab[disc] = 1
        sy, sx = rng.integers(0, size - 8, 2)
        sq = np.zeros_like(disc)
        sq[sy : sy + 8, sx : sx + 8] = True
        sq &= ~disc
        img[sq] -= 1.0
        lab[sq] = 2
        data.images.append(img)
        data.labels.append(lab)
        data.sources.append(f"plane {i}")
    return data


def test_parse_slices():
    assert parse_slices("z:10,40,70") == {"z": [10, 40, 70]}
    assert parse_slices("z:1;y:2,3") == {"z": [1], "y": [2, 3]}
    for bad in ("10,40", "q:1", "z:a", ""):
        with pytest.raises(InputError, match="--slices"):
            parse_slices(bad)


def test_slices_from_volume_takes_the_right_planes():
    vol = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    lab = (vol.astype(np.int64) % 3).astype(np.uint8)
    s = slices_from_volume(vol, lab, {"z": [1], "y": [2], "x": [5]})
    assert [im.shape for im in s.images] == [(5, 6), (4, 6), (4, 5)]
    np.testing.assert_array_equal(s.labels[1], lab[:, 2, :])
    np.testing.assert_array_equal(s.labels[2], lab[:, :, 5])
    assert s.sources == ["volume z=1", "volume y=2", "volume x=5"]
    with pytest.raises(InputError, match="outside"):
        slices_from_volume(vol, lab, {"z": [4]})


def test_split_never_leaks_validation_into_training():
    rng = np.random.default_rng(1)
    tr, va = split_slices([f"s{i}" for i in range(10)], val_fraction=0.3, rng=rng)
    assert set(tr).isdisjoint(va)
    assert sorted(tr + va) == list(range(10))
    assert len(va) == 3


def test_split_holds_nothing_out_below_min_items():
    rng = np.random.default_rng(1)
    items = ["a", "b", "c"]
    assert split_slices(items, val_fraction=0.25, rng=rng, min_items=4) == ([0, 1, 2], [])
    tr, va = split_slices(items, val_fraction=0.25, rng=rng, min_items=3)
    assert len(va) == 1 and sorted(tr + va) == [0, 1, 2]
    assert split_slices(["a"], val_fraction=0.5, rng=rng) == ([0], [])


def test_augment_keeps_image_and_labels_aligned():
    # A label map equal to (image > 0) must stay equal after geometric augmentation
    # when intensity changes are excluded: check on the sign structure of a big disc.
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    disc = ((yy - 30) ** 2 + (xx - 36) ** 2 < 300).float()
    x = (disc * 4 - 2).view(1, 1, 64, 64).repeat(4, 1, 1, 1)
    y = disc.long().view(1, 64, 64).repeat(4, 1, 1)
    xa, ya = augment_batch(x, y, gen)
    agree = ((xa[:, 0] > 0).long() == ya).float().mean()
    assert agree > 0.97
    assert not torch.equal(ya, y)  # something moved


def test_light_augmentation_only_turns_flips_and_scales():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 1, 32, 32)
    y = (x[:, 0] > 0).long()
    xa, ya = augment_batch(x, y, gen, "light")
    assert torch.equal((xa[:, 0] > 0).long(), ya)  # exact: no interpolation, no noise
    for i in range(6):  # each output is a turned/flipped copy of its input times a gain
        gain = xa[i].abs().sum() / x[i].abs().sum()
        assert 0.95 <= float(gain) <= 1.05
        variants = [torch.rot90(x[i, 0], k, (0, 1)) for k in range(4)]
        variants += [v.flip(1) for v in variants]
        assert any(torch.allclose(xa[i, 0], v * gain, atol=1e-5) for v in variants)


@pytest.mark.parametrize(("value", "mode"), [(True, "full"), (False, "off"), ("light", "light")])
def test_augment_modes(value, mode):
    assert TrainConfig(augment=value).augment == mode
    assert TrainConfig(augment=value).to_dict()["augment"] == mode


def test_unknown_augment_mode_is_an_error():
    with pytest.raises(InputError, match="augment: expected one of full, light, off"):
        TrainConfig(augment="heavy")


def test_smoothed_training_planes_are_what_inference_sees():
    from scipy import ndimage as ndi

    from napari_microfossil.normalise import Normalisation, apply_normalisation, intensity_range

    rng = np.random.default_rng(0)
    vol = (rng.random((12, 20, 24)) * 3000).astype(np.uint16)
    lab = (rng.random(vol.shape) > 0.5).astype(np.uint8)
    norm = Normalisation(smooth=1.0)
    s = slices_from_volume(vol, lab, {"z": [0, 6], "x": [3]}, normalisation=norm)
    sm = np.rint(ndi.gaussian_filter(vol.astype(np.float32), 1.0, mode="mirror"))
    lo, hi = intensity_range(sm, norm)
    np.testing.assert_allclose(s.images[0], apply_normalisation(sm[0], lo, hi, norm), atol=1e-6)
    np.testing.assert_allclose(
        s.images[2], apply_normalisation(sm[:, :, 3], lo, hi, norm), atol=1e-6
    )
    np.testing.assert_array_equal(s.labels[1], lab[6])


def test_dice_ce_loss_is_lower_for_the_right_answer():
    target = torch.randint(0, 3, (2, 16, 16))
    good = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 10
    bad = torch.roll(good, 1, dims=1)
    assert dice_ce_loss(good, target, class_weights=None, dice_weight=1) < dice_ce_loss(
        bad, target, class_weights=None, dice_weight=1
    )


def test_auto_class_weights_favour_rare_classes():
    w = auto_class_weights(_disc_planes(4), 3)
    assert w[2] > w[1] > w[0]


def test_training_learns_a_simple_task_and_writes_best_model(tmp_path, tiny_spec):
    data = _disc_planes(12)
    tr = SliceSet(data.images[:9], data.labels[:9], data.sources[:9])
    va = SliceSet(data.images[9:], data.labels[9:], data.sources[9:])
    cfg = TrainConfig(epochs=4, steps_per_epoch=12, batch_size=4, crop_size=64, lr=3e-3, seed=0)
    out = tmp_path / "m.safetensors"
    result = train(tr, va, tiny_spec, config=cfg, device="cpu", output=str(out))
    assert len(result.history) == 4
    assert result.history[-1]["iou_fossil"] > 0.6
    saved = load_model(out)
    assert saved.spec.metrics["iou_fossil"] == pytest.approx(
        max(h["iou_fossil"] for h in result.history), abs=1e-4
    )
    assert saved.spec.provenance["recipe"]["epochs"] == 4


def test_cancelled_training_leaves_a_loadable_model(tmp_path, tiny_spec):
    data = _disc_planes(6)
    cfg = TrainConfig(epochs=5, steps_per_epoch=3, batch_size=2, crop_size=64)
    out = tmp_path / "m.safetensors"
    gen = iter_train(data, data, tiny_spec, config=cfg, device="cpu", output=str(out))
    for p in gen:
        if p.stage == "validate":  # after the first epoch: cancel
            break
    gen.close()
    assert load_model(out).spec.provenance["epochs_run"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name != "m.safetensors"]


def test_frozen_phase_then_discriminative_rates(tiny_spec):
    data = _disc_planes(4)
    cfg = TrainConfig(
        epochs=1,
        frozen_epochs=1,
        steps_per_epoch=2,
        batch_size=2,
        crop_size=64,
        resolutions=(0.5, 1.0),
    )
    enc_before = [p.detach().clone() for p in _net(tiny_spec).encoder.parameters()]
    net = _net(tiny_spec)
    gen = iter_train(data, None, tiny_spec, network=net, config=cfg, device="cpu")
    phases = []
    for p in gen:
        if p.stage == "train":
            phases.append(p.info["phase"])
            if p.info["phase"] == "frozen":
                assert all(
                    torch.equal(a, b)
                    for a, b in zip(enc_before, net.encoder.parameters(), strict=True)
                )
    assert phases == ["frozen", "frozen", "unfrozen", "unfrozen"]


def test_progressive_scale_follows_time_under_a_time_limit():
    from napari_microfossil.training.schedule import scale_for

    cfg = TrainConfig(epochs=1000, resolutions=(0.25, 0.5, 1.0), time_limit_s=300)
    # 3 epochs of 1000 are nothing, but 70 % of the time has gone: full resolution.
    assert scale_for(cfg, 3, 1000, 210.0) == 1.0
    assert scale_for(cfg, 3, 1000, 120.0) == 0.5
    assert scale_for(cfg, 0, 1000, 0.0) == 0.25
    untimed = TrainConfig(epochs=9, resolutions=(0.25, 0.5, 1.0))
    assert [scale_for(untimed, e, 9, 1e6) for e in (0, 2, 3, 5, 6, 8)] == [
        0.25,
        0.25,
        0.5,
        0.5,
        1.0,
        1.0,
    ]


def test_time_limited_progressive_run_ends_at_full_resolution(tiny_spec):
    # An epoch count the time limit cuts short, as the Fine-tune panel and the
    # benchmarks use: the last epochs must still train at full resolution, and the
    # kept model (no validation: chosen by training loss) must be one of them. One
    # step per epoch: the time limit must also be noticed at an epoch's end.
    data = _disc_planes(3)
    cfg = TrainConfig(
        epochs=2000,
        steps_per_epoch=1,
        batch_size=2,
        crop_size=64,
        resolutions=(0.5, 1.0),
        time_limit_s=2.0,
        augment="off",
    )
    result = train(data, None, tiny_spec, network=_net(tiny_spec), config=cfg, device="cpu")
    scales = [h["scale"] for h in result.history]
    assert result.stopped == "time-limit"
    assert scales[0] == 0.5 and scales[-1] == 1.0
    assert scales == sorted(scales)
    best = next(h for h in result.history if h["epoch"] == result.best_epoch)
    assert best["scale"] == 1.0


def _net(spec):
    from napari_microfossil.model import build_network

    torch.manual_seed(0)
    return build_network(spec)


def test_bad_labels_are_refused(tiny_spec):
    data = _disc_planes(2)
    data.labels[0][0, 0] = 7
    with pytest.raises(InputError, match="class ids"):
        train(
            data,
            None,
            tiny_spec,
            config=TrainConfig(epochs=1, steps_per_epoch=1, crop_size=64),
            device="cpu",
        )


def test_config_validation():
    with pytest.raises(InputError, match="crop_size"):
        TrainConfig(crop_size=100)
    with pytest.raises(InputError, match="time_limit"):
        TrainConfig(time_limit_s=0)


# --- learning-rate finder -----------------------------------------------------------------


def test_suggest_lr_takes_a_tenth_of_the_lowest_loss_rate():
    lrs = np.logspace(-6, 0, 61)
    x = np.log10(lrs)
    # Falling fastest at 1e-4, lowest at 1e-2, then rising steeply.
    loss = 2 - np.tanh(3 * (x + 4)) - 0.1 * (x + 6) + 5 * np.clip(x + 2, 0, None) ** 2
    suggestion, at_min, steepest = suggest_lr(lrs, loss, min_lr=1e-6, max_lr=1.0)
    assert at_min == pytest.approx(1e-2)
    assert suggestion == pytest.approx(1e-3)
    assert steepest == pytest.approx(1e-4)
    # Loss only rising: the suggestion stays inside the range.
    assert suggest_lr(lrs, x, min_lr=1e-6, max_lr=1.0)[0] == pytest.approx(1e-6)


def test_lr_find_sweeps_restores_the_weights_and_suggests_within_range(tiny_spec):
    data = _disc_planes(4)
    net = _net(tiny_spec).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = TrainConfig(batch_size=2, crop_size=32, augment=False, seed=0)
    lo, hi, steps = 1e-3, 1e3, 16
    res = lr_find(
        data, tiny_spec, network=net, config=cfg, device="cpu", min_lr=lo, max_lr=hi, steps=steps
    )
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert not net.training
    assert all(p.requires_grad and p.grad is None for p in net.parameters())
    assert lo <= res.suggestion <= hi
    assert res.suggestion == pytest.approx(max(res.min_loss_lr / 10, lo))
    # An exponential sweep: equal ratios between steps, starting at min_lr.
    assert res.lrs[0] == pytest.approx(lo)
    np.testing.assert_allclose(np.diff(np.log10(res.lrs)), 6 / (steps - 1))
    # The toy task is learnable: the loss falls over the first part of the sweep...
    i_min = int(np.argmin(res.smoothed))
    assert i_min >= 3
    assert res.smoothed[i_min] < 0.8 * res.smoothed[0]
    # ... and a rate of 1000 makes it blow up, which ends the sweep early.
    assert res.stopped == "diverged"
    assert len(res.lrs) < steps
    assert not math.isfinite(res.smoothed[-1]) or res.smoothed[-1] > 4 * min(res.smoothed)


def test_lr_find_refuses_a_bad_range(tiny_spec):
    data = _disc_planes(1)
    with pytest.raises(InputError, match="min_lr"):
        lr_find(data, tiny_spec, min_lr=1e-2, max_lr=1e-3, device="cpu")
    with pytest.raises(InputError, match="steps"):
        lr_find(data, tiny_spec, steps=2, device="cpu")


# --- new classes ----------------------------------------------------------------------------


def test_expand_classes_keeps_the_old_logits(tiny_spec):
    net = _net(tiny_spec).eval()
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        old = net(x)
    names = (*tiny_spec.class_names, "ostracod")
    with pytest.warns(
        UserWarning,
        match=r"model tiny has classes .*labels have 4 classes: new head for classes \['ostracod'\]",
    ):
        new_net, new_spec = expand_classes(net, tiny_spec, names, model_name="tiny")
    assert new_spec.class_names == names
    assert new_spec.provenance["classes_from"] == list(tiny_spec.class_names)
    assert not new_net.training
    with torch.no_grad():
        new = new_net(x)
    assert new.shape == (2, 4, 64, 64)
    torch.testing.assert_close(new[:, :3], old, rtol=0, atol=1e-5)
    assert not torch.allclose(new[:, 3], new[:, 1])  # the new class has its own channel
    # Classes are matched by name: a class moved to another id keeps its channel.
    with pytest.warns(UserWarning, match="new head for classes"):
        moved, _ = expand_classes(net, tiny_spec, ("background", "ostracod", "pore", "fossil"))
    with torch.no_grad():
        out = moved.eval()(x)
    torch.testing.assert_close(out[:, [0, 2, 3]], old[:, [0, 2, 1]], rtol=0, atol=1e-5)
    # The same classes: nothing to do, no warning (warnings are errors here).
    same_net, same_spec = expand_classes(net, tiny_spec, tiny_spec.class_names)
    assert same_net is net and same_spec is tiny_spec
    with pytest.raises(InputError, match="unique"):
        expand_classes(net, tiny_spec, ("background", "fossil", "fossil"))


def test_class_names_for_labels():
    base = ("background", "fossil", "pore")
    assert class_names_for_labels(base, 2) == base
    assert class_names_for_labels(base, 4) == (*base, "class_3", "class_4")
    assert class_names_for_labels(base, 3, label_class_names=("a", "b", "c", "ostracod")) == (
        *base,
        "ostracod",
    )
    # A label file naming the new id like an existing class does not create a duplicate.
    assert class_names_for_labels(base, 3, label_class_names=("a", "b", "c", "pore"))[3] != "pore"


def test_training_a_new_class_after_expanding_the_head(tmp_path, tiny_spec):
    data = _disc_planes(4)
    for lab in data.labels[:2]:  # the dark squares become a new class in two planes
        lab[lab == 2] = 3
    net = _net(tiny_spec)
    cfg = TrainConfig(epochs=2, steps_per_epoch=4, batch_size=2, crop_size=64, lr=3e-3)
    with pytest.raises(InputError, match="class ids"):  # the fixed spec still refuses them
        train(data, None, tiny_spec, network=net, config=cfg, device="cpu")
    with pytest.warns(UserWarning, match="ostracod"):
        new_net, new_spec = expand_classes(net, tiny_spec, (*tiny_spec.class_names, "ostracod"))
    head_before = new_net.segmentation_head[0].weight.detach().clone()
    out = tmp_path / "m.safetensors"
    result = train(data, data, new_spec, network=new_net, config=cfg, device="cpu", output=str(out))
    assert "iou_ostracod" in result.history[-1]
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert not torch.equal(new_net.segmentation_head[0].weight[3], head_before[3])
    saved = load_model(out)
    assert saved.spec.class_names == ("background", "fossil", "pore", "ostracod")
    assert saved.network(torch.zeros(1, 1, 64, 64)).shape[1] == 4
