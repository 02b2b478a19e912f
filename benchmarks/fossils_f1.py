"""Object F1 of ``microfossil fossils`` with its defaults, on phantoms the model never saw.

Each phantom (test seeds 3000 and up, the default style and ``PhantomStyle().harder()``)
is written as a TIFF scan, segmented by the committed default model through the
product path (:func:`~napari_microfossil.workflows.segment_scan.iter_segment_scan`,
as ``microfossil segment --confidence CONF``), and its fossils extracted by
``microfossil fossils`` three times (``cli.main``, so exactly what a user gets): with
``--min-confidence 0 --no-object-check`` (``labels only``: the size limit and
splitting), with ``--confidence CONF --no-object-check`` (``+ confidence``: the
confidence limit, :data:`~napari_microfossil.fossils.DEFAULT_MIN_CONFIDENCE`, the
defaults before the object check), and with ``--confidence CONF --image SCAN``
(``defaults``: the object check, :mod:`napari_microfossil.fossils.objectcheck`; what
a run with no options does, since the labels name their map and scan). The instances are matched
one-to-one against the phantom's true fossil instances (``Phantom.instances``: touching
fossils keep their own ids) at IoU >= 0.5, greedily by IoU (at IoU > 0.5 a match is
unique anyway), and precision, recall and F1 printed.

The same extractions on the *true* class labels (``+ confidence``: with the model's
confidence) are an upper bound: what is lost there is lost by the extraction (merges,
splits, the size and confidence limits), the rest by the segmentation. A few alternative settings run through the engine
(:func:`~napari_microfossil.fossils.extract_fossils`) on the model's labels.

Then, per size of true fossil, how much of it the model labels ``fossil`` (voxel
recall), to tell under-segmented small fossils (the model) from lost ones (the
extraction).

Usage::

    python benchmarks/fossils_f1.py [--seeds 3000 3001 3002] [--shape 128 256 256]
        [--styles default harder] [--cache DIR] [--model default] [--axes z] [--no-variants]

``--cache DIR`` keeps the scans and segmentations there, so a rerun skips segmenting.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_microfossil import cli
from napari_microfossil._progress import drain
from napari_microfossil.fossils import extract_fossils
from napari_microfossil.io import read_labels, write_tiff
from napari_microfossil.metrics import object_matches, object_scores
from napari_microfossil.phantom import PhantomStyle, make_phantom
from napari_microfossil.workflows.segment import SegmentOptions
from napari_microfossil.workflows.segment_scan import SegmentRequest, iter_segment_scan

TEST_SEED0 = 3000

#: Alternatives to the defaults, as engine keyword arguments (label, kwargs); run on
#: the model's labels only (each split extraction takes a CPU minute).
VARIANTS: tuple[tuple[str, dict], ...] = (
    ("66 vox, no split", {"min_voxels": 66, "split": False}),  # the defaults before
    ("269 vox, no split", {"min_voxels": 269, "split": False}),
    ("269 vox, split 0.7", {"min_voxels": 269, "split": True, "split_neck_ratio": 0.7}),
)


def add(total: list[int], counts: tuple[int, int, int]) -> None:
    """Add match counts to a running total, in place."""
    for k, c in enumerate(counts):
        total[k] += c


def segment(
    scan: Path, out: Path, conf: Path, model: str, device: str, axes: str = "z"
) -> np.ndarray:
    """Labels of `scan` as ``microfossil segment SCAN -o OUT --confidence CONF`` writes them."""
    if not (out.exists() and conf.exists()):
        request = SegmentRequest(
            scan,
            out,
            model=model,
            confidence=conf,
            options=SegmentOptions(device=device, axes=axes),
            overwrite=True,
        )
        drain(iter_segment_scan(request))
    return np.asarray(read_labels(out).load())


def fossils_defaults(
    labels: Path, outdir: Path, confidence: Path | None = None, scan: Path | None = None
) -> tuple[np.ndarray, str]:
    """Instances of ``microfossil fossils LABELS -o OUTDIR --mesh none`` and its summary.

    With `confidence` and `scan`: what a first run does with labels that
    ``segment --confidence`` wrote (they name both): the object check, no confidence
    limit. With `confidence` alone: ``--confidence CONF --no-object-check`` (the
    confidence limit, the defaults before the object check). Neither: ``--min-confidence
    0 --no-object-check`` (labels only)."""
    said = io.StringIO()
    argv = ["fossils", str(labels), "-o", str(outdir), "--mesh", "none", "--quiet", "--overwrite"]
    if confidence is None:
        argv += ["--min-confidence", "0", "--no-object-check"]
    else:
        argv += ["--confidence", str(confidence)]
        argv += ["--image", str(scan)] if scan is not None else ["--no-object-check"]
    with contextlib.redirect_stdout(said):
        code = cli.main(argv)
    if code != 0:
        raise SystemExit(f"microfossil fossils failed ({code}): {said.getvalue()}")
    inst = np.asarray(read_labels(outdir / "instances.tif").load())
    return inst, said.getvalue()


def size_report(truth: np.ndarray, seg: np.ndarray, rows: list) -> None:
    """Per true fossil: size and the fraction of its voxels the model calls fossil."""
    t = truth.ravel().astype(np.int64)
    n = int(t.max(initial=0))
    size = np.bincount(t, minlength=n + 1)
    hit = np.bincount(t, weights=(seg.ravel() == 1), minlength=n + 1)
    for k in range(1, n + 1):
        if size[k]:
            rows.append((int(size[k]), float(hit[k] / size[k])))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[TEST_SEED0, TEST_SEED0 + 1, 3002])
    p.add_argument("--shape", type=int, nargs=3, default=(128, 256, 256))
    p.add_argument("--styles", nargs="+", choices=["default", "harder"], default=["default"])
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache", type=Path, default=None, help="keep scans and labels here")
    p.add_argument("--no-variants", action="store_true", help="only the two CLI runs")
    p.add_argument("--axes", default="z", help="segment along these axes (zyx: fused)")
    args = p.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(prefix="fossils_f1_")
    cache = args.cache or Path(tmp.name)
    cache.mkdir(parents=True, exist_ok=True)
    variants = () if args.no_variants else VARIANTS
    names = [
        "labels only (CLI)",
        "+ confidence (CLI)",
        "defaults (CLI)",
        *(v[0] for v in variants),
    ]
    summary_line = ""
    for style_name in args.styles:
        style = PhantomStyle().harder() if style_name == "harder" else PhantomStyle()
        totals = {(n, src): [0, 0, 0] for n in names for src in ("model", "truth")}
        sizes: list[tuple[int, float]] = []
        print(
            f"\n== style {style_name}, shape {tuple(args.shape)}, model {args.model}, "
            f"axes {args.axes}"
        )
        print(
            f"{'seed':>5} {'true':>5} {'setting':<18} {'pred on model labels':>24} "
            f"{'pred on true labels':>24}"
        )
        for seed in args.seeds:
            ph = make_phantom(tuple(args.shape), seed=seed, style=style)
            # the scan and truth once per phantom; what a model makes, per model and axes
            phantom = cache / f"{style_name}_{seed}_{'x'.join(map(str, args.shape))}"
            tag = Path(args.model).stem + ("" if args.axes == "z" else f"_{args.axes}")
            stem = phantom.with_name(f"{phantom.name}_{tag}")
            scan, truth_path = (
                phantom.with_name(phantom.name + s) for s in ("_scan.tif", "_truth.tif")
            )
            seg_path, conf_path = (
                stem.with_name(stem.name + s) for s in ("_labels.tif", "_conf.tif")
            )
            kw = {"spacing": ph.spacing, "overwrite": True}
            if not scan.exists():
                write_tiff(scan, ph.image, **kw)
            write_tiff(truth_path, ph.labels, class_names=ph.class_names, **kw)
            t0 = time.process_time()
            seg = segment(scan, seg_path, conf_path, args.model, args.device, args.axes)
            t_seg = time.process_time() - t0
            size_report(ph.instances, seg, sizes)
            for src, lab, path in (("model", seg, seg_path), ("truth", ph.labels, truth_path)):
                runs = (
                    (None, None, "plain"),
                    (conf_path, None, "conf"),
                    (conf_path, scan, "check"),
                )
                for name, (conf, image, kind) in zip(names[:3], runs, strict=True):
                    out = stem.with_name(stem.name + f"_{src}_{kind}_out")
                    inst, said = fossils_defaults(path, out, conf, image)
                    summary_line = said if image and src == "model" else summary_line
                    add(totals[(name, src)], object_matches(inst, ph.instances))
                for label, opts in variants if src == "model" else ():
                    table = extract_fossils(lab, class_id=1, spacing=ph.spacing, **opts)
                    got = object_matches(table.instances, ph.instances)
                    add(totals[(label, src)], got)
            for n in names:
                cells = []
                for src in ("model", "truth"):
                    m, npred, ntrue = totals[(n, src)]
                    ran = ntrue > 0
                    cells.append(
                        f"{m:>4}/{npred:<4} F1 {object_scores(m, npred, ntrue)[2]:.3f}"
                        if ran
                        else "-"
                    )
                print(
                    f"{seed:>5} {len(ph.fossils):>5} {n:<18} {cells[0]:>24} {cells[1]:>24}"
                    f"  (running totals; segment {t_seg:.0f} CPU s)"
                    if n == names[0]
                    else f"{'':>5} {'':>5} {n:<18} {cells[0]:>24} {cells[1]:>24}"
                )
        print(f"\n-- style {style_name}: seeds {args.seeds} pooled")
        print(
            f"{'setting':<18} {'on':<6} {'precision':>9} {'recall':>7} {'F1':>6} "
            f"{'matched':>8} {'found':>6} {'true':>5}"
        )
        for n in names:
            for src in ("model", "truth"):
                m, npred, ntrue = totals[(n, src)]
                if not ntrue:
                    continue
                pr, rc, f1 = object_scores(m, npred, ntrue)
                print(
                    f"{n:<18} {src:<6} {pr:>9.3f} {rc:>7.3f} {f1:>6.3f} "
                    f"{m:>8} {npred:>6} {ntrue:>5}"
                )
        print("\nvoxel recall of true fossils by the model, by size (voxels):")
        edges = [0, 500, 1000, 2000, 5000, 20000, 10**9]
        arr = np.array(sizes, dtype=float)
        for lo, hi in itertools.pairwise(edges):
            sel = (arr[:, 0] >= lo) & (arr[:, 0] < hi)
            if sel.any():
                r = arr[sel, 1]
                print(
                    f"  {lo:>6}-{hi if hi < 10**9 else '':<6} n={int(sel.sum()):>3} "
                    f"median {np.median(r):.2f}  mean {r.mean():.2f}  min {r.min():.2f}"
                )
    print("\nsummary printed by `microfossil fossils` with the defaults (last run):")
    print(summary_line)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
