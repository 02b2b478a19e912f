"""Benchmark a big store-backed labels layer: scrolling through planes, and the 3D view.

A ``SIZE³`` uint8 labels store is written the way ``segment -o labels.zarr`` writes it
(OME-Zarr, chunks of 32 × 256 × 256 voxels at 1024²), in a temporary folder deleted at
the end. Each phase runs in its own process (so its peak RSS is its own):

- ``scroll``: read z-planes one after another through
  :class:`~napari_microfossil.review.labels_store.StoreLabels` (what napari's 2D view
  does while the user scrolls), without the decompressed-chunk cache and with it:
  per-plane latency (median, 95th percentile, max), CPU seconds, chunks read;
- ``preview``: build the 3D preview (:func:`~napari_microfossil.review.store_preview.iter_preview`)
  from scratch, then again after one brush stroke (only the chunks it touched);
- ``napari`` (with ``--napari``, a display: ``xvfb-run -a``): a viewer with the layer
  switches to 3D; time until the preview is drawn (a screenshot) and peak RSS, the
  whole volume never read.

Run from the repository root::

    prlimit --as=8000000000 python benchmarks/labels_big.py --size 1024
    xvfb-run -a prlimit --as=12000000000 python benchmarks/labels_big.py --size 1024 --napari
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from autosave_store import make_store

GIB = 2**30


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def _stats(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2),
        "max_ms": round(ms[-1], 2),
    }


def run_scroll(args: argparse.Namespace, store: Path) -> dict[str, Any]:
    from napari_microfossil.review.labels_store import StoreLabels, open_store_labels

    out: dict[str, Any] = {"phase": "scroll", "planes": args.planes}
    base = open_store_labels(store)
    for name, cache in (("no_cache", 0), ("cache", None)):
        kw = {} if cache is None else {"cache_bytes": cache}
        lab = StoreLabels(base.array, store, **kw)
        ms, c0 = [], _cpu()
        for z in range(args.planes):
            t0 = time.perf_counter()
            lab[z]
            ms.append((time.perf_counter() - t0) * 1000)
        out[name] = {
            **_stats(ms),
            "cpu_s": round(_cpu() - c0, 2),
            "chunks_from_store": lab.cache.misses if cache is None else None,
            "cache_mib": round(lab.cache.nbytes / 2**20, 1),
        }
    out["peak_rss_gib"] = round(_peak_gib(), 3)
    return out


def run_preview(args: argparse.Namespace, store: Path) -> dict[str, Any]:
    from napari_microfossil._progress import drain
    from napari_microfossil.review.labels_store import open_store_labels
    from napari_microfossil.review.store_preview import iter_preview

    lab = open_store_labels(store)
    out: dict[str, Any] = {"phase": "preview"}
    t0, c0 = time.perf_counter(), _cpu()
    prev = drain(iter_preview(lab, max_side=args.max_side))
    out["build"] = {
        "wall_s": round(time.perf_counter() - t0, 2),
        "cpu_s": round(_cpu() - c0, 2),
        "shape": list(prev.data.shape),
        "factor": prev.factor,
    }
    z, y = args.size // 2, args.size // 3
    lab[z, y : y + 10, y : y + 10] = 2  # a small stroke
    t0, c0 = time.perf_counter(), _cpu()
    prev = drain(iter_preview(lab, max_side=args.max_side, previous=prev))
    out["update_after_stroke"] = {
        "wall_s": round(time.perf_counter() - t0, 3),
        "cpu_s": round(_cpu() - c0, 3),
    }
    out["peak_rss_gib"] = round(_peak_gib(), 3)
    return out


def run_napari(args: argparse.Namespace, store: Path) -> dict[str, Any]:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_microfossil._napari.labels_3d import Preview3D
    from napari_microfossil.review.labels_store import open_store_labels

    viewer = napari.Viewer(show=True)
    lab = open_store_labels(store)
    layer = viewer.add_labels(lab, name="labels")
    watcher = Preview3D.install(viewer, max_side=args.max_side)
    viewer.screenshot()
    out: dict[str, Any] = {"phase": "napari", "rss_2d_gib": round(_peak_gib(), 3)}
    t0, c0 = time.perf_counter(), _cpu()
    viewer.dims.ndisplay = 3
    while watcher.preview_of(layer) is None:
        QApplication.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - t0 > 1800:
            raise TimeoutError("no 3D preview after 30 min")
    viewer.screenshot()
    out["first_3d_view_s"] = round(time.perf_counter() - t0, 2)
    out["cpu_s"] = round(_cpu() - c0, 2)
    t0 = time.perf_counter()
    viewer.dims.ndisplay = 2
    viewer.screenshot()
    out["back_to_2d_s"] = round(time.perf_counter() - t0, 2)
    out["peak_rss_gib"] = round(_peak_gib(), 3)
    viewer.close()
    return out


PHASES = {"scroll": run_scroll, "preview": run_preview, "napari": run_napari}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=1024, help="edge of the SIZE³ labels volume")
    p.add_argument("--planes", type=int, default=128, help="planes read by the scroll")
    p.add_argument("--max-side", type=int, default=512, help="largest side of the 3D preview")
    p.add_argument("--napari", action="store_true", help="also the napari 3D view (a display)")
    p.add_argument("--only", nargs="*", default=None, help="phases to run (default: all)")
    p.add_argument("--tmp", default=None, help="folder for the temporary store")
    p.add_argument("--json", default=None, help="write the results here too")
    p.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    p.add_argument("--store", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        print(json.dumps(PHASES[args.phase](args, Path(args.store))), flush=True)
        return 0
    folder = Path(tempfile.mkdtemp(prefix="labels_big_", dir=args.tmp))
    results: list[dict[str, Any]] = []
    try:
        store = folder / "labels.zarr"
        t0 = time.perf_counter()
        make_store(store, args.size)
        results.append({"phase": "make_store", "wall_s": round(time.perf_counter() - t0, 1)})
        print(json.dumps(results[-1]), flush=True)
        phases = args.only or ["scroll", "preview"] + (["napari"] if args.napari else [])
        for phase in phases:
            cmd = [sys.executable, __file__, "--phase", phase, "--store", str(store)]
            cmd += ["--size", str(args.size), "--planes", str(args.planes)]
            cmd += ["--max-side", str(args.max_side)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            if done.returncode:
                results.append({"phase": phase, "error": done.stderr[-2000:]})
            else:
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results.append({"loadavg": os.getloadavg()})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
