"""Labels kept in a zarr store: reading and writing through the overlay, the autosave
into the store through the sidecar journal, and what a kill at each step leaves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from napari_microfossil.io import read_labels
from napari_microfossil.io.store import create_output
from napari_microfossil.review import ReviewSession, Sidecar
from napari_microfossil.review.labels_store import (
    JOURNAL_MARKER,
    StoreLabels,
    open_store_labels,
    recover,
)

SHAPE, CHUNKS = (10, 12, 14), (4, 5, 6)


def make_store(path, seed=0):
    rng = np.random.default_rng(seed)
    return write_store(path, rng.integers(0, 3, SHAPE, dtype=np.uint8), CHUNKS)


def write_store(path, labels, chunks):
    """`labels` (classes bg, a, b) as this tool's zarr store in `chunks`; returns them."""
    out = create_output(path, labels.shape, np.uint8, class_names=["bg", "a", "b"], chunks=chunks)
    for z in range(0, labels.shape[0], chunks[0]):
        out.write(z, labels[z : z + chunks[0]])
    out.finish()
    return labels


def on_disk(path):
    return np.asarray(read_labels(path, lazy=False).data)


def test_reads_and_writes_like_numpy(tmp_path):
    ref = make_store(tmp_path / "l.zarr")
    lab = open_store_labels(tmp_path / "l.zarr")
    assert (lab.shape, lab.dtype, lab.chunks) == (SHAPE, np.dtype(np.uint8), CHUNKS)
    np.testing.assert_array_equal(lab[3], ref[3])
    # napari's brush: one index array per axis, across chunk borders
    idx = (np.array([0, 3, 4, 9]), np.array([0, 4, 5, 11]), np.array([13, 5, 6, 0]))
    lab[idx] = 7
    ref[idx] = 7
    lab[2:6, 1, ::3] = np.arange(5, dtype=np.uint8)  # broadcast over a box with a step
    ref[2:6, 1, ::3] = np.arange(5, dtype=np.uint8)
    lab[-1, -2:, :] = 9
    ref[-1, -2:, :] = 9
    np.testing.assert_array_equal(lab[idx], ref[idx])
    for key in [(slice(None),), (3,), (slice(1, 9), 4), (slice(None), slice(2, 11), 5), (9,)]:
        np.testing.assert_array_equal(lab[key], ref[key])
    np.testing.assert_array_equal(np.asarray(lab), ref)
    # the store itself is untouched until a save
    assert not np.array_equal(on_disk(tmp_path / "l.zarr"), ref)
    assert lab.dirty


def test_save_writes_only_edited_chunks_and_frees_them(tmp_path):
    ref = make_store(tmp_path / "l.zarr")
    lab = open_store_labels(tmp_path / "l.zarr")
    lab[5, 6, 7] = 2
    ref[5, 6, 7] = 2
    copies, gens = lab.unsaved()
    assert list(copies) == [lab.grid.of_box((slice(5, 6), slice(6, 7), slice(7, 8))).pop()]
    lab.write_to_store(copies)
    lab.stored(gens)
    assert not lab.dirty and not lab._overlay  # memory: only edits not in the store
    np.testing.assert_array_equal(on_disk(tmp_path / "l.zarr"), ref)


def review(tmp_path, labels, **kw):
    return ReviewSession(labels, scan_path=tmp_path / "scan.tif", name="fossils", **kw)


def test_session_autosaves_into_the_store_and_restores(tmp_path):
    store = tmp_path / "l.zarr"
    ref = make_store(store)
    lab = open_store_labels(store)
    session = review(tmp_path, lab)
    lab[(np.array([1, 8]), np.array([2, 11]), np.array([3, 13]))] = 2
    ref[(np.array([1, 8]), np.array([2, 11]), np.array([3, 13]))] = 2
    session.record_paint([], current=1)
    session.mark_reviewed(1)
    path = session.save(extra={"layer": "fossils"})
    rec = json.loads(path.read_text())
    assert rec["version"] == 3 and rec["labels"]["store"] == str(store.absolute())
    assert len(rec["labels"]["pending"]) == 2 and sorted(session.sidecar.last_written) == sorted(
        int(i) for i in rec["labels"]["pending"]
    )
    assert not (store / JOURNAL_MARKER).exists()
    np.testing.assert_array_equal(on_disk(store), ref)
    # a new session on the reopened store restores the review state; labels = the store
    again = review(tmp_path, open_store_labels(store))
    assert again.restorable
    got = again.restore()
    assert isinstance(got, StoreLabels) and got is again.labels
    assert again.state.is_reviewed(1)
    np.testing.assert_array_equal(np.asarray(got), ref)
    # a second save writes only what changed since
    got[0, 0, 0] = 1
    again.record_paint([], current=0)
    again.save()
    assert again.sidecar.last_written == (0,)


