"""Train or fine-tune a model: the one training path of ``microfossil train``, the
Fine-tune panel, the benchmarks and the default-model script.

A :class:`TrainRequest` is checked when it is built (output, slices, classes,
smoothing, device); :func:`iter_run_training` then owns the rules:

- slices: the given ones, or every z-slice with labels (not the validation ones);
- validation: the given ``val_slices``, or a random quarter of the slices (at least
  one) when there are :data:`~napari_microfossil.training.finetune.MIN_SLICES_FOR_VALIDATION`
  or more, else none (all train);
- base model: ``"default"`` or a file (its normalisation kept, its validation score
  taken first), ``"scratch"`` or ``"imagenet"`` (a new network);
- classes: label ids the base model lacks get a new head (named by ``classes``, the
  label file's names, or ``class_N``), with a warning; what cannot work (fewer class
  names than the labels' ids) is refused;
- optionally the learning-rate finder on the training slices first;
- torchrun: one process group for the run (see :mod:`~napari_microfossil.training.distributed`);
- cancel: the best model so far stays in the output (:func:`cancel_report` says what
  was kept); however the run ends, the network is dropped and GPU memory released.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import Progress, ProgressGen
from ..axes import AXES, take_plane
from ..errors import InputError
from ..metrics import IGNORE_INDEX
from ..model import ModelSpec
from ..training import LRFindResult, SliceSet, TrainConfig, parse_slices
from ..training.finetune import release_memory, split_reviewed

#: Peak learning rate when neither the user nor the LR finder sets one.
DEFAULT_LR = 1e-3
#: ``base`` values that start a new network instead of loading a model.
NEW_NETWORK_BASES = ("scratch", "imagenet")

Slices = dict[str, list[int]]


@dataclass(frozen=True)
class Notice:
    """Something to tell the user while the run goes on.

    ``kind`` is ``"info"`` (e.g. downloading weights), ``"warning"`` (e.g. a new class
    head) or ``"lr-find"`` (the LR finder's report, :func:`lr_find_report`).
    """

    kind: str
    lines: tuple[str, ...]


Notify = Callable[[Notice], Any]


@dataclass(frozen=True)
class TrainRequest:
    """A training run, checked when built.

    Parameters
    ----------
    image, labels : path or array-like, shape (Z, Y, X)
        The scan and its class labels (0 = background), files or arrays.
    output : path
        The new ``.safetensors`` model, written each time validation improves.
    slices : str or dict, optional
        ``"z:10,40;y:5"`` or ``{"z": [10, 40]}``; None: every z-slice with labels.
    val_slices : str or dict, optional
        Validate on these (never trained on); None: the random split.
    base : str or path
        ``"default"``, a model file, ``"scratch"`` or ``"imagenet"``.
    classes : sequence of str, optional
        All class names in id order, background first; default the base model's plus
        `label_class_names` (or ``class_N``) for higher ids.
    label_class_names : sequence of str, optional
        Names the labels carry (a label file's metadata), for new ids.
    config : TrainConfig
    smooth : float, optional
        3D Gaussian sigma (voxels) applied before training; default the base model's.
    lr_find : bool
        Sweep the learning rate first (``lr_find_steps`` steps) and, with
        ``use_lr_suggestion``, train with its suggestion rather than ``config.lr``.
    device, seed, overwrite, name
        Device; seed of the split and of a new head; replace an existing output; the
        scan's name in the slices' sources (default: the image file's name).
    provenance : dict
        Extra entries for the model's provenance.
    option_names : dict
        How a front end names the fields in error messages (``{"output": "-o"}``).

    Raises
    ------
    InputError
        Naming the first field that does not fit.
    """

    image: Any
    labels: Any
    output: str | os.PathLike[str]
    slices: Any = None
    val_slices: Any = None
    base: str | os.PathLike[str] = "default"
    classes: Sequence[str] | None = None
    label_class_names: Sequence[str] | None = None
    config: TrainConfig = field(default_factory=TrainConfig)
    smooth: float | None = None
    lr_find: bool = False
    lr_find_steps: int = 100
    use_lr_suggestion: bool = True
    device: str = "auto"
    seed: int = 0
    overwrite: bool = False
    name: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    option_names: Mapping[str, str] = field(default_factory=dict)

    def opt(self, key: str) -> str:
        """The front end's name of field `key` (for messages)."""
        return self.option_names.get(key, key)

    def __post_init__(self) -> None:
        from ..device import resolve_device
        from ..model import read_spec
        from ..normalise import check_smooth

        out = Path(self.output).expanduser()
        o = self.opt("output")
        if out.exists() and not self.overwrite:
            raise InputError(f"{o}: {out} already exists; pass --overwrite to replace it")
        if not out.parent.exists():
            raise InputError(f"{o}: folder {out.parent} does not exist")
        if out.suffix != ".safetensors":
            raise InputError(f"{o}: model files end in .safetensors, got {out.name!r}")
        if out.is_dir():
            raise InputError(f"{o}: {out} is a folder; give a file name")
        object.__setattr__(self, "output", out)
        val = self._slices("val_slices") or {}
        object.__setattr__(self, "val_slices", val)
        train = self._slices("slices")
        if train is not None and not train:
            raise InputError(
                f"{self.opt('slices')}: no reviewed slices; mark slices reviewed (or paint in "
                "them) first"
            )
        object.__setattr__(self, "slices", train)
        if train is not None:
            clash = sorted(
                f"{a}:{i}" for a, idx in val.items() for i in set(idx) & set(train.get(a, []))
            )
            if clash:
                raise InputError(
                    f"{self.opt('val_slices')}: expected slices not in {self.opt('slices')}, got "
                    f"{', '.join(clash)} in both"
                )
        if self.classes is not None:
            names = tuple(str(n) for n in self.classes)
            if len(names) < 2:
                raise InputError(
                    f"{self.opt('classes')}: expected at least 2 comma-separated names "
                    f"(background first), got {','.join(names)!r}"
                )
            if len(set(names)) != len(names):
                raise InputError(
                    f"{self.opt('classes')}: expected unique names, got {','.join(names)!r}"
                )
            object.__setattr__(self, "classes", names)
        if self.smooth is not None:
            object.__setattr__(self, "smooth", check_smooth(self.smooth, self.opt("smooth")))
        if not isinstance(self.config, TrainConfig):
            raise InputError(f"config: expected a TrainConfig, got {type(self.config).__name__}")
        if self.lr_find and self.lr_find_steps < 5:
            raise InputError(
                f"{self.opt('lr_find_steps')}: expected at least 5 learning rates to try, got "
                f"{self.lr_find_steps}"
            )
        resolve_device(self.device)
        if str(self.base) not in NEW_NETWORK_BASES:
            read_spec(self.base)  # a readable model file (its header only)
        if not _is_path(self.image) and not _is_path(self.labels):
            self._check_arrays()

    def _slices(self, key: str) -> Slices | None:
        value = getattr(self, key)
        if value is None:
            return None
        if isinstance(value, str):
            value = parse_slices(value, self.opt(key))
        out: Slices = {}
        for axis, idx in dict(value).items():
            if axis not in AXES:
                raise InputError(
                    f"{self.opt(key)}: expected axes among 'z', 'y', 'x', got {axis!r}"
                )
            if idx:
                out[axis] = sorted({int(i) for i in idx})
        return out

    def _check_arrays(self) -> None:
        """With arrays at hand, check the shapes and the classes of the slices now."""
        shape, lab_shape = tuple(self.image.shape), tuple(self.labels.shape)
        if len(shape) != 3 or shape != lab_shape:
            raise InputError(
                f"{self.opt('labels')}: expected a (Z, Y, X) volume of the image's shape "
                f"{shape}, got {lab_shape}"
            )
        planes = {**(self.slices or {})}
        for axis, idx in self.val_slices.items():
            planes[axis] = [*planes.get(axis, []), *idx]
        if self.classes is None or not planes:
            return
        top = 0
        for axis, idx in planes.items():
            n = shape[AXES.index(axis)]
            for i in idx:
                if 0 <= i < n:
                    lab = np.asarray(take_plane(self.labels, axis, i))
                    top = max(top, int(lab[lab != IGNORE_INDEX].max(initial=0)))
        check_class_count(self.classes, top, self.opt("classes"))


@dataclass(frozen=True)
class TrainRun:
    """What a training run returns (the network itself is not kept).

    ``before`` and ``after`` are the validation scores (``score_key``) of the base
    model and of the trained one; None without validation (or without a base model).
    """

    path: Path
    spec: ModelSpec
    history: list[dict[str, Any]]
    best_epoch: int
    stopped: str
    score_key: str
    before: float | None
    after: float | None
    train_slices: Slices = field(default_factory=dict)
    val_slices: Slices = field(default_factory=dict)
    lr: float = DEFAULT_LR
    lr_found: LRFindResult | None = None
    warnings: tuple[str, ...] = ()

    @property
    def improved(self) -> bool:
        """False only when validation shows the trained model below its base: then a
        front end offers the new model without choosing it."""
        return self.before is None or self.after is None or self.after >= self.before


def check_class_count(classes: Sequence[str] | None, top: int, option: str = "classes") -> None:
    """Refuse class names that cannot name every label id up to `top`."""
    if classes is not None and len(classes) <= top:
        raise InputError(
            f"{option}: the labels use class ids up to {top}, so expected at least {top + 1} "
            f"names, got {len(classes)} ({','.join(classes)})"
        )


def split_for_training(request: TrainRequest, slices: Slices) -> tuple[Slices, Slices]:
    """The training and validation slices: `request.val_slices` if given, else the
    random split of `slices` (:func:`~napari_microfossil.training.finetune.split_reviewed`)."""
    if request.val_slices:
        return slices, dict(request.val_slices)
    return split_reviewed(slices, seed=request.seed)


def labelled_z_slices(labels: Any, *, skip: Sequence[int] = ()) -> list[int]:
    """The z-slices of `labels` holding any label, except `skip`."""
    skipped = set(skip)
    return [int(z) for z in range(labels.shape[0]) if z not in skipped and np.any(labels[z] > 0)]


def iter_run_training(
    request: TrainRequest, *, notify: Notify | None = None
) -> ProgressGen[TrainRun]:
    """Run `request`: cut the slices, build the model, train; yield progress.

    Yields
    ------
    Progress
        ``"load model"``, ``"smooth"`` (with smoothing), ``"validate base model"``,
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
    from .. import training

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


def _prepare(request: TrainRequest, tell: Notify) -> Any:
    """Read the inputs, split, load the base model, cut the planes and fit the classes.

    Returns ``(train, val, spec, network, provenance, train_slices, val_slices)``.
    """
    from ..model import load_model, resolve_model_path
    from ..normalise import Normalisation, intensity_range, iter_presmooth
    from ..training import max_label_id, slices_from_volume

    req = request
    image, labels, label_names, name = _read(req)
    slices = req.slices
    if slices is None:
        found = labelled_z_slices(labels, skip=req.val_slices.get("z", []))
        if not found:
            raise InputError(
                f"{req.opt('labels')}: {req.labels} has no labelled voxels; paint some or pass "
                f"{req.opt('slices')}"
            )
        slices = {"z": found}
    train_sl, val_sl = split_for_training(req, slices)
    yield Progress("load model", 0, 1)
    base = None if str(req.base) in NEW_NETWORK_BASES else load_model(req.base, device="cpu")
    norm = base.spec.normalisation if base is not None else Normalisation()
    if req.smooth is not None:
        norm = dataclasses.replace(norm, smooth=req.smooth)
    yield Progress("load model", 1, 1)
    # Smoothed once, for training and validation planes alike, as inference will.
    smoothed, cut = yield from iter_presmooth(image, norm)
    kw: dict[str, Any] = {"normalisation": cut, "value_range": intensity_range(smoothed, cut)}
    train = slices_from_volume(smoothed, labels, train_sl, name=name, **kw)
    val = slices_from_volume(smoothed, labels, val_sl, name=name, **kw) if val_sl else None
    del smoothed
    top = max(max_label_id(train), max_label_id(val) if val is not None else 0)
    check_class_count(req.classes, top, req.opt("classes"))
    if base is None:
        spec, network = _new_network(req, norm, top, label_names, tell)
        base_desc = str(req.base)
    else:
        base_desc = str(resolve_model_path(req.base))
        spec, network = _fit_classes(req, base, top, label_names, Path(base_desc).name, tell)
        spec = dataclasses.replace(spec, normalisation=norm)
    prov: dict[str, Any] = {"base": base_desc}
    for key in ("image", "labels"):
        if _is_path(getattr(req, key)):
            prov[key] = str(getattr(req, key))
    prov.update(req.provenance)
    prov["train_slices"] = list(train.sources)
    prov["val_slices"] = list(val.sources) if val is not None else []
    return train, val, spec, network, prov, train_sl, val_sl


def _read(req: TrainRequest) -> tuple[Any, np.ndarray, tuple[str, ...] | None, str]:
    """``(image, labels, the labels' class names, name)`` from files or arrays."""
    from ..io import read_labels, read_volume

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
        labels = read.load()
    name = req.name or (Path(req.image).name if _is_path(req.image) else "volume")
    return image, np.asarray(labels), names, name


def _new_network(
    req: TrainRequest, norm: Any, top: int, label_names: Sequence[str] | None, tell: Notify
) -> tuple[ModelSpec, Any]:
    import torch

    from ..model import build_network
    from ..training import class_names_for_labels

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
    from ..training import class_names_for_labels, expand_classes

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
    from .. import training
    from ..device import resolve_device
    from ..model import default_score_key
    from ..training.distributed import broadcast_object, distributed_session

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
            if score_base and network is not None and val is not None and ctx.is_main:
                yield Progress("validate base model", 0, 1)
                network.to(dev)
                scores = training.evaluate(
                    network, val, spec.class_names, device=dev, tile=spec.tile_size
                )
                before = float(scores[key])
                yield Progress("validate base model", 1, 1, {key: before})
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
    limit = cfg.time_limit_s
    t0 = time.monotonic()
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
            yield Progress(p.stage, min(int(time.monotonic() - t0), total), total, info)
        else:
            yield Progress(p.stage, p.done, p.total, info)


# --- what the front ends say ---------------------------------------------------------


def output_stamp(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(mtime_ns, size)`` of a file, None if absent: tells whether a run wrote it."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class CancelReport:
    """What a cancelled run kept: the best model so far, or nothing.

    ``text`` is the full sentence, ``summary`` a short status line.
    """

    path: Path
    written: bool
    best_epoch: int | None = None
    epochs_run: int | None = None

    @property
    def text(self) -> str:
        if not self.written:
            return "cancelled before the first epoch ended; no model was written"
        return (
            f"cancelled; the best model so far (epoch {self.best_epoch} of {self.epochs_run} "
            f"run) is in {self.path}"
        )

    @property
    def summary(self) -> str:
        if not self.written:
            return "cancelled before the first epoch ended; no model written"
        return f"cancelled; the best model (epoch {self.best_epoch}) is kept"


def cancel_report(output: str | os.PathLike[str], before: tuple[int, int] | None) -> CancelReport:
    """What a run cancelled now leaves in `output`; `before` its :func:`output_stamp`
    when the run started."""
    from ..model import read_spec

    path = Path(output)
    now = output_stamp(path)
    if now is None or now == before:
        return CancelReport(path, written=False)
    try:
        prov = read_spec(path).provenance
    except InputError:  # pragma: no cover - the engine writes atomically
        return CancelReport(path, written=True)
    return CancelReport(path, True, prov.get("best_epoch"), prov.get("epochs_run"))


def run_report(run: TrainRun, *, slices: str = "the slices") -> list[str]:
    """What a finished run did: its warnings, the validation score before and after
    (or why there was none; `slices` describes them), how it ended and where the model is."""
    lines = [f"Warning: {w}" for w in run.warnings]
    if run.before is not None and run.after is not None:
        lines.append(
            f"Validation IoU {run.score_key.removeprefix('iou_')}: {run.before:.3f} (base) → "
            f"{run.after:.3f} (fine-tuned, epoch {run.best_epoch})"
        )
        if not run.improved:
            lines.append(
                "Below the base model on the held-out slices: Segment keeps the model it "
                "had. Review more slices, give more time, or try Smoothing; the new model "
                "is in Segment's list (and Segment again uses it) if you want to see it."
            )
    else:
        lines.append(
            f"No validation: {slices} are too few to hold any out, so all trained (best "
            f"epoch {run.best_epoch} by training loss)"
        )
    how = {"time-limit": "time budget used", "early-stopping": "stopped early"}.get(
        run.stopped, f"{len(run.history)} epochs"
    )
    lines.append(f"Saved {run.path} ({how}).")
    return lines


def lr_find_report(found: LRFindResult, explicit_lr: float | None) -> list[str]:
    """The LR finder's report: the loss per decade of rates and the suggestion, and
    whether training uses it (`explicit_lr` None) or the rate given."""
    lrs = np.asarray(found.lrs)
    end = "" if found.stopped == "completed" else f", stopped at {lrs[-1]:.1e}: the loss diverged"
    lines = [
        f"LR finder: {len(lrs)} steps from {found.min_lr:.1e} to {found.max_lr:.1e}{end}",
        f"{'lr':>10} {'loss':>8}  (smoothed)",
    ]
    # One row per decade, and the lowest loss.
    rows = {int(np.argmin(np.abs(np.log10(lrs) - d))) for d in range(-20, 21)}
    rows.add(int(np.argmin(found.smoothed)))
    lines += [
        f"{lrs[i]:>10.2e} {found.smoothed[i]:>8.4f}"
        for i in sorted(rows)
        if math.isfinite(found.smoothed[i])
    ]
    lines.append(
        f"Lowest loss at lr {found.min_loss_lr:.2e}; steepest descent at lr {found.steepest_lr:.2e}"
    )
    if found.stopped == "completed" and found.min_loss_lr >= found.lrs[-1]:
        lines.append(
            "Note: the loss was still falling at the end of the sweep; the suggestion is cautious"
        )
    if explicit_lr is None:
        lines.append(f"Suggested lr {found.suggestion:.2e} (lowest-loss lr / 10): training with it")
    else:
        lines.append(
            f"Suggested lr {found.suggestion:.2e} (lowest-loss lr / 10); training with --lr "
            f"{explicit_lr:g} as given"
        )
    return lines


def lr_find_summary(found: LRFindResult) -> str:
    """The LR finder's result in one status line."""
    how = (
        f"; the sweep ended at {found.lrs[-1]:.2g}, where the loss grew past 4x its lowest"
        if found.stopped == "diverged"
        else ""
    )
    return (
        f"learning rate set to {found.suggestion:.2g} (a tenth of {found.min_loss_lr:.2g}, "
        f"the rate with the lowest loss; steepest fall at {found.steepest_lr:.2g}){how}"
    )


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))
