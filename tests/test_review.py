"""Review engine: review state, next slice, erase + undo, sidecar autosave (and a real kill)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any, NamedTuple

import cc3d
import numpy as np
import pytest

from napari_microfossil import review
from napari_microfossil.errors import InputError
from napari_microfossil.io import write_tiff
from napari_microfossil.review import (
    ReviewState,
    Sidecar,
    UndoStack,
    changed_slices,
    edit_slices,
    erase_object,
    first_labelled_on_ray,
    next_slice_to_review,
    slice_confidence,
    slices_touched,
)

# --------------------------------------------------------------------------- ReviewState


def test_state_marks_and_summary():
    s = ReviewState(n_slices=8)
    assert s.summary() == "0 of 8 slices reviewed"
    s.mark_reviewed(2)
    s.mark_edited(5)
    assert s.reviewed == {2, 5}
    assert s.edited == {5}
    assert s.summary() == "2 of 8 slices reviewed"
    s.unmark(5)
    assert s.reviewed == {2} and s.edited == set()
    assert s.reviewed_slices() == {"z": [2]}
    with pytest.raises(ValueError, match=r"0\.\.7"):
        s.mark_reviewed(8)
    with pytest.raises(TypeError, match="int"):
        s.mark_edited(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="axis"):
        ReviewState(n_slices=3, axis="q")


def test_state_round_trip_and_switch_axis():
    s = ReviewState.for_volume((8, 16, 32), axis="z")
    s.mark_edited(1)
    s.mark_reviewed(7)
    s.switch_axis("x")
    assert s.n_slices == 32 and s.reviewed == set()
    s.mark_edited(30)
    assert s.reviewed_slices() == {"z": [1, 7], "x": [30]}
    back = ReviewState.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s
    back.switch_axis("z")
    assert back.reviewed == {1, 7} and back.edited == {1}
    assert back.reviewed_slices() == {"z": [1, 7], "x": [30]}
    with pytest.raises(ValueError, match="shape"):
        ReviewState(n_slices=4).switch_axis("y")
    with pytest.raises(ValueError, match="review state"):
        ReviewState.from_dict({"axis": "z"})


def test_mark_edit_counts_only_the_slice_seen_and_undoes_exactly():
    s = ReviewState.for_volume((8, 4, 4))
    s.mark_reviewed(2)
    # one slice: that slice, wherever the view is
    assert s.mark_edit({5}, current=0) == review.Marks("z", frozenset({5}), frozenset({5}))
    # a 3D edit across z = 1..4 seen on z = 2: only z = 2 (already reviewed: now edited)
    marks = s.mark_edit(range(1, 5), current=2)
    assert marks == review.Marks("z", frozenset(), frozenset({2}))
    assert (s.reviewed, s.edited) == ({2, 5}, {2, 5})
    assert s.mark_edit({0, 1}, current=6) == review.Marks("z", frozenset(), frozenset())
    assert s.edited == {2, 5}  # not seen: nothing
    unknown = s.mark_edit(None, current=3)
    assert unknown.edited == {3}  # unknown extent: the slice shown
    s.undo_marks(marks)
    assert (s.reviewed, s.edited) == ({2, 3, 5}, {3, 5})  # 2 was reviewed before: stays
    # undone after switching axis: the marks are taken from the axis they were made on
    s.switch_axis("y")
    s.undo_marks(unknown)
    s.switch_axis("z")
    assert (s.reviewed, s.edited) == ({2, 5}, {5})


def test_undo_marks_keeps_a_slice_a_later_edit_changed():
    s = ReviewState.for_volume((8, 4, 4))
    erase = s.mark_edit(range(2, 5), current=3)  # a 3D erase, seen on z = 3
    assert erase.edited == {3}
    painted = s.mark_edit({3}, current=3)  # then a stroke on z = 3: nothing new to mark...
    assert painted.edited == set()
    s.undo_marks(erase)  # ...but undoing the erase leaves the painted slice marked
    assert (s.reviewed, s.edited) == ({3}, {3})

    # two erases on one slice, both undone (last first): the slice is unmarked
    s = ReviewState.for_volume((8, 4, 4))
    first = s.mark_edit({1, 2}, current=1)
    second = s.mark_edit({0, 1}, current=1)
    s.undo_marks(second)
    assert s.edited == {1}  # the first erase still stands
    s.undo_marks(first)
    assert (s.reviewed, s.edited) == (set(), set())
    # a slice unmarked by hand and edited again is taken back with that edit
    s.mark_edit({4}, current=4)
    s.unmark(4)
    again = s.mark_edit({4}, current=4)
    s.undo_marks(again)
    assert (s.reviewed, s.edited) == (set(), set())


def test_reviewed_slices_feed_training():
    pytest.importorskip("torch")
    from napari_microfossil.training import slices_from_volume

    rng = np.random.default_rng(0)
    image = rng.integers(0, 1000, (8, 12, 16), dtype=np.uint16)
    labels = rng.integers(0, 3, (8, 12, 16), dtype=np.uint8)
    s = ReviewState.for_volume(image.shape)
    s.mark_edited(3)
    s.switch_axis("y")
    s.mark_reviewed(5)
    got = slices_from_volume(image, labels, s.reviewed_slices())
    assert got.sources == ["volume z=3", "volume y=5"]
    np.testing.assert_array_equal(got.labels[1], labels[:, 5, :])


# --------------------------------------------------------------------------- next slice


def _confidence(means: list[int], shape=(8, 6, 5)) -> np.ndarray:
    conf = np.empty(shape, dtype=np.uint8)
    conf[:] = np.array(means, dtype=np.uint8)[:, None, None]
    return conf


def test_slice_confidence_exact_along_each_axis(tmp_path):
    rng = np.random.default_rng(1)
    conf = rng.integers(0, 101, (6, 7, 8), dtype=np.uint8)
    for ax, others in (("z", (1, 2)), ("y", (0, 2)), ("x", (0, 1))):
        want = conf.astype(np.float64).mean(axis=others)
        np.testing.assert_allclose(slice_confidence(conf, ax), want, rtol=0, atol=1e-12)
    mm = np.lib.format.open_memmap(tmp_path / "c.npy", mode="w+", dtype=np.uint8, shape=conf.shape)
    mm[:] = conf
    np.testing.assert_allclose(slice_confidence(mm, "y"), conf.mean(axis=(0, 2)), atol=1e-12)
    with pytest.raises(ValueError, match="confidence"):
        slice_confidence(conf[0], "z")


def test_next_slice_is_least_confident_unreviewed():
    conf = _confidence([90, 40, 80, 20, 95, 20, 70, 60])
    s = ReviewState(n_slices=8)
    assert next_slice_to_review(s, conf) in (3, 5)
    assert next_slice_to_review(s, conf, current=6) == 5  # tie: nearest to current
    assert next_slice_to_review(s, conf, current=0) == 3
    s.mark_reviewed(3)
    s.mark_edited(5)
    assert next_slice_to_review(s, conf) == 1
    per = slice_confidence(conf, "z")
    assert next_slice_to_review(s, per) == 1  # cached per-slice values work too
    for i in range(8):
        s.mark_reviewed(i)
    assert next_slice_to_review(s, conf) is None
    with pytest.raises(ValueError, match="8 values"):
        next_slice_to_review(ReviewState(n_slices=8), np.zeros(5))


def test_next_slice_without_confidence():
    s = ReviewState(n_slices=9)
    assert next_slice_to_review(s, current=6) == 6
    picks = []
    for _ in range(3):
        i = next_slice_to_review(s)
        assert i is not None
        picks.append(i)
        s.mark_reviewed(i)
    assert picks[0] == 4  # the middle first, then spread to the ends
    assert sorted(picks[1:]) == [0, 8]
    s.mark_reviewed(5)
    assert next_slice_to_review(s, current=5) in (3, 6)


def test_next_slice_uses_state_axis():
    conf = np.full((4, 5, 6), 90, dtype=np.uint8)
    conf[:, :, 2] = 10
    s = ReviewState.for_volume(conf.shape, axis="x")
    assert next_slice_to_review(s, conf) == 2


# --------------------------------------------------------------------------- which slices changed


class _Atom(NamedTuple):  # the shape of napari 0.9's _MaskedPaintAtom
    slice_key: tuple[slice, ...]
    mask: Any
    old_values: np.ndarray
    new_value: int


def test_slices_touched_both_atom_forms():
    mask = np.zeros((3, 1, 4), dtype=bool)
    mask[0, 0, 1] = mask[2, 0, 3] = True
    masked = _Atom((slice(4, 7), slice(2, 3), slice(0, 4)), mask, np.zeros(2), 1)
    assert slices_touched([masked], "z") == {4, 6}
    assert slices_touched([masked], "y") == {2}
    whole = _Atom((slice(1, 3), slice(0, 5), slice(0, 5)), None, np.zeros(50), 1)
    assert slices_touched([whole], "z") == {1, 2}
    fancy = ((np.array([0, 0, 5]), np.array([1, 2, 3]), np.array([4, 4, 4])), np.zeros(3), 2)
    assert slices_touched([fancy, whole], "z") == {0, 1, 2, 5}
    assert slices_touched([fancy], "x") == {4}
    assert slices_touched([object()], "z") is None


def test_changed_slices():
    a = np.zeros((5, 4, 3), dtype=np.uint8)
    b = a.copy()
    b[1, 2, 0] = 1
    b[3, 0, 2] = 2
    assert changed_slices(a, b, "z") == [1, 3]
    assert changed_slices(a, b, "x") == [0, 2]
    with pytest.raises(ValueError, match="shape"):
        changed_slices(a, b[:4])


# --------------------------------------------------------------------------- erase + undo


def test_erase_object_matches_connected_components():
    rng = np.random.default_rng(2)
    labels = (rng.random((8, 32, 32)) < 0.35).astype(np.uint8) * rng.integers(1, 3, (8, 32, 32))
    labels = labels.astype(np.uint8)
    before = labels.copy()
    pt = tuple(int(i) for i in np.argwhere(labels == 1)[0])
    for conn in (6, 26):
        work = before.copy()
        edit = erase_object(work, pt, connectivity=conn)
        assert edit is not None
        comp = cc3d.connected_components(before == 1, connectivity=conn)
        want = before.copy()
        want[comp == comp[pt]] = 0
        np.testing.assert_array_equal(work, want)
        assert edit_slices(edit, "z") == changed_slices(before, work, "z")
        stack = UndoStack()
        stack.push(edit)
        assert stack.undo(work) is edit
        np.testing.assert_array_equal(work, before)
        assert stack.undo(work) is None


def test_erase_object_larger_than_first_search_box():
    labels = np.zeros((8, 8, 200), dtype=np.uint8)
    labels[2, 3, 5:190] = 1  # a rod much longer than the initial box
    labels[2, 4, 189] = 1  # turns a corner at the far end
    labels[6, 6, 50] = 1  # another object of the same class, not connected
    edit = erase_object(labels, (2.2, 3.4, 100.0))
    assert edit is not None
    assert labels.sum() == 1 and labels[6, 6, 50] == 1
    assert edit.bbox == (slice(2, 3), slice(3, 5), slice(5, 190))
    assert erase_object(labels, (0, 0, 0)) is None  # background: nothing to erase
    with pytest.raises(ValueError, match="inside"):
        erase_object(labels, (8, 0, 0))
    with pytest.raises(ValueError, match="connectivity"):
        erase_object(labels, (6, 6, 50), connectivity=5)


def test_first_labelled_on_ray_and_slice_status():
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[5, 3, 3] = 2
    hit = first_labelled_on_ray(labels, (-2.0, 3.0, 3.0), (10.0, 3.0, 3.0))
    assert hit is not None and round(hit[0]) == 5 and tuple(np.round(hit[1:])) == (3, 3)
    assert first_labelled_on_ray(labels, (10.0, 3.0, 3.0), (-2.0, 3.0, 3.0))[0] >= 4.5
    assert first_labelled_on_ray(labels, (0.0, 0.0, 0.0), (7.0, 7.0, 0.0)) is None
    state = ReviewState(n_slices=8, reviewed={1}, edited={2})
    assert [state.slice_status(i) for i in (1, 2, 3)] == ["reviewed", "edited", "not reviewed"]


def test_undo_keeps_later_edits_and_budget():
    labels = np.zeros((4, 10, 10), dtype=np.uint8)
    labels[1, 2:6, 2:6] = 2
    edit = erase_object(labels, (1, 3, 3))
    labels[1, 0, 0] = 1  # a later edit inside the bbox's slice, outside the object
    stack = UndoStack()
    stack.push(edit)
    stack.undo(labels)
    assert labels[1, 0, 0] == 1 and (labels[1, 2:6, 2:6] == 2).all()

    small = UndoStack(max_bytes=100, max_items=3)
    for k in range(5):
        lab = np.zeros((2, 4, 4), dtype=np.uint8)
        lab[0, k % 4, :] = 1
        small.push(erase_object(lab, (0, k % 4, 0)))
    assert len(small) == 3 and small.nbytes <= 100


# --------------------------------------------------------------------------- sidecar


def _volume(seed=0, shape=(8, 32, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3, shape, dtype=np.uint8)


def test_sidecar_round_trip_beside_scan(tmp_path):
    scan = tmp_path / "scan.tif"
    write_tiff(scan, np.zeros((8, 32, 32), dtype=np.uint16))
    labels = _volume()
    state = ReviewState.for_volume(labels.shape)
    state.mark_edited(3)
    car = Sidecar(scan, cache_dir=tmp_path / "cache")
    assert not car.exists() and car.saved_at is None
    assert car.folder == tmp_path / "scan.tif.microfossil"
    car.save(labels, state, spacing=(2.0, 1.0, 1.0), class_names=["background", "fossil", "pore"])
    assert car.exists() and car.saved_at is not None
    assert (tmp_path / "scan.tif.microfossil" / "review.json").is_file()
    assert len(list((tmp_path / "scan.tif.microfossil").glob("labels-*.tif"))) == 1

    got, st, meta = Sidecar(scan, cache_dir=tmp_path / "cache").load()
    np.testing.assert_array_equal(got, labels)
    assert got.dtype == labels.dtype
    assert st == state and st.reviewed_slices() == {"z": [3]}
    assert meta["spacing"] == [2.0, 1.0, 1.0]
    assert meta["class_names"] == ["background", "fossil", "pore"]

    labels[0] = 0  # a second save replaces the first and leaves one labels file
    car.save(labels, state)
    np.testing.assert_array_equal(car.load()[0], labels)
    assert len(list(car.folder.glob("labels-*.tif"))) == 1
    assert not (tmp_path / "cache").exists()


def test_sidecar_for_folder_of_slices_and_for_a_name(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    car = Sidecar(folder, cache_dir=tmp_path / "cache")
    car.save(_volume(), ReviewState(n_slices=8))
    assert (tmp_path / "slices.microfossil" / "review.json").is_file()
    assert not any(p.name.endswith(".microfossil") for p in folder.iterdir())

    named = Sidecar(name="labels layer", cache_dir=tmp_path / "cache")
    named.save(_volume(1), ReviewState(n_slices=8))
    assert named.folder.parent == tmp_path / "cache"
    np.testing.assert_array_equal(
        Sidecar(name="labels layer", cache_dir=tmp_path / "cache").load()[0], _volume(1)
    )
    with pytest.raises(ValueError, match="scan_path"):
        Sidecar()


def test_sidecar_falls_back_to_cache_when_scan_folder_is_not_writable(tmp_path, caplog):
    blocker = tmp_path / "readonly"
    blocker.write_text("a file where the sidecar's parent folder should be")
    scan = blocker / "scan.tif"  # no folder can be created here, even by root
    car = Sidecar(scan, cache_dir=tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="napari_microfossil.review"):
        car.save(_volume(), ReviewState(n_slices=8))
    assert car.folder.parent == tmp_path / "cache"
    assert any(str(car.folder) in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(Sidecar(scan, cache_dir=tmp_path / "cache").load()[0], _volume())


def test_failed_save_keeps_the_previous_one(tmp_path, monkeypatch):
    car = Sidecar(tmp_path / "scan.tif", cache_dir=tmp_path / "cache")
    good = _volume(0)
    car.save(good, ReviewState(n_slices=8, reviewed={1}))
    real = os.replace

    def crash_on_json(src, dst):
        if str(dst).endswith("review.json"):
            raise OSError("disk full (simulated)")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_json)
    with pytest.raises(OSError, match="simulated"):
        car.save(_volume(1), ReviewState(n_slices=8, reviewed={2}))
    monkeypatch.setattr(os, "replace", real)
    labels, state, _ = Sidecar(tmp_path / "scan.tif", cache_dir=tmp_path / "cache").load()
    np.testing.assert_array_equal(labels, good)
    assert state.reviewed == {1}


def test_damaged_labels_file_is_detected(tmp_path):
    car = Sidecar(tmp_path / "scan.tif", cache_dir=tmp_path / "cache")
    rec_path = car.save(_volume(), ReviewState(n_slices=8))
    rec = json.loads(rec_path.read_text())
    other = _volume(5)
    write_tiff(car.folder / rec["labels_file"], other, overwrite=True)
    with pytest.raises(InputError, match="damaged"):
        car.load()


def test_archive_keeps_declined_save(tmp_path):
    car = Sidecar(tmp_path / "scan.tif", cache_dir=tmp_path / "cache")
    car.save(_volume(), ReviewState(n_slices=8))
    dest = car.archive()
    assert dest is not None and (dest / "review.json").is_file()
    assert not car.exists()


def test_a_save_removes_what_killed_saves_left(tmp_path):
    car = Sidecar(tmp_path / "scan.tif", cache_dir=tmp_path / "cache")
    car.save(_volume(), ReviewState(n_slices=8))
    stale = car.folder / ".labels-20260101-000000-abcdef.1a2b3c4d.tmp.tif"  # a killed save's
    fresh = car.folder / ".labels-20260101-000001-abcdef.5e6f7a8b.tmp.tif"  # one going on
    for p in (stale, fresh):
        p.write_bytes(b"half")
    then = time.time() - 3600
    os.utime(stale, (then, then))
    car.save(_volume(), ReviewState(n_slices=8))
    assert not stale.exists() and fresh.exists()


# --------------------------------------------------------------------------- killed mid-save

_CHILD = textwrap.dedent(
    """
    import sys, numpy as np
    from napari_microfossil.review import ReviewState, Sidecar

    scan, cache = sys.argv[1], sys.argv[2]
    car = Sidecar(scan, cache_dir=cache)
    labels = np.zeros((48, 192, 192), dtype=np.uint8)
    state = ReviewState.for_volume(labels.shape)
    k = 0
    while True:  # edit, save, report; the parent kills us at some point
        k += 1
        labels[:] = k % 200 + 1
        labels[k % 48, ::3, ::5] = 0  # something per save that compresses differently
        state.mark_edited(k % 48)
        car.save(labels, state, extra={"k": k})
        print(k, flush=True)
    """
)


def _pattern(k: int) -> np.ndarray:
    labels = np.full((48, 192, 192), k % 200 + 1, dtype=np.uint8)
    labels[k % 48, ::3, ::5] = 0
    return labels


def test_kill_during_autosave_restores_last_complete_save(tmp_path):
    """A real SIGKILL at random points of a save loop: what loads is always a whole save."""
    scan = tmp_path / "scan.tif"
    cache = tmp_path / "cache"
    for attempt, delay in enumerate((0.05, 0.13, 0.31)):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(scan), str(cache)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        try:
            first = proc.stdout.readline()  # one save completed
            assert first.strip(), "the child saved nothing"
            time.sleep(delay)  # ...then kill it, most likely in the middle of another
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        done = [int(line) for line in [first, *proc.stdout.read().split()] if line.strip()]
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL

        labels, state, meta = Sidecar(scan, cache_dir=cache).load()
        k = meta["extra"]["k"]
        # The loaded save is complete and is the last one reported, or one that finished
        # after the last report and before the kill; never an older or a torn one.
        assert k in (done[-1], done[-1] + 1), (attempt, k, done[-3:])
        np.testing.assert_array_equal(labels, _pattern(k))
        assert (k % 48) in state.edited
        assert review.STATE_FILE in os.listdir(scan.with_name("scan.tif.microfossil"))
