"""Fine-tune widget: a real short run on a phantom, Cancel, refusals, the live curve."""

from __future__ import annotations

import datetime
import inspect
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_microfossil._napari import layers as md
from napari_microfossil._napari.layers import REVIEW as REVIEW_KEY
from napari_microfossil._napari.layers import SOURCE_IMAGE as SOURCE_IMAGE_KEY
from napari_microfossil.axes import take_plane
from napari_microfossil.review import ReviewState

pytestmark = [
    pytest.mark.gui,
]

SHAPE = (16, 64, 64)
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def phantom():
    from napari_microfossil.phantom import make_phantom

    return make_phantom(SHAPE, seed=3)


def _add_scan(viewer, phantom, tmp_path, model_file, *, reviewed=(2, 7, 10, 12)):
    viewer.add_image(phantom.image, name="scan", metadata={"path": str(tmp_path / "scan.tif")})
    state = ReviewState.for_volume(SHAPE)
    for i in reviewed:
        state.mark_reviewed(i)
    return viewer.add_labels(
        phantom.labels.copy(),
        name="scan fossils",
        metadata={
            SOURCE_IMAGE_KEY: "scan",
            "class_names": list(phantom.class_names),
            "model": str(model_file),
            "source_path": str(tmp_path / "scan.tif"),
            REVIEW_KEY: state,
        },
    )


@pytest.fixture
def setup(make_napari_viewer, phantom, tmp_path, model_file):
    """A viewer with a scan, its corrected labels (4 reviewed z-slices), Segment and
    Fine-tune docked; Fine-tune set to a tiny epoch budget on the CPU."""
    from napari_microfossil._napari.finetune_widget import FinetuneWidget
    from napari_microfossil._napari.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    labels = _add_scan(viewer, phantom, tmp_path, model_file)
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment")
    _wire_segment(viewer, segment)
    widget = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Fine-tune")
    tiny_cpu_training(widget, epochs=2)
    return viewer, labels, segment, widget


def tiny_cpu_training(widget, *, epochs=1):
    """Set the Fine-tune panel to a few one-sample steps of 64² crops on the CPU."""
    widget.by_epochs.setChecked(True)
    widget.epochs.setValue(epochs)
    widget.steps_per_epoch.setValue(1)
    widget.batch_size.setValue(1)
    widget.crop_size.setValue(64)
    widget.device.setCurrentIndex(widget.device.findData("cpu"))


def _wire_segment(viewer, segment):
    """Connect Segment to the plugin context as the Segment panel does once it talks
    through PluginContext (issue 10); a no-op when it already does."""
    from napari_microfossil._napari.context import PluginContext

    ctx = PluginContext.of(viewer)
    if ctx.can_segment:
        return
    ctx.model_added.connect(lambda path, select: segment.add_model(path, select=select))

    def run(model, image):
        if image:
            segment.image.set_layer(image)
        return segment.run()

    ctx.provide_segmenter(run)


def wait_idle(qtbot, runner):
    qtbot.waitUntil(lambda: not runner.running, timeout=TIMEOUT_MS)


def test_defaults_follow_the_corrected_layer(setup, tmp_path, model_file):
    viewer, labels, _, widget = setup
    assert widget.labels.layer() is labels
    assert widget.image.layer().name == "scan"
    assert widget.slices_label.text() == ("4 reviewed slices (z: 4); 1 held out for validation")
    # The base model: the one the labels were made with.
    assert widget.model_path() == str(model_file.resolve())
    assert "fossil, pore" in widget.model_info.text()
    # Budget by default: 3 minutes; output: a new file beside the scan.
    from napari_microfossil._napari.finetune_widget import FinetuneWidget

    fresh = FinetuneWidget(viewer)
    assert fresh.by_time.isChecked() and fresh.minutes.value() == 3.0
    assert fresh.config().time_limit_s == 180.0
    date = datetime.date.today().strftime("%Y%m%d")
    assert fresh.output.text() == str(tmp_path / f"scan_finetuned_{date}.safetensors")
    # Another Labels layer added later does not take over.
    viewer.add_labels(np.zeros(SHAPE, np.uint8), name="scratch")
    widget.refresh()
    assert widget.labels.layer() is labels
    # Slices reviewed along another axis count too (the state keeps them on switching).
    state = labels.metadata[REVIEW_KEY]
    state.switch_axis("y")
    state.mark_reviewed(30)
    widget.refresh()
    assert widget.slices_label.text().startswith("5 reviewed slices (z: 4, y: 1)")


