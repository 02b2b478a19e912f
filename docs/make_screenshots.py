"""Make the user guide's screenshots by driving the real napari widgets.

Run it under a virtual X display (no monitor needed)::

    nice -n 10 xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python \
        docs/make_screenshots.py [--model default|PATH] [--real]

It writes the napari sample scan (the same phantom as *File > Open Sample*, 96 x 256 x 256
voxels of 4.5 µm, via ``microfossil sample``) to a temporary folder, opens it in a real
napari window with the plugin's reader, docks the three widgets ("Segment", "Review &
correct", "Fossils") as tabs and drives each through its real work, through the same
calls a user's clicks make:

1. Segment with ``--model`` (the bundled default model unless a file is given; a file
   is offered as *Browse...* would): *Suggest* a smoothing first (a shot of the panel; then set back to the model's own,
   which the other pictures show), then z slices with the confidence layer; a shot while it runs, one of the result;
2. Review & correct: choose the confidence layer, *Next slice to review*, *Mark slice
   reviewed*, *Next slice to review*, one brush stroke with class ``fossil`` where the
   network missed part of a fossil (found with the sample's ground truth; shots before
   and after), *Next slice to review*, wait for the autosave; then, after the shots,
   erase a pore with ``Shift-E`` over it (the key of *Erase object (click)*) and
   *Undo erase* (their effect is logged);
3. Fossils: *Extract* with the panel's defaults (the object check runs: the corrected
   slices count as sure), sort by volume,
   select the largest fossil's row, *Show alone*, *View in 3D*; *Export* meshes (STL),
   cropped TIFFs, CSV and the gallery, whose picture of that fossil and size histogram
   are copied;
4. Fine-tune: 4 evenly spaced slices get their ground truth (standing in for the user's
   painting) and are marked reviewed; the Fine-tune panel trains for one minute on all
   the reviewed slices (a quarter held out for validation). ``--only-finetune`` runs step 1 and this step alone
   and writes only the ``09_*`` pictures.

With ``--real`` it also opens the real sandstone MicroCT slices in
``../shared/data/sandstone-versa-microct/images`` (skipped if absent) and segments a
384 x 384 crop of its centre.

Images go to ``docs/images/`` (``--out`` to change): the whole window (``NN_name.png``),
the canvas alone (``03_paint_*.png``) and dock widgets alone (``NN_name_widget.png``).
Nothing else in the repository is touched; the scan, the autosave and the export live in
a temporary folder that is deleted at the end (``--keep`` keeps it). Every step is
logged with its time; a job that fails or times out (``--timeout``) stops the script
with an error.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IMAGES = HERE / "images"
REAL_SCAN = REPO.parent / "shared" / "data" / "sandstone-versa-microct" / "images"
PLUGIN = "napari-microfossil"
SAMPLE_SHAPE, SAMPLE_SEED = (96, 256, 256), 7  # as napari_microfossil._napari.sample
WINDOW = (1600, 1000)
DOCK_WIDTH = 470

T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f} s] {msg}", flush=True)


# -- Qt helpers ------------------------------------------------------------------------


def process_events(seconds: float = 0.3) -> None:
    """Let Qt (and vispy) run for a while: repaint, deliver worker signals."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.monotonic() + seconds
    while True:
        app.processEvents()
        if time.monotonic() >= end:
            return
        time.sleep(0.02)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Process Qt events until ``predicate()`` is true; fail after ``timeout`` seconds."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.monotonic() + timeout
    while not predicate():
        app.processEvents()
        time.sleep(0.05)
        if time.monotonic() > end:
            raise TimeoutError(f"{what}: not done after {timeout:.0f} s")
    process_events(0.2)


def wait_job(widget: Any, timeout: float, what: str) -> None:
    """Wait for a widget's background job (its JobRunner) to end; fail if it failed."""
    wait_until(lambda: not widget.runner.running, timeout, what)
    text = widget.status.text()
    log(f"{what}: {text}")
    if "failed" in text or "cancelled" in text:
        raise RuntimeError(f"{what}: {text}")


