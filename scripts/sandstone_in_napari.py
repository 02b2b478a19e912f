"""The real sandstone job done in the napari panels, as a user would, with screenshots.

Run it under a virtual X display (no monitor needed)::

    nice -n 10 xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python \\
        scripts/sandstone_in_napari.py --data ../shared/data [--minutes 3]

It drives the real widgets through the calls a user's clicks make:

1. *File > Open* the Versa sandstone scan (``images/``: 9 slices numbered 0, 50, ...,
   400) and then its label slices (``labels_index/``: 10 slices, one more, numbered 180,
   has no scan slice). The reader places the labels on the scan's planes by their
   file numbers and marks those planes reviewed;
2. Review & correct shows the placed labels as reviewed; four planes (1, 3, 5, 7: the
   scan's slices 50, 150, 250, 350) are *unmarked* there, to hold them out for scoring:
   Fine-tune trains on the other five (0, 100, 200, 300, 400) and Segment keeps only
   reviewed planes, so the held-out planes of the result are the model's own;
3. Fine-tune: *Classes* ``pore, clay, grain, dense`` (typed: four new names for the
   label ids 0-3), a time budget of ``--minutes``, CPU; with ``--method forest`` the
   *Method* is the pixel forest instead, fitted on all five planes (``--prefix
   12_sandstone_forest`` keeps the network run's screenshots);
4. *Segment again* with the new model: the five reviewed planes come into the result
   as they were; the IoU of each phase on the four held-out planes against the placed
   labels is printed and saved as JSON;
5. Round 2 starts: *Next slice to review* goes to the least confident unreviewed plane.

Screenshots go to ``docs/images/12_sandstone_*.png`` (``--out`` to change). The two
folders are copied to a temporary folder first, which is also HOME for the run (napari's
settings); the model file and the review autosave go beside the copied scan, and the
folder is deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "napari-microfossil"
WINDOW = (1600, 1000)
DOCK_WIDTH = 520
CLASSES = "pore, clay, grain, dense"
TRAIN = (0, 2, 4, 6, 8)  # plane indices: the scan's slices 0, 100, 200, 300, 400
HELD_OUT = (1, 3, 5, 7)  # slices 50, 150, 250, 350: unmarked in Review, never trained on
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f} s] {msg}", flush=True)


def pump(seconds: float = 0.3) -> None:
    """Let Qt run a while: repaint, deliver worker signals."""
    from qtpy.QtWidgets import QApplication

    app, end = QApplication.instance(), time.monotonic() + seconds
    while True:
        app.processEvents()
        if time.monotonic() >= end:
            return
        time.sleep(0.02)


def wait_job(widget: Any, timeout: float, what: str) -> str:
    """Wait for a panel's background job to end; fail if it failed or timed out."""
    end = time.monotonic() + timeout
    while widget.runner.running:
        pump(0.1)
        if time.monotonic() > end:
            raise TimeoutError(f"{what}: not done after {timeout:.0f} s")
    pump(0.3)
    text = widget.status.text()
    log(f"{what}: {text}")
    if "failed" in text or "cancelled" in text:
        raise RuntimeError(f"{what}: {text}")
    return text


def close_toasts() -> None:
    from qtpy.QtWidgets import QApplication

    for w in QApplication.topLevelWidgets():
        for child in [w, *w.findChildren(object)]:
            if type(child).__name__ == "NapariQtNotification" and child.isVisible():
                child.close()
    pump(0.1)


def show_dock(viewer: Any, dock: Any, width: int = DOCK_WIDTH) -> None:
    from qtpy.QtCore import Qt

    dock.show()
    dock.raise_()
    viewer.window._qt_window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
    pump(0.3)


class Shots:
    def __init__(self, viewer: Any, out: Path) -> None:
        self.viewer, self.out = viewer, out
        out.mkdir(parents=True, exist_ok=True)

    def window(self, name: str, *, toasts: bool = False, canvas_only: bool = False) -> Path:
        pump(0.5)
        if not toasts:
            close_toasts()
        pump(0.3)
        path = self.out / name
        self.viewer.screenshot(str(path), canvas_only=canvas_only, flash=False)
        log(f"wrote {path}")
        return path