def test_default_is_the_layer_review_works_on(make_napari_viewer, phantom, tmp_path, model_file):
    from napari_microfossil._napari.context import PluginContext
    from napari_microfossil._napari.finetune_widget import FinetuneWidget

    viewer = make_napari_viewer()
    corrected = _add_scan(viewer, phantom, tmp_path, model_file)
    state = ReviewState.for_volume(SHAPE)
    state.mark_reviewed(5)
    viewer.add_labels(np.zeros(SHAPE, np.uint8), name="older attempt", metadata={REVIEW_KEY: state})
    widget = FinetuneWidget(viewer)
    assert widget.labels.layer().name == "older attempt"  # the last with reviews
    # The Review panel reviews "scan fossils": it tells the context, Fine-tune follows.
    ctx = PluginContext.of(viewer)
    ctx.set_review_layer(corrected)
    assert ctx.review_layer is corrected
    assert widget.labels.layer() is corrected
    assert widget.slices_label.text().startswith("4 reviewed slices")
    # Once the user picks a layer, it stays.
    widget.labels.set_layer("older attempt")
    widget.labels.activated.emit(widget.labels.currentIndex())
    widget.refresh()
    assert widget.labels.layer().name == "older attempt"


def test_few_slices_train_on_all(make_napari_viewer, qtbot, phantom, tmp_path, model_file):
    from napari_microfossil._napari.finetune_widget import FinetuneWidget

    viewer = make_napari_viewer()
    labels = _add_scan(viewer, phantom, tmp_path, model_file, reviewed=(4, 9, 13))
    widget = FinetuneWidget(viewer)
    qtbot.addWidget(widget)
    assert "3 reviewed slices (z: 3)" in widget.slices_label.text()
    assert "no validation" in widget.slices_label.text()
    # Shown, it follows the review as it goes on (Review tells the context).
    from napari_microfossil._napari.context import PluginContext

    widget.show()
    labels.metadata[REVIEW_KEY].mark_reviewed(11)
    PluginContext.of(viewer).notify_review_changed(labels)
    qtbot.waitUntil(
        lambda: widget.slices_label.text() == "4 reviewed slices (z: 4); 1 held out for validation",
        timeout=5000,
    )
    widget.hide()


