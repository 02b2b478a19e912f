"""The training use cases: one path for the command line, the Fine-tune panel, the
benchmarks and the default-model script."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..._progress import Progress, ProgressGen
from ...errors import InputError
from ...metrics import IGNORE_INDEX
from ...model import ModelSpec
from ...training import LRFindResult, SliceSet, TrainConfig
from ...training.finetune import release_memory
from .planes import CappedLabels, in_memory, iter_cut_planes, labelled_planes
from .report import lr_find_report
from .request import (
    NEW_NETWORK_BASES,
    Notice,
    Notify,
    TrainRequest,
    TrainRun,
    _is_path,
    check_class_count,
    check_labelled,
    labelled_z_slices,
    split_for_training,
    unlabelled_ids,
)


def iter_run_training(
    request: TrainRequest, *, notify: Notify | None = None
) -> ProgressGen[TrainRun]:
    """Run `request`: cut the slices, build the model, train; yield progress.

    Yields
    ------
    Progress
        ``"load model"``, ``"smooth"`` (with smoothing: z-slices of the volume, or
        the planes cut when only they are read), ``"validate base model"``,
        ``"lr-find"`` (with the finder), ``"train"`` (per step; seconds under a time
        limit) and ``"validate"`` (per epoch).

    Returns
    -------
    TrainRun
    """
    warned: list[str] = []

    def tell(notice: Notice) -> None:
        if notice.kind == "warning":
            warned.extend(notice.lines)
        if notify is not None:
            notify(notice)

    if request.method == "forest":
        from .forest import run_forest

        run = yield from run_forest(request, tell)
        return dataclasses.replace(run, warnings=tuple(warned))
    network: Any = None
    try:
        prep = yield from _prepare(request, tell)
        train, val, spec, network, prov, train_sl, val_sl = prep
        gen = iter_train_slices(
            train,
            val,
            spec,
            network=network,
            config=request.config,
            output=request.output,
            device=request.device,
            provenance=prov,
            score_base=str(request.base) not in NEW_NETWORK_BASES,
            lr_find_steps=request.lr_find_steps if request.lr_find else None,
            use_lr_suggestion=request.use_lr_suggestion,
            notify=tell,
        )
        network = prep = None
        run = yield from gen
        return dataclasses.replace(
            run, train_slices=train_sl, val_slices=val_sl, warnings=tuple(warned)
        )
    finally:
        network = prep = None
        release_memory()


def iter_find_lr(request: TrainRequest) -> ProgressGen[LRFindResult]:
    """The learning-rate finder on the training slices `request` would train on (never
    the validation ones), with its base model and recipe; nothing is written and the
    base model is left as it was."""
    from ... import training

    network: Any = None
    try:
        train, _, spec, network, *_ = yield from _prepare(request, lambda notice: None)
        found = yield from training.iter_lr_find(
            train,
            spec,
            network=network,
            config=request.config,
            device=request.device,
            steps=request.lr_find_steps,
        )
        return found
    finally:
        network = None
        release_memory()


def _prepare(request: TrainRequest, tell: Notify, *, with_network: bool = True) -> Any:
    """Read the inputs, split, load the base model, cut the planes and fit the classes.

    Known slices, or a lazy scan or labels, are cut reading only their planes (the
    image's with the blocks smoothing needs, :mod:`.planes`); in-memory volumes whose
    labelled planes are searched for are smoothed whole, as before. Both give the
    same planes.

    Returns ``(train, val, spec, network, provenance, train_slices, val_slices)``.
    """
    from ...model import load_model, resolve_model_path
    from ...normalise import Normalisation, intensity_range, iter_presmooth
    from ...training import add_pixel_features, fit_head, max_label_id, slices_from_volume

    req = request
    image, labels, label_names, name = _read(req)
    slices = req.slices
    # The whole volume only when it is in memory and the labelled planes are unknown.
    whole = slices is None and in_memory(image, labels)
    if slices is None:
        skip = {"z": req.val_slices.get("z", [])}
        found = (
            labelled_z_slices(labels, skip=skip["z"])
            if whole
            else labelled_planes(labels, skip=skip)
        )
        if not found:
            raise InputError(
                f"{req.opt('labels')}: {req.labels} has no labelled voxels; paint some or pass "
                f"{req.opt('slices')}"
            )
        slices = {"z": found}
    check_labelled(labels, slices, req.opt("labels"))
    if whole:
        labels, dropped = unlabelled_ids(labels)
        _warn_dropped(req, dropped, tell)
    train_sl, val_sl = split_for_training(req, slices)
    yield Progress("load model", 0, 1)
    # A pixel forest has no base: the standard normalisation, not a network's.
    new = not with_network or str(req.base) in NEW_NETWORK_BASES
    base = None if new else load_model(req.base, device="cpu")
    norm = base.spec.normalisation if base is not None else Normalisation()
    if req.smooth is not None:
        norm = dataclasses.replace(norm, smooth=req.smooth)
    yield Progress("load model", 1, 1)
    if whole:
        # Smoothed once, for training and validation planes alike, as inference will.
        smoothed, cut = yield from iter_presmooth(image, norm)
        kw: dict[str, Any] = {"normalisation": cut, "value_range": intensity_range(smoothed, cut)}
        train = slices_from_volume(smoothed, labels, train_sl, name=name, **kw)
        val = slices_from_volume(smoothed, labels, val_sl, name=name, **kw) if val_sl else None
        del smoothed
    else:
        capped = CappedLabels(labels)
        train, val = yield from iter_cut_planes(image, capped, train_sl, val_sl, norm, name=name)
        _warn_dropped(req, capped.dropped, tell)
    top = max(max_label_id(train), max_label_id(val) if val is not None else 0)
    check_class_count(req.classes, top, req.opt("classes"))
    if not with_network:  # a pixel forest: only the classes and the normalisation
        from ...training import class_names_for_labels

        # no base model to inherit names from: the labels' own names, from id 0
        first = () if label_names else ("background",)
        names = req.classes or class_names_for_labels(first, top, label_class_names=label_names)
        spec = ModelSpec(class_names=tuple(names), normalisation=norm)
        base_desc = "none"
        network = None
    elif base is None:
        spec, network = _new_network(req, norm, top, label_names, tell)
        base_desc = str(req.base)
    else:
        base_desc = str(resolve_model_path(req.base))
        if req.pixel_features:
            network, with_features = add_pixel_features(base.network, base.spec, req.pixel_features)
            added_features = with_features is not base.spec
            base = dataclasses.replace(base, network=network, spec=with_features)
        else:
            added_features = False
        spec, network = _fit_classes(req, base, top, label_names, Path(base_desc).name, tell)
        spec = dataclasses.replace(spec, normalisation=norm)
        new_classes = set(spec.class_names) - set(base.spec.class_names)
        if req.new_head == "fit" and (new_classes or added_features):
            yield Progress("fit head", 0, 1)
            fitted = fit_head(network, train, spec.num_classes, seed=req.seed)
            yield Progress("fit head", 1, 1, fitted)
    prov: dict[str, Any] = {"base": base_desc}
    for key in ("image", "labels"):
        if _is_path(getattr(req, key)):
            prov[key] = str(getattr(req, key))
    prov.update(req.provenance)
    prov["train_slices"] = list(train.sources)
    prov["val_slices"] = list(val.sources) if val is not None else []
    prov["rounds"] = next_rounds(base.spec if base is not None else None, req, train_sl, val_sl)
    return train, val, spec, network, prov, train_sl, val_sl


def _warn_dropped(req: TrainRequest, dropped: int, tell: Notify) -> None:
    if dropped:
        tell(
            Notice(
                "warning",
                (
                    f"{req.opt('labels')}: {dropped} voxels hold ids above {IGNORE_INDEX - 1}, "
                    "which no class can have; they are ignored (as not labelled)",
                ),
            )
        )


def _score_saved(output: Any, planes: SliceSet, key: str, device: Any) -> float | None:
    """The score of the model saved in `output` on `planes` (None if none was saved)."""
    from ... import training
    from ...model import load_model

    if not Path(output).is_file():
        return None
    saved = load_model(output, device="cpu")
    scores = training.evaluate(
        saved.network, planes, saved.spec.class_names, device=device, tile=saved.spec.tile_size
    )
    return float(scores[key])


def next_rounds(base: Any, req: TrainRequest, train_sl: Any, val_sl: Any) -> list[dict[str, Any]]:
    """The correction rounds behind the model this run makes: the base model's rounds
    (the last one given the base's validation score, known only now) and this one.

    A round is ``{"model", "base", "train_slices", "val_slices", "score"}``, slices as
    ``{"z": [20, 48]}``, ``score`` the validation score the round's model reached
    (None when it had no validation slices). The model's own score, this round's, is
    in its metrics (:func:`~napari_microfossil.workflows.train.rounds_report`).
    """
    from ...model import default_score_key

    rounds: list[dict[str, Any]] = []
    if base is not None:
        earlier = base.provenance.get("rounds")
        rounds = (
            [dict(r) for r in earlier if isinstance(r, dict)] if isinstance(earlier, list) else []
        )
        if rounds:
            value = base.metrics.get(default_score_key(base))
            rounds[-1]["score"] = float(value) if isinstance(value, (int, float)) else None
    rounds.append(
        {
            "model": Path(req.output).name,
            "base": Path(str(req.base)).name if req.method == "network" else "none (pixel forest)",
            "train_slices": {k: [int(i) for i in v] for k, v in dict(train_sl).items()},
            "val_slices": {k: [int(i) for i in v] for k, v in dict(val_sl or {}).items()},
            "score": None,
        }
    )
    return rounds


def _read(req: TrainRequest) -> tuple[Any, Any, tuple[str, ...] | None, str]:
    """``(image, labels, the labels' class names, name)`` from files or arrays; lazy
    inputs (a zarr store, a lazy view) stay lazy."""
    from ...io import read_labels, read_volume

    names = tuple(req.label_class_names) if req.label_class_names else None
    image = req.image
    if _is_path(image):
        image = read_volume(image).data
    labels = req.labels
    if _is_path(labels):
        read = read_labels(labels)
        names = names or (tuple(read.class_names) if read.class_names else None)
        if tuple(image.shape) != tuple(read.data.shape):
            raise InputError(
                f"{req.opt('labels')}: expected the image's shape {tuple(image.shape)}, got "
                f"{tuple(read.data.shape)}"
            )
        labels = read.data
    elif not hasattr(labels, "shape"):
        labels = np.asarray(labels)
    name = req.name or (Path(req.image).name if _is_path(req.image) else "volume")
    return image, labels, names, name


def _new_network(
    req: TrainRequest, norm: Any, top: int, label_names: Sequence[str] | None, tell: Notify
) -> tuple[ModelSpec, Any]:
    import torch

    from ...model import build_network
    from ...training import class_names_for_labels

    names = req.classes or class_names_for_labels(label_names or ("background",), max(top, 1))
    spec = ModelSpec(class_names=tuple(names), normalisation=norm)
    weights = "imagenet" if str(req.base) == "imagenet" else None
    if weights:
        tell(
            Notice(
                "info",
                (
                    f"getting ImageNet weights for {spec.encoder} (needs the network the first "
                    "time; cached after)",
                ),
            )
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(req.seed)
        network = build_network(spec, encoder_weights=weights)
    return spec, network


def _fit_classes(
    req: TrainRequest,
    base: Any,
    top: int,
    label_names: Sequence[str] | None,
    model_name: str,
    tell: Notify,
) -> tuple[ModelSpec, Any]:
    """The base model with a head for the labels' classes (a warning if it changed)."""
    from ...training import class_names_for_labels, expand_classes

    names = req.classes or class_names_for_labels(
        base.spec.class_names, top, label_class_names=label_names
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        network, spec = expand_classes(
            base.network, base.spec, names, model_name=model_name, seed=req.seed
        )
    if caught:
        tell(Notice("warning", tuple(str(w.message) for w in caught)))
    return spec, network


def iter_train_slices(
    train: SliceSet,
    val: SliceSet | None,
    spec: ModelSpec,
    *,
    network: Any = None,
    config: TrainConfig,
    output: str | os.PathLike[str],
    device: Any = "auto",
    provenance: Mapping[str, Any] | None = None,
    score_base: bool = True,
    lr_find_steps: int | None = None,
    use_lr_suggestion: bool = True,
    notify: Notify | None = None,
) -> ProgressGen[TrainRun]:
    """Train on prepared planes: the common tail of every training run.

    Inside a torchrun process group when launched so; scores the base `network` on
    `val` first (``score_base``); runs the LR finder first when `lr_find_steps` is
    given; counts progress in seconds under a time limit; drops the network and
    releases GPU memory however it ends.
    """
    from ... import training
    from ...device import resolve_device
    from ...model import default_score_key
    from ...training.distributed import broadcast_object, distributed_session

    cfg = config
    key = default_score_key(spec)
    prov = dict(provenance or {})
    gen: Any = None
    found: LRFindResult | None = None
    try:
        with distributed_session(device) as ctx:
            dev = ctx.device if ctx.active else resolve_device(device)
            if ctx.active:
                prov["world_size"] = ctx.world_size
            before: float | None = None
            if score_base and network is not None and ctx.is_main:
                # On validation; without it, on the training slices (see TrainRun).
                stage = "validate base model" if val is not None else "score base model"
                yield Progress(stage, 0, 1)
                network.to(dev)
                scores = training.evaluate(
                    network, val or train, spec.class_names, device=dev, tile=spec.tile_size
                )
                before = float(scores[key])
                yield Progress(stage, 1, 1, {key: before})
            if lr_find_steps is not None:
                if ctx.is_main:  # the others wait for its suggestion
                    found = yield from training.iter_lr_find(
                        train, spec, network=network, config=cfg, device=dev, steps=lr_find_steps
                    )
                    if notify is not None:
                        explicit = None if use_lr_suggestion else cfg.lr
                        notify(Notice("lr-find", tuple(lr_find_report(found, explicit))))
                suggestion = broadcast_object(found.suggestion if found is not None else 0.0)
                if use_lr_suggestion:
                    cfg = dataclasses.replace(cfg, lr=suggestion)
                prov["lr_find"] = {
                    **(found.to_dict() if found is not None else {"suggestion": suggestion}),
                    "used": use_lr_suggestion,
                }
            gen = training.iter_train(
                train,
                val,
                spec,
                network=network,
                config=cfg,
                device=dev,
                output=str(output),
                provenance=prov,
                score_key=key,
            )
            network = None
            result = yield from _in_budget_units(gen, cfg, key)
        value = result.spec.metrics.get(key) if val is not None else None
        after = float(value) if isinstance(value, (int, float)) else None
        result.network = None
        fit: tuple[float | None, float | None] = (None, None)
        if val is None and before is not None:
            fit = (before, _score_saved(output, train, key, dev))
            before = None
        return TrainRun(
            path=Path(output),
            spec=result.spec,
            history=result.history,
            best_epoch=result.best_epoch,
            stopped=result.stopped,
            score_key=key,
            before=before,
            after=after,
            lr=cfg.lr,
            lr_found=found,
            fit_before=fit[0],
            fit_after=fit[1],
        )
    finally:
        # A closed (cancelled) generator still holds its frame until collected: drop
        # the network and the training generator (optimiser state) explicitly.
        if gen is not None:
            gen.close()
        gen = network = None
        release_memory()


def _in_budget_units(gen: Any, cfg: TrainConfig, key: str) -> Any:
    """Re-yield :func:`~napari_microfossil.training.iter_train`'s progress, counting
    seconds under a time limit (the step count does not end such a run, so a bar of
    steps would never fill); ``"validate"`` records keep epoch, loss, score and seconds."""
    from ...training.config import clock

    limit = cfg.time_limit_s
    t0 = clock(cfg.time_clock)
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        if p.stage == "validate":
            info = {k: p.info[k] for k in ("epoch", "loss", key, "seconds") if k in p.info}
        else:
            info = {k: v for k, v in p.info.items() if k in ("epoch", "loss", "lr")}
        if limit is not None:
            total = max(1, math.ceil(limit))
            yield Progress(p.stage, min(int(clock(cfg.time_clock) - t0), total), total, info)
        else:
            yield Progress(p.stage, p.done, p.total, info)


# --- what the front ends say ---------------------------------------------------------
