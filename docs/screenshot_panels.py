"""Screenshots of the four panels as a user opens them, on a 1366 x 768 laptop screen.

Run under a virtual X display::

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python docs/screenshot_panels.py

It opens *File > Open Sample > Microfossil sample* (or, with ``--scan``, a real scan
through the plugin's reader, e.g. the Versa sandstone slices in ``../shared/data``) in a
napari window the size of the screen, opens Segment, Review & correct, Fossils and Fine-tune from the Plugins menu (they
dock as tabs of one dock), and saves the whole window once with each tab in front, as
``docs/images/10_panels_<panel>.png`` (``10_real_<panel>.png`` with ``--scan``). It prints each panel's minimum height, which must
leave the window within the screen.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN = "napari-microfossil"
PANELS = {
    "Segment": "segment",
    "Review & correct": "review",
    "Fossils": "fossils",
    "Fine-tune": "finetune",
}


def pump(seconds: float = 0.5) -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> None:
    import napari
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "images")
    parser.add_argument("--scan", type=Path, help="open this scan instead of the sample")
    parser.add_argument("--size", type=int, nargs=2, default=(1366, 740), metavar=("W", "H"))
    args = parser.parse_args()

    viewer = napari.Viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*args.size)
    window.move(0, 0)
    if args.scan is not None:
        viewer.open(str(args.scan), plugin=PLUGIN)
    else:
        viewer.open_sample(PLUGIN, "microfossil-sample")
    viewer.scale_bar.visible = True
    docks = {name: viewer.window.add_plugin_dock_widget(PLUGIN, name) for name in PANELS}
    pump(1.5)
    for name, (dock, panel) in docks.items():
        dock.raise_()
        pump(0.8)
        kind = "panels" if args.scan is None else "real"
        out = args.out / f"10_{kind}_{PANELS[name]}.png"
        Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(out)
        tabs = len(window.tabifiedDockWidgets(dock)) + 1
        print(
            f"{name:17s} min height {panel.minimumSizeHint().height():4d} px, "
            f"{tabs} tabs, window {window.width()}x{window.height()} -> {out.name}"
        )
    viewer.close()


if __name__ == "__main__":
    main()
