"""Correction rounds: each fine-tune records the rounds behind it, and the next one
starts from the last (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil._progress import drain
from napari_microfossil.training import TrainConfig
from napari_microfossil.workflows.train import TrainRequest, iter_run_training, rounds_report

SHAPE = (16, 64, 64)
TINY = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=1, crop_size=64)


@pytest.fixture(scope="module")
def phantom():
    from napari_microfossil.phantom import make_phantom

    return make_phantom(SHAPE, seed=7)


@pytest.fixture
def base(tmp_path, tiny_model):
    from napari_microfossil.model import save_model

    return save_model(tmp_path / "base.safetensors", tiny_model.network, tiny_model.spec)


def _round(phantom, base, out, slices):
    req = TrainRequest(
        phantom.image, phantom.labels, out, slices=slices, base=base, config=TINY,
        device="cpu", name="scan", seed=0,
    )  # fmt: skip
    return drain(iter_run_training(req))


def test_two_rounds_are_recorded_and_the_second_starts_from_the_first(tmp_path, phantom, base):
    from napari_microfossil.model import load_model

    one = _round(phantom, base, tmp_path / "r1.safetensors", "z:2,5,9,13")
    two = _round(
        phantom, tmp_path / "r1.safetensors", tmp_path / "r2.safetensors", "z:2,5,9,13,3,7,11"
    )
    first = load_model(tmp_path / "r1.safetensors")
    second = load_model(tmp_path / "r2.safetensors")
    rounds = second.spec.provenance["rounds"]
    assert [r["model"] for r in rounds] == ["r1.safetensors", "r2.safetensors"]
    assert [r["base"] for r in rounds] == ["base.safetensors", "r1.safetensors"]
    # the first round's score, known only once it was the base, is filled in
    assert rounds[0]["score"] == pytest.approx(first.spec.metrics["iou_fossil"])
    assert rounds[1]["score"] is None  # its own is in the metrics
    assert sorted(rounds[0]["train_slices"]["z"] + rounds[0]["val_slices"]["z"]) == [2, 5, 9, 13]
    assert (
        sum(map(len, rounds[1]["train_slices"].values()))
        + sum(map(len, rounds[1]["val_slices"].values()))
        == 7
    )
    # round 2 scored round 1's weights as its base: they are what it started from
    assert two.before == pytest.approx(first.spec.metrics["iou_fossil"], abs=1e-6) or (
        set(one.val_slices["z"]) != set(two.val_slices["z"])
    )
    lines = rounds_report(second.spec)
    assert len(lines) == 2
    assert lines[0].startswith("round 1: 3 slices (z:") and "from base.safetensors" in lines[0]
    assert lines[1].startswith("round 2: ") and "from r1.safetensors" in lines[1]
    assert lines[1].endswith(f"{second.spec.metrics['iou_fossil']:.3f}")


def test_second_round_network_starts_from_first_rounds_weights(tmp_path, phantom, base):
    """With nothing to learn (learning rate ~0) round 2 ends with round 1's weights
    (batch-norm running statistics still follow the data, so they are left out)."""
    import dataclasses

    from napari_microfossil.model import load_model

    _round(phantom, base, tmp_path / "r1.safetensors", "z:2,5,9,13")
    req = TrainRequest(
        phantom.image, phantom.labels, tmp_path / "r2.safetensors", slices="z:2,5,9,13",
        base=tmp_path / "r1.safetensors", config=dataclasses.replace(TINY, lr=1e-12),
        device="cpu", name="scan",
    )  # fmt: skip
    drain(iter_run_training(req))
    a = load_model(tmp_path / "r1.safetensors").network.state_dict()
    b = load_model(tmp_path / "r2.safetensors").network.state_dict()
    checked = [k for k in a if a[k].dtype.is_floating_point and "running" not in k]
    assert len(checked) > 10
    base_w = load_model(base).network.state_dict()
    assert any(not np.allclose(a[k].numpy(), base_w[k].numpy()) for k in checked)
    for k in checked:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), atol=1e-6, err_msg=k)


def test_a_model_without_rounds_reports_none(tiny_model):
    assert rounds_report(tiny_model.spec) == []


def test_info_lists_the_rounds(tmp_path, phantom, base, capsys):
    from napari_microfossil import cli

    _round(phantom, base, tmp_path / "r1.safetensors", "z:2,5,9,13")
    assert cli.main(["info", str(tmp_path / "r1.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "correction round 1: 3 slices" in out


# -- no validation slices: the new model is compared with its base on the ones it learned


def test_without_validation_both_models_are_scored_on_the_training_slices(tmp_path, phantom, base):
    from napari_microfossil.workflows.train import run_report

    stages = []
    req = TrainRequest(
        phantom.image, phantom.labels, tmp_path / "m.safetensors", slices="z:5,9", base=base,
        config=TINY, device="cpu", name="scan",
    )  # fmt: skip
    run = drain(iter_run_training(req), lambda p: stages.append(p.stage))
    assert run.val_slices == {} and run.before is None and run.after is None
    assert "score base model" in stages and "validate base model" not in stages
    assert run.fit_before is not None and run.fit_after is not None
    assert 0 <= run.fit_before <= 1 and 0 <= run.fit_after <= 1
    assert run.improved == (run.fit_after >= run.fit_before)
    lines = run_report(run, slices="2 slices")
    assert any(line.startswith("On those slices IoU fossil: ") for line in lines)


def test_a_model_worse_on_its_own_slices_is_reported_and_not_chosen(tmp_path, tiny_model):
    from napari_microfossil.workflows.train import TrainRun, run_report

    run = TrainRun(
        path=tmp_path / "m.safetensors", spec=tiny_model.spec, history=[], best_epoch=1,
        stopped="epochs", score_key="iou_fossil", before=None, after=None,
        fit_before=0.83, fit_after=0.80,
    )  # fmt: skip
    assert not run.improved
    text = "\n".join(run_report(run, slices="2 slices"))
    assert "0.830 (base) → 0.800 (fine-tuned); below the base even on the slices it learned" in text
    assert "Segment keeps the model it had" in text
    better = TrainRun(**{**run.__dict__, "fit_after": 0.9})
    assert better.improved and "below" not in "\n".join(run_report(better))