def close_toasts() -> None:
    """Close napari's pop-up notifications, which would cover the canvas."""
    from qtpy.QtWidgets import QApplication

    for w in QApplication.topLevelWidgets():
        for child in [w, *w.findChildren(object)]:
            if type(child).__name__ == "NapariQtNotification" and child.isVisible():
                child.close()
    process_events(0.1)


class Shots:
    """Saves screenshots and remembers what was written."""

    def __init__(self, viewer: Any, out: Path) -> None:
        self.viewer = viewer
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []

    def window(self, name: str, *, canvas_only: bool = False) -> None:
        process_events(0.5)
        close_toasts()
        process_events(0.5)
        path = self.out / name
        self.viewer.screenshot(str(path), canvas_only=canvas_only, flash=False)
        self.written.append(path)
        log(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")

    def widget(self, widget: Any, name: str, *, crop: bool = True) -> None:
        """Save a widget alone; ``crop``: down to its content (no empty space below)."""
        from qtpy.QtCore import QRect

        process_events(0.3)
        path = self.out / name
        rect = widget.rect()
        layout = widget.layout()
        if crop and layout is not None:
            height = min(rect.height(), layout.sizeHint().height() + 6)
            rect = QRect(0, 0, rect.width(), height)
        if not widget.grab(rect).save(str(path)):
            raise RuntimeError(f"could not save {path}")
        self.written.append(path)
        log(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")

    def copy(self, src: Path, name: str) -> None:
        path = self.out / name
        shutil.copyfile(src, path)
        self.written.append(path)
        log(f"copied {src.name} -> {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


def show_dock(viewer: Any, dock: Any, width: int = DOCK_WIDTH) -> None:
    """Bring a (tabified) dock widget to the front and give it a comfortable width."""
    from qtpy.QtCore import Qt

    dock.show()
    dock.raise_()
    qt_window = getattr(viewer.window, "_qt_window", None)
    if qt_window is not None:
        qt_window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
    process_events(0.3)


def camera(viewer: Any) -> Any:
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


# -- the steps -------------------------------------------------------------------------


def make_sample_files(folder: Path) -> tuple[Path, Path]:
    """``microfossil sample`` into ``folder``: (scan.tif, truth.tif)."""
    global SAMPLE_SHAPE, SAMPLE_SEED
    try:  # the napari sample's scan, so the pictures match File > Open Sample
        from napari_microfossil._napari.sample import SAMPLE_SEED, SAMPLE_SHAPE
    except ImportError:
        pass
    from napari_microfossil.cli import main as cli

    rc = cli(
        [
            "sample",
            str(folder),
            "--seed",
            str(SAMPLE_SEED),
            "--shape",
            *(str(n) for n in SAMPLE_SHAPE),
        ]
    )
    if rc != 0:
        raise RuntimeError(f"microfossil sample failed with exit code {rc}")
    return folder / "scan.tif", folder / "truth.tif"


def segment(
    viewer: Any, seg: Any, image_name: str, timeout: float, running_shot: Any = None
) -> Any:
    """Run the Segment widget on an Image layer (z slices, with confidence) and wait."""
    seg.image.set_layer(image_name)
    if not seg.run_button.isEnabled():
        raise RuntimeError(f"Segment: the model cannot be used: {seg.model_info.text()}")
    seg.axes.setCurrentIndex(seg.axes.findData("z"))
    seg.confidence.setChecked(True)
    t = time.monotonic()
    worker = seg.run()
    if worker is None:
        raise RuntimeError(f"Segment did not start: {seg.status.text()}")
    if running_shot is not None:  # the widget mid-run: progress, Cancel enabled
        wait_until(
            lambda: "segment " in seg.status.text() or not seg.runner.running,
            timeout,
            "first segmentation progress",
        )
        process_events(4.0)
        running_shot()
    wait_job(seg, timeout, f"Segment {image_name!r}")
    log(f"segmentation of {image_name!r} took {time.monotonic() - t:.1f} s")
    return viewer.layers[f"{image_name} fossils"]


def missed_fossil(labels: Any, truth: np.ndarray, z: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of slice ``z`` that are fossil in the truth but not in the labels.

    The largest such patch, preferring one labelled pore (a chamber the network took
    for a pore: the correction a user most often paints). Empty arrays if none.
    """
    from scipy import ndimage

    names = [str(n) for n in labels.metadata["class_names"]]
    fossil, pore = names.index("fossil"), names.index("pore")
    pred = np.asarray(labels.data[z])
    for wrong in (pred == pore, pred != fossil):
        missed = (truth[z] == fossil) & wrong
        comps, n = ndimage.label(missed)
        if n:
            sizes = ndimage.sum(missed, comps, index=np.arange(1, n + 1))
            if sizes.max() >= 20:
                ys, xs = np.nonzero(comps == int(np.argmax(sizes)) + 1)
                return ys, xs
    return np.array([], dtype=int), np.array([], dtype=int)


def paint_stroke(labels: Any, z: int, ys: np.ndarray, xs: np.ndarray, value: int) -> None:
    """One brush stroke (dabs along the patch), committed as one undoable edit.

    The same napari calls a mouse drag makes: ``Labels.paint`` per dab inside one
    history block, so the layer emits one ``paint`` event, as after a real stroke.
    """
    order = np.argsort(xs if np.ptp(xs) >= np.ptp(ys) else ys)
    step = max(1, ys.size // 60)
    with labels.block_history():
        for k in order[::step]:
            labels.paint((z, int(ys[k]), int(xs[k])), value, refresh=False)
    labels.refresh()


def zoom_on(viewer: Any, layer: Any, point: tuple[float, float, float], factor: float) -> None:
    cam = camera(viewer)
    world = layer.data_to_world(point)
    cam.center = tuple(float(v) for v in world)[-2:]
    cam.zoom = cam.zoom * factor


def erase_and_undo(viewer: Any, review: Any, labels: Any) -> None:
    """Erase a pore object with Shift-E (the cursor over it), then undo; log what it did."""
    names = [str(n) for n in labels.metadata["class_names"]]
    pore = names.index("pore")
    z = review.current_slice()
    state = review.state
    ys, xs = np.nonzero(np.asarray(labels.data[z]) == pore)
    if ys.size == 0:
        log("no pore on this slice: erase not tried")
        return
    before = int((np.asarray(labels.data) == pore).sum())
    reviewed_before = len(state.reviewed)
    world = labels.data_to_world((z, int(ys[0]), int(xs[0])))
    viewer.cursor.position = tuple(float(v) for v in world)
    erased = review.erase_under_cursor()  # what Shift-E does, the mouse over the pore
    after = int((np.asarray(labels.data) == pore).sum())
    undone = review.undo_erase()
    back = int((np.asarray(labels.data) == pore).sum())
    log(
        f"Erase object (Shift-E): {erased} ({before} -> {after} pore voxels); "
        f"Undo erase: {undone} ({back} voxels); slices counted reviewed: "
        f"{reviewed_before} -> {len(review.state.reviewed)}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="'default' or a .safetensors file")
    ap.add_argument("--real", action="store_true", help="also open the real sandstone scan")
    ap.add_argument("--out", type=Path, default=IMAGES, help="folder for the PNGs")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per background job")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument(
        "--only-finetune",
        action="store_true",
        help="retake only the Fine-tune pictures (09_*): segment the sample, correct 4 "
        "slices, fine-tune for a minute",
    )
    args = ap.parse_args(argv)
    if args.model != "default":
        args.model = str(Path(args.model).expanduser().resolve())
        if not Path(args.model).is_file():
            ap.error(f"--model: no such file {args.model}")
    args.out.mkdir(parents=True, exist_ok=True)

    # Import the network stack before napari creates its OpenGL context. torch pulls in
    # triton (bundling its own LLVM); loaded after Mesa's software OpenGL (llvmpipe, which
    # links the system's libLLVM, as under xvfb) has started, it crashes the process
    # with a segmentation fault on the first Segment run.
    import segmentation_models_pytorch  # noqa: F401

    # napari 0.9 warns that PyQt5 support is deprecated, in a pop-up over the canvas.
    warnings.filterwarnings("ignore", message=".*PyQt5 backend is deprecated.*")
    import napari

    tmp = Path(tempfile.mkdtemp(prefix="microfossil_screens_"))
    try:
        return run(napari, args, tmp)
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(napari: Any, args: argparse.Namespace, tmp: Path) -> int:
    from qtpy.QtCore import Qt

    from napari_microfossil.io import read_labels

    log("writing the sample scan (microfossil sample)")
    scan_path, truth_path = make_sample_files(tmp / "core_sample")
    truth = np.asarray(read_labels(truth_path).data)

    viewer = napari.Viewer(show=True, title="napari-microfossil")
    viewer.window.resize(*WINDOW)
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    scale_bar = getattr(overlays, "scale_bar", None) or viewer.scale_bar
    scale_bar.visible = True
    shots = Shots(viewer, args.out)
    if args.only_finetune:  # the steps before Fine-tune run, their pictures are dropped
        final_shots, shots = shots, Shots(viewer, tmp / "unused")

    # -- open the scan with the plugin's reader (File > Open)
    (scan,) = viewer.open(str(scan_path), plugin=PLUGIN)
    log(f"opened {scan.name!r}: shape {scan.data.shape}, voxel {tuple(map(float, scan.scale))} µm")

    seg_dock, seg = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    rev_dock, review = viewer.window.add_plugin_dock_widget(PLUGIN, "Review & correct", tabify=True)
    fos_dock, fossils = viewer.window.add_plugin_dock_widget(PLUGIN, "Fossils", tabify=True)
    # No dialogs in a scripted run: never restore an old autosave, never ask to replace.
    review.confirm = lambda title, text: False
    seg.confirm = lambda title, text: True
    fossils.confirm = lambda title, text: True

    if args.model != "default":
        seg.add_model(args.model)  # what Browse… does
    log(f"model: {seg.model_path()}")
    viewer.dims.set_point(0, (SAMPLE_SHAPE[0] // 2) * float(scan.scale[0]))
    show_dock(viewer, seg_dock)
    shots.window("01_sample.png")

    # -- Segment: first let the model suggest a smoothing (none, on this clean sample)
    seg.suggest_smoothing()
    wait_job(seg, args.timeout, "suggest smoothing")
    shots.widget(seg, "02_segment_suggest.png")
    # The other pictures show the model's own smoothing (none for the bundled model).
    from napari_microfossil.model import read_spec

    seg.smooth.setValue(read_spec(seg.model_path()).normalisation.smooth)
    labels = segment(
        viewer,
        seg,
        scan.name,
        args.timeout,
        running_shot=lambda: shots.window("02_segment_running.png"),
    )
    conf = viewer.layers[f"{scan.name} confidence"]
    conf.visible = False  # the labels over the scan; the confidence is shown later
    viewer.layers.selection.active = labels
    shots.window("02_segment.png")
    shots.widget(seg, "02_segment_widget.png")
    if args.only_finetune:
        finetune(viewer, scan, labels, truth, review, final_shots, args)
        log(f"{len(final_shots.written)} images in {args.out}")
        viewer.close()
        return 0

    # -- Review & correct
    show_dock(viewer, rev_dock)
    if review.conf_combo.currentText() != conf.name:
        log(
            f"Review: Confidence box shows {review.conf_combo.currentText()!r}; "
            f"choosing {conf.name!r} (as the user must)"
        )
        review.conf_combo.setCurrentText(conf.name)
    z1 = review.go_to_next()
    log(f"Next slice to review -> z = {z1}")
    review.mark_current_reviewed()  # "Mark slice reviewed": looked at it, nothing to fix
    z2 = review.go_to_next()
    ys, xs = missed_fossil(labels, truth, z2)
    tries = 0
    while ys.size == 0 and tries < 10:  # nothing to fix here: accept it, go on
        review.mark_current_reviewed()
        z2 = review.go_to_next()
        ys, xs = missed_fossil(labels, truth, z2)
        tries += 1
    log(f"Next slice to review -> z = {z2}; {ys.size} fossil pixels to paint there")
    if ys.size:
        zoom_on(viewer, labels, (z2, float(ys.mean()), float(xs.mean())), 3.0)
        shots.window("03_paint_before.png", canvas_only=True)
        review.select_class("fossil")  # the class picker; the layer goes to paint mode
        labels.brush_size = 3
        paint_stroke(labels, z2, ys, xs, review.class_combo.currentData())
        shots.window("03_paint_after.png", canvas_only=True)
    log(f"after painting: {review.progress_label.text()}; {review.slice_label.text()}")
    shots.window("03_review.png")
    z3 = review.go_to_next()
    review.save_now()  # the autosave timer would do it 3 s after the last edit
    wait_until(lambda: review.save_label.text().startswith("Autosaved"), 120, "autosave")
    log(f"Next slice to review -> z = {z3}; {review.progress_label.text()}")
    log(f"autosave: {review.save_label.text()}")
    shots.widget(review, "03_review_widget.png")
    labels.visible = False
    conf.visible = True
    viewer.reset_view()
    shots.window("03_confidence.png")
    conf.visible = False
    labels.visible = True
    erase_and_undo(viewer, review, labels)
    review.flush()

    # -- Fossils
    show_dock(viewer, fos_dock, width=620)
    fossils.labels.set_layer(labels.name)
    fossils.class_name.setCurrentText("fossil")
    fossils.image.set_layer(scan.name)  # the scan: the object check needs it
    if fossils.extract() is None:
        raise RuntimeError(f"Extract did not start: {fossils.status.text()}")
    wait_job(fossils, args.timeout, "Extract")
    table = fossils.table
    if table is None or len(table) == 0:
        raise RuntimeError("Extract found no fossils")
    log(f"Extract: {fossils.summary.text()}")
    fossils.table_widget.sortByColumn(1, Qt.SortOrder.DescendingOrder)  # click "volume µm³"
    biggest = max(table.rows, key=lambda r: float(r["volume_um3"]))
    fid = int(biggest["id"])
    fossils.select_rows([fid])  # as a click on the row: goes to the fossil
    labels.visible = False  # the instances (one colour per fossil) over the scan
    viewer.reset_view()
    shots.window("04_fossils_table.png")
    shots.widget(fossils, "04_fossils_widget.png")

    fossils.show_alone.setChecked(True)
    fossils.view_in_3d()
    scan.visible = False  # the scan would hide the fossil in a 3D maximum projection
    inst = fossils.instances_layer
    inst.opacity = 1.0  # layer controls: opacity, gradient mode "smooth"
    if hasattr(inst, "iso_gradient_mode"):
        inst.iso_gradient_mode = "smooth"
    cam = camera(viewer)
    lo = np.array([biggest[f"bbox_{a}0"] for a in "zyx"], dtype=float)
    hi = np.array([biggest[f"bbox_{a}1"] for a in "zyx"], dtype=float)
    cam.center = tuple(float(v) for v in inst.data_to_world((lo + hi) / 2))
    cam.angles = (0.0, 35.0, 60.0)
    extent_um = float(np.max((hi - lo) * np.asarray(inst.scale[-3:], dtype=float)))
    canvas_px = min(getattr(viewer, "_canvas_size", (600, 600)))
    cam.zoom = 0.7 * canvas_px / max(extent_um, 1e-6)
    shots.window("05_fossil_3d.png")
    viewer.dims.ndisplay = 2
    scan.visible = True
    fossils.show_alone.setChecked(False)

    # -- Export: meshes, crops, CSV, gallery (the Export… button, minus the folder dialog)
    export_dir = tmp / "fossils_export"
    if fossils.export(export_dir, mesh_format="stl", crops=True, gallery=True) is None:
        raise RuntimeError(f"Export did not start: {fossils.status.text()}")
    wait_job(fossils, args.timeout, "Export")
    files = sorted(p.relative_to(export_dir).as_posix() for p in export_dir.rglob("*"))
    top = sorted({f.split("/")[0] for f in files})
    log(f"export: {len(files)} files and folders: {top}")
    pic = export_dir / "gallery" / f"fossil_{fid:04d}.png"
    if pic.is_file():
        shots.copy(pic, "06_gallery_fossil.png")
    hist = export_dir / "gallery" / "size_histogram.png"
    if hist.is_file():
        shots.copy(hist, "06_gallery_histogram.png")

    # -- Fine-tune on corrected slices
    finetune(viewer, scan, labels, truth, review, shots, args)

    # -- a real scan
    if args.real:
        real_scan(viewer, seg, seg_dock, shots, args)

    log(f"{len(shots.written)} images in {args.out}")
    viewer.close()
    return 0


def finetune(
    viewer: Any, scan: Any, labels: Any, truth: np.ndarray, review: Any, shots: Shots, args: Any
) -> None:
    """Correct 4 slices (their truth stands in for the user's painting), mark them
    reviewed and fine-tune the model on them for one minute."""
    nz = labels.data.shape[0]
    picks = [int(z) for z in np.linspace(0, nz - 1, 6)[1:-1].round()]
    for z in picks:
        viewer.dims.set_point(0, z * float(scan.scale[0]))
        labels.data[z] = truth[z]
        review.mark_current_reviewed()
    labels.refresh()
    review.flush()
    ft_dock, ft = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune", tabify=True)
    ft.confirm = lambda title, text: True
    show_dock(viewer, ft_dock, width=560)
    ft.refresh()
    ft.labels.set_layer(labels.name)
    ft.minutes.setValue(1.0)
    log(f"Fine-tune: {ft.slices_label.text()}; base {ft.model_path()}")
    if ft.run() is None:
        raise RuntimeError(f"Fine-tune did not start: {ft.status.text()}")
    wait_job(ft, args.timeout, "Fine-tune")
    log(f"Fine-tune result: {ft.result_label.text()}")
    viewer.dims.set_point(0, picks[1] * float(scan.scale[0]))
    shots.window("09_finetune.png")
    shots.widget(ft, "09_finetune_widget.png")
    # The learning-rate finder, after the run (so the run above keeps its learning rate).
    ft.show_advanced.setChecked(True)
    if ft.find_learning_rate() is None:
        raise RuntimeError(f"Find learning rate did not start: {ft.status.text()}")
    wait_job(ft, args.timeout, "Find learning rate")
    shots.widget(ft, "09_finetune_lr_find.png")


def real_scan(viewer: Any, seg: Any, seg_dock: Any, shots: Shots, args: argparse.Namespace) -> None:
    if not REAL_SCAN.is_dir():
        log(f"--real: {REAL_SCAN} not found; skipped")
        return
    viewer.layers.clear()
    viewer.dims.ndisplay = 2
    (real,) = viewer.open(str(REAL_SCAN), plugin=PLUGIN)
    log(
        f"opened real scan {real.name!r}: shape {real.data.shape}, voxel "
        f"{tuple(round(float(s), 3) for s in real.scale)} µm "
        f"({real.metadata.get('spacing_source')})"
    )
    zs, ys, xs = real.data.shape
    scale = tuple(float(s) for s in real.scale)
    viewer.dims.set_point(0, (zs // 2) * scale[0])
    show_dock(viewer, seg_dock)
    seg.status.setText("")  # the last run's message belongs to the sample
    viewer.reset_view()
    shots.window("07_real_scan.png")

    # Segment a centred crop (the slices are 1024 x 996; the CPU is slow and shared).
    c = 384
    y0, x0 = (ys - c) // 2, (xs - c) // 2
    crop = np.asarray(real.data[:, y0 : y0 + c, x0 : x0 + c])
    crop_layer = viewer.add_image(
        crop,
        name="sandstone crop",
        scale=scale,
        translate=(0.0, y0 * scale[1], x0 * scale[2]),
        colormap="gray",
        units=("µm", "µm", "µm"),
    )
    crop_layer.visible = False  # the full scan stays visible around the crop
    labels = segment(viewer, seg, crop_layer.name, args.timeout)
    viewer.layers[f"{crop_layer.name} confidence"].visible = False
    labels.opacity = 0.5
    zoom_on(viewer, labels, (zs // 2, c / 2, c / 2), 1.8)
    shots.window("08_real_scan_segmented.png")


if __name__ == "__main__":
    sys.exit(main())
