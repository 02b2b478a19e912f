"""Benchmark the review autosave after one brush stroke: chunked (now) against whole (before).

A labels volume of ``SIZE³`` voxels is held in RAM as a Labels layer holds it; one brush
stroke paints a disc (``--radius`` voxels) on one z-plane, recorded as napari's paint
event records it (a masked atom). For each way of saving this prints

1. ``gui_ms``: time the calling (GUI) thread is blocked: recording the paint event and
   taking what the save writes (chunked: copies of the touched chunks; whole: a copy of
   the volume, today's :meth:`ReviewSession.snapshot`); ``gui_cpu_ms``: the CPU time of
   that (on a loaded machine the wall time includes waiting for a core);
2. ``complete_ms``: time from the stroke until the save is on disk (written in a
   worker thread, as the napari panel does);
3. ``first_save_s`` (chunked): the first save of a layer, which writes every chunk
   (in the worker thread, reading the live labels: the GUI thread is not blocked);
4. ``peak_rss_gib``: the process's peak resident memory (before any ``--restore``),
   next to the labels' size.

Each way runs in its own subprocess so that one's peak memory does not hide the
other's. Big files go to a temporary folder that is deleted. Run from the repository
root, under an address-space limit on a shared machine::

    prlimit --as=8000000000 python benchmarks/autosave.py --size 1024
    python benchmarks/autosave.py --size 2048 --no-baseline   # 8 GiB of labels
    python benchmarks/autosave.py --size 256 --strokes 3 --json out.json
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
from typing import Any, NamedTuple

import numpy as np

GIB = 2**30


class MaskedAtom(NamedTuple):
    """The shape of napari's ``_MaskedPaintAtom`` (what a brush stroke's event holds)."""

    slice_key: tuple[slice, ...]
    mask: np.ndarray
    old_values: np.ndarray
    new_value: int


def make_labels(size: int, dtype: str) -> np.ndarray:
    """Three classes in 16-voxel blocks: compresses like real labels, made slab by slab."""
    labels = np.empty((size, size, size), dtype=dtype)
    yx = np.arange(size)[:, None] // 16 + np.arange(size)[None, :] // 16
    planes = [((yx + k) % 3).astype(dtype) for k in range(3)]
    for z in range(size):
        labels[z] = planes[(z // 16) % 3]
    return labels


def paint_disc(labels: np.ndarray, centre: tuple[int, int, int], radius: int, value: int):
    """Paint a disc on one z-plane as napari's brush does; returns its paint atom."""
    z, y, x = centre
    ys = slice(max(y - radius, 0), min(y + radius + 1, labels.shape[1]))
    xs = slice(max(x - radius, 0), min(x + radius + 1, labels.shape[2]))
    yy, xx = np.ogrid[ys, xs]
    disc = ((yy - y) ** 2 + (xx - x) ** 2 <= radius**2)[None]
    key = (slice(z, z + 1), ys, xs)
    region = labels[key]
    mask = disc & (region != value)
    old = region[mask].copy()
    region[mask] = value
    return MaskedAtom(key, mask, old, value)


def strokes(size: int, n: int, seed: int) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    return [tuple(int(v) for v in rng.integers(16, size - 16, 3)) for _ in range(n)]


def _in_thread(fn) -> tuple[Any, threading.Thread]:
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.setdefault("out", fn()))
    thread.start()
    return box, thread


