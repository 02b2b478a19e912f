"""Random training crops that over-sample rare classes, their augmentation, and one
training batch at a progressive-resolution scale."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..metrics import IGNORE_INDEX
from .config import TrainConfig
from .slices import SliceSet

if TYPE_CHECKING:
    import torch


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


def training_batch(
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
