"""The training request, checked when it is built, and the rules that choose what
trains: the split, the labelled slices, the class count."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...axes import AXES, take_plane
from ...errors import InputError
from ...metrics import IGNORE_INDEX
from ...model import ModelSpec
from ...model.pixel_forest import ARCHITECTURE as FOREST
from ...training import LRFindResult, TrainConfig, parse_slices
from ...training.finetune import split_reviewed
from ..outputs import check_output

#: Peak learning rate when neither the user nor the LR finder sets one.
DEFAULT_LR = 1e-3
#: ``base`` values that start a new network instead of loading a model.
NEW_NETWORK_BASES = ("scratch", "imagenet")

#: How a head for classes the base model lacks starts (see ``TrainRequest.new_head``).
NEW_HEADS = ("fit", "random")
#: What a training run makes (see ``TrainRequest.method``).
METHODS = ("network", "forest")

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
    hold_out : bool
        Hold a quarter of the reviewed slices out for validation (from
        :data:`~napari_microfossil.training.finetune.MIN_SLICES_FOR_VALIDATION` slices
        on) when `val_slices` is not given; False: every reviewed slice trains.
    new_head : {"fit", "random"}
        Classes the base model lacks get head channels fitted first to the training
        slices' pixels (a logistic regression on the network's features,
        :func:`~napari_microfossil.training.fit_head`), or random ones.
    pixel_features : sequence of float, optional
        Sigmas (pixels) of multiscale pixel features (intensity, edges, Hessian
        eigenvalues, as ilastik's) to feed into the class head beside the decoder's
        features (:func:`~napari_microfossil.training.add_pixel_features`); the head
        is then fitted first as for new classes. None: the base model's head as it is.
    method : {"network", "forest"}
        ``"network"``: train (fine-tune) the U-Net. ``"forest"``: fit a pixel forest
        with auto-context instead (:mod:`napari_microfossil.training.forest`; ``base``,
        ``config``, ``new_head`` and ``pixel_features`` are then not used): the
        ilastik recipe, which beats a fine-tuned network on real multi-phase rock.
    forest : ForestRecipe, optional
        The forest's recipe (default :class:`~napari_microfossil.training.forest.ForestRecipe`).
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
    hold_out: bool = True
    new_head: str = "fit"
    pixel_features: Sequence[float] | None = None
    method: str = "network"
    forest: Any = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    option_names: Mapping[str, str] = field(default_factory=dict)

    def opt(self, key: str) -> str:
        """The front end's name of field `key` (for messages)."""
        return self.option_names.get(key, key)

    def __post_init__(self) -> None:
        from ...device import resolve_device
        from ...model import read_spec
        from ...normalise import check_smooth

        out = Path(self.output).expanduser()
        o = self.opt("output")
        inputs = [Path(v) for v in (self.image, self.labels) if _is_path(v)]
        if str(self.base) not in (*NEW_NETWORK_BASES, "default"):
            inputs.append(Path(self.base))
        check_output(out, self.overwrite, o, inputs=inputs)
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
        if self.new_head not in NEW_HEADS:
            raise InputError(
                f"{self.opt('new_head')}: expected one of {', '.join(NEW_HEADS)}, got "
                f"{self.new_head!r}"
            )
        if self.method not in METHODS:
            raise InputError(
                f"{self.opt('method')}: expected one of {', '.join(METHODS)}, got {self.method!r}"
            )
        if self.forest is not None:
            from ...training.forest import ForestRecipe

            if not isinstance(self.forest, ForestRecipe):
                raise InputError(
                    f"forest: expected a ForestRecipe, got {type(self.forest).__name__}"
                )
        if self.pixel_features is not None:
            object.__setattr__(
                self, "pixel_features", _sigmas(self.pixel_features, self.opt("pixel_features"))
            )
        resolve_device(self.device)
        if str(self.base) not in NEW_NETWORK_BASES:
            base_spec = read_spec(self.base)  # a readable model file (its header only)
            if self.method == "network" and base_spec.architecture == FOREST:
                raise InputError(
                    f"{self.opt('base')}: {self.base} is a pixel forest, which is fitted anew "
                    "each time, not fine-tuned; fit a forest (method forest) or start from a "
                    "network model"
                )
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
    Without validation, ``fit_before`` and ``fit_after`` are the same scores on the
    training slices: they cannot tell how well a model generalises, but a model below
    its base even on the slices it learned from is worse.
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
    fit_before: float | None = None
    fit_after: float | None = None

    @property
    def improved(self) -> bool:
        """False only when the trained model scores below its base, on validation (or,
        without validation, on the training slices): then a front end offers the new
        model without choosing it."""
        if self.before is not None and self.after is not None:
            return self.after >= self.before
        if self.fit_before is not None and self.fit_after is not None:
            return self.fit_after >= self.fit_before
        return True


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
    if not request.hold_out:
        return {a: list(v) for a, v in slices.items()}, {}
    return split_reviewed(slices, seed=request.seed)


def check_labelled(labels: Any, slices: Slices, option: str) -> None:
    """Refuse training slices without a single labelled voxel (all 255, "not labelled").

    Raises
    ------
    InputError
        Naming `option` (the labels) and the slices.
    """
    for axis, idx in slices.items():
        for i in idx:
            if not 0 <= i < labels.shape[AXES.index(axis)]:
                return  # refused with its own message when the planes are cut
            if np.any(np.asarray(take_plane(labels, axis, i)) != IGNORE_INDEX):
                return
    chosen = ";".join(f"{a}:{','.join(map(str, idx))}" for a, idx in slices.items() if idx)
    raise InputError(
        f"{option}: no labelled voxel on the chosen slices ({_short(chosen)}): every voxel is "
        f"{IGNORE_INDEX} (not labelled); paint some classes (0 = background) first"
    )


def unlabelled_ids(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """`labels` with ids above 254 (no class id fits uint8 besides 255, "not labelled")
    set to 255, and how many voxels that changed."""
    if labels.dtype.itemsize == 1:
        return labels, 0
    bad = labels > IGNORE_INDEX
    n = int(np.count_nonzero(bad))
    if n:
        labels = labels.copy()
        labels[bad] = IGNORE_INDEX
    return labels, n


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def labelled_z_slices(labels: Any, *, skip: Sequence[int] = ()) -> list[int]:
    """The z-slices of `labels` holding any class label (not 0, not 255 "not labelled"),
    except `skip`."""
    skipped = set(skip)
    return [
        int(z)
        for z in range(labels.shape[0])
        if z not in skipped and np.any((labels[z] > 0) & (labels[z] != IGNORE_INDEX))
    ]


def _sigmas(value: Any, option: str) -> tuple[float, ...]:
    try:
        sigmas = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        sigmas = ()
    if not sigmas or any(not 0 < s <= 64 for s in sigmas):
        raise InputError(f"{option}: expected sigmas in pixels from 0 to 64, got {value!r}")
    return sigmas


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))
