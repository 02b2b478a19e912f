"""Read and write volumes: multi-page TIFF, folders of 2D slices, zarr / OME-Zarr.

Every reader returns a :class:`Volume`: a ``(Z, Y, X)`` array (in memory, memory-mapped
or lazy) with its voxel size in µm and where that voxel size came from. Writers are
atomic: a temp file in the target folder is renamed over the target only once complete.

This module is imported by napari's reader: it must not import torch, napari or Qt.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError

logger = logging.getLogger(__name__)

__all__ = [
    "SliceStack",
    "Volume",
    "atomic_path",
    "is_supported",
    "parse_spacing",
    "read_labels",
    "read_volume",
    "volume_info",
    "write_tiff",
]

#: Key of this tool's own metadata (JSON) inside TIFF descriptions and zarr attributes.
META_KEY = "napari_microfossil"

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
SLICE_SUFFIXES = (".tif", ".tiff", ".png")
_ZARR_MARKERS = (".zarray", ".zgroup", "zarr.json")
_SUPPORTED = "a .tif/.tiff file, a folder of 2D .tif/.tiff/.png slices, or a .zarr store"

IMAGE_DTYPES = tuple(
    np.dtype(d) for d in ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
)
_IMAGEJ_DTYPES = (np.dtype("uint8"), np.dtype("uint16"), np.dtype("float32"))
_DEFAULT_LAZY_BYTES = 1 << 30
# tifffile switches to BigTIFF itself only when asked; stay well below the 4 GiB limit.
_BIGTIFF_BYTES = 2**32 - 2**25

# Length units, lower-cased, to micrometres.
_UNIT_TO_UM: dict[str, float] = {
    **dict.fromkeys(
        ("µm", "μm", "um", "micron", "microns", "micrometer", "micrometre", "micrometers"), 1.0
    ),
    "micrometres": 1.0,
    **dict.fromkeys(("nm", "nanometer", "nanometre", "nanometers", "nanometres"), 1e-3),
    **dict.fromkeys(("mm", "millimeter", "millimetre", "millimeters", "millimetres"), 1e3),
    **dict.fromkeys(("cm", "centimeter", "centimetre", "centimeters", "centimetres"), 1e4),
    **dict.fromkeys(("m", "meter", "metre", "meters", "metres"), 1e6),
    **dict.fromkeys(("inch", "inches", "in"), 25400.0),
    **dict.fromkeys(("å", "angstrom", "ångström", "angstroms"), 1e-4),
}
# TIFF ResolutionUnit tag values (4 and 5 are tifffile extensions).
_RESUNIT_TO_UM = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}
# Resolutions image editors write by default; they say nothing about the voxel size.
_EDITOR_DPI = (72.0, 96.0, 150.0, 300.0)


# --------------------------------------------------------------------------- Volume


@dataclass(frozen=True)
class Volume:
    """A ``(Z, Y, X)`` volume and its voxel size.

    Parameters
    ----------
    data : array-like, shape (Z, Y, X)
        ``numpy.ndarray``, ``numpy.memmap``, zarr array or :class:`SliceStack`, or a
        lazy view; all support ``.shape``, ``.dtype``, ``.ndim`` and basic indexing
        (ints and slices), which returns a numpy array.
    spacing : tuple of 3 float
        Voxel size ``(z, y, x)`` in `unit`.
    unit : str
        ``"µm"``.
    spacing_source : {"metadata", "user", "default"}
        Where `spacing` came from; ``"default"`` means none was found and 1 µm was assumed.
    path : str
        The file or folder read.
    class_names : tuple of str, optional
        Names of the label values, for label volumes written by this tool.
    lazy : bool
        True when `data` is not held in memory (memory-mapped or read on demand).
    metadata : dict
        Extra metadata this tool wrote beside the volume (``write_tiff(metadata=...)``).
    """

    data: Any
    spacing: tuple[float, float, float]
    unit: str
    spacing_source: str
    path: str
    class_names: tuple[str, ...] | None = None
    lazy: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    def load(self) -> np.ndarray:
        """The whole volume as an in-memory ``numpy.ndarray`` (no copy if it already is one)."""
        data = self.data
        if type(data) is np.ndarray:
            return data
        if isinstance(data, np.ndarray):  # memmap: copy into memory
            return np.array(data)
        return np.asarray(data[...])


# --------------------------------------------------------------------------- helpers


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(n)) for n in shape) + ")"


def parse_spacing(spacing: Any) -> tuple[float, float, float]:
    """Validate a voxel size given as one number (isotropic) or ``(z, y, x)``.

    Raises
    ------
    InputError
        If it is not one or three finite numbers > 0.
    """
    if isinstance(spacing, (bool, np.bool_, str, bytes)):
        values: list[Any] = [spacing]
    elif isinstance(spacing, (int, float, np.integer, np.floating)):
        values = [spacing] * 3
    else:
        try:
            values = list(spacing)
        except TypeError:
            values = [spacing]
    ok = len(values) == 3
    out: list[float] = []
    if ok:
        for v in values:
            if isinstance(v, (bool, np.bool_)) or not isinstance(
                v, (int, float, np.integer, np.floating)
            ):
                ok = False
                break
            f = float(v)
            if not (math.isfinite(f) and f > 0):
                ok = False
                break
            out.append(f)
    if not ok:
        raise InputError(
            f"spacing: expected one number or three numbers (z, y, x) in µm, all > 0 and "
            f"finite; got {spacing!r}"
        )
    return (out[0], out[1], out[2])


def _unit_factor(unit: Any) -> float | None:
    """Micrometres per `unit`, or None for an unknown or non-physical unit ("pixel")."""
    if not isinstance(unit, str):
        return None
    u = unit.strip().lower().replace("\\u00b5", "µ").replace("\\u03bc", "µ")
    return _UNIT_TO_UM.get(u.replace("μ", "µ"))


def _positive(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def _check_dtype(dtype: np.dtype, path: str, allowed: Sequence[np.dtype] | None) -> None:
    native = dtype.newbyteorder("=")
    if allowed is None:
        if native.kind in "biuf":
            return
        expected = "a boolean, integer or real floating-point type"
    else:
        if native in allowed:
            return
        expected = "one of " + ", ".join(d.name for d in allowed)
    raise InputError(f"{path}: unsupported data type {dtype.name}; expected {expected}")


def _rgb_to_grey(a: np.ndarray) -> np.ndarray:
    """Luminance of colour samples on the last axis, in the input dtype."""
    if a.shape[-1] == 2:  # grey + alpha
        return np.ascontiguousarray(a[..., 0])
    rgb = a[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0])
    grey = rgb @ np.array([0.2125, 0.7154, 0.0721])
    if a.dtype.kind in "ui":
        info = np.iinfo(a.dtype)
        grey = np.clip(np.rint(grey), info.min, info.max)
    return grey.astype(a.dtype)


def _warn_rgb(path: str, shape: Sequence[int]) -> None:
    warnings.warn(
        f"{path}: colour image with shape {_fmt_shape(shape)}; converted to grey (luminance)",
        UserWarning,
        stacklevel=2,
    )


def _normalise_key(key: Any, shape: Sequence[int]) -> tuple[int | slice, ...] | None:
    """``key`` as one int or slice per axis, or None if it holds anything else."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        if any(k is Ellipsis for k in key[i + 1 :]):
            raise IndexError("an index can only have a single ellipsis ('...')")
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1 :]
    if len(key) > len(shape):
        raise IndexError(f"too many indices: {len(key)} for a {len(shape)}-D volume")
    key = key + (slice(None),) * (len(shape) - len(key))
    out: list[int | slice] = []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, slice):
            out.append(k)
        elif isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
            i = int(k)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for an axis of size {n}")
            out.append(i % n)
        else:
            return None
    return tuple(out)


