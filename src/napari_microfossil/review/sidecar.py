"""Autosave of a review beside its scan (``<scan>.microfossil/``).

A crash loses nothing that was saved: every save writes new labels files (a whole-volume
TIFF, or only the changed chunk files, see :mod:`.chunks`), then replaces
``review.json`` (which names those files and holds their hashes) in one atomic rename;
a save torn by a crash is never read back.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..atomic import remove_stale
from ..cache import cache_root
from ..errors import InputError
from ..io import parse_spacing, read_labels, write_tiff
from .chunks import (
    CHUNK_DIR,
    CODEC,
    HASH,
    ChunkGrid,
    read_chunks,
    remove_chunks,
    sweep_chunks,
    write_chunks,
)
from .record import (
    CHUNKED_VERSION,
    STATE_FILE,
    STORE_VERSION,
    TIFF_VERSION,
    SavedReview,
    fsync_path,
    labels_digest,
    read_record,
    writable_dir,
    write_readme,
    write_record,
)
from .state import ReviewState

if TYPE_CHECKING:
    from .autosave import ChunkUpdate

__all__ = ["SIDECAR_SUFFIX", "STATE_FILE", "SavedReview", "Sidecar"]

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".microfossil"
_LABELS_GLOB = "labels-*.tif"


class _Chunked(NamedTuple):
    """The chunked save this sidecar made or loaded last: what a partial save builds on."""

    folder: Path
    save_id: str
    grid: ChunkGrid
    dtype: str
    names: list[str]


class Sidecar:
    """Autosaved labels and review state of one scan.

    They live in the folder ``<scan path>.microfossil/`` beside the scan (for a folder
    of slices: beside that folder). If that is not writable, or there is no scan path,
    in ``~/.cache/napari-microfossil/<hash>/`` (``$XDG_CACHE_HOME`` is honoured).

    :meth:`save` writes ``labels-<id>.tif`` (a new name each time), then
    ``review.json`` naming that file with its shape, dtype and hash, each through a temp
    file renamed into place; only then are older labels files deleted.
    :meth:`save_chunks` (the autosave) writes only the chunk files of the chunks that
    changed since its last save (new content, new names: :mod:`.chunks`), then
    ``review.json`` naming every chunk's file; only then are the files no longer named
    deleted. At any moment, even after a kill mid-save, ``review.json`` names complete
    labels files. Both layouts are restored.

    Parameters
    ----------
    scan_path : str or path, optional
        The scan the labels belong to.
    name : str, optional
        With no `scan_path`: a key (e.g. the layer name) for a folder in the cache.
    cache_dir : str or path, optional
        Root of the fallback folders; ``~/.cache/napari-microfossil`` by default.
    """

    def __init__(
        self,
        scan_path: str | os.PathLike[str] | None = None,
        *,
        name: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if scan_path is None and not name:
            raise ValueError("scan_path, name: expected a scan path or a name; got neither")
        self.scan_path = Path(os.path.abspath(os.fspath(scan_path))) if scan_path else None
        self.name = name
        self.cache_root = Path(cache_dir) if cache_dir is not None else cache_root()
        key = str(self.scan_path) if self.scan_path is not None else f"name:{name}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        self.cache_folder = self.cache_root / digest
        self.beside_folder = (
            self.scan_path.with_name(self.scan_path.name + SIDECAR_SUFFIX)
            if self.scan_path is not None
            else None
        )
        self._folder: Path | None = None
        self._lock = threading.Lock()
        self._chunked: _Chunked | None = None
        #: Chunk numbers the last :meth:`save_chunks` wrote (all of them for a full save).
        self.last_written: tuple[int, ...] = ()

    def __repr__(self) -> str:
        return f"Sidecar({self.folder})"

    @property
    def candidates(self) -> list[Path]:
        """Folders a save may be in, preferred first."""
        out = [self.beside_folder] if self.beside_folder is not None else []
        return [*out, self.cache_folder]

    @property
    def folder(self) -> Path:
        """Where the next save goes (the last one's folder once saved or loaded)."""
        if self._folder is not None:
            return self._folder
        if self.beside_folder is not None:
            parent = self.beside_folder.parent
            there = self.beside_folder if self.beside_folder.exists() else parent
            if os.access(there, os.W_OK | os.X_OK):
                return self.beside_folder
        return self.cache_folder

    def _choose_folder(self) -> Path:
        if self._folder is not None and writable_dir(self._folder):
            return self._folder
        for folder in self.candidates:
            if writable_dir(folder):
                if folder != self.candidates[0]:
                    logger.warning(
                        "%s is not writable; autosaving review to %s",
                        self.candidates[0],
                        folder,
                    )
                else:
                    logger.info("autosaving review to %s", folder)
                self._folder = folder
                if not (folder / "README.txt").exists():
                    write_readme(folder, self.scan_path)
                return folder
        raise OSError(f"no writable folder for the review autosave among {self.candidates}")

    # ---------------------------------------------------------------- save

    def save(
        self,
        labels: np.ndarray,
        state: ReviewState,
        *,
        spacing: float | tuple[float, float, float] = (1.0, 1.0, 1.0),
        class_names: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        """Save `labels` and `state` atomically; returns the ``review.json`` path.

        Parameters
        ----------
        labels : ndarray, shape (Z, Y, X), unsigned int
            A snapshot: don't modify it while the save runs (another thread).
        state : ReviewState
        spacing : float or (z, y, x)
            Voxel size in µm, kept in the labels file.
        class_names : sequence of str, optional
        extra : dict, optional
            JSON-serialisable values stored in ``review.json`` (e.g. the layer name).

        Raises
        ------
        ValueError
            If `labels` is not 3D integers.
        OSError
            If no folder is writable.
        """
        labels = np.asarray(labels)
        if labels.ndim != 3 or labels.dtype.kind not in "biu":
            raise ValueError(
                f"labels: expected a (Z, Y, X) integer array; got {labels.dtype} {labels.shape}"
            )
        state_dict = state.to_dict()  # before any slow work: the caller may edit `state` next
        with self._lock:
            folder = self._choose_folder()
            token = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            labels_name = f"labels-{token}.tif"
            digest = labels_digest(labels)
            path = write_tiff(
                folder / labels_name,
                labels,
                spacing=spacing,
                class_names=class_names,
                # zstd: 4x faster than zlib on labels, read by tifffile (imagecodecs).
                compression="zstd",
                metadata={"review_save": token},
            )
            fsync_path(path)
            record = self._new_record(
                TIFF_VERSION, labels.shape, labels.dtype.name, spacing, class_names, extra
            )
            record.update(labels_file=labels_name, sha256=digest, state=state_dict)
            target = write_record(folder, record)
            self._chunked = None
            self._cleanup(folder, keep=labels_name)
            shutil.rmtree(folder / CHUNK_DIR, ignore_errors=True)
        logger.debug("review autosaved to %s", target)
        return target

    def save_chunks(self, update: ChunkUpdate) -> Path:
        """Save a :class:`ChunkUpdate` (any thread); returns the ``review.json`` path.

        Only the chunks the update names are written, if the last save in the folder is
        this sidecar's own chunked save of the same grid and dtype; otherwise (the first
        save, another process saved, a whole-volume save, an archive) every chunk is,
        read from ``update.labels``.

        Raises
        ------
        OSError
            If no folder is writable.
        """
        from .labels_store import StoreLabels

        if isinstance(update.labels, StoreLabels):
            return self._save_into_store(update)
        state_dict = update.state.to_dict()
        grid, dtype = update.grid, update.dtype.name
        with self._lock:
            folder = self._choose_folder()
            root = folder / CHUNK_DIR
            base = self._base_for(folder, grid, dtype)
            which: Iterable[int]
            if base is None or update.changed is None:
                full, which, names = True, range(grid.count), [""] * grid.count
            else:
                full, which, names = False, sorted(update.changed), list(base.names)
            new = write_chunks(root, update.labels, grid, which, copies=update.copies)
            for i, name in new.items():
                names[i] = name
            token = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            record = self._new_record(
                CHUNKED_VERSION, grid.shape, dtype, update.spacing, update.class_names, update.extra
            )
            record.update(save_id=token, state=state_dict)
            record["labels"] = {
                "layout": "chunks",
                "folder": CHUNK_DIR,
                "chunks": list(grid.chunks),
                "codec": CODEC,
                "hash": HASH,
                "names": names,
            }
            target = write_record(folder, record)
            self._chunked = _Chunked(folder, token, grid, dtype, names)
            self.last_written = tuple(sorted(new))
            self._cleanup(folder, keep=None)
            if full or base is None:  # (base: for mypy)
                sweep_chunks(root, names)  # also what killed or failed saves left
            else:
                remove_chunks(root, set(base.names) - set(names))
        logger.debug("review autosaved to %s (%d chunks written)", target, len(new))
        return target

    def _save_into_store(self, update: ChunkUpdate) -> Path:
        """Labels kept in a zarr store: their changed chunks go into it, through this
        folder as a journal (:func:`~.labels_store.save_into_store`)."""
        from .labels_store import save_into_store

        with self._lock:
            folder = self._choose_folder()
            token = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            grid = update.grid
            record = self._new_record(
                STORE_VERSION,
                grid.shape,
                update.dtype.name,
                update.spacing,
                update.class_names,
                update.extra,
            )
            record.update(save_id=token, state=update.state.to_dict())
            target = save_into_store(folder, update, record, write_record)
            self._chunked = None
            self.last_written = tuple(sorted(update.copies))
            self._cleanup(folder, keep=None)
        logger.debug(
            "review autosaved to %s (%d chunks into the store)", target, len(update.copies)
        )
        return target

    def _base_for(self, folder: Path, grid: ChunkGrid, dtype: str) -> _Chunked | None:
        """The chunked save a partial save may build on, if still the one on disk."""
        base = self._chunked
        if base is None or (base.folder, base.grid, base.dtype) != (folder, grid, dtype):
            return None
        rec = read_record(folder)
        return base if rec is not None and rec.get("save_id") == base.save_id else None

    def _new_record(
        self,
        version: int,
        shape: Sequence[int],
        dtype: str,
        spacing: float | Sequence[float],
        class_names: Sequence[str] | None,
        extra: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        sp = spacing if isinstance(spacing, (int, float)) else tuple(spacing)
        return {
            "format": "napari-microfossil review",
            "version": version,
            "scan_path": str(self.scan_path) if self.scan_path else None,
            "name": self.name,
            "saved_at": datetime.now(timezone.utc).isoformat(),
            "shape": [int(n) for n in shape],
            "dtype": dtype,
            "spacing": list(parse_spacing(sp)),
            "class_names": list(class_names) if class_names is not None else None,
            "extra": dict(extra or {}),
        }

    @staticmethod
    def _cleanup(folder: Path, *, keep: str | None) -> None:
        for p in folder.glob(_LABELS_GLOB):
            if p.name != keep:
                with contextlib.suppress(OSError):
                    p.unlink()
        remove_stale(folder)  # what killed saves left (their names change every save)

    # ---------------------------------------------------------------- load

    def _latest(self) -> tuple[Path, dict[str, Any]] | None:
        found = [(f, r) for f in self.candidates if (r := read_record(f)) is not None]
        if not found:
            return None
        return max(found, key=lambda fr: str(fr[1].get("saved_at", "")))

    def exists(self) -> bool:
        """Whether a save is there (cheap: the labels are not read or checked)."""
        return self._latest() is not None

    @property
    def saved_at(self) -> datetime | None:
        """When the last save finished (UTC), or None."""
        latest = self._latest()
        if latest is None:
            return None
        with contextlib.suppress(ValueError, TypeError):
            return datetime.fromisoformat(latest[1]["saved_at"])
        return None

    def summary(self) -> SavedReview | None:
        """What the last save holds (cheap: the labels are not read), or None."""
        latest = self._latest()
        if latest is None:
            return None
        folder, rec = latest
        st: dict[str, Any] = rec["state"] if isinstance(rec.get("state"), dict) else {}
        extra: dict[str, Any] = rec["extra"] if isinstance(rec.get("extra"), dict) else {}
        layer = extra.get("layer")
        with contextlib.suppress(TypeError, ValueError):
            return SavedReview(
                folder=folder,
                saved_at=self.saved_at,
                layer=layer if isinstance(layer, str) else None,
                shape=tuple(int(n) for n in rec.get("shape") or ()),
                axis=str(st.get("axis", "z")),
                reviewed=len(st.get("reviewed") or ()),
                edited=len(st.get("edited") or ()),
                n_slices=int(st.get("n_slices") or 0),
                store=rec["labels"].get("store") if rec["version"] == STORE_VERSION else None,
            )
        return None

    def load(self) -> tuple[Any, ReviewState, dict[str, Any]]:
        """The last save: labels, review state and the rest of ``review.json``.

        The labels are a numpy array, or for a save of labels kept in a zarr store,
        that store's :class:`~.labels_store.StoreLabels` (its save finished first).

        Raises
        ------
        InputError
            If there is no save, or the labels file does not match the hash, shape and
            dtype ``review.json`` recorded (a damaged file).
        """
        latest = self._latest()
        if latest is None:
            raise InputError(f"{self.folder}: no autosaved review found")
        folder, rec = latest
        labels: Any
        if rec["version"] == STORE_VERSION:
            from .labels_store import load_store_record

            labels = load_store_record(rec)
        elif rec["version"] == CHUNKED_VERSION:
            labels = self._load_chunks(folder, rec)
        else:
            path = folder / rec["labels_file"]
            labels = read_labels(path, lazy=False).data
            if labels.dtype.name != rec.get("dtype"):
                labels = labels.astype(rec["dtype"])
            if list(labels.shape) != rec.get("shape") or labels_digest(labels) != rec.get("sha256"):
                raise InputError(
                    f"{path}: autosaved labels do not match {folder / STATE_FILE} (shape "
                    f"{labels.shape}, expected {tuple(rec.get('shape', ()))}, or a different "
                    f"hash); the file is damaged"
                )
        self._folder = folder
        meta = {k: v for k, v in rec.items() if k != "state"}
        meta["folder"] = str(folder)
        return labels, ReviewState.from_dict(rec["state"]), meta

    def archive(self) -> Path | None:
        """Move the last save into a dated subfolder, so the next save does not replace it.

        Used when the user declines to restore: their earlier work stays on disk.
        """
        latest = self._latest()
        if latest is None:
            return None
        folder, rec = latest
        dest = folder / f"declined-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        dest.mkdir()
        with self._lock:
            labels = rec["labels_file"] if rec["version"] == TIFF_VERSION else CHUNK_DIR
            if rec["version"] != STORE_VERSION or (folder / labels).exists():
                os.replace(folder / labels, dest / labels)
            os.replace(folder / STATE_FILE, dest / STATE_FILE)
            self._chunked = None
        logger.info("previous autosave kept in %s", dest)
        return dest

    def remove(self) -> None:
        """Delete every save of this scan (all candidate folders)."""
        for folder in self.candidates:
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
        self._folder = None
        self._chunked = None

    def _load_chunks(self, folder: Path, rec: dict[str, Any]) -> np.ndarray:
        lab = rec["labels"]
        try:
            grid = ChunkGrid(rec["shape"], lab["chunks"])
            labels = read_chunks(folder / CHUNK_DIR, lab["names"], grid, np.dtype(rec["dtype"]))
        except (OSError, TypeError, ValueError) as exc:
            raise InputError(
                f"{folder / CHUNK_DIR}: autosaved labels do not match {folder / STATE_FILE} "
                f"({exc}); the save is damaged"
            ) from None
        self._chunked = _Chunked(
            folder, str(rec.get("save_id")), grid, labels.dtype.name, lab["names"]
        )
        return labels
