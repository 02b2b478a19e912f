"""Folders of 2D slices (TIFF or PNG, one file per z-slice) and single PNG images."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .faults import reading
from .lazy import LazyArray, apply_plan, plan_axes, rgb_to_grey, warn_rgb
from .metadata import Meta, tiff_meta
from .volume import Read, check_dtype, fmt_shape, one_line

logger = logging.getLogger(__name__)

SLICE_SUFFIXES = (".tif", ".tiff", ".png")


def is_slice_file(p: Path | os.DirEntry[str]) -> bool:
    """True for a visible .tif/.tiff/.png file (a path or an ``os.scandir`` entry)."""
    name = p.name
    return (
        not name.startswith(".")
        and os.path.splitext(name)[1].lower() in SLICE_SUFFIXES
        and p.is_file()
    )


def image_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Stored shape ``(Y, X)`` or ``(Y, X, C)`` and dtype of one 2D image, without pixels."""
    with reading(path, "cannot read image"):
        if path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as im:
                mode, (w, h) = im.mode, im.size
            modes = {
                "1": ("bool", 0),
                "L": ("uint8", 0),
                "P": ("uint8", 0),
                "LA": ("uint8", 2),
                "RGB": ("uint8", 3),
                "RGBA": ("uint8", 4),
                "I": ("int32", 0),
                "I;16": ("uint16", 0),
                "I;16B": ("uint16", 0),
                "I;16L": ("uint16", 0),
                "F": ("float32", 0),
            }
            if mode not in modes:
                raise InputError(f"{path}: unsupported PNG mode {mode!r}; save as grey or RGB")
            name, c = modes[mode]
            return ((h, w, c) if c else (h, w)), np.dtype(name)
        import tifffile

        with tifffile.TiffFile(path) as tif:
            s = tif.series[0]
            return slice_shape(tuple(s.shape), path), np.dtype(s.dtype)


def slice_shape(shape: tuple[int, ...], path: Path) -> tuple[int, ...]:
    """`shape` without leading singleton axes; InputError unless it is one 2D slice."""
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] in (2, 3, 4)):
        return shape
    raise InputError(f"{path}: expected a 2D slice; found shape {fmt_shape(shape)}")


def read_image_file(path: Path) -> np.ndarray:
    """All pixels of one 2D image file, as stored (``(Y, X)`` or ``(Y, X, C)``)."""
    with reading(path, "cannot read image"):
        if path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as im:
                a = np.asarray(im)
            a = a.astype(a.dtype.newbyteorder("="), copy=False)
        else:
            import tifffile

            a = tifffile.imread(path)
    return a.reshape(slice_shape(a.shape, path))


