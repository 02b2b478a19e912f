"""The learning-rate finder: an exponential sweep of the peak rate on training crops."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._progress import Progress, ProgressGen, drain
from ..errors import InputError
from ..model import ModelSpec
from .augment import CropSampler, training_batch
from .classes import check_label_ids
from .config import TrainConfig
from .loss import class_weight_tensor, dice_ce_loss
from .schedule import param_groups
from .slices import SliceSet

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


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
    check_label_ids(train, spec)
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
        groups = param_groups(network, 1.0, cfg.encoder_lr_range, frozen=frozen)
        ratios = [g["lr"] for g in groups]  # each group's rate relative to the peak
        opt = torch.optim.AdamW(groups, lr=min_lr, weight_decay=cfg.weight_decay)
        cw = class_weight_tensor(cfg, train, spec.num_classes, dev)
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
            x, y = training_batch(sampler, cfg, gen, dev, cfg.resolutions[0])
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
    return drain(iter_lr_find(train_set, spec, **kw))
