"""Shared fixtures: tiny networks and small synthetic volumes from seeded rngs."""

from __future__ import annotations

import os
import sys

import pytest

# The tests use at most the two cores CI has, and never a GPU unless marked.
os.environ.setdefault("OMP_NUM_THREADS", "2")

#: Fixtures that start a Qt application (and abort the whole run without a display).
_QT_FIXTURES = {"qtbot", "make_napari_viewer", "make_napari_viewer_proxy", "qapp"}
NO_DISPLAY_REASON = (
    "GUI tests skipped: no display. Install Xvfb (apt-get install xvfb) and run "
    "`make test` again, or run on a desktop"
)


def has_display() -> bool:
    """Whether Qt can open windows here (X11 or Wayland; macOS and Windows always)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def pytest_collection_modifyitems(config, items):
    if has_display():
        return
    skip = pytest.mark.skip(reason=NO_DISPLAY_REASON)
    for item in items:
        if item.get_closest_marker("gui") or _QT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(skip)


def pytest_report_header(config):
    return None if has_display() else NO_DISPLAY_REASON


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not has_display():
        terminalreporter.write_line(NO_DISPLAY_REASON, yellow=True)


@pytest.fixture(autouse=True)
def _torch_threads():
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(2)
    yield


@pytest.fixture
def tiny_spec():
    from napari_microfossil.classes import PHANTOM_CLASS_NAMES
    from napari_microfossil.model import ModelSpec

    return ModelSpec(
        class_names=PHANTOM_CLASS_NAMES,
        encoder="resnet18",
        arch_kwargs={"encoder_depth": 3, "decoder_channels": (32, 16, 8)},
        tile_size=64,
    )


@pytest.fixture
def model_file(tmp_path, tiny_model):
    """The tiny model saved as ``tmp_path / "tiny.safetensors"``."""
    from napari_microfossil.model import save_model

    return save_model(tmp_path / "tiny.safetensors", tiny_model.network, tiny_model.spec)


@pytest.fixture
def tiny_model(tiny_spec):
    import torch

    from napari_microfossil.model import LoadedModel, build_network

    torch.manual_seed(0)
    net = build_network(tiny_spec).eval()
    return LoadedModel(spec=tiny_spec, network=net)


NOISE_SCAN_SHAPE = (10, 40, 48)


@pytest.fixture
def scan(tmp_path):
    """A (10, 40, 48) uint16 noise scan saved as TIFF, voxel size (2, 0.5, 0.5).

    Used by the streaming, cluster and keep tests; a module with a ``scan`` of its own
    overrides it.
    """
    import numpy as np

    from napari_microfossil.io import write_tiff

    data = np.random.default_rng(0).integers(0, 1000, size=NOISE_SCAN_SHAPE).astype(np.uint16)
    return write_tiff(tmp_path / "scan.tif", data, spacing=(2.0, 0.5, 0.5))


@pytest.fixture
def small_chunks(monkeypatch):
    """Store chunks (and so slabs and tasks) of 2 planes for the 40 x 48 ``scan``."""
    import napari_microfossil.io.store as store

    monkeypatch.setattr(store, "CHUNK_BYTES", 2 * 40 * 48)


def two_balls():
    """Labels (12, 24, 48) with two fossil balls and their confidence: one the model was
    sure of (97 %), one it was not (60 %); 99 % elsewhere."""
    import numpy as np

    shape = (12, 24, 48)
    labels = np.zeros(shape, np.uint8)
    conf = np.full(shape, 99, np.uint8)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    for cx, c in ((12, 97), (36, 60)):
        ball = (z - 6) ** 2 + (y - 12) ** 2 + (x - cx) ** 2 <= 25
        labels[ball] = 1
        conf[ball] = c
    return labels, conf


@pytest.fixture
def two_balls_panel(make_napari_viewer):
    """A Fossils panel on a scan with :func:`two_balls`, as a Segment result with its
    confidence layer."""
    import numpy as np

    from napari_microfossil._napari.fossils_widget import FossilsWidget

    viewer = make_napari_viewer()
    labels, conf = two_balls()
    viewer.add_image((20000 + 6000.0 * labels).astype(np.uint16), name="scan")
    viewer.add_image(conf, name="scan confidence", metadata={"labels_layer": "scan fossils"})
    viewer.add_labels(
        labels,
        name="scan fossils",
        metadata={"class_names": ["background", "fossil"], "confidence_layer": "scan confidence"},
    )
    widget = FossilsWidget(viewer)
    widget.min_size.setValue(0)
    widget.image.set_layer("scan")
    return viewer, widget
