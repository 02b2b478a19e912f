"""Train or fine-tune a slice-wise U-Net on labelled slices.

The recipe follows the project's origin (see BRIEF.md): random crops that over-sample the
rare classes, geometric and CT-specific intensity augmentation, Dice + cross-entropy
with class weights, AdamW with a one-cycle schedule, optionally progressive resolution
(1/4 -> 1/2 -> full) and a frozen-encoder phase followed by discriminative learning
rates. Validation on held-out slices each epoch; the best model is kept (and written to
disk as it improves, so a cancelled run leaves a loadable model).

The training loop is a generator: it yields :class:`~napari_microfossil._progress.Progress`
records (with live loss and IoU in ``info``) and returns a :class:`TrainResult`.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._progress import Progress, ProgressGen, drain
from ..axes import AXES, take_plane
from ..errors import InputError
from ..metrics import IGNORE_INDEX, confusion_matrix, scores_from_confusion
from ..model import ModelSpec, check_size_multiple, default_score_key, save_model
from ..normalise import Normalisation, apply_normalisation, intensity_range, iter_presmooth

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

AUGMENT_MODES = ("full", "light", "off")


@dataclass(frozen=True)
class TrainConfig:
    """Training recipe; saved in the model's provenance.

    Parameters
    ----------
    epochs : int
        Epochs after the frozen phase.
    frozen_epochs : int
        Epochs with the encoder frozen first (only decoder and head learn).
    steps_per_epoch : int
        Optimiser steps per epoch (each a batch of random crops).
    batch_size : int
    crop_size : int
        Edge of the square training crops in pixels (multiple of 32).
    lr : float
        Peak learning rate of the decoder and head (one-cycle schedule).
    encoder_lr_range : tuple of float
        After unfreezing, the encoder's blocks get learning rates spaced geometrically
        from ``lr * encoder_lr_range[0]`` (first block) to ``lr * encoder_lr_range[1]``
        (last block): discriminative learning rates.
    weight_decay : float
        AdamW weight decay.
    pct_start : float
        Fraction of each phase spent warming up (one-cycle).
    resolutions : tuple of float
        Progressive resolution: the epochs are split evenly over these scales, e.g.
        ``(0.25, 0.5, 1.0)``.
    foreground_fraction : float
        Share of crops centred on a voxel of a non-background class.
    dice_weight : float
        Weight of the soft-Dice term added to cross-entropy.
    class_weights : "auto", None or tuple
        Cross-entropy class weights; ``"auto"`` = inverse square-root frequency.
    augment : {"full", "light", "off"}
        ``"full"``: geometric (rotation ±20°, 90° turns, flips, shift/shear/zoom ~5%)
        and intensity (gain, offset, noise, blur) augmentation, for models that must
        work on many scans. ``"light"``: 90° turns, flips and ±5 % gain only, for
        fine-tuning on the very scan the model will segment (its noise and blur are
        already the right ones). ``True``/``False`` mean ``"full"``/``"off"``.
    patience : int or None
        Stop early when validation has not improved for this many epochs.
    time_limit_s : float or None
        Stop after this many seconds (the best model so far is kept).
    seed : int
        Seeds crop sampling, augmentation and initialisation.
    """

    epochs: int = 10
    frozen_epochs: int = 0
    steps_per_epoch: int = 50
    batch_size: int = 8
    crop_size: int = 192
    lr: float = 2e-3
    encoder_lr_range: tuple[float, float] = (1 / 400, 1 / 4)
    weight_decay: float = 1e-4
    pct_start: float = 0.3
    resolutions: tuple[float, ...] = (1.0,)
    foreground_fraction: float = 0.5
    dice_weight: float = 1.0
    class_weights: Any = "auto"
    augment: str = "full"
    patience: int | None = None
    time_limit_s: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.augment, bool):
            object.__setattr__(self, "augment", "full" if self.augment else "off")
        if self.augment not in AUGMENT_MODES:
            raise InputError(
                f"augment: expected one of {', '.join(AUGMENT_MODES)}, got {self.augment!r}"
            )
        if self.epochs < 0 or self.frozen_epochs < 0 or self.epochs + self.frozen_epochs < 1:
            raise InputError(
                f"epochs: expected at least 1 epoch in all, got {self.epochs} (+{self.frozen_epochs} frozen)"
            )
        check_size_multiple(self.crop_size, "crop_size")
        if self.batch_size < 1 or self.steps_per_epoch < 1:
            raise InputError("batch_size and steps_per_epoch: expected >= 1")
        if not self.lr > 0:
            raise InputError(f"lr: expected > 0, got {self.lr}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise InputError(f"time_limit: expected seconds > 0, got {self.time_limit_s}")
        if not self.resolutions or any(not 0 < r <= 1 for r in self.resolutions):
            raise InputError(f"resolutions: expected scales in (0, 1], got {self.resolutions}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["encoder_lr_range"] = list(self.encoder_lr_range)
        d["resolutions"] = list(self.resolutions)
        return d


@dataclass
class SliceSet:
    """2D training or validation slices.

    ``images`` are normalised float32 planes, ``labels`` uint8 planes of the same shape
    (255 = unlabelled, ignored), ``sources`` say where each came from ("scan.tif z=10").
    """

    images: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def extend(self, other: SliceSet) -> None:
        self.images.extend(other.images)
        self.labels.extend(other.labels)
        self.sources.extend(other.sources)


def parse_slices(text: str, option: str = "--slices") -> dict[str, list[int]]:
    """Parse ``"z:10,40,70;y:5"`` into ``{"z": [10, 40, 70], "y": [5]}``.

    Raises
    ------
    InputError
        On a malformed spec, naming ``option``.
    """
    out: dict[str, list[int]] = {}
    for part in str(text).replace(" ", "").split(";"):
        if not part:
            continue
        axis, sep, nums = part.partition(":")
        if not sep or axis not in AXES or not nums:
            raise InputError(f"{option}: expected e.g. 'z:10,40,70' or 'z:10;y:5', got {text!r}")
        try:
            idx = [int(n) for n in nums.split(",") if n]
        except ValueError:
            raise InputError(f"{option}: slice numbers must be integers, got {text!r}") from None
        out.setdefault(axis, []).extend(idx)
    if not out:
        raise InputError(f"{option}: no slices in {text!r}")
    return out


def slices_from_volume(
    image: Any,
    labels: Any,
    slices: Mapping[str, Sequence[int]],
    *,
    normalisation: Normalisation | None = None,
    value_range: tuple[float, float] | None = None,
    name: str = "volume",
) -> SliceSet:
    """Cut labelled training planes out of a volume.

    Parameters
    ----------
    image, labels : array-like, shape (Z, Y, X)
    slices : dict
        Axis (``"z"``, ``"y"``, ``"x"``) to slice indices.
    normalisation, value_range
        How to normalise; ``value_range`` defaults to the (smoothed) volume's
        percentiles. With ``normalisation.smooth > 0`` the whole volume is smoothed
        first, exactly as inference will smooth it.
    """
    if tuple(image.shape) != tuple(labels.shape):
        raise InputError(
            f"labels: expected the image's shape {tuple(image.shape)}, got {tuple(labels.shape)}"
        )
    norm = normalisation or Normalisation()
    image, norm = drain(iter_presmooth(image, norm))
    lo, hi = value_range if value_range is not None else intensity_range(image, norm)
    out = SliceSet()
    for axis, indices in slices.items():
        if axis not in AXES:
            raise InputError(f"slices: expected axes among 'z', 'y', 'x', got {axis!r}")
        n = image.shape[AXES.index(axis)]
        for i in indices:
            if not 0 <= int(i) < n:
                raise InputError(f"slices: {axis}={i} is outside the volume (0..{n - 1})")
            out.images.append(apply_normalisation(take_plane(image, axis, int(i)), lo, hi, norm))
            out.labels.append(take_plane(labels, axis, int(i)).astype(np.uint8))
            out.sources.append(f"{name} {axis}={int(i)}")
    return out


@dataclass
class TrainResult:
    """What training returns: the best network, its spec (with metrics) and history."""

    network: Any
    spec: ModelSpec
    history: list[dict[str, Any]]
    best_epoch: int
    stopped: str  # "completed" | "early-stopping" | "time-limit"


# --- sampling and augmentation -------------------------------------------------------


class CropSampler:
    """Random crops that over-sample pixels of the rarer (non-background) classes."""

    def __init__(
        self, data: SliceSet, crop: int, *, foreground_fraction: float, rng: np.random.Generator
    ):
        self.data = data
        self.crop = crop
        self.fg = foreground_fraction
        self.rng = rng
        areas = np.array([im.size for im in data.images], dtype=np.float64)
        self.p_slice = areas / areas.sum()
        # Foreground coordinates per slice, for centred crops.
        self.fg_coords = []
        for lab in data.labels:
            ys, xs = np.nonzero((lab > 0) & (lab != IGNORE_INDEX))
            self.fg_coords.append((ys.astype(np.int32), xs.astype(np.int32)))
        self.has_fg = np.array([len(c[0]) > 0 for c in self.fg_coords])

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.crop
        imgs = np.empty((n, 1, c, c), np.float32)
        labs = np.full((n, c, c), IGNORE_INDEX, np.uint8)
        for k in range(n):
            use_fg = self.has_fg.any() and self.rng.random() < self.fg
            if use_fg:
                p = self.p_slice * self.has_fg
                i = int(self.rng.choice(len(self.p_slice), p=p / p.sum()))
                ys, xs = self.fg_coords[i]
                j = int(self.rng.integers(len(ys)))
                cy = int(ys[j]) + int(self.rng.integers(-c // 4, c // 4 + 1))
                cx = int(xs[j]) + int(self.rng.integers(-c // 4, c // 4 + 1))
            else:
                i = int(self.rng.choice(len(self.p_slice), p=self.p_slice))
                h, w = self.data.images[i].shape
                cy, cx = int(self.rng.integers(h)), int(self.rng.integers(w))
            im, lab = self.data.images[i], self.data.labels[i]
            h, w = im.shape
            y0 = int(np.clip(cy - c // 2, 0, max(h - c, 0)))
            x0 = int(np.clip(cx - c // 2, 0, max(w - c, 0)))
            pi = im[y0 : y0 + c, x0 : x0 + c]
            pl = lab[y0 : y0 + c, x0 : x0 + c]
            ph, pw = pi.shape
            if ph < c or pw < c:  # plane smaller than the crop: reflect image, ignore labels
                pi = np.pad(
                    pi, ((0, c - ph), (0, c - pw)), mode="reflect" if min(ph, pw) > 1 else "edge"
                )
                pl = np.pad(pl, ((0, c - ph), (0, c - pw)), constant_values=IGNORE_INDEX)
            imgs[k, 0] = pi
            labs[k] = pl
        return imgs, labs


def augment_batch(
    x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, mode: str = "full"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random geometry (same for image and labels) and CT intensity changes.

    ``x`` is (B, 1, H, W) float, ``y`` (B, H, W) long with 255 = ignore. ``mode`` as
    :attr:`TrainConfig.augment` (``"full"`` or ``"light"``).
    """
    import torch
    import torch.nn.functional as F

    b = x.shape[0]
    dev = x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, generator=gen, device="cpu").to(dev) * (hi - lo) + lo

    # 90-degree turns and flips are exact: do them first, per sample.
    xs, ys = [], []
    turns = torch.randint(0, 4, (b,), generator=gen)
    flips = torch.randint(0, 2, (b,), generator=gen)
    for i in range(b):
        xi, yi = torch.rot90(x[i], int(turns[i]), (1, 2)), torch.rot90(y[i], int(turns[i]), (0, 1))
        if flips[i]:
            xi, yi = xi.flip(2), yi.flip(1)
        xs.append(xi)
        ys.append(yi)
    x, y = torch.stack(xs), torch.stack(ys)
    if mode == "light":
        return x * u(0.95, 1.05).view(b, 1, 1, 1), y

    theta_rot = u(-20, 20) * math.pi / 180
    zoom = u(0.95, 1.05)
    shear = u(-0.05, 0.05)
    tx, ty = u(-0.05, 0.05), u(-0.05, 0.05)
    cos, sin = torch.cos(theta_rot) / zoom, torch.sin(theta_rot) / zoom
    mat = torch.zeros(b, 2, 3, device=dev)
    mat[:, 0, 0] = cos
    mat[:, 0, 1] = -sin + shear
    mat[:, 1, 0] = sin
    mat[:, 1, 1] = cos
    mat[:, 0, 2] = tx
    mat[:, 1, 2] = ty
    grid = F.affine_grid(mat, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    yf = y.unsqueeze(1).float()
    y = F.grid_sample(yf, grid, mode="nearest", padding_mode="reflection", align_corners=False)
    y = y.squeeze(1).round().long()

    gain = u(0.8, 1.2).view(b, 1, 1, 1)
    offset = u(-0.15, 0.15).view(b, 1, 1, 1)
    x = x * gain + offset
    sigma_blur = u(0.0, 1.0)
    if float(sigma_blur.max()) > 0.3:
        k = torch.arange(-2, 3, device=dev, dtype=x.dtype)
        out = []
        for i in range(b):
            s = float(sigma_blur[i])
            if s <= 0.3:
                out.append(x[i : i + 1])
                continue
            g = torch.exp(-(k**2) / (2 * s * s))
            g = g / g.sum()
            xi = F.conv2d(F.pad(x[i : i + 1], (2, 2, 0, 0), mode="reflect"), g.view(1, 1, 1, 5))
            xi = F.conv2d(F.pad(xi, (0, 0, 2, 2), mode="reflect"), g.view(1, 1, 5, 1))
            out.append(xi)
        x = torch.cat(out)
    noise = u(0.0, 0.15).view(b, 1, 1, 1)
    x = x + noise * torch.randn(x.shape, generator=gen).to(dev)
    return x, y


def dice_ce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    class_weights: torch.Tensor | None,
    dice_weight: float,
) -> torch.Tensor:
    """Cross-entropy (weighted, 255 ignored) plus soft Dice over the classes present."""
    import torch
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, target, weight=class_weights, ignore_index=IGNORE_INDEX)
    if dice_weight <= 0:
        return ce
    valid = (target != IGNORE_INDEX).unsqueeze(1)
    probs = torch.softmax(logits.float(), dim=1) * valid
    onehot = (
        F.one_hot(target.clamp(0, logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2) * valid
    )
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    present = onehot.sum(dim=(0, 2, 3)) > 0
    dice = (2 * inter + 1.0) / (denom + 1.0)
    dice_loss = 1 - dice[present].mean() if bool(present.any()) else logits.sum() * 0
    return ce + dice_weight * dice_loss


def auto_class_weights(data: SliceSet, num_classes: int) -> np.ndarray:
    """Inverse square-root class frequency, normalised to mean 1 over present classes."""
    counts = np.zeros(num_classes, np.float64)
    for lab in data.labels:
        counts += np.bincount(lab[lab != IGNORE_INDEX].ravel(), minlength=num_classes)[:num_classes]
    w = np.zeros(num_classes)
    present = counts > 0
    w[present] = 1.0 / np.sqrt(counts[present] / counts.sum())
    w[present] /= w[present].mean()
    w[~present] = 1.0
    return w


def evaluate(
    network: torch.nn.Module,
    data: SliceSet,
    class_names: Sequence[str],
    *,
    device: torch.device,
    tile: int = 256,
    batch_size: int = 4,
) -> dict[str, float]:
    """Per-class IoU/Dice and pixel error of ``network`` on whole validation planes."""
    from ..model import make_predictor
    from ..segmentation import predict_planes

    n = len(class_names)
    predictor = make_predictor(network, device)
    cm = np.zeros((n, n), np.int64)
    was_training = network.training
    network.eval()
    probs_iter = predict_planes(
        iter(data.images), predictor, num_classes=n, tile=tile, overlap=0.25, batch_size=batch_size
    )
    for probs, lab in zip(probs_iter, data.labels, strict=True):
        cm += confusion_matrix(probs.argmax(0), lab, n)
    network.train(was_training)
    return scores_from_confusion(cm, tuple(class_names))


def _encoder_groups(network: torch.nn.Module) -> list[list[torch.nn.Parameter]]:
    """Encoder parameters in blocks from input to output (for discriminative LRs)."""
    enc: torch.nn.Module = network.encoder  # type: ignore[assignment]
    groups = []
    for child in enc.children():
        params = [p for p in child.parameters()]
        if params:
            groups.append(params)
    return groups or [list(enc.parameters())]


def _param_groups(
    network: torch.nn.Module, lr: float, lr_range: tuple[float, float], *, frozen: bool
) -> list[dict[str, Any]]:
    encoder: torch.nn.Module = network.encoder  # type: ignore[assignment]
    enc_ids = {id(p) for p in encoder.parameters()}
    head = [p for p in network.parameters() if id(p) not in enc_ids]
    groups: list[dict[str, Any]] = [{"params": head, "lr": lr}]
    if frozen:
        return groups
    blocks = _encoder_groups(network)
    lo, hi = lr_range
    for k, params in enumerate(blocks):
        f = k / max(len(blocks) - 1, 1)
        groups.append({"params": params, "lr": lr * lo * (hi / lo) ** f})
    return groups


def iter_train(
    train: SliceSet,
    val: SliceSet | None,
    spec: ModelSpec,
    *,
    network: torch.nn.Module | None = None,
    config: TrainConfig | None = None,
    device: Any = None,
    output: str | None = None,
    provenance: dict[str, Any] | None = None,
    score_key: str | None = None,
    distributed: bool | None = None,
) -> ProgressGen[TrainResult]:
    """Train ``network`` (or a new one built from ``spec``) on ``train``; yield progress.

    Parameters
    ----------
    train, val : SliceSet
        Training planes and held-out validation planes (``val`` may be None: then the
        training loss picks the best epoch).
    spec : ModelSpec
        Classes, architecture and normalisation of the model to train. Label ids must
        be below ``spec.num_classes``; to add classes use :func:`expand_classes` first.
    network : torch.nn.Module, optional
        Starting weights (fine-tuning); a new network from ``spec`` otherwise.
    output : str, optional
        Path of a ``.safetensors`` file written atomically each time validation improves,
        so a cancelled or crashed run leaves the best model so far.
    score_key : str, optional
        Validation score to maximise; default the first foreground class's IoU
        (``"iou_fossil"`` for the default classes), falling back to ``mean_iou_fg``.
    distributed : bool, optional
        Train with DistributedDataParallel across the processes of a running
        torch.distributed process group (see
        :func:`~napari_microfossil.training.distributed.distributed_session`). Default: when one
        is running. Each rank samples its own crops (``seed + rank``), DDP averages the
        gradients, and rank 0 alone validates and writes ``output`` while the others
        wait; every rank returns the same weights.

    Yields
    ------
    Progress
        ``stage="train"``, one per optimiser step, ``info`` with ``loss``, ``epoch``,
        ``lr`` and, after each epoch, the validation scores.

    Raises
    ------
    InputError
        If there are no training planes, or labels hold class ids the spec lacks.
    """
    import torch

    from ..device import resolve_device
    from .distributed import all_reduce_float, barrier, broadcast_object, is_distributed

    cfg = config or TrainConfig()
    if len(train) == 0:
        raise InputError("training data: expected at least one labelled slice, got none")
    use_ddp = is_distributed() if distributed is None else bool(distributed)
    if use_ddp and not is_distributed():
        raise InputError(
            "distributed: True needs a running process group; launch with torchrun and "
            "train inside distributed_session()"
        )
    rank = int(torch.distributed.get_rank()) if use_ddp else 0
    main = rank == 0
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    rng = np.random.default_rng(cfg.seed + rank)  # but different crops and augmentations
    gen = torch.Generator().manual_seed(cfg.seed + rank)
    if network is None:
        from ..model import build_network

        network = build_network(spec)
    network = network.to(dev)
    if use_ddp and dev.type == "cuda":
        # Validation (rank 0 only) switches the network to channels_last; do it on all
        # ranks up front so DDP's gradient buckets match the parameters everywhere.
        network = network.to(memory_format=torch.channels_last)
    n_cls = spec.num_classes
    _check_label_ids(train, spec)
    cw = _class_weight_tensor(cfg, train, n_cls, dev)
    sampler = CropSampler(
        train, cfg.crop_size, foreground_fraction=cfg.foreground_fraction, rng=rng
    )
    use_amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    key = score_key or default_score_key(spec)

    total_epochs = cfg.frozen_epochs + cfg.epochs
    total_steps = total_epochs * cfg.steps_per_epoch
    history: list[dict[str, Any]] = []
    best_score, best_epoch, best_state = -math.inf, -1, None
    stale = 0
    stopped = "completed"
    t0 = time.monotonic()
    step = 0
    scale = cfg.resolutions[0]
    phases = [("frozen", cfg.frozen_epochs), ("unfrozen", cfg.epochs)]
    epoch = 0
    for phase, n_epochs in phases:
        if n_epochs == 0:
            continue
        frozen = phase == "frozen"
        encoder: torch.nn.Module = network.encoder  # type: ignore[assignment]
        for p in encoder.parameters():
            p.requires_grad_(not frozen)
        # DDP registers the parameters that need gradients when it wraps the network,
        # so each phase (frozen encoder or not) gets its own wrapper.
        model = _wrap_ddp(network, dev) if use_ddp else network
        groups = _param_groups(network, cfg.lr, cfg.encoder_lr_range, frozen=frozen)
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        peak = [g["lr"] for g in groups]
        phase_steps = n_epochs * cfg.steps_per_epoch
        # With a time limit each phase gets its share of the time, and the one-cycle
        # schedule runs on whichever ends first, steps or time: a short budget still
        # warms up and anneals completely.
        phase_time = cfg.time_limit_s * n_epochs / total_epochs if cfg.time_limit_s else None
        t_phase = time.monotonic()
        k = 0
        out_of_time = False
        for _ in range(n_epochs):
            new_scale = _scale_for(cfg, epoch, total_epochs, time.monotonic() - t0)
            if use_ddp:  # rank 0's clock decides: one scale everywhere
                new_scale = broadcast_object(new_scale)
            if new_scale != scale and (val is None or not len(val)):
                # Training losses at different scales do not compare: without
                # validation, the best model is chosen among the current scale's epochs.
                best_score, stale = -math.inf, 0
            scale = new_scale
            model.train()
            losses: list[float] = []
            for _ in range(cfg.steps_per_epoch):
                frac = k / phase_steps
                if phase_time is not None:
                    frac = max(frac, _time_used(t_phase, phase_time, ddp=use_ddp, device=dev))
                if frac >= 1.0 and losses:
                    out_of_time = True
                    break
                factor = one_cycle(min(frac, 1.0), cfg.pct_start)
                for g, lr in zip(opt.param_groups, peak, strict=True):
                    g["lr"] = lr * factor
                x, y = _training_batch(sampler, cfg, gen, dev, scale)
                with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                    logits = model(x)
                loss = dice_ce_loss(
                    logits.float(), y, class_weights=cw, dice_weight=cfg.dice_weight
                )
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                step += 1
                k += 1
                losses.append(float(loss.detach()))
                yield Progress(
                    "train",
                    step,
                    total_steps,
                    {
                        "epoch": epoch + 1,
                        "loss": losses[-1],
                        "lr": opt.param_groups[0]["lr"],
                        "phase": phase,
                    },
                )
            if phase_time is not None and not out_of_time:
                # Also after the epoch's last step: with one step per epoch the check
                # above never fires (each epoch takes at least one step).
                out_of_time = _time_used(t_phase, phase_time, ddp=use_ddp, device=dev) >= 1.0
            mean_loss = float(np.mean(losses))
            if use_ddp:
                mean_loss = all_reduce_float(mean_loss, op="mean", device=dev)
                _average_buffers(network)
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "phase": phase,
                "scale": scale,
                "steps": k,
                "loss": mean_loss,
                "seconds": round(time.monotonic() - t0, 1),
            }
            score = -mean_loss
            if main and val is not None and len(val):
                record.update(
                    evaluate(network, val, spec.class_names, device=dev, tile=spec.tile_size)
                )
                score = record.get(key, record.get("mean_iou_fg", float("nan")))
            if use_ddp:  # rank 0's validation decides for everyone
                record, score = broadcast_object((record, score))
            history.append(record)
            log.info("epoch %d: %s", epoch + 1, record)
            if score > best_score:
                best_score, best_epoch, stale = score, epoch + 1, 0
                best_state = copy.deepcopy(
                    {k_: v.detach().cpu() for k_, v in network.state_dict().items()}
                )
                if output is not None and main:
                    out_spec = _final_spec(spec, cfg, record, history, provenance, best_epoch)
                    save_model(output, network, out_spec)
                if use_ddp:
                    barrier()  # the others wait while rank 0 writes the checkpoint
            else:
                stale += 1
            yield Progress("validate", epoch + 1, total_epochs, dict(record))
            epoch += 1
            if out_of_time:
                stopped = "time-limit"
                break
            if cfg.patience is not None and stale >= cfg.patience:
                stopped = "early-stopping"
                break
        del model
        if stopped == "early-stopping":
            break
    for p in network.parameters():
        p.requires_grad_(True)
    if best_state is not None:
        network.load_state_dict(best_state)
    network.eval()
    best_record = next(
        (h for h in history if h["epoch"] == best_epoch), history[-1] if history else {}
    )
    out_spec = _final_spec(spec, cfg, best_record, history, provenance, best_epoch)
    if output is not None and main:
        save_model(output, network, out_spec)
    if use_ddp:
        barrier()
    return TrainResult(
        network=network, spec=out_spec, history=history, best_epoch=best_epoch, stopped=stopped
    )


