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
    python benchmarks/scale_fossils.py --size 2048 --skip-baseline --progress-log p.log
    python benchmarks/scale_fossils.py --size 512 --object-check   # its cost, both paths

The labels are made slab by slab (never the whole volume in memory); ``--json`` writes
the results, ``--progress-log`` keeps the runs' progress bars to follow a long run.

Measured on the 2-core 24 GiB machine while other jobs kept its load average at 7-11
(so wall times are inflated; CPU s is not), ``--mesh none``, ``--as=8000000000``::

      size  objects       path   time s    CPU s  peak GiB  exit
       512    10000  blockwise     87.2     67.0      0.41  0
       512    10000  in-memory     78.7     52.3      0.99  0     (fossils.csv identical)
      1024    20000  blockwise    557.0    305.2      0.46  0
      1024    20000  in-memory     86.0        -      6.58  1     (MemoryError under --as)

After the measuring was made cheaper (load average 14-17)::

      1024    20000  blockwise    876.7    220.0      0.56  0   (13429 fossils)
"""

from __future__ import annotations

import argparse
import filecmp
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def plan_objects(size: int, objects: int, seed: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``(k, centre, radii)`` (voxels, z y x) of the ellipsoids, in painting order."""
    rng = np.random.default_rng(seed)
    # Radii so that the fossils fill about 8 % of the volume.
    mean_r = (0.08 * size**3 / objects / (4 / 3 * np.pi)) ** (1 / 3)
    plan = []
    for k in range(objects):
        r = rng.uniform(0.6, 1.4, 3) * mean_r
        c = rng.uniform(0, size, 3)
        plan.append((k, c, r))
    return plan


def paint_slab(lab: np.ndarray, z0: int, size: int, plan: list) -> None:
    """Paint planes ``z0 : z0 + len(lab)`` of the label volume (class 1: ellipsoids,
    every fifth hollow, some touching, anywhere so that many cross block boundaries;
    class 2: every 50th). Slab by slab gives the same volume as all at once: each slab
    paints the objects it meets in the same order."""
    z1 = z0 + lab.shape[0]
    if not plan:
        return
    centre = np.array([c for _, c, _ in plan])
    radii = np.array([r for _, _, r in plan])
    lo_all = np.maximum(np.floor(centre - radii).astype(int), 0)
    hi_all = np.minimum(np.ceil(centre + radii).astype(int) + 1, size)
    meets = np.all(hi_all > lo_all, axis=1) & (hi_all[:, 0] > z0) & (lo_all[:, 0] < z1)
    for i in np.flatnonzero(meets):  # only the objects this slab meets, in order
        k, c, r = plan[i]
        lo, hi = lo_all[i].copy(), hi_all[i].copy()
        lo[0], hi[0] = max(lo[0], z0), min(hi[0], z1)
        z, y, x = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        d = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2
        box = lab[lo[0] - z0 : hi[0] - z0, lo[1] : hi[1], lo[2] : hi[2]]
        if k % 5 == 0 and min(r) > 3:  # hollow: a cavity to fill
            inner = ((z - c[0]) / (r[0] - 2)) ** 2 + ((y - c[1]) / (r[1] - 2)) ** 2
            inner = inner + ((x - c[2]) / (r[2] - 2)) ** 2
            box[(d <= 1) & (inner > 1)] = 1
        else:
            box[d <= 1] = 1 if k % 50 else 2


def make_labels(size: int, objects: int, seed: int) -> np.ndarray:
    """A ``size³`` uint8 label volume with about `objects` fossils (class 1), in memory."""
    lab = np.zeros((size, size, size), np.uint8)
    paint_slab(lab, 0, size, plan_objects(size, objects, seed))
    return lab


def write_labels(
    folder: Path, size: int, objects: int, seed: int, tiff: bool, scan: bool = False
) -> None:
    """``labels.zarr`` (and ``labels.tif``) of :func:`make_labels`, slab by slab: never
    the whole volume in memory, so 2048³ (8 GiB of uint8) can be made too. With
    `scan`, also ``scan.zarr`` (uint16: the fossils bright in noise) and
    ``confidence.zarr`` (uint8: 90 % on fossils, 97 % elsewhere), for the object check."""
    from napari_microfossil.io.store import create_output
    from napari_microfossil.io.write import TiffSlabWriter

    plan = plan_objects(size, objects, seed)
    shape = (size, size, size)
    out = create_output(folder / "labels.zarr", shape, np.uint8)
    tif = TiffSlabWriter(folder / "labels.tif", shape, np.uint8) if tiff else None
    extra = {}
    if scan:
        extra = {
            "scan": create_output(folder / "scan.zarr", shape, np.uint16),
            "conf": create_output(folder / "confidence.zarr", shape, np.uint8),
        }
    rng = np.random.default_rng(seed + 1)
    for z0, z1 in out.todo():
        lab = np.zeros((z1 - z0, size, size), np.uint8)
        paint_slab(lab, z0, size, plan)
        out.write(z0, lab)
        if tif is not None:
            tif.write(z0, lab)
        if extra:
            noise = rng.normal(0, 800, lab.shape)
            extra["scan"].write(z0, (20000 + 5000.0 * (lab == 1) + noise).astype(np.uint16))
            extra["conf"].write(z0, np.where(lab == 1, 90, 97).astype(np.uint8))
    for store in (out, *extra.values()):
        store.finish()
    if tif is not None:
        tif.finish()