def run_phase(phase: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    from napari_microfossil.review import ReviewSession

    t0 = time.perf_counter()
    labels = make_labels(args.size, args.dtype)
    made_s = time.perf_counter() - t0
    chunks = tuple(args.chunks) if args.chunks else None
    session = ReviewSession(labels, scan_path=folder / "scan.tif", name="labels", chunks=chunks)
    out: dict[str, Any] = {"phase": phase, "labels_gib": labels.nbytes / GIB, "make_s": made_s}
    gui, gui_cpu, complete, written = [], [], [], []
    if phase == "chunked":
        session.labels_changed()  # the first save of the layer: every chunk
        t0 = time.perf_counter()
        update = session.update()
        gui_first = time.perf_counter() - t0
        assert update is not None
        box, thread = _in_thread(update.save)
        thread.join()
        session.saved(box["out"])
        out["first_save_gui_ms"] = gui_first * 1e3
        out["first_save_s"] = time.perf_counter() - t0
        out["chunks"] = list(session.chunk_grid.chunks)
        out["n_chunks"] = session.chunk_grid.count
    for k, centre in enumerate(strokes(args.size, args.strokes, args.seed)):
        atom = paint_disc(session.labels, centre, args.radius, value=k % 2 + 3)
        t0 = time.perf_counter()  # the paint event reaches the panel on the GUI thread
        c0 = time.thread_time()  # its CPU time: what a loaded machine does not inflate
        session.record_paint([atom], current=centre[0])
        take = session.update if phase == "chunked" else session.snapshot
        snap = take()
        blocked = time.perf_counter() - t0
        gui_cpu.append((time.thread_time() - c0) * 1e3)
        assert snap is not None
        box, thread = _in_thread(snap.save)
        thread.join()
        done = time.perf_counter() - t0
        session.saved(box["out"])
        gui.append(blocked * 1e3)
        complete.append(done * 1e3)
        if phase == "chunked" and session.sidecar is not None:
            written.append(len(session.sidecar.last_written))
    out.update(
        gui_ms=statistics.median(gui),
        gui_ms_max=max(gui),
        gui_cpu_ms=statistics.median(gui_cpu),
        complete_ms=statistics.median(complete),
        complete_ms_max=max(complete),
    )
    if written:
        out["chunks_written"] = written
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    if args.restore and phase == "chunked" and session.sidecar is not None:
        t0 = time.perf_counter()
        loaded = session.sidecar.load()[0]
        out["restore_s"] = time.perf_counter() - t0
        out["restored_equal"] = bool(np.array_equal(loaded, session.labels))
        del loaded
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=1024, help="edge of the SIZE³ labels volume")
    p.add_argument("--dtype", default="uint8")
    p.add_argument("--radius", type=int, default=10, help="brush radius in voxels")
    p.add_argument(
        "--chunks",
        type=int,
        nargs=3,
        default=None,
        help="chunk shape z y x (default: the autosave's; 64 64 64 at 1024³ gives the\n"
        "chunk count, hence the record size, of 2048³ at the default 128³)",
    )
    p.add_argument("--strokes", type=int, default=5, help="strokes (each saved) to time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-baseline", action="store_true", help="skip the whole-volume save")
    p.add_argument("--restore", action="store_true", help="also time restoring the save")
    p.add_argument("--tmp", default=None, help="folder for the temporary sidecars")
    p.add_argument("--json", default=None, help="write the results here too")
    p.add_argument("--phase", choices=["chunked", "full"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:  # a child: one way of saving, in a fresh process
        folder = Path(tempfile.mkdtemp(prefix="autosave-bench-", dir=args.tmp))
        try:
            print(json.dumps(run_phase(args.phase, args, folder)))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return 0
    phases = ["chunked"] if args.no_baseline else ["chunked", "full"]
    results = []
    for phase in phases:
        cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])]
        done = subprocess.run([*cmd, "--phase", phase], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{phase}: failed (exit {done.returncode})\n{done.stderr[-2000:]}")
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"labels {args.size}³ {args.dtype}, brush radius {args.radius}, {args.strokes} strokes")
    print(f"{'save':8} {'gui_ms':>8} {'(max)':>8} {'complete_ms':>12} {'(max)':>8} {'peak_GiB':>9}")
    for r in results:
        print(
            f"{r['phase']:8} {r['gui_ms']:8.1f} {r['gui_ms_max']:8.1f} {r['complete_ms']:12.1f} "
            f"{r['complete_ms_max']:8.1f} {r['peak_rss_gib']:9.2f}"
        )
    for r in results:
        extra = {k: v for k, v in r.items() if k not in {"phase", "gui_ms", "gui_ms_max"}}
        print(f"  {r['phase']}: {extra}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
