"""ReviewSession, headless: edits, undo, marks, the autosave schedule, events, restore."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_microfossil.errors import InputError
from napari_microfossil.review import ReviewSession, ReviewState, Sidecar, sidecar_for

SHAPE = (8, 24, 24)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:5, 4:9, 4:9] = 1  # an object across z = 2..4
    labels[2:5, 15:20, 15:20] = 1  # same class, not connected
    return labels


def _session(tmp_path, labels=None, **kwargs):
    clock = Clock()
    session = ReviewSession(
        _labels() if labels is None else labels,
        scan_path=tmp_path / "scan.tif",
        cache_dir=tmp_path / "cache",
        clock=clock,
        **kwargs,
    )
    seen: list[str] = []
    session.subscribe(seen.append)
    return session, clock, seen


def _atom(z, y, x):
    """A napari paint atom of the ``(indices, old_values, new_value)`` form."""
    return ((np.array(z), np.array(y), np.array(x)), np.zeros(len(z)), 1)


def test_paint_marks_only_the_slice_seen(tmp_path):
    session, _, seen = _session(tmp_path)
    session.record_paint([_atom([3, 3], [1, 2], [1, 1])], current=0)
    assert session.state.edited == {3}  # a 2D stroke: its slice, wherever the user is
    session.record_paint([_atom([5, 6, 7], [1, 1, 1], [1, 1, 1])], current=6)
    assert session.state.edited == {3, 6}  # a 3D stroke: only the slice shown
    session.record_paint([_atom([0, 1], [1, 1], [1, 1])], current=6)
    assert session.state.edited == {3, 6}  # ...and nothing when it is not among them
    session.record_paint([object()], current=4)  # an atom of unknown form: the slice shown
    assert session.state.edited == {3, 4, 6} and session.state.reviewed == {3, 4, 6}
    assert seen == ["edited"] * 4 and session.dirty


def test_erase_and_undo_restore_labels_and_marks_exactly(tmp_path):
    labels = _labels()
    before = labels.copy()
    session, _, seen = _session(tmp_path, labels=labels)
    session.mark_reviewed(2)
    edit = session.erase((3, 6, 6), current=3)
    assert edit is not None and session.labels is labels
    assert not labels[2:5, 4:9, 4:9].any() and labels[2:5, 15:20, 15:20].all()
    assert (session.state.reviewed, session.state.edited) == ({2, 3}, {3})  # not 4: unseen
    assert session.erase((0, 0, 0), current=0) is None  # background: nothing
    assert len(session.undo_stack) == 1

    assert session.undo() is not None
    np.testing.assert_array_equal(labels, before)
    assert (session.state.reviewed, session.state.edited) == ({2}, set())
    assert session.undo() is None
    assert seen == ["marked", "edited", "undone"]


def test_undo_keeps_a_slice_a_later_stroke_changed(tmp_path):
    session, _, _ = _session(tmp_path)
    session.erase((3, 6, 6), current=3)
    session.record_paint([_atom([3], [20], [3])], current=3)
    session.undo()
    assert session.state.edited == {3}  # the stroke still stands on z = 3


def test_erase_needs_labels_in_memory(tmp_path):
    class Lazy:
        shape = SHAPE

    session = ReviewSession(Lazy(), name="lazy", cache_dir=tmp_path)
    assert not session.in_memory
    with pytest.raises(ValueError, match="in memory"):
        session.erase((3, 6, 6), current=3)
    assert session.undo() is None


def test_mark_and_unmark(tmp_path):
    session, _, seen = _session(tmp_path)
    assert session.mark_reviewed(1) and not session.mark_reviewed(1)
    session.record_paint([_atom([4], [1], [1])], current=4)
    assert not session.unmark(4)  # painted in: stays reviewed
    assert not session.unmark(6)  # never reviewed
    assert session.unmark(1)
    assert session.state.reviewed == {4}
    assert seen == ["marked", "edited", "marked"]  # refusals change nothing, say nothing


def test_switch_axis_keeps_marks_and_is_no_edit(tmp_path):
    session, _, seen = _session(tmp_path)
    session.mark_reviewed(2)
    session.save()
    session.switch_axis("y")
    session.switch_axis("y")
    assert session.state.axis == "y" and session.state.n_slices == 24
    session.mark_reviewed(20)
    assert session.state.reviewed_slices() == {"z": [2], "y": [20]}
    assert seen == ["marked", "saved", "axis", "marked"]


def test_next_slice_follows_confidence_and_caches_it(tmp_path, monkeypatch):
    from napari_microfossil.review import session as module

    session, _, _ = _session(tmp_path)
    conf = np.full(SHAPE, 90, np.uint8)
    conf[5], conf[2] = 30, 40
    calls = []
    real = module.slice_confidence
    monkeypatch.setattr(module, "slice_confidence", lambda c, a: calls.append(a) or real(c, a))
    assert session.next_slice(conf, current=0) == 5
    session.mark_reviewed(5)
    assert session.next_slice(conf, current=0) == 2
    assert calls == ["z"]  # computed once for the axis
    assert session.next_slice(None, current=6) == 6  # no confidence: the nearest
    with pytest.raises(ValueError, match="confidence: expected shape"):
        session.next_slice(conf[:4])
    for i in range(SHAPE[0]):
        session.mark_reviewed(i)
    assert session.next_slice(conf) is None


def test_autosave_is_due_after_a_quiet_delay(tmp_path):
    session, clock, seen = _session(tmp_path, autosave_delay_s=3.0)
    assert not session.save_due()  # nothing changed
    session.mark_reviewed(1)
    clock.t += 2.0
    session.mark_reviewed(2)  # a change restarts the wait
    clock.t += 2.9
    assert not session.save_due()
    assert session.save_due(clock.t + 0.1)  # `now` may be given
    clock.t += 0.1
    assert session.save_due()

    snap = session.snapshot(extra={"layer": "labels"})
    assert snap is not None and session.saving and not session.dirty
    assert session.snapshot() is None  # one save at a time
    session.mark_reviewed(3)  # an edit while saving...
    clock.t += 10
    assert not session.save_due()  # ...waits for the save to end
    path = snap.save()
    assert not session.saving and session.save_due()
    session.saved(path)
    assert seen[-1] == "saved"
    _, state, meta = Sidecar(tmp_path / "scan.tif", cache_dir=tmp_path / "cache").load()
    assert state.reviewed == {1, 2} and meta["extra"] == {"layer": "labels"}


def test_a_failed_save_waits_for_the_next_change(tmp_path):
    session, clock, _ = _session(tmp_path, autosave_delay_s=1.0)
    session.mark_reviewed(1)
    clock.t += 5
    snap = session.snapshot()
    assert snap is not None
    session.save_failed(OSError("disk full"))
    assert session.dirty and not session.saving
    assert isinstance(session.save_error, OSError)
    clock.t += 5
    assert not session.save_due()  # not retried in a loop
    session.mark_reviewed(2)
    clock.t += 1
    assert session.save_due()
    assert session.save() is not None and session.save_error is None  # save() still tries
    assert session.save() is None  # nothing left to save


def test_snapshot_is_a_copy_taken_before_the_save(tmp_path):
    labels = _labels().astype(np.int16)
    session, _, _ = _session(tmp_path, labels=labels)
    session.mark_reviewed(0)
    snap = session.snapshot(spacing=(2.0, 0.5, 0.5), class_names=["bg", "fossil"])
    assert snap is not None
    labels[:] = 7
    session.mark_reviewed(1)  # the session goes on while the snapshot is written
    assert snap.labels.dtype == np.uint16 and snap.labels.max() == 1
    assert snap.state.reviewed == {0}

    done = []
    thread = threading.Thread(target=lambda: done.append(snap.save()))
    thread.start()
    assert session.wait_for_save(30)
    thread.join()
    loaded, state, meta = snap.sidecar.load()
    assert loaded.max() == 1 and state.reviewed == {0}
    assert meta["spacing"] == [2.0, 0.5, 0.5] and meta["class_names"] == ["bg", "fossil"]


def test_without_scan_or_name_nothing_is_saved(tmp_path):
    session = ReviewSession(_labels(), clock=Clock())
    session.mark_reviewed(1)
    assert session.sidecar is None and not session.restorable
    assert not session.save_due(1e9) and session.snapshot() is None and session.save() is None


def test_restore_round_trip(tmp_path):
    first, _, _ = _session(tmp_path)
    first.erase((3, 6, 6), current=3)
    first.switch_axis("y")
    first.mark_reviewed(10)
    assert first.save() is not None

    second, _, seen = _session(tmp_path)
    assert second.restorable
    labels = second.restore()
    np.testing.assert_array_equal(labels, first.labels)
    assert second.labels is labels and labels.dtype == np.uint8
    assert second.state == first.state and second.state.shape == SHAPE
    assert seen == ["restored"] and not second.dirty and not second.save_due(1e9)

    other = ReviewSession(
        np.zeros((4, 24, 24), np.uint8),
        scan_path=tmp_path / "scan.tif",
        cache_dir=tmp_path / "cache",
    )
    with pytest.raises(InputError, match="not restored"):
        other.restore()
    kept = other.decline_restore()
    assert kept is not None and (kept / "review.json").is_file()
    assert not second.restorable  # declined: kept aside, never offered again


def test_follow_scan_moves_the_autosave(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    session, _, _ = _session(tmp_path)
    assert not session.follow_scan(None)
    assert not session.follow_scan("scan.tif")  # the same scan, relative
    assert session.follow_scan(tmp_path / "other.tif")
    assert session.sidecar is not None and session.sidecar.scan_path == tmp_path / "other.tif"
    assert sidecar_for(None, name="x", cache_dir=tmp_path).scan_path is None


def test_new_labels_and_reset(tmp_path):
    session, _, seen = _session(tmp_path)
    session.switch_axis("y")
    session.erase((3, 6, 6), current=6)
    session.save()
    session.replace_labels(np.zeros(SHAPE, np.uint8))  # same shape: an edit of the labels
    assert session.state.edited == {6} and session.dirty and len(session.undo_stack) == 1
    session.replace_labels(np.zeros((4, 24, 24), np.uint8))  # another shape: a fresh record
    assert session.state.axis == "y" and not session.state.reviewed
    assert session.state.shape == (4, 24, 24) and len(session.undo_stack) == 0
    assert seen[-2:] == ["labels", "reset"]

    kept = session.reset()  # the record was dropped: the old autosave is kept aside
    assert kept is not None and (kept / "review.json").is_file()
    assert not session.restorable and seen[-1] == "reset"

    state = ReviewState(n_slices=4, reviewed={1})
    session.adopt(state)
    assert session.state is state and state.shape == (4, 24, 24)


def test_unsubscribe_and_bad_arguments(tmp_path):
    session, _, seen = _session(tmp_path)
    calls = []
    stop = session.subscribe(calls.append)
    session.mark_reviewed(1)
    stop()
    stop()  # twice is harmless
    session.mark_reviewed(2)
    assert calls == ["marked"] and seen == ["marked", "marked"]
    with pytest.raises(ValueError, match="labels: expected a"):
        ReviewSession(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="autosave_delay_s"):
        ReviewSession(_labels(), autosave_delay_s=-1)


def test_take_up_adopts_or_starts_afresh(tmp_path):
    session, _, seen = _session(tmp_path)
    own = session.state
    session.take_up(own)  # its own record: nothing happens
    assert session.state is own and seen == []
    other = ReviewState(n_slices=SHAPE[0], reviewed={2})
    session.take_up(other)
    assert session.state is other and seen == ["reset"]
    session.take_up(None, scan_path=tmp_path / "new.tif")  # dropped: a fresh record
    assert session.state is not other and not session.state.reviewed
    assert session.sidecar is not None and session.sidecar.scan_path == tmp_path / "new.tif"
    assert seen == ["reset", "reset"]
