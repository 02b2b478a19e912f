"""The pixel forest: scikit-learn trees as tensors, auto-context fitting, model files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_microfossil._progress import Progress, drain
from napari_microfossil.metrics import IGNORE_INDEX
from napari_microfossil.model import ModelSpec, load_model, read_spec, save_model
from napari_microfossil.model.pixel_forest import (
    ARCHITECTURE,
    arch_kwargs_of,
    build_forest,
    context_features,
    state_of,
)
from napari_microfossil.segmentation import iter_segment
from napari_microfossil.training.forest import ForestRecipe, _regions, iter_fit_forest
from napari_microfossil.training.slices import SliceSet, slices_from_volume


def _phases(seed: int, shape: tuple[int, ...] = (3, 64, 64)) -> tuple[np.ndarray, np.ndarray]:
    """A scan of three phases told apart by smoothed intensity, and its labels."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.normal(size=shape), (0, 4, 4))
    field /= field.std()
    labels = np.digitize(field, [-0.5, 0.6]).astype(np.uint8)
    image = (60.0 * labels + rng.normal(0, 18, shape) + 40).clip(0, 255).astype(np.uint8)
    return image, labels


def test_tensor_trees_give_scikit_learns_probabilities(monkeypatch) -> None:
    from sklearn.ensemble import RandomForestClassifier

    from napari_microfossil.model import pixel_forest

    monkeypatch.setattr(pixel_forest, "_SKLEARN_CHUNK", 37)  # several chunks of pixels
    monkeypatch.setattr(pixel_forest, "_CHUNK", 29)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 1)  # ids 0, 1, 2, 3
    y[y == 2] = 0  # class 2 never occurs: its probability must be 0
    forest = RandomForestClassifier(n_estimators=7, random_state=0).fit(x, y)
    kwargs = arch_kwargs_of([forest], [1.0], [1.0])
    net = build_forest(4, kwargs)
    net.load_state_dict(state_of([forest], 4))
    probe = rng.normal(size=(1, 6, 10, 20)).astype(np.float32)
    got = net.stage_probs(0, torch.from_numpy(probe))[0].numpy()  # (C, H, W)
    want = forest.predict_proba(probe[0].reshape(6, -1).T)  # (H*W, 3 seen classes)
    full = np.zeros((200, 4), np.float32)
    full[:, forest.classes_] = want
    np.testing.assert_allclose(got.reshape(4, -1).T, full, atol=2e-3)
    assert np.all(got[2] == 0)
    # the torch walk (GPUs, or a scikit-learn that cannot take the trees) agrees
    flat = torch.from_numpy(probe[0].reshape(6, -1).T.copy())
    torch.testing.assert_close(net._torch_probs(0, flat), net._sklearn_probs(0, flat))
    assert kwargs["trees"] == [7] and kwargs["nodes"][0] == sum(
        t.tree_.node_count for t in forest.estimators_
    )


def test_context_features_keep_probabilities_and_blur_them() -> None:
    probs = torch.zeros(1, 2, 9, 9)
    probs[0, 0, 4, 4] = 1.0
    probs[0, 1] = 1.0 - probs[0, 0]
    out = context_features(probs, [1.0, 2.0])
    assert out.shape == (1, 6, 9, 9)
    assert torch.equal(out[:, :2], probs)
    assert 0 < out[0, 2, 4, 4] < 1 and out[0, 4, 4, 4] < out[0, 2, 4, 4]  # wider, lower
    torch.testing.assert_close(out[0, 2] + out[0, 3], torch.ones(9, 9))


def test_one_plane_is_split_into_halves_and_many_planes_into_five_folds() -> None:
    one = SliceSet(images=[np.zeros((6, 4), np.float32)], labels=[np.zeros((6, 4), np.uint8)])
    (r,) = _regions(one)
    assert r[:3].max() == 0 and r[3:].min() == 1
    many = SliceSet(
        images=[np.zeros((2, 2), np.float32)] * 7, labels=[np.zeros((2, 2), np.uint8)] * 7
    )
    assert [int(r[0, 0]) for r in _regions(many)] == [0, 1, 2, 3, 4, 0, 1]


def test_fitted_forest_segments_new_slices_and_survives_its_model_file(tmp_path) -> None:
    image, labels = _phases(1)
    data = slices_from_volume(image, labels, {"z": [0, 1]})
    steps: list[Progress] = []
    gen = iter_fit_forest(
        data, 3, ForestRecipe(stages=2, trees=8, fold_trees=4, pixels_per_plane=1500)
    )
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as stop:
        net = stop.value
    assert steps[-1].done == steps[-1].total and net.stages == 2
    spec = ModelSpec(
        class_names=("a", "b", "c"),
        architecture=ARCHITECTURE,
        encoder="none",
        arch_kwargs=net.arch_kwargs,
        tile_size=64,
    )
    path = save_model(tmp_path / "forest.safetensors", net, spec)
    assert read_spec(path).architecture == ARCHITECTURE
    model = load_model(path)
    x = torch.from_numpy(data.images[0])[None, None]
    torch.testing.assert_close(model.network(x), net(x))  # nothing lost in the file
    seg = drain(iter_segment(image[2:], model, axes="z", device="cpu")).labels
    assert (seg == labels[2:]).mean() > 0.85  # a slice it never saw


