"""Multiscale pixel features beside the network's own: the hybrid class head.

ilastik's pixel classifier (and ``skimage.feature.multiscale_basic_features``) describes
each pixel by Gaussian-smoothed intensity, edge strength and the two Hessian
eigenvalues (texture) at several scales. On a real scan those features alone, in a
random forest trained on one labelled slice, beat a U-Net fine-tuned on five
(``docs/correction_loop.md``). A model with ``arch_kwargs["pixel_features"]`` (the
sigmas, e.g. ``[1, 2, 4, 8, 16]``) feeds them, computed in torch on the network's
input, into its class head next to the last decoder features: the head then sees both,
and fine-tuning learns what the decoder should add. The features hold no weights (a
model file stores only the sigmas, in its spec).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

#: ``arch_kwargs`` key of the sigmas.
ARCH_KEY = "pixel_features"
#: Default sigmas (pixels), as the ilastik baseline of the benchmarks (1..16).
DEFAULT_SIGMAS = (1.0, 2.0, 4.0, 8.0, 16.0)
#: Features per sigma: intensity, edges, two Hessian eigenvalues.
PER_SIGMA = 4


def blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Each channel of ``(B, C, H, W)`` convolved with the 1D `kernel` along x, then
    along y; borders repeat the edge pixels."""
    import torch.nn.functional as F

    c, r = x.shape[1], (kernel.numel() - 1) // 2
    x = F.pad(x, (r, r, 0, 0), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, r, r), mode="replicate")
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def gaussian(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(4 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


class MultiscaleFeatures(nn.Module):
    """Intensity, edges and Hessian eigenvalues at each sigma, scale-normalised.

    Maps ``(B, 1, H, W)`` to ``(B, 4 * len(sigmas), H, W)``: for each sigma the
    Gaussian-smoothed input, its gradient magnitude times sigma and the two
    eigenvalues of its Hessian times sigma² (so that every scale gives values of the
    same order). Borders repeat the edge pixels. No gradients flow through it.
    """

    def __init__(self, sigmas: Sequence[float] = DEFAULT_SIGMAS) -> None:
        super().__init__()
        self.sigmas = tuple(float(s) for s in sigmas)
        if not self.sigmas or any(not s > 0 for s in self.sigmas):
            raise ValueError(f"pixel_features: expected sigmas > 0, got {list(sigmas)}")
        for i, s in enumerate(self.sigmas):
            self.register_buffer(f"kernel{i}", gaussian(s), persistent=False)

    @property
    def channels(self) -> int:
        return PER_SIGMA * len(self.sigmas)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        out = []
        with torch.no_grad():
            x = x.float()
            for i, s in enumerate(self.sigmas):
                g = blur(x, getattr(self, f"kernel{i}"))
                p = F.pad(g, (1, 1, 1, 1), mode="replicate")
                c = p[..., 1:-1, 1:-1]
                gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
                gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
                gyy = p[..., 2:, 1:-1] - 2 * c + p[..., :-2, 1:-1]
                gxx = p[..., 1:-1, 2:] - 2 * c + p[..., 1:-1, :-2]
                gxy = (p[..., 2:, 2:] - p[..., 2:, :-2] - p[..., :-2, 2:] + p[..., :-2, :-2]) / 4
                half = (gxx + gyy) / 2
                root = torch.sqrt(((gxx - gyy) / 2) ** 2 + gxy**2)
                out += [
                    g,
                    torch.sqrt(gx**2 + gy**2) * s,
                    (half + root) * s**2,
                    (half - root) * s**2,
                ]
        return torch.cat(out, dim=1)


class FeatureHeadNet(nn.Module):
    """An smp encoder-decoder whose class head also sees :class:`MultiscaleFeatures`.

    Keeps the smp network's attribute names (``encoder``, ``decoder``,
    ``segmentation_head``, a ``Sequential`` whose first layer is the 3x3 convolution),
    so its weights have the same names and training treats it as any other network;
    the head's convolution takes the decoder's channels followed by the features'.
    """

    def __init__(self, net: Any, sigmas: Sequence[float]) -> None:
        super().__init__()
        self.encoder = net.encoder
        self.decoder = net.decoder
        self.pixel_features = MultiscaleFeatures(sigmas)
        old = net.segmentation_head[0]
        conv = nn.Conv2d(
            old.in_channels + self.pixel_features.channels,
            old.out_channels,
            kernel_size=old.kernel_size,
            padding=old.padding,
        )
        with torch.no_grad():  # the decoder's part starts as smp made it; the rest at 0
            conv.weight.zero_()
            conv.weight[:, : old.in_channels].copy_(old.weight)
            if conv.bias is not None and old.bias is not None:
                conv.bias.copy_(old.bias)
        self.segmentation_head = nn.Sequential(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        decoded = self.decoder(self.encoder(x))
        return self.segmentation_head(torch.cat([decoded, self.pixel_features(x)], dim=1))


def split_arch_kwargs(arch_kwargs: dict[str, Any]) -> tuple[dict[str, Any], tuple[float, ...]]:
    """``(the kwargs for smp, the pixel-feature sigmas or ())``."""
    kwargs = dict(arch_kwargs)
    sigmas = kwargs.pop(ARCH_KEY, None) or ()
    return kwargs, tuple(float(s) for s in sigmas)
