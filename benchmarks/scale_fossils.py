"""Benchmark ``microfossil fossils`` at scale: blockwise (zarr input) against in-memory (TIFF).

For each requested size, writes a synthetic label volume (class 1: ellipsoids, some
hollow, some touching, placed anywhere so that many cross block boundaries; class 2:
a few other bodies) to a temporary folder as an OME-Zarr store and as a TIFF, then
runs, each in its own subprocess under ``/usr/bin/time -v`` and ``prlimit --as``:

- ``microfossil fossils LABELS.zarr -o OUT``: the blockwise, out-of-core path;
- ``microfossil fossils LABELS.tif -o OUT``: today's in-memory path, the baseline.

and prints wall time, CPU time and peak RSS side by side, and whether the two tables
agree. Peak RSS is that of the largest single process (``/usr/bin/time``'s maximum
resident set size): the blockwise path's measuring workers are smaller. The
temporary folder is deleted afterwards. Run from the repository root::

    python benchmarks/scale_fossils.py                    # 512³ with 10⁴ objects
    python benchmarks/scale_fossils.py --size 1024 --objects 20000
    python benchmarks/scale_fossils.py --size 512 --mesh stl --as-limit 8000000000

Measured on the 2-core 24 GiB machine while other jobs kept its load average at 7-11
(so wall times are inflated; CPU s is not), ``--mesh none``, ``--as=8000000000``::

      size  objects       path   time s    CPU s  peak GiB  exit
       512    10000  blockwise     87.2     67.0      0.41  0
       512    10000  in-memory     78.7     52.3      0.99  0     (fossils.csv identical)
      1024    20000  blockwise    557.0    305.2      0.46  0
      1024    20000  in-memory     86.0        -      6.58  1     (MemoryError under --as)
"""

from __future__ import annotations

import argparse
import filecmp
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_labels(size: int, objects: int, seed: int) -> np.ndarray:
    """A ``size³`` uint8 label volume with about `objects` fossils (class 1)."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size, size), np.uint8)
    # Radii so that the fossils fill about 8 % of the volume.
    mean_r = (0.08 * size**3 / objects / (4 / 3 * np.pi)) ** (1 / 3)
    for k in range(objects):
        r = rng.uniform(0.6, 1.4, 3) * mean_r
        c = rng.uniform(0, size, 3)
        lo = np.maximum(np.floor(c - r).astype(int), 0)
        hi = np.minimum(np.ceil(c + r).astype(int) + 1, size)
        if np.any(hi <= lo):
            continue
        z, y, x = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        d = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2
        box = lab[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        if k % 5 == 0 and min(r) > 3:  # hollow: a cavity to fill
            inner = ((z - c[0]) / (r[0] - 2)) ** 2 + ((y - c[1]) / (r[1] - 2)) ** 2
            inner = inner + ((x - c[2]) / (r[2] - 2)) ** 2
            box[(d <= 1) & (inner > 1)] = 1
        else:
            box[d <= 1] = 1 if k % 50 else 2
    return lab


def run(cmd: list[str], as_limit: int) -> tuple[float, float, float, int, str]:
    """``(wall s, CPU s, peak RSS GiB, exit code, stderr tail)`` of `cmd` in a subprocess.

    CPU time (user + system, the command and the processes it waited for) does not
    depend on what else the machine runs: on a shared machine, CPU s / cores is the
    wall time it would take alone with all cores busy.
    """
    full = ["/usr/bin/time", "-v", "prlimit", f"--as={as_limit}", *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(full, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    rss = int(m.group(1)) / 2**20 if m else float("nan")
    cpu = sum(
        float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", proc.stderr)
    )
    tail = "\n".join(proc.stderr.splitlines()[-40:-23])
    return wall, cpu, rss, proc.returncode, tail


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, nargs="+", default=[512])
    p.add_argument("--objects", type=int, nargs="+", default=None)
    p.add_argument("--mesh", default="none", help="mesh format for both runs (default none)")
    p.add_argument("--as-limit", type=int, default=8_000_000_000, help="prlimit --as, bytes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-baseline", action="store_true")
    args = p.parse_args()
    objects = args.objects or [10_000 if s <= 512 else 20_000 for s in args.size]
    from napari_microfossil.io import write_tiff
    from napari_microfossil.io.store import create_output

    cli = [sys.executable, "-m", "napari_microfossil.cli", "fossils"]
    print(
        f"{'size':>6} {'objects':>8} {'path':>10} {'time s':>8} {'CPU s':>8} {'peak GiB':>9}  exit"
    )
    for size, n in zip(args.size, objects, strict=True):
        with tempfile.TemporaryDirectory(prefix="scale-fossils-") as tmp:
            t = Path(tmp)
            t0 = time.perf_counter()
            lab = make_labels(size, n, args.seed)
            out = create_output(t / "labels.zarr", lab.shape, np.uint8)
            for z0, z1 in out.todo():
                out.write(z0, lab[z0:z1])
            out.finish()
            if not args.skip_baseline:
                write_tiff(t / "labels.tif", lab)
            del lab
            made = time.perf_counter() - t0
            print(f"# {size}³: labels written in {made:.0f} s", flush=True)
            opts = ["--mesh", args.mesh, "--quiet"]
            runs = [("blockwise", t / "labels.zarr", t / "blk")]
            if not args.skip_baseline:
                runs.append(("in-memory", t / "labels.tif", t / "mem"))
            for name, src, dst in runs:
                wall, cpu, rss, rc, tail = run(
                    [*cli, str(src), "-o", str(dst), *opts], args.as_limit
                )
                print(
                    f"{size:>6} {n:>8} {name:>10} {wall:>8.1f} {cpu:>8.1f} {rss:>9.2f}  {rc}",
                    flush=True,
                )
                if rc:
                    print(tail)
            if not args.skip_baseline and (t / "mem" / "fossils.csv").exists():
                same = filecmp.cmp(t / "blk" / "fossils.csv", t / "mem" / "fossils.csv", False)
                print(f"# {size}³: fossils.csv identical: {same}", flush=True)


if __name__ == "__main__":
    main()
