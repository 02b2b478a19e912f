"""Benchmark labels kept in a zarr store: the autosave after one brush stroke, and napari's
memory holding such a layer against one held in memory.

A ``SIZE³`` uint8 labels store is written (OME-Zarr, the chunks ``segment -o X.zarr``
uses), opened for editing (:class:`~napari_microfossil.review.labels_store.StoreLabels`)
and reviewed (:class:`~napari_microfossil.review.ReviewSession`). Each stroke paints a
disc on one z-plane the way napari's brush writes it (``data[indices] = value``). Printed:

1. ``paint_ms``: the brush's write into the layer (the chunks it touches are read from
   the store into memory on their first write);
2. ``gui_ms``: what the GUI thread then does for the autosave: recording the paint event
   and copying the changed chunks (:meth:`ReviewSession.update`);
3. ``complete_ms``: from the stroke until the save is in the store (journal written,
   committed, chunks written into the store, each flushed), in a worker thread;
4. ``peak_rss_gib`` of that process.

With ``--napari`` (needs a display: ``xvfb-run -a``), two more processes open napari,
add the labels as a layer, draw it, paint one stroke and report their peak RSS: the
store-backed layer against the same labels held in memory (what opening a TIFF does).

Big files go to a temporary folder that is deleted. Run from the repository root::

    prlimit --as=8000000000 python benchmarks/autosave_store.py --size 1024
    xvfb-run -a python benchmarks/autosave_store.py --size 1024 --napari
    xvfb-run -a python benchmarks/autosave_store.py --size 2048 --napari --no-memory
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

GIB = 2**30


def planes(size: int, z0: int, z1: int) -> np.ndarray:
    """Three classes in 16-voxel blocks (as benchmarks/autosave.py), planes z0..z1."""
    yx = np.arange(size)[:, None] // 16 + np.arange(size)[None, :] // 16
    out = np.empty((z1 - z0, size, size), np.uint8)
    for z in range(z0, z1):
        out[z - z0] = (yx + (z // 16) % 3) % 3
    return out


def make_store(path: Path, size: int) -> float:
    from napari_microfossil.io.store import create_output

    t0 = time.perf_counter()
    out = create_output(path, (size,) * 3, np.uint8, class_names=["bg", "a", "b"])
    for z in range(0, size, out.slab):
        out.write(z, planes(size, z, min(z + out.slab, size)))
    out.finish()
    return time.perf_counter() - t0


def disc(size: int, centre: tuple[int, int, int], radius: int) -> tuple[np.ndarray, ...]:
    """The voxel indices of a brush disc on one z-plane (napari's ``data_setitem`` key)."""
    z, y, x = centre
    yy, xx = np.mgrid[y - radius : y + radius + 1, x - radius : x + radius + 1]
    inside = ((yy - y) ** 2 + (xx - x) ** 2 <= radius**2) & (yy >= 0) & (xx >= 0)
    inside &= (yy < size) & (xx < size)
    ys, xs = yy[inside], xx[inside]
    return (np.full(ys.shape, z), ys, xs)


def run_autosave(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    from napari_microfossil.review import ReviewSession
    from napari_microfossil.review.labels_store import open_store_labels

    store = folder / "labels.zarr"
    out: dict[str, Any] = {"phase": "autosave", "labels_gib": args.size**3 / GIB}
    out["make_store_s"] = make_store(store, args.size)
    labels = open_store_labels(store)
    out["chunks"] = list(labels.chunks)
    session = ReviewSession(labels, scan_path=folder / "scan.tif", name="labels")
    rng = np.random.default_rng(args.seed)
    paint, gui, complete, written = [], [], [], []
    for k in range(args.strokes):
        centre = tuple(int(v) for v in rng.integers(16, args.size - 16, 3))
        idx = disc(args.size, centre, args.radius)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        old = labels[idx]  # napari reads the old values (its undo history) ...
        labels[idx] = k % 2 + 3  # ... and writes the new
        t1 = time.perf_counter()
        session.record_paint([(idx, old, k % 2 + 3)], current=centre[0])
        update = session.update()
        t2 = time.perf_counter()
        assert update is not None
        box: dict[str, Any] = {}
        thread = threading.Thread(target=lambda u=update, b=box: b.setdefault("out", u.save()))
        thread.start()
        thread.join()
        t3 = time.perf_counter()
        session.saved(box["out"])
        paint.append((t1 - t0) * 1e3)
        gui.append((t2 - t1) * 1e3)
        complete.append((t3 - t0) * 1e3)
        written.append(len(update.copies))
    back = np.asarray(open_store_labels(store)[idx[0][0]])
    out.update(
        paint_ms=statistics.median(paint),
        paint_ms_max=max(paint),
        gui_ms=statistics.median(gui),
        gui_ms_max=max(gui),
        complete_ms=statistics.median(complete),
        complete_ms_max=max(complete),
        chunks_written=written,
        last_stroke_in_store=bool((back[idx[1], idx[2]] == (args.strokes - 1) % 2 + 3).all()),
        peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
    )
    return out


def run_napari(args: argparse.Namespace, folder: Path, how: str) -> dict[str, Any]:
    import napari

    from napari_microfossil.review.labels_store import open_store_labels

    store = folder / "labels.zarr"
    if not store.exists():
        make_store(store, args.size)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    viewer = napari.Viewer(show=False)
    rss_viewer = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    t0 = time.perf_counter()
    data = open_store_labels(store) if how == "store" else np.asarray(open_store_labels(store))
    layer = viewer.add_labels(data, name="labels")
    viewer.dims.set_point(0, args.size // 2)
    viewer.screenshot(canvas_only=True)
    opened = time.perf_counter() - t0
    layer.brush_size = 2 * args.radius
    layer.paint((args.size // 2, args.size // 2, args.size // 2), 3)
    viewer.screenshot(canvas_only=True)
    out = {
        "phase": f"napari-{how}",
        "open_and_draw_s": opened,
        "rss_before_viewer_gib": rss0,
        "rss_viewer_gib": rss_viewer,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
    }
    viewer.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=1024, help="edge of the SIZE³ labels volume")
    p.add_argument("--radius", type=int, default=10, help="brush radius in voxels")
    p.add_argument("--strokes", type=int, default=5, help="strokes (each saved) to time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--napari", action="store_true", help="also napari's peak RSS (a display)")
    p.add_argument(
        "--no-memory", action="store_true", help="with --napari: skip the in-memory layer"
    )
    p.add_argument("--tmp", default=None, help="folder for the temporary store")
    p.add_argument("--json", default=None, help="write the results here too")
    p.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    p.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:  # a child: one measurement in a fresh process
        folder = Path(args.folder)
        if args.phase == "autosave":
            result = run_autosave(args, folder)
        else:
            result = run_napari(args, folder, args.phase.removeprefix("napari-"))
        print(json.dumps(result))
        return 0
    folder = Path(tempfile.mkdtemp(prefix="autosave-store-", dir=args.tmp))
    phases = ["autosave"] + (["napari-store", "napari-memory"] if args.napari else [])
    if args.no_memory:
        phases = [p for p in phases if p != "napari-memory"]
    results = []
    try:
        for phase in phases:
            cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])]
            done = subprocess.run(
                [*cmd, "--phase", phase, "--folder", str(folder)], capture_output=True, text=True
            )
            if done.returncode != 0:
                print(f"{phase}: failed (exit {done.returncode})\n{done.stderr[-2000:]}")
                continue
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"labels {args.size}³ uint8 in a zarr store, brush radius {args.radius}")
    for r in results:
        print(f"  {r.pop('phase')}: {r}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
