"""The optimiser's schedule: parameter groups with discriminative encoder rates, the
one-cycle factor, and the progressive-resolution scale of an epoch."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .config import TrainConfig

if TYPE_CHECKING:
    import torch


def encoder_groups(network: torch.nn.Module) -> list[list[torch.nn.Parameter]]:
    """Encoder parameters in blocks from input to output (for discriminative LRs)."""
    enc: torch.nn.Module = network.encoder  # type: ignore[assignment]
    groups = []
    for child in enc.children():
        params = [p for p in child.parameters()]
        if params:
            groups.append(params)
    return groups or [list(enc.parameters())]


def param_groups(
    network: torch.nn.Module, lr: float, lr_range: tuple[float, float], *, frozen: bool
) -> list[dict[str, Any]]:
    encoder: torch.nn.Module = network.encoder  # type: ignore[assignment]
    enc_ids = {id(p) for p in encoder.parameters()}
    head = [p for p in network.parameters() if id(p) not in enc_ids]
    groups: list[dict[str, Any]] = [{"params": head, "lr": lr}]
    if frozen:
        return groups
    blocks = encoder_groups(network)
    lo, hi = lr_range
    for k, params in enumerate(blocks):
        f = k / max(len(blocks) - 1, 1)
        groups.append({"params": params, "lr": lr * lo * (hi / lo) ** f})
    return groups


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


def scale_for(cfg: TrainConfig, epoch: int, total_epochs: int, elapsed_s: float) -> float:
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