# --------------------------------------------------------------------------- axes plans


@dataclass(frozen=True)
class _Plan:
    """How a stored N-D array becomes ``(Z, Y, X)``.

    ``index`` has one entry per stored axis: None keeps it, an int fixes it (a squeezed
    singleton axis). ``rgb``: the last stored axis holds colour samples, converted to grey.
    ``add_z``: a 2D image, given a Z axis of length 1.
    """

    index: tuple[int | None, ...]
    rgb: bool
    add_z: bool
    shape: tuple[int, int, int]


def _plan_axes(shape: Sequence[int], axes: str, path: str) -> _Plan:
    """Plan from a stored shape and its axis letters (tifffile's: Z, Y, X, S = samples...)."""
    shape = tuple(int(n) for n in shape)
    axes = axes.upper()
    if len(axes) != len(shape) or "Y" not in axes or "X" not in axes:
        axes = "Q" * (len(shape) - 2) + "YX" if len(shape) >= 2 else axes
    bad = InputError(
        f"{path}: expected a 3D (Z, Y, X) volume or a 2D image; found shape "
        f"{_fmt_shape(shape)} with axes {axes!r}. Save a single channel and time point."
    )
    if len(shape) < 2:
        raise bad
    index: list[int | None] = [0] * len(shape)
    rgb = False
    if axes[-1] == "S":
        if shape[-1] in (2, 3, 4):
            rgb = True
            index[-1] = None
        elif shape[-1] != 1:
            raise bad
    others = [i for i, a in enumerate(axes) if a not in "YXS"]
    if "Z" in axes:
        z: int | None = axes.index("Z")
    else:
        big = [i for i in others if shape[i] > 1]
        z = big[0] if len(big) == 1 else (others[-1] if not big and others else None)
    if any(shape[i] > 1 for i in others if i != z):
        raise bad
    y, x = axes.index("Y"), axes.index("X")
    if not ((z is None or z < y) and y < x):
        raise InputError(
            f"{path}: axes {axes!r} are not in Z, Y, X order; this order is not supported"
        )
    for i in (y, x) if z is None else (z, y, x):
        index[i] = None
    zyx = (1 if z is None else shape[z], shape[y], shape[x])
    if rgb:
        _warn_rgb(path, shape)
    return _Plan(tuple(index), rgb, z is None, zyx)


