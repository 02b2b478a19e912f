"""Review and correct a segmentation: which slices were checked, where to look next, autosave.

The user paints with napari's own Labels tools; this module holds what those tools lack,
as plain functions and classes on arrays (the napari widget only wires them to layers):

- :class:`ReviewState` records the slices, along one axis, the user has reviewed or
  edited; :meth:`ReviewState.reviewed_slices` is the mapping that fine-tuning takes.
- :func:`next_slice_to_review` picks the unreviewed slice where the model was least
  confident (:func:`slice_confidence`), so the user's minutes go where they matter.
- :func:`slices_touched` and :func:`changed_slices` say which slices an edit touched.
- :func:`erase_object` zeroes one 3D connected component; :class:`UndoStack` undoes it,
  keeping only the changed bounding-box crops, within a memory budget.
- :class:`ReviewSession` ties these together for one volume under review (state,
  edits, undo, the autosave schedule, change events), with no display.
- :class:`Sidecar` autosaves labels and review state beside the scan
  (``<scan>.microfossil/``) so that a crash loses nothing that was saved: an autosave
  writes only the chunk files of the chunks an edit touched (:class:`ChunkGrid`,
  :class:`ChunkUpdate`), under new names, then replaces ``review.json`` (which names
  every chunk's file by its hash) in one atomic rename; a save torn by a crash is
  never read back.
- :class:`StoreLabels` keeps labels in their zarr store (``segment -o labels.zarr``):
  edits go to an overlay of whole chunks, and the autosave writes them into the store
  through the sidecar as a journal, so a kill at any moment leaves the last complete
  save (:func:`open_store_labels` finishes an interrupted one).
"""

from .autosave import AutosaveSchedule, ChunkUpdate, Snapshot, sidecar_for
from .chunks import ChunkGrid
from .edits import (
    Edit,
    UndoStack,
    changed_slices,
    edit_slices,
    erase_object,
    first_labelled_on_ray,
    slices_touched,
)
from .labels_store import StoreLabels, open_store_labels
from .session import Change, ReviewSession
from .sidecar import SIDECAR_SUFFIX, STATE_FILE, SavedReview, Sidecar
from .state import Marks, ReviewState
from .suggest import next_slice_to_review, slice_confidence, suggest_slices

__all__ = [
    "SIDECAR_SUFFIX",
    "STATE_FILE",
    "AutosaveSchedule",
    "Change",
    "ChunkGrid",
    "ChunkUpdate",
    "Edit",
    "Marks",
    "ReviewSession",
    "ReviewState",
    "SavedReview",
    "Sidecar",
    "Snapshot",
    "StoreLabels",
    "UndoStack",
    "changed_slices",
    "edit_slices",
    "erase_object",
    "first_labelled_on_ray",
    "next_slice_to_review",
    "open_store_labels",
    "sidecar_for",
    "slice_confidence",
    "slices_touched",
    "suggest_slices",
]