def test_short_run_writes_a_model_and_registers_it(setup, qtbot):
    from napari_microfossil.model import load_model

    viewer, labels, segment, widget = setup
    out = widget.output.text()
    assert out.endswith(".safetensors")
    assert widget.smooth.value() == 0.0 and segment.smooth.value() == 0.0  # the base's
    assert widget.config().augment == "light"
    widget.smooth.setValue(0.6)
    seen = []
    worker = widget.run()
    assert not widget.smooth.isEnabled()
    assert worker is not None and widget.runner.running
    assert not widget.run_button.isEnabled() and widget.cancel_button.isEnabled()
    worker.yielded.connect(seen.append)
    wait_idle(qtbot, widget.runner)

    assert "done" in widget.status.text(), widget.status.text()
    model = load_model(out)
    prov = model.spec.provenance
    assert len(prov["train_slices"]) == 3 and len(prov["val_slices"]) == 1
    assert prov["base"].endswith("tiny.safetensors")
    assert model.spec.class_names == tuple(labels.metadata["class_names"])
    assert model.spec.normalisation.smooth == pytest.approx(0.6)
    assert model.spec.provenance["recipe"]["augment"] == "light"
    # The curve: one point per epoch, each with its validation IoU.
    points = widget.curve.points()
    assert [e for e, _, _ in points] == [1, 2]
    assert all(
        np.isfinite(loss) and score is not None and 0 <= score <= 1 for _, loss, score in points
    )
    result = widget.last_result
    assert result.before is not None and result.after is not None
    assert widget.curve.baseline == pytest.approx(result.before)  # the dashed "base" line
    # The rounds: listed, and the next round starts from this model when it is no worse.
    assert "round 1: 3 slices" in widget.result_label.text()
    if result.improved:
        assert widget.model_path() == str(Path(out).resolve())
        assert "round 1:" in widget.model_info.text()
    else:
        assert widget.model_path().endswith("tiny.safetensors")
    assert "Validation IoU fossil" in widget.result_label.text()
    assert f"{result.before:.3f} (base) → {result.after:.3f}" in widget.result_label.text()
    # Registered in the docked Segment widget, and selected there.
    assert segment.model_path() == str(widget.model_path_out.resolve())
    assert segment.model.findData(str(widget.model_path_out.resolve())) >= 0
    assert segment.smooth.value() == pytest.approx(0.6)  # the new model's smoothing
    assert segment.options()["smooth"] == pytest.approx(0.6)
    assert widget.segment_button.isEnabled() and widget.run_button.isEnabled()
    assert widget.runner.pbar is None and widget._gen is None
    # The next run proposes a new file rather than replacing this one.
    assert widget.output.text() != out and widget.output.text().endswith("_2.safetensors")

    # Segment again: Segment runs with the new model, without a question, and keeps
    # the corrected slices as the user left them.
    segment_again_keeps_corrected_planes(viewer, segment, widget, qtbot)


def segment_again_keeps_corrected_planes(viewer, segment, widget, qtbot):
    """Segment again: Segment runs with the new model, without a question, and keeps
    the corrected slices as the user left them."""
    corrected = viewer.layers["scan fossils"].data.copy()
    kept = md.reviewed_slices_of(viewer.layers["scan fossils"])
    assert kept
    segment.confirm = lambda title, text: pytest.fail(f"unexpected question: {text}")
    assert widget.segment_again() is not None
    wait_idle(qtbot, segment.runner)
    layer = viewer.layers["scan fossils"]
    assert layer.metadata["model"] == str(widget.model_path_out.resolve())
    for axis, idx in kept.items():
        for i in idx:
            np.testing.assert_array_equal(
                take_plane(layer.data, axis, i), take_plane(corrected, axis, i)
            )


def test_a_model_worse_than_its_base_is_listed_but_not_chosen(setup, tmp_path, tiny_model):
    from napari_microfossil.model import read_spec, save_model
    from napari_microfossil.workflows.train import TrainRun as FinetuneResult

    _, _, segment, widget = setup
    chosen = segment.model_path()
    path = save_model(tmp_path / "tuned.safetensors", tiny_model.network, tiny_model.spec)
    result = FinetuneResult(
        path=path,
        spec=read_spec(path),
        history=[{"epoch": 1, "loss": 0.5, "iou_fossil": 0.41}],
        best_epoch=1,
        stopped="time-limit",
        score_key="iou_fossil",
        before=0.62,
        after=0.41,
    )
    widget._on_result(result)
    text = widget.result_label.text()
    assert "0.620 (base) → 0.410" in text and "Below the base model" in text
    assert "not chosen" in text
    assert segment.model_path() == chosen  # Segment keeps its model
    assert segment.model.findData(str(path.resolve())) >= 0  # but offers the new one
    better = FinetuneResult(**{**result.__dict__, "before": 0.41, "after": 0.62})
    widget._on_result(better)
    assert "Below" not in widget.result_label.text()
    assert segment.model_path() == str(path.resolve())