class SliceStack(LazyArray):
    """Lazy ``(Z, Y, X)`` volume over 2D image files, one file per z-slice.

    Indexing reads only the files of the selected slices. Shape and dtype come from the
    first file; every file's header is checked against it when the stack is made, and
    every file read is checked again. Colour slices are converted to grey.

    Parameters
    ----------
    files : sequence of path
        The slice files, in z order.
    check : bool
        Check every file's header up front (cheap: no pixels are read).

    Raises
    ------
    InputError
        If `files` is empty, or a file cannot be read or disagrees with the first.
    """

    def __init__(self, files: Sequence[str | os.PathLike[str]], *, check: bool = True) -> None:
        self.files: tuple[Path, ...] = tuple(Path(f) for f in files)
        if not self.files:
            raise InputError("SliceStack: no slice files given")
        raw_shape, raw_dtype = image_header(self.files[0])
        self._raw = (raw_shape, raw_dtype)
        self.rgb = len(raw_shape) == 3
        self.shape: tuple[int, int, int] = (len(self.files), raw_shape[0], raw_shape[1])
        self.dtype = raw_dtype
        if check:
            for f in self.files[1:]:
                self._check(f, *image_header(f))
        if self.rgb:
            warn_rgb(str(self.files[0]), raw_shape)

    def _check(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        if shape != self._raw[0] or dtype != self._raw[1]:
            raise InputError(
                f"{path}: slice has shape {fmt_shape(shape)} and dtype {dtype.name}; "
                f"expected {fmt_shape(self._raw[0])} {self._raw[1].name} like the first "
                f"slice {self.files[0].name}"
            )

    def _read(self, i: int) -> np.ndarray:
        a = read_image_file(self.files[i])
        self._check(self.files[i], a.shape, a.dtype)
        return rgb_to_grey(a) if self.rgb else a

    def _read_key(self, key: tuple[int | slice, ...]) -> np.ndarray:
        kz, ky, kx = key
        if isinstance(kz, int):
            return self._read(kz)[ky, kx]
        zs = range(*kz.indices(self.shape[0]))
        probe = np.empty(self.shape[1:], dtype=np.bool_)[ky, kx]
        out = np.empty((len(zs), *probe.shape), dtype=self.dtype)
        for j, z in enumerate(zs):
            out[j] = self._read(z)[ky, kx]
        return out

    def __repr__(self) -> str:
        return (
            f"SliceStack({len(self.files)} files from {self.files[0].parent}, "
            f"shape={fmt_shape(self.shape)}, dtype={self.dtype.name})"
        )


def read_png(path: Path, allowed: Any) -> Read:
    """One PNG image, read as a volume of one slice."""
    p = str(path)
    raw = read_image_file(path)
    axes = "YXS" if raw.ndim == 3 else "YX"
    plan = plan_axes(raw.shape, axes, p)
    check_dtype(raw.dtype, p, allowed)
    return Read(apply_plan(raw, plan, (slice(None),) * 3), False, Meta(), "png")


def _slice_files(folder: Path) -> list[Path]:
    from natsort import natsorted, ns

    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise InputError(f"{folder}: cannot list folder ({one_line(exc)})") from exc
    visible = [e for e in entries if not e.name.startswith(".")]
    if not visible:
        raise InputError(f"{folder}: folder is empty; expected 2D .tif/.tiff/.png slices")
    files = [e for e in visible if is_slice_file(e)]
    if not files:
        seen = ", ".join(sorted(e.name for e in visible)[:5])
        raise InputError(
            f"{folder}: folder has no .tif/.tiff/.png slices (found {len(visible)} other "
            f"entries: {seen}{', ...' if len(visible) > 5 else ''})"
        )
    return list(natsorted(files, key=lambda f: f.name, alg=ns.IGNORECASE))


#: The last run of digits in a file name's stem: ``Sandstone_Versa0150.tif`` -> 150.
_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def slice_numbers(files: Sequence[str | os.PathLike[str]]) -> list[int] | None:
    """The number each slice file's name carries: its z in the stack it was cut from.

    The last run of digits in each stem (``Sandstone_Versa0150.tif`` -> 150,
    ``slice_0007_mask.png`` -> 7). None when a name has no digits or two files share a
    number: then the names do not say where the slices lie.
    """
    numbers = []
    for f in files:
        found = _NUMBER.search(Path(f).stem)
        if found is None:
            return None
        numbers.append(int(found.group(1)))
    return numbers if len(set(numbers)) == len(numbers) else None


def folder_slice_numbers(folder: str | os.PathLike[str]) -> list[int] | None:
    """:func:`slice_numbers` of a folder of slices, in the order the folder is read
    (None if `folder` is not a folder of slices)."""
    path = Path(folder)
    if not path.is_dir():
        return None
    try:
        return slice_numbers(_slice_files(path))
    except InputError:
        return None


def read_slices(folder: Path, lazy: bool | None, threshold: int, allowed: Any) -> Read:
    """A folder of slices: a :class:`SliceStack` if lazy, else loaded; metadata of the first."""
    files = _slice_files(folder)
    stack = SliceStack(files)
    check_dtype(stack.dtype, str(folder), allowed)
    meta = Meta()
    if files[0].suffix.lower() != ".png":
        import tifffile

        try:
            with reading(files[0], "no metadata"), tifffile.TiffFile(files[0]) as tif:
                meta = tiff_meta(tif, str(files[0]))
        except InputError as exc:  # already read once: only metadata can fail here
            logger.info("%s", exc)
    if lazy is None:
        lazy = stack.nbytes > threshold
    if lazy:
        return Read(stack, True, meta, "slices")
    return Read(stack[:], False, meta, "slices")