def test_store_save_is_not_restored_into_memory(tmp_path):
    store = tmp_path / "l.zarr"
    ref = make_store(store)
    session = review(tmp_path, open_store_labels(store))
    session.mark_reviewed(2)
    session.save(extra={"layer": "fossils"})
    other = review(tmp_path, ref.copy())
    assert not other.restorable
    with pytest.raises(ValueError, match="labels are in"):
        other.restore()


_KILLER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from napari_microfossil.review import ReviewSession
    from napari_microfossil.review import labels_store, record, chunks
    from napari_microfossil.review.labels_store import open_store_labels

    store, scan, step = sys.argv[1], sys.argv[2], sys.argv[3]
    def die(*a, **k):
        os._exit(9)
    def after(fn):
        def wrapped(*a, **k):
            out = fn(*a, **k)
            os._exit(9)
        return wrapped
    lab = open_store_labels(store)
    session = ReviewSession(lab, scan_path=scan, name="fossils")
    lab[0:10, 0:12, 0:14] = 5  # every chunk, so a kill can fall between two
    session.record_paint([], current=0)
    session.mark_reviewed(0)
    if step == "journal":
        labels_store.atomic_path = die  # the chunk files written, no marker yet
    elif step == "commit":
        labels_store.StoreLabels.write_to_store = die  # record replaced, store untouched
    elif step == "apply":  # half of the chunks in the store
        orig = labels_store.StoreLabels.write_to_store
        def half(self, chunks):
            orig(self, dict(list(sorted(chunks.items()))[: len(chunks) // 2]))
            os._exit(9)
        labels_store.StoreLabels.write_to_store = half
    elif step == "marker":
        labels_store.StoreLabels.stored = die  # all applied, marker gone
    session.save(extra={"layer": "fossils"})
    os._exit(0)
    """
)


@pytest.mark.parametrize(
    ("step", "expect_new"),
    [("journal", False), ("commit", True), ("apply", True), ("marker", True)],
)
def test_a_kill_at_any_step_leaves_a_complete_save(tmp_path, step, expect_new):
    store, scan = tmp_path / "l.zarr", tmp_path / "scan.tif"
    ref = make_store(store)
    # a first complete save: one voxel painted
    lab = open_store_labels(store)
    session = ReviewSession(lab, scan_path=scan, name="fossils")
    lab[1, 1, 1] = 2
    ref[1, 1, 1] = 2
    session.record_paint([], current=1)
    session.save(extra={"layer": "fossils"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run(
        [sys.executable, "-c", _KILLER, str(store), str(scan), step], env=env, timeout=120
    )
    assert run.returncode == 9  # killed where asked
    if step == "apply":  # the store is torn: half the chunks are 5, and readers say so
        with pytest.warns(UserWarning, match="stopped half way"):
            torn = on_disk(store)
        assert (torn == 5).any() and not (torn == 5).all()
    reopened = open_store_labels(store)  # finishes an interrupted save
    assert not (store / JOURNAL_MARKER).exists()
    want = np.full(SHAPE, 5, np.uint8) if expect_new else ref
    np.testing.assert_array_equal(np.asarray(reopened), want)
    np.testing.assert_array_equal(on_disk(store), want)  # any zarr reader sees it too
    restored = ReviewSession(reopened, scan_path=scan, name="fossils")
    assert restored.restorable
    restored.restore()
    assert restored.state.is_reviewed(0) == expect_new
    assert recover(store) == 0


def test_recover_without_a_record_drops_the_marker(tmp_path, caplog):
    store = tmp_path / "l.zarr"
    make_store(store)
    (store / JOURNAL_MARKER).write_text(json.dumps({"record": str(tmp_path / "gone.json")}))
    assert recover(store) == 0
    assert not (store / JOURNAL_MARKER).exists()
    assert "may hold part of that save" in caplog.text


def test_sidecar_archive_of_a_store_save(tmp_path):
    store = tmp_path / "l.zarr"
    make_store(store)
    session = review(tmp_path, open_store_labels(store))
    session.mark_reviewed(3)  # no labels changed: no chunk files at all
    session.save()
    kept = Sidecar(tmp_path / "scan.tif").archive()
    assert kept is not None and (kept / "review.json").is_file()


def test_napari_writer_streams_a_store_backed_layer(tmp_path):
    from napari_microfossil._napari.writer import write_labels

    ref = make_store(tmp_path / "l.zarr")
    lab = open_store_labels(tmp_path / "l.zarr")
    lab[9, 11, 13] = 1  # an edit not saved yet: written too
    ref[9, 11, 13] = 1
    meta = {"scale": (2.0, 1.0, 1.0), "metadata": {"class_names": ["bg", "a", "b"]}}
    write_labels(str(tmp_path / "out.tif"), lab, meta)
    got = read_labels(tmp_path / "out.tif", lazy=False)
    np.testing.assert_array_equal(np.asarray(got.data), ref)
    assert tuple(got.class_names) == ("bg", "a", "b") and got.spacing == (2.0, 1.0, 1.0)


def test_fossils_of_a_store_backed_layer_run_blockwise(tmp_path):
    from types import SimpleNamespace

    from napari_microfossil._napari.store_jobs import extract_job, instances_store_for
    from napari_microfossil._progress import drain
    from napari_microfossil.workflows.fossils import ExtractRequest, iter_extract

    store = tmp_path / "l.zarr"
    out = create_output(store, SHAPE, np.uint8, class_names=["bg", "fossil"], chunks=CHUNKS)
    blobs = np.zeros(SHAPE, np.uint8)
    blobs[1:4, 1:5, 1:5] = 1
    blobs[6:9, 6:11, 2:12] = 1
    out.write(0, blobs[:8])
    out.write(8, blobs[8:])
    out.finish()
    lab = open_store_labels(store)
    lab[5:7, 0:3, 10:14] = 1  # a third fossil, painted and not saved yet
    blobs[5:7, 0:3, 10:14] = 1
    layer = SimpleNamespace(data=lab, metadata={})
    assert instances_store_for(layer) == tmp_path / "l.instances.zarr"
    request = ExtractRequest(lab, class_names=("bg", "fossil"), spacing=(2.0, 1.0, 1.0))
    table = drain(extract_job(request, layer))
    want = drain(
        iter_extract(ExtractRequest(blobs, class_names=("bg", "fossil"), spacing=(2.0, 1.0, 1.0)))
    )
    assert len(table) == len(want) == 3
    assert [r["volume_um3"] for r in table.rows] == [r["volume_um3"] for r in want.rows]
    np.testing.assert_array_equal(np.asarray(table.instances) > 0, blobs == 1)
    assert (tmp_path / "l.instances.zarr").is_dir()
    memory = SimpleNamespace(data=blobs, metadata={})
    assert instances_store_for(memory) is None

    # with the object check (the panel's default with a scan and a confidence): the
    # same judgement block by block, the store's confidence read lazily
    scan = (20000 + 5000.0 * blobs).astype(np.uint16)
    conf = np.where(blobs == 1, 90, 97).astype(np.uint8)
    checked = {"image": scan, "confidence": conf, "object_check": True, "min_voxels": 10}
    request = ExtractRequest(lab, class_names=("bg", "fossil"), **checked)
    table = drain(extract_job(request, layer))
    want = drain(iter_extract(ExtractRequest(blobs, class_names=("bg", "fossil"), **checked)))
    assert len(table) + table.dropped_lookalikes == 3
    assert (len(table), table.dropped_lookalikes) == (len(want), want.dropped_lookalikes)
    np.testing.assert_array_equal(np.asarray(table.instances), want.instances)


def test_reading_a_store_mid_save_warns(tmp_path):
    store = tmp_path / "l.zarr"
    make_store(store)
    (store / JOURNAL_MARKER).write_text("{}")
    with pytest.warns(UserWarning, match="stopped half way"):
        read_labels(store)
