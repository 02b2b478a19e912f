"""Where ``microfossil segment`` writes: labels and confidence as TIFF or ``.zarr``.

A ``.zarr`` output is an OME-Zarr store (:func:`~napari_microfossil.io.store.create_output`)
written slab by slab: a killed or cancelled run leaves the finished slabs, marked
incomplete, and ``--resume`` continues with the missing ones. Each store records the
job (:func:`job_record`: the scan, the model file and its SHA-256, every option that
changes the result, the smoothing and the intensity range used), and a resumed run
must be the same job, so that its result is bit-identical to an uninterrupted run. A
TIFF output is written slab by slab too (:class:`~napari_microfossil.io.write.TiffSlabWriter`)
but atomically: all or nothing, never resumed.

Every check here runs when the request is built, before any work.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import InputError
from .outputs import TIFF_OUTPUT_SUFFIXES, check_not_input, check_output, check_writable_folder

#: Suffix that selects a chunked, resumable output.
ZARR_SUFFIX = ".zarr"
#: Suffixes a labels or confidence output may end in.
SEGMENT_OUTPUT_SUFFIXES = (*TIFF_OUTPUT_SUFFIXES, ZARR_SUFFIX)


class SlabOutput(Protocol):
    """What :func:`open_outputs` returns: a volume written slab by slab."""

    def todo(self) -> list[tuple[int, int]]: ...
    def write(self, start: int, data: np.ndarray) -> None: ...
    def finish(self) -> Path: ...


def is_zarr(path: Path) -> bool:
    """Whether `path` names a ``.zarr`` store (any case)."""
    return path.suffix.lower() == ZARR_SUFFIX


def check_segment_output(
    path: Path, *, overwrite: bool, resume: bool, option: str, inputs: tuple[Path | None, ...]
) -> None:
    """Refuse a labels/confidence output that cannot or should not be written.

    A TIFF goes through :func:`~napari_microfossil.workflows.outputs.check_output`. A
    ``.zarr`` store is a folder: an existing one needs `overwrite` or `resume`; it must
    not be or hold an input; its parent folder must exist and be writable.

    Raises
    ------
    InputError
        Naming `option`.
    """
    if not is_zarr(path):
        check_output(path, overwrite, option, inputs=inputs, suffixes=SEGMENT_OUTPUT_SUFFIXES)
        return
    check_not_input(path, inputs, option, inside=True)
    if path.exists():
        if not path.is_dir():
            raise InputError(
                f"{option}: {path} exists and is not a folder; a .zarr store is a folder"
            )
        if not (overwrite or resume):
            raise InputError(
                f"{option}: {path} already exists; pass --overwrite to replace it "
                "or --resume to continue it"
            )
    if not path.parent.exists():
        raise InputError(f"{option}: folder {path.parent} does not exist")
    check_writable_folder(path if path.exists() else path.parent, option)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def job_record(
    scan: Path, model: str, options: dict[str, Any], *, confidence: bool
) -> dict[str, Any]:
    """What a resumed run must share with the run it continues (JSON values).

    `options` are the front end's options as given (``smooth`` may be ``"auto"``);
    the smoothing and intensity range actually used are added by the use case.
    """
    from ..model import resolve_model_path

    model_path = resolve_model_path(model)
    return {
        "scan": str(scan.expanduser().resolve()),
        "model": str(model_path.resolve()),
        "model_sha256": file_sha256(model_path),
        **{k: options[k] for k in sorted(options)},
        "confidence": bool(confidence),
    }


def check_resume(outputs: list[tuple[Path, str]], *, overwrite: bool, job: dict[str, Any]) -> None:
    """Refuse ``--resume`` unless every output is an incomplete ``.zarr`` store of
    the same `job` (its recorded keys that `job` has must be equal).

    Raises
    ------
    InputError
        One line naming ``--resume``.
    """
    from ..io.store import incomplete

    if overwrite:
        raise InputError("--resume: cannot be combined with --overwrite, which starts again")
    for path, option in outputs:
        if not is_zarr(path):
            raise InputError(
                f"--resume: only .zarr outputs can be resumed; {option} {path} is a TIFF, "
                "written whole or not at all"
            )
        if not path.exists():
            raise InputError(f"--resume: {path} does not exist; nothing to resume")
        state = incomplete(path)
        if state is None:
            raise InputError(
                f"--resume: {path} is complete; nothing to resume (--overwrite makes it again)"
            )
        for key, value in job.items():
            old = state.request.get(key)
            if old != value:
                raise InputError(
                    f"--resume: {path} was started with {key}={old!r}, now {value!r}; "
                    "cannot resume a different job (use --overwrite to start again)"
                )


def open_outputs(
    paths: list[Path],
    shape: tuple[int, int, int],
    *,
    spacing: tuple[float, float, float],
    class_names: tuple[str, ...],
    overwrite: bool,
    resume: bool,
    record: dict[str, Any],
    scan: Path | None = None,
) -> tuple[list[SlabOutput], int]:
    """Open the labels output (first) and the others, and the slab size in planes.

    ``.zarr`` stores share one chunking (slab = its z edge), record `record` and
    are reopened with `resume`; TIFFs are written in slabs of the same size.

    Raises
    ------
    InputError
        Naming ``--resume`` when a store to resume was made by another job.
    """
    from ..io.store import create_output, default_chunks
    from ..io.write import TiffSlabWriter

    chunks = default_chunks(shape, np.uint8)
    out: list[SlabOutput] = []
    # The labels name their confidence map and scan, so that `fossils` finds them
    # without a flag.
    conf = {CONFIDENCE_KEY: input_reference(paths[0], paths[1])} if len(paths) > 1 else {}
    if scan is not None:
        conf[SCAN_KEY] = input_reference(paths[0], scan)
    try:
        for i, path in enumerate(paths):
            names = class_names if i == 0 else None
            meta = conf if i == 0 else None
            if not is_zarr(path):
                out.append(
                    TiffSlabWriter(
                        path,
                        shape,
                        np.uint8,
                        spacing=spacing,
                        class_names=names,
                        overwrite=overwrite,
                        metadata=meta,
                    )
                )
                continue
            try:
                out.append(
                    create_output(
                        path,
                        shape,
                        np.uint8,
                        spacing=spacing,
                        class_names=names,
                        metadata=meta,
                        chunks=chunks,
                        overwrite=overwrite,
                        resume=resume,
                        request=record,
                    )
                )
            except InputError as exc:
                raise InputError(f"--resume: {exc}" if resume else str(exc)) from None
    except BaseException:
        abort_outputs(out)
        raise
    return out, chunks[0]


#: The labels' metadata key naming their confidence map (relative to the labels' folder).
CONFIDENCE_KEY = "confidence"
#: The labels' metadata key naming the scan they segment (relative to the labels' folder).
SCAN_KEY = "scan"


def input_reference(labels: Path, other: Path) -> str:
    """How the labels at `labels` name another file (their confidence map, their scan):
    relative to their folder when both lie on one drive, so that they can be moved
    together."""
    try:
        return os.path.relpath(other.resolve(), labels.resolve().parent)
    except ValueError:  # another drive (Windows)
        return str(other.resolve())


def recorded_input(labels: Path, metadata: Mapping[str, Any], key: str) -> Path | None:
    """The file the labels' `metadata` names under `key` (:data:`CONFIDENCE_KEY`: their
    confidence map, :data:`SCAN_KEY`: their scan), if it still exists."""
    ref = metadata.get(key)
    if not isinstance(ref, str) or not ref:
        return None
    # Recorded relative to the labels' resolved folder (:func:`input_reference`): resolved
    # again, the path the summary prints has no ``..`` in it.
    path = (labels.resolve().parent / ref).resolve()
    return path if path.exists() else None


def inputs_named_by(labels: Path) -> dict[str, Path]:
    """The files the labels at `labels` name (:data:`CONFIDENCE_KEY`, :data:`SCAN_KEY`)
    and that still exist, from one read of their header; what ``fossils`` and the
    Fossils panel use without being told."""
    from ..io import read_labels

    meta = read_labels(labels, lazy=True).metadata  # a store's empty chunks are background
    found = {key: recorded_input(labels, meta, key) for key in (CONFIDENCE_KEY, SCAN_KEY)}
    return {key: path for key, path in found.items() if path is not None}


def abort_outputs(outputs: list[SlabOutput]) -> None:
    """Stop the TIFF writers (nothing is left of them); stores keep their slabs."""
    for o in outputs:
        abort = getattr(o, "abort", None)
        if abort is not None:
            abort()


def slabs_to_do(outputs: list[SlabOutput], nz: int, slab: int) -> list[tuple[int, int]]:
    """Slabs of `slab` planes that any output still lacks, in order."""
    missing: set[int] = set()
    for o in outputs:
        for a, b in o.todo():
            missing.update(range(a - a % slab, b, slab))
    return [(a, min(a + slab, nz)) for a in sorted(missing)]


def count_labels(labels: Any, ranges: list[tuple[int, int]], num_classes: int) -> np.ndarray:
    """Voxels of each class in the planes `ranges` of `labels`, a plane at a time."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for a, b in ranges:
        for z in range(a, b):
            plane = np.asarray(labels[z])
            counts += np.bincount(plane.ravel(), minlength=num_classes)[:num_classes]
    return counts