def test_unlabelled_pixels_are_never_sampled_and_bad_ids_are_refused() -> None:
    image, labels = _phases(2, (2, 32, 32))
    labels[:, :, :16] = IGNORE_INDEX
    data = slices_from_volume(image, labels, {"z": [0, 1]})
    net = drain(iter_fit_forest(data, 3, ForestRecipe(stages=1, trees=3)))
    assert net.stages == 1
    bad = slices_from_volume(
        image, np.where(labels == IGNORE_INDEX, 0, 5).astype(np.uint8), {"z": [0]}
    )
    with pytest.raises(ValueError, match="label id 5"):
        drain(iter_fit_forest(bad, 3, ForestRecipe(stages=1, trees=3)))
    none = slices_from_volume(image, np.full_like(labels, IGNORE_INDEX), {"z": [0]})
    with pytest.raises(ValueError, match="no labelled pixel"):
        drain(iter_fit_forest(none, 3))


def test_auto_context_when_one_plane_holds_every_label() -> None:
    image, labels = _phases(6, (2, 32, 32))
    labels[1] = IGNORE_INDEX  # plane 1 reviewed but empty: no fold forest without plane 0
    data = slices_from_volume(image, labels, {"z": [0, 1]})
    net = drain(iter_fit_forest(data, 3, ForestRecipe(stages=2, trees=3, fold_trees=2)))
    x = torch.from_numpy(data.images[0])[None, None]
    assert net.stages == 2 and torch.isfinite(net(x)).all()


@pytest.mark.parametrize("field", ["stages", "trees", "pixels_per_plane"])
def test_recipe_refuses_counts_below_one(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ForestRecipe(**{field: 0})


def test_train_command_fits_a_forest_that_segment_uses(tmp_path, capsys) -> None:
    from napari_microfossil.cli import main
    from napari_microfossil.io import read_labels, write_tiff

    image, labels = _phases(3, (4, 64, 64))
    scan = write_tiff(tmp_path / "scan.tif", image)
    lab = write_tiff(tmp_path / "labels.tif", labels, class_names=["pore", "clay", "grain"])
    model = tmp_path / "forest.safetensors"
    args = ["train", "--image", str(scan), "--labels", str(lab), "-o", str(model)]
    args += ["--slices", "z:0,1", "--val-slices", "z:2", "--method", "forest"]
    assert main([*args, "--forest-trees", "6"]) == 0
    out = capsys.readouterr().out
    assert "Pixel forest fitted; iou_clay" in out and "on validation" in out
    spec = read_spec(model)
    assert spec.class_names == ("pore", "clay", "grain")  # class 0 is simply the first
    assert spec.provenance["method"] == "forest" and spec.metrics["iou_clay"] > 0.5
    assert spec.provenance["forest"]["trees"] == 6
    assert main(["info", str(model)]) == 0
    assert "pixel forest, 2 stage(s) of [6, 6] trees" in capsys.readouterr().out
    seg = tmp_path / "seg.tif"
    assert main(["segment", str(scan), "-o", str(seg), "--model", str(model)]) == 0
    assert (read_labels(seg).data[3] == labels[3]).mean() > 0.85  # never labelled
    assert main([*args, "--forest-stages", "0", "--overwrite"]) == 2
    assert "--forest-stages: expected an integer >= 1, got 0" in capsys.readouterr().err
    # the network's options would be ignored by a forest: refused, by name, nothing written
    model.unlink()
    assert main([*args, "--base", "scratch", "--epochs", "3", "--pixel-features", "1,2"]) == 2
    err = capsys.readouterr().err
    assert "--method forest: --base, --epochs, --pixel-features only apply to the network" in err
    assert not model.exists()


def test_forest_request_without_validation_scores_the_training_slices(tmp_path) -> None:
    from napari_microfossil.workflows.train import TrainRequest, iter_run_training

    image, labels = _phases(4, (3, 48, 48))
    request = TrainRequest(
        image,
        labels,
        tmp_path / "f.safetensors",
        slices={"z": [0, 1]},
        hold_out=False,
        method="forest",
        forest=ForestRecipe(stages=1, trees=4),
        classes=("a", "b", "c"),
    )
    run = drain(iter_run_training(request))
    assert run.after is None and run.fit_after is not None and run.fit_after > 0.5
    assert run.improved and run.stopped == "fitted"
    assert load_model(run.path).spec.architecture == ARCHITECTURE
    with pytest.raises(Exception, match="method: expected one of network, forest"):
        TrainRequest(image, labels, tmp_path / "g.safetensors", method="svm")


def test_a_forest_is_not_a_base_to_fine_tune(tmp_path) -> None:
    from napari_microfossil.errors import InputError
    from napari_microfossil.workflows.train import TrainRequest

    image, labels = _phases(5, (2, 32, 32))
    data = slices_from_volume(image, labels, {"z": [0]})
    net = drain(iter_fit_forest(data, 3, ForestRecipe(stages=1, trees=2)))
    spec = ModelSpec(
        class_names=("a", "b", "c"),
        architecture=ARCHITECTURE,
        encoder="none",
        arch_kwargs=net.arch_kwargs,
    )
    forest = save_model(tmp_path / "forest.safetensors", net, spec)
    with pytest.raises(InputError, match="is a pixel forest, which is fitted anew"):
        TrainRequest(image, labels, tmp_path / "n.safetensors", base=forest)
    # a forest request may name one (it is simply not used)
    TrainRequest(image, labels, tmp_path / "n.safetensors", base=forest, method="forest")