def run(cmd: list[str], as_limit: int, log: Path) -> dict[str, object]:
    """Wall s, CPU s, peak RSS GiB, exit code of `cmd`, run under ``/usr/bin/time -v``
    and ``prlimit --as`` with its stderr (progress bars, then time's report) in `log`.

    CPU time (user + system, the command and the processes it waited for) does not
    depend on what else the machine runs: on a shared machine, CPU s / cores is the
    wall time it would take alone with all cores busy.
    """
    full = ["/usr/bin/time", "-v", "prlimit", f"--as={as_limit}", *cmd]
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=err, text=True)
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text))
    before = text.split("Command being timed")[0].splitlines()
    return {
        "seconds": wall,
        "cpu_s": cpu,
        "rss_gib": int(m.group(1)) / 2**20 if m else float("nan"),
        "rc": proc.returncode,
        "tail": "\n".join(before[-15:]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, nargs="+", default=[512])
    p.add_argument("--objects", type=int, nargs="+", default=None)
    p.add_argument("--mesh", default="none", help="mesh format for both runs (default none)")
    p.add_argument("--as-limit", type=int, default=8_000_000_000, help="prlimit --as, bytes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument(
        "--object-check",
        action="store_true",
        help="also write a scan and a confidence map, and run both paths with the object "
        "check (beside the blockwise path without it, the baseline of its cost)",
    )
    p.add_argument("--tmp", default=None, help="folder for the temporary files")
    p.add_argument("--json", default=None, help="write the results here too")
    p.add_argument(
        "--progress-log",
        default=None,
        help="the runs' progress bars (and time -v) go to this file, to watch a long run",
    )
    args = p.parse_args()
    objects = args.objects or [
        10_000 if s <= 512 else 20_000 if s <= 1024 else 100_000 for s in args.size
    ]
    cli = [sys.executable, "-m", "napari_microfossil.cli", "fossils"]
    print(
        f"{'size':>6} {'objects':>8} {'path':>20} {'time s':>8} {'CPU s':>8} {'peak GiB':>9}  exit"
    )
    results = []
    for size, n in zip(args.size, objects, strict=True):
        with tempfile.TemporaryDirectory(prefix="scale-fossils-", dir=args.tmp) as tmp:
            t = Path(tmp)
            t0 = time.perf_counter()
            write_labels(t, size, n, args.seed, not args.skip_baseline, args.object_check)
            made = time.perf_counter() - t0
            print(f"# {size}³: labels written in {made:.0f} s", flush=True)
            opts = ["--mesh", args.mesh]
            check = ["--image", str(t / "scan.zarr"), "--confidence", str(t / "confidence.zarr")]
            check += ["--object-check"]
            runs = [("blockwise", t / "labels.zarr", t / "blk", [])]
            if args.object_check:
                runs = [
                    ("blockwise, no check", t / "labels.zarr", t / "plain", []),
                    ("blockwise", t / "labels.zarr", t / "blk", check),
                ]
            if not args.skip_baseline:
                runs.append(("in-memory", t / "labels.tif", t / "mem", runs[-1][3]))
            for name, src, dst, more in runs:
                log = Path(args.progress_log) if args.progress_log else t / "stderr.log"
                r = run([*cli, str(src), "-o", str(dst), *opts, *more], args.as_limit, log)
                rows = dst / "fossils.csv"
                r["fossils"] = len(rows.read_text().splitlines()) - 1 if rows.exists() else None
                print(
                    f"{size:>6} {n:>8} {name:>20} {r['seconds']:>8.1f} {r['cpu_s']:>8.1f} "
                    f"{r['rss_gib']:>9.2f}  {r['rc']}   ({r['fossils']} fossils)",
                    flush=True,
                )
                if r["rc"]:
                    print(r["tail"])
                del r["tail"]
                results.append({"size": size, "objects": n, "case": name, **r})
            if not args.skip_baseline and (t / "mem" / "fossils.csv").exists():
                same = filecmp.cmp(t / "blk" / "fossils.csv", t / "mem" / "fossils.csv", False)
                print(f"# {size}³: fossils.csv identical: {same}", flush=True)
                results[-1]["same_csv"] = same
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
