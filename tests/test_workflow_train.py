"""The training rules, tested once on the workflow (split, validation choice, classes,
what a cancel keeps, the LR finder's report), and for each a check that ``microfossil
train`` and the Fine-tune panel apply it alike."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil._progress import drain
from napari_microfossil.errors import InputError
from napari_microfossil.training import LRFindResult, TrainConfig
from napari_microfossil.workflows.train import (
    TrainRequest,
    cancel_report,
    iter_run_training,
    labelled_z_slices,
    lr_find_report,
    lr_find_summary,
    output_stamp,
    split_for_training,
)

SHAPE = (16, 64, 64)
TINY = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=1, crop_size=64)


@pytest.fixture(scope="module")
def phantom():
    from napari_microfossil.phantom import make_phantom

    return make_phantom(SHAPE, seed=7)


@pytest.fixture(scope="module")
def z(phantom):
    """A z-slice holding every class (so labels there use ids up to 2)."""
    return int(np.argmax([(plane == 2).sum() * (plane == 1).any() for plane in phantom.labels]))


@pytest.fixture
def base(tmp_path, tiny_model):
    from napari_microfossil.model import save_model

    return save_model(tmp_path / "base.safetensors", tiny_model.network, tiny_model.spec)


def _cli_request(*argv):
    """The request `microfossil train ARGV` builds."""
    from napari_microfossil.cli import build_parser
    from napari_microfossil.cli.train import request_from_args

    return request_from_args(build_parser().parse_args(["train", *argv]))


# --- checked up front ----------------------------------------------------------------


def test_request_refuses_bad_input_naming_the_front_ends_option(tmp_path, phantom, z):
    img, lab = phantom.image, phantom.labels
    out = tmp_path / "m.safetensors"
    cases = [
        ({"output": tmp_path / "m.pt"}, "output: model files end in .safetensors"),
        ({"output": tmp_path / "gone" / "m.safetensors"}, "output: folder"),
        ({"slices": "z:a"}, "slices: slice numbers must be integers"),
        ({"slices": {"w": [1]}}, "slices: expected axes among"),
        ({"slices": {}}, "slices: no reviewed slices"),
        ({"slices": "z:1,2", "val_slices": "z:2"}, "val_slices: expected slices not in slices"),
        ({"classes": ["background"]}, "classes: expected at least 2"),
        ({"classes": ["a", "b", "a"]}, "classes: expected unique names"),
        ({"smooth": -1.0}, "smooth: expected a Gaussian sigma"),
        ({"slices": f"z:{z}", "classes": ["background", "fossil"]}, "classes: the labels use"),
    ]
    for change, message in cases:
        kw = {"output": out, "slices": "z:1", **change}
        with pytest.raises(InputError, match=message):
            TrainRequest(img, lab, **kw)
    out.write_bytes(b"")
    with pytest.raises(InputError, match="already exists"):
        TrainRequest(img, lab, out, slices="z:1")
    assert TrainRequest(img, lab, out, slices="z:1", overwrite=True).slices == {"z": [1]}
    # The command line names its options.
    with pytest.raises(InputError, match=r"^-o: model files end in \.safetensors"):
        _cli_request("--image", "s.tif", "--labels", "l.tif", "-o", str(tmp_path / "m.pt"))


# --- the split and the validation slices ----------------------------------------------


def test_split_rule(tmp_path, phantom):
    out = tmp_path / "m.safetensors"
    req = TrainRequest(phantom.image, phantom.labels, out, slices="z:1,3,5")
    assert split_for_training(req, req.slices) == ({"z": [1, 3, 5]}, {})  # < 4: all train
    req = TrainRequest(phantom.image, phantom.labels, out, slices="z:1,3,5,7,9,11,13,15")
    train, val = split_for_training(req, req.slices)
    assert len(val["z"]) == 2 and sorted(train["z"] + val["z"]) == req.slices["z"]
    again = TrainRequest(phantom.image, phantom.labels, out, slices="z:15,13,11,9,7,5,3,1")
    assert split_for_training(again, again.slices) == (train, val)  # order does not matter
    other = TrainRequest(phantom.image, phantom.labels, out, slices=req.slices, seed=1)
    assert split_for_training(other, other.slices) != (train, val)  # the seed does
    given = TrainRequest(phantom.image, phantom.labels, out, slices="z:1,3", val_slices="x:9")
    assert split_for_training(given, given.slices) == ({"z": [1, 3]}, {"x": [9]})
    lab = np.zeros(SHAPE, np.uint8)
    lab[[2, 6, 10]] = 1
    assert labelled_z_slices(lab, skip=[6]) == [2, 10]


def test_cli_and_panel_split_alike(tmp_path, phantom):
    """The command line parses a string, the panel hands the reviewed slices: one split."""
    from napari_microfossil.training.finetune import describe_split

    out = tmp_path / "m.safetensors"
    cli = _cli_request(
        "--image", "scan.tif", "--labels", "l.tif", "--slices", "z:9,1,5,13", "-o", str(out)
    )
    panel = TrainRequest(phantom.image, phantom.labels, out, slices={"z": [1, 5, 9, 13]})
    assert cli.slices == panel.slices
    cut = split_for_training(cli, cli.slices)
    assert cut == split_for_training(panel, panel.slices) and len(cut[1]["z"]) == 1
    # What the panel shows before a run is that split.
    assert describe_split(panel.slices) == "4 reviewed slices (z: 4); 1 held out for validation"


# --- a real (tiny) run: base score, classes, provenance -------------------------------


def test_a_run_scores_the_base_and_records_its_slices(tmp_path, phantom, base):
    from napari_microfossil.model import load_model

    out = tmp_path / "m.safetensors"
    req = TrainRequest(
        phantom.image, phantom.labels, out, slices="z:2,5,9,13", base=base, config=TINY,
        device="cpu", name="scan",
    )  # fmt: skip
    stages = []
    run = drain(iter_run_training(req), lambda p: stages.append(p.stage))
    assert stages[:2] == ["load model", "load model"] and "validate base model" in stages
    assert run.before is not None and run.after == pytest.approx(run.spec.metrics["iou_fossil"])
    assert run.train_slices and sum(map(len, run.val_slices.values())) == 1
    prov = load_model(out).spec.provenance
    assert prov["base"] == str(base) and prov["val_slices"] == [f"scan z={run.val_slices['z'][0]}"]
    assert run.warnings == () and run.lr == TINY.lr


def test_new_label_ids_get_a_new_head_with_a_warning(tmp_path, phantom, base, z):
    """The class rule of both front ends: expand (and say so), refuse what cannot work."""
    labels = phantom.labels.copy()
    labels[z][labels[z] == 2] = 3  # a class the base model lacks
    out = tmp_path / "m.safetensors"
    notices = []
    req = TrainRequest(
        phantom.image, labels, out, slices=f"z:{z}", base=base, config=TINY, device="cpu"
    )
    run = drain(iter_run_training(req, notify=notices.append))
    assert run.spec.class_names == ("background", "fossil", "pore", "class_3")
    assert [n.kind for n in notices] == ["warning"] and "new head for classes" in run.warnings[0]
    named = TrainRequest(
        phantom.image, labels, out, slices=f"z:{z}", base=base, config=TINY, device="cpu",
        classes=("background", "fossil", "pore", "ostracod"), overwrite=True,
    )  # fmt: skip
    assert drain(iter_run_training(named)).spec.class_names[3] == "ostracod"
    # Too few names for the ids found: the panel (arrays) is told before any work...
    with pytest.raises(InputError, match="classes: the labels use class ids up to 3"):
        TrainRequest(
            phantom.image,
            labels,
            tmp_path / "n.safetensors",
            slices=f"z:{z}",
            classes=("bg", "a", "b"),
        )


def test_cli_and_panel_refuse_too_few_class_names_alike(tmp_path, phantom, base, z):
    """...and the command line (files) once it has read the labels: the same message."""
    from napari_microfossil.io import write_tiff

    scan = write_tiff(tmp_path / "scan.tif", phantom.image)
    labels = write_tiff(tmp_path / "labels.tif", phantom.labels)
    out = tmp_path / "m.safetensors"
    cli = _cli_request(
        "--image", str(scan), "--labels", str(labels), "--slices", f"z:{z}", "--base", str(base),
        "--classes", "background,shell", "-o", str(out), "--device", "cpu",
    )  # fmt: skip
    with pytest.raises(InputError) as from_cli:
        drain(iter_run_training(cli))
    with pytest.raises(InputError) as from_panel:
        TrainRequest(
            phantom.image, phantom.labels, out, slices=f"z:{z}", classes=("background", "shell")
        )
    assert str(from_cli.value).startswith("--classes: ")
    assert str(from_cli.value).removeprefix("--") == str(from_panel.value)
    assert not out.exists()


# --- what a cancel keeps --------------------------------------------------------------


def test_cancel_report(tmp_path, tiny_model):
    from napari_microfossil.model import save_model

    out = tmp_path / "m.safetensors"
    nothing = cancel_report(out, None)
    assert not nothing.written
    assert nothing.text == "cancelled before the first epoch ended; no model was written"
    spec = tiny_model.spec.with_updates(provenance={"best_epoch": 2, "epochs_run": 3})
    save_model(out, tiny_model.network, spec)
    before = output_stamp(out)
    assert not cancel_report(out, before).written  # the file was there, and not rewritten
    kept = cancel_report(out, None)
    assert kept.written and kept.best_epoch == 2
    assert kept.text == f"cancelled; the best model so far (epoch 2 of 3 run) is in {out}"
    assert kept.summary == "cancelled; the best model (epoch 2) is kept"


def test_cli_reports_a_cancel_with_the_workflows_words(
    tmp_path, phantom, base, monkeypatch, capsys
):
    import napari_microfossil.training as training
    from napari_microfossil.cli import main
    from napari_microfossil.io import write_tiff

    real = training.iter_train

    def interrupted(*args, **kw):
        for p in real(*args, **kw):
            yield p
            if p.stage == "validate":
                raise KeyboardInterrupt

    monkeypatch.setattr(training, "iter_train", interrupted)
    scan = write_tiff(tmp_path / "scan.tif", phantom.image)
    labels = write_tiff(tmp_path / "labels.tif", phantom.labels)
    out = tmp_path / "m.safetensors"
    argv = ["train", "--image", str(scan), "--labels", str(labels), "--slices", "z:3,8",
            "--base", str(base), "-o", str(out), "--epochs", "3", "--steps-per-epoch", "1",
            "--batch-size", "1", "--crop-size", "64", "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert err == f"microfossil train: {cancel_report(out, None).text}"
    assert "(epoch 1 of 1 run)" in err


# --- the LR finder's words ----------------------------------------------------------


def test_lr_find_report_and_summary():
    lrs = tuple(10.0 ** np.linspace(-6, 0, 13))
    smoothed = tuple(float(v) for v in (np.linspace(-3, 3, 13) ** 2 + 1))
    found = LRFindResult(
        lrs=lrs, losses=smoothed, smoothed=smoothed, suggestion=1e-4, min_loss_lr=1e-3,
        steepest_lr=1e-4, stopped="completed", min_lr=1e-6, max_lr=1.0,
    )  # fmt: skip
    lines = lr_find_report(found, None)
    assert lines[0] == "LR finder: 13 steps from 1.0e-06 to 1.0e+00"
    assert lines[-1] == "Suggested lr 1.00e-04 (lowest-loss lr / 10): training with it"
    assert lr_find_report(found, 0.01)[-1].endswith("training with --lr 0.01 as given")
    assert sum(ln.strip().startswith("1.00e") for ln in lines) == 7  # one row per decade
    assert lr_find_summary(found).startswith("learning rate set to 0.0001 (a tenth of 0.001")
