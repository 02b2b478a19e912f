"""A new class head fitted in closed form before fine-tuning.

When a model gains classes (:func:`~napari_microfossil.training.expand_classes`), the new
head's channels start at random: the first steps of fine-tuning then spend themselves
on a head that predicts nothing useful, and with few steps the result swings from run
to run. :func:`fit_head` instead fits the head (the last 3x3 convolution) as a
multinomial logistic regression of the frozen network's last decoder features at the
labelled pixels, a convex problem solved in seconds on a CPU, so fine-tuning starts
from a head that already separates the user's classes as well as the features allow
(the idea of a linear probe, or ilastik's pixel classifier on network features).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..metrics import IGNORE_INDEX
from ..model import ModelSpec
from .slices import SliceSet

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: The head's taps: offsets (dy, dx) of a 3x3 convolution, row by row.
_TAPS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def head_conv(network: torch.nn.Module) -> torch.nn.Conv2d:
    """The convolution that maps decoder features to class logits (smp's
    ``segmentation_head[0]``)."""
    import torch

    head = getattr(network, "segmentation_head", None)
    conv = head[0] if isinstance(head, torch.nn.Sequential) and len(head) else head
    if not isinstance(conv, torch.nn.Conv2d):
        raise TypeError(f"expected a network with a Conv2d segmentation head, got {type(head)}")
    return conv


def add_pixel_features(
    network: torch.nn.Module, spec: ModelSpec, sigmas: Sequence[float]
) -> tuple[torch.nn.Module, ModelSpec]:
    """The same network with multiscale pixel features added to its class head's input
    (:mod:`napari_microfossil.model.pixel_features`).

    Encoder and decoder weights are copied; the head keeps its kernel for the decoder's
    channels and gets zeros for the features', so the new network predicts exactly what
    the old one did until its head is fitted or trained. A network that already has
    these sigmas is returned as it is.

    Returns
    -------
    network, spec
        ``spec.arch_kwargs["pixel_features"]`` lists the sigmas.
    """
    import torch

    from ..model import build_network
    from ..model.pixel_features import ARCH_KEY, split_arch_kwargs

    wanted = tuple(float(s) for s in sigmas)
    _, have = split_arch_kwargs(spec.arch_kwargs)
    if have == wanted:
        return network, spec
    if have:
        raise ValueError(f"the model already has pixel features {list(have)}")
    new_spec = spec.with_updates(arch_kwargs={**spec.arch_kwargs, ARCH_KEY: list(wanted)})
    new_net = build_network(new_spec)
    state = new_net.state_dict()
    for name, value in network.state_dict().items():
        if name.startswith("segmentation_head.") and value.ndim == 4:
            state[name].zero_()
            state[name][:, : value.shape[1]].copy_(value)
        else:
            state[name].copy_(value)
    torch.nn.Module.load_state_dict(new_net, state, strict=True)
    first = next(network.parameters(), None)
    if first is not None:
        new_net = new_net.to(first.device)
    new_net.train(network.training)
    return new_net, new_spec


def decoder_features(
    network: torch.nn.Module, image: np.ndarray, *, device: Any = "cpu", tile: int = 512
) -> np.ndarray:
    """The head's input (the last decoder features, and the pixel features of a
    network that has them) of a whole normalised plane.

    Parameters
    ----------
    image : ndarray, shape (Y, X)
        A normalised plane (as in :class:`SliceSet`).
    tile : int
        Planes larger than this (pixels, multiple of 32) are run in overlapping tiles.

    Returns
    -------
    ndarray of float32, shape (C, Y, X)
        C = the head's input channels (16 for the default U-Net).
    """
    import torch

    conv = head_conv(network)
    got: dict[str, torch.Tensor] = {}
    hook = conv.register_forward_hook(lambda mod, inp, out: got.__setitem__("x", inp[0]))
    h, w = image.shape
    out = np.zeros((conv.in_channels, h, w), np.float32)
    margin = 32
    step = tile - 2 * margin
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            for y0 in range(0, h, step):
                for x0 in range(0, w, step):
                    ya, xa = max(0, y0 - margin), max(0, x0 - margin)
                    yb, xb = min(h, y0 + step + margin), min(w, x0 + step + margin)
                    patch = image[ya:yb, xa:xb]
                    ph, pw = (-patch.shape[0]) % 32, (-patch.shape[1]) % 32
                    patch = np.pad(patch, ((0, ph), (0, pw)), mode="reflect")
                    x = torch.from_numpy(np.ascontiguousarray(patch, np.float32))[None, None]
                    network(x.to(device))
                    feats = got["x"][0].float().cpu().numpy()
                    yc, xc = min(h, y0 + step), min(w, x0 + step)
                    out[:, y0:yc, x0:xc] = feats[:, y0 - ya : yc - ya, x0 - xa : xc - xa]
    finally:
        hook.remove()
        network.train(was_training)
    return out


def fit_head(
    network: torch.nn.Module,
    data: SliceSet,
    num_classes: int,
    *,
    pixels_per_plane: int = 20000,
    l2: float = 1e-3,
    iterations: int = 200,
    seed: int = 0,
    device: Any = "cpu",
) -> dict[str, float]:
    """Fit ``network``'s class head to the labelled pixels of `data`, in place.

    Each sampled pixel's 3x3 neighbourhood of decoder features (the head's receptive
    field) is the input of a multinomial logistic regression with class weights of
    inverse square-root frequency (as training's ``"auto"``), solved with L-BFGS; its
    weights become the head's kernel and bias. The encoder and decoder are unchanged.

    Parameters
    ----------
    network : torch.nn.Module
        A network with a 3x3 ``Conv2d`` head with `num_classes` outputs.
    data : SliceSet
        Training planes; 255 (unlabelled) is skipped.
    num_classes : int
    pixels_per_plane : int
        Random labelled pixels drawn from each plane.
    l2 : float
        Weight of the squared-weight penalty (per pixel).
    iterations : int
        L-BFGS iterations.
    seed : int
        Seeds the pixel sample.

    Returns
    -------
    dict
        ``{"pixels": N, "accuracy": training-pixel accuracy, "loss": final loss}``.
    """
    import torch

    conv = head_conv(network)
    if tuple(conv.kernel_size) != (3, 3) or conv.out_channels != num_classes:
        raise ValueError(
            f"expected a 3x3 head with {num_classes} outputs, got {tuple(conv.kernel_size)} "
            f"with {conv.out_channels}"
        )
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for image, lab in zip(data.images, data.labels, strict=True):
        where = np.flatnonzero(lab.reshape(-1) != IGNORE_INDEX)
        if where.size == 0:
            continue
        pick = rng.choice(where, size=min(pixels_per_plane, where.size), replace=False)
        feats = decoder_features(network, image, device=device)
        c, h, w = feats.shape
        yy, xx = np.divmod(pick, w)
        taps = []
        for dy, dx in _TAPS:  # zero padding outside the plane, as the convolution
            y2, x2 = yy + dy, xx + dx
            inside = (y2 >= 0) & (y2 < h) & (x2 >= 0) & (x2 < w)
            v = feats[:, np.clip(y2, 0, h - 1), np.clip(x2, 0, w - 1)]
            taps.append(np.where(inside, v, 0.0))
        xs.append(np.stack(taps, axis=1).reshape(c * 9, -1).T)  # (N, C*9), channel-major
        ys.append(lab.reshape(-1)[pick])
    if not xs:
        raise ValueError("fit_head: no labelled pixel to fit the head on")
    x = torch.from_numpy(np.concatenate(xs).astype(np.float32))
    y = torch.from_numpy(np.concatenate(ys).astype(np.int64))
    counts = torch.bincount(y, minlength=num_classes).float()
    weights = torch.where(counts > 0, counts.clamp(min=1).rsqrt(), torch.zeros_like(counts))
    weights = weights * (counts > 0).sum() / weights.sum()
    w = torch.zeros(x.shape[1], num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iterations, line_search_fn="strong_wolfe")
    ce = torch.nn.CrossEntropyLoss(weight=weights)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ce(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        loss = float(ce(x @ w + b, y) + l2 * (w * w).sum())
        kernel = w.detach().T.reshape(num_classes, conv.in_channels, 3, 3)
        conv.weight.copy_(kernel.to(conv.weight))
        if conv.bias is not None:
            conv.bias.copy_(b.detach().to(conv.bias))
        acc = float(((x @ w + b).argmax(1) == y).float().mean())
    log.info("fitted the class head on %d pixels: accuracy %.3f", len(y), acc)
    return {"pixels": len(y), "accuracy": acc, "loss": loss}
