"""The training recipe (:class:`TrainConfig`), saved in a model's provenance."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InputError
from ..model import check_size_multiple

AUGMENT_MODES = ("full", "light", "off")
#: What ``time_limit_s`` counts: wall-clock seconds, or CPU seconds of this process.
TIME_CLOCKS = ("wall", "cpu")


def clock(kind: str) -> float:
    """Seconds on clock `kind` (``"wall"``: :func:`time.monotonic`; ``"cpu"``:
    :func:`time.process_time`, user + system CPU of every thread of this process, so a
    machine busy with other work gives the same training for the same limit)."""
    return time.process_time() if kind == "cpu" else time.monotonic()


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
        Stop after this many seconds (the best model so far is kept); the one-cycle
        schedule is compressed to fit.
    time_clock : {"wall", "cpu"}
        What `time_limit_s` counts: wall-clock seconds, or CPU seconds (user + system)
        of the training process, which do not shrink when other programs load the
        machine. They do grow: on a loaded machine OpenMP threads spin while they
        wait for each other (unless ``OMP_WAIT_POLICY=PASSIVE``), and a step cost
        3.7 times the CPU seconds (docs/correction_loop.md, session 3); for the same
        training on any machine give a step budget (`epochs` x `steps_per_epoch`, no
        time limit).
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
    time_clock: str = "wall"
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.augment, bool):
            object.__setattr__(self, "augment", "full" if self.augment else "off")
        if self.augment not in AUGMENT_MODES:
            raise InputError(
                f"augment: expected one of {', '.join(AUGMENT_MODES)}, got {self.augment!r}"
            )
        if self.time_clock not in TIME_CLOCKS:
            raise InputError(
                f"time_clock: expected one of {', '.join(TIME_CLOCKS)}, got {self.time_clock!r}"
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
