"""Fit a pixel forest (:mod:`napari_microfossil.model.pixel_forest`) to labelled planes.

The ilastik recipe with auto-context: stage 1 is a random forest (scikit-learn) on the
multiscale pixel features of a random sample of labelled pixels; each later stage
also sees the previous stage's class probabilities blurred at several scales. A later
stage must learn from probabilities like those it will meet on new slices, not from a
forest's near-perfect answers on its own training pixels: the probabilities it trains
on are out of fold (each plane predicted by a forest fitted without it; a single plane
is split into its top and bottom halves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._progress import Progress, ProgressGen
from ..metrics import IGNORE_INDEX
from ..model.pixel_features import DEFAULT_SIGMAS
from ..model.pixel_forest import DEFAULT_CONTEXT_SIGMAS
from .slices import SliceSet

#: At most this many folds for the out-of-fold probabilities.
MAX_FOLDS = 5


@dataclass(frozen=True)
class ForestRecipe:
    """How a pixel forest is fitted.

    Parameters
    ----------
    stages : int
        1: the plain ilastik forest; 2 or more: auto-context stages.
    trees : int
        Trees of each stage's forest.
    fold_trees : int
        Trees of the out-of-fold forests that make the later stages' training inputs.
    pixels_per_plane : int
        Random labelled pixels drawn from each plane.
    sigmas, context_sigmas : sequence of float
        Pixel-feature sigmas; blur sigmas of the context probabilities.
    min_samples_leaf : int
        scikit-learn's; larger gives smaller trees (faster to run, coarser).
    """

    stages: int = 2
    trees: int = 100
    fold_trees: int = 50
    pixels_per_plane: int = 20000
    sigmas: tuple[float, ...] = DEFAULT_SIGMAS
    context_sigmas: tuple[float, ...] = DEFAULT_CONTEXT_SIGMAS
    min_samples_leaf: int = 1

    def __post_init__(self) -> None:
        for name in ("stages", "trees", "fold_trees", "pixels_per_plane", "min_samples_leaf"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": self.stages,
            "trees": self.trees,
            "fold_trees": self.fold_trees,
            "pixels_per_plane": self.pixels_per_plane,
            "sigmas": list(self.sigmas),
            "context_sigmas": list(self.context_sigmas),
            "min_samples_leaf": self.min_samples_leaf,
        }


def _sample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    where = np.flatnonzero(labels.reshape(-1) != IGNORE_INDEX)
    if where.size <= n:
        return where
    return np.sort(rng.choice(where, size=n, replace=False))


def _regions(data: SliceSet) -> list[np.ndarray]:
    """Fold id of each pixel of each plane: the plane's index mod :data:`MAX_FOLDS`,
    or for a single plane its top (0) and bottom (1) half."""
    if len(data.labels) == 1:
        h, w = data.labels[0].shape
        return [np.repeat((np.arange(h) >= h // 2).astype(np.int64)[:, None], w, axis=1)]
    k = min(MAX_FOLDS, len(data.labels))
    return [np.full(lab.shape, i % k, np.int64) for i, lab in enumerate(data.labels)]


def iter_fit_forest(
    data: SliceSet,
    num_classes: int,
    recipe: ForestRecipe | None = None,
    *,
    seed: int = 0,
    n_jobs: int | None = None,
) -> ProgressGen[Any]:
    """Fit a :class:`~napari_microfossil.model.pixel_forest.PixelForestNet`; a generator
    yielding progress and returning the network.

    Parameters
    ----------
    data : SliceSet
        Normalised planes (as the model will see them) and their labels; 255 is
        unlabelled.
    num_classes : int
        Classes of the model (ids above are refused).
    recipe : ForestRecipe
    seed : int
        Seeds the pixel sample and the forests.
    n_jobs : int, optional
        scikit-learn's (None: all cores).

    Raises
    ------
    ValueError
        No labelled pixel, or a label id >= `num_classes`.
    """
    import torch
    from sklearn.ensemble import RandomForestClassifier

    from ..model.pixel_forest import arch_kwargs_of, build_forest, state_of

    recipe = recipe or ForestRecipe()
    rng = np.random.default_rng(seed)
    picks = [_sample(lab, recipe.pixels_per_plane, rng) for lab in data.labels]
    if sum(p.size for p in picks) == 0:
        raise ValueError("pixel forest: no labelled pixel to fit on")
    ys = [lab.reshape(-1)[p].astype(np.int64) for lab, p in zip(data.labels, picks, strict=True)]
    top = max(int(y.max()) for y in ys if y.size)
    if top >= num_classes:
        raise ValueError(f"pixel forest: label id {top} but only {num_classes} classes")
    regions = _regions(data)
    folds = [r.reshape(-1)[p] for r, p in zip(regions, picks, strict=True)]
    fold_ids = sorted({int(f) for r in regions for f in np.unique(r)})
    y_all = np.concatenate(ys)
    fold_all = np.concatenate(folds)
    skeleton = build_forest(
        num_classes,
        {
            "sigmas": recipe.sigmas,
            "context_sigmas": recipe.context_sigmas,
            "nodes": [1],
            "trees": [1],
            "depth": [0],
        },
    )
    n_planes = len(data.images)
    # per stage: each plane's inputs, the forest; before a later stage: the fold
    # forests and each plane's out-of-fold probabilities
    later = recipe.stages - 1
    total = recipe.stages * (n_planes + 1) + later * (len(fold_ids) + n_planes)
    done = 0

    def features(i: int) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(data.images[i], np.float32))[None, None]
        return skeleton.pixel_features(x)

    def forest(trees: int, x: np.ndarray, y: np.ndarray, stage: int) -> Any:
        return RandomForestClassifier(
            n_estimators=trees,
            min_samples_leaf=recipe.min_samples_leaf,
            n_jobs=n_jobs,
            random_state=seed + stage,
        ).fit(x, y)

    def probs_of(clf: Any, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (1, C, H, W) of a plane's stage inputs (1, F, H, W)."""
        _, f, h, w = x.shape
        p = clf.predict_proba(x[0].reshape(f, -1).T.numpy())
        full = np.zeros((h * w, num_classes), np.float32)
        full[:, clf.classes_] = p
        return torch.from_numpy(np.ascontiguousarray(full.T).reshape(1, num_classes, h, w))

    forests: list[Any] = []
    prev: list[torch.Tensor | None] = [None] * n_planes
    for stage in range(recipe.stages):
        xs = []
        for i in range(n_planes):
            inputs = skeleton.stage_inputs(features(i), prev[i])
            c = inputs.shape[1]
            xs.append(inputs[0].reshape(c, -1)[:, torch.from_numpy(picks[i])].T.numpy())
            done += 1
            yield Progress("fit pixel forest", done, total, {"stage": stage + 1})
        x_all = np.concatenate(xs)
        del xs
        forests.append(forest(recipe.trees, x_all, y_all, stage))
        done += 1
        yield Progress("fit pixel forest", done, total, {"stage": stage + 1})
        if stage + 1 == recipe.stages:
            break
        fold_models = {}
        for f in fold_ids:
            keep = fold_all != f
            # a fold holding every labelled pixel (the other planes unlabelled): no forest
            # can be fitted without it, so its planes get the stage's own answers
            fold_models[f] = (
                forest(recipe.fold_trees, x_all[keep], y_all[keep], stage)
                if keep.any()
                else forests[-1]
            )
            done += 1
            yield Progress("fit pixel forest", done, total, {"stage": stage + 1})
        del x_all
        nxt = []
        for i in range(n_planes):
            inputs = skeleton.stage_inputs(features(i), prev[i])
            out = None
            for f in np.unique(regions[i]).tolist():
                p = probs_of(fold_models[f], inputs)
                if out is None:
                    out = p
                else:
                    mask = torch.from_numpy(regions[i] == f)
                    out[0][:, mask] = p[0][:, mask]
            nxt.append(out)
            done += 1
            yield Progress("fit pixel forest", done, total, {"stage": stage + 1})
        prev = nxt
    net = build_forest(num_classes, arch_kwargs_of(forests, recipe.sigmas, recipe.context_sigmas))
    net.load_state_dict(state_of(forests, num_classes))
    return net
