"""Benchmark the inference engine against the bare network it wraps.

For a phantom scan (or random data when :mod:`napari_microfossil.phantom` is missing)
and the bundled default model (or a random-init ResNet18 U-Net when it is missing),
prints for each requested slicing:

1. the engine's throughput (``iter_segment``: plane reads, normalisation, tiling,
   batching, blending, argmax, fusion), in Mvoxel/s of the volume;
2. the bare network's throughput on exactly the same tiles (same count, shapes and
   batch size; batches pre-built on the device, no I/O, no normalisation, no blending);
3. their ratio (engine / bare; 1.0 = no overhead);
4. the peak resident memory (``ru_maxrss``) of a fresh process that only loads the
   model and segments a memory-mapped copy of the volume, next to the volume's size.

Each measurement runs in its own subprocess so that the peak memory of one (or of
making the phantom) does not hide another's. Run from the repository root::

    python benchmarks/inference.py                       # 64x256x256, axes z and zyx
    python benchmarks/inference.py --device cuda --shape 256 512 512 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_volume(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, str]:
    try:
        from napari_microfossil.phantom import make_phantom
    except ImportError:
        rng = np.random.default_rng(seed)
        return rng.integers(0, 65535, size=shape, dtype=np.uint16), "random uint16"
    return make_phantom(shape, seed=seed).image, f"phantom (seed {seed})"


def load_network(device: str):
    from napari_microfossil.classes import PHANTOM_CLASS_NAMES
    from napari_microfossil.model import (
        LoadedModel,
        ModelSpec,
        build_network,
        default_model_path,
        load_model,
    )

    if default_model_path().is_file():
        return load_model("default", device=device), "default model"
    import torch

    torch.manual_seed(0)
    spec = ModelSpec(class_names=PHANTOM_CLASS_NAMES, encoder="resnet18")
    return LoadedModel(spec=spec, network=build_network(spec)), "random-init Unet(resnet18)"


def maxrss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes vs KiB


def tile_groups(
    shape: tuple[int, int, int], axes: str, tile: int, overlap: float
) -> list[tuple[tuple[int, int], int]]:
    """``[(tile shape, number of tiles)]`` the engine predicts, one entry per axis."""
    from napari_microfossil.segmentation import tile_starts

    groups = []
    for axis in axes:
        i = "zyx".index(axis)
        h, w = (s for j, s in enumerate(shape) if j != i)
        th, tw = min(tile, math.ceil(h / 32) * 32), min(tile, math.ceil(w / 32) * 32)
        per_plane = len(tile_starts(max(h, th), th, overlap)) * len(
            tile_starts(max(w, tw), tw, overlap)
        )
        groups.append(((th, tw), per_plane * shape[i]))
    return groups


def bare_network_seconds(model, device, groups, batch_size: int) -> float:
    """Time the network alone on the same tiles, in batches of ``batch_size``."""
    import torch

    net = model.network.to(device).eval()
    use_amp = device.type == "cuda"
    if use_amp:
        net = net.to(memory_format=torch.channels_last)
    gen = torch.Generator(device="cpu").manual_seed(0)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    total = 0.0
    with torch.inference_mode():
        for (th, tw), n_tiles in groups:
            sizes = [batch_size] * (n_tiles // batch_size)
            if n_tiles % batch_size:
                sizes.append(n_tiles % batch_size)
            batches = {b: torch.randn(b, 1, th, tw, generator=gen).to(device) for b in set(sizes)}
            if use_amp:
                batches = {
                    b: x.contiguous(memory_format=torch.channels_last) for b, x in batches.items()
                }
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                net(batches[sizes[0]])  # warm-up (cuDNN autotuning, allocator)
                sync()
                t0 = time.perf_counter()
                for b in sizes:
                    torch.softmax(net(batches[b]).float(), dim=1)
                sync()
                total += time.perf_counter() - t0
    return total


class TimedPredictor:
    """Wraps a predictor and adds up the seconds spent inside it."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.seconds = 0.0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.predictor(batch)
        finally:
            self.seconds += time.perf_counter() - t0