def type_into(field: Any, text: str) -> None:
    """Type `text` into a line edit as the keyboard does (so it counts as edited)."""
    from qtpy.QtTest import QTest

    field.setFocus()
    field.selectAll()
    QTest.keyClicks(field, text)
    pump(0.1)


def go_to(viewer: Any, layer: Any, z: int) -> None:
    viewer.dims.set_point(0, float(layer.data_to_world((z, 0, 0))[0]))
    pump(0.2)


def held_out_scores(pred: np.ndarray, truth: np.ndarray, names: list[str]) -> dict[str, Any]:
    from napari_microfossil.metrics import segmentation_scores

    zs = list(HELD_OUT)
    scores = segmentation_scores(pred[zs], truth[zs], names)
    per = {n: round(scores[f"iou_{n}"], 4) for n in names if f"iou_{n}" in scores}
    return {"planes": zs, "iou": per, "mean_iou": round(float(np.mean(list(per.values()))), 4)}


def side_by_side(
    truth_png: Path, pred_png: Path, out: Path, name: str = "fine-tuned model"
) -> None:
    from PIL import Image, ImageDraw

    a, b = Image.open(truth_png), Image.open(pred_png)
    both = Image.new("RGB", (a.width + b.width + 8, max(a.height, b.height)), "white")
    both.paste(a, (0, 0))
    both.paste(b, (a.width + 8, 0))
    draw = ImageDraw.Draw(both)
    for x, text in ((10, "placed labels (truth)"), (a.width + 18, name)):
        draw.rectangle((x - 4, 6, x + 8 * len(text), 26), fill="black")
        draw.text((x, 10), text, fill="white")
    both.save(out)
    log(f"wrote {out}")