def _apply(base: Any, plan: _Plan, key: tuple[int | slice, ...]) -> np.ndarray:
    """Read ``key`` (one int/slice per output axis) from ``base`` following ``plan``."""
    k = list(key)
    kz = k.pop(0) if plan.add_z else None
    it = iter(k)
    base_key = tuple(
        (slice(None) if (plan.rgb and j == len(plan.index) - 1) else next(it)) if i is None else i
        for j, i in enumerate(plan.index)
    )
    out = np.asarray(base[base_key])
    if plan.rgb:
        out = _rgb_to_grey(out)
    if plan.add_z and isinstance(kz, slice):
        out = out[np.newaxis][kz]
    return out


class _LazyView:
    """Read-only lazy ``(Z, Y, X)`` view of a stored array (squeezed axes, RGB → grey)."""

    def __init__(self, base: Any, plan: _Plan) -> None:
        self.base = base
        self.plan = plan
        self.shape = plan.shape
        self.dtype = np.dtype(base.dtype)
        self.ndim = 3

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        norm = _normalise_key(key, self.shape)
        if norm is None:  # fancy indexing: correct, but reads everything
            return np.asarray(self)[key]
        return _apply(self.base, self.plan, norm)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"<lazy volume {_fmt_shape(self.shape)} {self.dtype.name} of {type(self.base)}>"


# --------------------------------------------------------------------------- slices


def _is_slice_file(p: Path) -> bool:
    return p.suffix.lower() in SLICE_SUFFIXES and not p.name.startswith(".") and p.is_file()


def _image_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Stored shape ``(Y, X)`` or ``(Y, X, C)`` and dtype of one 2D image, without pixels."""
    try:
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
            return _slice_shape(tuple(s.shape), path), np.dtype(s.dtype)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: cannot read image ({_one_line(exc)})") from exc


def _slice_shape(shape: tuple[int, ...], path: Path) -> tuple[int, ...]:
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] in (2, 3, 4)):
        return shape
    raise InputError(f"{path}: expected a 2D slice; found shape {_fmt_shape(shape)}")


def _read_image_file(path: Path) -> np.ndarray:
    """All pixels of one 2D image file, as stored (``(Y, X)`` or ``(Y, X, C)``)."""
    try:
        if path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as im:
                a = np.asarray(im)
            a = a.astype(a.dtype.newbyteorder("="), copy=False)
        else:
            import tifffile

            a = tifffile.imread(path)
    except Exception as exc:
        raise InputError(f"{path}: cannot read image ({_one_line(exc)})") from exc
    return a.reshape(_slice_shape(a.shape, path))


class SliceStack:
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

    ndim = 3

    def __init__(self, files: Sequence[str | os.PathLike[str]], *, check: bool = True) -> None:
        self.files: tuple[Path, ...] = tuple(Path(f) for f in files)
        if not self.files:
            raise InputError("SliceStack: no slice files given")
        raw_shape, raw_dtype = _image_header(self.files[0])
        self._raw = (raw_shape, raw_dtype)
        self.rgb = len(raw_shape) == 3
        self.shape: tuple[int, int, int] = (len(self.files), raw_shape[0], raw_shape[1])
        self.dtype = raw_dtype
        if check:
            for f in self.files[1:]:
                self._check(f, *_image_header(f))
        if self.rgb:
            _warn_rgb(str(self.files[0]), raw_shape)

    def _check(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        if shape != self._raw[0] or dtype != self._raw[1]:
            raise InputError(
                f"{path}: slice has shape {_fmt_shape(shape)} and dtype {dtype.name}; "
                f"expected {_fmt_shape(self._raw[0])} {self._raw[1].name} like the first "
                f"slice {self.files[0].name}"
            )

    def _read(self, i: int) -> np.ndarray:
        a = _read_image_file(self.files[i])
        self._check(self.files[i], a.shape, a.dtype)
        return _rgb_to_grey(a) if self.rgb else a

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        norm = _normalise_key(key, self.shape)
        if norm is None:  # fancy indexing: correct, but reads every file
            return np.asarray(self)[key]
        kz, ky, kx = norm
        if isinstance(kz, int):
            return self._read(kz)[ky, kx]
        zs = range(*kz.indices(self.shape[0]))
        probe = np.empty(self.shape[1:], dtype=np.bool_)[ky, kx]
        out = np.empty((len(zs), *probe.shape), dtype=self.dtype)
        for j, z in enumerate(zs):
            out[j] = self._read(z)[ky, kx]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return (
            f"SliceStack({len(self.files)} files from {self.files[0].parent}, "
            f"shape={_fmt_shape(self.shape)}, dtype={self.dtype.name})"
        )


# --------------------------------------------------------------------------- metadata


@dataclass
class _Meta:
    spacing: tuple[float | None, float | None, float | None] = (None, None, None)
    class_names: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.spacing[1] is not None and self.spacing[2] is not None


def _ours(text: Any) -> dict[str, Any] | None:
    """This tool's metadata from a JSON text (TIFF description or ImageJ 'Info')."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str) or not text.lstrip().startswith("{"):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    mine = doc.get(META_KEY) if isinstance(doc, dict) else None
    return mine if isinstance(mine, dict) else None


