"""The pixel forest's training run (``TrainRequest.method == "forest"``): the planes
as for a network, then :func:`~napari_microfossil.training.forest.iter_fit_forest`
instead of gradient descent."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..._progress import Progress, ProgressGen
from .request import Notify, TrainRequest, TrainRun
from .run import _prepare


def run_forest(request: TrainRequest, tell: Notify) -> ProgressGen[TrainRun]:
    """Fit a pixel forest on the training planes, score it on the validation planes
    (or, without them, on the training planes: ``fit_after``) and write it."""
    from ... import training
    from ...device import resolve_device
    from ...model import default_score_key, save_model
    from ...model.pixel_forest import ARCHITECTURE, FOREST_TILE
    from ...training.forest import ForestRecipe, iter_fit_forest

    req = request
    prep = yield from _prepare(req, tell, with_network=False)
    train, val, spec, _, prov, train_sl, val_sl = prep
    recipe = req.forest or ForestRecipe()
    net = yield from iter_fit_forest(train, spec.num_classes, recipe, seed=req.seed)
    key = default_score_key(spec)
    stage = "validate" if val is not None else "score"
    yield Progress(stage, 0, 1)
    scores = training.evaluate(
        net, val or train, spec.class_names, device=resolve_device(req.device), tile=FOREST_TILE
    )
    yield Progress(stage, 1, 1, {key: float(scores[key])})
    prov["method"] = "forest"
    prov["forest"] = recipe.to_dict()
    spec = dataclasses.replace(
        spec,
        architecture=ARCHITECTURE,
        encoder="none",
        arch_kwargs=net.arch_kwargs,
        tile_size=FOREST_TILE,
        provenance=prov,
        metrics=dict(scores) if val is not None else {},
    )
    save_model(req.output, net, spec, overwrite=True)
    score = float(scores[key])
    return TrainRun(
        path=Path(req.output),
        spec=spec,
        history=[],
        best_epoch=0,
        stopped="fitted",
        score_key=key,
        before=None,
        after=score if val is not None else None,
        train_slices=train_sl,
        val_slices=val_sl,
        fit_after=None if val is not None else score,
    )
