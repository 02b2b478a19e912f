"""Rounds in the panels: label slices placed from elsewhere are carried into every new
Segment result verbatim and stay reviewed; Review points past them; the next Fine-tune
starts from the last round's model and trains on every reviewed slice so far; class
names reach the labels layer (colours, status bar, Review's class picker)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from test_finetune_widget import tiny_cpu_training

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_microfossil._napari import layers as md
from napari_microfossil._napari.place import PLACED
from napari_microfossil.review import ReviewState

pytestmark = pytest.mark.gui

SHAPE = (16, 64, 64)
PLANES = (1, 6, 11)
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def phantom():
    from napari_microfossil.phantom import make_phantom

    return make_phantom(SHAPE, seed=5)


def _placed(viewer, phantom, tmp_path, *, planes=PLANES, mark: int | None = None):
    """The scan, and labels placed on it at `planes` (the phantom's labels there, 0
    elsewhere; `mark` painted over the first plane: a value no model gives)."""
    viewer.add_image(phantom.image, name="scan", metadata={"path": str(tmp_path / "scan.tif")})
    data = np.zeros(SHAPE, np.uint8)
    state = ReviewState.for_volume(SHAPE)
    for z in planes:
        data[z] = phantom.labels[z]
        state.mark_reviewed(z)
    if mark is not None:
        data[planes[0], :5] = mark
    meta = {md.REVIEW: state, PLACED: {"scan": "scan", "planes": list(planes), "numbers": []}}
    return viewer.add_labels(data, name="labels", metadata=meta)


def _panels(viewer, tmp_path, model_file):
    from napari_microfossil._napari.review_widget import ReviewWidget
    from napari_microfossil._napari.segment_widget import SegmentWidget

    review = ReviewWidget(viewer, confirm=lambda *_: True, cache_dir=tmp_path / "cache")
    viewer.window.add_dock_widget(review, name="Review")
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment")
    segment.add_model(model_file)
    segment.device.setCurrentIndex(segment.device.findData("cpu"))
    segment.confidence.setChecked(True)
    segment.confirm = lambda title, text: pytest.fail(f"unexpected question: {text}")
    return review, segment


def _wait(qtbot, runner):
    qtbot.waitUntil(lambda: not runner.running, timeout=TIMEOUT_MS)


def test_segment_keeps_placed_planes_and_review_points_past_them(
    make_napari_viewer, qtbot, phantom, tmp_path, model_file
):
    viewer = make_napari_viewer()
    placed = _placed(viewer, phantom, tmp_path, mark=7)
    review, segment = _panels(viewer, tmp_path, model_file)
    assert review.layer is placed
    segment.run()
    _wait(qtbot, segment.runner)

    result = viewer.layers["scan fossils"]
    for z in PLANES:  # bit for bit, the painted 7s included
        np.testing.assert_array_equal(result.data[z], placed.data[z])
    others = [z for z in range(SHAPE[0]) if z not in PLANES]
    assert not (result.data[others] == 7).any()  # the model's own labels elsewhere
    assert md.reviewed_slices_of(result) == {"z": list(PLANES)}
    assert "3 corrected slices kept" in segment.status.text()
    # Review follows the result and counts the placed planes as reviewed ...
    assert review.layer is result
    assert review.progress_label.text().startswith(f"3 of {SHAPE[0]} slices reviewed")
    # ... and sends the user to the least confident of the others.
    conf = np.asarray(viewer.layers["scan confidence"].data, dtype=float)
    means = conf.reshape(SHAPE[0], -1).mean(axis=1)
    expected = min(others, key=lambda z: means[z])
    assert review.go_to_next() == expected

    # Round 2: the user paints the suggested slice; Segment again keeps both.
    painted = expected
    result.data[painted] = 2
    review.mark_current_reviewed()
    assert md.reviewed_slices_of(result) == {"z": sorted([*PLANES, painted])}
    segment.run()
    _wait(qtbot, segment.runner)
    result = viewer.layers["scan fossils"]
    assert (result.data[painted] == 2).all()
    for z in PLANES:
        np.testing.assert_array_equal(result.data[z], placed.data[z])
    assert md.reviewed_slices_of(result) == {"z": sorted([*PLANES, painted])}
    assert "4 corrected slices kept" in segment.status.text()
    assert review.progress_label.text().startswith(f"4 of {SHAPE[0]} slices reviewed")


def test_a_plane_corrected_in_the_result_wins_over_the_placed_one(
    make_napari_viewer, qtbot, phantom, tmp_path, model_file
):
    viewer = make_napari_viewer()
    placed = _placed(viewer, phantom, tmp_path)
    _, segment = _panels(viewer, tmp_path, model_file)
    segment.run()
    _wait(qtbot, segment.runner)
    result = viewer.layers["scan fossils"]
    result.data[PLANES[1]] = 1  # corrected again, in the result
    segment.run()
    _wait(qtbot, segment.runner)
    result = viewer.layers["scan fossils"]
    assert (result.data[PLANES[1]] == 1).all()
    np.testing.assert_array_equal(result.data[PLANES[0]], placed.data[PLANES[0]])
    assert "3 corrected slices kept" in segment.status.text()


def test_second_finetune_starts_from_the_first_rounds_model(
    make_napari_viewer, qtbot, phantom, tmp_path, model_file, monkeypatch
):
    import torch

    import napari_microfossil.model as models
    from napari_microfossil._napari.finetune_widget import FinetuneWidget
    from napari_microfossil.workflows.train import TrainRun

    # "No worse than its base" decides whether the next round starts from a model; a
    # one-step run on a tiny network may go either way, so it is taken as given here.
    monkeypatch.setattr(TrainRun, "improved", property(lambda self: True))
    loaded: list[tuple[str, dict]] = []
    real_load = models.load_model

    def spying_load(path, *args, **kwargs):
        model = real_load(path, *args, **kwargs)
        state = {k: v.detach().clone() for k, v in model.network.state_dict().items()}
        loaded.append((str(path), state))
        return model

    monkeypatch.setattr(models, "load_model", spying_load)

    viewer = make_napari_viewer()
    placed = _placed(viewer, phantom, tmp_path)
    review, segment = _panels(viewer, tmp_path, model_file)
    widget = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Fine-tune")
    assert widget.labels.layer() is placed and widget.image.layer().name == "scan"
    widget.by_epochs.setChecked(True)
    widget.epochs.setValue(1)
    for box, value in ((widget.steps_per_epoch, 1), (widget.batch_size, 1)):
        box.setValue(value)
    widget.crop_size.setValue(64)
    widget.device.setCurrentIndex(widget.device.findData("cpu"))
    widget.model.addItem("tiny", str(model_file))
    widget.model.setCurrentIndex(widget.model.count() - 1)
    first = tmp_path / "round1.safetensors"
    widget.output.setText(str(first))
    assert widget.run() is not None, widget.status.text()
    _wait(qtbot, widget.runner)
    assert "done" in widget.status.text(), widget.status.text()
    assert widget.last_result.train_slices == {"z": list(PLANES)}
    assert widget.model_path() == str(first.resolve())  # the next round's base

    # Segment again: the placed planes come along into the result, still reviewed.
    widget.segment_again()
    _wait(qtbot, segment.runner)
    result = viewer.layers["scan fossils"]
    assert result.metadata[md.MODEL] == str(first.resolve())
    assert md.reviewed_slices_of(result) == {"z": list(PLANES)}
    nxt = review.go_to_next()
    assert nxt is not None and nxt not in PLANES
    result.data[nxt] = phantom.labels[nxt]  # corrected
    review.mark_current_reviewed()

    # Round 2 follows the result (all four reviewed slices), from round 1's model.
    widget.refresh()
    assert widget.labels.layer() is result
    assert widget.model_path() == str(first.resolve())
    second = tmp_path / "round2.safetensors"
    widget.output.setText(str(second))
    loaded.clear()
    assert widget.run() is not None, widget.status.text()
    _wait(qtbot, widget.runner)
    assert "done" in widget.status.text(), widget.status.text()
    run = widget.last_result
    trained = sorted([*run.train_slices.get("z", []), *run.val_slices.get("z", [])])
    assert trained == sorted([*PLANES, nxt])
    bases = [(p, s) for p, s in loaded if Path(p).resolve() == first.resolve()]
    assert bases, [p for p, _ in loaded]
    want = real_load(first).network.state_dict()
    start = bases[0][1]
    assert set(start) == set(want)
    assert all(torch.equal(start[k], want[k]) for k in want)
    rounds = run.spec.provenance["rounds"]
    assert len(rounds) == 2 and rounds[1]["base"] == "round1.safetensors"
    text = widget.result_label.text()
    assert "round 1: 3 slices (z:1,6,11)" in text and "round 2:" in text


def _four_class_model(tmp_path, tiny_spec):
    import dataclasses

    import torch

    from napari_microfossil.model import build_network, save_model

    spec = dataclasses.replace(tiny_spec, class_names=("pore", "clay", "grain", "dense"))
    torch.manual_seed(0)
    return save_model(tmp_path / "rock.safetensors", build_network(spec).eval(), spec)


def test_class_names_and_class_zero_on_the_result(
    make_napari_viewer, qtbot, phantom, tmp_path, tiny_spec
):
    viewer = make_napari_viewer()
    _placed(viewer, phantom, tmp_path)
    review, segment = _panels(viewer, tmp_path, _four_class_model(tmp_path, tiny_spec))
    segment.run()
    _wait(qtbot, segment.runner)
    result = viewer.layers["scan fossils"]
    assert md.class_names_of(result) == ["pore", "clay", "grain", "dense"]
    assert list(result.features["class"]) == ["pore", "clay", "grain", "dense"]
    # Class 0 is a class here: drawn, and named under the mouse.
    assert result.colormap.map(0)[3] > 0
    z, y, x = (int(v) for v in np.argwhere(np.asarray(result.data) == 0)[0])
    viewer.dims.set_current_step(0, z)  # napari reads the value on the slice shown
    status = result.get_status((z, y, x), world=False)
    assert "class: pore" in status["value"]
    items = [review.class_combo.itemText(i) for i in range(review.class_combo.count())]
    assert items == ["0: pore", "1: clay", "2: grain", "3: dense"]


def test_names_written_back_to_placed_labels_and_zero_explained(
    make_napari_viewer, phantom, tmp_path
):
    from napari_microfossil._napari.finetune_options import names_written_back
    from napari_microfossil._napari.review_widget import ReviewWidget

    viewer = make_napari_viewer()
    placed = _placed(viewer, phantom, tmp_path)
    review = ReviewWidget(viewer, confirm=lambda *_: True, cache_dir=tmp_path / "cache")
    assert review.class_combo.itemText(0) == "(no class names on this layer)"
    line = names_written_back(placed, ("pore", "clay", "grain"))
    assert line == "Class names on 'labels': pore, clay, grain."
    assert names_written_back(placed, ("pore", "clay", "grain")) == ""
    # Placed slices: 0 also means "not labelled", so it stays transparent, and says so.
    assert placed.colormap.map(0)[3] == 0 and placed.colormap.map(1)[3] > 0
    assert review.class_combo.itemText(0) == "0: pore (not drawn: label 0 is transparent)"
    assert review.class_combo.itemText(2) == "2: grain"
    assert list(placed.features["class"]) == ["pore (or unlabelled)", "clay", "grain"]


def test_every_slice_trains_and_pixel_features_reach_the_request(
    make_napari_viewer, qtbot, phantom, tmp_path, model_file
):
    from napari_microfossil._napari.finetune_widget import FinetuneWidget
    from napari_microfossil.model import read_spec

    viewer = make_napari_viewer()
    _placed(viewer, phantom, tmp_path, planes=(1, 4, 7, 10))
    widget = FinetuneWidget(viewer)
    qtbot.addWidget(widget)
    widget.model.addItem("tiny", str(model_file))
    widget.model.setCurrentIndex(widget.model.count() - 1)
    widget.output.setText(str(tmp_path / "all.safetensors"))
    assert "1 held out for validation" in widget.slices_label.text()
    assert widget.request().hold_out and widget.request().pixel_features is None
    widget.all_train.setChecked(True)
    assert "all train, none held out" in widget.slices_label.text()
    widget.pixel_features.setText("1, 2 4")
    request = widget.request()
    assert request.hold_out is False and request.pixel_features == (1.0, 2.0, 4.0)
    widget.pixel_features.setText("1, big")
    assert widget.run() is None and "pixel features: expected sigmas" in widget.status.text()
    widget.pixel_features.setText("0")
    assert widget.run() is None and "pixel features: expected sigmas" in widget.status.text()
    widget.pixel_features.setText("")
    tiny_cpu_training(widget)
    assert widget.run() is not None, widget.status.text()
    _wait(qtbot, widget.runner)
    run = widget.last_result
    assert run.val_slices == {} and run.train_slices == {"z": [1, 4, 7, 10]}
    assert run.fit_before is not None and run.fit_after is not None
    text = widget.result_label.text()
    assert f"On those slices IoU fossil: {run.fit_before:.3f} (base)" in text
    assert read_spec(widget.model_path_out).provenance["val_slices"] in ({}, None, [])


def test_a_model_worse_on_its_own_slices_says_so(make_napari_viewer, phantom, tmp_path, tiny_model):
    from napari_microfossil._napari.finetune_widget import FinetuneWidget
    from napari_microfossil._napari.segment_widget import SegmentWidget
    from napari_microfossil.model import read_spec, save_model
    from napari_microfossil.workflows.train import TrainRun

    viewer = make_napari_viewer()
    _placed(viewer, phantom, tmp_path)
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment")
    chosen = segment.model_path()
    widget = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Fine-tune")
    path = save_model(tmp_path / "worse.safetensors", tiny_model.network, tiny_model.spec)
    run = TrainRun(
        path=path,
        spec=read_spec(path),
        history=[{"epoch": 1, "loss": 0.5}],
        best_epoch=1,
        stopped="epochs",
        score_key="iou_fossil",
        before=None,
        after=None,
        fit_before=0.6,
        fit_after=0.4,
    )
    widget._on_result(run)
    text = widget.result_label.text()
    assert "No validation" in text
    assert "0.600 (base) → 0.400 (fine-tuned); below the base even on the slices it learned" in text
    assert "Segment keeps the model it had" in text
    assert segment.model_path() == chosen and widget.model_path() != str(path.resolve())


def test_class_zero_is_drawn_on_a_result_and_not_on_placed_slices(make_napari_viewer):
    """On the canvas: a named class 0 in colour where every voxel has a class, nothing
    where 0 also means "not labelled"."""
    viewer = make_napari_viewer(show=True)
    data = np.zeros((3, 40, 40), np.uint8)
    data[:, 20:] = 1
    layer = viewer.add_labels(data, name="result", opacity=1.0)
    md.show_class_names(layer, ["pore", "clay"])
    viewer.reset_view()

    def pixels():
        img = viewer.screenshot(canvas_only=True, flash=False)
        h, w = img.shape[:2]
        return img[h // 4, w // 2, :3], img[3 * h // 4, w // 2, :3]

    pore, clay = pixels()
    assert pore.max() > 100 and clay.max() > 100 and not np.array_equal(pore, clay)
    layer.metadata[PLACED] = {"scan": "scan", "planes": [1], "numbers": []}
    md.show_class_names(layer, ["pore", "clay"])
    pore, clay = pixels()
    assert pore.max() == 0 and clay.max() > 100