def _meta_from_ours(mine: Mapping[str, Any]) -> _Meta:
    meta = _Meta()
    names = mine.get("class_names")
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        meta.class_names = tuple(names)
    extra = mine.get("metadata")
    if isinstance(extra, dict):
        meta.extra = extra
    factor = _unit_factor(mine.get("unit", "µm"))
    sp = mine.get("spacing")
    if factor is not None and isinstance(sp, list) and len(sp) == 3:
        z, y, x = (_positive(v) for v in sp)
        if z and y and x:
            meta.spacing = (z * factor, y * factor, x * factor)
    return meta


def _rational(value: Any) -> float | None:
    try:
        num, den = value
        return _positive(num / den)
    except (TypeError, ValueError, ZeroDivisionError):
        return _positive(value)


def _tiff_meta(tif: Any, path: str) -> _Meta:
    """Voxel size and class names from a TIFF: ours, ImageJ, OME-XML, resolution tags."""
    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
    tags = page.tags
    ij = tif.imagej_metadata if tif.is_imagej else None
    for text in ((ij or {}).get("Info"), page.description):
        mine = _ours(text)
        if mine is not None:
            meta = _meta_from_ours(mine)
            if meta.found:
                return meta
            break
    else:
        meta = _Meta()

    xres = _rational(tags["XResolution"].value) if "XResolution" in tags else None
    yres = _rational(tags["YResolution"].value) if "YResolution" in tags else None

    if ij:
        f = _unit_factor(ij.get("unit"))
        if f is not None and xres and yres:
            z = _positive(ij.get("spacing"))
            meta.spacing = (z * f if z else None, f / yres, f / xres)
            return meta

    if tif.is_ome and tif.ome_metadata:
        sp = _ome_xml_spacing(tif.ome_metadata)
        if sp is not None:
            meta.spacing = sp
            return meta

    runit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2
    f = _RESUNIT_TO_UM.get(int(runit))
    # (1, 1) is what writers put when they know no resolution
    if f is not None and xres and yres and (xres, yres) != (1.0, 1.0):
        if int(runit) == 2 and xres == yres and xres in _EDITOR_DPI:
            logger.info("%s: ignoring %g dpi, an image editor's default resolution", path, xres)
        else:
            meta.spacing = (None, f / yres, f / xres)
    return meta


def _ome_xml_spacing(xml: str) -> tuple[float | None, float | None, float | None] | None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] != "Pixels":
            continue
        out: list[float | None] = []
        for ax in "ZYX":
            v = _positive(el.get(f"PhysicalSize{ax}"))
            f = _unit_factor(el.get(f"PhysicalSize{ax}Unit", "µm"))
            out.append(v * f if v is not None and f is not None else None)
        return (out[0], out[1], out[2]) if out[1] and out[2] else None
    return None


def _finish_spacing(meta: _Meta, user: Any, path: str) -> tuple[tuple[float, float, float], str]:
    if user is not None:
        return parse_spacing(user), "user"
    z, y, x = meta.spacing
    if y is not None and x is not None:
        if z is None:
            logger.info("%s: no z spacing in the metadata; assuming z = x = %g µm", path, x)
            z = x
        return (z, y, x), "metadata"
    logger.warning(
        "%s: no voxel size found in the file; assuming 1 µm. Pass spacing= (CLI: "
        "--voxel-size; napari: the Segment widget's voxel size) to set it.",
        path,
    )
    return (1.0, 1.0, 1.0), "default"


# --------------------------------------------------------------------------- readers


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


@dataclass
class _Read:
    data: Any
    lazy: bool
    meta: _Meta
    format: str


