"""The correction loop, simulated with the ground truth as the user: an annotation-efficiency curve.

Each round, for each arm:

1. pick the next ``--per-round`` slices, never one already corrected:
   - ``suggested``: ``review.suggest_slices`` on the per-slice confidence of the
     previous round's model (round 1: the base model), as the Review panel and
     ``microfossil suggest`` do;
   - ``even``: evenly spaced slices, nested (the slices of the earlier rounds stay):
     of the ``k`` evenly spaced positions for this round's total ``k``, the ones farthest
     from every corrected slice;
2. "correct" them: their truth planes are the user's labels;
3. fine-tune from the previous round's model on all corrected slices so far, the path of
   ``microfossil train``/the Fine-tune panel (``TrainRequest``/``iter_run_training``,
   with its default split: from 4 slices on a quarter is held out to keep the best
   epoch, or none with ``--no-hold-out``), at most ``--minutes-per-round`` of training
   counted in CPU minutes (``--time-clock wall``: wall-clock minutes);
4. segment the whole volume again and score it on the slices this arm never corrected.

``forest`` (the ilastik recipe, ``benchmarks/_forest.py``) trains each round on exactly
the ``suggested`` arm's corrected slices and is scored on the same slices as that arm;
``forest-even`` on evenly spaced ones (with or without a U-Net arm). ``ac-forest`` and
``ac-forest-even`` do the same with the tool's own pixel forest with auto-context
(``microfossil train --method forest``, ``--forest-stages``), segmented by ``segment``.
``ac-forest-own`` is that forest picking its own slices, as a user fitting forests in the
panels would: round 1 the evenly spaced ones (no forest yet), then ``suggest_slices`` on
the previous round's forest's confidence over the whole scan.

Data:

- ``phantom``: ``make_phantom`` in ``PhantomStyle().harder()`` (noisier, blurrier, less
  contrast than the default model's training data), as ``benchmarks/finetune.py``;
  scored as fossil IoU; trained and segmented with ``--smooth`` (default 0.7, as there).
- ``sandstone``: the 10 labelled Versa slices (``benchmarks/real_data.py``), four new
  classes; 1 slice per round; scored as the mean IoU of the four phases (pore included)
  on the never-corrected slices; no smoothing (the slices are not contiguous).

Usage::

    python benchmarks/loop.py phantom [--rounds 4] [--per-round 3] [--minutes-per-round 1]
        [--shape 64 256 256] [--axes z] [--lr ...] [--augment light] [--png PATH]
    python benchmarks/loop.py sandstone [--rounds 5] [--minutes-per-round 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# OpenMP threads that wait for a descheduled sibling sleep instead of spinning (set
# before torch loads libgomp): on a loaded machine spinning made a training step cost
# 3.7x the CPU seconds (docs/correction_loop.md, session 3), and CPU seconds are the
# budget here. `OMP_WAIT_POLICY=ACTIVE python ...` for the old behaviour.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from _forest import forest_segment, slice_features
from _plot import line_plot
from real_data import DEFAULT_DATA, load_sandstone

from napari_microfossil._progress import drain
from napari_microfossil.cli.train import add_recipe_options, recipe_from_args
from napari_microfossil.metrics import confusion_matrix, scores_from_confusion
from napari_microfossil.model import LoadedModel, ModelSpec, load_model
from napari_microfossil.model.pixel_forest import ARCHITECTURE as FOREST
from napari_microfossil.model.pixel_forest import FOREST_TILE
from napari_microfossil.normalise import Normalisation, intensity_range
from napari_microfossil.phantom import PhantomStyle, make_phantom
from napari_microfossil.review import slice_confidence, suggest_slices
from napari_microfossil.segmentation import iter_segment
from napari_microfossil.training.forest import ForestRecipe, iter_fit_forest
from napari_microfossil.training.slices import slices_from_volume
from napari_microfossil.workflows.train import TrainRequest, iter_run_training

#: The forest arms: the ilastik baseline and the tool's auto-context forest, each on the
#: suggested arm's slices or on evenly spaced ones.
FOREST_ARMS = ("forest", "forest-even", "ac-forest", "ac-forest-even", "ac-forest-own")


def even_picks(n: int, reviewed: list[int], k: int) -> list[int]:
    """`k` more slices of `n`, evenly spaced and nested with `reviewed`.

    The targets are the centres of ``len(reviewed) + k`` equal parts of the stack; the
    `k` targets farthest from every taken slice are taken (snapped to a free slice).
    """
    total = len(reviewed) + k
    targets = [int((i + 0.5) * n / total) for i in range(total)]
    taken = list(reviewed)
    picks: list[int] = []
    for _ in range(k):
        free = [z for z in range(n) if z not in taken]
        if not free:
            break

        def dist(z: int) -> int:
            return min((abs(z - t) for t in taken), default=n)

        best = max(targets, key=lambda t: (dist(min(free, key=lambda z: abs(z - t))), -t))
        z = min(free, key=lambda f: abs(f - best))
        picks.append(z)
        taken.append(z)
    return picks


def score(pred: np.ndarray, truth: np.ndarray, names: list[str], dataset: str) -> dict:
    """Per-class IoU and the curve's value (fossil IoU, or the mean over all phases)."""
    sc = scores_from_confusion(confusion_matrix(pred, truth, len(names)), names)
    ious = {n: sc[f"iou_{n}"] for n in names}
    value = ious["fossil"] if dataset == "phantom" else float(np.nanmean(list(ious.values())))
    return {"value": value, "iou": ious}


