"""Train the bundled object check (``models/object_check.safetensors``).

The object check tells a fossil from a look-alike among the objects ``microfossil
fossils`` extracts (:mod:`napari_microfossil.fossils.objectcheck`). Its examples are
those objects, on phantoms the default model never saw:

1. each phantom (128 x 256 x 256, default style) is segmented by the default model as
   ``microfossil segment SCAN -o LABELS --confidence CONF`` does (axis z, CPU);
2. ``fossils``' extraction with its defaults but no confidence limit gives the objects;
3. an object is a fossil (1) when it matches a true fossil one to one at IoU >= 0.5
   (what the object F1 of ``benchmarks/fossils_f1.py`` counts), else 0 (grain
   clusters, ooids, pieces and merges of fossils).

Seeds: training 4000 .. 4000+n-1, validation (chooses the threshold by object F1, then
the second split, :func:`~napari_microfossil.fossils.objectcheck.iter_split_judged`: its
neck ratio and piece threshold, or none, by the object F1 of the whole extraction on the
validation phantoms, ``v<seed>.npz`` in the cache) the next ``--n-val`` (26: with 6 the F1 curve was too flat to choose from; ``--rethreshold``
chooses again for the weights already in ``--output``); the test seeds of ``benchmarks/fossils_f1.py`` (3000+) are never used. Each
phantom's examples are cached in ``--cache`` (``c<seed>.npz``).

Usage::

    python scripts/train_object_check.py --cache /tmp/object_check [--n-train 96 --n-val 26]
    python scripts/train_object_check.py --cache /tmp/object_check --rethreshold
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_microfossil._progress import drain
from napari_microfossil.fossils import defaults
from napari_microfossil.fossils.extract import iter_extract_fossils
from napari_microfossil.fossils.objectcheck import (
    ObjectCheck,
    build_network,
    default_object_check_path,
    fossil_probability,
    load_object_check,
    object_inputs,
    save_object_check,
)
from napari_microfossil.io import read_labels, write_tiff
from napari_microfossil.normalise import intensity_range
from napari_microfossil.phantom import make_phantom
from napari_microfossil.workflows.segment import SegmentOptions
from napari_microfossil.workflows.segment_scan import SegmentRequest, iter_segment_scan

SEED0 = 4000
SHAPE = (128, 256, 256)


def matched(instances: np.ndarray, truth: np.ndarray) -> set[int]:
    """Ids of `instances` that match a true fossil at IoU >= 0.5 (one to one)."""
    p, t = instances.ravel().astype(np.int64), truth.ravel().astype(np.int64)
    size_p, size_t = np.bincount(p), np.bincount(t)
    both = (p > 0) & (t > 0)
    pairs, inter = np.unique(p[both] * len(size_t) + t[both], return_counts=True)
    a, b = np.divmod(pairs, len(size_t))
    iou = inter / (size_p[a] + size_t[b] - inter)
    return set(a[iou >= 0.5].tolist())


def segmented(seed: int, cache: Path, *, keep: bool = False) -> dict[str, np.ndarray]:
    """One phantom's scan, true fossils and its labels and confidence as ``microfossil
    segment SCAN -o LABELS --confidence CONF`` writes them (axis z, CPU); with `keep`
    (the validation phantoms, which :func:`choose_split` reads again) cached as
    ``v<seed>.npz``."""
    path = cache / f"v{seed}.npz"
    if path.exists():
        return dict(np.load(path))
    ph = make_phantom(SHAPE, seed=seed)
    with tempfile.TemporaryDirectory(prefix="object_check_") as tmp:
        scan, labels, conf = (Path(tmp) / n for n in ("scan.tif", "labels.tif", "conf.tif"))
        write_tiff(scan, ph.image, spacing=ph.spacing)
        options = SegmentOptions(device="cpu", axes="z")
        drain(
            iter_segment_scan(
                SegmentRequest(scan, labels, model="default", confidence=conf, options=options)
            )
        )
        out = {
            "image": ph.image,
            "labels": np.asarray(read_labels(labels).load()),
            "conf": np.asarray(read_labels(conf).load()),
            "truth": ph.instances,
        }
    if keep:
        np.savez_compressed(path, **out)
    return out


def examples(seed: int, cache: Path, *, keep: bool = False) -> dict[str, np.ndarray]:
    """The examples of one phantom (cached; `keep`: keep its segmentation too)."""
    path = cache / f"c{seed}.npz"
    if path.exists():
        return dict(np.load(path))
    v = segmented(seed, cache, keep=keep)
    lab, confidence = v["labels"], v["conf"]
    table = drain(
        iter_extract_fossils(
            lab,
            min_voxels=defaults.DEFAULT_MIN_VOXELS,
            split=True,
            split_neck_ratio=defaults.DEFAULT_SPLIT_NECK_RATIO,
        )
    )
    inst = table.instances
    boxes = ndi.find_objects(inst)
    ids = [k for k, box in enumerate(boxes, start=1) if box is not None]
    objects = [(boxes[k - 1], inst[boxes[k - 1]] == k) for k in ids]
    crops, scalars = object_inputs(
        v["image"], lab, confidence, objects, class_id=1, intensity=intensity_range(v["image"])
    )
    good = matched(inst, v["truth"])
    out = {
        "X": crops,
        "S": scalars,
        "Y": np.array([int(k in good) for k in ids]),
        "ids": np.array(ids),
        "n_true": np.array(int(v["truth"].max())),
    }
    np.savez_compressed(path, **out)
    return out


def stack(
    seeds: range, cache: Path, *, keep: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, int]]]:
    xs, ss, ys, spans = [], [], [], []
    for seed in seeds:
        t = time.time()
        e = examples(seed, cache, keep=keep)
        xs.append(e["X"])
        ss.append(e["S"])
        ys.append(e["Y"])
        spans.append((len(e["Y"]), int(e["n_true"])))
        logging.info(
            "seed %d: %d objects, %d fossils (%.0f s)",
            seed,
            len(e["Y"]),
            int(e["Y"].sum()),
            time.time() - t,
        )
    return np.concatenate(xs), np.concatenate(ss), np.concatenate(ys), spans


def object_f1(keep: np.ndarray, y: np.ndarray, spans: list[tuple[int, int]]) -> float:
    """Pooled object F1 when the objects `keep` marks are kept (`spans`: objects, true fossils)."""
    tp = int((keep & (y == 1)).sum())
    found = int(keep.sum())
    n_true = sum(t for _, t in spans)
    p, r = tp / max(found, 1), tp / max(n_true, 1)
    return 2 * p * r / (p + r) if p + r else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cache", type=Path, required=True, help="folder for each phantom's examples")
    p.add_argument("--n-train", type=int, default=96)
    p.add_argument("--n-val", type=int, default=26)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--rethreshold",
        action="store_true",
        help="keep the weights of the check in --output; only choose its threshold again "
        "on the validation seeds",
    )
    p.add_argument("-o", "--output", type=Path, default=default_object_check_path())
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch

    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    train_seeds = range(SEED0, SEED0 + args.n_train)
    val_seeds = range(SEED0 + args.n_train, SEED0 + args.n_train + args.n_val)
    t0 = time.time()
    if args.rethreshold:
        check = load_object_check(args.output)
        net, provenance = check.network, dict(check.provenance)
        provenance["data"] = str(provenance.get("data", "")).split("; validation")[0]
    else:
        x, s, y, _ = stack(train_seeds, args.cache)
        net = train(x, s, y, args.epochs)
        provenance = {
            "trained_by": "scripts/train_object_check.py",
            "data": "objects fossils extracts from the default model's segmentations (axis z) "
            f"of phantoms {list(SHAPE)}, seeds {train_seeds.start}-{train_seeds.stop - 1} "
            f"({len(y)} objects, {int(y.sum())} fossils)",
            "epochs": args.epochs,
            "seconds": round(time.time() - t0),
        }
    xv, sv, yv, spans_v = stack(val_seeds, args.cache, keep=True)
    pv = fossil_probability(ObjectCheck(net, 0.5), xv, sv)
    grid = np.round(np.arange(0.1, 0.81, 0.05), 2)
    f1s = {float(t): object_f1(pv >= t, yv, spans_v) for t in grid}
    threshold = max(f1s, key=lambda t: f1s[t])
    conf_limit = (defaults.DEFAULT_MIN_CONFIDENCE / 50.0) - 1.0
    baseline = object_f1(sv[:, 1] >= conf_limit, yv, spans_v)
    logging.info("validation F1 by threshold: %s", {k: round(v, 3) for k, v in f1s.items()})
    logging.info(
        "threshold %.2f: validation object F1 %.3f (the %g %% confidence limit: %.3f)",
        threshold,
        f1s[threshold],
        defaults.DEFAULT_MIN_CONFIDENCE,
        baseline,
    )
    provenance.update(
        {
            "validation": f"threshold chosen by object F1 on seeds {val_seeds.start}-"
            f"{val_seeds.stop - 1} ({len(yv)} objects)",
            "validation_object_f1": round(f1s[threshold], 4),
            "validation_object_f1_confidence_limit": round(baseline, 4),
        }
    )
    split, split_f1s = choose_split(ObjectCheck(net, threshold), val_seeds, args.cache)
    logging.info("validation F1 by second split (neck ratio, threshold): %s", split_f1s)
    provenance["validation_split"] = {str(k): round(v, 4) for k, v in split_f1s.items()}
    save_object_check(args.output, net, threshold, provenance, split)
    logging.info("wrote %s (%.0f kB)", args.output, args.output.stat().st_size / 1e3)
    return 0


def choose_split(
    check: ObjectCheck, seeds: range, cache: Path
) -> tuple[tuple[float, float] | None, dict[Any, float]]:
    """The check's second split (:func:`iter_split_judged`): the neck ratio and piece
    threshold with the best pooled object F1 on the validation phantoms, or None when
    none beats no second split. Returns it and the F1 of each choice."""
    from napari_microfossil.fossils.objectcheck import iter_split_judged
    from napari_microfossil.metrics import object_matches

    grid = [None] + [(r, t) for r in (0.7, 0.8) for t in (0.5, 0.7, 0.9)]
    counts = {g: np.zeros(3, dtype=np.int64) for g in grid}
    for seed in seeds:
        v = segmented(seed, cache, keep=True)
        table = drain(
            iter_extract_fossils(
                v["labels"],
                min_voxels=defaults.DEFAULT_MIN_VOXELS,
                split=True,
                split_neck_ratio=defaults.DEFAULT_SPLIT_NECK_RATIO,
                image=v["image"],
                confidence=v["conf"],
                object_check=check,
            )
        )
        boxes = ndi.find_objects(table.instances)
        kept = [(b, table.instances[b] == k) for k, b in enumerate(boxes, start=1) if b]
        for g in grid:
            objects = kept
            if g is not None:
                trial = ObjectCheck(
                    check.network, check.threshold, split_neck_ratio=g[0], split_threshold=g[1]
                )
                replace = drain(
                    iter_split_judged(
                        trial,
                        kept,
                        spacing=(1.0, 1.0, 1.0),
                        min_count=defaults.DEFAULT_MIN_VOXELS,
                        min_distance_um=None,
                        scan=v["image"],
                        labels=v["labels"],
                        confidence=v["conf"],
                        class_id=1,
                    )
                )
                objects = [p for k, o in enumerate(kept) for p in replace.get(k, [o])]
            inst = np.zeros(table.instances.shape, dtype=np.uint16)
            for k, (box, mask) in enumerate(objects, start=1):
                inst[box][mask] = k
            counts[g] += object_matches(inst, v["truth"])
        logging.info("second split, seed %d done", seed)
    f1s: dict[Any, float] = {}
    for g, c in counts.items():
        m, found, true = (int(n) for n in c)
        prec, rec = m / max(found, 1), m / max(true, 1)
        f1s[g] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    best = max(grid, key=lambda g: (f1s[g], g is None))
    return best, f1s


def train(x: np.ndarray, s: np.ndarray, y: np.ndarray, epochs: int) -> Any:
    """A check's network trained on the examples (flips and axis swaps, one-cycle AdamW)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = build_network()
    batch = 32
    steps = epochs * -(-len(y) // batch)
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.2)
    xt, st = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(s)
    yt = torch.from_numpy(y.astype(np.float32))
    t0 = time.time()
    for epoch in range(epochs):
        net.train()
        order, total = rng.permutation(len(y)), 0.0
        for start in range(0, len(y), batch):
            i = order[start : start + batch]
            xb = xt[i]
            for axis in (2, 3, 4):  # flips and axis swaps: a fossil has no up or down
                if rng.random() < 0.5:
                    xb = torch.flip(xb, (axis,))
            xb = xb.permute(0, 1, *(rng.permutation(3) + 2).tolist())
            loss = nn.functional.binary_cross_entropy_with_logits(net(xb, st[i]), yt[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(i)
        logging.info("epoch %d  loss %.4f  (%.0f s)", epoch, total / len(y), time.time() - t0)
    net.eval()
    return net


if __name__ == "__main__":
    sys.exit(main())
