"""The record of an autosave (``review.json``): writing, reading, checking, summarising it.

Two layouts of the labels are read: version 1 names one labels TIFF
(``labels_file``, with the SHA-256 of the whole volume); version 2 names one chunk file
per chunk (``labels.names``, see :mod:`.chunks`), so that a save writes only the
chunks an edit touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from .chunks import CHUNK_DIR, CODEC, HASH

STATE_FILE = "review.json"
#: The whole-volume TIFF layout, the chunked one, and labels kept in a zarr store
#: (:mod:`.labels_store`: the record lists the chunks its save writes into the store).
TIFF_VERSION, CHUNKED_VERSION, STORE_VERSION = 1, 2, 3


def read_record(folder: Path) -> dict[str, Any] | None:
    """The record in `folder` if it is complete and its labels are there; else None.

    Cheap: the labels are not read (for the chunked layout, the chunk folder must be
    there and name one file per chunk; the files are checked when loaded).
    """
    try:
        with open(folder / STATE_FILE, encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict):
        return None
    if rec.get("version") == TIFF_VERSION:
        name = rec.get("labels_file")
        ok = isinstance(name, str) and (folder / name).is_file()
        return rec if ok else None
    lab = rec.get("labels")
    if rec.get("version") == STORE_VERSION:
        if not isinstance(lab, dict) or not isinstance(lab.get("pending"), dict):
            return None
        return rec if Path(str(lab.get("store"))).is_dir() else None
    if rec.get("version") != CHUNKED_VERSION:
        return None
    if not isinstance(lab, dict) or lab.get("codec") != CODEC or lab.get("hash") != HASH:
        return None
    try:
        pairs = zip(rec["shape"], lab["chunks"], strict=True)
        grid = [math.ceil(int(n) / int(c)) for n, c in pairs]
        fits = len(grid) == 3 and len(lab["names"]) == math.prod(grid)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return rec if fits and (folder / CHUNK_DIR).is_dir() else None


@dataclass(frozen=True)
class SavedReview:
    """What the last autosave holds, from its ``review.json`` (the labels are not read).

    Parameters
    ----------
    folder : Path
        The sidecar folder holding it.
    saved_at : datetime or None
        When it was saved (UTC).
    layer : str or None
        The name of the Labels layer it saved (``extra["layer"]``); None if unrecorded.
    shape : tuple of int
        Shape (Z, Y, X) of the saved labels.
    axis : str
        The review axis; ``reviewed`` and ``edited`` count its slices (of ``n_slices``).
    reviewed, edited, n_slices : int
    store : str or None
        The zarr store holding the labels, for a save of labels kept in one.
    """

    folder: Path
    saved_at: datetime | None
    layer: str | None
    shape: tuple[int, ...]
    axis: str = "z"
    reviewed: int = 0
    edited: int = 0
    n_slices: int = 0
    store: str | None = None

    def mismatch(
        self, layer: str | None, shape: Sequence[int], *, store: str | None = None
    ) -> str | None:
        """Why this save is not the review of `layer` with labels of `shape` (kept in the
        zarr `store`, or in memory for None); None if it is.

        A save of another layer never matches; one with no layer name recorded matches
        on its shape alone (the caller should then ask, defaulting to No).
        """
        if self.layer is not None and layer is not None and self.layer != layer:
            return f"it is of layer '{self.layer}', not '{layer}'"
        if tuple(int(n) for n in shape) != self.shape:
            return f"its labels have shape {self.shape}, these {tuple(shape)}"
        if self.store is not None and store is not None:
            if Path(self.store).absolute() != Path(store).absolute():
                return f"its labels are in {self.store}, these in {store}"
        return None

    def describe(self) -> str:
        """One line: which layer, when, how much was reviewed and edited."""
        when = self.saved_at
        stamp = when.astimezone().strftime("%Y-%m-%d %H:%M") if when else "at an unknown time"
        who = f"layer '{self.layer}'" if self.layer else "an unnamed layer"
        return (
            f"{who}, saved {stamp}: {self.reviewed} of {self.n_slices} {self.axis}-slices "
            f"reviewed, {self.edited} edited"
        )


def labels_digest(labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{labels.dtype.str}{labels.shape}".encode())
    h.update(np.ascontiguousarray(labels).view(np.uint8).data)
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    # A crash of napari keeps what the OS has buffered; this also survives power loss.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def writable_dir(folder: Path) -> bool:
    """Whether files can be created in `folder` (created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def write_record(folder: Path, record: dict[str, Any]) -> Path:
    """Replace ``review.json`` in one rename, flushed to disk first."""
    target = folder / STATE_FILE
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    return target


def write_readme(folder: Path, scan: Path | None) -> None:
    text = (
        "Autosaved corrections of napari-microfossil's Review & correct widget"
        + (f" for {scan}" if scan else "")
        + ".\nreview.json names the current labels: the files in chunks/ (one per chunk of "
        "the volume, named by the hash of its content, zstd-compressed) or a labels-*.tif "
        "file. Reopen the scan in napari to restore them, or read them with "
        "napari_microfossil.review.Sidecar(<scan path>).load().\n"
    )
    with contextlib.suppress(OSError):
        (folder / "README.txt").write_text(text, encoding="utf-8")