def test_cancel_after_an_epoch_keeps_the_best_model(setup, qtbot):
    from napari_microfossil.model import load_model, read_spec

    _, _, segment, widget = setup
    widget.by_time.setChecked(True)  # a one-minute budget: progress counts seconds
    widget.minutes.setValue(1.0)
    assert widget.config().time_limit_s == 60.0
    out = widget.output.text()
    worker = widget.run()
    gen = widget._gen
    totals = set()

    def on_progress(p):
        if p.stage == "train":
            totals.add(p.total)
        if p.stage == "validate":
            widget.cancel()

    worker.yielded.connect(on_progress)
    aborted = []
    worker.aborted.connect(lambda: aborted.append(True))
    wait_idle(qtbot, widget.runner)
    assert aborted == [True]
    load_model(out)  # loadable
    best = read_spec(out).provenance["best_epoch"]
    assert best >= 1
    assert "cancelled" in widget.status.text() and "kept" in widget.status.text()
    assert f"epoch {best}" in widget.result_label.text()
    assert segment.model_path() == str(widget.model_path_out.resolve())
    assert widget.segment_button.isEnabled()
    # The engine's generator was closed: its network and optimiser are dropped.
    assert inspect.getgeneratorstate(gen) == inspect.GEN_CLOSED
    assert 1 <= len(widget.curve.points()) <= 3
    assert totals == {60}


def test_cancel_before_an_epoch_ends_writes_nothing(setup, qtbot):
    from pathlib import Path

    _, _, segment, widget = setup
    widget.steps_per_epoch.setValue(30)
    out = Path(widget.output.text())
    models_before = segment.model.count()
    worker = widget.run()

    def on_progress(p):
        if p.stage == "train":
            widget.cancel()

    worker.yielded.connect(on_progress)
    wait_idle(qtbot, widget.runner)
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))  # no temp file left either
    assert "no model written" in widget.status.text()
    # The words of the workflow's cancel report, as the command line prints them.
    assert "cancelled before the first epoch ended; no model was written" in (
        widget.result_label.text().lower()
    )
    assert widget.model_path_out is None and not widget.segment_button.isEnabled()
    assert segment.model.count() == models_before
    assert widget.run_button.isEnabled()


def test_no_reviewed_slices_is_refused(make_napari_viewer, phantom, tmp_path, model_file):
    from napari_microfossil._napari.finetune_widget import FinetuneWidget

    viewer = make_napari_viewer()
    labels = _add_scan(viewer, phantom, tmp_path, model_file, reviewed=())
    widget = FinetuneWidget(viewer)
    assert widget.labels.layer() is labels
    assert widget.slices_label.text().startswith("no reviewed slices")
    assert widget.run() is None
    assert widget.worker is None and not widget.runner.running
    assert "no reviewed slices" in widget.status.text()
    assert "Mark slice reviewed" in widget.status.text()
    del labels.metadata[REVIEW_KEY]  # a layer the Review widget never saw
    assert widget.run() is None and widget.worker is None


def test_other_refusals(setup, tmp_path):
    _, labels, _, widget = setup
    # An existing output is replaced only if the user agrees.
    target = tmp_path / "existing.safetensors"
    target.write_bytes(b"keep me")
    widget.output.setText(str(target))
    asked = []
    widget.confirm = lambda title, text: asked.append(text) or False
    assert widget.run() is None and widget.worker is None
    assert len(asked) == 1 and str(target) in asked[0]
    assert target.read_bytes() == b"keep me"
    # Not a model file name.
    widget.output.setText(str(tmp_path / "model.pt"))
    assert widget.run() is None and ".safetensors" in widget.status.text()
    # Labels whose classes are not the model's.
    widget.output.setText(str(tmp_path / "new.safetensors"))
    labels.metadata["class_names"] = ["background", "shell"]
    assert widget.run() is None and "classes" in widget.status.text()
    # A bad crop size is reported, not run.
    labels.metadata["class_names"] = ["background", "fossil", "pore"]
    widget.show_advanced.setChecked(True)
    assert not widget.advanced.isHidden()
    widget.crop_size.setValue(48)
    assert widget.run() is None and "crop_size" in widget.status.text()
    assert widget.worker is None


