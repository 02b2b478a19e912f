"""Pictures of the big-scan path in napari: a command-line result in ``.zarr`` stores,
opened in napari, its fossils extracted by the Fossils panel block by block.

``microfossil sample`` (a 128x256x256 phantom), ``microfossil segment scan.tif -o
labels.zarr --confidence confidence.zarr``, then napari opens ``scan.tif`` and
``labels.zarr`` (its labels stay in the store, edited in place) and the Fossils panel
extracts with its defaults: the labels name their confidence map, so the object check
runs, block by block (``labels.instances.zarr`` beside the store). Run under Xvfb::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/screenshot_store.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_screenshots as ms  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE / "images")
    args = p.parse_args()
    from napari_microfossil.cli import main as cli

    with tempfile.TemporaryDirectory(prefix="microfossil_store_") as tmp:
        t = Path(tmp)
        shape = ["128", "256", "256"]
        if cli(["sample", str(t), "--seed", "3003", "--shape", *shape]) != 0:
            raise RuntimeError("microfossil sample failed")
        argv = [str(t / "scan.tif"), "-o", str(t / "labels.zarr")]
        if cli(["segment", *argv, "--confidence", str(t / "confidence.zarr")]) != 0:
            raise RuntimeError("microfossil segment failed")
        import napari

        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1500, 950)
        [scan] = viewer.open(str(t / "scan.tif"), plugin=ms.PLUGIN)
        [labels] = viewer.open(str(t / "labels.zarr"), plugin=ms.PLUGIN)
        dock, fossils = viewer.window.add_plugin_dock_widget(ms.PLUGIN, "Fossils")
        ms.show_dock(viewer, dock, width=620)
        fossils.labels.set_layer(labels.name)
        fossils.image.set_layer(scan.name)
        started = time.monotonic()
        if fossils.extract() is None:
            raise RuntimeError(f"Extract did not start: {fossils.status.text()}")
        ms.wait_job(fossils, 600, "Extract")
        ms.log(f"Extract ({time.monotonic() - started:.1f} s): {fossils.status.text()}")
        if not (t / "labels.instances.zarr").is_dir():
            raise RuntimeError("the store was not extracted block by block")
        labels.visible = False
        viewer.reset_view()
        shots = ms.Shots(viewer, args.out)
        shots.window("13_store_fossils.png")
        viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
