"""Probe: does 3D context in the input (2.5D) help the slice network on fossils?

The default model sees one z-slice. This continues its training for the same number
of steps twice, from the same weights, on the same crops of the training phantoms
(seeds 1000+, default style):

- ``--context 0``: one slice, as now (the control);
- ``--context K``: the slice and its K neighbours on each side as channels; the first
  convolution is widened from the default model's, the new channels starting at zero,
  so step 0 computes exactly what the default model does.

Then both (and the untouched default model) segment held-out phantoms along z, plane by
plane (whole 256 x 256 planes, one network call each; the same for all three), and
are scored as voxel IoU of the fossil class and as object F1 of the fossils the
``fossils`` defaults extract (size limit, splitting, 85 % confidence limit, matched one
to one at IoU >= 0.5, :func:`napari_microfossil.metrics.object_matches`).

This is a probe, not a product path: the segmenter, the fine-tuning and the model file
do not know 2.5D input; it tells whether building them is worth it.

Usage::

    python benchmarks/probe_25d.py --context 1 --steps 600 --threads 1 [--test-seeds 3004 ...]
    python benchmarks/probe_25d.py --context 0 --steps 600 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from napari_microfossil.fossils import (
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_MIN_VOXELS,
    DEFAULT_SPLIT_NECK_RATIO,
    extract_fossils,
)
from napari_microfossil.metrics import object_matches, object_scores, segmentation_scores
from napari_microfossil.model import load_model
from napari_microfossil.normalise import apply_normalisation, intensity_range
from napari_microfossil.phantom import make_phantom
from napari_microfossil.training.loss import dice_ce_loss


def normalised(image: np.ndarray) -> np.ndarray:
    lo, hi = intensity_range(image)
    return apply_normalisation(image, lo, hi)


def planes(volume: np.ndarray, z: int, k: int) -> np.ndarray:
    """Slice `z` and its `k` neighbours on each side (clamped at the ends): (2k+1, Y, X)."""
    idx = np.clip(np.arange(z - k, z + k + 1), 0, volume.shape[0] - 1)
    return volume[idx]


def widen(net, k: int):
    """The network with its first convolution taking 2k+1 channels, the centre one the
    old weights, the others zero (so it starts as the one-slice network)."""
    import torch

    if k == 0:
        return net
    old = net.encoder.conv1
    new = torch.nn.Conv2d(
        2 * k + 1,
        old.out_channels,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=old.bias is not None,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, k : k + 1].copy_(old.weight)
    net.encoder.conv1 = new
    return net


def batches(data, k: int, crop: int, batch: int, rng: np.random.Generator):
    """Endless batches of crops (60 % centred on a fossil voxel), flipped and turned."""
    while True:
        xs, ys = [], []
        for _ in range(batch):
            image, labels, fossil_at = data[rng.integers(len(data))]
            if rng.random() < 0.6 and len(fossil_at):
                z, cy, cx = fossil_at[rng.integers(len(fossil_at))]
            else:
                z, cy, cx = (int(rng.integers(n)) for n in labels.shape)
            y0 = int(np.clip(cy - crop // 2, 0, labels.shape[1] - crop))
            x0 = int(np.clip(cx - crop // 2, 0, labels.shape[2] - crop))
            x = planes(image, int(z), k)[:, y0 : y0 + crop, x0 : x0 + crop]
            y = labels[z, y0 : y0 + crop, x0 : x0 + crop]
            turns = int(rng.integers(4))
            x, y = np.rot90(x, turns, axes=(1, 2)), np.rot90(y, turns)
            if rng.random() < 0.5:
                x, y = x[:, :, ::-1], y[:, ::-1]
            xs.append(np.ascontiguousarray(x, dtype=np.float32))
            ys.append(np.ascontiguousarray(y, dtype=np.int64))
        yield np.stack(xs), np.stack(ys)


def segment(net, image: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and confidence (percent) along z, one whole plane a call."""
    import torch

    vol = normalised(image)
    labels = np.zeros(image.shape, np.uint8)
    conf = np.zeros(image.shape, np.uint8)
    with torch.inference_mode():
        for z in range(image.shape[0]):
            x = torch.from_numpy(np.ascontiguousarray(planes(vol, z, k)))[None]
            p = torch.softmax(net(x), dim=1)[0]
            best, arg = p.max(dim=0)
            labels[z] = arg.numpy()
            conf[z] = np.round(best.numpy() * 100).astype(np.uint8)
    return labels, conf


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--context", type=int, default=1, help="neighbours on each side (0: control)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=160)
    p.add_argument("--n-train", type=int, default=24)
    p.add_argument("--shape", type=int, nargs=3, default=(96, 192, 192))
    p.add_argument("--test-seeds", type=int, nargs="+", default=[3004, 3005, 3006, 3007])
    p.add_argument("--test-shape", type=int, nargs=3, default=(128, 256, 256))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--base-too", action="store_true", help="also score the untouched model")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    k = args.context
    t0 = time.process_time()
    data = []
    for seed in range(1000, 1000 + args.n_train):
        ph = make_phantom(tuple(args.shape), seed=seed)  # type: ignore[arg-type]
        lab = np.asarray(ph.labels, np.uint8)
        fossil_at = np.argwhere(lab == 1)[::97]
        data.append((normalised(np.asarray(ph.image)).astype(np.float16), lab, fossil_at))
    print(f"data: {len(data)} phantoms ({time.process_time() - t0:.0f} CPU s)", flush=True)

    freq = np.bincount(np.concatenate([d[1].ravel() for d in data]), minlength=3) + 1.0
    weights = torch.tensor((1 / np.sqrt(freq)) / (1 / np.sqrt(freq)).mean(), dtype=torch.float32)
    net = widen(load_model("default", device="cpu").network.float(), k).train()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    feed = batches(data, k, args.crop, args.batch, rng)
    t0 = time.process_time()
    for step in range(1, args.steps + 1):
        x, y = next(feed)
        loss = dice_ce_loss(
            net(torch.from_numpy(x)), torch.from_numpy(y), class_weights=weights, dice_weight=1.0
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f} ({time.process_time() - t0:.0f} CPU s)")
    train_cpu = time.process_time() - t0
    net.eval()

    arms = [(f"context {k}, {args.steps} steps", net, k)]
    if args.base_too:
        arms.append(("default model", load_model("default", device="cpu").network.float(), 0))
    results = {}
    for name, model, kk in arms:
        totals, ious = [0, 0, 0], []
        for seed in args.test_seeds:
            ph = make_phantom(tuple(args.test_shape), seed=seed)  # type: ignore[arg-type]
            labels, conf = segment(model, np.asarray(ph.image), kk)
            iou = segmentation_scores(labels, ph.labels, ph.class_names)["iou_fossil"]
            table = extract_fossils(
                labels,
                class_id=1,
                spacing=ph.spacing,
                min_voxels=DEFAULT_MIN_VOXELS,
                split=True,
                split_neck_ratio=DEFAULT_SPLIT_NECK_RATIO,
                confidence=conf,
                min_confidence=DEFAULT_MIN_CONFIDENCE,
            )
            got = object_matches(table.instances, ph.instances)
            totals = [a + b for a, b in zip(totals, got, strict=True)]
            ious.append(iou)
            print(f"{name}: seed {seed} fossil IoU {iou:.4f}, objects {got}", flush=True)
        prec, rec, f1 = object_scores(*totals)
        results[name] = {"iou": ious, "objects": totals, "f1": f1}
        print(
            f"== {name}: fossil IoU mean {np.mean(ious):.4f}; objects {totals[0]} of "
            f"{totals[2]} found, {totals[1]} reported: P {prec:.3f} R {rec:.3f} F1 {f1:.3f}"
            f" (training {train_cpu:.0f} CPU s)",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args), "results": results}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