def _time_used(t_start: float, budget_s: float, *, ddp: bool, device: Any) -> float:
    """Share of ``budget_s`` gone since ``t_start``; under DDP the slowest clock's, so
    every process takes the same learning rate and stops at the same step."""
    from .distributed import all_reduce_float

    used = (time.monotonic() - t_start) / budget_s
    return all_reduce_float(used, op="max", device=device) if ddp else used


def _scale_for(cfg: TrainConfig, epoch: int, total_epochs: int, elapsed_s: float) -> float:
    """The progressive-resolution scale of an epoch starting after ``elapsed_s``.

    The scales share the run evenly: by epochs, or with a time limit by whichever is
    further along, epochs or time (a time-limited run rarely reaches its epoch count,
    and must still end at full resolution).
    """
    done = epoch / total_epochs
    if cfg.time_limit_s:
        done = max(done, elapsed_s / cfg.time_limit_s)
    n = len(cfg.resolutions)
    return cfg.resolutions[min(int(done * n), n - 1)]


def _wrap_ddp(network: torch.nn.Module, dev: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``network`` (which keeps its own weights)."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return DistributedDataParallel(network, device_ids=[index], output_device=index)
    return DistributedDataParallel(network)


def _average_buffers(network: torch.nn.Module) -> None:
    """Average floating-point buffers (batch-norm statistics) over the ranks.

    DDP hands rank 0's buffers to all ranks before each forward pass, but each rank's
    last pass updates its own copy from its own crops: averaging makes them agree again
    (and uses every rank's statistics).
    """
    import torch.distributed as dist

    world = dist.get_world_size()
    for buf in network.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf.data, op=dist.ReduceOp.SUM)
            buf.data.div_(world)