def test_curve_score_axis_follows_the_scores_and_the_base(qtbot):
    from napari_microfossil._napari.curve import TrainingCurve

    curve = TrainingCurve()
    qtbot.addWidget(curve)
    curve.add_epoch(1, 0.3, 0.880)
    curve.add_epoch(2, 0.2, 0.895)
    lo, hi = curve.score_range()
    assert 0.85 < lo < 0.88 and 0.895 < hi < 0.93  # not 0..1: a change of 0.015 shows
    curve.set_baseline(0.912)
    lo, hi = curve.score_range()
    assert lo < 0.88 and 0.912 < hi <= 1.0
    curve.add_epoch(3, 0.1, 0.999)
    assert curve.score_range()[1] == 1.0  # never above 1
    curve.clear()
    assert curve.baseline is None and curve.score_range() == (0.0, 1.0)


def test_curve_draws_loss_and_score(qtbot):
    from qtpy.QtGui import QColor

    from napari_microfossil._napari.curve import LOSS_COLOR, SCORE_COLOR, TrainingCurve

    curve = TrainingCurve()
    qtbot.addWidget(curve)
    curve.resize(300, 160)

    def count(color: QColor) -> int:
        img = curve.grab().toImage()
        n = 0
        for y in range(0, img.height(), 2):
            for x in range(0, img.width(), 2):
                c = img.pixelColor(x, y)
                n += (
                    abs(c.red() - color.red()) < 12
                    and abs(c.green() - color.green()) < 12
                    and abs(c.blue() - color.blue()) < 12
                )
        return n

    assert count(LOSS_COLOR) == 0 and count(SCORE_COLOR) == 0
    assert curve.score_range() == (0.0, 1.0)
    curve.add_epoch(1, 1.2, 0.3)
    curve.add_epoch(2, 0.8, 0.5)
    curve.set_live(3, 0.7)
    assert curve.points() == [(1, 1.2, 0.3), (2, 0.8, 0.5)]
    loss_px, score_px = count(LOSS_COLOR), count(SCORE_COLOR)
    assert loss_px > 20 and score_px > 20
    curve.add_epoch(3, 0.6, None)  # no validation: the loss only
    assert curve.points()[-1] == (3, 0.6, None)
    curve.clear()
    assert curve.points() == [] and count(LOSS_COLOR) == 0


def test_find_learning_rate_sets_the_engines_suggestion(setup, qtbot, model_file):
    from napari_microfossil._progress import drain
    from napari_microfossil.workflows.train import TrainRequest, iter_find_lr

    viewer, labels, _, widget = setup
    before = model_file.read_bytes()
    widget.lr.setValue(0.5)
    worker = widget.find_learning_rate()
    assert worker is not None and not widget.run_button.isEnabled()
    wait_idle(qtbot, widget.runner)
    expected = drain(
        iter_find_lr(
            TrainRequest(
                viewer.layers["scan"].data,
                labels.data,
                model_file.parent / "lr.safetensors",
                slices={"z": [2, 7, 10, 12]},
                base=model_file,
                config=widget.config(),
                device="cpu",
                classes=tuple(labels.metadata["class_names"]),
                smooth=0.0,
            )
        )
    )
    assert widget.lr.value() == pytest.approx(expected.suggestion, rel=1e-3, abs=1e-6)
    assert widget.lr.value() != 0.5
    assert "learning rate set to" in widget.status.text()
    assert widget.run_button.isEnabled()
    assert model_file.read_bytes() == before  # the base model is left as it was
    assert widget.model_path_out is None  # no model was written


def test_find_learning_rate_refuses_without_reviewed_slices(
    make_napari_viewer, phantom, tmp_path, model_file
):
    from napari_microfossil._napari.finetune_widget import FinetuneWidget

    viewer = make_napari_viewer()
    _add_scan(viewer, phantom, tmp_path, model_file, reviewed=())
    widget = FinetuneWidget(viewer)
    assert widget.find_learning_rate() is None and widget.worker is None
    assert widget.status.text().startswith("Find learning rate: no reviewed slices")


