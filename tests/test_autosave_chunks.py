"""Chunked autosave: only the chunks an edit touched are written; crash-safe; restores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any, NamedTuple

import numpy as np
import pytest

from napari_microfossil.errors import InputError
from napari_microfossil.review import (
    STATE_FILE,
    AutosaveSchedule,
    ChunkGrid,
    ReviewSession,
    ReviewState,
    Sidecar,
)
from napari_microfossil.review.chunks import CHUNK_DIR, chunk_path, default_chunks

SHAPE = (10, 24, 20)
CHUNKS = (4, 8, 8)  # a 3 x 3 x 3 grid, smaller at the far edges


class _Masked(NamedTuple):  # the shape of napari 0.9's _MaskedPaintAtom
    slice_key: tuple[slice, ...]
    mask: Any
    old_values: Any
    new_value: int


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[1:3, 2:6, 2:6] = 1  # an object inside chunk (0, 0, 0)
    labels[8:10, 17:22, 16:19] = 2  # one inside chunk (2, 2, 2), the last
    return labels


def _session(tmp_path, labels=None, **kwargs) -> ReviewSession:
    return ReviewSession(
        _labels() if labels is None else labels,
        scan_path=tmp_path / "scan.tif",
        cache_dir=tmp_path / "cache",
        chunks=CHUNKS,
        **kwargs,
    )


def _files(session: ReviewSession) -> set[str]:
    assert session.sidecar is not None
    return {p.stem for p in (session.sidecar.folder / CHUNK_DIR).rglob("*.zst")}


def _names(session: ReviewSession) -> list[str]:
    assert session.sidecar is not None
    return json.loads((session.sidecar.folder / STATE_FILE).read_text())["labels"]["names"]


def _load(tmp_path) -> tuple[np.ndarray, ReviewState, dict[str, Any]]:
    return Sidecar(tmp_path / "scan.tif", cache_dir=tmp_path / "cache").load()


# --------------------------------------------------------------------------- the grid


def test_grid_boxes_and_what_an_edit_touches():
    grid = ChunkGrid(SHAPE, CHUNKS)
    assert grid.grid == (3, 3, 3) and grid.count == 27
    assert grid.box(26) == (slice(8, 10), slice(16, 24), slice(16, 20))
    assert grid.chunk_shape(26) == (2, 8, 4)
    assert grid.of_box((slice(3, 5), slice(0, 1), slice(7, 9))) == {0, 1, 9, 10}
    assert grid.of_box((slice(2, 2), slice(0, 5), slice(0, 5))) == set()
    assert grid.of_points((np.array([0, 9]), np.array([0, 23]), np.array([0, 19]))) == {0, 26}

    mask = np.zeros((1, 10, 10), bool)
    mask[0, 0, 0] = mask[0, 9, 9] = True  # the box spans 4 chunks, the mask 2
    masked = _Masked((slice(5, 6), slice(7, 17), slice(7, 17)), mask, None, 1)
    whole = _Masked((slice(5, 6), slice(7, 16), slice(7, 16)), None, None, 1)
    points = ((np.array([0]), np.array([23]), np.array([0])), np.zeros(1), 1)
    assert grid.of_atoms([masked]) == {9 + 0 * 3 + 0, 9 + 2 * 3 + 2}
    assert grid.of_atoms([whole]) == {9, 10, 12, 13}
    assert grid.of_atoms([masked, points]) == {9, 17, 6}
    assert grid.of_atoms([object()]) is None and grid.of_atoms(None) is None
    assert default_chunks((2048,) * 3, np.uint8) == (128, 128, 128)
    assert default_chunks((4, 2048, 2048), np.uint32) == (4, 64, 64)
    with pytest.raises(ValueError, match="chunks"):
        ChunkGrid(SHAPE, (0, 8, 8))


def test_schedule_collects_changed_chunks():
    sched = AutosaveSchedule(delay_s=0)
    assert sched.unsaved_chunks() is None  # nothing saved yet: everything
    sched.clear()
    sched.changed([1, 2])
    sched.changed([])
    sched.changed({5})
    assert sched.unsaved_chunks() == {1, 2, 5}
    sched.begin()
    assert sched.unsaved_chunks() == frozenset()
    sched.changed([3])
    sched.changed(None)  # a change that cannot be localised
    sched.changed([4])
    assert sched.unsaved_chunks() is None
    sched.clear()
    sched.changed([7])
    sched.begin()
    sched.failed(OSError("disk full"))  # the failed save's chunks: all again
    assert sched.unsaved_chunks() is None


# --------------------------------------------------------------------------- saving


def test_a_save_writes_only_the_chunks_an_edit_touched(tmp_path):
    session = _session(tmp_path)
    session.mark_reviewed(0)
    assert session.save() is not None
    car = session.sidecar
    assert car is not None and car.last_written == tuple(range(27))  # the first: all
    # identical chunks are one file: the background (in 3 chunk shapes) and the objects
    assert len(set(_names(session))) == 5 and _files(session) == set(_names(session))
    before = _names(session)

    session.labels[9, 20, 17] = 0  # as napari's brush does it, then its event
    atom = ((np.array([9]), np.array([20]), np.array([17])), np.array([2]), 0)
    session.record_paint([atom], current=9)
    session.save()
    assert car.last_written == (26,)
    after = _names(session)
    assert [i for i in range(27) if before[i] != after[i]] == [26]
    np.testing.assert_array_equal(_load(tmp_path)[0], session.labels)

    session.mark_reviewed(3)  # no labels changed: no chunk written
    session.save()
    assert car.last_written == ()
    assert _load(tmp_path)[1].reviewed == {0, 3, 9}

    session.erase((1, 3, 3), current=1)  # the object of chunk 0
    session.save()
    assert car.last_written == (0,)
    assert not _load(tmp_path)[0][1:3].any()
    session.undo()
    session.save()
    assert car.last_written == (0,)
    np.testing.assert_array_equal(_load(tmp_path)[0], session.labels)
    assert _files(session) == set(_names(session))  # files no longer named are gone


def test_restore_then_save_only_what_changed(tmp_path):
    first = _session(tmp_path, labels=_labels().astype(np.int16))
    first.labels[0, 0, 0] = -1  # signed labels: saved as their bits
    first.labels_changed()
    first.save()
    second = _session(tmp_path, labels=np.zeros(SHAPE, np.int16))
    assert second.restorable
    np.testing.assert_array_equal(second.restore(), first.labels)
    assert second.labels.dtype == np.int16 and not second.dirty

    second.labels[9, 0, 0] = 3
    second.labels_changed([((np.array([9]), np.array([0]), np.array([0])), 0, 3)])
    second.save()
    assert second.sidecar is not None and second.sidecar.last_written == (18,)
    labels, _, meta = _load(tmp_path)
    assert meta["dtype"] == "uint16" and labels.view(np.int16)[9, 0, 0] == 3
    np.testing.assert_array_equal(labels.view(np.int16), second.labels)


def test_changes_without_a_place_and_other_savers_mean_a_full_save(tmp_path):
    session = _session(tmp_path)
    session.labels_changed()
    session.save()
    car = session.sidecar
    assert car is not None
    session.labels_changed()  # napari's undo, nobody said where
    session.save()
    assert car.last_written == tuple(range(27))

    other = Sidecar(tmp_path / "scan.tif", cache_dir=tmp_path / "cache")
    other.save(np.zeros(SHAPE, np.uint8), ReviewState.for_volume(SHAPE))  # a TIFF save
    session.labels[0, 0, 0] = 5
    session.record_edit({0}, current=0, chunks={0})
    session.save()  # its base is gone: everything is written again, and the TIFF removed
    assert car.last_written == tuple(range(27))
    assert not list(car.folder.glob("labels-*.tif"))
    np.testing.assert_array_equal(_load(tmp_path)[0], session.labels)

    session.decline_restore()  # the save goes aside, with its chunks
    kept = list(car.folder.glob(f"declined-*/{CHUNK_DIR}"))
    assert len(kept) == 1 and not (car.folder / CHUNK_DIR).exists()
    session.mark_reviewed(2)
    session.save()
    assert car.last_written == tuple(range(27))
    np.testing.assert_array_equal(_load(tmp_path)[0], session.labels)


def test_a_tiff_save_still_restores_and_the_next_save_is_chunked(tmp_path):
    labels = _labels()
    Sidecar(tmp_path / "scan.tif", cache_dir=tmp_path / "cache").save(
        labels, ReviewState(n_slices=SHAPE[0], reviewed={4}), extra={"layer": "x"}
    )
    session = _session(tmp_path, labels=np.zeros(SHAPE, np.uint8), name="x")
    assert session.restorable
    np.testing.assert_array_equal(session.restore(), labels)
    session.labels[5, 5, 5] = 1
    session.record_edit({5}, current=5, chunks=session.chunk_grid.of_box((slice(5, 6),) * 3))
    session.save(extra={"layer": "x"})
    assert session.sidecar is not None and session.sidecar.last_written == tuple(range(27))
    assert not list(session.sidecar.folder.glob("labels-*.tif"))
    got, state, _ = _load(tmp_path)
    np.testing.assert_array_equal(got, session.labels)
    assert state.reviewed == {4, 5}
    saved = Sidecar(tmp_path / "scan.tif", cache_dir=tmp_path / "cache").summary()
    assert saved is not None and saved.layer == "x" and saved.shape == SHAPE


def test_edits_during_a_save_are_saved_by_the_next(tmp_path):
    session = _session(tmp_path)
    session.labels_changed()
    update = session.update()  # a first save reads the live labels when it runs
    assert update is not None and update.changed is None and update.copies == {}
    session.labels[4, 9, 9] = 7  # painted before the save reached that chunk
    box = (slice(4, 5), slice(9, 10), slice(9, 10))
    session.record_edit({4}, current=4, chunks=session.chunk_grid.of_box(box))
    update.save()
    session.saved(tmp_path)
    assert session.dirty
    nxt = session.update()
    assert nxt is not None and nxt.changed == {13} and set(nxt.copies) == {13}
    nxt.save()
    np.testing.assert_array_equal(_load(tmp_path)[0], session.labels)

    session.copy_max_bytes = 0  # too much to copy: the save reads the changed chunks
    session.labels[0, 0, 0] = 9
    session.record_edit({0}, current=0, chunks={0})
    big = session.update()
    assert big is not None and big.copies == {} and big.changed == {0}
    big.save()
    assert session.sidecar is not None and session.sidecar.last_written == (0,)
    np.testing.assert_array_equal(_load(tmp_path)[0], session.labels)


def test_a_failed_save_keeps_the_last_and_the_next_writes_everything(tmp_path, monkeypatch):
    session = _session(tmp_path)
    session.labels_changed()
    session.save()
    good = session.labels.copy()
    real = os.replace

    def crash_on_json(src, dst):
        if str(dst).endswith(STATE_FILE):
            raise OSError("disk full (simulated)")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_json)
    session.labels[2, 2, 2] = 0
    session.record_edit({2}, current=2, chunks={0})
    with pytest.raises(OSError, match="simulated"):
        session.save()
    monkeypatch.setattr(os, "replace", real)
    np.testing.assert_array_equal(_load(tmp_path)[0], good)  # the last complete save
    session.labels[2, 2, 2] = 1  # back as it was: the failed save's chunk is named by none
    session.record_edit({2}, current=2, chunks={0})
    session.save()
    assert session.sidecar is not None and session.sidecar.last_written == tuple(range(27))
    np.testing.assert_array_equal(_load(tmp_path)[0], session.labels)
    assert _files(session) == set(_names(session))  # the failed save's chunk is gone
    assert _load(tmp_path)[1].reviewed == {2}


def test_a_damaged_chunk_is_detected(tmp_path):
    session = _session(tmp_path)
    session.labels_changed()
    session.save()
    assert session.sidecar is not None
    path = chunk_path(session.sidecar.folder / CHUNK_DIR, _names(session)[26])
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(InputError, match="damaged"):
        _load(tmp_path)
    path.unlink()
    with pytest.raises(InputError, match="damaged"):
        _load(tmp_path)


def test_what_killed_saves_left_is_swept_by_the_next_process(tmp_path):
    session = _session(tmp_path)
    session.labels_changed()
    session.save()
    assert session.sidecar is not None
    root = session.sidecar.folder / CHUNK_DIR
    orphan = root / "ff" / ("ff" * 16 + ".zst")  # written by a save killed before its record
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"x")
    again = _session(tmp_path)
    again.labels_changed()
    again.save()
    assert not orphan.exists() and _files(again) == set(_names(again))


# --------------------------------------------------------------------------- killed mid-save

_CHILD = textwrap.dedent(
    """
    import sys, numpy as np
    from napari_microfossil.review import ReviewSession

    scan, cache = sys.argv[1], sys.argv[2]
    labels = np.zeros((32, 96, 96), dtype=np.uint8)
    session = ReviewSession(labels, scan_path=scan, cache_dir=cache, chunks=(8, 16, 16))
    k = 0
    while True:  # edit a few chunks, save, report; the parent kills us at some point
        k += 1
        z = k % 32
        labels[z] = k % 200 + 1
        box = (slice(z, z + 1), slice(None), slice(None))
        session.record_edit({z}, current=z, chunks=session.chunk_grid.of_box(box))
        session.save(extra={"k": k})
        print(k, flush=True)
    """
)


def _expected(k: int) -> np.ndarray:
    labels = np.zeros((32, 96, 96), np.uint8)
    for j in range(1, k + 1):
        labels[j % 32] = j % 200 + 1
    return labels


def test_kill_during_chunked_saves_restores_the_last_complete_save(tmp_path):
    """A real SIGKILL at random points of a save loop: what loads is always a whole save."""
    scan, cache = tmp_path / "scan.tif", tmp_path / "cache"
    for attempt, delay in enumerate((0.05, 0.17)):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(scan), str(cache)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        try:
            first = proc.stdout.readline()
            assert first.strip(), "the child saved nothing"
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        done = [int(line) for line in [first, *proc.stdout.read().split()] if line.strip()]
        proc.stdout.close()
        labels, _, meta = Sidecar(scan, cache_dir=cache).load()
        k = meta["extra"]["k"]
        assert k in (done[-1], done[-1] + 1), (attempt, k, done[-3:])
        np.testing.assert_array_equal(labels, _expected(k))
