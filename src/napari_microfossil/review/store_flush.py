"""Saving the edits of store-backed labels without a review: on close, on exit.

The review's autosave saves a :class:`~.labels_store.StoreLabels` through its sidecar,
used as a journal (:func:`~.labels_store.save_into_store`). Labels painted without the
Review panel have no sidecar; :func:`save_store_edits` saves them through the same
journal in a folder of their own in the user's cache
(``~/.cache/napari-microfossil/journals/<hash>-<store name>``), so a kill at any moment
leaves the store with either the last complete save or this one
(:func:`~.labels_store.recover`, run whenever the store is opened for editing,
finishes a save that stopped after its commit). The journal is removed once the save
is in the store.

:func:`save_at_exit` makes the interpreter's exit save what is unsaved (for labels no
review follows), so closing napari does not lose the strokes of the last seconds.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import shutil
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..atomic import atomic_path
from ..cache import cache_root
from ..io.zarr_store import JOURNAL_MARKER
from .record import STATE_FILE, STORE_VERSION, fsync_path

if TYPE_CHECKING:
    from .autosave import ChunkUpdate
    from .labels_store import StoreLabels

log = logging.getLogger(__name__)

__all__ = ["journal_folder", "save_at_exit", "save_store_edits"]


def journal_folder(labels: StoreLabels) -> Path:
    """Where :func:`save_store_edits` keeps its journal for the store of `labels`."""
    p = labels.path.absolute()
    digest = hashlib.sha256(str(p).encode()).hexdigest()[:16]
    return cache_root() / "journals" / f"{digest}-{p.name}"


@dataclass
class _Edits:  # what save_into_store reads of a ChunkUpdate
    labels: Any
    copies: dict[int, np.ndarray] = field(default_factory=dict)
    gens: dict[int, int] = field(default_factory=dict)


def _write_record(folder: Path, record: dict[str, Any]) -> Path:
    target = folder / STATE_FILE
    with atomic_path(target, overwrite=True) as tmp:
        tmp.write_text(json.dumps(record))
        fsync_path(tmp)
    return target


def save_store_edits(labels: StoreLabels, *, folder: Path | None = None) -> int:
    """Write the unsaved edits of `labels` into its store, crash-safe, with no review.

    Takes the edits on the calling thread (the one that paints). When a review follows
    the labels (their ``flush_hook`` is set), its autosave is the one to save (its
    record lists the slices edited); this function is for labels no review follows.

    Parameters
    ----------
    labels : StoreLabels
    folder : Path, optional
        The journal's folder; :func:`journal_folder` by default. Removed afterwards.

    Returns
    -------
    int
        Chunks written (0: nothing was unsaved).
    """
    from .labels_store import save_into_store

    copies, gens = labels.unsaved()
    if not copies:
        return 0
    folder = journal_folder(labels) if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    edits = cast("ChunkUpdate", _Edits(labels, copies, gens))
    save_into_store(
        folder, edits, {"version": STORE_VERSION, "journal": "no review"}, _write_record
    )
    shutil.rmtree(folder, ignore_errors=True)  # the store holds the save now
    log.info("%s: saved %d edited chunks (no review)", labels.path, len(copies))
    return len(copies)


def save_at_exit(labels: StoreLabels) -> None:
    """Save the unsaved edits of `labels` when the interpreter exits (unless a review
    follows them then, or they are gone). Holds no reference to `labels`.

    Registered with ``threading._register_atexit`` where Python has it (3.9+): those
    hooks run before the interpreter stops thread pools, which zarr's writes use (a
    plain ``atexit`` hook runs after). Should zarr still refuse to write, the save is
    committed in the journal and the next opening of the store for editing
    (:func:`~.labels_store.recover`) puts it into the store.
    """
    import threading

    register = getattr(threading, "_register_atexit", None)
    try:
        if register is None:
            raise RuntimeError("no threading._register_atexit")
        register(_save_if_alive, weakref.ref(labels))
    except RuntimeError:  # already shutting down, or another Python
        atexit.register(_save_if_alive, weakref.ref(labels))


def _save_if_alive(ref: weakref.ref[StoreLabels]) -> None:
    labels = ref()
    if labels is None or not labels.dirty or labels.flush_hook is not None:
        return
    try:
        save_store_edits(labels)
    except Exception as exc:  # exiting: a log line is all that is left to do
        if (labels.path / JOURNAL_MARKER).exists():
            # Committed (journal, marker, record), but zarr could not write any more
            # (the interpreter stops its thread pools first): opening the store for
            # editing next time finishes the save (recover).
            log.warning(
                "%s: edits saved in the journal at exit; they go into the store when it "
                "is next opened for editing (%s)",
                labels.path,
                exc,
            )
        else:
            log.error("%s: edits not saved at exit (%s)", labels.path, exc)