def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    import napari

    from napari_microfossil._napari import layers as md

    # A copy in the temporary folder: the model and the review autosave go beside the
    # scan, and the shared data must stay as it is.
    sandstone = home / "sandstone-versa-microct"
    for part in ("images", "labels_index"):
        shutil.copytree(args.data / "sandstone-versa-microct" / part, sandstone / part)
    viewer = napari.Viewer(show=True, title="napari-microfossil: sandstone")
    viewer.window.resize(*WINDOW)
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    (getattr(overlays, "scale_bar", None) or viewer.scale_bar).visible = True
    shots = Shots(viewer, args.out)

    # -- File > Open: the scan, then its label slices (placed by the reader)
    (scan,) = viewer.open(str(sandstone / "images"), plugin=PLUGIN)
    (labels,) = viewer.open(str(sandstone / "labels_index"), plugin=PLUGIN)
    log(f"scan {scan.name!r} {scan.data.shape}, voxel {float(scan.scale[-1]):.3f} µm")
    log(f"labels {labels.name!r} {labels.data.shape}: {labels.metadata.get('placed_slices')}")
    truth = np.array(labels.data)
    labels.opacity = 0.45
    rev_dock, review = viewer.window.add_plugin_dock_widget(PLUGIN, "Review & correct")
    review.confirm = lambda title, text: False  # no old autosave to restore
    review.labels_combo.set_layer(labels.name)
    show_dock(viewer, rev_dock)
    for z in HELD_OUT:  # held out for scoring: Unmark on each
        go_to(viewer, labels, z)
        if not review.unmark_current():
            raise RuntimeError(f"could not unmark plane {z}: {review.slice_label.text()}")
    go_to(viewer, labels, 4)
    log(f"Review: {review.progress_label.text()}; {review.slice_label.text()}")
    shots.window(f"{args.prefix}_open.png", toasts=True)

    _, seg = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment", tabify=True)
    seg.confirm = lambda title, text: True

    # -- Fine-tune: five slices, four new class names, a short CPU budget
    ft_dock, ft = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune", tabify=True)
    ft.confirm = lambda title, text: True
    show_dock(viewer, ft_dock)
    ft.refresh()
    log(f"Fine-tune proposes: labels {ft.labels.currentText()!r}, image {ft.image.currentText()!r}")
    log(f"  {ft.slices_label.text()}")
    type_into(ft.classes, CLASSES)
    ft.minutes.setValue(args.minutes)
    ft.device.setCurrentIndex(ft.device.findData("cpu"))
    ft.method.setCurrentIndex(ft.method.findData(args.method))
    if args.method == "forest":  # fitted on all five: nothing to pick an epoch with
        ft.all_train.setChecked(True)
    log(f"  Classes {ft.classes.text()!r}; output {ft.output.text()}")
    t = time.monotonic()
    if ft.run() is None:
        raise RuntimeError(f"Fine-tune did not start: {ft.status.text()}")
    wait_job(ft, args.timeout, "Fine-tune")
    train_s = time.monotonic() - t
    log(f"Fine-tune result:\n{ft.result_label.text()}")
    shots.window(f"{args.prefix}_finetune.png")

    # -- Segment again, with the new model
    t = time.monotonic()
    seg.axes.setCurrentIndex(seg.axes.findData("z"))
    if ft.segment_again() is None:
        raise RuntimeError("Segment again did not start")
    pump(1.0)
    wait_job(seg, args.timeout, "Segment")
    segment_s = time.monotonic() - t
    result = next(lyr for lyr in viewer.layers if md.is_segment_result(lyr) and lyr is not labels)
    names = md.class_names_of(result)
    pred = np.asarray(result.data)
    kept = all(np.array_equal(pred[z], truth[z]) for z in TRAIN)
    scores = held_out_scores(pred, truth, names)
    log(f"reviewed planes {TRAIN} kept verbatim: {kept}; held-out planes {HELD_OUT}: {scores}")

    # -- Round 2 begins: Review follows the result and points at its least sure plane
    conf = f"{scan.name} confidence"
    show_dock(viewer, rev_dock)
    nxt = review.go_to_next()
    review_text = review.progress_label.text()
    log(f"Review: {review_text}; next slice to review: {nxt}")
    if conf in viewer.layers:
        viewer.layers[conf].visible = False
    labels.visible, result.opacity = False, 0.45
    shots.window(f"{args.prefix}_next.png")
    show_dock(viewer, ft_dock)

    # -- Look at a held-out plane: the placed labels, then the result
    z = HELD_OUT[1]
    go_to(viewer, labels, z)
    labels.visible, result.visible, result.opacity = False, True, 0.45
    viewer.layers.selection.active = result
    shots.window(f"{args.prefix}_segment.png")
    labels.visible, result.visible = True, False
    labels.colormap = result.colormap  # the same colours for the comparison
    truth_png = shots.window("_truth.png", canvas_only=True)
    labels.visible, result.visible = False, True
    pred_png = shots.window("_pred.png", canvas_only=True)
    name = "pixel forest" if args.method == "forest" else "fine-tuned model"
    side_by_side(truth_png, pred_png, args.out / f"{args.prefix}_heldout.png", name)
    truth_png.unlink()
    pred_png.unlink()
    run_ = ft.last_result
    viewer.close()
    return {
        "scan": "sandstone-versa-microct/images",
        "labels": "sandstone-versa-microct/labels_index",
        "train_slices": list(TRAIN),
        "reviewed_kept_verbatim": kept,
        "review_after_segment": review_text,
        "next_slice": nxt,
        "classes": CLASSES,
        "minutes": args.minutes,
        "method": args.method,
        "train_wall_s": round(train_s, 1),
        "segment_wall_s": round(segment_s, 1),
        "train_split": {"train": run_.train_slices, "val": run_.val_slices},
        "best_epoch": run_.best_epoch,
        "val_before": run_.before,
        "val_after": run_.after,
        "held_out": scores,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    ap.add_argument("--minutes", type=float, default=3.0, help="Fine-tune's time budget")
    ap.add_argument(
        "--method",
        choices=("network", "forest"),
        default="network",
        help="Fine-tune's Method: the U-Net, or the pixel forest (fitted on all five planes)",
    )
    ap.add_argument("--prefix", default="12_sandstone", help="screenshot names start so (in --out)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per background job")
    ap.add_argument("--json", type=Path, help="also write the scores here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary HOME")
    args = ap.parse_args(argv)
    if not (args.data / "sandstone-versa-microct" / "images").is_dir():
        print(f"no sandstone-versa-microct in {args.data}; give --data", file=sys.stderr)
        return 2
    args.out = args.out.resolve()
    home = Path(tempfile.mkdtemp(prefix="sandstone_napari_"))
    os.environ["HOME"] = str(home)
    try:
        found = run(args, home)
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(found, indent=2))
    if args.json:
        args.json.write_text(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
