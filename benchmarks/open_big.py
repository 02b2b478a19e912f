"""How fast napari opens a big scan, with and without its multiscale pyramid.

Writes a synthetic uint16 scan of ``--size``³ voxels (or ``--shape Z Y X``) to a temp
folder, as an OME-Zarr store and as a BigTIFF, both slab by slab; builds the pyramid of
each (``microfossil pyramid``: time, peak RSS); then, in a fresh process per case,
times napari (under ``xvfb-run`` where there is no display) from ``viewer.open`` to the
first rendered view (a screenshot), a zoom-in to full resolution, the zoom back out, and
the switch to the 3D view. The cases: each format with its pyramid, and without one (the
reader opens the scan lazily at full resolution). Everything it writes is deleted.

Usage::

    xvfb-run -a python benchmarks/open_big.py --size 1024            # 2 GiB, ~10 min
    xvfb-run -a python benchmarks/open_big.py --shape 2048 2048 2048 # 16 GiB (needs ~40 GB disk)
    xvfb-run -a python benchmarks/open_big.py --screenshot \
        /work/shared/data/sandstone-versa-microct/images docs/images/11_pyramid_sandstone.png

Run it under ``prlimit --as=...`` to cap memory; a case that fails (e.g. the 3D view of
a 16 GB scan without pyramid) is reported as failed and the rest go on.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASE_TIMEOUT_S = 1800


def _rss_gib() -> float:
    """Peak RSS of this process (VmHWM: ru_maxrss would include the parent's, which a
    child inherits across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _slab(z0: int, z1: int, shape: tuple[int, int, int], noise: np.ndarray) -> np.ndarray:
    """Planes z0:z1 of a scan-like volume: grains (a smooth pattern) plus noise (one
    slab of it, shifted: drawing 16 GB of fresh noise would take longer than the rest)."""
    _, ny, nx = shape
    z = np.arange(z0, z1, dtype=np.float32)[:, None, None]
    y = np.arange(ny, dtype=np.float32)[None, :, None]
    x = np.arange(nx, dtype=np.float32)[None, None, :]
    grains = np.sin(x / 23.0 + np.sin(y / 41.0)) * np.cos(y / 29.0 + z / 37.0)
    r2 = ((y - ny / 2) ** 2 + (x - nx / 2) ** 2) / (0.45 * min(ny, nx)) ** 2
    core = np.where(r2 < 1.0, 20000.0 + 12000.0 * grains, 3000.0)
    noise = np.roll(noise[: z1 - z0], (z0 * 7919) % ny, axis=1)
    return np.clip(core + noise, 0, 65535).astype(np.uint16)


def write_scans(folder: Path, shape: tuple[int, int, int]) -> dict[str, dict]:
    """The same scan as ``scan.zarr`` and ``scan.tif``, written slab by slab."""
    import tifffile

    from napari_microfossil.io import create_output

    rng = np.random.default_rng(0)
    t = time.perf_counter()
    out = create_output(folder / "scan.zarr", shape, np.uint16, spacing=(2.0, 2.0, 2.0))
    tif = tifffile.memmap(folder / "scan.tif", shape=shape, dtype=np.uint16, bigtiff=True)
    noise = rng.normal(0.0, 800.0, size=(out.slab, *shape[1:])).astype(np.float32)
    for z0, z1 in out.todo():
        slab = _slab(z0, z1, shape, noise)
        out.write(z0, slab)
        tif[z0:z1] = slab
    out.finish()
    tif.flush()
    del tif
    return {"write_both_s": round(time.perf_counter() - t, 1)}


def build(scan: str) -> dict:
    """Child: build the pyramid of `scan`; its time and this process's peak RSS."""
    from napari_microfossil.io.pyramid import build_pyramid

    t = time.perf_counter()
    where = build_pyramid(scan, overwrite=True)
    return {
        "pyramid": str(where),
        "build_s": round(time.perf_counter() - t, 1),
        "peak_rss_gib": round(_rss_gib(), 2),
    }


def view(scan: str, *, pyramid: bool, shot: str | None = None) -> dict:
    """Child: time napari opening `scan` to a first view, zooms and the 3D view."""
    import napari

    from napari_microfossil.io import pyramid as pyr

    if not pyramid:
        pyr.find_pyramid = lambda *a, **k: None  # as if it had never been built
    t = time.perf_counter()
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1200, 900)
    # napari's one-time costs (GL set-up, its unit registry: ~2 s) go to viewer_start_s
    warm = viewer.add_image(np.zeros((2, 2, 2), np.uint16), units=("µm",) * 3)
    viewer.screenshot(canvas_only=True)
    viewer.layers.remove(warm)
    res: dict = {"viewer_start_s": round(time.perf_counter() - t, 2)}

    def timed(key: str, action) -> None:
        t0 = time.perf_counter()
        action()
        viewer.screenshot(canvas_only=True)
        res[key] = round(time.perf_counter() - t0, 2)
        res["peak_rss_gib"] = round(_rss_gib(), 2)
        print(json.dumps(res), flush=True)  # what was measured, should a later step die

    layers: list = []
    timed("first_view_s", lambda: layers.extend(viewer.open(scan, plugin="napari-microfossil")))
    layer = layers[0]
    res["multiscale"] = bool(layer.multiscale)
    zoom = viewer.camera.zoom
    timed("zoom_in_s", lambda: setattr(viewer.camera, "zoom", zoom * 16))
    timed("zoom_out_s", lambda: setattr(viewer.camera, "zoom", zoom))
    timed("view_3d_s", lambda: setattr(viewer.dims, "ndisplay", 3))
    # the same 3D frame again: what the renderer alone costs (software GL under Xvfb)
    timed("redraw_3d_s", lambda: None)
    if shot:
        viewer.dims.ndisplay = 2
        viewer.screenshot(shot, canvas_only=False)
    res["peak_rss_gib"] = round(_rss_gib(), 2)
    viewer.close()
    return res


