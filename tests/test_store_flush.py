"""Saving store-backed labels that no review follows: through a journal of their own,
crash-safe (a kill at each step), and at the interpreter's exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from napari_microfossil.review.labels_store import JOURNAL_MARKER, open_store_labels, recover
from napari_microfossil.review.store_flush import journal_folder, save_store_edits
from test_labels_store import SHAPE, make_store, on_disk


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_save_writes_the_edited_chunks_and_drops_its_journal(tmp_path):
    store = tmp_path / "l.zarr"
    ref = make_store(store)
    lab = open_store_labels(store)
    lab[0, 0, 0] = 9
    lab[9, 11, 13] = 8
    ref[0, 0, 0], ref[9, 11, 13] = 9, 8
    assert save_store_edits(lab) == 2  # two chunks, not the volume
    assert not lab.dirty and not lab._overlay
    np.testing.assert_array_equal(on_disk(store), ref)
    assert not journal_folder(lab).exists() and not (store / JOURNAL_MARKER).exists()
    assert save_store_edits(lab) == 0


_KILLER = textwrap.dedent(
    """
    import os, sys
    from napari_microfossil.review import labels_store, store_flush
    from napari_microfossil.review.labels_store import open_store_labels
    store, step = sys.argv[1:]
    def die(*a, **k):
        os._exit(9)
    lab = open_store_labels(store)
    lab[0:10, 0:12, 0:14] = 5  # every chunk
    if step == "commit":
        store_flush._write_record = die  # journal and marker written, no record
    elif step == "apply":
        orig = labels_store.StoreLabels.write_to_store
        def half(self, chunks):
            orig(self, dict(list(sorted(chunks.items()))[: len(chunks) // 2]))
            os._exit(9)
        labels_store.StoreLabels.write_to_store = half
    store_flush.save_store_edits(lab)
    os._exit(0)
    """
)


@pytest.mark.parametrize(("step", "expect_new"), [("commit", False), ("apply", True)])
def test_a_kill_leaves_the_old_labels_or_the_new(tmp_path, step, expect_new):
    store = tmp_path / "l.zarr"
    ref = make_store(store)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-c", _KILLER, str(store), step], env=env, timeout=120)
    assert run.returncode == 9
    assert (store / JOURNAL_MARKER).exists()
    reopened = open_store_labels(store)  # finishes (or drops) the interrupted save
    assert not (store / JOURNAL_MARKER).exists()
    want = np.full(SHAPE, 5, np.uint8) if expect_new else ref
    np.testing.assert_array_equal(on_disk(store), want)
    np.testing.assert_array_equal(np.asarray(reopened), want)
    assert recover(store) == 0


_PAINTER = textwrap.dedent(
    """
    import sys
    from napari_microfossil.review.labels_store import open_store_labels
    store, follow = sys.argv[1:]
    lab = open_store_labels(store)
    lab[3, 4, 5] = 7
    if follow == "review":
        lab.flush_hook = lambda: None  # a review follows: its autosave saves, not the exit
    """
)


@pytest.mark.parametrize("follow", ["none", "review"])
def test_exit_saves_what_no_review_saves(tmp_path, follow):
    store = tmp_path / "l.zarr"
    ref = make_store(store)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-c", _PAINTER, str(store), follow], env=env, timeout=120)
    assert run.returncode == 0
    # in the store, or committed in the journal for the next opening (zarr may refuse
    # to write during the interpreter's exit)
    reopened = open_store_labels(store)
    assert reopened[3, 4, 5] == (7 if follow == "none" else ref[3, 4, 5])
    assert on_disk(store)[3, 4, 5] == reopened[3, 4, 5]
