"""The Dask speed-up: ``segment`` and ``fossils`` with 2 local workers against 1 process.

Writes to a temporary folder (deleted afterwards) a uint16 scan as a ``.zarr`` store
(default 256 x 512 x 512) and a synthetic label volume with about 10⁴ fossils (default
512³, from ``scale_fossils.make_labels``), then runs each mode in its own process under
``/usr/bin/time -v`` and ``prlimit --as``:

* ``segment 1 process``: the streaming engine as ``microfossil segment`` runs it
  (``iter_slabs``, each slab written to two ``.zarr`` stores);
* ``segment dask 2``: the same slabs as tasks on a 2-worker ``LocalCluster``
  (``--workers 2``: :mod:`napari_microfossil.workflows.segment_cluster`), each worker
  writing its slabs;
* ``fossils 1 process``: the blockwise extraction measuring in a thread;
* ``fossils pool 2``: measuring in 2 local processes (the default of ``microfossil
  fossils`` on a 2-core machine);
* ``fossils dask 2``: measuring on a 2-worker ``LocalCluster`` (``--workers 2``).

The network is a fast stand-in predictor (a per-pixel function, 3 classes), so the
segment numbers are those of the engine, the reads, the writes and Dask's overhead; a
real network adds the same time per voxel to every mode, which the workers share.
Meshes are off for ``fossils``. The outputs of each cluster run are compared with the
one-process run's (labels and confidence bit for bit; the fossil table and instances).

Printed per mode: wall time (including the cluster's start), CPU time (user + system
of every process, workers included), the largest process's peak RSS, and the peak of
the RSS summed over the process and its children (sampled every 0.1 s). Run from the
repository root::

    python benchmarks/scale_dask.py
    python benchmarks/scale_dask.py --scan 512 1024 1024 --fossil-size 1024 --objects 20000

Measured 2026-12-02 on the shared 2-core machine at load average 12-15 (wall times are
mostly waiting for a core; CPU s is the fairer measure; fossils 6,405 found)::

    mode                   wall s    CPU s  start s  peak GiB  sum GiB  same
    segment 1 process        22.3      7.9      0.0      0.16     0.16  -
    segment dask 2           34.2     15.2      6.9      0.18     0.47  True
    fossils 1 process       360.9     74.6      0.0      0.42     0.42  -
    fossils pool 2          283.1     81.5      0.0      0.42     0.43  True
    fossils dask 2          483.8    210.8     16.7      0.43     0.60  True
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CLASSES = ("background", "fossil", "pore")
SEGMENT_MODES = ("segment 1 process", "segment dask 2")
FOSSIL_MODES = ("fossils 1 process", "fossils pool 2", "fossils dask 2")


def stand_in(batch: np.ndarray) -> np.ndarray:
    """3-class probabilities from the normalised intensity alone (cheap); defined here,
    so Dask ships it to the workers by value."""
    x = np.clip((batch + 1.0) * 0.5, 0.0, 1.0)
    fossil = 0.8 * x
    pore = 0.8 * (1.0 - x) * (1.0 - x)
    return np.concatenate([1.0 - 0.5 * (fossil + pore), 0.5 * fossil, 0.5 * pore], axis=1)


def make_scan(path: Path, shape: tuple[int, int, int]) -> None:
    """A compressible uint16 scan (smooth pattern plus a little noise), slab by slab."""
    from napari_microfossil.io.store import create_output

    out = create_output(path, shape, np.uint16)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : shape[1], 0 : shape[2]].astype(np.float32)
    for z0, z1 in out.todo():
        z = np.arange(z0, z1, dtype=np.float32)[:, None, None]
        val = 1000 + 400 * np.sin(xx / 23 + z / 31) * np.cos(yy / 17)
        noise = rng.integers(0, 16, size=(z1 - z0, *shape[1:]))
        out.write(z0, (val + noise).astype(np.uint16))
    out.finish()


def make_fossils(path: Path, size: int, objects: int) -> None:
    """``scale_fossils.make_labels`` written as a ``.zarr`` label store."""
    sys.path.insert(0, str(Path(__file__).parent))
    from scale_fossils import make_labels

    from napari_microfossil.io.store import create_output

    lab = make_labels(size, objects, seed=0)
    out = create_output(path, lab.shape, np.uint8, class_names=("background", "fossil", "pore"))
    for z0, z1 in out.todo():
        out.write(z0, lab[z0:z1])
    out.finish()


class TreeRss:
    """Peak of the RSS summed over this process and its descendants, sampled."""

    def __init__(self, every: float = 0.1) -> None:
        import psutil

        self.me = psutil.Process()
        self.peak = 0
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for p in [self.me, *self.me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**30


def child(mode: str, data: Path, work: Path) -> dict[str, object]:
    """One run in this process; the parent measures it."""
    from napari_microfossil._progress import drain

    tree = TreeRss()
    t0 = time.perf_counter()
    out: dict[str, object] = {}
    if mode.startswith("segment"):
        out = _segment(mode, data, work)
    else:
        from napari_microfossil.fossils.blockwise import extract_fossils_blockwise
        from napari_microfossil.io import read_labels

        labels = read_labels(data, lazy=True).data
        kw = {"class_id": 1, "min_voxels": 0}
        if mode == "fossils dask 2":
            from napari_microfossil.workflows.cluster import ClusterOptions, connect

            with connect(ClusterOptions(workers=2)) as client:
                out["startup"] = time.perf_counter() - t0
                table = extract_fossils_blockwise(
                    labels, work / "i.zarr", workers=2, executor=client.get_executor(), **kw
                )
        else:
            workers = 2 if mode == "fossils pool 2" else 1
            table = extract_fossils_blockwise(labels, work / "i.zarr", workers=workers, **kw)
        (work / "rows.json").write_text(json.dumps(list(table.rows), default=float))
        out["objects"] = len(table.rows)
        del drain
    out["seconds"] = time.perf_counter() - t0
    out["tree_gib"] = tree.stop()
    return out


def _segment(mode: str, scan: Path, work: Path) -> dict[str, object]:
    from napari_microfossil.io import read_volume
    from napari_microfossil.normalise import Normalisation
    from napari_microfossil.segmentation import Slab, estimate_intensity_range, iter_slabs
    from napari_microfossil.workflows.segment_outputs import count_labels, open_outputs

    vol = read_volume(scan)
    shape = tuple(int(s) for s in vol.data.shape)
    lo, hi = estimate_intensity_range(vol.data, Normalisation())
    outputs, slab = open_outputs(
        [work / "l.zarr", work / "c.zarr"],
        shape,  # type: ignore[arg-type]
        spacing=vol.spacing,
        class_names=CLASSES,
        overwrite=False,
        resume=False,
        record={"benchmark": mode},
    )
    options = {"class_names": CLASSES, "confidence": True, "intensity_range": (lo, hi)}
    todo = outputs[0].todo()
    counts = np.zeros(3, dtype=np.int64)
    found: dict[str, object] = {"slab": slab}
    if mode == "segment dask 2":
        from napari_microfossil._progress import drain
        from napari_microfossil.workflows.cluster import ClusterOptions, connect
        from napari_microfossil.workflows.segment_cluster import (
            SlabJob,
            iter_slabs_on_cluster,
            recorded,
        )

        t0 = time.perf_counter()
        with connect(ClusterOptions(workers=2)) as client:
            found["startup"] = time.perf_counter() - t0
            stores = [recorded(o) for o in outputs]  # type: ignore[arg-type]
            job = SlabJob(
                scan=scan, outputs=[s.path for s in stores], model=stand_in, num_classes=3
            )
            counts += drain(iter_slabs_on_cluster(client, job, todo, options, stores))
        outputs = stores  # type: ignore[assignment]
    else:
        for item in iter_slabs(vol.data, stand_in, slab=slab, todo=todo, **options):
            if isinstance(item, Slab):
                outputs[0].write(item.z0, item.labels)
                assert item.confidence is not None
                outputs[1].write(item.z0, item.confidence)
                counts += count_labels(item.labels, [(0, len(item.labels))], 3)
    for o in outputs:
        o.finish()
    found["counts"] = counts.tolist()
    return found


def measure(mode: str, data: Path, work: Path, limit: int) -> dict[str, object]:
    """Run `mode` in a subprocess under /usr/bin/time -v and prlimit."""
    work.mkdir()
    cmd = ["/usr/bin/time", "-v", "prlimit", f"--as={limit}", sys.executable, __file__]
    cmd += ["--child", mode, str(data), str(work)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0

    def field(name: str) -> float:
        m = re.search(rf"{re.escape(name)}: ([\d.]+)", proc.stderr)
        return float(m.group(1)) if m else float("nan")

    out: dict[str, object] = {"mode": mode, "wall": wall, "rc": proc.returncode}
    out["cpu"] = field("User time (seconds)") + field("System time (seconds)")
    out["rss_gib"] = field("Maximum resident set size (kbytes)") / 2**20
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if lines:
        out.update(json.loads(lines[-1]))
    if proc.returncode:
        out["error"] = proc.stderr.strip().splitlines()[-3:]
    return out


def same_segment(a: Path, b: Path) -> bool:
    import zarr

    for name in ("l.zarr", "c.zarr"):
        x, y = zarr.open_group(str(a / name), mode="r")["0"], zarr.open_group(str(b / name))["0"]
        for z0 in range(0, x.shape[0], 32):
            if not np.array_equal(x[z0 : z0 + 32], y[z0 : z0 + 32]):
                return False
    return True


def same_fossils(a: Path, b: Path) -> bool:
    import zarr

    if (a / "rows.json").read_text() != (b / "rows.json").read_text():
        return False
    x, y = (
        zarr.open_group(str(a / "i.zarr"), mode="r")["0"],
        zarr.open_group(str(b / "i.zarr"))["0"],
    )
    return all(np.array_equal(x[z : z + 32], y[z : z + 32]) for z in range(0, x.shape[0], 32))


def records(rows: list[dict]) -> list[dict]:
    """The rows as ``benchmarks/scale.py`` reads them: each against its one-process run."""
    out = []
    for r in rows:
        base = "segment 1 process" if r["mode"].startswith("segment") else "fossils 1 process"
        note = f"start {r.get('startup', 0.0):.1f} s; same: {r.get('same', '-')}; rc={r['rc']}"
        out.append({"case": r["mode"], "seconds": r["wall"], "cpu_s": r["cpu"],
                    "rss_gib": r["rss_gib"], "baseline": None if r["mode"] == base else base,
                    "note": note})  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scan", type=int, nargs=3, default=[256, 512, 512], metavar=("Z", "Y", "X"))
    p.add_argument("--fossil-size", type=int, default=512)
    p.add_argument("--objects", type=int, default=10_000)
    p.add_argument("--only", choices=["segment", "fossils"], default=None)
    p.add_argument("--as-limit", type=int, default=8_000_000_000)
    p.add_argument("--child", nargs=3, metavar=("MODE", "DATA", "WORK"))
    p.add_argument("--size", type=int, default=None, help="fossils volume side (scale.py)")
    p.add_argument("--tmp", default="/tmp", help="folder for the temporary files")
    p.add_argument("--json", default=None, help="also write the records here (scale.py)")
    args = p.parse_args()
    if args.size:
        args.fossil_size = args.size
    if args.child:
        mode, data, work = args.child
        print(json.dumps(child(mode, Path(data), Path(work))))
        return
    tmp = Path(tempfile.mkdtemp(prefix="scale-dask-", dir=args.tmp))
    rows = []
    try:
        print(f"load average before: {os.getloadavg()}", flush=True)
        if args.only in (None, "segment"):
            scan = tmp / "scan.zarr"
            make_scan(scan, tuple(args.scan))
            for i, mode in enumerate(SEGMENT_MODES):
                rows.append(measure(mode, scan, tmp / f"s{i}", args.as_limit))
                print(rows[-1], flush=True)
            rows[-1]["same"] = same_segment(tmp / "s0", tmp / "s1")
        if args.only in (None, "fossils"):
            labels = tmp / "labels.zarr"
            make_fossils(labels, args.fossil_size, args.objects)
            for i, mode in enumerate(FOSSIL_MODES):
                rows.append(measure(mode, labels, tmp / f"f{i}", args.as_limit))
                print(rows[-1], flush=True)
                if i:
                    rows[-1]["same"] = same_fossils(tmp / "f0", tmp / f"f{i}")
        print(f"load average after: {os.getloadavg()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(records(rows)))
    print(
        f"\n{'mode':<20} {'wall s':>8} {'CPU s':>8} {'start s':>8} {'peak GiB':>9} {'sum GiB':>8}  same"
    )
    for r in rows:
        print(
            f"{r['mode']:<20} {r['wall']:8.1f} {r['cpu']:8.1f} {r.get('startup', 0.0):8.1f} "
            f"{r['rss_gib']:9.2f} {r.get('tree_gib', float('nan')):8.2f}  "
            f"{r.get('same', '-')}  rc={r['rc']}"
        )


if __name__ == "__main__":
    main()