def screenshot(scan: str, png: str) -> None:
    """The docs' picture: a real scan opened through its pyramid (built in the cache
    folder, as for a read-only data folder), zoomed out so napari draws level 1."""
    import napari

    from napari_microfossil.io.pyramid import build_pyramid, cache_path

    build_pyramid(scan, max_side=256, out=cache_path(scan))
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1100, 800)
    [layer] = viewer.open(scan, plugin="napari-microfossil")
    viewer.dims.set_point(0, layer.data[0].shape[0] // 2 * layer.scale[0])
    viewer.camera.zoom *= 0.45
    viewer.screenshot(canvas_only=True)
    viewer.canvas.overlays["scale_bar"].visible = True
    text = viewer.canvas.overlays["text"]
    text.visible = True
    text.position = "top_left"
    text.font_size = 11
    text.text = (
        f"{layer.name}: multiscale, {len(layer.data)} levels; "
        f"shown: level {layer.data_level} (zoomed out)"
    )
    viewer.screenshot(png, canvas_only=False)
    viewer.close()


def _child(*args: str) -> dict:
    cmd = [sys.executable, __file__, *args]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=CASE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return {"failed": f"timed out after {CASE_TIMEOUT_S} s"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    res = json.loads(lines[-1]) if lines else {}
    if done.returncode != 0:
        errors = [ln for ln in done.stderr.splitlines() if "rror" in ln or "bort" in ln]
        res["failed"] = f"exit {done.returncode}: " + " | ".join(errors[-3:])[-300:]
    return res  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", type=int, default=1024, help="edge of a cubic scan (voxels)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"))
    p.add_argument("--tmp", default=None, help="folder for the temp files (default: $TMPDIR)")
    p.add_argument("--formats", nargs="+", default=["zarr", "tif"], choices=["zarr", "tif"])
    p.add_argument(
        "--screenshot",
        nargs=2,
        metavar=("SCAN", "PNG"),
        help="only take the docs' screenshot of SCAN opened through its pyramid",
    )
    p.add_argument("--json", default=None, help="write the results here too")
    p.add_argument("--_build", help=argparse.SUPPRESS)
    p.add_argument("--_view", help=argparse.SUPPRESS)
    p.add_argument("--_plain", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.screenshot:
        screenshot(*args.screenshot)
        return 0
    if args._build:
        print(json.dumps(build(args._build)))
        return 0
    if args._view:
        print(json.dumps(view(args._view, pyramid=not args._plain)))
        return 0

    shape = tuple(args.shape or (args.size,) * 3)
    gib = int(np.prod(shape)) * 2 / 2**30
    print(f"scan {shape} uint16, {gib:.2f} GiB", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="open_big-", dir=args.tmp))
    results: dict = {"shape": shape, "gib": round(gib, 2)}
    try:
        results.update(write_scans(folder, shape))
        print(json.dumps(results), flush=True)
        for fmt in args.formats:
            scan = str(folder / f"scan.{fmt}")
            # without pyramid first, so the page cache favours neither case
            results[f"{fmt}_plain"] = _child("--_view", scan, "--_plain")
            print(fmt, "plain", json.dumps(results[f"{fmt}_plain"]), flush=True)
            results[f"{fmt}_build"] = _child("--_build", scan)
            print(fmt, "build", json.dumps(results[f"{fmt}_build"]), flush=True)
            results[f"{fmt}_pyramid"] = _child("--_view", scan)
            print(fmt, "pyramid", json.dumps(results[f"{fmt}_pyramid"]), flush=True)
            disk = sum(f.stat().st_size for f in Path(scan + ".pyramid.zarr").rglob("*"))
            results[f"{fmt}_pyramid_gib"] = round(disk / 2**30, 2)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    raise SystemExit(main())