def test_panel_fits_a_laptop_screen_and_imports_no_other_panel(setup):
    import napari_microfossil._napari.finetune_widget as module

    *_, widget = setup
    assert widget.minimumSizeHint().height() <= 600
    source = inspect.getsource(module)
    assert "review_widget" not in source and "segment_widget" not in source


def test_panel_and_cli_build_the_same_request(setup, tmp_path):
    """The split, the classes and the recipe's checks are the workflow's: the panel hands
    it the reviewed slices and the layer's class names, as the CLI hands its options."""
    from napari_microfossil.cli import build_parser
    from napari_microfossil.cli.train import request_from_args
    from napari_microfossil.workflows.train import split_for_training

    _, labels, _, widget = setup
    request = widget.request()
    assert request.slices == {"z": [2, 7, 10, 12]} and request.overwrite
    assert request.classes == tuple(labels.metadata["class_names"])
    argv = ["train", "--image", "s.tif", "--labels", "l.tif", "--slices", "z:12,2,10,7"]
    argv += ["-o", str(tmp_path / "cli.safetensors"), "--classes", "background,fossil,pore"]
    cli = request_from_args(build_parser().parse_args(argv))
    assert split_for_training(cli, cli.slices) == split_for_training(request, request.slices)
    assert cli.classes == request.classes


# -- class names (issue 12): add and rename, class 0 is a class like any other ---------


def test_classes_field_proposes_the_labels_names(setup, phantom):
    _, _, _, widget = setup
    assert widget.classes.text() == ", ".join(phantom.class_names)


def test_new_and_renamed_classes_from_the_panel(setup, qtbot):
    """Labels with an id the base model lacks (3) and no names of their own: the user
    types four names, renaming class 0 too; the new model has exactly those."""
    from napari_microfossil.model import read_spec

    _, labels, _, widget = setup
    data = labels.data.copy()
    data[2, :8, :8] = 3  # on a reviewed slice
    labels.data = data
    labels.metadata.pop("class_names")
    widget._on_labels_changed()
    widget.classes.setText("pore, clay, grain, dense")
    widget.classes.setModified(True)  # as typing does
    widget.run()
    wait_idle(qtbot, widget.runner)
    assert "done" in widget.status.text(), widget.status.text()
    assert read_spec(widget.model_path_out).class_names == ("pore", "clay", "grain", "dense")
    assert "classes: pore, clay, grain, dense" in widget.model_info.text() or not (
        widget.last_result.improved
    )


def test_pixel_forest_from_the_panel(setup, qtbot):
    from napari_microfossil.model import load_model
    from napari_microfossil.model.pixel_forest import ARCHITECTURE

    viewer, labels, segment, widget = setup
    widget.method.setCurrentIndex(widget.method.findData("forest"))
    assert widget.run_button.text() == "Fit forest"
    assert not widget.minutes.isEnabled() and not widget.model.isEnabled()
    assert widget.curve.isHidden() and widget.model_info.isHidden()
    assert widget.request().method == "forest"
    assert widget.run() is not None
    wait_idle(qtbot, widget.runner)
    assert "done" in widget.status.text(), widget.status.text()
    assert "Pixel forest fitted: validation IoU fossil" in widget.result_label.text()
    assert "from none (pixel forest)" in widget.result_label.text()
    model = load_model(widget.model_path_out)
    assert model.spec.architecture == ARCHITECTURE
    assert model.spec.class_names == tuple(labels.metadata["class_names"])
    assert segment.model_path() == str(widget.model_path_out.resolve())
    # Segment again runs the forest and keeps the corrected slices
    segment_again_keeps_corrected_planes(viewer, segment, widget, qtbot)
    widget.method.setCurrentIndex(widget.method.findData("network"))
    assert widget.run_button.text() == "Fine-tune" and widget.minutes.isEnabled()
    assert not widget.curve.isHidden()
    assert widget.model_path().endswith(".safetensors") and widget.request().method == "network"
    assert widget.model_path() != str(widget.model_path_out.resolve())  # never a forest base