def load(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, list[str], list[str] | None]:
    """(image, labels, class names, classes to pass to training or None)."""
    if args.dataset == "phantom":
        style = PhantomStyle().harder()
        ph = make_phantom(tuple(args.shape), seed=args.seed, style=style)  # type: ignore[arg-type]
        names = list(load_model(args.base, device=args.device).spec.class_names)
        return np.asarray(ph.image), np.asarray(ph.labels), names, None
    image, labels, _, _, classes = load_sandstone(args.data)
    return image, labels, classes, classes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("dataset", choices=["phantom", "sandstone"])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--base", default="default")
    p.add_argument("--seed", type=int, default=4000)
    p.add_argument("--shape", type=int, nargs=3, default=(64, 256, 256))
    p.add_argument("--rounds", type=int, default=None, help="default 4 (phantom), 5 (sandstone)")
    p.add_argument("--per-round", type=int, default=None, help="default 3 (phantom), 1 (sandstone)")
    p.add_argument(
        "--counts",
        type=int,
        nargs="+",
        help="corrected slices in all after each round, e.g. 1 3 5 (instead of --rounds and "
        "--per-round)",
    )
    p.add_argument(
        "--minutes-per-round",
        type=float,
        nargs="+",
        default=[1.0],
        help="training time a round, counted on --time-clock (default cpu: CPU seconds); one "
        "value per round (the last one repeats), e.g. '2.5 7.3'; 0: no time limit, a step "
        "budget instead (--epochs x --steps-per-epoch a round, the same training however "
        "loaded the machine is)",
    )
    p.add_argument(
        "--no-hold-out",
        dest="hold_out",
        action="store_false",
        help="train on every corrected slice (no validation slice held out)",
    )
    p.add_argument("--new-head", choices=["fit", "random"], default="fit")
    p.add_argument(
        "--arms",
        nargs="+",
        default=["suggested", "even", "forest"],
        choices=["suggested", "even", *FOREST_ARMS],
        help="U-Net arms (suggested or evenly spaced slices); 'forest'/'forest-even': the "
        "ilastik baseline on the same slices; 'ac-forest'/'ac-forest-even': the tool's own "
        "pixel forest with auto-context (`train --method forest`) on them; 'ac-forest-own': "
        "that forest picking its own slices (round 1 evenly spaced, then suggested)",
    )
    p.add_argument(
        "--forest-from",
        type=Path,
        metavar="RUN.json",
        help="train no network: score the forest on the slices of each round of an earlier "
        "run's --json (its suggested rows as 'forest', its even rows as 'forest-even'; with "
        "--arms ac-forest or ac-forest-even, the tool's own forest as 'ac-forest' and "
        "'ac-forest-even')",
    )
    p.add_argument("--axes", default="z", help="slicing axes when segmenting, e.g. zyx")
    p.add_argument(
        "--also-axes",
        default="",
        help="also score each round's model segmented along these, e.g. 'z' or 'z,zyx' "
        "(inference only: the slices are still picked on --axes)",
    )
    p.add_argument(
        "--flips",
        action="store_true",
        help="segment with test-time flips (as `microfossil segment --flips`: 4x the inference)",
    )
    p.add_argument("--keep-models", type=Path, help="keep each round's model in this folder")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--forest-pixels", type=int, default=20000, help="per training slice")
    p.add_argument(
        "--forest-stages",
        type=int,
        default=2,
        help="stages of the tool's pixel forest (the ac-forest arms; default 2)",
    )
    p.add_argument(
        "--png",
        type=Path,
        help="default loop_<dataset>.png in the current folder (docs/images/ holds the recorded ones)",
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--label", default="", help="a note for the table's title and the plot")
    add_recipe_options(p)
    p.set_defaults(epochs=1000, smooth=None, time_clock="cpu")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    phantom = args.dataset == "phantom"
    rounds = args.rounds or (4 if phantom else 5)
    per = args.per_round or (3 if phantom else 1)
    counts = args.counts or [per * r for r in range(1, rounds + 1)]
    if any(b <= a for a, b in zip([0, *counts], counts, strict=False)):
        p.error(f"--counts: expected increasing totals, got {counts}")
    if args.smooth is None and phantom:
        args.smooth = 0.7
    minutes = [*args.minutes_per_round, *[args.minutes_per_round[-1]] * len(counts)]
    limits = [m * 60.0 if m > 0 else None for m in minutes[: len(counts)]]
    if None in limits and args.epochs + args.frozen_epochs >= 1000:
        p.error("--minutes-per-round 0: give the step budget with --epochs (and --frozen-epochs)")

    import torch

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    image, labels, names, classes = load(args)
    nz = image.shape[0]

    def segment(model_path: str | Path, conf: bool, axes: str | None = None):
        model = load_model(model_path, device=args.device)
        return drain(
            iter_segment(
                image,
                model,
                axes=axes or args.axes,
                device=args.device,
                confidence=conf,
                flips=args.flips,
            )
        )

    replay = args.forest_from is not None  # the forest alone, on an earlier run's slices
    unet_arms = [] if replay else [a for a in ("suggested", "even") if a in args.arms]
    base_seg = segment(args.base, True) if unet_arms else None
    rows: list[dict] = []
    if phantom and base_seg is not None:
        rows.append({"arm": "base", "n": 0, **score(base_seg.labels, labels, names, args.dataset)})
        print(f"base model: fossil IoU {rows[0]['value']:.4f} on all {nz} slices", flush=True)
    conf = base_seg.confidence if base_seg is not None else None
    state = {a: {"model": args.base, "reviewed": [], "conf": conf} for a in unet_arms}
    # a replay runs the ilastik recipe, or with --arms ac-forest/ac-forest-even the tool's
    # own forest, on the earlier run's slices
    ac = "ac-" if replay and {"ac-forest", "ac-forest-even"} & set(args.arms) else ""
    forests = [a for a in FOREST_ARMS if a in args.arms or (replay and not ac and "ac" not in a)]
    feats = slice_features(image) if {"forest", "forest-even"} & set(forests) else None
    even_forest: list[int] = []

    own: dict = {"reviewed": [], "conf": None}  # the ac-forest-own arm

    def ac_forest(reviewed: list[int], rest: list[int], whole: bool) -> np.ndarray:
        """The tool's own pixel forest (auto-context), fitted and run as `microfossil
        train --method forest` and `segment` do, on the whole scan's intensity range
        (ac-forest-own: every slice, keeping the confidence for the next picks)."""
        norm = Normalisation()
        lo, hi = intensity_range(image, norm)
        data = slices_from_volume(image, labels, {"z": reviewed}, value_range=(lo, hi))
        net = drain(iter_fit_forest(data, len(names), ForestRecipe(stages=args.forest_stages)))
        spec = ModelSpec(
            class_names=tuple(names),
            architecture=FOREST,
            encoder="none",
            arch_kwargs=net.arch_kwargs,
            tile_size=FOREST_TILE,
        )
        model = LoadedModel(spec=spec, network=net)
        seg = drain(
            iter_segment(
                image if whole else image[rest],
                model,
                device="cpu",
                intensity_range=(lo, hi),
                confidence=whole,
            )
        )
        if whole:
            own["conf"] = seg.confidence
            return seg.labels[rest]
        return seg.labels

    def forest_row(arm: str, reviewed: list[int]) -> dict:
        rest = [z for z in range(nz) if z not in reviewed]
        t0 = time.perf_counter()
        if arm.startswith("ac-"):
            pred = ac_forest(reviewed, rest, whole=arm == "ac-forest-own")
        else:
            pred = forest_segment(
                feats, labels, reviewed, rest, pixels_per_slice=args.forest_pixels
            )
        row = {
            "arm": arm,
            "n": len(reviewed),
            "slices": reviewed,
            "fit_predict_s": round(time.perf_counter() - t0, 1),
            **score(pred, labels[rest], names, args.dataset),
        }
        print(f"{arm:>11}: {row['n']:>2} slices {reviewed} -> {row['value']:.4f}", flush=True)
        return row

    if args.forest_from is not None:
        earlier = json.loads(args.forest_from.read_text())["rows"]
        rows = [row for row in earlier if row["arm"] in ("base", "suggested", "even")]
        for row in list(rows):
            if row["arm"] != "base":
                arm = "forest" if row["arm"] == "suggested" else "forest-even"
                rows.append(forest_row(ac + arm, list(row["slices"])))
                report(rows, names, args, time.perf_counter() - t_start)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep_models is not None:
            args.keep_models.mkdir(parents=True, exist_ok=True)
            tmp = str(args.keep_models)
        for r, count in enumerate(counts, start=1):
            per = count - (counts[r - 2] if r > 1 else 0)
            args.time_limit = limits[r - 1]  # read by recipe_from_args
            for arm in unet_arms:
                rows.append(
                    unet_round(
                        arm,
                        r,
                        state[arm],
                        per,
                        Path(tmp),
                        image,
                        labels,
                        names,
                        classes,
                        args,
                        segment,
                    )
                )
                if arm == "suggested":
                    for f in ("forest", "ac-forest"):
                        if f in forests:
                            rows.append(forest_row(f, state[arm]["reviewed"]))
            if {"forest-even", "ac-forest-even"} & set(forests):
                even_forest = sorted(even_forest + even_picks(nz, even_forest, per))
                for f in ("forest-even", "ac-forest-even"):
                    if f in forests:
                        rows.append(forest_row(f, even_forest))
            if "ac-forest-own" in forests:
                taken = own["reviewed"]
                picks = (
                    even_picks(nz, taken, per)
                    if own["conf"] is None
                    else suggest_slices(slice_confidence(own["conf"]), taken, per)
                )
                own["reviewed"] = sorted(taken + picks)
                rows.append(forest_row("ac-forest-own", own["reviewed"]))
            # After every round: a run stopped early still leaves its table and plot.
            report(rows, names, args, time.perf_counter() - t_start)
    return 0


def unet_round(arm, r, st, per, tmp, image, labels, names, classes, args, segment) -> dict:
    """One round of a U-Net arm: pick, correct, fine-tune from the last model, score."""
    nz = image.shape[0]
    if arm == "suggested":
        picks = suggest_slices(slice_confidence(st["conf"]), st["reviewed"], per)
    else:
        picks = even_picks(nz, st["reviewed"], per)
    st["reviewed"] = sorted(st["reviewed"] + picks)
    out = tmp / f"{arm}_{r}.safetensors"
    request = TrainRequest(
        image,
        labels,
        out,
        slices={"z": st["reviewed"]},
        base=st["model"],
        classes=classes,
        **recipe_from_args(args),
        device=args.device,
        name=args.dataset,
        hold_out=args.hold_out,
        new_head=args.new_head,
    )
    c0, w0 = time.process_time(), time.perf_counter()
    result = drain(iter_run_training(request))
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    st["model"] = out
    seg = segment(out, arm == "suggested")
    st["conf"] = seg.confidence
    rest = [z for z in range(nz) if z not in st["reviewed"]]
    row = {
        "arm": arm,
        "n": len(st["reviewed"]),
        "slices": st["reviewed"],
        "picked": picks,
        "train_cpu_s": round(cpu, 1),
        "train_wall_s": round(wall, 1),
        "steps": sum(
            max((int(h["steps"]) for h in result.history if h.get("phase") == ph), default=0)
            for ph in ("frozen", "unfrozen")
        ),
        "epochs": len(result.history),
        **score(seg.labels[rest], labels[rest], names, args.dataset),
    }
    for axes in filter(None, args.also_axes.split(",")):
        other = segment(out, False, axes).labels[rest]
        row.setdefault("also", {})[axes] = score(other, labels[rest], names, args.dataset)
        print(f"round {r} {arm:>9}: along {axes}: {row['also'][axes]['value']:.4f}", flush=True)
    print(
        f"round {r} {arm:>9}: {row['n']:>2} slices {st['reviewed']} -> {row['value']:.4f}; "
        f"trained {wall:.0f} s wall, {cpu:.0f} s CPU, {row['steps']} steps",
        flush=True,
    )
    return row


def report(rows: list[dict], names: list[str], args: argparse.Namespace, total: float) -> None:
    what = "fossil IoU" if args.dataset == "phantom" else "mean IoU of the 4 phases"
    name = f"{args.dataset} ({args.label})" if args.label else args.dataset
    print(f"\n{name}: {what} on the never-corrected slices ({total:.0f} s)")
    print(f"{'arm':>10} {'slices':>6} {'value':>7} " + " ".join(f"{n:>10}" for n in names))
    for row in rows:
        ious = " ".join(f"{row['iou'][n]:>10.4f}" for n in names)
        print(f"{row['arm']:>10} {row['n']:>6} {row['value']:>7.4f} {ious}")
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if row["arm"] != "base":
            series.setdefault(row["arm"], []).append((row["n"], row["value"]))
    png = args.png or Path(f"loop_{args.dataset}.png")
    title = f"{name}: {what}, never-corrected slices"
    line_plot(png, series, title=title, xlabel="corrected slices", ylabel=what)
    print(f"plot: {png}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    raise SystemExit(main())
