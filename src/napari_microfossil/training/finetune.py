"""Fine-tune a model on the slices a user reviewed and corrected.

What the Fine-tune widget (and any front end) needs on top of :mod:`.training`: the
reviewed slices of a volume split into training and held-out validation slices, the
training planes cut from the volume with the model's normalisation, a default output
path beside the scan, and :func:`iter_finetune`, which loads the base model, scores it
on the validation slices, trains, and returns the before/after scores, releasing the
network (and GPU memory) however it ends.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import logging
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import Progress, ProgressGen, drain
from ..axes import AXES
from ..errors import InputError
from ..metrics import IGNORE_INDEX
from ..model import ModelSpec
from .config import TrainConfig
from .slices import SliceSet, slices_from_volume, split_slices

log = logging.getLogger(__name__)

#: Below this many reviewed slices, all of them train and none is held out (the
#: command line's rule too: three corrected slices all train).
MIN_SLICES_FOR_VALIDATION = 4
#: Share of the reviewed slices held out for validation.
VAL_FRACTION = 0.25


def count_slices(slices: Mapping[str, Sequence[int]]) -> int:
    """Number of slices in a ``{"z": [...], "y": [...]}`` mapping."""
    return sum(len(v) for v in slices.values())


def describe_slices(slices: Mapping[str, Sequence[int]]) -> str:
    """``"5 reviewed slices (z: 3, y: 2)"``; ``"no reviewed slices"`` when empty."""
    n = count_slices(slices)
    if n == 0:
        return "no reviewed slices"
    per_axis = ", ".join(f"{a}: {len(slices[a])}" for a in AXES if slices.get(a))
    return f"{n} reviewed slice{'s' if n != 1 else ''} ({per_axis})"


def split_reviewed(
    slices: Mapping[str, Sequence[int]],
    *,
    val_fraction: float = VAL_FRACTION,
    min_slices_for_validation: int = MIN_SLICES_FOR_VALIDATION,
    seed: int = 0,
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Split reviewed slices into training and held-out validation slices.

    Parameters
    ----------
    slices : dict
        Axis (``"z"``, ``"y"``, ``"x"``) to slice indices.
    val_fraction : float
        Share held out (at least one slice, never all).
    min_slices_for_validation : int
        With fewer slices than this, all of them train and the validation is empty.
    seed : int
        Seeds the random choice of the held-out slices.

    Returns
    -------
    train, val : dict
        The same form as `slices`; `val` is empty when nothing is held out.

    Raises
    ------
    InputError
        If an axis is not ``"z"``, ``"y"`` or ``"x"``.
    """
    items: list[tuple[str, int]] = []
    for axis, indices in slices.items():
        if axis not in AXES:
            raise InputError(f"slices: expected axes among 'z', 'y', 'x', got {axis!r}")
        items.extend((axis, int(i)) for i in sorted(set(indices)))
    tr_idx, va_idx = split_slices(
        [f"{a}={i}" for a, i in items],
        val_fraction=val_fraction,
        rng=np.random.default_rng(seed),
        min_items=min_slices_for_validation,
    )

    def gather(idx: list[int]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for k in idx:
            axis, i = items[k]
            out.setdefault(axis, []).append(i)
        return {a: sorted(out[a]) for a in AXES if a in out}

    return gather(tr_idx), gather(va_idx)


def prepare_slices(
    image: Any,
    labels: Any,
    train_slices: Mapping[str, Sequence[int]],
    val_slices: Mapping[str, Sequence[int]] | None,
    spec: ModelSpec,
    *,
    name: str = "volume",
) -> tuple[SliceSet, SliceSet | None]:
    """Cut the training and validation planes out of a volume, normalised for `spec`.

    Both sets share one intensity range (that of the whole volume, as inference uses);
    with ``spec.normalisation.smooth > 0`` the volume is smoothed first, also as
    inference does.

    Parameters
    ----------
    image, labels : array-like, shape (Z, Y, X)
    train_slices, val_slices : dict
        Axis to slice indices, e.g. from :func:`split_reviewed`.
    spec : ModelSpec
        The model to train; its normalisation is applied and its classes bound the
        label values.

    Returns
    -------
    train : SliceSet
    val : SliceSet or None
        None when `val_slices` is empty.

    Raises
    ------
    InputError
        If the shapes differ, a slice is outside the volume, there is no training slice,
        or a label value has no class in `spec`.
    """
    from ..normalise import intensity_range, iter_presmooth

    if count_slices(train_slices) == 0:
        raise InputError("slices: expected at least one reviewed slice to train on, got none")
    if tuple(image.shape) != tuple(labels.shape):
        raise InputError(
            f"labels: expected the image's shape {tuple(image.shape)}, got {tuple(labels.shape)}"
        )
    # Smooth once for both sets, as inference will.
    image, norm = drain(iter_presmooth(image, spec.normalisation))
    value_range = intensity_range(image, norm)
    kw: dict[str, Any] = {"normalisation": norm, "value_range": value_range}
    train = slices_from_volume(image, labels, train_slices, name=name, **kw)
    val = (
        slices_from_volume(image, labels, val_slices, name=name, **kw)
        if val_slices and count_slices(val_slices)
        else None
    )
    n = spec.num_classes
    for data in (train, val):
        if data is None:
            continue
        for lab, source in zip(data.labels, data.sources, strict=True):
            top = int(lab[lab != IGNORE_INDEX].max(initial=0))
            if top >= n:
                raise InputError(
                    f"labels: {source} has class id {top}, but the model has only the classes "
                    f"{list(spec.class_names)} (ids 0..{n - 1})"
                )
    return train, val


def default_output_path(
    scan_path: str | os.PathLike[str] | None,
    *,
    name: str = "model",
    today: datetime.date | None = None,
    fallback_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """A new model path beside the scan: ``<scan>_finetuned_<YYYYMMDD>.safetensors``.

    An existing file is never proposed: ``_2``, ``_3``, … are appended instead.

    Parameters
    ----------
    scan_path : path or None
        The scan (file or folder of slices); None when unknown.
    name : str
        Stem used when `scan_path` is None (e.g. the image layer's name).
    today : date, optional
        The date in the name; today if omitted.
    fallback_dir : path, optional
        Where to write when the scan is unknown or its folder is not writable; the
        home folder if omitted.
    """
    date = (today or datetime.date.today()).strftime("%Y%m%d")
    folder: Path | None = None
    stem = re.sub(r"[^\w.-]+", "_", name).strip("._") or "model"
    if scan_path:
        scan = Path(scan_path)
        folder = scan.parent
        stem = scan.name
        for suffix in (".tiff", ".tif", ".zarr", ".ome"):
            if stem.lower().endswith(suffix) and len(stem) > len(suffix):
                stem = stem[: -len(suffix)]
    if folder is None or not os.access(folder, os.W_OK | os.X_OK):
        folder = Path(fallback_dir) if fallback_dir is not None else Path.home()
    path = folder / f"{stem}_finetuned_{date}.safetensors"
    k = 2
    while path.exists():
        path = folder / f"{stem}_finetuned_{date}_{k}.safetensors"
        k += 1
    return path


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`iter_finetune` returns (the network itself is not kept).

    ``before`` and ``after`` are the validation scores (``score_key``) of the base
    model and of the fine-tuned one; None without validation slices.
    """

    path: Path
    spec: ModelSpec
    history: list[dict[str, Any]]
    best_epoch: int
    stopped: str
    score_key: str
    before: float | None
    after: float | None
    train_slices: dict[str, list[int]] = field(default_factory=dict)
    val_slices: dict[str, list[int]] = field(default_factory=dict)


def iter_finetune(
    image: Any,
    labels: Any,
    slices: Mapping[str, Sequence[int]],
    *,
    output: str | os.PathLike[str],
    base: str | os.PathLike[str] = "default",
    config: TrainConfig | None = None,
    device: Any = None,
    name: str = "volume",
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
    min_slices_for_validation: int = MIN_SLICES_FOR_VALIDATION,
    class_names: Sequence[str] | None = None,
    provenance: dict[str, Any] | None = None,
    smooth: float | None = None,
) -> ProgressGen[FinetuneResult]:
    """Fine-tune `base` on the reviewed `slices` of a labelled volume; yield progress.

    The best model so far is written atomically to `output` each time it improves, so
    stopping the generator early (Cancel) leaves a loadable model, or no file if no
    epoch had ended. However the generator ends (returns, raises or is closed), the
    network is dropped and, on CUDA, the cached GPU memory released.

    Parameters
    ----------
    image, labels : array-like, shape (Z, Y, X)
        The scan and its corrected class labels.
    slices : dict
        Reviewed slices per axis, ``{"z": [3, 10]}``; split by :func:`split_reviewed`.
    output : path
        The new ``.safetensors`` model file (replaced if it exists: ask first).
    base : str or path
        ``"default"`` or a model file to start from; its classes and normalisation are
        kept.
    config : TrainConfig, optional
        With ``time_limit_s`` set, progress counts seconds rather than steps.
    device : str, optional
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
    name : str
        The scan's name, in the slices' sources (``"scan.tif z=10"``).
    seed : int
        Seeds the validation split; the training's randomness is ``config.seed``.
    class_names : sequence of str, optional
        The labels' class names, if known: they must be the base model's.
    provenance : dict, optional
        Extra entries for the model's provenance (the scan, the labels).
    smooth : float, optional
        3D Gaussian smoothing (sigma in voxels) of the scan before training; the new
        model records it and Segment applies it. Default: the base model's.

    Yields
    ------
    Progress
        ``"load model"``; ``"smooth"`` (z-slices, with smoothing);
        ``"validate base model"``; ``"train"`` (one per optimiser
        step, ``info`` with ``epoch`` and ``loss``); ``"validate"`` (one per epoch,
        ``info`` with ``epoch``, the epoch's mean ``loss`` and, with validation, the
        score ``score_key``).

    Returns
    -------
    FinetuneResult

    Raises
    ------
    InputError
        If there is no slice, the output is not a ``.safetensors`` path, the base model
        cannot be read, or the labels do not fit its classes.
    """
    from ..model import default_score_key
    from . import evaluate, iter_train

    out = Path(output)
    if out.suffix != ".safetensors":
        raise InputError(f"output: model files end in .safetensors, got {out.name!r}")
    train_slices, val_slices = _split_for_training(
        slices, val_fraction, min_slices_for_validation, seed
    )
    cfg = config or TrainConfig()
    network: Any = None
    gen: Any = None
    try:
        spec, network, base_desc, train, val = yield from _load_and_cut(
            image, labels, train_slices, val_slices, base, class_names, smooth, name
        )
        key = default_score_key(spec)

        import torch

        from ..device import resolve_device

        dev = resolve_device(device) if not isinstance(device, torch.device) else device
        before: float | None = None
        if val is not None:
            yield Progress("validate base model", 0, 1)
            network.to(dev)
            before = float(
                evaluate(network, val, spec.class_names, device=dev, tile=spec.tile_size)[key]
            )
            yield Progress("validate base model", 1, 1, {key: before})

        prov = dict(provenance or {})
        prov.update(
            {
                "base": base_desc,
                "train_slices": list(train.sources),
                "val_slices": list(val.sources) if val is not None else [],
            }
        )
        gen = iter_train(
            train,
            val,
            spec,
            network=network,
            config=cfg,
            device=dev,
            output=str(out),
            provenance=prov,
            score_key=key,
        )
        result = yield from _in_budget_units(gen, cfg, key)
        after = None
        if val is not None:
            value = result.spec.metrics.get(key)
            after = float(value) if isinstance(value, (int, float)) else None
        result.network = network = None
        return FinetuneResult(
            path=out,
            spec=result.spec,
            history=result.history,
            best_epoch=result.best_epoch,
            stopped=result.stopped,
            score_key=key,
            before=before,
            after=after,
            train_slices=train_slices,
            val_slices=val_slices,
        )
    finally:
        # A closed (cancelled) generator still holds its frame until collected: drop
        # the network and the training generator (optimiser state) explicitly.
        if gen is not None:
            gen.close()
        gen = network = None
        release_memory()


def _split_for_training(
    slices: Mapping[str, Sequence[int]],
    val_fraction: float,
    min_slices_for_validation: int,
    seed: int,
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """:func:`split_reviewed`, refusing an empty `slices` with a message for the user."""
    if count_slices(slices) == 0:
        raise InputError(
            "slices: no reviewed slices; mark slices reviewed (or paint in them) first"
        )
    return split_reviewed(
        slices,
        val_fraction=val_fraction,
        min_slices_for_validation=min_slices_for_validation,
        seed=seed,
    )


def _load_and_cut(
    image: Any,
    labels: Any,
    train_slices: Mapping[str, Sequence[int]],
    val_slices: Mapping[str, Sequence[int]],
    base: str | os.PathLike[str],
    class_names: Sequence[str] | None,
    smooth: float | None,
    name: str,
) -> Any:
    """Load `base` on the CPU and cut the planes; yields ``"load model"`` and ``"smooth"``.

    Returns ``(spec, network, base_desc, train, val)``; `spec` carries `smooth`.
    """
    from ..model import load_model, read_spec, resolve_model_path
    from ..normalise import check_smooth, iter_presmooth

    yield Progress("load model", 0, 1)
    base_spec = read_spec(base)
    if class_names is not None and tuple(class_names) != tuple(base_spec.class_names):
        raise InputError(
            f"base model: its classes {list(base_spec.class_names)} differ from the "
            f"labels' {list(class_names)}; choose a model made for these classes"
        )
    loaded = load_model(base, device="cpu")
    spec, network = loaded.spec, loaded.network
    del loaded
    if smooth is not None:
        norm = dataclasses.replace(spec.normalisation, smooth=check_smooth(smooth))
        spec = dataclasses.replace(spec, normalisation=norm)
    base_desc = str(resolve_model_path(base))
    yield Progress("load model", 1, 1)
    # Smoothed here, to show progress; prepare_slices then has nothing left to smooth.
    image, norm = yield from iter_presmooth(image, spec.normalisation)
    cut_spec = dataclasses.replace(spec, normalisation=norm)
    train, val = prepare_slices(image, labels, train_slices, val_slices, cut_spec, name=name)
    return spec, network, base_desc, train, val


def iter_finetune_lr_find(
    image: Any,
    labels: Any,
    slices: Mapping[str, Sequence[int]],
    *,
    base: str | os.PathLike[str] = "default",
    config: TrainConfig | None = None,
    device: Any = None,
    name: str = "volume",
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
    min_slices_for_validation: int = MIN_SLICES_FOR_VALIDATION,
    class_names: Sequence[str] | None = None,
    smooth: float | None = None,
    steps: int = 100,
) -> ProgressGen[Any]:
    """The learning-rate finder on the slices :func:`iter_finetune` would train on.

    Same split (the held-out validation slices are never swept on), same base model,
    smoothing and recipe; the base model's weights are not changed and the network is
    released however the generator ends. Arguments as :func:`iter_finetune`; `steps`
    as :func:`~napari_microfossil.training.iter_lr_find`.

    Yields
    ------
    Progress
        ``"load model"``, ``"smooth"`` (with smoothing), then ``"lr-find"`` per step.

    Returns
    -------
    LRFindResult
    """
    from . import iter_lr_find

    train_slices, val_slices = _split_for_training(
        slices, val_fraction, min_slices_for_validation, seed
    )
    network: Any = None
    try:
        spec, network, _, train, _ = yield from _load_and_cut(
            image, labels, train_slices, val_slices, base, class_names, smooth, name
        )
        found = yield from iter_lr_find(
            train, spec, network=network, config=config, device=device, steps=steps
        )
        return found
    finally:
        network = None
        release_memory()


def _in_budget_units(gen: Any, cfg: TrainConfig, key: str) -> Any:
    """Re-yield :func:`iter_train`'s progress, counting seconds under a time limit.

    With a time limit the step count is not what ends training, so a bar of steps
    would never fill; ``"validate"`` records are trimmed to epoch, loss and score.
    """
    limit = cfg.time_limit_s
    t0 = time.monotonic()
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        if p.stage == "validate":
            info = {k: p.info[k] for k in ("epoch", "loss", key) if k in p.info}
        else:
            info = {k: v for k, v in p.info.items() if k in ("epoch", "loss", "lr")}
        if limit is not None:
            total = max(1, math.ceil(limit))
            done = min(int(time.monotonic() - t0), total)
            yield Progress(p.stage, done, total, info)
        else:
            yield Progress(p.stage, p.done, p.total, info)


def release_memory() -> None:
    """Collect dropped networks and give cached CUDA memory back to the driver."""
    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