def _check_label_ids(data: SliceSet, spec: ModelSpec) -> None:
    n_cls = spec.num_classes
    found = max_label_id(data)
    if found >= n_cls:
        raise InputError(
            f"labels: found class ids >= {n_cls} (up to {found}), but the model has classes "
            f"{list(spec.class_names)}; give the model a new head first with expand_classes() "
            "(microfossil train --classes)"
        )


def _class_weight_tensor(
    cfg: TrainConfig, data: SliceSet, n_cls: int, dev: torch.device
) -> torch.Tensor | None:
    import torch

    if cfg.class_weights is None:
        return None
    if isinstance(cfg.class_weights, str) and cfg.class_weights == "auto":
        w = auto_class_weights(data, n_cls)
    else:
        w = np.asarray(list(cfg.class_weights), dtype=np.float64)
    return torch.tensor(w, dtype=torch.float32, device=dev)


def _training_batch(
    sampler: CropSampler,
    cfg: TrainConfig,
    gen: torch.Generator,
    dev: torch.device,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One augmented batch of crops ``(B, 1, H, W)`` and labels ``(B, H, W)`` at ``scale``."""
    import torch

    xb, yb = sampler.sample(cfg.batch_size)
    x = torch.from_numpy(xb).to(dev)
    y = torch.from_numpy(yb.astype(np.int64)).to(dev)
    if cfg.augment != "off":
        x, y = augment_batch(x, y, gen, cfg.augment)
    if scale < 1.0:
        size = max(32, round(cfg.crop_size * scale / 32) * 32)
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
        y = torch.nn.functional.interpolate(
            y.unsqueeze(1).float(), size=(size, size), mode="nearest"
        )
        y = y.squeeze(1).long()
    return x, y


def one_cycle(frac: float, pct_start: float, *, div: float = 25.0, final_div: float = 1e4) -> float:
    """One-cycle learning-rate factor at ``frac`` in [0, 1] of the schedule.

    Cosine warm-up from ``1/div`` to 1 over ``pct_start``, then cosine annealing to
    ``1/final_div`` (the shape of ``torch.optim.lr_scheduler.OneCycleLR``).
    """
    if frac < pct_start:
        a = frac / pct_start
        return 1 / div + (1 - 1 / div) * (1 - math.cos(math.pi * a)) / 2
    a = (frac - pct_start) / max(1 - pct_start, 1e-9)
    return 1 / final_div + (1 - 1 / final_div) * (1 + math.cos(math.pi * min(a, 1.0))) / 2


def _final_spec(
    spec: ModelSpec,
    cfg: TrainConfig,
    record: dict[str, Any],
    history: list[dict[str, Any]],
    provenance: dict[str, Any] | None,
    best_epoch: int,
) -> ModelSpec:
    prov = dict(spec.provenance)
    prov.update(provenance or {})
    prov["recipe"] = cfg.to_dict()
    prov["epochs_run"] = len(history)
    prov["best_epoch"] = best_epoch
    prov["trained_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    metrics = {
        k: round(v, 5) if isinstance(v, float) else v
        for k, v in record.items()
        if k not in ("phase",)
    }
    return spec.with_updates(provenance=prov, metrics=metrics)


def train(train_set: SliceSet, val_set: SliceSet | None, spec: ModelSpec, **kw: Any) -> TrainResult:
    """Drain :func:`iter_train` and return its result."""
    from .._progress import drain

    return drain(iter_train(train_set, val_set, spec, **kw))


def split_slices(
    items: Iterable[str],
    *,
    val_fraction: float,
    rng: np.random.Generator,
    min_items: int = 2,
) -> tuple[list[int], list[int]]:
    """Indices of a random train/validation split.

    With fewer than ``min_items`` items (never fewer than 2) all of them train and the
    validation is empty; otherwise at least one item is held out, never all.
    """
    items = list(items)
    n = len(items)
    if n < max(int(min_items), 2):
        return list(range(n)), []
    order = rng.permutation(n)
    n_val = min(n - 1, max(1, round(n * val_fraction))) if n >= 2 else 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


# --- learning-rate finder ---------------------------------------------------------------


@dataclass(frozen=True)
class LRFindResult:
    """An exponential learning-rate sweep and the rate it suggests.

    Attributes
    ----------
    lrs, losses, smoothed : tuple of float
        The peak learning rate of each step, its training loss, and the loss smoothed
        by a bias-corrected exponential moving average.
    suggestion : float
        The suggested peak learning rate (``--lr``): the rate at the lowest smoothed
        loss divided by 10, kept within ``[min_lr, max_lr]``. At the lowest loss the
        rate is already about to make training unstable; a tenth of it still learns
        fast (L. N. Smith 2017; the fastai rule).
    min_loss_lr : float
        The rate at the lowest smoothed loss.
    steepest_lr : float
        The rate where the smoothed loss fell fastest (per decade) before its minimum:
        another common rule, reported for comparison.
    stopped : str
        ``"completed"`` or ``"diverged"`` (the smoothed loss exceeded ``diverge`` times
        its minimum, or was not finite, and the sweep stopped there).
    min_lr, max_lr : float
        The range asked for.
    """

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestion: float
    min_loss_lr: float
    steepest_lr: float
    stopped: str
    min_lr: float
    max_lr: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "suggestion": self.suggestion,
            "min_loss_lr": self.min_loss_lr,
            "steepest_lr": self.steepest_lr,
            "steps": len(self.lrs),
            "stopped": self.stopped,
            "min_lr": self.min_lr,
            "max_lr": self.max_lr,
        }


def suggest_lr(
    lrs: Sequence[float], smoothed: Sequence[float], *, min_lr: float, max_lr: float
) -> tuple[float, float, float]:
    """``(suggestion, min_loss_lr, steepest_lr)`` from a sweep's smoothed losses.

    The suggestion is the rate at the lowest smoothed loss divided by 10, clipped to
    ``[min_lr, max_lr]``; the steepest descent is searched before that minimum.
    """
    lr = np.asarray(lrs, dtype=np.float64)
    sm = np.asarray(smoothed, dtype=np.float64)
    if lr.size == 0 or lr.size != sm.size:
        raise ValueError(
            f"lrs, smoothed: expected two non-empty sequences of one length, got {lr.size} and {sm.size}"
        )
    finite = np.isfinite(sm)
    i_min = int(np.argmin(np.where(finite, sm, np.inf)))
    min_loss_lr = float(lr[i_min])
    steepest = min_loss_lr
    if i_min >= 2:
        slope = np.gradient(sm[: i_min + 1], np.log10(lr[: i_min + 1]))
        steepest = float(lr[int(np.argmin(slope))])
    suggestion = float(np.clip(min_loss_lr / 10.0, min_lr, max_lr))
    return suggestion, min_loss_lr, steepest


def iter_lr_find(
    train: SliceSet,
    spec: ModelSpec,
    *,
    network: torch.nn.Module | None = None,
    config: TrainConfig | None = None,
    device: Any = None,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    steps: int = 100,
    smoothing: float = 0.9,
    diverge: float = 4.0,
) -> ProgressGen[LRFindResult]:
    """Sweep the learning rate exponentially on training crops; yield progress.

    One optimiser step per rate, from ``min_lr`` to ``max_lr``, with the recipe of
    ``config`` (crops, augmentation, Dice + CE with class weights, AdamW and weight decay;
    the encoder frozen when ``config.frozen_epochs > 0``, else discriminative rates
    ``encoder_lr_range`` times the swept rate; the first scale of ``resolutions``). The
    rate swept is the *peak* rate of the schedule, ``TrainConfig.lr``. The network's
    weights, buffers, ``requires_grad`` flags, train/eval mode and device are restored
    afterwards, also when the sweep is cancelled.

    Parameters
    ----------
    train : SliceSet
        Training planes (never the validation ones).
    spec : ModelSpec
    network : torch.nn.Module, optional
        The network to probe (a new one from ``spec`` otherwise).
    min_lr, max_lr : float
        Range of the sweep, ``0 < min_lr < max_lr``.
    steps : int
        Number of rates tried (>= 5).
    smoothing : float
        Weight of the past in the loss's moving average, in [0, 1).
    diverge : float
        Stop when the smoothed loss exceeds this many times its lowest value.

    Yields
    ------
    Progress
        ``stage="lr-find"``, one per step, ``info`` with ``lr`` and ``loss`` (smoothed).

    Returns
    -------
    LRFindResult

    Raises
    ------
    InputError
        On a bad range or step count, no training planes, or class ids the spec lacks.
    """
    import torch

    from ..device import resolve_device

    cfg = config or TrainConfig()
    if not (0 < min_lr < max_lr and math.isfinite(max_lr)):
        raise InputError(f"min_lr, max_lr: expected 0 < min_lr < max_lr, got {min_lr}, {max_lr}")
    if steps < 5:
        raise InputError(f"steps: expected at least 5 learning rates to try, got {steps}")
    if not 0 <= smoothing < 1:
        raise InputError(f"smoothing: expected a value in [0, 1), got {smoothing}")
    if not diverge > 1:
        raise InputError(f"diverge: expected a factor > 1, got {diverge}")
    if len(train) == 0:
        raise InputError("training data: expected at least one labelled slice, got none")
    _check_label_ids(train, spec)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if network is None:
        from ..model import build_network

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            network = build_network(spec)
    first = next(network.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    saved_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
    saved_grad = [p.requires_grad for p in network.parameters()]
    was_training = network.training
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    stopped = "completed"
    try:
        network.to(dev).train()
        frozen = cfg.frozen_epochs > 0
        encoder: torch.nn.Module = network.encoder  # type: ignore[assignment]
        for p in encoder.parameters():
            p.requires_grad_(not frozen)
        groups = _param_groups(network, 1.0, cfg.encoder_lr_range, frozen=frozen)
        ratios = [g["lr"] for g in groups]  # each group's rate relative to the peak
        opt = torch.optim.AdamW(groups, lr=min_lr, weight_decay=cfg.weight_decay)
        cw = _class_weight_tensor(cfg, train, spec.num_classes, dev)
        sampler = CropSampler(
            train, cfg.crop_size, foreground_fraction=cfg.foreground_fraction, rng=rng
        )
        use_amp = dev.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        ratio = max_lr / min_lr
        avg, best = 0.0, math.inf
        for i in range(steps):
            lr = min_lr * ratio ** (i / (steps - 1))
            for g, r in zip(opt.param_groups, ratios, strict=True):
                g["lr"] = lr * r
            x, y = _training_batch(sampler, cfg, gen, dev, cfg.resolutions[0])
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                logits = network(x)
            loss = dice_ce_loss(logits.float(), y, class_weights=cw, dice_weight=cfg.dice_weight)
            value = float(loss.detach())
            avg = smoothing * avg + (1 - smoothing) * value
            sm = avg / (1 - smoothing ** (i + 1))
            lrs.append(lr)
            losses.append(value)
            smoothed.append(sm)
            yield Progress("lr-find", i + 1, steps, {"lr": lr, "loss": sm})
            if not math.isfinite(sm) or (i > 0 and sm > diverge * best):
                stopped = "diverged"
                break
            best = min(best, sm)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    finally:
        torch.nn.Module.load_state_dict(network, saved_state, strict=True)
        for p, flag in zip(network.parameters(), saved_grad, strict=True):
            p.requires_grad_(flag)
            p.grad = None
        network.to(home).train(was_training)
    suggestion, min_loss_lr, steepest = suggest_lr(lrs, smoothed, min_lr=min_lr, max_lr=max_lr)
    log.info(
        "lr finder: %d steps (%s), lowest loss at %.3g, suggestion %.3g",
        len(lrs),
        stopped,
        min_loss_lr,
        suggestion,
    )
    return LRFindResult(
        lrs=tuple(lrs),
        losses=tuple(losses),
        smoothed=tuple(smoothed),
        suggestion=suggestion,
        min_loss_lr=min_loss_lr,
        steepest_lr=steepest,
        stopped=stopped,
        min_lr=float(min_lr),
        max_lr=float(max_lr),
    )


def lr_find(train_set: SliceSet, spec: ModelSpec, **kw: Any) -> LRFindResult:
    """Drain :func:`iter_lr_find` and return its result."""
    from .._progress import drain

    return drain(iter_lr_find(train_set, spec, **kw))


# --- new classes: a new head -------------------------------------------------------------


def class_names_for_labels(
    class_names: Sequence[str],
    max_label: int,
    *,
    label_class_names: Sequence[str] | None = None,
) -> tuple[str, ...]:
    """The model's class names, extended to cover label ids up to ``max_label``.

    Ids the model already has keep its names; each new id takes its name from
    ``label_class_names`` (e.g. a label file's metadata) when given, else ``class_<id>``.
    """
    names = list(class_names)
    extra = list(label_class_names or ())
    for i in range(len(names), int(max_label) + 1):
        name = extra[i] if i < len(extra) and extra[i] else f"class_{i}"
        while name in names:  # a name the model uses for another id
            name = f"{name}_{i}"
        names.append(name)
    return tuple(names)


def max_label_id(data: SliceSet) -> int:
    """The largest class id in ``data``'s labels (255 = unlabelled is ignored)."""
    return max((int(lab[lab != IGNORE_INDEX].max(initial=0)) for lab in data.labels), default=0)


def expand_classes(
    network: torch.nn.Module,
    spec: ModelSpec,
    class_names: Sequence[str],
    *,
    model_name: str | None = None,
    seed: int = 0,
) -> tuple[torch.nn.Module, ModelSpec]:
    """A network whose head predicts ``class_names``, reusing everything it can.

    Encoder and decoder weights (and batch-norm statistics) are copied unchanged; so is
    the head's output channel of every class whose name the model already has (matched
    by name, so a class may move to another id). Channels of new classes start from the
    architecture's initialisation. The old classes' logits of the new network therefore
    equal the old network's. Warns once (``UserWarning``) when there are new classes.

    Parameters
    ----------
    network : torch.nn.Module
        The trained network for ``spec`` (left unchanged).
    spec : ModelSpec
    class_names : sequence of str
        All classes of the new model in id order, background first (at least 2, unique).
    model_name : str, optional
        How to name the model in the warning (default: its base or "the model").
    seed : int
        Seeds the initial weights of the new classes' channels.

    Returns
    -------
    network, spec
        ``network`` and ``spec`` themselves when the classes are the same; otherwise a
        new network (on ``network``'s device, in its train/eval mode) and a spec with the
        new classes, no metrics, and ``provenance["classes_from"]`` the old class names.

    Raises
    ------
    InputError
        If ``class_names`` has fewer than 2 or repeated names.
    """
    import torch

    from ..model import build_network

    new_names = tuple(str(n) for n in class_names)
    old_names = tuple(spec.class_names)
    if len(new_names) < 2:
        raise InputError(f"class_names: expected at least 2 classes, got {list(new_names)}")
    if len(set(new_names)) != len(new_names):
        dupes = sorted({n for n in new_names if new_names.count(n) > 1})
        raise InputError(f"class_names: expected unique names, got {dupes} more than once")
    if new_names == old_names:
        return network, spec
    added = [n for n in new_names if n not in old_names]
    prov = dict(spec.provenance)
    prov["classes_from"] = list(old_names)
    new_spec = spec.with_updates(class_names=new_names, metrics={}, provenance=prov)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new_net = build_network(new_spec)
    old_state = network.state_dict()
    state = new_net.state_dict()
    n_old, n_new = len(old_names), len(new_names)
    head_keys = 0
    for name, value in state.items():
        src = old_state.get(name)
        if src is None:
            raise InputError(f"expand_classes: the network has no weight {name!r}")
        if tuple(src.shape) == tuple(value.shape) and not (
            name.startswith("segmentation_head.") and n_old == n_new
        ):
            value.copy_(src)
            continue
        # A head tensor: output channels along the first axis.
        if not name.startswith("segmentation_head.") or src.shape[0] != n_old:
            raise InputError(
                f"expand_classes: cannot map weight {name!r} of shape {tuple(src.shape)} "
                f"onto {tuple(value.shape)}"
            )
        head_keys += 1
        with torch.no_grad():
            for i, cls in enumerate(new_names):
                if cls in old_names:
                    value[i].copy_(src[old_names.index(cls)])
    if head_keys == 0:
        raise InputError("expand_classes: found no class head (segmentation_head) to rebuild")
    torch.nn.Module.load_state_dict(new_net, state, strict=True)
    first = next(network.parameters(), None)
    if first is not None:
        new_net = new_net.to(first.device)
    new_net.train(network.training)
    who = model_name or str(spec.provenance.get("base") or "the model")
    what = (
        f"new head for classes {added}" if added else "new head (classes renamed, moved or dropped)"
    )
    warnings.warn(
        f"model {who} has classes {list(old_names)}; labels have {n_new} classes: {what}",
        UserWarning,
        stacklevel=2,
    )
    return new_net, new_spec
