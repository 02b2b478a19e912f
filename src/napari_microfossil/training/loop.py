"""The training loop: a generator that trains, validates each epoch, keeps (and
writes) the best model so far, and returns a :class:`TrainResult`."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._progress import Progress, ProgressGen, drain
from ..errors import InputError
from ..model import ModelSpec, default_score_key, save_model
from .augment import CropSampler, training_batch
from .classes import check_label_ids
from .config import TrainConfig, clock
from .evaluate import evaluate
from .loss import class_weight_tensor, dice_ce_loss
from .schedule import one_cycle, param_groups, scale_for
from .slices import SliceSet

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What training returns: the best network, its spec (with metrics) and history."""

    network: Any
    spec: ModelSpec
    history: list[dict[str, Any]]
    best_epoch: int
    stopped: str  # "completed" | "early-stopping" | "time-limit"


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
    check_label_ids(train, spec)
    cw = class_weight_tensor(cfg, train, n_cls, dev)
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
    c0 = clock(cfg.time_clock)  # what the time limit counts
    cpu0 = time.process_time()
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
        groups = param_groups(network, cfg.lr, cfg.encoder_lr_range, frozen=frozen)
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        peak = [g["lr"] for g in groups]
        phase_steps = n_epochs * cfg.steps_per_epoch
        # With a time limit each phase gets its share of the time, and the one-cycle
        # schedule runs on whichever ends first, steps or time: a short budget still
        # warms up and anneals completely.
        phase_time = cfg.time_limit_s * n_epochs / total_epochs if cfg.time_limit_s else None
        t_phase = clock(cfg.time_clock)
        k = 0
        out_of_time = False
        for _ in range(n_epochs):
            new_scale = scale_for(cfg, epoch, total_epochs, clock(cfg.time_clock) - c0)
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
                    frac = max(
                        frac,
                        _time_used(t_phase, phase_time, cfg.time_clock, ddp=use_ddp, device=dev),
                    )
                if frac >= 1.0 and losses:
                    out_of_time = True
                    break
                factor = one_cycle(min(frac, 1.0), cfg.pct_start)
                for g, lr in zip(opt.param_groups, peak, strict=True):
                    g["lr"] = lr * factor
                x, y = training_batch(sampler, cfg, gen, dev, scale)
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
                out_of_time = (
                    _time_used(t_phase, phase_time, cfg.time_clock, ddp=use_ddp, device=dev) >= 1.0
                )
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
                "cpu_seconds": round(time.process_time() - cpu0, 1),
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


def _time_used(t_start: float, budget_s: float, kind: str, *, ddp: bool, device: Any) -> float:
    """Share of ``budget_s`` gone on clock `kind` since ``t_start``; under DDP the
    slowest clock's, so every process takes the same learning rate and stops at the
    same step."""
    from .distributed import all_reduce_float

    used = (clock(kind) - t_start) / budget_s
    return all_reduce_float(used, op="max", device=device) if ddp else used


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
    return drain(iter_train(train_set, val_set, spec, **kw))