def _read_tiff(path: Path, lazy: bool | None, threshold: int, allowed: Any) -> _Read:
    import tifffile

    p = str(path)
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:
        raise InputError(
            f"{p}: cannot read as TIFF ({_one_line(exc)}); the file may be corrupt or truncated"
        ) from exc
    keep_open = False
    try:
        try:
            series = tif.series[0]
            shape, axes, dtype = tuple(series.shape), series.axes, np.dtype(series.dtype)
        except Exception as exc:
            raise InputError(f"{p}: cannot read as TIFF ({_one_line(exc)})") from exc
        fmt = "ome-tiff" if tif.is_ome else "imagej-tiff" if tif.is_imagej else "tiff"
        if len(tif.series) > 1:
            logger.info("%s: %d image series; reading the first", p, len(tif.series))
        plan = _plan_axes(shape, axes, p)
        _check_dtype(dtype, p, allowed)
        meta = _tiff_meta(tif, p)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        offset = series.dataoffset
        if offset is not None and offset + nbytes > path.stat().st_size:
            raise InputError(
                f"{p}: file is truncated: expected {nbytes} bytes of pixels from byte "
                f"{offset}, the file has {path.stat().st_size}"
            )
        if lazy is None:
            big = nbytes > threshold
            ram = _physical_memory()
            lazy = big and (offset is not None or (ram is not None and nbytes > ram // 2))
        if lazy and not plan.add_z:
            mm = None
            if offset is not None:
                try:
                    mm = tifffile.memmap(path, series=0, mode="r").reshape(shape)
                except Exception as exc:  # read on demand instead
                    logger.info("%s: cannot memory-map (%s)", p, _one_line(exc))
            if mm is not None:
                if plan.rgb:
                    return _Read(_LazyView(mm, plan), True, meta, fmt)
                return _Read(mm.reshape(plan.shape), True, meta, fmt)
            import zarr

            store = series.aszarr(level=0)
            view = _LazyView(zarr.open(store=store, mode="r"), plan)
            weakref.finalize(view, tif.close)
            keep_open = True
            return _Read(view, True, meta, fmt)
        try:
            arr = series.asarray()
        except Exception as exc:
            raise InputError(
                f"{p}: cannot read pixels ({_one_line(exc)}); the file may be corrupt or truncated"
            ) from exc
        arr = _apply(arr, plan, (slice(None),) * 3)
        return _Read(arr, False, meta, fmt)
    finally:
        if not keep_open:
            tif.close()


def _read_png(path: Path, allowed: Any) -> _Read:
    p = str(path)
    raw = _read_image_file(path)
    axes = "YXS" if raw.ndim == 3 else "YX"
    plan = _plan_axes(raw.shape, axes, p)
    _check_dtype(raw.dtype, p, allowed)
    return _Read(_apply(raw, plan, (slice(None),) * 3), False, _Meta(), "png")


def _slice_files(folder: Path) -> list[Path]:
    from natsort import natsorted, ns

    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise InputError(f"{folder}: cannot list folder ({_one_line(exc)})") from exc
    visible = [e for e in entries if not e.name.startswith(".")]
    if not visible:
        raise InputError(f"{folder}: folder is empty; expected 2D .tif/.tiff/.png slices")
    files = [e for e in visible if _is_slice_file(e)]
    if not files:
        seen = ", ".join(sorted(e.name for e in visible)[:5])
        raise InputError(
            f"{folder}: folder has no .tif/.tiff/.png slices (found {len(visible)} other "
            f"entries: {seen}{', ...' if len(visible) > 5 else ''})"
        )
    return list(natsorted(files, key=lambda f: f.name, alg=ns.IGNORECASE))


def _read_slices(folder: Path, lazy: bool | None, threshold: int, allowed: Any) -> _Read:
    files = _slice_files(folder)
    stack = SliceStack(files)
    _check_dtype(stack.dtype, str(folder), allowed)
    meta = _Meta()
    if files[0].suffix.lower() != ".png":
        import tifffile

        try:
            with tifffile.TiffFile(files[0]) as tif:
                meta = _tiff_meta(tif, str(files[0]))
        except Exception as exc:  # already read once: only metadata can fail here
            logger.info("%s: no metadata (%s)", files[0], _one_line(exc))
    if lazy is None:
        lazy = stack.nbytes > threshold
    if lazy:
        return _Read(stack, True, meta, "slices")
    return _Read(stack[:], False, meta, "slices")


def _is_zarr(path: Path) -> bool:
    if path.suffix.lower() == ".zarr":
        return True
    return path.is_dir() and any((path / m).exists() for m in _ZARR_MARKERS)


def _ome_axes(ms: Mapping[str, Any], ndim: int) -> tuple[str, list[str | None]]:
    """Axis letters (tifffile style) and units from OME-NGFF multiscales metadata."""
    raw = ms.get("axes")
    if raw is None:  # OME-NGFF <= 0.2: always 5D tczyx
        raw = list("tczyx")[-ndim:]
    letters, units = [], []
    for a in raw:
        name = a.get("name", "") if isinstance(a, dict) else str(a)
        unit = a.get("unit") if isinstance(a, dict) else None
        letters.append({"z": "Z", "y": "Y", "x": "X", "c": "C", "t": "T"}.get(name.lower(), "Q"))
        units.append(unit)
    return "".join(letters), units


def _scale(transforms: Any, ndim: int) -> list[float]:
    out = [1.0] * ndim
    for t in transforms or []:
        if isinstance(t, dict) and t.get("type") == "scale" and len(t.get("scale", [])) == ndim:
            out = [a * float(b) for a, b in zip(out, t["scale"], strict=True)]
    return out


def _read_zarr(path: Path, lazy: bool | None, allowed: Any) -> _Read:
    import zarr

    p = str(path)
    if not path.exists():
        raise InputError(f"{p}: no such file or folder")
    node: Any
    arr: Any
    try:
        node = zarr.open(store=p, mode="r")
    except Exception as exc:
        raise InputError(f"{p}: cannot open as zarr ({_one_line(exc)})") from exc
    attrs: dict[str, Any] = dict(node.attrs)
    meta = _Meta()
    axes = ""
    fmt = "zarr"
    if isinstance(node, zarr.Group):
        ome: Any = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else attrs
        multiscales = ome.get("multiscales")
        if multiscales:
            try:
                ms = multiscales[0]
                ds = ms["datasets"][0]
                arr = node[ds["path"]]
            except Exception as exc:
                raise InputError(
                    f"{p}: OME-Zarr multiscales metadata does not point to an array "
                    f"({_one_line(exc)})"
                ) from exc
            fmt = "ome-zarr"
            axes, units = _ome_axes(ms, arr.ndim)
            if len(axes) != arr.ndim:
                raise InputError(
                    f"{p}: OME-Zarr lists {len(axes)} axes for an array of shape "
                    f"{_fmt_shape(arr.shape)}"
                )
            scale = _scale(ds.get("coordinateTransformations"), arr.ndim)
            glob = _scale(ms.get("coordinateTransformations"), arr.ndim)
            sp: list[float | None] = []
            for letter in "ZYX":
                if letter not in axes:
                    sp.append(None)
                    continue
                i = axes.index(letter)
                f = _unit_factor(units[i]) if units[i] is not None else None
                if units[i] is None:
                    logger.warning("%s: axis %s has no unit; assuming µm", p, letter.lower())
                    f = 1.0
                sp.append(scale[i] * glob[i] * f if f is not None else None)
            meta.spacing = (sp[0], sp[1], sp[2])
        else:
            arrays = list(node.arrays())
            if len(arrays) != 1:
                names = ", ".join(name for name, _ in arrays) or "none"
                raise InputError(
                    f"{p}: zarr group without OME multiscales metadata; expected exactly one "
                    f"array, found {len(arrays)} ({names})"
                )
            arr = arrays[0][1]
    else:
        arr = node
    mine = attrs.get(META_KEY) or dict(arr.attrs).get(META_KEY)
    if isinstance(mine, dict):
        ours = _meta_from_ours(mine)
        meta.class_names = ours.class_names
        meta.extra = ours.extra
        if ours.found:
            meta.spacing = ours.spacing
    shape = tuple(int(n) for n in arr.shape)
    if not axes:
        rgb = len(shape) == 4 and shape[-1] in (3, 4)
        axes = "Q" * (len(shape) - (3 if rgb else 2)) + ("YXS" if rgb else "YX")
    plan = _plan_axes(shape, axes, p)
    _check_dtype(np.dtype(arr.dtype), p, allowed)
    view = _LazyView(arr, plan)
    if lazy is None or lazy:
        if not plan.add_z and not plan.rgb and arr.ndim == 3:
            return _Read(arr, True, meta, fmt)
        return _Read(view, True, meta, fmt)
    return _Read(view[...], False, meta, fmt)


def _open(
    path: str | os.PathLike[str],
    *,
    lazy: bool | None,
    lazy_threshold_bytes: int,
    allowed: Sequence[np.dtype] | None,
) -> _Read:
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{p}: no such file or folder; expected {_SUPPORTED}")
    if _is_zarr(p):
        return _read_zarr(p, lazy, allowed)
    if p.is_dir():
        return _read_slices(p, lazy, lazy_threshold_bytes, allowed)
    suffix = p.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return _read_tiff(p, lazy, lazy_threshold_bytes, allowed)
    if suffix == ".png":
        return _read_png(p, allowed)
    raise InputError(f"{p}: unsupported file type {p.suffix or '(none)'!r}; expected {_SUPPORTED}")


def read_volume(
    path: str | os.PathLike[str],
    *,
    spacing: float | tuple[float, float, float] | None = None,
    lazy: bool | None = None,
    lazy_threshold_bytes: int = _DEFAULT_LAZY_BYTES,
) -> Volume:
    """Read a 3D scan as a ``(Z, Y, X)`` volume with its voxel size.

    Parameters
    ----------
    path : str or path
        A multi-page TIFF / BigTIFF / ImageJ / OME-TIFF file, a single 2D TIFF or PNG
        (read as one slice), a folder of 2D ``.tif``/``.tiff``/``.png`` slices (natural
        sort order), or a zarr / OME-Zarr store (level 0 of a multiscale image).
    spacing : float or (z, y, x), optional
        Voxel size in µm, overriding the file's metadata.
    lazy : bool, optional
        True: don't load (TIFF: memory-map if uncompressed and contiguous, else read
        pages on demand; folder: :class:`SliceStack`; zarr: the zarr array). False: load
        into memory. None (default): lazy for zarr stores, and for TIFF files and folders
        larger than `lazy_threshold_bytes` (compressed TIFF files only if larger than half
        the machine's memory, since reading them lazily is slow).
    lazy_threshold_bytes : int
        Size above which ``lazy=None`` reads lazily; 1 GiB by default.

    Returns
    -------
    Volume
        Colour images are converted to grey (with a warning), singleton axes squeezed.

    Raises
    ------
    InputError
        If the path is missing, unsupported, corrupt, not 3D, of an unsupported dtype,
        or `spacing` is invalid.
    """
    user = parse_spacing(spacing) if spacing is not None else None
    r = _open(path, lazy=lazy, lazy_threshold_bytes=lazy_threshold_bytes, allowed=IMAGE_DTYPES)
    sp, source = _finish_spacing(r.meta, user, str(path))
    return Volume(
        data=r.data,
        spacing=sp,
        unit="µm",
        spacing_source=source,
        path=str(path),
        class_names=r.meta.class_names,
        lazy=r.lazy,
        metadata=r.meta.extra,
    )


def read_labels(
    path: str | os.PathLike[str],
    *,
    spacing: float | tuple[float, float, float] | None = None,
) -> Volume:
    """Read an integer label volume (0 = background) into memory.

    Booleans become uint8 and signed integers the unsigned type of the same size, once
    checked to be non-negative. `class_names` is set for files written by this tool.

    Raises
    ------
    InputError
        As :func:`read_volume`, and if the values are not integers or are negative.
    """
    user = parse_spacing(spacing) if spacing is not None else None
    r = _open(path, lazy=False, lazy_threshold_bytes=_DEFAULT_LAZY_BYTES, allowed=None)
    data = np.asarray(r.data)
    kind = data.dtype.kind
    if kind == "f":
        raise InputError(
            f"{path}: labels must be integers (class or instance ids); got {data.dtype.name}. "
            f"Convert the file to an integer type such as uint8."
        )
    if kind == "b":
        data = data.astype(np.uint8)
    elif kind == "i":
        low = int(data.min()) if data.size else 0
        if low < 0:
            raise InputError(f"{path}: labels must be non-negative (0 = background); found {low}")
        data = data.astype(f"u{data.dtype.itemsize}")
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    sp, source = _finish_spacing(r.meta, user, str(path))
    return Volume(
        data=data,
        spacing=sp,
        unit="µm",
        spacing_source=source,
        path=str(path),
        class_names=r.meta.class_names,
        lazy=False,
        metadata=r.meta.extra,
    )


def is_supported(path: Any) -> bool:
    """Cheap check that `path` looks readable by :func:`read_volume`; never raises.

    True for an existing ``.tif``/``.tiff``/``.png`` file, a zarr store, or a folder
    holding at least one 2D slice file. A list of paths is supported if all are.
    """
    try:
        if isinstance(path, (list, tuple)):
            return bool(path) and all(is_supported(p) for p in path)
        p = Path(os.fspath(path))
        if p.suffix.lower() == ".zarr":
            return p.exists()
        if p.is_file():
            return p.suffix.lower() in (*TIFF_SUFFIXES, ".png")
        if p.is_dir():
            if _is_zarr(p):
                return True
            with os.scandir(p) as it:
                return any(
                    not e.name.startswith(".")
                    and os.path.splitext(e.name)[1].lower() in SLICE_SUFFIXES
                    and e.is_file()
                    for e in it
                )
        return False
    except Exception:
        return False


def volume_info(
    path: str | os.PathLike[str], *, sample_slices: int = 16, max_exact_mb: float = 256.0
) -> dict[str, Any]:
    """Summary of a scan without loading it all: for ``microfossil info SCAN``.

    Returns
    -------
    dict
        ``path, format, shape, dtype, spacing, unit, spacing_source, extent_um, min, max,
        range_exact, size_mb, lazy, class_names`` (and ``n_files`` for a folder). The value
        range is exact for volumes up to `max_exact_mb` MB, else taken from
        `sample_slices` evenly spaced z-slices.
    """
    r = _open(path, lazy=True, lazy_threshold_bytes=0, allowed=None)
    sp, source = _finish_spacing(r.meta, None, str(path))
    data = r.data
    shape = tuple(int(n) for n in data.shape)
    dtype = np.dtype(data.dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    exact = nbytes <= max_exact_mb * 1e6 or shape[0] <= sample_slices
    if exact:
        sample = np.asarray(data[...])
    else:
        zs = np.unique(np.linspace(0, shape[0] - 1, sample_slices).round().astype(int))
        sample = np.stack([np.asarray(data[int(z)]) for z in zs])
    lo = sample.min().item() if sample.size else None
    hi = sample.max().item() if sample.size else None
    info: dict[str, Any] = {
        "path": str(path),
        "format": r.format,
        "shape": shape,
        "dtype": dtype.name,
        "spacing": sp,
        "unit": "µm",
        "spacing_source": source,
        "extent_um": tuple(n * s for n, s in zip(shape, sp, strict=True)),
        "min": lo,
        "max": hi,
        "range_exact": exact,
        "size_mb": nbytes / 1e6,
        "lazy": r.lazy,
        "class_names": r.meta.class_names,
    }
    if isinstance(data, SliceStack):
        info["n_files"] = len(data.files)
    return info


# --------------------------------------------------------------------------- writers


def _imagej_unit(unit: str) -> str:
    if _unit_factor(unit) == 1.0:
        return "micron"
    return "".join(c if ord(c) < 128 else f"\\u{ord(c):04X}" for c in unit)


def write_tiff(
    path: str | os.PathLike[str],
    data: Any,
    *,
    spacing: float | tuple[float, float, float] = (1.0, 1.0, 1.0),
    unit: str = "µm",
    class_names: Sequence[str] | None = None,
    overwrite: bool = False,
    compression: str | None = "zlib",
    metadata: Mapping[str, Any] | None = None,
    axes: str = "ZYX",
) -> Path:
    """Write a volume as TIFF, atomically, keeping voxel size and class names.

    uint8, uint16 and float32 (and bool, stored as uint8) are written as an ImageJ
    hyperstack, so Fiji and napari see the voxel size; other dtypes (e.g. uint32
    instance ids) as a plain TIFF (BigTIFF above 4 GB) with resolution tags. Either way
    a JSON record of `spacing`, `unit`, `class_names` and `metadata` is stored (ImageJ
    'Info' property or the image description) and read back by :func:`read_volume`.

    Parameters
    ----------
    path : str or path
        Target file.
    data : array-like, shape (Z, Y, X) or (Z, C, Y, X)
        The volume; ``(Z, C, Y, X)`` with ``axes="ZCYX"`` for multi-channel crops.
    spacing : float or (z, y, x)
        Voxel size in `unit`.
    unit : str
        Length unit of `spacing`.
    class_names : sequence of str, optional
        Names of the label values, for label volumes.
    overwrite : bool
        Replace an existing file.
    compression : str or None
        tifffile compression (``"zlib"``, ``"lzw"``, ``"zstd"``...); None or ``"none"``
        for uncompressed (which can be memory-mapped).
    metadata : dict, optional
        Extra JSON-serialisable values, returned as ``Volume.metadata``.
    axes : {"ZYX", "ZCYX"}
        Axis order of `data`.

    Returns
    -------
    Path
        `path`.

    Raises
    ------
    InputError
        If the file exists and `overwrite` is False, or `spacing`/`unit` is invalid.
    ValueError, TypeError
        If `data` does not match `axes` or has an unsupported dtype, or `metadata` is
        not JSON-serialisable.
    """
    import tifffile

    target = Path(path)
    if axes not in ("ZYX", "ZCYX"):
        raise ValueError(f"axes: expected 'ZYX' or 'ZCYX'; got {axes!r}")
    sp = parse_spacing(spacing)
    if _unit_factor(unit) is None:
        raise InputError(f"unit: expected a length unit such as 'µm' or 'nm'; got {unit!r}")
    arr = np.asarray(data)
    if arr.ndim != len(axes):
        raise ValueError(
            f"data: expected {len(axes)} dimensions ({axes}); got shape {_fmt_shape(arr.shape)}"
        )
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"data: expected a boolean, integer or float dtype; got {arr.dtype}")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    mine: dict[str, Any] = {
        "version": 1,
        "spacing": list(sp),
        "unit": unit,
        "axes": axes,
        "class_names": list(class_names) if class_names is not None else None,
        "metadata": dict(metadata or {}),
    }
    try:
        info = json.dumps({META_KEY: mine})
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata: expected JSON-serialisable values ({exc})") from exc
    if compression is not None and compression.lower() == "none":
        compression = None
    f = _unit_factor(unit) or 1.0
    imagej = arr.dtype.newbyteorder("=") in _IMAGEJ_DTYPES and arr.nbytes < _BIGTIFF_BYTES
    if imagej:
        kwargs: dict[str, Any] = {
            "imagej": True,
            "resolution": (1.0 / sp[2], 1.0 / sp[1]),
            "metadata": {
                "axes": axes,
                "spacing": sp[0],
                "unit": _imagej_unit(unit),
                "Info": info,
            },
        }
    else:
        kwargs = {
            "bigtiff": arr.nbytes >= _BIGTIFF_BYTES,
            # plain TIFF readers know inch and cm only
            "resolution": (1e4 / (sp[2] * f), 1e4 / (sp[1] * f)),
            "resolutionunit": "CENTIMETER",
            "metadata": {META_KEY: mine},
        }
    with atomic_path(target, overwrite=overwrite) as tmp:
        tifffile.imwrite(tmp, arr, photometric="minisblack", compression=compression, **kwargs)
    return target