def child(args: argparse.Namespace) -> None:
    """One measurement in a fresh process; prints one JSON line."""
    from napari_microfossil._progress import drain
    from napari_microfossil.device import resolve_device
    from napari_microfossil.model import make_predictor
    from napari_microfossil.segmentation import iter_segment

    device = resolve_device(args.device)
    volume = np.load(args.child, mmap_mode="r")
    model, model_name = load_network(str(device))
    tile = args.tile or model.spec.tile_size
    shape = tuple(int(s) for s in volume.shape)
    groups = tile_groups(shape, args.axes, tile, args.overlap)
    # The same wrapper iter_segment builds for a LoadedModel, timed from outside.
    predictor = TimedPredictor(make_predictor(model.network, device))
    th, tw = groups[0][0]
    predictor(np.zeros((1, 1, th, tw), np.float32))  # first-call setup, not timed
    predictor.seconds = 0.0
    result = {
        "axes": args.axes,
        "device": str(device),
        "model": model_name,
        "tile": tile,
        "tiles": sum(n for _, n in groups),
        "rss_before_mb": maxrss_mb(),
    }
    if args.mode == "bare":
        result["seconds"] = bare_network_seconds(model, device, groups, args.batch_size)
    else:
        t0 = time.perf_counter()
        seg = drain(
            iter_segment(
                volume,
                predictor,
                spec=model.spec,
                axes=args.axes,
                tile=tile,
                overlap=args.overlap,
                batch_size=args.batch_size,
                confidence=True,
            )
        )
        result["seconds"] = time.perf_counter() - t0
        result["predictor_s"] = predictor.seconds
        result["fossil_fraction"] = float((seg.labels == 1).mean())
    result["rss_peak_mb"] = maxrss_mb()
    print("RESULT " + json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shape", type=int, nargs=3, default=(64, 256, 256), metavar=("Z", "Y", "X")
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tile", type=int, default=None, help="default: the model's tile size")
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--axes",
        nargs="+",
        default=None,
        help="slicings to measure, e.g. z zyx (default: z zyx on a GPU, z on the CPU)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("engine", "bare"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.axes = args.axes[0]
        child(args)
        return
    if args.axes is None:
        import torch

        cpu = args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available())
        args.axes = ["z"] if cpu else ["z", "zyx"]

    shape = tuple(args.shape)
    t0 = time.perf_counter()
    volume, source = make_volume(shape, args.seed)
    make_s = time.perf_counter() - t0
    vol_mb = volume.nbytes / 2**20
    print(
        f"volume  : {source}, shape {shape}, {volume.dtype}, {vol_mb:.1f} MiB"
        f" (made in {make_s:.1f} s)"
    )
    with tempfile.TemporaryDirectory(prefix="microfossil-bench-") as tmp:
        path = Path(tmp) / "volume.npy"
        np.save(path, volume)
        del volume
        rows = []
        for axes in args.axes:
            r = {}
            for mode in ("engine", "bare"):
                cmd = [sys.executable, __file__, "--child", str(path), "--mode", mode]
                cmd += ["--axes", axes, "--device", args.device, "--overlap", str(args.overlap)]
                cmd += ["--batch-size", str(args.batch_size)]
                if args.tile:
                    cmd += ["--tile", str(args.tile)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode or not lines:
                    sys.exit(f"axes {axes}, {mode}: failed\n{proc.stderr}")
                r[mode] = json.loads(lines[-1][len("RESULT ") :])
            rows.append(r)
    e0 = rows[0]["engine"]
    print(
        f"model   : {e0['model']}, tile {e0['tile']}, overlap {args.overlap}, "
        f"batch size {args.batch_size}, device {e0['device']}"
    )
    print(
        f"{'axes':<5} {'tiles':>6} {'engine':>8} {'bare net':>9} {'ratio':>6} {'in net':>7}"
        f" {'RSS model':>10} {'peak engine':>12} {'peak bare':>10} {'volume':>7}"
    )
    print(
        f"{'':<5} {'':>6} {'Mvox/s':>8} {'Mvox/s':>9} {'':>6} {'':>7}"
        f" {'MB':>10} {'MB':>12} {'MB':>10} {'MB':>7}"
    )
    mvox = math.prod(shape) / 1e6
    for r in rows:
        e, b = r["engine"], r["bare"]
        print(
            f"{e['axes']:<5} {e['tiles']:>6}"
            f" {mvox / e['seconds']:>8.3f} {mvox / b['seconds']:>9.3f}"
            f" {b['seconds'] / e['seconds']:>6.2f} {e['predictor_s'] / e['seconds']:>7.0%}"
            f" {e['rss_before_mb']:>10.0f} {e['rss_peak_mb']:>12.0f} {b['rss_peak_mb']:>10.0f}"
            f" {vol_mb:>7.1f}"
        )
    print(
        "ratio  : engine / bare network throughput (1.0 = no overhead; bare = same tiles,\n"
        "         batches pre-built on the device, no I/O, normalisation or blending).\n"
        "in net : share of the engine's wall time spent inside the predictor (same run,\n"
        "         so robust to a noisy shared CPU; the rest is the engine's own work).\n"
        "RSS    : peak resident memory of a fresh process, after loading the model and\n"
        "         after segmenting a memory-mapped copy of the volume (or the bare run)."
    )


if __name__ == "__main__":
    main()
