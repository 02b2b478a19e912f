"""Issue 13, cases 11 and 12: faults met through the napari panels.

11. An export with a gallery failed after minutes in the size histogram (a bin of one
    fossil beside a bin of 263 specks: a bar under 1 px) and left a half gallery. Here:
    the histogram draws any counts; a fault anywhere in an export or its gallery leaves
    the earlier state or nothing of this run (never a half gallery, never hidden temp
    files); the Fossils panel shows the fault as one notification line.
12. "Restore review" offered another layer's autosave (Yes by default). Here: only a
    save of the same layer and shape is offered, the question names the layer, the
    time and the counts; another layer's save is kept aside, never restored; a save
    that names no layer is asked about with No as the default.

Engine tests run anywhere; the panel tests are marked ``gui`` (run under ``xvfb-run -a``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from napari_microfossil._progress import drain
from napari_microfossil.errors import InputError
from napari_microfossil.fossils import FossilTable, extract_fossils
from napari_microfossil.fossils import export as export_mod
from napari_microfossil.fossils import gallery as gallery_mod
from napari_microfossil.fossils.render import FOSSIL, render_histogram
from napari_microfossil.io import write_tiff
from napari_microfossil.review import ReviewSession, ReviewState, Sidecar
from napari_microfossil.workflows.fossils import ExportRequest, iter_export

# ------------------------------------------------------------------ 11: the histogram

HISTOGRAM_CASES = {
    "one fossil beside 263 specks": [9.0] + [1.24] * 263,
    "one speck beside 5000 fossils": [0.5] + [40.0] * 5000,
    "tight cluster and one outlier": [0.0] * 500 + [1e-6] * 500 + [1e6],
    "spread below float resolution": [1e-12, 2e-12],
    "one value": [7.0],
    "one value many times": [3.0] * 1000,
    "beyond float range": [-1.7e308, 1.7e308],
    "large equal-ish values": [1e15, 1e15 + 1],
    "nan and inf only": [float("nan"), float("inf")],
    "empty": [],
}


@pytest.mark.parametrize("values", HISTOGRAM_CASES.values(), ids=HISTOGRAM_CASES.keys())
@pytest.mark.parametrize("size", [(640, 320), (90, 60), (20, 20)], ids=str)
def test_histogram_draws_any_counts(values, size):
    img = render_histogram(values, width=size[0], height=size[1], label="d (µm)")
    assert img.size == size and img.mode == "RGB"


@pytest.mark.parametrize("seed", range(24))
def test_histogram_sweep_of_random_counts(seed):
    # Hypothesis is not installed in the shared env: a seeded sweep over bin counts
    # from 1 to 10^4 per value, 1 to 6 distinct values over 12 decades, odd sizes.
    rng = np.random.default_rng(seed)
    values: list[float] = []
    for _ in range(int(rng.integers(1, 7))):
        value = float(rng.uniform(0.1, 10.0) * 10.0 ** rng.integers(-6, 6))
        values += [value] * int(10 ** rng.uniform(0, 4))
    size = (int(rng.integers(20, 900)), int(rng.integers(20, 500)))
    assert render_histogram(values, width=size[0], height=size[1]).size == size


def test_a_bin_of_one_beside_263_is_drawn():
    """The bar of the single fossil is at least a pixel high, not left out."""
    img = np.asarray(render_histogram([9.0] + [1.24] * 263))
    bottom_row = img[320 - 53]
    is_bar = np.all(bottom_row == FOSSIL.astype(np.uint8), axis=1)
    assert is_bar[56:100].any()  # the specks' bar, at the left
    assert is_bar[500:620].any()  # the one fossil's bar, at the right


# ------------------------------------------------------------------ 11: faults part-way


def _table() -> tuple[FossilTable, np.ndarray]:
    shape = (10, 24, 40)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    labels = np.zeros(shape, np.uint8)
    for cx, r in ((9, 5.0), (22, 3.5), (33, 2.5)):
        labels[(z - 5) ** 2 + (y - 12) ** 2 + (x - cx) ** 2 <= r**2] = 1
    image = np.where(labels == 1, 900, 100).astype(np.uint16)
    table = extract_fossils(labels, spacing=(1.0, 1.0, 1.0), image=image)
    assert len(table) == 3
    return table, image


@pytest.fixture(scope="module")
def scene():
    return _table()


def _fail_on(monkeypatch, module, name, call, exc):
    """Make ``module.name`` raise `exc` on its `call`-th call (1-based)."""
    original = getattr(module, name)
    calls = []

    def faulty(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise exc
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, faulty)


def _export(table, image, out, *, overwrite=False):
    request = ExportRequest(table, out, image=image, gallery=True, overwrite=overwrite)
    return drain(iter_export(request))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _hidden(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")] if folder.exists() else []


DISK_FULL = OSError(28, "No space left on device")
# (where the fault strikes, module, function, which call, exception, phase)
FAULTS = [
    ("first mesh", export_mod, "_write_mesh", 1, DISK_FULL, "export"),
    ("second crop", export_mod, "write_tiff", 2, DISK_FULL, "export"),
    ("instances.tif", export_mod, "write_tiff", 4, DISK_FULL, "export"),
    ("fossils.csv", export_mod, "write_fossils_csv", 1, DISK_FULL, "export"),
    ("a gallery picture", gallery_mod, "render_fossil", 2, MemoryError(), "gallery"),
    (
        "the size histogram",
        gallery_mod,
        "render_histogram",
        1,
        ValueError("y1 must be greater than or equal to y0"),
        "gallery",
    ),
]


@pytest.mark.parametrize(("where", "module", "name", "call", "exc", "phase"), FAULTS)
def test_a_fault_in_a_fresh_export_leaves_nothing_half_written(
    scene, tmp_path, monkeypatch, where, module, name, call, exc, phase
):
    table, image = scene
    out = tmp_path / "export"
    _fail_on(monkeypatch, module, name, call, exc)
    with pytest.raises(type(exc)):
        _export(table, image, out)
    assert _hidden(tmp_path) == []
    if phase == "export":
        assert not out.exists()  # every file it added and the folders it made are gone
    else:  # the export is complete, the gallery absent as a whole
        assert sorted(p.name for p in out.iterdir()) == [
            "crops",
            "fossils.csv",
            "instances.tif",
            "meshes",
        ]
        assert len(list((out / "meshes").iterdir())) == 3


@pytest.mark.parametrize(("where", "module", "name", "call", "exc", "phase"), FAULTS)
def test_a_fault_over_an_earlier_export_keeps_a_complete_state(
    scene, tmp_path, monkeypatch, where, module, name, call, exc, phase
):
    table, image = scene
    out = tmp_path / "export"
    _export(table, image, out)
    before = _snapshot(out)
    _fail_on(monkeypatch, module, name, call, exc)
    with pytest.raises(type(exc)):  # another scan: every new file differs from the old
        _export(table, image // 3 + 7, out, overwrite=True)
    after = _snapshot(out)
    assert _hidden(tmp_path) == []
    gallery = [k for k in before if k == "index.html" or k.startswith("gallery/")]
    assert len(gallery) == 5  # the index, 3 pictures and the histogram
    # The earlier gallery is whole, never half replaced.
    assert {k: after.get(k) for k in gallery} == {k: before[k] for k in gallery}
    if phase == "export" and where != "first mesh":
        # Files of the earlier export were replaced: its table, which no longer
        # describes them, is removed (an export without fossils.csv is unfinished).
        assert "fossils.csv" not in after
    else:
        assert after["fossils.csv"] == before["fossils.csv"]


def test_a_cancelled_gallery_leaves_the_earlier_one(scene, tmp_path):
    table, image = scene
    gallery_mod.write_gallery(table, tmp_path, image=image, ids=[1])
    before = _snapshot(tmp_path)
    gen = gallery_mod.iter_write_gallery(table, tmp_path, image=image // 3, overwrite=True)
    next(gen), next(gen)  # one new picture drawn
    gen.close()  # the panel's Cancel
    assert _snapshot(tmp_path) == before and _hidden(tmp_path) == []


def test_a_gallery_of_some_fossils_keeps_the_others_pictures(scene, tmp_path):
    table, _ = scene
    gallery_mod.write_gallery(table, tmp_path, ids=[1, 2])
    gallery_mod.write_gallery(table, tmp_path, ids=[3], overwrite=True)
    names = sorted(p.name for p in (tmp_path / "gallery").iterdir())
    assert names == [f"fossil_000{i}.png" for i in (1, 2, 3)] + ["size_histogram.png"]


# ------------------------------------------------------------------ 12: restore matching

SHAPE = (8, 32, 32)


def _save(scan: Path, *, layer: str | None, shape=SHAPE, reviewed=(2,), edited=(4,)):
    labels = np.zeros(shape, np.uint8)
    labels[4, 5:9, 5:9] = 1
    state = ReviewState.for_volume(shape, "z")
    for i in reviewed:
        state.mark_reviewed(i)
    for i in edited:
        state.mark_edited(i)
    extra = {"layer": layer} if layer is not None else {}
    Sidecar(scan).save(labels, state, extra=extra)
    return labels


RESTORE_CASES = [
    # (saved by layer, saved shape, reviewing layer, restorable, why not)
    ("scan fossils", SHAPE, "scan fossils", True, None),
    (None, SHAPE, "scan fossils", True, None),  # an old save: the dialog asks, No default
    ("imported labels", SHAPE, "scan fossils", False, "of layer 'imported labels'"),
    ("scan fossils", (8, 32, 16), "scan fossils", False, "shape (8, 32, 16)"),
    ("imported labels", (8, 32, 16), "scan fossils", False, "of layer 'imported labels'"),
]


@pytest.mark.parametrize(("saved_by", "shape", "layer", "restorable", "why"), RESTORE_CASES)
def test_restore_matches_the_layer_and_shape(tmp_path, saved_by, shape, layer, restorable, why):
    scan = tmp_path / "scan.tif"
    saved = _save(scan, layer=saved_by, shape=shape)
    session = ReviewSession(np.zeros(SHAPE, np.uint8), scan_path=scan, name=layer)
    assert session.restorable is restorable
    summary = session.saved_review
    assert summary is not None and summary.layer == saved_by and summary.shape == shape
    if restorable:
        np.testing.assert_array_equal(session.restore(), saved)
        assert session.state.reviewed == {2, 4} and session.state.edited == {4}
    else:
        assert why in summary.mismatch(layer, SHAPE)
        with pytest.raises(
            InputError, match=rf"not of these labels.*{re.escape(why)}.*not restored"
        ):
            session.restore()
        assert not session.labels.any()  # the model's output is kept


def test_the_summary_says_which_layer_when_and_how_much(tmp_path):
    scan = tmp_path / "scan.tif"
    _save(scan, layer="scan fossils", reviewed=(1, 2, 3), edited=(4,))
    text = Sidecar(scan).summary().describe()
    saved_at = Sidecar(scan).saved_at.astimezone().strftime("%Y-%m-%d %H:%M")
    assert text == f"layer 'scan fossils', saved {saved_at}: 4 of 8 z-slices reviewed, 1 edited"
    assert "\n" not in text


def test_a_damaged_record_is_no_summary(tmp_path):
    scan = tmp_path / "scan.tif"
    _save(scan, layer="x")
    record = scan.with_name("scan.tif.microfossil") / "review.json"
    data = json.loads(record.read_text())
    data["shape"] = "not a shape"
    record.write_text(json.dumps(data))
    assert Sidecar(scan).summary() is None
    assert not ReviewSession(np.zeros(SHAPE, np.uint8), scan_path=scan, name="x").restorable


# ------------------------------------------------------------------ panels


def _review_setup(viewer, tmp_path):
    scan = tmp_path / "scan.tif"
    image = np.random.default_rng(0).integers(0, 1000, SHAPE, dtype=np.uint16)
    if not scan.exists():
        write_tiff(scan, image)
    viewer.add_image(image, name="scan", metadata={"path": str(scan)})
    return scan


@pytest.mark.parametrize(
    ("saved_by", "asked", "default"),
    [("scan fossils", True, "Yes"), (None, True, "No"), ("imported labels", False, None)],
)
@pytest.mark.gui
def test_review_panel_offers_only_this_layers_save(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, saved_by, asked, default
):
    import napari.utils.notifications as notifications
    from qtpy.QtWidgets import QMessageBox

    from napari_microfossil._napari.review_widget import ReviewWidget

    viewer = make_napari_viewer()
    scan = _review_setup(viewer, tmp_path)
    _save(scan, layer=saved_by, reviewed=(1,), edited=(4,))
    questions = []

    def question(parent, title, text, buttons, default_button):
        questions.append((title, text, default_button))
        return QMessageBox.StandardButton.No

    infos = []
    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    monkeypatch.setattr(notifications, "show_info", infos.append)
    layer = viewer.add_labels(
        np.zeros(SHAPE, np.uint8), name="scan fossils", metadata={"source_path": str(scan)}
    )
    widget = ReviewWidget(viewer, autosave_delay_ms=150, cache_dir=tmp_path / "cache")
    viewer.window.add_dock_widget(widget)
    assert widget.layer is layer
    assert not layer.data.any()  # never replaced without a Yes
    kept = list(scan.with_name("scan.tif.microfossil").glob("declined-*/review.json"))
    assert len(kept) == 1  # not restored: kept aside, not overwritten by the next save
    if not asked:
        assert questions == []
        assert len(infos) == 1 and "\n" not in infos[0]
        assert "layer 'imported labels'" in infos[0] and "not offered" in infos[0]
        return
    ((title, text, default_button),) = questions
    who = f"layer '{saved_by}'" if saved_by else "an unnamed layer"
    assert title == "Restore review"
    assert f"{who}, saved " in text and "2 of 8 z-slices reviewed, 1 edited" in text
    assert "replaces the labels of 'scan fossils'" in text
    assert default_button == getattr(QMessageBox.StandardButton, default)


@pytest.mark.gui
def test_review_panel_restores_its_own_save_on_yes(make_napari_viewer, qtbot, tmp_path):
    from napari_microfossil._napari.review_widget import ReviewWidget

    viewer = make_napari_viewer()
    scan = _review_setup(viewer, tmp_path)
    saved = _save(scan, layer="scan fossils")
    layer = viewer.add_labels(
        np.zeros(SHAPE, np.uint8), name="scan fossils", metadata={"source_path": str(scan)}
    )
    widget = ReviewWidget(
        viewer, confirm=lambda t, q: True, autosave_delay_ms=150, cache_dir=tmp_path / "cache"
    )
    viewer.window.add_dock_widget(widget)
    np.testing.assert_array_equal(layer.data, saved)
    assert widget.state.edited == {4}


@pytest.mark.parametrize(
    ("module", "name", "exc"),
    [
        (gallery_mod, "render_histogram", ValueError("y1 must be greater than or equal to y0")),
        (export_mod, "write_tiff", DISK_FULL),
    ],
    ids=["histogram", "disk full"],
)
@pytest.mark.gui
def test_fossils_panel_shows_a_failed_export_as_one_line(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, module, name, exc
):
    import napari.utils.notifications as notifications

    from napari_microfossil._napari.fossils_widget import FossilsWidget

    table, image = _table()
    viewer = make_napari_viewer()
    viewer.add_image(image, name="scan")
    viewer.add_labels(
        (table.instances > 0).astype(np.uint8),
        name="scan fossils",
        metadata={"class_names": ["background", "fossil"], "source_image": "scan"},
    )
    widget = FossilsWidget(viewer)
    widget.min_size.setValue(0)  # three small fossils, below the default size limit
    widget.extract()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    assert widget.table is not None and len(widget.table) == 3
    errors = []
    monkeypatch.setattr(notifications, "show_error", errors.append)
    _fail_on(monkeypatch, module, name, 1, exc)
    out = tmp_path / "export"
    widget.export(out, gallery=True)
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert errors[0].startswith(f"Fossils: export to {out} failed (")
    assert str(exc.args[-1]) in errors[0] and "nothing half-written" in errors[0]
    assert "failed" in widget.status.text()
    assert _hidden(tmp_path) == []
    if module is gallery_mod:  # the export is complete; no half gallery
        assert (out / "fossils.csv").is_file()
        assert not (out / "index.html").exists() and not (out / "gallery").exists()
    else:
        assert not out.exists()
