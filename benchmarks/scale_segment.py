"""Peak memory and time of ``segment`` against volume size: streaming vs in memory.

For each edge N (default 256, 512, 1024) a uint16 scan of N³ voxels is written as a
``.zarr`` store to a temporary folder (slab by slab, deleted afterwards), then each
mode runs in its own process under ``/usr/bin/time -v`` and ``prlimit --as`` (so an
out-of-memory kills only that run):

* ``baseline``: import the libraries and read one plane -- what "beyond libraries"
  is measured from;
* ``stream``: the streaming path of ``microfossil segment SCAN -o L.zarr --confidence
  C.zarr``: :func:`~napari_microfossil.segmentation.iter_slabs` on the lazily read
  scan, each slab written to two :func:`~napari_microfossil.io.store.create_output`
  stores, class shares counted per plane;
* ``stream-tiff``: the same into two TIFFs written slab by slab
  (:class:`~napari_microfossil.io.write.TiffSlabWriter`);
* ``memory``: the path before streaming -- ``segment()`` holding labels and
  confidence of the whole volume, ``write_tiff`` of both, ``np.bincount`` of the
  whole label volume.

The network is replaced by a fast stand-in predictor (a per-pixel function of the
input, 3 classes), so the numbers are those of the engine, the reading and the
writing; a real network adds its own memory (a constant) and time. Run from the
repository root::

    python benchmarks/scale_segment.py                     # 256 512 1024
    python benchmarks/scale_segment.py --sizes 256 --modes stream memory --axes zyx
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = ("background", "fossil", "pore")
MODES = ("baseline", "stream", "stream-tiff", "memory")


def stand_in(batch: np.ndarray) -> np.ndarray:
    """3-class probabilities from the normalised intensity alone (cheap)."""
    x = np.clip((batch + 1.0) * 0.5, 0.0, 1.0)
    fossil = 0.8 * x
    pore = 0.8 * (1.0 - x) * (1.0 - x)
    return np.concatenate([1.0 - 0.5 * (fossil + pore), 0.5 * fossil, 0.5 * pore], axis=1)


def make_scan(path: Path, n: int) -> None:
    """A compressible N³ uint16 scan (smooth pattern plus a little noise), slab by slab."""
    from napari_microfossil.io.store import create_output

    out = create_output(path, (n, n, n), np.uint16)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    for z0, z1 in out.todo():
        z = np.arange(z0, z1, dtype=np.float32)[:, None, None]
        val = 1000 + 400 * np.sin(xx / 23 + z / 31) * np.cos(yy / 17)
        noise = rng.integers(0, 16, size=(z1 - z0, n, n))
        out.write(z0, (val + noise).astype(np.uint16))
    out.finish()


def child(mode: str, scan: Path, work: Path, axes: str = "z") -> dict[str, object]:
    """One run, in this process (the parent measures its peak RSS)."""
    from napari_microfossil.io import read_volume

    vol = read_volume(scan)
    data = vol.data
    t0 = time.perf_counter()
    if mode == "baseline":
        import tifffile  # noqa: F401
        import zarr  # noqa: F401

        from napari_microfossil.segmentation import iter_slabs

        np.asarray(data[0])
        return {"seconds": time.perf_counter() - t0}
    if mode == "memory":
        from napari_microfossil.io import write_tiff
        from napari_microfossil.segmentation import segment

        seg = segment(data, stand_in, class_names=CLASSES, confidence=True, axes=axes)
        write_tiff(work / "l.tif", seg.labels, spacing=vol.spacing, class_names=CLASSES)
        write_tiff(work / "c.tif", seg.confidence, spacing=vol.spacing)
        counts = np.bincount(seg.labels.ravel(), minlength=3)
        return {"seconds": time.perf_counter() - t0, "counts": counts.tolist()}
    from napari_microfossil.normalise import Normalisation
    from napari_microfossil.segmentation import Slab, estimate_intensity_range, iter_slabs
    from napari_microfossil.workflows.segment_outputs import count_labels, open_outputs

    shape = tuple(int(s) for s in data.shape)
    lo, hi = estimate_intensity_range(data, Normalisation())
    suffix = ".zarr" if mode == "stream" else ".tif"
    outputs, slab = open_outputs(
        [work / f"l{suffix}", work / f"c{suffix}"],
        shape,  # type: ignore[arg-type]
        spacing=vol.spacing,
        class_names=CLASSES,
        overwrite=False,
        resume=False,
        record={"benchmark": mode},
    )
    counts = np.zeros(3, dtype=np.int64)
    for item in iter_slabs(
        data,
        stand_in,
        slab=slab,
        axes=axes,
        class_names=CLASSES,
        confidence=True,
        intensity_range=(lo, hi),
    ):
        if isinstance(item, Slab):
            outputs[0].write(item.z0, item.labels)
            assert item.confidence is not None
            outputs[1].write(item.z0, item.confidence)
            counts += count_labels(item.labels, [(0, len(item.labels))], 3)
    for o in outputs:
        o.finish()
    return {"seconds": time.perf_counter() - t0, "counts": counts.tolist(), "slab": slab}


def measure(mode: str, scan: Path, work: Path, limit: int, axes: str) -> dict[str, object]:
    """Run `mode` in a subprocess under /usr/bin/time -v and prlimit."""
    cmd = ["/usr/bin/time", "-v", "prlimit", f"--as={limit}", sys.executable, __file__]
    cmd += ["--child", mode, str(scan), str(work), axes]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    out: dict[str, object] = {"mode": mode, "wall": wall, "rc": proc.returncode}
    out["rss_mib"] = int(rss.group(1)) / 1024 if rss else float("nan")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        out.update(json.loads(lines[-1]))
    else:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        out["error"] = "out of memory" if "MemoryError" in proc.stderr else tail
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--limit", type=int, default=8_000_000_000, help="address space, bytes")
    ap.add_argument("--axes", default="z", help="z, or e.g. zyx (three axes fused)")
    ap.add_argument("--tmp", default=None, help="folder for the temporary files")
    ap.add_argument("--json", default=None, help="write the results here too")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, scan, work, axes = args.child
        print(json.dumps(child(mode, Path(scan), Path(work), axes)))
        return
    modes = ["baseline", *[m for m in args.modes if m != "baseline"]]
    print(f"# axes {args.axes}; address space limit {args.limit / 1e9:g} GB")
    print(f"{'size':>6} {'mode':>12} {'time s':>8} {'peak RSS MiB':>13} {'beyond libs':>12}  note")
    results = []
    for n in args.sizes:
        tmp = Path(tempfile.mkdtemp(prefix="microfossil-scale-", dir=args.tmp))
        try:
            scan = tmp / "scan.zarr"
            t0 = time.perf_counter()
            make_scan(scan, n)
            print(f"# {n}³ uint16 scan written in {time.perf_counter() - t0:.0f} s", flush=True)
            base = 0.0
            for mode in modes:
                work = tmp / mode
                work.mkdir()
                r = measure(mode, scan, work, args.limit, args.axes)
                shutil.rmtree(work, ignore_errors=True)
                rss = float(r["rss_mib"])  # type: ignore[arg-type]
                if mode == "baseline":
                    base = rss
                seconds = r.get("seconds")
                took = f"{seconds:8.1f}" if isinstance(seconds, float) else f"{'-':>8}"
                note = r.get("error", f"slab {r['slab']} planes" if "slab" in r else "")
                print(
                    f"{n:>5}³ {mode:>12} {took} {rss:13.0f} {rss - base:12.0f}  {note}",
                    flush=True,
                )
                results.append({"size": n, "case": mode, **r, "beyond_libs_mib": rss - base})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
